"""composer/train_plora.py: PLoRA + projector training on (image, caption) pairs, and the
`train-plora` command, on a tiny random Llama, a tiny CLIP vision tower and real images in a
real ImageStore on SQLite."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import torch
from PIL import Image, ImageDraw

from composer.train_plora import (
    IGNORE,
    TrainConfig,
    build_batch,
    caption_loss,
    library_pairs,
    save_trained,
    train_plora,
)
from models.adapters import PLORA_DIR, TRAIN_JSON, VISION_ADAPTER, load_trained
from models.interleave import IMAGE_TOKEN_ID
from models.plora import plora_layers
from models.vision import ImageEncoder
from tests.support_library import make_store
from tests.support_storage import photo_bytes
from tests.tiny_models import (
    build_tiny_clip_vision,
    build_tiny_llama,
    build_tiny_lm,
    build_tokenizer,
)

CAPTIONS = ["The river runs past the old stone bridge.", "A garden of tomatoes grows.",
            "Engineers measured the orbit of the small moon.", "History is written in letters."]
TILE = 28  # the tiny tower runs at 28 px: 2x2 patches of 14 px
CONFIG = {"batch_size": 2, "lr": 1e-2, "rank": 4, "alpha": 8, "dropout": 0.0}


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer()


@pytest.fixture(scope="module")
def vision_dir(tmp_path_factory) -> Path:
    return build_tiny_clip_vision(tmp_path_factory.mktemp("tiny-vision"))


def fresh_lm(tokenizer, seed: int = 0):
    return build_tiny_llama(len(tokenizer), tokenizer.eos_token_id, tokenizer.pad_token_id,
                            seed=seed)


def fresh_encoder(vision_dir: Path, seed: int = 0, **options) -> ImageEncoder:
    return ImageEncoder.from_pretrained(vision_dir, 32, image_size=TILE,
                                        max_tiles=options.pop("max_tiles", 1), seed=seed,
                                        **options)


def drawn(color: tuple[int, int, int], size=(40, 30)) -> Image.Image:
    """A real picture: a coloured background with a shape of the opposite colour."""
    image = Image.new("RGB", size, color)
    ImageDraw.Draw(image).ellipse((5, 5, 25, 25), fill=tuple(255 - c for c in color))
    return image


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    """(path, caption) pairs from a real library: two scikit-image photos and two drawn ones
    with captions, plus two images without a caption (skipped)."""
    store = make_store(tmp_path_factory.mktemp("library"))
    store.add(photo_bytes("chelsea.png", 0.1), name="cat.png", caption=CAPTIONS[0])
    store.add(photo_bytes("coffee.png", 0.1), name="coffee.png", caption=CAPTIONS[1])
    store.add(photo_bytes("astronaut.png", 0.1), name="astronaut.png", caption="")
    for number, color in enumerate([(200, 30, 30), (20, 40, 220)]):
        buffer = io.BytesIO()
        drawn(color).save(buffer, "PNG")
        store.add(buffer.getvalue(), name=f"d{number}.png", caption=CAPTIONS[2 + number],
                  allow_near_duplicate=True)
    buffer = io.BytesIO()
    drawn((20, 220, 40)).save(buffer, "PNG")
    store.add(buffer.getvalue(), name="plain.png", caption="   ", allow_near_duplicate=True)
    found = library_pairs(store)
    yield found
    store.db.dispose()


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {key: value.detach().clone() for key, value in module.state_dict().items()}


def test_library_pairs_keep_captioned_images_only_and_honour_the_limit(pairs,
                                                                       tmp_path_factory):
    assert [caption for _, caption in pairs] == CAPTIONS
    assert all(Path(path).is_file() for path, _ in pairs)
    store = make_store(tmp_path_factory.mktemp("library-limit"))
    for number in range(3):
        buffer = io.BytesIO()
        drawn((number * 60, 10, 10)).save(buffer, "PNG")
        store.add(buffer.getvalue(), caption=f"picture {number}" if number else "",
                  allow_near_duplicate=True)
    assert [caption for _, caption in library_pairs(store, limit=1)] == ["picture 1"]
    assert len(library_pairs(store)) == 2
    with pytest.raises(ValueError, match="limit"):
        library_pairs(store, limit=0)
    store.db.dispose()


def test_labels_cover_the_answer_only(tokenizer, vision_dir, pairs):
    model, encoder = fresh_lm(tokenizer), fresh_encoder(vision_dir)
    batch, labels = build_batch(model, tokenizer, encoder, pairs[:2])
    assert batch.padding_side == "right"
    assert (labels[batch.image_mask] == IGNORE).all()
    assert (batch.text_token_ids[batch.image_mask] == IMAGE_TOKEN_ID).all()
    for row, (_, caption) in enumerate(pairs[:2]):
        kept = labels[row][labels[row] != IGNORE].tolist()
        assert tokenizer.decode(kept) == caption + "<|im_end|>\n"
        # everything before the answer (role headers, image, prompt) is ignored
        first = int((labels[row] != IGNORE).nonzero()[0])
        prompt = tokenizer.decode([t for t in batch.text_token_ids[row, :first].tolist()
                                   if t != IMAGE_TOKEN_ID])
        assert prompt.endswith("Describe this image.<|im_end|>\n<|im_start|>assistant\n")
        assert (labels[row, batch.lengths[row]:] == IGNORE).all()  # padding


def test_training_lowers_the_loss_and_changes_only_the_adapters(tokenizer, vision_dir, pairs):
    model, encoder = fresh_lm(tokenizer), fresh_encoder(vision_dir)
    base_lm, tower = snapshot(model), snapshot(encoder.tower)
    projector = snapshot(encoder.projector)
    newline = encoder.newline_embedding.detach().clone()
    seen = []
    report = train_plora(model, tokenizer, encoder, pairs, TrainConfig(steps=30, **CONFIG),
                         progress=lambda done, total, loss: seen.append((done, total)))
    assert report.steps == 30 and len(report.losses) == 30 and not report.stopped
    assert seen[-1] == (30, 30)
    first, last = report.losses[:5], report.losses[-5:]
    assert sum(last) / 5 < sum(first) / 5
    # the frozen bases are bit-identical (PLoRA layers keep the base under ".base")
    after = {key.replace(".base.", "."): value for key, value in model.state_dict().items()
             if "Plora_" not in key}
    assert after.keys() == base_lm.keys()
    assert all(torch.equal(after[key], base_lm[key]) for key in base_lm)
    assert all(torch.equal(value, tower[key])
               for key, value in encoder.tower.state_dict().items())
    # what trains did change
    # (in the last block only k/v at image positions reach the loss: the image positions'
    # own outputs are not labelled, so the other last-block adapters get no gradient)
    changed = {name for name, layer in plora_layers(model).items()
               if layer.Plora_B.weight.abs().sum() > 0}
    assert {name for name in plora_layers(model) if ".layers.0." in name} <= changed
    assert {"model.layers.1.self_attn.k_proj", "model.layers.1.self_attn.v_proj"} <= changed
    assert not all(torch.equal(value, projector[key])
                   for key, value in encoder.projector.state_dict().items())
    assert not torch.equal(encoder.newline_embedding, newline)
    assert not model.training and not encoder.training


def test_text_only_forward_after_training_equals_the_base_model(tokenizer, vision_dir, pairs):
    model, encoder = fresh_lm(tokenizer), fresh_encoder(vision_dir)
    ids = torch.tensor([tokenizer("The river runs past the bridge.")["input_ids"]])
    with torch.no_grad():
        expected = model(input_ids=ids).logits
    train_plora(model, tokenizer, encoder, pairs, TrainConfig(steps=5, **CONFIG))
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids).logits, expected)


def test_training_is_deterministic_and_stops_when_asked(tokenizer, vision_dir, pairs):
    import threading

    runs = []
    for _ in range(2):
        model, encoder = fresh_lm(tokenizer), fresh_encoder(vision_dir)
        runs.append(train_plora(model, tokenizer, encoder, pairs,
                                TrainConfig(steps=4, seed=3, **CONFIG)).losses)
    assert runs[0] == runs[1]
    stop = threading.Event()
    model, encoder = fresh_lm(tokenizer), fresh_encoder(vision_dir)

    def progress(done, total, loss):
        if done == 2:
            stop.set()

    report = train_plora(model, tokenizer, encoder, pairs, TrainConfig(steps=10, **CONFIG),
                         progress=progress, stop=stop)
    assert report.stopped and report.steps == 2
    with pytest.raises(ValueError, match="no \\(image, caption\\) pairs"):
        train_plora(model, tokenizer, encoder, [], TrainConfig(steps=1))


def test_checkpoint_reloads_onto_fresh_bases_with_identical_outputs(tokenizer, vision_dir,
                                                                   pairs, tmp_path):
    model, encoder = fresh_lm(tokenizer), fresh_encoder(vision_dir)
    config = TrainConfig(steps=6, **CONFIG)
    report = train_plora(model, tokenizer, encoder, pairs, config)
    out = save_trained(tmp_path / "ckpt", model, encoder, config, report,
                       base_model="tiny-llama", vision=str(vision_dir))
    assert (out / PLORA_DIR / "adapter_model.safetensors").is_file()
    assert (out / VISION_ADAPTER).is_file()
    record = json.loads((out / TRAIN_JSON).read_text())
    assert record["steps"] == 6 and record["losses"] == report.losses
    assert record["base_model"] == "tiny-llama" and record["vision"] == str(vision_dir)
    assert record["config"]["rank"] == 4

    loaded, loaded_encoder = fresh_lm(tokenizer), fresh_encoder(vision_dir, seed=7)
    assert load_trained(out, loaded, loaded_encoder)["steps"] == 6
    with torch.no_grad():
        batch, labels = build_batch(model, tokenizer, encoder, pairs)
        again, again_labels = build_batch(loaded, tokenizer, loaded_encoder, pairs)
        assert torch.equal(batch.inputs_embeds, again.inputs_embeds)
        assert torch.equal(labels, again_labels)
        from models.plora import image_mask

        with image_mask(model, batch.image_mask):
            expected = model(**batch.model_inputs()).logits
        with image_mask(loaded, again.image_mask):
            got = loaded(**again.model_inputs()).logits
        assert torch.equal(got, expected)
        assert torch.equal(caption_loss(loaded, again, labels),
                           caption_loss(model, batch, labels))


def test_load_trained_refuses_other_bases(tokenizer, vision_dir, pairs, tmp_path):
    model, encoder = fresh_lm(tokenizer), fresh_encoder(vision_dir)
    config = TrainConfig(steps=1, **CONFIG)
    out = save_trained(tmp_path / "ckpt", model, encoder, config,
                       train_plora(model, tokenizer, encoder, pairs, config),
                       base_model="tiny-llama", vision="tiny-clip")
    with pytest.raises(ValueError, match="language model 'tiny-llama'.*weights"):
        load_trained(out, fresh_lm(tokenizer, seed=1), fresh_encoder(vision_dir))
    other_tower = build_tiny_clip_vision(tmp_path / "other-vision", seed=5)
    with pytest.raises(ValueError, match="vision tower 'tiny-clip'.*weights"):
        load_trained(out, fresh_lm(tokenizer), fresh_encoder(other_tower))
    with pytest.raises(ValueError, match="vision tower.*image_size"):
        load_trained(out, fresh_lm(tokenizer),
                     ImageEncoder.from_pretrained(vision_dir, 32, image_size=56, max_tiles=1))
    with pytest.raises(FileNotFoundError, match="not a train-plora checkpoint"):
        load_trained(tmp_path, fresh_lm(tokenizer), fresh_encoder(vision_dir))


# --- the command line -----------------------------------------------------------------


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("COMPOSER_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    return tmp_path / "home"


def library_of_home(captioned: bool):
    """The ImageStore the CLI will use (COMPOSER_HOME), with three images."""
    from composer.config import Settings
    from composer.services import Services

    store = Services(Settings.from_env()).images
    for number, name in enumerate(("chelsea.png", "coffee.png", "rocket.jpg")):
        store.add(photo_bytes(name, 0.1), name=name,
                  caption=CAPTIONS[number] if captioned else "")
    return store


@pytest.fixture(scope="module")
def lm_dir(tmp_path_factory) -> Path:
    return build_tiny_lm(tmp_path_factory.mktemp("tiny-lm"))


def run_cli(capsys, *argv):
    from composer.cli import main

    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_trains_and_writes_a_loadable_checkpoint(home, lm_dir, vision_dir, tmp_path,
                                                      capsys):
    store = library_of_home(captioned=True)
    out = tmp_path / "adapters"
    code, stdout, stderr = run_cli(
        capsys, "train-plora", "--model", str(lm_dir), "--vision", str(vision_dir), "--out",
        str(out), "--steps", "3", "--batch-size", "2", "--rank", "4", "--alpha", "8",
        "--image-size", str(TILE), "--max-tiles", "1", "--seed", "1", "--limit", "2",
        "--device", "cpu")
    store.db.dispose()
    assert code == 0, stderr
    assert "Trained 3 steps" in stdout and str(out) in stdout
    assert "loss" in stderr and "3/3" in stderr  # the tqdm bar
    record = json.loads((out / TRAIN_JSON).read_text())
    assert record["steps"] == 3 and len(record["losses"]) == 3 and record["pairs"] == 2
    assert record["base_model"] == str(lm_dir) and record["vision"] == str(vision_dir)
    assert record["args"]["limit"] == 2 and record["config"]["seed"] == 1
    from composer.train_plora import load_language_model

    model, _ = load_language_model(str(lm_dir))
    encoder = ImageEncoder.from_pretrained(vision_dir, 32, image_size=TILE, max_tiles=1)
    load_trained(out, model, encoder)
    assert plora_layers(model)
    # training again from the saved projector
    code, stdout, stderr = run_cli(
        capsys, "train-plora", "--model", str(lm_dir), "--vision", str(vision_dir), "--out",
        str(tmp_path / "again"), "--steps", "1", "--rank", "4", "--image-size", str(TILE),
        "--max-tiles", "0", "--resume-projector", str(out), "--device", "cpu")
    assert code == 0, stderr


def test_cli_refuses_a_library_without_captions(home, lm_dir, vision_dir, tmp_path, capsys):
    store = library_of_home(captioned=False)
    code, _, stderr = run_cli(capsys, "train-plora", "--model", str(lm_dir), "--vision",
                              str(vision_dir), "--out", str(tmp_path / "out"))
    store.db.dispose()
    assert code == 2
    assert "the library has no captioned images" in stderr and "Traceback" not in stderr
    assert not (tmp_path / "out").exists()


def test_cli_refuses_a_missing_model_folder(home, vision_dir, tmp_path, capsys):
    missing = tmp_path / "no-such-model"
    code, _, stderr = run_cli(capsys, "train-plora", "--model", str(missing), "--vision",
                              str(vision_dir), "--out", str(tmp_path / "out"))
    assert code == 2
    assert f"language model folder '{missing}' does not exist" in stderr
    code, _, stderr = run_cli(capsys, "train-plora", "--model", str(missing), "--vision",
                              str(tmp_path / "nope"), "--out", str(tmp_path / "out"))
    assert code == 2 and "does not exist" in stderr


def test_ctrl_c_stops_training_and_saves_what_was_trained(home, lm_dir, vision_dir, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    store = library_of_home(captioned=True)
    store.db.dispose()
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "COMPOSER_HOME": str(home), "PYTHONPATH": str(root)}
    out, log = tmp_path / "adapters", tmp_path / "stderr.txt"
    with log.open("w") as errors:
        process = subprocess.Popen(
            [sys.executable, "-m", "composer", "train-plora", "--model", str(lm_dir),
             "--vision", str(vision_dir), "--out", str(out), "--steps", "100000", "--rank",
             "4", "--image-size", str(TILE), "--max-tiles", "0", "--device", "cpu"],
            cwd=root, env=env, stdout=subprocess.PIPE, stderr=errors, text=True)
        deadline = time.time() + 90
        while time.time() < deadline and "loss " not in log.read_text():
            time.sleep(0.2)
        assert "loss " in log.read_text(), "training never made a step"
        process.send_signal(signal.SIGINT)
        stdout, _ = process.communicate(timeout=60)
    assert process.returncode == 130, log.read_text()
    assert "Stopping after the current step" in log.read_text()
    assert "Stopped" in stdout
    record = json.loads((out / TRAIN_JSON).read_text())
    assert record["stopped"] and 1 <= record["steps"] < 100000
    assert len(record["losses"]) == record["steps"]
    assert (out / VISION_ADAPTER).is_file() and (out / PLORA_DIR).is_dir()
