"""Visible text (OCR) on real rendered images, and parrot-aware ranking with it."""

import io

import pytest
from PIL import Image, ImageDraw, ImageFont

from composer.retrieval.retriever import Retriever
from models.ocr import RapidTextSpotter, load_text_spotter, text_match_share, words_of
from tests.support_library import embedder, store  # noqa: F401

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"


def _font(size: int):
    try:
        return ImageFont.truetype(FONT, size)
    except OSError:
        return ImageFont.load_default(size=size)


def word_image(word: str) -> bytes:
    """A word rendered large in black on white: an image that only 'shows the words'."""
    image = Image.new("RGB", (480, 160), "white")
    ImageDraw.Draw(image).text((20, 45), word, fill="black", font=_font(64))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def scene_image() -> bytes:
    """A drawn coast with a tower and no text."""
    image = Image.new("RGB", (480, 320), (120, 170, 230))
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 220, 480, 320), fill=(40, 80, 160))
    draw.polygon([(0, 320), (0, 200), (200, 230), (260, 320)], fill=(90, 80, 70))
    draw.rectangle((90, 90, 120, 210), fill=(230, 230, 230))
    draw.rectangle((90, 120, 120, 140), fill=(200, 30, 30))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def spotter():
    if load_text_spotter() is None:
        pytest.skip("rapidocr-onnxruntime is not installed")
    return RapidTextSpotter()


def test_ocr_reads_a_rendered_word_and_its_area(spotter, tmp_path):
    path = tmp_path / "word.png"
    path.write_bytes(word_image("HARBOR"))
    visible = spotter.read(path)
    assert "harbor" in visible.words
    assert 0.05 < visible.area < 0.6 and visible.engine == "rapidocr"
    scene = tmp_path / "scene.png"
    scene.write_bytes(scene_image())
    assert spotter.read(scene).words == []


def test_text_match_share_counts_query_words_of_three_letters_or_more():
    assert words_of("The HARBOR, at 5am!") == ["the", "harbor", "at", "5am"]
    assert text_match_share("a harbor at dawn", ["harbor"]) == 0.5
    assert text_match_share("harbor", []) == 0.0
    assert text_match_share("a b", ["a"]) == 0.0


def test_penalty_demotes_an_image_that_only_shows_the_query_word(store, embedder, spotter):
    shows_word, _ = store.add(word_image("LIGHTHOUSE"), caption="lighthouse")
    depicts, _ = store.add(scene_image(), caption="a tall tower on a rocky coast by the sea")
    plain = Retriever(store, embedder)
    plain.index()
    assert plain.search("lighthouse", k=2)[0].image_id == shows_word.id
    aware = Retriever(store, embedder, spotter, text_penalty=2.0)
    aware.index()  # reads both images' text once
    words, area = store.texts([shows_word.id])[shows_word.id]
    assert "lighthouse" in words and area > 0.05
    ranked = aware.search("lighthouse", k=2)
    assert ranked[0].image_id == depicts.id
    assert ranked[1].score < plain.search("lighthouse", k=2)[0].score
    assert store.missing_text() == []
    off = Retriever(store, embedder, spotter, text_penalty=0.0)
    assert off.search("lighthouse", k=1)[0].image_id == shows_word.id


def test_stored_text_is_validated_and_goes_with_its_image(store):
    from composer.types import InputError, NotFoundError

    image, _ = store.add(scene_image(), caption="coast")
    with pytest.raises(InputError, match="text area 1.5 must be between 0 and 1"):
        store.put_text(image.id, ["x"], 1.5, "test")
    with pytest.raises(NotFoundError):
        store.put_text("0" * 64, [], 0.0, "test")
    store.put_text(image.id, ["coast"], 0.2, "test")
    assert store.texts([image.id]) == {image.id: (["coast"], 0.2)}
    store.delete(image.id)
    assert store.texts([image.id]) == {}


def test_small_images_are_enlarged_at_most_twice_and_their_text_is_read(spotter, tmp_path,
                                                                        monkeypatch):
    small = tmp_path / "small.png"
    image = Image.new("RGB", (96, 64), "white")
    ImageDraw.Draw(image).text((4, 24), "STOP", fill="black", font=_font(12))
    image.save(small)
    assert "stop" in spotter.read(small).words
    seen = []

    def engine(array):
        seen.append(array.shape[:2])
        return None, None

    monkeypatch.setattr(spotter, "_ocr", lambda: engine)
    for size in ((64, 64), (480, 160), (1024, 768)):
        path = tmp_path / f"{size[0]}.png"
        Image.new("RGB", size, "white").save(path)
        assert spotter.read(path).words == []
    # RapidOCR alone would detect on 736x736 for the 64x64 icon (130 times the pixels).
    assert seen == [(128, 128), (320, 960), (768, 1024)]
