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
FAKE = "tests.fakes:article_factory"


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


def test_compose_with_images_uses_the_seeded_default_library(home, tmp_path, capsys,
                                                             monkeypatch):
    # The scripted model's captions are not about the default photos: with the calibrated
    # threshold nothing would fit (tests/test_image_fit.py covers that); here any match goes.
    monkeypatch.setenv("COMPOSER_IMAGE_THRESHOLD", "0")
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


def test_library_add_skips_near_duplicates_unless_kept_and_list_filters(home, tmp_path,
                                                                        capsys):
    from tests.support_storage import photo_bytes

    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    (first / "cat.png").write_bytes(photo_bytes("chelsea.png"))
    (second / "cat-small.png").write_bytes(photo_bytes("chelsea.png", 0.5))
    code, stdout, _ = run(capsys, "library", "add", str(first), "--caption", "my tabby cat",
                          "--license", "CC0 1.0")
    assert code == 0 and "Added 1" in stdout
    code, stdout, stderr = run(capsys, "library", "add", str(second))
    assert code == 0 and "near-duplicates skipped 1" in stdout
    assert "cat-small.png: looks like" in stderr and "--keep-near-duplicates" in stderr
    code, stdout, stderr = run(capsys, "library", "add", str(second), "--keep-near-duplicates")
    assert "Added 1" in stdout and "have no caption" in stderr
    code, listing, _ = run(capsys, "library", "list", "--search", "TABBY")
    assert listing.count("\n") == 1 and "my tabby cat" in listing
    code, listing, _ = run(capsys, "library", "list", "--license", "CC0 1.0")
    assert "my tabby cat" in listing and "(no caption)" not in listing


def test_sigterm_mid_composition_keeps_the_text_and_marks_interrupted(tmp_path):
    env = {**os.environ, "COMPOSER_HOME": str(tmp_path / "home"), "PYTHONPATH": str(ROOT)}
    env.pop("DATABASE_URL", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "composer", "--model", "tests.fakes:slow_article_factory",
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


# -- big imports: interrupted library add ------------------------------------------------------


def captioned_folder(folder: Path, count: int) -> Path:
    """`count` small one-colour PNGs (no perceptual hash) with sidecar captions."""
    from tests.support_library import png_bytes as flat_png

    folder.mkdir(parents=True)
    for index in range(count):
        (folder / f"square{index}.png").write_bytes(flat_png((index * 20, 90, 200)))
        (folder / f"square{index}.png.txt").write_text(f"a blue square number {index}")
    return folder


def caption_vectors(home: Path) -> int:
    with sqlite3.connect(home / "composer.db") as connection:
        return connection.execute("select count(*) from image_embeddings where "
                                  "kind = 'caption'").fetchone()[0]


@pytest.mark.parametrize("stage, expected", [
    ("adding files", "Interrupted: 2 of 5 files are done and saved; run the same "
                     "`library add` again"),
    ("indexing captions", "Interrupted while indexing captions: 2 of 5 images are done and "
                          "saved; run `python -m composer library index` to finish indexing"),
])
def test_an_interrupted_library_add_says_what_is_kept_and_library_index_finishes(
        home, tmp_path, capsys, monkeypatch, stage, expected):
    from composer.cli_library import StageBars
    from composer.retrieval import retriever as retrieval

    monkeypatch.setattr(retrieval, "INDEX_BATCH", 2)
    show = StageBars.__call__

    def interrupt_at_two(self, done, total, reported):
        show(self, done, total, reported)
        if reported == stage and done == 2:
            raise KeyboardInterrupt  # what Ctrl-C or the CLI's SIGTERM handler raises

    monkeypatch.setattr(StageBars, "__call__", interrupt_at_two)
    folder = captioned_folder(tmp_path / "squares", 5)
    code, _, stderr = run(capsys, "library", "add", str(folder))
    assert code == 130 and expected in stderr, stderr
    assert "text written so far" not in stderr
    monkeypatch.setattr(StageBars, "__call__", show)
    if stage == "adding files":
        code, stdout, stderr = run(capsys, "library", "add", str(folder))
        assert code == 0 and "Added 3, already present 2" in stdout, stderr
    else:
        assert caption_vectors(home) == 2
        code, stdout, stderr = run(capsys, "library", "index")
        assert code == 0 and "The library is indexed (5 images)" in stdout
        assert "indexing captions" in stderr and "3/3" in stderr  # the bar of what was left
    assert caption_vectors(home) == 5


def test_an_interrupted_library_command_gets_the_library_message(home, capsys, monkeypatch):
    from storage.images import ImageStore

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(ImageStore, "list", interrupted)
    code, _, stderr = run(capsys, "library", "list")
    assert code == 130
    assert "library index" in stderr and "text written so far" not in stderr


# -- library caption --------------------------------------------------------------------------

FAKE_CAPTIONER = "tests.fake_captioner:colour_captioner"


def model_captions(home: Path) -> list[tuple[str, str]]:
    """(caption, caption_source) of the images a model captioned, read from the database."""
    with sqlite3.connect(home / "composer.db") as connection:
        return connection.execute("select caption, caption_source from images where "
                                  "caption_source like 'model:%' order by id").fetchall()


def photo_folder(folder: Path, count: int, sidecar: bool = True) -> Path:
    """`count` uncaptioned photos, plus (when asked) one whose caption is in a sidecar file."""
    from tests.fake_captioner import BLUE, RED, photo

    folder.mkdir(parents=True)
    for seed in range(count):
        (folder / f"photo{seed}.png").write_bytes(photo(RED, seed))
    if sidecar:
        (folder / "typed.png").write_bytes(photo(BLUE, 99))
        (folder / "typed.png.txt").write_text("a blue door in a white wall")
    return folder


def test_library_caption_without_a_model_says_where_captions_come_from(home, capsys,
                                                                      monkeypatch):
    monkeypatch.delenv("COMPOSER_CAPTIONER", raising=False)
    code, _, stderr = run(capsys, "library", "caption")
    assert code == 2
    assert "library add --caption" in stderr and "Library view" in stderr
    assert "photo.jpg.txt" in stderr and "captions.json" in stderr
    assert "COMPOSER_CAPTIONER" in stderr and "--model" in stderr


def test_library_caption_fills_only_missing_captions_and_is_idempotent(home, tmp_path, capsys):
    folder = photo_folder(tmp_path / "photos", 2)
    code, stdout, _ = run(capsys, "library", "add", str(folder))
    assert code == 0 and "Added 3" in stdout
    code, stdout, stderr = run(capsys, "library", "caption", "--model", FAKE_CAPTIONER)
    assert code == 0, stderr
    assert "Captioned 2 images, failed 0" in stdout
    assert "2/2" in stderr and "100%" in stderr  # the progress bar
    captions = model_captions(home)
    assert len(captions) == 2
    assert all(caption.startswith("a red picture") and source == "model:fake-colour"
               for caption, source in captions)
    code, listing, _ = run(capsys, "library", "list")
    assert "a blue door in a white wall" in listing and "a red picture" in listing
    code, stdout, _ = run(capsys, "library", "caption", "--model", FAKE_CAPTIONER)
    assert code == 0 and "Captioned 0 images" in stdout


def test_library_caption_uses_the_configured_captioner_and_recaptions_on_request(
        home, tmp_path, capsys, monkeypatch):
    folder = photo_folder(tmp_path / "photos", 2, sidecar=False)
    run(capsys, "library", "add", str(folder))
    code, _, stderr = run(capsys, "library", "caption", "--model",
                          "tests.fake_captioner:other_captioner")
    assert code == 0, stderr
    monkeypatch.setenv("COMPOSER_CAPTIONER", FAKE_CAPTIONER)
    code, stdout, _ = run(capsys, "library", "caption")
    assert code == 0 and "Captioned 0 images" in stdout  # other models' captions are kept
    code, stdout, _ = run(capsys, "library", "caption", "--recaption")
    assert code == 0 and "Captioned 2 images" in stdout
    assert {source for _, source in model_captions(home)} == {"model:fake-colour"}


def test_library_caption_with_a_tiny_blip_folder(home, tmp_path, capsys):
    from tests.tiny_models import build_tiny_blip

    blip = build_tiny_blip(tmp_path / "blip")
    run(capsys, "library", "add", str(photo_folder(tmp_path / "photos", 2)))
    code, stdout, stderr = run(capsys, "library", "caption", "--model", str(blip))
    assert code == 0, stderr
    assert "Captioned 2 images" in stdout
    captions = model_captions(home)
    assert len(captions) == 2
    assert all(caption and source.startswith("model:captioner:") for caption, source in captions)


def test_library_caption_with_a_missing_model_folder_says_so(home, tmp_path, capsys):
    code, _, stderr = run(capsys, "library", "caption", "--model", str(tmp_path / "no-model"))
    assert code == 1
    assert "does not exist" in stderr and "Traceback" not in stderr


def test_ctrl_c_stops_captioning_and_the_next_run_continues(home, tmp_path, capsys):
    run(capsys, "library", "add", str(photo_folder(tmp_path / "photos", 5, sidecar=False)))
    env = {**os.environ, "COMPOSER_HOME": str(home), "PYTHONPATH": str(ROOT)}
    env.pop("DATABASE_URL", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "composer", "library", "caption", "--model",
         "tests.fake_captioner:slow_captioner"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline and not model_captions(home):
        time.sleep(0.2)
    assert model_captions(home), "the captioning job never saved a caption"
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=30)
    assert process.returncode == 130, stderr
    assert "Stopping after the current image" in stderr
    assert "left: run it again to continue" in stdout
    written = len(model_captions(home))
    assert 1 <= written < 5
    code, stdout, _ = run(capsys, "library", "caption", "--model", FAKE_CAPTIONER)
    assert code == 0 and f"Captioned {5 - written} images" in stdout
    assert len(model_captions(home)) == 5


def test_reference_images_are_described_to_the_writer(home, tmp_path, capsys):
    from tests.support_storage import photo_bytes

    photo = tmp_path / "cat.png"
    photo.write_bytes(photo_bytes("chelsea.png", 0.5))
    code, stdout, stderr = run(capsys, "--model", FAKE, "compose", "Cats at home", "--words", "200",
                               "--text-only", "--reference-image", str(photo))
    assert code == 0 and "reference images reach it as their captions" in stderr
    code, listing, _ = run(capsys, "list")
    doc_id = listing.split()[0]
    from composer.config import Settings
    from storage.db import Database
    from storage.documents import DocumentRepository

    database = Database(Settings.from_env().database_url)
    try:
        material = DocumentRepository(database).get(doc_id).options["material"]
    finally:
        database.dispose()
    assert material.startswith("Reference image 1 (cat.png):")
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    code, _, stderr = run(capsys, "--model", FAKE, "compose", "Cats", "--reference-image",
                          str(broken))
    assert code == 2 and "reference image broken.png" in stderr


def test_library_generate_adds_a_generated_picture_with_its_caption(home, capsys, monkeypatch):
    monkeypatch.delenv("COMPOSER_IMAGE_GENERATOR", raising=False)
    code, _, stderr = run(capsys, "library", "generate", "a red kite over the dunes")
    assert code == 2 and "COMPOSER_IMAGE_GENERATOR" in stderr
    monkeypatch.setenv("COMPOSER_IMAGE_GENERATOR", "tests.tiny_diffusion:fake_generator")
    monkeypatch.setenv("COMPOSER_IMAGE_STEPS", "3")
    monkeypatch.setenv("COMPOSER_IMAGE_SIZE", "32")
    code, stdout, stderr = run(capsys, "library", "generate", "a red kite over the dunes",
                               "--seed", "4")
    assert code == 0, stderr
    assert "32x32" in stdout and "generated by fake-generator" in stdout
    assert "3/3" in stderr  # the step bar
    code, listing, _ = run(capsys, "library", "list", "--source", "generated")
    assert "a red kite over the dunes" in listing
