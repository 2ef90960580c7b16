"""Captioners (models/captioner.py) and the captioning job and worker (composer/captioning.py).

The transformers captioner is checked against tiny random models built offline (BLIP, a
VisionEncoderDecoder and a LLaVA chat model): its caption must equal a direct
`model.generate` on the same inputs, so no preprocessing difference can hide. The job runs
on real SQLite storage with real PNG files and a fake captioner (tests/fake_captioner.py).
"""

from __future__ import annotations

import io
import threading

import numpy as np
import pytest
import torch
from PIL import Image

from composer.captioning import (
    NO_CAPTIONER_MESSAGE,
    CaptionReport,
    CaptionWorker,
    caption_library,
    caption_source,
    summary,
)
from composer.config import MAX_CAPTION_CHARS
from models.captioner import (
    DETAILED_PROMPT,
    TransformersCaptioner,
    clean_caption,
    load_captioner,
    open_image,
)
from storage.db import Database
from storage.images import ImageStore
from tests.fake_captioner import BLUE, GREEN, RED, ColourCaptioner, photo
from tests.tiny_models import (  # noqa: F401 (tiny_blip_dir is a fixture)
    build_tiny_llava,
    build_tiny_vision_encoder_decoder,
    tiny_blip_dir,
)


@pytest.fixture
def blip_dir(tiny_blip_dir):  # noqa: F811
    """The session's tiny BLIP folder."""
    return tiny_blip_dir


@pytest.fixture
def store(tmp_path):
    """A real ImageStore on a migrated SQLite file."""
    db = Database(f"sqlite:///{tmp_path / 'composer.db'}")
    db.migrate()
    yield ImageStore(db, tmp_path / "images")
    db.dispose()


def add(store: ImageStore, colour, seed: int, caption: str = "", caption_source: str = "") -> str:
    image, _ = store.add(photo(colour, seed), name=f"photo-{seed}.png", caption=caption,
                         caption_source=caption_source)
    return image.id


# -- models/captioner.py: text and image helpers ---------------------------------------------


def test_clean_caption_collapses_whitespace_and_drops_control_characters():
    assert clean_caption("  a red\n\n boat\x00 at\tdawn \u200b ") == "a red boat at dawn"


def test_clean_caption_removes_an_echo_of_the_prompt():
    echoed = DETAILED_PROMPT.upper() + "  A harbor at dawn."
    assert clean_caption(echoed, DETAILED_PROMPT) == "A harbor at dawn."
    assert clean_caption("A harbor at dawn.", DETAILED_PROMPT) == "A harbor at dawn."


def test_clean_caption_cuts_long_text_at_a_word_boundary():
    caption = clean_caption("harbor " * 1000)
    assert len(caption) <= MAX_CAPTION_CHARS
    assert caption.endswith("harbor")


def test_open_image_applies_the_exif_orientation_and_converts_to_rgb(tmp_path):
    sideways = Image.new("L", (40, 20), 128)
    exif = sideways.getexif()
    exif[0x0112] = 6  # "rotate 90° clockwise to view"
    path = tmp_path / "phone.jpg"
    sideways.save(path, format="JPEG", exif=exif)
    upright = open_image(path)
    assert upright.size == (20, 40)
    assert upright.mode == "RGB"


def test_open_image_names_a_broken_file(tmp_path):
    path = tmp_path / "broken.png"
    path.write_bytes(photo(RED, 1)[:50])
    with pytest.raises(ValueError, match="broken.png"):
        open_image(path)


# -- models/captioner.py: loading ------------------------------------------------------------


@pytest.mark.parametrize("spec", ["", "none", "  None  "])
def test_no_captioner_configured_gives_none(spec):
    assert load_captioner(spec) is None


def test_a_plugin_factory_is_loaded_by_module_and_name():
    captioner = load_captioner("tests.fake_captioner:colour_captioner")
    assert isinstance(captioner, ColourCaptioner)
    assert captioner.name == "fake-colour"


@pytest.mark.parametrize("spec, error, message", [
    ("tests.no_such_module:factory", RuntimeError, "cannot import module"),
    ("tests.fake_captioner:missing", TypeError, "no callable 'missing'"),
    ("tests.fake_captioner:not_a_captioner", TypeError, "lacks a `name` string"),
])
def test_a_bad_plugin_says_what_is_wrong(spec, error, message):
    with pytest.raises(error, match=message):
        load_captioner(spec)


def test_a_missing_folder_says_so(tmp_path):
    with pytest.raises(RuntimeError, match="does not exist"):
        load_captioner(str(tmp_path / "no-model"))


def test_an_uncached_model_id_offline_explains_what_to_do(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(RuntimeError, match="local folder") as error:
        load_captioner("nobody-here/no-such-captioner-model")
    assert "nobody-here/no-such-captioner-model" in str(error.value)


# -- models/captioner.py: tiny random models -------------------------------------------------


def direct_caption(model, inputs, decoder, prompt_length: int = 0) -> str:
    """What generate + decode give without the captioner's help (same greedy settings)."""
    with torch.inference_mode():
        output = model.generate(**inputs, max_new_tokens=160, do_sample=False, num_beams=1)
    return clean_caption(decoder.batch_decode(output[:, prompt_length:],
                                              skip_special_tokens=True)[0])


def test_tiny_blip_captions_like_a_direct_generate(blip_dir, tmp_path):
    from transformers import BlipForConditionalGeneration, BlipProcessor

    path = tmp_path / "red.png"
    path.write_bytes(photo(RED, 3))
    captioner = load_captioner(str(blip_dir))
    assert isinstance(captioner, TransformersCaptioner)
    assert captioner.name == f"captioner:{blip_dir}"
    assert not captioner.chat
    caption = captioner.caption(path)
    assert isinstance(caption, str) and caption
    assert captioner.caption(path) == caption
    assert captioner.caption(Image.open(path)) == caption

    processor = BlipProcessor.from_pretrained(blip_dir, local_files_only=True)
    model = BlipForConditionalGeneration.from_pretrained(blip_dir,
                                                         local_files_only=True).eval()
    inputs = processor(images=Image.open(path).convert("RGB"), return_tensors="pt")
    assert caption == direct_caption(model, inputs, processor)


def test_tiny_blip_sees_the_image_upright(blip_dir, tmp_path):
    upright = Image.open(io.BytesIO(photo(BLUE, 4, size=(32, 64), format="JPEG")))
    sideways = upright.transpose(Image.Transpose.ROTATE_90)  # what a phone stores
    exif = sideways.getexif()
    exif[0x0112] = 6
    path = tmp_path / "phone.jpg"
    sideways.save(path, format="JPEG", exif=exif, quality=100)
    captioner = load_captioner(str(blip_dir))
    pixels = np.asarray(Image.open(path).convert("RGB"))  # as stored, without the EXIF tag
    from_file = captioner.inputs(path)["pixel_values"]
    from_upright = captioner.inputs(Image.fromarray(np.rot90(pixels, k=-1)))["pixel_values"]
    from_raw = captioner.inputs(Image.fromarray(pixels))["pixel_values"]
    assert torch.equal(from_file, from_upright)
    assert not torch.equal(from_file, from_raw)


def test_tiny_vision_encoder_decoder_loads_its_image_processor_and_tokenizer(tmp_path):
    from transformers import AutoTokenizer, VisionEncoderDecoderModel, ViTImageProcessor

    folder = build_tiny_vision_encoder_decoder(tmp_path / "ved")
    path = tmp_path / "green.png"
    path.write_bytes(photo(GREEN, 5))
    captioner = load_captioner(str(folder))
    assert not captioner.chat
    caption = captioner.caption(path)
    assert isinstance(caption, str) and caption
    assert captioner.caption(path) == caption

    image_processor = ViTImageProcessor.from_pretrained(folder, local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    model = VisionEncoderDecoderModel.from_pretrained(folder, local_files_only=True).eval()
    inputs = image_processor(images=Image.open(path).convert("RGB"), return_tensors="pt")
    assert caption == direct_caption(model, inputs, tokenizer)


def test_tiny_llava_is_prompted_through_its_chat_template(tmp_path):
    from transformers import LlavaForConditionalGeneration, LlavaProcessor

    folder = build_tiny_llava(tmp_path / "llava")
    path = tmp_path / "blue.png"
    path.write_bytes(photo(BLUE, 6))
    captioner = load_captioner(str(folder))
    assert captioner.chat
    inputs = captioner.inputs(path)
    prompt_text = captioner.processor.batch_decode(inputs["input_ids"])[0]
    assert DETAILED_PROMPT in prompt_text and "<image>" in prompt_text
    assert prompt_text.rstrip().endswith("assistant")
    caption = captioner.caption(path)
    assert isinstance(caption, str) and caption
    assert captioner.caption(path) == caption
    assert DETAILED_PROMPT not in caption  # only the new tokens are decoded

    processor = LlavaProcessor.from_pretrained(folder, local_files_only=True)
    model = LlavaForConditionalGeneration.from_pretrained(folder, local_files_only=True).eval()
    messages = [{"role": "user", "content": [{"type": "image"},
                                             {"type": "text", "text": DETAILED_PROMPT}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    direct = processor(images=[Image.open(path).convert("RGB")], text=[text], return_tensors="pt")
    assert caption == direct_caption(model, direct, processor, direct["input_ids"].shape[1])


# -- composer/captioning.py: the job ----------------------------------------------------------


def test_only_uncaptioned_images_get_model_captions(store):
    red = add(store, RED, 1)
    green = add(store, GREEN, 2)
    typed = add(store, BLUE, 3, caption="my own words")
    sidecar = add(store, RED, 4, caption="from a sidecar file", caption_source="sidecar")
    seeded = add(store, GREEN, 5, caption="a bundled photo", caption_source="seed")
    captioner = ColourCaptioner()
    calls = []

    report = caption_library(store, captioner,
                             progress=lambda *args: calls.append(args))

    assert (report.done, report.skipped, report.failed) == (2, 3, [])
    assert not report.stopped and report.remaining == 0
    assert store.get(red).caption.startswith("a red picture, 64 by 48 pixels, mean colour")
    assert store.get(green).caption.startswith("a green picture")
    assert store.get(red).caption_source == "model:fake-colour"
    assert store.get(typed).caption == "my own words"
    assert store.get(typed).caption_source == "user"
    assert store.get(sidecar).caption_source == "sidecar"
    assert store.get(seeded).caption == "a bundled photo"
    assert [(done, total) for done, total, _ in calls] == [(0, 2), (1, 2), (2, 2)]
    assert "captioned" in calls[-1][2]


def test_a_second_run_does_nothing(store):
    add(store, RED, 1)
    add(store, GREEN, 2)
    caption_library(store, ColourCaptioner())
    captioner = ColourCaptioner()
    report = caption_library(store, captioner)
    assert (report.done, report.skipped) == (0, 2)
    assert captioner.calls == []


def test_a_stopped_run_is_resumed_by_the_next_one(store):
    ids = [add(store, RED, seed) for seed in range(5)]
    stop = threading.Event()
    first = ColourCaptioner()

    def progress(done, total, message):
        if done == 2:
            stop.set()

    report = caption_library(store, first, progress=progress, stop=stop)
    assert (report.done, report.remaining, report.stopped) == (2, 3, True)
    assert sum(bool(store.get(image_id).caption) for image_id in ids) == 2

    second = ColourCaptioner()
    report = caption_library(store, second)
    assert (report.done, report.remaining, report.stopped) == (3, 0, False)
    assert set(first.calls).isdisjoint(second.calls)
    assert all(store.get(image_id).caption for image_id in ids)


def test_a_killed_run_keeps_what_it_wrote_and_the_next_one_continues(store):
    ids = [add(store, GREEN, seed) for seed in range(4)]

    class DiesOnThirdImage(ColourCaptioner):
        def caption(self, image):
            if len(self.calls) == 2:
                raise KeyboardInterrupt  # the process is killed mid-job
            return super().caption(image)

    with pytest.raises(KeyboardInterrupt):
        caption_library(store, DiesOnThirdImage())
    assert sum(bool(store.get(image_id).caption) for image_id in ids) == 2
    report = caption_library(store, ColourCaptioner())
    assert report.done == 2
    assert all(store.get(image_id).caption for image_id in ids)


def test_failing_images_are_reported_and_the_job_goes_on(store):
    good = add(store, RED, 1)
    model_error = add(store, GREEN, 2)
    missing_file = add(store, BLUE, 3)
    store.path(missing_file).unlink()
    captioner = ColourCaptioner(fail_prefixes=(model_error,))

    report = caption_library(store, captioner)

    assert report.done == 1 and store.get(good).caption
    failed = dict(report.failed)
    assert set(failed) == {model_error, missing_file}
    assert "cannot read" in failed[model_error]
    assert "cannot open the image" in failed[missing_file]
    assert store.get(model_error).caption == "" and store.get(missing_file).caption == ""
    again = caption_library(store, ColourCaptioner(fail_prefixes=(model_error,)))
    assert {image_id for image_id, _ in again.failed} == {model_error, missing_file}


def test_an_empty_caption_counts_as_a_failure(store):
    image_id = add(store, RED, 1)

    class Silent(ColourCaptioner):
        def caption(self, image):
            return " \n "

    report = caption_library(store, Silent())
    assert report.failed == [(image_id, "ValueError: the model wrote an empty caption")]
    assert store.get(image_id).caption == ""


def test_a_caption_typed_while_the_model_runs_is_kept(store):
    image_id = add(store, RED, 1)

    class UserTypesMeanwhile(ColourCaptioner):
        def caption(self, image):
            store.update(image_id, caption="typed by the user")
            return super().caption(image)

    report = caption_library(store, UserTypesMeanwhile())
    assert (report.done, report.skipped) == (0, 1)
    assert store.get(image_id).caption == "typed by the user"
    assert store.get(image_id).caption_source == "user"


def test_recaption_replaces_only_other_models_captions(store):
    uncaptioned = add(store, RED, 1)
    by_other = add(store, GREEN, 2)
    typed = add(store, BLUE, 3, caption="my own words")
    caption_library(store, ColourCaptioner(name="fake-other"), stop=None)
    store.update(uncaptioned, caption="", caption_source="")
    assert store.get(by_other).caption_source == "model:fake-other"

    kept = caption_library(store, ColourCaptioner())
    assert kept.done == 1  # only the image whose caption was cleared
    assert store.get(by_other).caption_source == "model:fake-other"

    report = caption_library(store, ColourCaptioner(), recaption_model_captions=True)
    assert report.done == 1
    assert store.get(by_other).caption_source == "model:fake-colour"
    assert store.get(typed).caption == "my own words"
    again = caption_library(store, ColourCaptioner(), recaption_model_captions=True)
    assert again.done == 0


def test_long_model_names_are_shortened_to_a_stable_caption_source(store):
    image_id = add(store, RED, 1)
    captioner = ColourCaptioner(name="captioner:/a/very/deep/folder/" + "x" * 80 + "/blip")
    source = caption_source(captioner)
    assert len(source) <= 64 and source.startswith("model:captioner:/a/very")
    assert source == caption_source(captioner)
    assert source != caption_source(ColourCaptioner(name=captioner.name + "2"))
    assert caption_library(store, captioner).done == 1
    assert store.get(image_id).caption_source == source
    assert caption_library(store, captioner, recaption_model_captions=True).done == 0


def test_over_long_captions_are_cut_to_the_limit(store):
    image_id = add(store, RED, 1)

    class Verbose(ColourCaptioner):
        def caption(self, image):
            return "boat " * 1000

    assert caption_library(store, Verbose()).done == 1
    assert len(store.get(image_id).caption) <= MAX_CAPTION_CHARS


def test_new_captions_become_searchable(store):
    from composer.retrieval.retriever import Retriever
    from tests.support_library import shared_embedder

    add(store, BLUE, 1, caption="a snowy mountain under the sky")
    lighthouse = add(store, RED, 2)

    class Describer(ColourCaptioner):
        def caption(self, image):
            words = super().caption(image)
            return ("a red lighthouse on a rocky cliff above the sea" if "red" in words
                    else "a green field")

    retriever = Retriever(store, shared_embedder())
    retriever.index()
    report = caption_library(store, Describer(), retriever=retriever)
    assert report.done == 1
    assert retriever.search("lighthouse by the sea", k=1)[0].image_id == lighthouse


def test_tiny_blip_captions_a_library(store, blip_dir):
    ids = [add(store, RED, 1), add(store, GREEN, 2)]
    captioner = load_captioner(str(blip_dir))
    report = caption_library(store, captioner)
    assert report.done == 2
    for image_id in ids:
        image = store.get(image_id)
        assert image.caption == captioner.caption(store.path(image_id))
        assert image.caption_source == caption_source(captioner)


def test_summary_says_what_happened():
    report = CaptionReport(done=3, skipped=2, failed=[("a" * 64, "boom")], remaining=4,
                           stopped=True)
    assert summary(report) == ("Captioned 3 images, failed 1, kept 2 existing captions; "
                               "stopped with 4 left: run it again to continue.")


# -- composer/captioning.py: the background worker --------------------------------------------


class Gated(ColourCaptioner):
    """Waits for `go` before each caption, so a test controls when images finish."""

    def __init__(self, **options) -> None:
        super().__init__(**options)
        self.go = threading.Event()
        self.entered = threading.Event()

    def caption(self, image):
        self.entered.set()
        assert self.go.wait(10), "the test never let the captioner go on"
        return super().caption(image)


def test_the_worker_runs_one_job_in_the_background(store):
    ids = [add(store, RED, 1), add(store, GREEN, 2), add(store, BLUE, 3)]
    captioner = Gated()
    worker = CaptionWorker(store, captioner)
    assert worker.status().running is False and worker.status().finished_at is None

    assert worker.start() is True
    assert captioner.entered.wait(10)
    assert worker.start() is False  # one job at a time
    status = worker.status()
    assert status.running and status.total == 3 and status.done == 0

    captioner.go.set()
    assert worker.wait(30)
    status = worker.status()
    assert not status.running
    assert (status.done, status.total, status.failed) == (3, 3, 0)
    assert status.finished_at and status.message.startswith("Captioned 3 images")
    assert status.report.done == 3
    assert all(store.get(image_id).caption for image_id in ids)
    assert worker.start() is True  # a finished worker can run again (nothing to do now)
    assert worker.wait(30) and worker.status().report.done == 0


def test_the_worker_stops_between_images(store):
    for seed in range(3):
        add(store, RED, seed)
    captioner = Gated()
    worker = CaptionWorker(store, captioner)
    worker.start()
    assert captioner.entered.wait(10)
    worker.stop()
    captioner.go.set()
    assert worker.wait(30)
    report = worker.status().report
    assert report.stopped and report.done == 1 and report.remaining == 2
    assert "stopped with 2 left" in worker.status().message


def test_the_worker_loads_the_model_once_in_the_background(store):
    add(store, RED, 1)
    loads = []

    def load():
        loads.append(threading.current_thread().name)
        return ColourCaptioner()

    worker = CaptionWorker(store, load)
    assert worker.start() and worker.wait(30)
    add(store, GREEN, 2)
    assert worker.start() and worker.wait(30)
    assert loads == ["caption-worker"]
    assert worker.status().report.done == 1


def test_the_worker_reports_failures_and_load_errors(store):
    bad = add(store, RED, 1)
    add(store, GREEN, 2)
    worker = CaptionWorker(store, ColourCaptioner(fail_prefixes=(bad,)))
    assert worker.start() and worker.wait(30)
    status = worker.status()
    assert status.failed == 1 and status.errors[0][0] == bad and status.done == 2

    def broken_load():
        raise RuntimeError("could not load the captioning model 'x'")

    worker = CaptionWorker(store, broken_load)
    assert worker.start() and worker.wait(30)
    status = worker.status()
    assert not status.running and status.finished_at
    assert "could not load the captioning model 'x'" in status.message


def test_without_a_model_the_worker_says_where_captions_come_from(store):
    add(store, RED, 1)
    worker = CaptionWorker(store, None)
    assert not worker.configured
    assert worker.start() is False
    assert worker.status().message == NO_CAPTIONER_MESSAGE
    assert "--caption" in NO_CAPTIONER_MESSAGE and "photo.jpg.txt" in NO_CAPTIONER_MESSAGE
    assert "COMPOSER_CAPTIONER" in NO_CAPTIONER_MESSAGE

    worker = CaptionWorker(store, lambda: None)  # a setting that turned out to be "none"
    assert worker.start() and worker.wait(30)
    assert worker.status().message.endswith(NO_CAPTIONER_MESSAGE)
