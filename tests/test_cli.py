"""The CLI through main() and as a real process (interrupted by SIGTERM)."""

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from composer.cli import main
from tests.support_pipeline import png_bytes

ROOT = Path(__file__).resolve().parents[1]
FAKE = "tests.fakes:scripted_factory"


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("COMPOSER_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    return tmp_path / "home"


def run(capsys, *argv):
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_compose_text_only_streams_saves_and_exports(home, tmp_path, capsys):
    out = tmp_path / "a.md"
    code, stdout, stderr = run(capsys, "--model", FAKE, "compose", "Lighthouses", "--words", "300",
                               "--text-only", "--out", str(out))
    assert code == 0, stderr
    assert "Saved document" in stdout and "done" in stdout
    assert "Writing section 1 of 2" in stderr and "%" in stderr  # progress bar lines
    assert out.read_text().startswith("# Lighthouses")
    doc_id = stdout.split("Saved document ")[1].split()[0]
    code, listing, _ = run(capsys, "list")
    assert doc_id in listing and "done" in listing and "Lighthouses" in listing
    code, html_out, _ = run(capsys, "export", doc_id, "--format", "html")
    assert code == 0 and html_out.startswith("<!doctype html>")


def test_compose_with_images_uses_the_seeded_default_library(home, tmp_path, capsys):
    out = tmp_path / "a.zip"
    code, stdout, stderr = run(capsys, "--model", FAKE, "compose", "Harbors", "--words", "400",
                               "--images", "2", "--quiet", "--out", str(out))
    assert code == 0, stderr
    doc_id = stdout.strip()
    assert len(doc_id) == 32
    import zipfile

    names = zipfile.ZipFile(out).namelist()
    assert sum(name.startswith("images/") for name in names) == 2
    code, listing, _ = run(capsys, "library", "list")
    assert listing.count("\n") >= 10


@pytest.mark.parametrize("argv, message", [
    (["compose", ""], "instruction is empty"),
    (["compose", "x" * 9000], "9,000 characters; the limit is 8,000"),
    (["compose", "Tea", "--words", "5"], "target words is 5; it must be between 50 and 10000"),
    (["compose", "Tea", "--lang", "xx"], "'xx' is not supported"),
    (["compose", "Tea", "--images", "40"], "images is 40; it must be between 1 and 15"),
    (["compose", "Tea", "--out", "a.docx"], "unknown extension"),
    (["export", "0" * 32], "no document with id"),
])
def test_bad_input_exits_with_a_clear_message(home, capsys, argv, message):
    code, _, stderr = run(capsys, "--model", FAKE, *argv)
    assert code in (1, 2)
    assert message in stderr
    assert "Traceback" not in stderr


def test_bad_images_value_is_reported_by_the_parser(home, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["compose", "Tea", "--images", "many"])
    assert exit_info.value.code == 2
    assert "--images must be 'auto' or a number, got 'many'" in capsys.readouterr().err


def test_library_add_reports_broken_files_and_keeps_the_good_ones(home, tmp_path, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "good.png").write_bytes(png_bytes((10, 200, 30)))
    (folder / "good.png.txt").write_text("a green field")
    (folder / "broken.png").write_bytes(png_bytes((1, 2, 3))[:60])
    (folder / "notes.png").write_text("not an image")
    code, stdout, stderr = run(capsys, "library", "add", str(folder), "--license", "CC0")
    assert code == 2
    assert "Added 1" in stdout and "failed 2" in stdout
    assert "broken.png" in stderr and "notes.png" in stderr
    code, listing, _ = run(capsys, "library", "list")
    assert "a green field" in listing


def test_sigterm_mid_composition_keeps_the_text_and_marks_interrupted(tmp_path):
    env = {**os.environ, "COMPOSER_HOME": str(tmp_path / "home"), "PYTHONPATH": str(ROOT)}
    env.pop("DATABASE_URL", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "composer", "--model", "tests.fakes:slow_scripted_factory",
         "compose", "A slow article", "--words", "1000", "--text-only", "--quiet"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    database = tmp_path / "home" / "composer.db"
    deadline = time.time() + 60
    blocks = 0
    while time.time() < deadline and blocks < 2:
        time.sleep(0.3)
        if database.exists():
            try:
                with sqlite3.connect(database) as connection:
                    blocks = connection.execute("select count(*) from blocks").fetchone()[0]
            except sqlite3.OperationalError:
                pass  # tables not created yet
    assert blocks >= 2, "the composition never saved a paragraph"
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 130, stderr
    assert "Interrupted" in stderr
    with sqlite3.connect(database) as connection:
        status, = connection.execute("select status from documents").fetchone()
        saved = connection.execute("select count(*) from blocks").fetchone()[0]
    assert status == "interrupted"
    assert saved >= blocks
