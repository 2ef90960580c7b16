"""The composer end to end on the fake article writer, real SQLite storage and a real image store."""

import threading

import pytest

from composer.pipeline import Composer
from composer.types import (
    ComposeRequest,
    ComposerError,
    InputError,
    Outline,
    SectionPlan,
    TextBlock,
)
from tests.fake_article import recognise, sentences, user_text
from tests.fakes import ArticleWriter, ScriptedLM, WordOverlapRetriever
from tests.support_pipeline import database, documents, image_store  # noqa: F401


def make(documents, image_store, lm=None, image_threshold=0.0):
    """A composer that places the best image whatever its score (the placement mechanics);
    tests of the threshold pass one."""
    return Composer(lm or ArticleWriter(), documents, WordOverlapRetriever(image_store),
                    image_threshold=image_threshold)


def test_compose_saves_an_illustrated_article(documents, image_store):
    composer = make(documents, image_store)
    events = list(composer.compose(ComposeRequest("Harbors of the north", target_words=800,
                                                  images=2)))
    assert events[-1].stage == "done"
    doc = documents.get(events[-1].document_id)
    assert doc.status == "done"
    assert doc.title == "Harbors of the north"
    assert len(doc.outline.sections) == 4 and doc.outline.total_words == 800
    assert 600 <= doc.word_count <= 1000
    images = doc.image_blocks
    assert len(images) == 2
    # The model named <Seg1> and <Seg3>: each image follows that paragraph.
    texts = [b for b in doc.blocks if isinstance(b, TextBlock)]
    for image, paragraph in zip(images, (1, 3)):
        assert doc.blocks[doc.blocks.index(image) - 1] == texts[paragraph]
    # The caption shown is the library image's own, not the query the model wrote.
    assert images[0].caption == "a quiet harbor at sunrise with fishing boats"
    assert images[0].candidates and len(images[0].candidates) <= 4
    assert images[0].image_id == images[0].candidates[0].image_id  # best score selected
    assert len({image.image_id for image in images}) == 2  # a used image is not reused
    assert images[0].image_id not in {c.image_id for c in images[1].candidates}


def test_progress_events_stream_text_and_fraction_never_goes_back(documents, image_store):
    events = list(make(documents, image_store).compose(ComposeRequest("Tea", target_words=300)))
    deltas = "".join(e.delta for e in events if e.stage == "write")
    doc = documents.get(events[-1].document_id)
    for block in doc.text_blocks:
        assert block.text.split()[0] in deltas
    fractions = [e.fraction for e in events if e.fraction]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    stages = [e.stage for e in events]
    assert stages.index("plan") < stages.index("write") < stages.index("slots") < stages.index("done")
    assert all(e.document_id == doc.id for e in events)


def test_model_selection_mode_uses_the_letter(documents, image_store):
    composer = make(documents, image_store)
    doc = composer.compose_document(ComposeRequest("Harbors", target_words=400, images=1,
                                                   selection="model"))
    image = doc.image_blocks[0]
    assert image.image_id == image.candidates[1].image_id  # the scripted model answers "B"


def test_text_only_has_no_images_and_no_retrieval(documents):
    composer = Composer(ArticleWriter(), documents, retriever=None)
    doc = composer.compose_document(ComposeRequest("Tea", target_words=300, text_only=True))
    assert doc.status == "done" and doc.image_blocks == [] and doc.text_blocks


def test_more_images_than_paragraphs_warns_and_places_one_per_paragraph(documents, image_store):
    lm = ArticleWriter(replies=["1. Only: one point", "A single short paragraph here."])
    events = list(make(documents, image_store, lm).compose(
        ComposeRequest("Tiny", target_words=120, images=2)))
    warnings = [e.message for e in events if e.stage == "warning"]
    assert any("2 images were asked for but the article has 1 paragraphs" in w for w in warnings)
    doc = documents.get(events[-1].document_id)
    assert len(doc.image_blocks) == 1


def test_empty_library_composes_text_and_says_how_to_add_images(documents, database, tmp_path):
    from storage.images import ImageStore

    empty = ImageStore(database, tmp_path / "empty")
    events = list(make(documents, empty).compose(ComposeRequest("Tea", target_words=200)))
    assert events[-1].stage == "done"
    assert any("library add" in e.message for e in events if e.stage == "warning")


def test_edited_outline_is_written_as_given(documents, image_store):
    outline = Outline("My title", [SectionPlan("Alpha", ["a"], 100), SectionPlan("Beta", [], 150)])
    composer = make(documents, image_store)
    doc = composer.compose_document(ComposeRequest("ignored title", target_words=250,
                                                   text_only=True), outline=outline)
    assert doc.title == "My title" and doc.outline == outline
    assert {b.section for b in doc.text_blocks} == {0, 1}


def test_bad_outline_is_refused_before_any_work(documents, image_store):
    composer = make(documents, image_store)
    with pytest.raises(InputError, match="section 1 budget is 5 words"):
        list(composer.compose(ComposeRequest("x"), outline=Outline("x", [SectionPlan("A", [], 5)])))
    assert documents.list() == []


def test_invalid_request_writes_nothing(documents, image_store):
    with pytest.raises(InputError, match="empty"):
        list(make(documents, image_store).compose(ComposeRequest("  ")))
    assert documents.list() == []


def test_stop_keeps_what_was_written(documents, image_store):
    cancel = threading.Event()
    composer = make(documents, image_store)
    events = []
    for event in composer.compose(ComposeRequest("Tea", target_words=800), cancel=cancel):
        events.append(event)
        if event.stage == "draft" and event.section == 1 and event.tokens > 120:
            cancel.set()
    assert events[-1].stage == "stopped"
    doc = documents.get(events[-1].document_id)
    assert doc.status == "interrupted"
    assert {b.section for b in doc.text_blocks} == {0, 1}
    assert doc.image_blocks == []


def test_closing_the_stream_midway_marks_interrupted_and_keeps_partial_text(documents, image_store):
    events = make(documents, image_store).compose(ComposeRequest("Tea", target_words=800))
    seen = []
    for event in events:
        seen.append(event)
        if event.stage == "draft" and event.tokens == 30:
            break
    events.close()
    doc = documents.get(seen[-1].document_id)
    assert doc.status == "interrupted"
    streamed = "".join(e.delta for e in seen)
    assert doc.word_count >= 20 and doc.text_blocks[0].text.split()[:5] == streamed.split()[:5]


class ExplodingLM(ArticleWriter):
    """Fails on a given call (or on the first prompt holding `fail_on_text`), like a model
    server that goes away."""

    def __init__(self, fail_on_call: int = 0, fail_on_text: str = ""):
        super().__init__()
        self.fail_on_call = fail_on_call
        self.fail_on_text = fail_on_text

    def stream(self, messages, config, **kwargs):
        if len(self.calls) + 1 == self.fail_on_call or (
                self.fail_on_text and self.fail_on_text in messages[-1].content):
            self.fail_on_text = ""
            self.calls.append((messages, "", config))
            yield "Partial words before"
            raise RuntimeError("model server went away")
        yield from super().stream(messages, config, **kwargs)


def test_a_model_failure_marks_failed_and_keeps_text(documents, image_store):
    composer = make(documents, image_store, ExplodingLM(fail_on_text="of section 2,"))
    with pytest.raises(RuntimeError, match="went away"):
        for event in composer.compose(ComposeRequest("Tea", target_words=600)):
            doc_id = event.document_id
    doc = documents.get(doc_id)
    assert doc.status == "failed"
    assert doc.text_blocks[-1].text == "Partial words before"
    assert {b.section for b in doc.text_blocks} == {0, 1}


def test_a_model_that_writes_nothing_is_an_error(documents, image_store):
    lm = ScriptedLM(responder=lambda messages, prefix: "")
    with pytest.raises(ComposerError, match="wrote no text"):
        list(make(documents, image_store, lm).compose(ComposeRequest("Tea", target_words=100)))


def test_chinese_article(documents, image_store):
    doc = make(documents, image_store).compose_document(
        ComposeRequest("茶的历史", language="zh", target_words=400, images=1))
    assert doc.language == "zh" and doc.status == "done"
    assert len(doc.image_blocks) == 1


def test_timings_split_generation_storage_and_retrieval(documents, image_store):
    composer = make(documents, image_store)
    composer.compose_document(ComposeRequest("Tea", target_words=300, images=1))
    assert {"generation", "storage", "retrieval"} <= set(composer.timer.seconds)


def test_closing_after_the_first_event_still_leaves_no_document_composing(documents, image_store):
    events = make(documents, image_store).compose(ComposeRequest("Tea", target_words=300))
    first = next(events)
    events.close()
    assert documents.get(first.document_id).status == "interrupted"


def test_a_section_that_runs_long_is_cut_near_its_budget(documents, image_store):
    def long_reply(messages, prefix):
        if recognise(user_text(messages))[0] in ("section", "paragraph"):
            return sentences(1200, len(messages[-1].content))
        return "1. One: a\n2. Two: b"

    composer = make(documents, image_store, ScriptedLM(responder=long_reply))
    doc = composer.compose_document(ComposeRequest("Tea", target_words=400, text_only=True))
    assert doc.status == "done"
    assert doc.word_count <= 400 * 1.1 + 2


def _empty_store(database, tmp_path):
    from storage.images import ImageStore

    return ImageStore(database, tmp_path / "empty-images")


def test_web_images_fill_slots_the_library_cannot(documents, database, tmp_path):
    from composer.retrieval.web.openverse import OpenverseSearch
    from tests.fake_image_api import FakeImageAPI

    store = _empty_store(database, tmp_path)
    with FakeImageAPI() as api:
        web = OpenverseSearch(base_url=api.url, timeout=2)
        # The word-overlap double scores the fake API's titles low: any score places here.
        composer = Composer(ArticleWriter(), documents, WordOverlapRetriever(store), web_search=web,
                            image_threshold=0.0)
        events = list(composer.compose(ComposeRequest("Harbors of the north", target_words=400,
                                                      images=1)))
    assert events[-1].stage == "done"
    assert any(event.stage == "web" for event in events)
    doc = documents.get(events[-1].document_id)
    [block] = doc.image_blocks
    image = store.get(block.image_id)
    assert image.license and "via Openverse" in image.attribution
    assert image.caption_source == "web" and image.source.startswith("https://")  # its page


def test_a_failing_web_search_falls_back_with_a_clear_message(documents, database, tmp_path):
    from composer.retrieval.web.openverse import OpenverseSearch
    from tests.fake_image_api import FakeImageAPI

    store = _empty_store(database, tmp_path)
    with FakeImageAPI() as api:
        api.search_mode = "503"
        web = OpenverseSearch(base_url=api.url, timeout=2)
        composer = Composer(ArticleWriter(), documents, WordOverlapRetriever(store), web_search=web)
        events = list(composer.compose(ComposeRequest("Harbors of the north", target_words=400,
                                                      images=1)))
    assert events[-1].stage == "done"
    warnings = [event.message for event in events if event.stage == "warning"]
    assert any("HTTP 503" in message and "using your library only" in message
               for message in warnings)
    assert documents.get(events[-1].document_id).image_blocks == []
    assert store.count() == 0


def test_image_license_filter_keeps_only_images_with_that_license(documents, image_store):
    harbor = next(image for image in image_store.list() if "harbor" in image.caption)
    image_store.update(harbor.id, license="CC BY 4.0")
    composer = make(documents, image_store)
    events = list(composer.compose(ComposeRequest("Harbors of the north", target_words=800,
                                                  images=2, image_license="CC BY 4.0")))
    doc = documents.get(events[-1].document_id)
    assert [block.image_id for block in doc.image_blocks] == [harbor.id]
    assert doc.options["image_license"] == "CC BY 4.0"
    assert any("No picture in your library matches" in event.message for event in events
               if event.stage == "warning")
    with pytest.raises(InputError, match="image license must be text of at most 300"):
        list(composer.compose(ComposeRequest("Harbors", image_license="x" * 301)))


def test_compose_reports_each_planned_section_before_the_outline_is_complete(documents,
                                                                               image_store):
    lm = ArticleWriter(json_schema=True)
    events = list(make(documents, image_store, lm).compose(
        ComposeRequest("Write a guide to tea for beginners", target_words=600, text_only=True)))
    plan = [e.message for e in events if e.stage == "plan"]
    sections = [m for m in plan if m.startswith("Section ")]
    # each heading as soon as the model has written it, then with its key points
    assert sections == ["Section 1: Part Light …",
                        "Section 1: Part Light (the light idea; river facts)",
                        "Section 2: Part River …",
                        "Section 2: Part River (the river idea; stone facts)",
                        "Section 3: Part Stone …",
                        "Section 3: Part Stone (the stone idea; garden facts)"]
    assert plan.index(sections[-1]) < plan.index("Outline: 3 sections")
    doc = documents.get(events[-1].document_id)
    assert doc.title == "A Scripted Title" and doc.status == "done"


def test_opera_on_a_writer_without_attention_weights_is_refused_before_any_work(documents,
                                                                                image_store):
    from composer.types import GenerationConfig

    request = ComposeRequest("Tea", generation=GenerationConfig(decoding="opera"))
    with pytest.raises(InputError, match="OPERA decoding needs a local transformers writer"):
        list(make(documents, image_store).compose(request))
    assert documents.list() == []
