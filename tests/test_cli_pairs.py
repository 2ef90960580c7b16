"""The `pairs`, `loop` and `train-dpo` commands on a real SQLite database (and, for
train-dpo, a tiny random Llama saved to a folder)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from composer.cli import main
from composer.config import Settings
from composer.types import Outline, PreferencePair, SectionPlan, TextBlock
from tests.tiny_models import build_tiny_lm


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("COMPOSER_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("COMPOSER_WRITER_ADAPTER", raising=False)
    return tmp_path / "home"


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    return build_tiny_lm(tmp_path_factory.mktemp("cli-dpo-base"))


def run(capsys, *argv):
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def pair(kind: str, chosen: str, rejected: str, origin: str = "compose") -> PreferencePair:
    return PreferencePair([{"role": "system", "content": "Write an article."},
                           {"role": "user", "content": f"Write the {kind} paragraph."}],
                          rejected=rejected, chosen=chosen, op="manual", kind=kind,
                          rejected_origin=origin)


def fill_database(home: Path) -> str:
    """One 3-section document (5 paragraphs, ratings) and 3 pairs; returns the document id."""
    from storage.db import Database
    from storage.feedback import FeedbackRepository
    from storage.pairs import PairRepository

    database = Database.open(Settings.from_env())
    try:
        from storage.documents import DocumentRepository

        docs = DocumentRepository(database)
        outline = Outline("Bridges", [SectionPlan("a"), SectionPlan("b"), SectionPlan("c")])
        doc = docs.create("Bridges", "Bridges", "en", {}, outline=outline)
        blocks = docs.append_blocks(doc.id, [
            TextBlock("Intro.", 0), TextBlock("Body one.", 1), TextBlock("Body two.", 1,
                                                                         origin="manual"),
            TextBlock("Body three.", 1, origin="rewrite"), TextBlock("The end.", 2)])
        feedback = FeedbackRepository(database)
        feedback.rate(doc.id, blocks[0].id, "ann", 1, kind="introduction", origin="compose")
        feedback.rate(doc.id, blocks[1].id, "ann", -1, kind="body", origin="compose")
        feedback.rate(doc.id, blocks[4].id, "ann", 1, kind="conclusion", origin="compose")
        feedback.rate(doc.id, None, "ann", 1)
        pairs = PairRepository(database)
        pairs.add(pair("body", "The river runs past the old stone bridge.",
                       "A garden of tomatoes grows."))
        pairs.add(pair("body", "Engineers measured the orbit of the small moon.",
                       "Café owners serve espresso.", origin="expand"))
        pairs.add(pair("introduction", "History is written in letters.",
                       "A garden of tomatoes grows beside the harbor."))
        return doc.id
    finally:
        database.dispose()


def test_pairs_count_and_export(home, tmp_path, capsys):
    code, out, _ = run(capsys, "pairs", "count")
    assert (code, out.strip()) == (0, "0")
    code, out, err = run(capsys, "pairs", "export", "--out", str(tmp_path / "empty.jsonl"))
    assert code == 0 and "Wrote 0" in out and "No pairs yet" in err
    doc_id = fill_database(home)
    code, out, _ = run(capsys, "pairs", "count")
    assert out.strip() == "3"
    target = tmp_path / "out" / "pairs.jsonl"
    code, out, _ = run(capsys, "pairs", "export", "--out", str(target))
    assert code == 0 and f"Wrote 3 preference pairs to {target}" in out
    records = [json.loads(line) for line in target.read_text(encoding="utf-8").splitlines()]
    assert [r["kind"] for r in records] == ["body", "body", "introduction"]
    first = records[0]
    assert first["chosen"] == [{"role": "assistant",
                                "content": "The river runs past the old stone bridge."}]
    assert first["rejected"][0]["content"] == "A garden of tomatoes grows."
    assert first["prompt"][1] == {"role": "user", "content": "Write the body paragraph."}
    assert first["id"] == 1 and first["created_at"]
    assert records[1]["rejected_origin"] == "expand"
    assert doc_id


def test_loop_report_and_sample(home, tmp_path, capsys):
    fill_database(home)
    code, out, _ = run(capsys, "loop", "report", "--json")
    assert code == 0
    report = json.loads(out)
    kinds = {row["name"]: row for row in report["by_kind"]}
    assert (report["paragraphs"], report["ratings"], report["pairs"]) == (5, 3, 3)
    body = kinds["body"]
    # 3 body paragraphs (2 still the model's), 1 dislike, 2 pairs
    assert (body["paragraphs"], body["model_paragraphs"], body["dislikes"], body["pairs"]) == (
        3, 2, 1, 2)
    assert body["like_rate"] == 0.0 and body["score"] == 0.0
    assert kinds["introduction"]["rewrite_rate"] == pytest.approx(0.5)
    assert kinds["introduction"]["score"] == pytest.approx(0.5)
    assert kinds["conclusion"]["score"] == 1.0  # liked, never rewritten: never drawn
    code, out, _ = run(capsys, "loop", "report")
    assert "Weakest kind: body" in out
    batch_file = tmp_path / "batch.jsonl"
    code, out, _ = run(capsys, "loop", "sample", "--size", "30", "--out", str(batch_file),
                       "--seed", "2")
    assert code == 0 and "Wrote 30 pairs" in out
    drawn = [json.loads(line) for line in batch_file.read_text(encoding="utf-8").splitlines()]
    kinds_drawn = [record["kind"] for record in drawn]
    # weights: body 1 - 0 = 1, introduction 1 - 0.5 = 0.5 -> about 2/3 body
    assert len(drawn) == 30 and set(kinds_drawn) <= {"body", "introduction"}
    assert 12 <= kinds_drawn.count("body") <= 28
    assert "prompt" in drawn[0] and "chosen" in drawn[0]


def test_loop_sample_without_pairs_says_what_to_do(home, tmp_path, capsys):
    code, _, err = run(capsys, "loop", "sample", "--size", "3", "--out",
                       str(tmp_path / "b.jsonl"))
    assert code == 2 and "no preference pairs yet" in err


def test_train_dpo_end_to_end_from_the_database(home, tmp_path, capsys, tiny_dir):
    fill_database(home)
    out_dir = tmp_path / "adapters"
    code, out, err = run(capsys, "train-dpo", "--model", str(tiny_dir), "--out", str(out_dir),
                         "--steps", "3", "--lr", "1e-2", "--rank", "4", "--alpha", "8",
                         "--batch-size", "3", "--max-length", "128", "--device", "cpu")
    assert code == 0, err
    assert "Trained 3/3 steps on 3 pairs" in out and "reward margin" in out
    assert f"COMPOSER_WRITER_ADAPTER={out_dir}" in out
    assert "step" in err  # the tqdm bar
    assert len((out_dir / "pairs.jsonl").read_text().splitlines()) == 3
    record = json.loads((out_dir / "dpo.json").read_text())
    assert record["base_model"] == str(tiny_dir) and record["steps"] == 3
    assert record["after"]["margin"] > record["before"]["margin"]
    assert (out_dir / "adapter_model.safetensors").is_file()


def test_train_dpo_input_errors_exit_2(home, tmp_path, capsys, tiny_dir):
    code, _, err = run(capsys, "train-dpo", "--model", str(tiny_dir), "--out",
                       str(tmp_path / "a"))
    assert code == 2 and "holds no preference pairs" in err
    code, _, err = run(capsys, "train-dpo", "--pairs", str(tmp_path / "nope.jsonl"), "--out",
                       str(tmp_path / "a"), "--model", str(tiny_dir))
    assert code == 2 and "pairs export" in err
    code, _, err = run(capsys, "train-dpo", "--out", str(tmp_path / "a"), "--beta", "0")
    assert code == 2 and "beta" in err
    code, _, err = run(capsys, "train-dpo", "--out", str(tmp_path / "a"), "--model",
                       "tests.fakes:article_factory")
    assert code == 2 and "plugin" in err
