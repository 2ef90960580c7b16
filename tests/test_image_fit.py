# ruff: noqa: F811  (pytest fixtures imported from tests/support_*.py)
"""Images that fit, or none: the placement threshold, its fallbacks, the caption shown under
an image, and pictures of text (models/visual_text.py) against real photos."""

from __future__ import annotations

import io

import pytest
from PIL import Image, ImageDraw, ImageFont

from composer.config import DEFAULT_IMAGE_THRESHOLD, Settings
from composer.editing import Editor
from composer.illustrate import shown_caption
from composer.pipeline import Composer
from composer.retrieval.retriever import Retriever
from composer.types import ComposeRequest
from models.ocr import VisibleText
from models.visual_text import asks_for_text, flat_share, readable
from tests.fakes import ArticleWriter, WordOverlapRetriever
from tests.support_library import embedder, shared_embedder  # noqa: F401  (fixture)
from tests.support_pipeline import database, documents, png_bytes  # noqa: F401  (fixtures)
from tests.tiny_diffusion import FakeGenerator

HARBOR = "a quiet harbor at sunrise with fishing boats"  # the scripted model's query, nearly


def _store(database, tmp_path, captions):
    from storage.images import ImageStore

    store = ImageStore(database, tmp_path / "images")
    for number, caption in enumerate(captions):
        store.add(png_bytes((30 * number, 90, 160)), caption=caption, source="test",
                  license="CC0", allow_near_duplicate=True)
    return store


def _compose(composer: Composer):
    events = list(composer.compose(ComposeRequest("Harbors of the north", target_words=400,
                                                  images=1)))
    assert events[-1].stage == "done"
    return events, composer.documents.get(events[-1].document_id)


def test_default_threshold_is_the_measured_setting():
    assert Settings.from_env({}, home="/tmp/x").image_threshold == DEFAULT_IMAGE_THRESHOLD
    assert Settings.from_env({"COMPOSER_IMAGE_THRESHOLD": "0.3"}, home="/tmp/x"
                             ).image_threshold == 0.3
    with pytest.raises(ValueError, match="COMPOSER_IMAGE_THRESHOLD"):
        Settings.from_env({"COMPOSER_IMAGE_THRESHOLD": "5"}, home="/tmp/x")


def test_a_slot_nothing_fits_gets_no_image_and_the_status_says_why(documents, database,
                                                                   tmp_path):
    store = _store(database, tmp_path, ["a red lighthouse on a rocky cliff",
                                        "a snowy mountain under a blue sky"])
    composer = Composer(ArticleWriter(), documents, WordOverlapRetriever(store))
    events, doc = _compose(composer)
    assert doc.image_blocks == []
    [warning] = [e.message for e in events if e.stage == "warning"]
    assert warning.startswith("No picture in your library matches 'a quiet harbor at sunrise")
    assert "library add" in warning and "COMPOSER_IMAGE_GENERATOR" in warning


def test_a_fitting_image_is_placed_with_its_own_caption(documents, database, tmp_path):
    store = _store(database, tmp_path, [HARBOR, "a red lighthouse on a rocky cliff"])
    events, doc = _compose(Composer(ArticleWriter(), documents, WordOverlapRetriever(store)))
    [block] = doc.image_blocks
    assert store.get(block.image_id).caption == HARBOR
    assert block.caption == HARBOR  # the library caption, not the query the model wrote
    assert not [e for e in events if e.stage == "warning"]


def test_below_the_threshold_a_configured_generator_makes_the_picture(documents, database,
                                                                     tmp_path):
    store = _store(database, tmp_path, ["a red lighthouse on a rocky cliff"])
    generator = FakeGenerator()
    composer = Composer(ArticleWriter(), documents, WordOverlapRetriever(store),
                        generator=generator)
    events, doc = _compose(composer)
    assert any(e.stage == "generate" for e in events)
    [block] = doc.image_blocks
    image = store.get(block.image_id)
    assert image.source == "generated" and block.caption == image.caption
    assert "harbor" in image.caption  # generated for the slot's description


def test_a_failing_generator_is_a_warning_and_the_slot_stays_empty(documents, database,
                                                                   tmp_path):
    class Broken(FakeGenerator):
        def generate(self, prompt, **options):
            raise RuntimeError("out of memory")

    store = _store(database, tmp_path, ["a red lighthouse on a rocky cliff"])
    composer = Composer(ArticleWriter(), documents, WordOverlapRetriever(store),
                        generator=Broken())
    events, doc = _compose(composer)
    warnings = [e.message for e in events if e.stage == "warning"]
    assert any("Could not generate a picture" in w and "out of memory" in w for w in warnings)
    assert any(w.startswith("No picture in your library matches") for w in warnings)
    assert doc.image_blocks == []


def test_below_the_threshold_web_search_is_asked_and_an_unfitting_result_is_not_placed(
        documents, database, tmp_path):
    from composer.retrieval.web.openverse import OpenverseSearch
    from tests.fake_image_api import FakeImageAPI

    store = _store(database, tmp_path, ["a red lighthouse on a rocky cliff"])
    with FakeImageAPI() as api:
        web = OpenverseSearch(base_url=api.url, timeout=2)
        composer = Composer(ArticleWriter(), documents, WordOverlapRetriever(store), web_search=web)
        events, doc = _compose(composer)
    assert any(e.stage == "web" for e in events)
    assert store.count() > 1  # the web images were imported into the library ...
    assert doc.image_blocks == []  # ... but none depicts the query well enough


def test_hand_written_caption_stays_until_the_picture_is_swapped(documents, database, tmp_path):
    store = _store(database, tmp_path, [HARBOR, "a harbor with boats at night"])
    _, doc = _compose(Composer(ArticleWriter(), documents, WordOverlapRetriever(store)))
    [block] = doc.image_blocks
    editor = Editor(ArticleWriter(), documents, retriever=WordOverlapRetriever(store), images=store)
    doc = editor.set_caption(doc.id, block.id, "Our harbor, last June",
                             expected_version=doc.version)
    assert doc.image_blocks[0].caption == "Our harbor, last June"
    other = next(c for c in block.candidates if c.image_id != block.image_id)
    doc = editor.choose_candidate(doc.id, block.id, other.image_id,
                                  expected_version=doc.version)
    assert doc.image_blocks[0].caption == "a harbor with boats at night"
    doc = editor.search_again(doc.id, block.id, "boats in a quiet harbor at sunrise",
                              expected_version=doc.version)
    assert doc.image_blocks[0].caption == HARBOR


def test_shown_caption_is_the_first_sentence_cut_at_a_clause():
    assert shown_caption('  "A cat on a mat."  Taken in 2019. ') == "A cat on a mat."
    long = ("Close-up of a round orange dahlia flower with tightly curled petals, against a "
            "blurred dark green background of leaves in a garden in late summer, with bees, "
            "and a wooden fence behind it all")
    shown = shown_caption(long)
    assert shown.startswith("Close-up of a round orange dahlia") and len(shown.split()) <= 30
    assert shown.endswith(".") and "fence" not in shown
    assert shown_caption("") == ""


# -- pictures of text ------------------------------------------------------------------------

def _word_card(word: str, caption_colour=(250, 250, 250)) -> bytes:
    image = Image.new("RGB", (480, 320), caption_colour)
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=96)
    draw.text((40, 110), word, font=font, fill=(40, 30, 20))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _photo(seed: int) -> bytes:
    """A textured picture (noise with a gradient): nothing in it is flat."""
    noise = Image.effect_noise((480, 320), 60 + seed).convert("RGB")
    gradient = Image.linear_gradient("L").resize((480, 320)).convert("RGB")
    buffer = io.BytesIO()
    Image.blend(noise, gradient, 0.5).save(buffer, format="PNG")
    return buffer.getvalue()


class CardSpotter:
    """OCR double: reads the word of each card it was told about, nothing elsewhere."""

    name = "card-spotter"

    def __init__(self) -> None:
        self.cards: dict[str, str] = {}

    def read(self, path):
        word = self.cards.get(path.name.split(".")[0])
        return VisibleText(words=[word.lower()] if word else [], area=0.18 if word else 0.0,
                           engine=self.name)


def test_flat_share_tells_a_word_card_from_a_photo(tmp_path):
    card, photo = tmp_path / "card.png", tmp_path / "photo.png"
    card.write_bytes(_word_card("COFFEE"))
    photo.write_bytes(_photo(0))
    assert flat_share(card) >= 0.6 > 0.2 >= flat_share(photo)


def test_asks_for_text_and_readable_words():
    assert asks_for_text("a shop sign reading BAKERY") and asks_for_text("a page of text")
    assert not asks_for_text("a cup of coffee") and not asks_for_text("a striped cat")
    assert readable(["coffee"]) and readable(["咖啡"])
    assert not readable(["88"]) and not readable(["wwwwww"]) and not readable(["ml", "d"])


def test_a_word_card_captioned_as_a_photo_loses_to_the_photo(tmp_path, embedder):
    from tests.support_library import make_store

    store = make_store(tmp_path / "library")
    spotter = CardSpotter()
    photo, _ = store.add(_photo(1), caption="A cup of espresso on a saucer on a wooden table",
                         license="CC0")
    card, _ = store.add(_word_card("COFFEE"), caption="a cup of coffee", license="CC0")
    sign, _ = store.add(_word_card("BAKERY", (20, 80, 50)),
                        caption="a shop sign reading BAKERY", license="CC0")
    spotter.cards = {card.id: "COFFEE", sign.id: "BAKERY"}
    retriever = Retriever(store, embedder, spotter)
    retriever.index()
    for query in ("a cup of coffee", "coffee"):
        ranked = retriever.rank(query, k=3)
        assert ranked[0].image_id == photo.id, query
        assert next(r for r in ranked if r.image_id == card.id).text_picture
    # A query that asks for text still finds the sign.
    assert retriever.rank("a bakery shop sign", k=1)[0].image_id == sign.id
    retriever.text_pictures.min_flat = None  # the check off: the card's caption wins again
    assert retriever.rank("a cup of coffee", k=1)[0].image_id == card.id
