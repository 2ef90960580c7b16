"""composer/train_dpo.py, models/adapters.py and models/writer_adapter.py: DPO (+ SFT) LoRA
training on a tiny random Llama with a tiny tokenizer, saving, and loading the adapters onto
the writer."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
import torch

from composer.config import Settings
from composer.train_dpo import (
    DPOSettings,
    check_record,
    load_writer,
    read_pairs,
    save_dpo,
    summary,
    train_dpo,
    training_rows,
)
from composer.types import ComposerError
from models.adapters import ADAPTER_CONFIG, ADAPTER_WEIGHTS, DPO_RECORD, AdapterError
from models.writer_adapter import apply_writer_adapter
from tests.tiny_models import build_tiny_lm, build_tokenizer

GOOD = ["The river runs past the old stone bridge in the morning light.",
        "Engineers measured the orbit of the small moon."]
BAD = ["A garden of tomatoes grows beside the harbor market.",
       "Café owners in Italy serve espresso before the trains leave."]
FAST = {"lr": 1e-2, "rank": 4, "alpha": 8, "batch_size": 4, "device": "cpu"}


def synthetic_records(count: int = 8) -> list[dict]:
    """Pairs where the chosen text is always of one kind and the rejected of another."""
    return [{"prompt": [{"role": "system", "content": "Write about bridges."},
                        {"role": "user", "content": f"Write paragraph {i} about 100 words."}],
             "chosen": [{"role": "assistant", "content": GOOD[i % 2]}],
             "rejected": [{"role": "assistant", "content": BAD[i % 2]}],
             "kind": "body"} for i in range(count)]


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory) -> Path:
    return build_tiny_lm(tmp_path_factory.mktemp("dpo-base"), seed=0)


@pytest.fixture(scope="module")
def trained(base_dir, tmp_path_factory):
    """One DPO run of 10 steps on the tiny model, saved; (folder, report, peft model)."""
    model, tokenizer, base_name = load_writer(str(base_dir))
    settings = DPOSettings(steps=10, **FAST)
    seen = []
    peft_model, report = train_dpo(model, tokenizer, synthetic_records(), settings,
                                   progress=lambda done, total, loss: seen.append(done))
    folder = save_dpo(tmp_path_factory.mktemp("dpo-out"), peft_model, settings, report,
                      base_model=base_name, extra={"note": "test"})
    assert seen == list(range(1, 11))
    return folder, report, peft_model


def test_dpo_loss_falls_and_reward_margin_rises(trained):
    _, report, _ = trained
    before, after = report.before, report.after
    assert (report.steps, report.max_steps, report.stopped, report.pairs) == (10, 10, False, 8)
    # before any step the adapters are zero: policy == reference, margin 0, DPO loss log 2
    assert before.margin == pytest.approx(0.0, abs=1e-5)
    assert before.dpo_loss == pytest.approx(0.6931, abs=1e-3)
    assert after.loss < before.loss
    assert after.dpo_loss < before.dpo_loss
    assert after.margin > before.margin + 0.5
    assert after.accuracy == 1.0
    assert after.chosen_logps > before.chosen_logps  # the SFT term pulls chosen text up
    assert len(report.losses) == 10 and report.losses[-1] < report.losses[0]
    assert "reward margin" in summary(report)


def test_saved_folder_holds_peft_adapters_and_the_record(trained, base_dir):
    folder, report, _ = trained
    assert (folder / ADAPTER_CONFIG).is_file() and (folder / ADAPTER_WEIGHTS).is_file()
    config = json.loads((folder / ADAPTER_CONFIG).read_text())
    assert config["peft_type"] == "LORA" and config["r"] == 4
    assert set(config["target_modules"]) == {"q_proj", "k_proj", "v_proj", "o_proj",
                                             "gate_proj", "up_proj", "down_proj"}
    record = json.loads((folder / DPO_RECORD).read_text())
    assert record["base_model"] == str(base_dir) and record["base"]["fingerprint"]
    assert record["before"]["loss"] == pytest.approx(report.before.loss)
    assert record["after"]["margin"] == pytest.approx(report.after.margin)
    assert record["settings"]["beta"] == 0.1 and record["settings"]["sft_weight"] == 0.5
    assert record["note"] == "test"


def logits(model, ids=(5, 17, 42, 8, 99)) -> torch.Tensor:
    with torch.no_grad():
        return model(torch.tensor([list(ids)])).logits


def test_adapter_loads_merged_and_changes_the_output(trained, base_dir):
    folder, _, peft_model = trained
    base, _, _ = load_writer(str(base_dir))
    plain = logits(base)
    merged = apply_writer_adapter(base, folder, str(base_dir))
    assert not hasattr(merged, "peft_config")  # merged back into a plain transformers model
    adapted = logits(merged)
    assert not torch.allclose(adapted, plain, atol=1e-3)
    assert torch.allclose(adapted, logits(peft_model), atol=1e-4)


def test_registry_loads_the_writer_with_the_adapter_then_quantizes(trained, base_dir,
                                                                   tmp_path):
    from models.registry import load_language_model

    folder, _, peft_model = trained
    settings = Settings.from_env({}, home=tmp_path, model=str(base_dir), quantize="none",
                                 writer_adapter=str(folder))
    lm = load_language_model(settings)
    assert lm.name.endswith(folder.name)
    assert torch.allclose(logits(lm.model), logits(peft_model), atol=1e-4)
    quantized = load_language_model(Settings.from_env(
        {}, home=tmp_path, model=str(base_dir), quantize="int8", writer_adapter=str(folder)))
    assert quantized.quantize == "int8"
    with peft_model.disable_adapter():
        plain = logits(peft_model)
    near = logits(quantized.model)  # int8 of the merged weights: near the adapted model
    assert (near - logits(peft_model)).abs().mean() < (near - plain).abs().mean()


def test_adapter_for_another_base_model_is_refused(trained, tmp_path):
    from models.registry import load_language_model

    folder, _, _ = trained
    other = build_tiny_lm(tmp_path / "other", seed=1)  # same shapes, other weights
    with pytest.raises(AdapterError, match="trained on .*different fingerprint"):
        load_language_model(Settings.from_env({}, home=tmp_path, model=str(other),
                                              quantize="none", writer_adapter=str(folder)))


def test_a_folder_that_is_not_an_adapter_is_refused(tmp_path, base_dir):
    from models.registry import load_language_model

    def load(adapter):
        return load_language_model(Settings.from_env({}, home=tmp_path, model=str(base_dir),
                                                     writer_adapter=str(adapter)))

    with pytest.raises(AdapterError, match="no such folder"):
        load(tmp_path / "missing")
    with pytest.raises(AdapterError, match="is not a writer adapter folder"):
        load(base_dir)
    with pytest.raises(ComposerError, match="transformers writer only"):
        load_language_model(Settings.from_env({}, home=tmp_path,
                                              model="tests.fakes:article_factory",
                                              writer_adapter=str(base_dir)))


def test_first_ctrl_c_stops_after_the_step_and_keeps_the_adapters(base_dir):
    model, tokenizer, _ = load_writer(str(base_dir))
    stop = threading.Event()

    def progress(done, total, loss):
        if done == 2:
            stop.set()

    peft_model, report = train_dpo(model, tokenizer, synthetic_records(4),
                                   DPOSettings(steps=50, sft_weight=0, **FAST),
                                   progress=progress, stop=stop)
    assert (report.steps, report.stopped) == (2, True)
    assert report.after is not None and report.after.margin > report.before.margin
    assert report.after.loss == pytest.approx(report.after.dpo_loss)  # no SFT term


def test_read_pairs_accepts_the_export_format_and_says_what_is_wrong(tmp_path):
    path = tmp_path / "pairs.jsonl"
    good = {"prompt": [{"role": "user", "content": "q"}], "chosen": "new text",
            "rejected": [{"role": "assistant", "content": "old text"}], "kind": "body"}
    path.write_text(json.dumps(good) + "\n\n" + json.dumps(good) + "\n")
    records = read_pairs(path)
    assert len(records) == 2
    assert records[0]["chosen"] == [{"role": "assistant", "content": "new text"}]
    assert records[0]["kind"] == "body"
    with pytest.raises(FileNotFoundError, match="pairs export"):
        read_pairs(tmp_path / "none.jsonl")
    path.write_text(json.dumps(good) + "\n{oops\n")
    with pytest.raises(ValueError, match=r"pairs.jsonl:2: not JSON"):
        read_pairs(path)
    with pytest.raises(ValueError, match="missing 'rejected'"):
        check_record({"prompt": "q", "chosen": "a"})
    with pytest.raises(ValueError, match="the same text"):
        check_record({"prompt": "q", "chosen": "a", "rejected": "a"})
    with pytest.raises(ValueError, match="role"):
        check_record({"prompt": [{"content": "q"}], "chosen": "a", "rejected": "b"})


def test_without_a_chat_template_rows_are_rendered_like_the_writer_does():
    rows = training_rows(synthetic_records(1), build_tokenizer(chat_template=False))
    assert rows[0]["prompt"] == ("system: Write about bridges.\nuser: Write paragraph 0 "
                                 "about 100 words.\nassistant: ")
    assert rows[0]["chosen"] == GOOD[0] and rows[0]["rejected"] == BAD[0]


def test_settings_are_checked():
    with pytest.raises(ValueError, match="beta"):
        DPOSettings(beta=0).check()
    with pytest.raises(ValueError, match="steps"):
        DPOSettings(steps=0).check()
    with pytest.raises(ValueError, match="no preference pairs"):
        train_dpo(None, None, [], DPOSettings())
