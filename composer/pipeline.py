"""Composer: instruction -> outline -> streamed sections -> image slots -> a saved Document.

The composer yields ProgressEvents that a UI and a CLI both render. It saves as it goes: the
document row exists before the first token, every finished paragraph is written at once, and
if the work stops for any reason (stop button, Ctrl-C, SIGTERM, an error) the text written so
far stays in the database and the document is marked interrupted or failed.
"""

from __future__ import annotations

import threading
from functools import partial
from typing import Any, Callable, Iterator, TypeVar

from composer.config import DEFAULT_IMAGE_THRESHOLD, MAX_TARGET_WORDS
from composer.generation import StageTimer, TimedLanguageModel
from composer.illustrate import CANDIDATES, Illustrator, no_match_message, shown_caption
from composer.planner import PlannedHeading, Planner
from composer.types import (
    ComposeRequest,
    ComposerError,
    Document,
    GenerationConfig,
    ImageBlock,
    InputError,
    Outline,
    ProgressEvent,
    TextBlock,
    count_words,
)
from composer.languages import check_declared_language, length_text, length_unit
from composer.validation import check_request
from composer.checked import KeptParagraphs, clean_sentences, describe
from composer.sections import SectionWriter
from composer.writer import split_paragraphs
from models.lm import LanguageModel

T = TypeVar("T")

PLAN_SHARE = 0.05
WRITE_SHARE = 0.80


class Cancelled(ComposerError):
    """The person pressed stop; what was written is kept."""


class Composer:
    """Runs the composition pipeline with injected components (model, storage, retrieval)."""

    def __init__(self, lm: LanguageModel, documents: Any, retriever: Any | None = None,
                 timer: StageTimer | None = None, web_search: Any | None = None,
                 generator: Any | None = None,
                 image_threshold: float = DEFAULT_IMAGE_THRESHOLD,
                 check_language: Callable[[str], None] | None = None,
                 embedder: Any | None = None):
        """A library image is placed only when its score reaches `image_threshold`; below it
        `generator` (models/image_generator.py) makes a picture, else `web_search`
        (composer/retrieval/web/) imports some, else the slot gets none. `embedder` (a text
        embedder, models/embed.py; default: the retriever's) checks that key points and
        paragraphs are on the subject; without one that check is skipped."""
        self.timer = timer or StageTimer()
        self.web_search = web_search
        self.generator = generator
        self.image_threshold = image_threshold
        # InputError for a language the writer does not write (Services asks the settings too).
        self.check_language = check_language or partial(check_declared_language, lm=lm)
        self.lm = TimedLanguageModel(lm, self.timer)
        self.documents = documents
        self.retriever = retriever
        embedder = embedder if embedder is not None else getattr(retriever, "embedder", None)
        self.planner = Planner(self.lm, embedder=embedder)
        self.writer = SectionWriter(self.lm, embedder)
        self.illustrator = Illustrator(self.lm)

    def plan(self, request: ComposeRequest, cancel: threading.Event | None = None) -> Outline:
        """Title and outline only, for a person to edit before writing (checked first)."""
        outline = Outline(title="")
        for outline in self.plan_stream(request, cancel):
            pass
        return outline

    def plan_stream(self, request: ComposeRequest, cancel: threading.Event | None = None
                    ) -> Iterator[Outline]:
        """The outline as it is planned: the checked sections so far, then the whole outline
        with word budgets (the last one yielded). The request is checked first, unless it is a
        CheckedRequest (checked where it entered: the UI's form, or compose)."""
        request = check_request(request)
        yield from self.planner.stream(request, _config(request), cancel)

    def compose(self, request: ComposeRequest, outline: Outline | None = None,
                cancel: threading.Event | None = None, owner: str | None = None,
                document_id: str | None = None) -> Iterator[ProgressEvent]:
        """Compose and save an article, yielding progress; the last event is "done"/"stopped".
        The request is checked first, unless it is a CheckedRequest already.

        `document_id` writes into an existing document instead of a new one (a queued job,
        or a job resumed after its worker died): its outline and saved paragraphs are kept
        and writing goes on after the last saved paragraph, so nothing is written twice."""
        request = check_request(request)
        self.check_language(request.language)  # before the document exists
        check_decoding(request.generation, self.lm)
        if outline is not None:
            check_outline(outline, request.language)
        config = _config(request)
        state = _WriteState(request.language)
        if document_id is None:
            # 1. Create the document first, so that nothing later can be lost.
            title = outline.title if outline else request.instruction.strip()[:120]
            doc = self._store(self.documents.create, title, request.instruction,
                              request.language, request.options(), outline, owner)
        else:
            doc = self._store(self.documents.get, document_id)
            outline = outline or doc.outline
            state.resume(doc)
            if doc.status != "composing":
                self._store(self.documents.update_meta, doc.id, status="composing")
        try:
            yield ProgressEvent("plan", "Planning the outline", document_id=doc.id)
            # 2. Plan: title and outline with word budgets.
            if outline is None:
                shown, heading = 0, None
                for outline in self.plan_stream(request, cancel):
                    for number, section in enumerate(outline.sections[shown:], shown + 1):
                        if isinstance(section, PlannedHeading):  # its points are coming
                            if section.title != heading:
                                heading = section.title
                                yield ProgressEvent("plan", f"Section {number}: {heading} …",
                                                    section=number - 1, document_id=doc.id,
                                                    heading=heading)
                            continue
                        points = "; ".join(section.key_points)
                        yield ProgressEvent("plan", f"Section {number}: {section.title}"
                                            + (f" ({points})" if points else ""),
                                            section=number - 1, document_id=doc.id,
                                            heading=section.title,
                                            points=list(section.key_points))
                        shown = number
                self._store(self.documents.update_meta, doc.id, title=outline.title,
                            outline=outline)
            _check_cancel(cancel)
            yield ProgressEvent("plan", f"Outline: {len(outline.sections)} sections",
                                sections=len(outline.sections), fraction=PLAN_SHARE,
                                document_id=doc.id)
            # 3. Write each section in turn, saving paragraphs as they complete.
            yield from self._write(doc, request, outline, config, state, cancel)
            # 4. Place images: slots, captions, candidates, selection.
            if not request.text_only and not state.had_images:
                yield from self._illustrate(doc, request, outline.title, state, config, cancel)
            # 5. Done.
            self._store(self.documents.update_meta, doc.id, status="done")
            yield ProgressEvent("done", "Done", words=state.words, fraction=1.0,
                                document_id=doc.id)
        except Cancelled:
            self._save_partial(doc.id, state, "interrupted")
            written = length_text(state.words, request.language)
            yield ProgressEvent("stopped", f"Stopped: the {written} written so far "
                                "are saved (marked interrupted)", words=state.words,
                                document_id=doc.id)
        except (GeneratorExit, KeyboardInterrupt, SystemExit):
            self._save_partial(doc.id, state, "interrupted")
            raise
        except BaseException:
            self._save_partial(doc.id, state, "failed")
            raise

    def compose_document(self, request: ComposeRequest, **kwargs: Any) -> Document:
        """Compose without watching progress; returns the saved Document."""
        document_id = None
        for event in self.compose(request, **kwargs):
            document_id = event.document_id or document_id
        return self.documents.get(document_id)

    # -- stages -------------------------------------------------------------------------------

    def _write(self, doc: Document, request: ComposeRequest, outline: Outline,
               config: GenerationConfig, state: "_WriteState",
               cancel: threading.Event | None) -> Iterator[ProgressEvent]:
        """Write each section paragraph by paragraph: the lead draft streams as "draft"
        events; each kept paragraph is saved with its checks and sent as a "write" event."""
        sections = len(outline.sections)
        resume_at = max((number for _, number in state.paragraphs), default=0)
        for index, section in enumerate(outline.sections):
            if index < resume_at:  # written before a restart
                continue
            before = "\n\n".join(text for text, number in state.paragraphs if number < index)
            done = [text for text, number in state.paragraphs if number == index]
            yield ProgressEvent("write", f"Writing section {index + 1} of {sections}: "
                                f"{section.title}", section=index, sections=sections,
                                words=state.words, fraction=self._fraction(state, request),
                                document_id=doc.id)
            state.start_section(index, section.title)
            steps = self.writer.write_section(outline, index, before, request.material,
                                              request.language, config, request.instruction,
                                              cancel, images=request.reference_images,
                                              done=done)
            for part, step in steps:
                if step.restart:
                    state.pending = ""
                if step.note:
                    yield ProgressEvent("check", step.note, section=index, sections=sections,
                                        document_id=doc.id, words=state.words)
                if step.delta:
                    state.pending += step.delta
                    state.tokens += 1
                    yield ProgressEvent("draft", delta=step.delta, section=index,
                                        sections=sections, tokens=state.tokens,
                                        words=state.words + count_words(state.pending),
                                        fraction=self._fraction(state, request),
                                        document_id=doc.id, pending=state.pending)
                if step.kept is not None:
                    state.pending = ""
                    for paragraph in step.kept.paragraphs:
                        saved = self._append_paragraph(doc.id, state, paragraph,
                                                       step.kept.summary())
                        yield ProgressEvent("write", delta=paragraph + "\n\n", section=index,
                                            sections=sections, tokens=state.tokens,
                                            words=state.words, document_id=doc.id,
                                            fraction=self._fraction(state, request),
                                            block=saved)
                    yield ProgressEvent("check", check_message(index, part, step.kept),
                                        section=index, sections=sections, words=state.words,
                                        document_id=doc.id,
                                        fraction=self._fraction(state, request))
            _check_cancel(cancel)
        if not state.paragraphs:
            raise ComposerError("the model wrote no text: try again with another seed or model")

    def _illustrate(self, doc: Document, request: ComposeRequest, title: str,
                    state: "_WriteState", config: GenerationConfig,
                    cancel: threading.Event | None) -> Iterator[ProgressEvent]:
        paragraphs = [text for text, _ in state.paragraphs]
        owner = doc.owner
        if request.images is not None and request.images > len(paragraphs):
            yield ProgressEvent("warning", f"{request.images} images were asked for but the "
                                f"article has {len(paragraphs)} paragraphs; placing "
                                f"{len(paragraphs)}", document_id=doc.id)
        yield ProgressEvent("slots", "Choosing where images help", fraction=PLAN_SHARE +
                            WRITE_SHARE, document_id=doc.id)
        slots = self.illustrator.choose_slots(paragraphs, request.images, request.language,
                                              config, cancel, images=request.reference_images)
        used: set[str] = set()
        captions: list[str] = []
        for number, slot in enumerate(slots):
            _check_cancel(cancel)
            share = PLAN_SHARE + WRITE_SHARE + (1 - PLAN_SHARE - WRITE_SHARE) * number / len(slots)
            yield ProgressEvent("caption", f"Image {number + 1} of {len(slots)}: describing it",
                                fraction=share, document_id=doc.id)
            context = "\n\n".join(paragraphs[: slot + 1])
            caption = self.illustrator.caption(title, captions, paragraphs[slot],
                                               request.language, config, cancel,
                                               images=request.reference_images)
            with self.timer.measure("retrieval"):
                candidates = self._candidates(caption, used, owner, request)
            label = f"Image {number + 1} of {len(slots)}"
            if not self._fitting(candidates):  # nothing in the library is good enough
                found = yield from self._fallback(doc, request, caption, label, used, config,
                                                  share, cancel)
                candidates = found or candidates
            fitting = self._fitting(candidates)
            if not fitting:
                yield ProgressEvent("warning", no_match_message(
                    caption, self.generator is not None, self.web_search is not None),
                    document_id=doc.id)
                continue
            yield ProgressEvent("select", f"{label}: choosing among {len(fitting)}",
                                fraction=share, document_id=doc.id)
            chosen = fitting[self.illustrator.select(fitting, context, request.selection,
                                                     request.language, config, cancel,
                                                     images=request.reference_images)]
            used.add(chosen.image_id)
            captions.append(caption)
            # The caption shown is the image's own, never the query that found it.
            block = ImageBlock(caption=shown_caption(chosen.caption), image_id=chosen.image_id,
                               candidates=candidates, section=state.paragraphs[slot][1])
            # Text blocks sit at 0..n-1; each image already placed above shifts the next by one.
            self._store(self.documents.insert_block, doc.id, slot + 1 + len(captions) - 1, block)

    # -- helpers ------------------------------------------------------------------------------

    def _candidates(self, caption: str, used: set[str], owner: str | None,
                    request: ComposeRequest) -> list[Any]:
        """Library images for a caption: the owner's and the shared ones, unused so far, of
        the license and source the request asks for."""
        if self.retriever is None:
            return []
        return self.retriever.search(caption, k=CANDIDATES, exclude=used, owner=owner,
                                     license=request.image_license or None,
                                     source=request.image_source or None)

    def _fitting(self, candidates: list[Any]) -> list[Any]:
        """The candidates whose score reaches the placement threshold, best first."""
        return [c for c in candidates if c.score >= self.image_threshold]

    def _fallback(self, doc: Document, request: ComposeRequest, caption: str, label: str,
                  used: set[str], config: GenerationConfig, share: float,
                  cancel: threading.Event | None) -> Iterator[ProgressEvent]:
        """No library image fits: generate a picture (COMPOSER_IMAGE_GENERATOR), else import
        web images (COMPOSER_WEB_IMAGES); returns the new candidates ([] when neither is on
        or both failed). A failure is a warning, never the end of the composition."""
        if self.retriever is None:
            return []
        if self.generator is not None:
            yield ProgressEvent("generate", f"{label}: generating a picture", fraction=share,
                                document_id=doc.id)
            message = self._generate(caption, doc.owner, config, cancel)
            if message is None:
                return self._candidates(caption, used, doc.owner, request)
            yield ProgressEvent("warning", message, document_id=doc.id)
        if self.web_search is not None:
            yield ProgressEvent("web", f"{label}: searching the web", fraction=share,
                                document_id=doc.id)
            with self.timer.measure("retrieval"):
                message = self._search_web(caption)
                candidates = self._candidates(caption, used, doc.owner, request)
            if message:
                yield ProgressEvent("warning", message, document_id=doc.id)
            return candidates
        return []

    def _generate(self, caption: str, owner: str | None, config: GenerationConfig,
                  cancel: threading.Event | None) -> str | None:
        """Generate a picture for the caption into the library; a message when that failed."""
        from composer.generate_image import generate_into_library

        try:
            with self.timer.measure("generate image"):
                generate_into_library(self.generator, self.retriever.store, caption,
                                      owner=owner, seed=config.seed or 0, cancel=cancel)
        except (ComposerError, ImportError, RuntimeError, OSError, ValueError) as error:
            _check_cancel(cancel)
            return f"Could not generate a picture for '{caption}': {error}"
        self.retriever.index()
        return None

    def _search_web(self, caption: str) -> str | None:
        """Import web images for a caption into the library; a message when that failed."""
        from composer.retrieval.web.importer import search_web_images

        images, message = search_web_images(self.web_search, self.retriever.store, caption,
                                             CANDIDATES)
        if images:
            self.retriever.index()
        return message

    def _append_paragraph(self, doc_id: str, state: "_WriteState", paragraph: str,
                          checks: dict[str, Any] | None = None) -> TextBlock:
        block = TextBlock(text=paragraph, section=state.section, checks=checks)
        saved, = self._store(self.documents.append_blocks, doc_id, [block])
        state.paragraphs.append((paragraph, state.section))
        state.words += count_words(paragraph)
        return saved

    def _save_partial(self, doc_id: str, state: "_WriteState", status: str) -> None:
        """Keep the clean sentences of the draft being written when the work stops, then set
        the final status."""
        for paragraph in clean_sentences(state.take_draft(), state.text(),
                                         state.language, finished=False):
            self._append_paragraph(doc_id, state, paragraph)
        self._store(self.documents.update_meta, doc_id, status=status)

    def _store(self, method: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        with self.timer.measure("storage"):
            return method(*args, **kwargs)

    @staticmethod
    def _fraction(state: "_WriteState", request: ComposeRequest) -> float:
        written = min(1.0, (state.words + count_words(state.pending)) / request.target_words)
        return PLAN_SHARE + WRITE_SHARE * written


class _WriteState:
    """What has been written so far: saved paragraphs and the draft still streaming in."""

    def __init__(self, language: str = "en") -> None:
        self.paragraphs: list[tuple[str, int]] = []
        self.language = language
        self.pending = ""
        self.section = 0
        self.section_title = ""
        self.words = 0
        self.tokens = 0
        self.had_images = False

    def resume(self, doc: Document) -> None:
        """Start from what a document already holds (a job picked up again)."""
        self.paragraphs = [(block.text, block.section) for block in doc.text_blocks]
        self.words = sum(count_words(text) for text, _ in self.paragraphs)
        self.had_images = len(doc.blocks) > len(self.paragraphs)

    def start_section(self, index: int, title: str) -> None:
        self.section, self.section_title, self.pending = index, title, ""

    def text(self) -> str:
        return "\n\n".join(text for text, _ in self.paragraphs)

    def take_draft(self) -> list[str]:
        """The draft being written, as paragraphs (it is cleared)."""
        rest, self.pending = self.pending, ""
        return split_paragraphs(rest, self.section_title)


def check_outline(outline: Outline, language: str = "en") -> None:
    """Raise InputError for an outline a person edited into something unusable (budgets are
    in words, or characters for Chinese)."""
    unit = length_unit(language)
    if not outline.sections:
        raise InputError("the outline has no sections: add at least one")
    if len(outline.sections) > 30:
        raise InputError(f"the outline has {len(outline.sections)} sections; the limit is 30")
    for number, section in enumerate(outline.sections, start=1):
        if not section.title.strip():
            raise InputError(f"section {number} has no title")
        if not isinstance(section.words, int) or not 20 <= section.words <= 3000:
            raise InputError(f"section {number} budget is {section.words!r} {unit}; "
                             "it must be between 20 and 3000")
    if outline.total_words > MAX_TARGET_WORDS:
        raise InputError(f"the outline's budgets add up to {outline.total_words} {unit}; "
                         f"the limit is {MAX_TARGET_WORDS}")


def check_decoding(config: GenerationConfig, lm: Any) -> None:
    """InputError for OPERA decoding on a writer that cannot do it (it needs the attention
    weights of a local transformers model)."""
    if config.decoding == "opera" and not getattr(lm, "supports_opera", False):
        raise InputError(f"OPERA decoding needs a local transformers writer; {lm.name!r} "
                         "is not one: choose the default decoding")
    if config.num_beams > 1 and not getattr(lm, "supports_beams", True):
        raise InputError(f"beam search needs a local writer; {lm.name!r} is a model server: "
                         "set beams to 1")


def check_message(section: int, part: int, kept: KeptParagraphs) -> str:
    """One status line about a kept paragraph and where it is."""
    return f"Section {section + 1}, paragraph {part + 1}: {describe(kept)}"


def _config(request: ComposeRequest) -> GenerationConfig:
    return request.generation.replace(seed=request.seed)


def _check_cancel(cancel: threading.Event | None) -> None:
    if cancel is not None and cancel.is_set():
        raise Cancelled("stopped by the user")
