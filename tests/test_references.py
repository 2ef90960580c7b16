"""composer/references.py: reference images reach a text-only writer as words."""

from __future__ import annotations

import io

import pytest
from PIL import Image, ImageDraw, ImageFont

from composer.references import (
    MAX_REFERENCE_IMAGES,
    ReferenceImage,
    describe_references,
    material_with_references,
)
from composer.types import InputError
from tests.support_storage import photo_bytes
from tests.support_app import services  # noqa: F401  (fixture)
from ui import handlers as h


class WordSpotter:
    """A stand-in OCR that 'reads' a fixed word list (the real one is in tests/test_ocr.py)."""

    name = "test"

    def __init__(self, words):
        self.words = words

    def read(self, path):
        from models.ocr import VisibleText

        return VisibleText(words=list(self.words), area=0.1, engine=self.name)


def _sign(tmp_path):
    image = Image.new("RGB", (320, 120), "white")
    ImageDraw.Draw(image).text((20, 30), "HARBOR", fill="black",
                               font=ImageFont.load_default(size=48))
    path = tmp_path / "sign.png"
    image.save(path)
    return path


def test_library_caption_and_visible_text_describe_each_image(services, tmp_path):
    cat = tmp_path / "cat.png"
    cat.write_bytes(photo_bytes("chelsea.png"))
    services.images.add(cat.read_bytes(), caption="a tabby cat with green eyes")
    references = describe_references([cat, _sign(tmp_path)], services.images,
                                     WordSpotter(["harbor"]))
    assert references[0] == ReferenceImage("cat.png", "a tabby cat with green eyes", ["harbor"])
    material = material_with_references("Notes on harbours.", references)
    assert material.startswith("Notes on harbours.\n\n")
    assert "Reference image 1 (cat.png): shows a tabby cat with green eyes; its visible text " \
           "reads \"harbor\"." in material
    assert "Reference image 2 (sign.png)" in material


def test_real_ocr_reads_a_reference_sign(services, tmp_path):
    assert services.spotter is not None
    [sign] = describe_references([_sign(tmp_path)], services.images, services.spotter)
    assert sign.caption == "" and "harbor" in sign.visible_words


def test_bad_or_too_many_reference_images_are_refused(services, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\nnope")
    with pytest.raises(InputError, match="reference image broken.png"):
        describe_references([broken], services.images, None)
    with pytest.raises(InputError, match="11 reference images were given; the limit is 10"):
        describe_references([broken] * (MAX_REFERENCE_IMAGES + 1), services.images, None)
    with pytest.raises(InputError, match="cannot read it"):
        describe_references([tmp_path / "missing.png"], services.images, None)
    with pytest.raises(InputError, match="the limit is 40,000"):
        material_with_references("x" * 39_990, [ReferenceImage("a.png", "a long caption")])


def test_compose_handler_adds_references_to_the_material(services, tmp_path):
    plain = tmp_path / "plain.png"
    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), (10, 120, 200)).save(buffer, "PNG")
    plain.write_bytes(buffer.getvalue())
    assert h.reference_material(services, "notes", None) == ("notes", [])
    material, images = h.reference_material(services, "", [str(plain)])
    assert material == "Reference image 1 (plain.png): no caption or visible text is known."
    assert images == []
    request = h.build_request("Harbors", material, h.ComposeOptions(), images)
    assert request.material == material and request.reference_images == []


def test_a_writer_that_sees_images_gets_the_files_instead(services, tmp_path):
    import dataclasses

    from composer.references import SEEING_NOTE, reference_note

    services.settings = dataclasses.replace(services.settings, vision_model="some/clip")
    cat = tmp_path / "cat.png"
    cat.write_bytes(photo_bytes("chelsea.png", 0.5))
    assert h.reference_material(services, "notes", [str(cat)]) == ("notes", [str(cat)])
    assert reference_note(services.settings) == SEEING_NOTE
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"no")
    with pytest.raises(InputError, match="reference image broken.png"):
        h.reference_material(services, "", [str(broken)])


class SeeingLM:
    """A scripted writer that 'sees images': records the messages each call receives."""

    sees_images = True

    def __init__(self):
        from tests.fakes import ArticleWriter

        self.inner = ArticleWriter()
        self.name, self.context_length = "seeing", self.inner.context_length
        self.calls = []

    def stream(self, messages, config, *, prefix="", cancel=None):
        self.calls.append(messages)
        return self.inner.stream(messages, config, prefix=prefix, cancel=cancel)

    def count_tokens(self, text):
        return self.inner.count_tokens(text)


def test_reference_images_travel_in_every_prompt_to_a_seeing_writer(services, tmp_path):
    from composer.pipeline import Composer
    from composer.types import ComposeRequest

    lm = SeeingLM()
    composer = Composer(lm, services.documents, None)
    events = list(composer.compose(ComposeRequest("Harbors", target_words=200, text_only=True,
                                                  reference_images=["/refs/a.png"])))
    assert events[-1].stage == "done"
    assert lm.calls
    for messages in lm.calls:
        assert [m.images for m in messages] == [(), ("/refs/a.png",)]  # system, user
    with pytest.raises(InputError, match="11 reference images were given; the limit is 10"):
        list(composer.compose(ComposeRequest("Harbors", reference_images=["x.png"] * 11)))
