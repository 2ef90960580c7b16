"""The browser UI's actions as plain functions: no Gradio objects in, plain values out.

Each handler takes the Services of the process plus the values a person entered, checks that
the document belongs to the caller (`owner`), and returns what the layout shows. Keeping them
free of Gradio makes them testable without a server (tests/test_ui_handlers.py).
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from composer.types import (
    ComposeRequest,
    Document,
    GenerationConfig,
    InputError,
    NotFoundError,
    Outline,
    ProgressEvent,
    SectionPlan,
)
from composer.validation import CheckedRequest, check_request
from ui.article_view import ArticleView, render_document

ANY_VALUE = "(any)"  # a filter drop-down's "no filter" choice
RENDER_INTERVAL = 0.25  # seconds between article updates while text streams
# Stages whose change to the document the events carry (or that change none): the view
# follows them without reading the document.
TEXT_STAGES = ("write", "draft", "check")


@dataclass
class WriteUpdate:
    """One refresh of the compose view while an article is written."""

    html: str
    status: str
    fraction: float
    document_id: str | None
    document: Document | None = None  # as read now; None while text streams (not read)
    finished: bool = False
    stage: str = "plan"  # the latest ProgressEvent stage that was not a warning
    section: int | None = None  # the section being written (0-based)
    sections: int | None = None
    words: int = 0  # words saved so far, not counting a draft (drafts may be redone)
    warning: str = ""  # a warning that arrived with this update, if any
    position: int | None = None  # waiting for a worker: place in line (composer/queue.py)
    wait_seconds: float | None = None  # and the estimated wait


@dataclass
class ComposeOptions:
    """The compose form's values as the browser sends them (strings and numbers)."""

    language: str = "en"
    words: float = 800
    images: str = "auto"
    text_only: bool = False
    seed: float = 0
    sample: bool = False
    temperature: float = 0.7
    top_p: float = 0.8
    repetition_penalty: float = 1.1
    beams: float = 1
    max_tokens: float = 1024
    selection: str = "score"
    image_license: str = ANY_VALUE
    image_source: str = ANY_VALUE
    candidates: float = 3
    decoding: str = "default"


def login_name(username: str | None, session: Any = None) -> str | None:
    """Who is logged in: the --auth user name, else the Hugging Face account (Spaces OAuth,
    read from the session as Gradio stores it), else None."""
    if username:
        return username
    info = session.get("oauth_info") if hasattr(session, "get") else None
    if not info or (info.get("expires_at") or float("inf")) < time.time():
        return None
    name = (info.get("userinfo") or {}).get("preferred_username")
    return f"{name}@huggingface" if name else None


def owner_id(browser_key: str | None, username: str | None) -> str:
    """Who owns what this session creates: the logged-in user, else the browser's key (the
    id of the signed xc_owner cookie, verified by ui/identity.py: never a client's word)."""
    if username:
        return f"user:{username}"
    if not browser_key:
        raise InputError("this browser has no owner key yet: reload the page")
    return f"key:{browser_key}"


def whole_number(name: str, value: Any) -> int:
    """A form value as a whole number; InputError naming the field otherwise."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a number, got {value!r}")
    if number != int(number):
        raise InputError(f"{name} must be a whole number, got {value!r}")
    return int(number)


def _filter_value(choice: Any) -> str:
    """A filter drop-down's value as a request field: "" for "(any)" or nothing."""
    return "" if choice in (None, "", ANY_VALUE) else str(choice)


def reference_material(services: Any, material: str, files: list[Any] | None
                       ) -> tuple[str, list[str]]:
    """(material, reference image paths) for a composition; InputError for bad or too many
    files. A writer that sees images (COMPOSER_VISION_MODEL) gets the files as image tokens;
    a text-only one gets a line per image (library caption, visible text) in the material."""
    from composer.references import apply_references

    paths = [Path(item) if isinstance(item, (str, os.PathLike)) else Path(item.name)
             for item in (files or [])]
    return apply_references(services, material or "", paths)


def build_request(instruction: str, material: str, options: ComposeOptions,
                  reference_images: list[str] | None = None) -> CheckedRequest:
    """The form as a request checked against every limit (InputError): the UI is where a
    request enters, so the composer takes it as it is (composer/validation.py)."""
    images = None if str(options.images).lower() in ("auto", "automatic", "") else whole_number(
        "images", options.images)
    generation = GenerationConfig(
        max_new_tokens=whole_number("max tokens", options.max_tokens), do_sample=bool(options.sample),
        temperature=float(options.temperature), top_p=float(options.top_p),
        repetition_penalty=float(options.repetition_penalty),
        num_beams=whole_number("beams", options.beams), seed=whole_number("seed", options.seed),
        candidates=whole_number("candidates", options.candidates),
        decoding=str(options.decoding or "default"),
    )
    request = ComposeRequest(
        instruction=instruction or "", language=options.language,
        target_words=whole_number("target words", options.words), images=images,
        text_only=bool(options.text_only), seed=whole_number("seed", options.seed),
        selection=options.selection, material=material or "", generation=generation,
        image_license=_filter_value(options.image_license),
        image_source=_filter_value(options.image_source),
        reference_images=list(reference_images or []),
    )
    return check_request(request)


def check_form(instruction: str, material: str, references: list[Any] | None, title: str,
               rows: Any, options: ComposeOptions, services: Any = None) -> None:
    """Every check of the compose form that needs no model (InputError), so that bad input
    is answered at once instead of after the work queued before it; with `services`, also
    whether the writer writes the language asked for (without loading it)."""
    from composer.pipeline import check_outline

    build_request(instruction, material, options, ["reference"] * len(references or []))
    if services is not None:
        services.check_language(options.language)
    edited = outline_from_rows(title, rows)
    if edited.sections:
        check_outline(edited, options.language)


def outline_rows(outline: Outline) -> list[list[Any]]:
    """An outline as editable table rows: title, key points joined by ';', words."""
    return [[s.title, "; ".join(s.key_points), s.words] for s in outline.sections]


def table_rows(rows: Any) -> list[list[Any]]:
    """A table's rows as lists, whether gr.Dataframe sent a pandas DataFrame, lists or None."""
    if rows is None:
        return []
    if hasattr(rows, "values"):
        rows = rows.values.tolist()
    return [list(row) for row in rows]


def outline_from_rows(title: str, rows: Any) -> Outline:
    """The outline a person edited in the table; empty rows are dropped."""
    sections = []
    for number, row in enumerate(table_rows(rows), start=1):
        cells = [("" if cell is None else str(cell)).strip() for cell in list(row) + ["", "", ""]]
        if not any(cells[:3]):
            continue
        points = [p.strip() for p in cells[1].replace("；", ";").split(";") if p.strip()]
        words = whole_number(f"section {number} words", cells[2] or 0)
        sections.append(SectionPlan(title=cells[0], key_points=points, words=words))
    if sections and not (title or "").strip():
        raise InputError("the article title is empty: give it a title")
    return Outline(title=(title or "").strip(), sections=sections)


def move_row(rows: Any, number: Any, offset: int) -> list[list[Any]]:
    """Rows with row `number` (1-based) moved up (-1) or down (+1); out of range: unchanged."""
    rows = table_rows(rows)
    index = whole_number("row", number) - 1
    target = index + offset
    if not (0 <= index < len(rows)) or not (0 <= target < len(rows)):
        raise InputError(f"row {index + 1} cannot move there: rows are 1..{len(rows)}")
    rows[index], rows[target] = rows[target], rows[index]
    return rows


def plan_outline(services: Any, instruction: str, material: str, options: ComposeOptions,
                 reference_images: list[str] | None = None,
                 cancel: threading.Event | None = None) -> tuple[str, list[list[Any]]]:
    """Generate a title and outline for editing before writing (`cancel` stops the model)."""
    title, rows = "", []
    for title, rows in plan_outline_stream(services, instruction, material, options,
                                           reference_images, cancel):
        pass
    return title, rows


def plan_outline_stream(services: Any, instruction: str, material: str,
                        options: ComposeOptions, reference_images: list[str] | None = None,
                        cancel: threading.Event | None = None
                        ) -> Iterator[tuple[str, list[list[Any]]]]:
    """(title, rows) as the outline is planned: the sections checked so far (budgets 0),
    then the whole outline with its budgets (the last one yielded)."""
    request = build_request(instruction, material, options, reference_images)
    services.check_language(request.language)
    for outline in services.composer(with_images=False).plan_stream(request, cancel):
        yield outline.title, outline_rows(outline)


def owned_document(services: Any, doc_id: str | None, owner: str) -> Document:
    """The document if `owner` owns it; NotFoundError otherwise (no hint that it exists)."""
    if not doc_id:
        raise NotFoundError("no document is open: compose one or open one from Documents")
    doc = services.documents.get(doc_id)
    if doc.owner != owner:
        raise NotFoundError(f"no document with id {doc_id!r}")
    return doc


def write_article(services: Any, request: ComposeRequest, outline: Outline | None, owner: str,
                  cancel: threading.Event, interval: float = RENDER_INTERVAL,
                  ) -> Iterator[WriteUpdate]:
    """Compose and save, yielding the view at each stage and every `interval` s.

    Linear in the article's length: each saved paragraph comes in its "write" event and is
    appended to the view (ui/article_view.py). The document is read only when the events do
    not say what changed: while planning (no text yet), while images are placed (a few
    times per image, MAX_IMAGES at most) and at the end; those updates carry it in
    `document`.
    """
    services.check_language(request.language)
    yield from _article_updates(services, services.jobs.compose(request, outline, owner, cancel),
                                interval)


def being_written(services: Any, doc: Document) -> bool:
    """Whether a composition (in this process or on a worker) is writing `doc` now."""
    return doc.status == "composing" and services.jobs.running(doc.id)


def follow_article(services: Any, doc_id: str, owner: str, cancel: threading.Event,
                   interval: float = RENDER_INTERVAL, doc: Document | None = None
                   ) -> Iterator[WriteUpdate]:
    """The view of a document another page (or a worker) is writing, from now until it is
    done or stopped; nothing when it is not being written. `cancel` stops the writing.
    `doc`: the owner's document when the caller has just read it."""
    doc = doc or owned_document(services, doc_id, owner)
    if not being_written(services, doc):
        return
    yield from _article_updates(services, services.jobs.watch(doc.id, cancel), interval)


def _article_updates(services: Any, events: Iterator[ProgressEvent], interval: float
                     ) -> Iterator[WriteUpdate]:
    """The compose view after each stage of `events` and every `interval` s (write_article)."""
    view: ArticleView | None = None
    doc_id: str | None = None
    pending, status, fraction, last, section = "", "", 0.0, 0.0, None
    stage, sections, words, warning = "plan", None, 0, ""
    position, wait_seconds = None, None
    planned: dict[int, tuple[str, list[str]]] = {}  # the outline while it is planned
    for event in events:
        doc_id, doc = event.document_id or doc_id, None
        fraction = max(fraction, event.fraction)
        if event.block is not None and view is not None:
            view.append(event.block)
            words = view.words
        if event.stage in ("write", "draft"):
            pending = event.pending
            section = event.section if event.section is not None else section
        sections = event.sections or sections
        if event.stage == "warning":
            warning = event.message
        else:
            stage = event.stage
        if event.stage == "plan" and event.heading and event.section is not None:
            planned[event.section] = (event.heading, list(event.points))
        position, wait_seconds = event.position, event.wait_seconds
        if event.stage == "done" and event.words:
            words = event.words
        if event.message:
            status = f"⚠ {event.message}" if event.stage == "warning" else event.message
        now = time.monotonic()
        if event.message or now - last >= interval:
            last = now
            if view is None or event.stage not in TEXT_STAGES:
                doc = services.documents.get(doc_id)
                if view is None:
                    view = ArticleView(services, doc)
                else:
                    view.reset(doc)
                words = view.words
            outline = [planned[key] for key in sorted(planned)]
            yield WriteUpdate(view.html(pending, section, outline), status, fraction, doc_id,
                              doc, stage=stage, section=section, sections=sections,
                              words=words, warning=warning, position=position,
                              wait_seconds=wait_seconds)
            warning = ""
    doc = doc or services.documents.get(doc_id)  # read at the last event ("done"), or now
    yield WriteUpdate(render_document(services, doc), status, 1.0, doc_id, doc, finished=True,
                      stage=stage, section=section, sections=sections, words=doc.word_count,
                      warning=warning)


def list_documents(services: Any, owner: str) -> list[list[Any]]:
    """The owner's documents, newest first, as table rows."""
    return [[row.title, row.updated_at[:16].replace("T", " "), row.status, row.words, row.id]
            for row in services.documents.list(owner=owner, limit=200)]


def duplicate_document(services: Any, doc_id: str, owner: str) -> Document:
    """A copy of one of the owner's documents, owned by them."""
    owned_document(services, doc_id, owner)
    return services.documents.duplicate(doc_id, owner=owner)


def delete_document(services: Any, doc_id: str, owner: str, confirmed: bool) -> None:
    """Delete one of the owner's documents, only once the person has confirmed."""
    doc = owned_document(services, doc_id, owner)
    if not confirmed:
        raise InputError(f"tick 'Yes, delete' to delete \"{doc.title}\": this cannot be undone")
    services.documents.delete(doc_id)


def share_link(services: Any, doc_id: str, owner: str, base_url: str) -> str:
    """The public read-only link of one of the owner's documents (created on first share)."""
    owned_document(services, doc_id, owner)
    token = services.shares.share(doc_id)
    return f"{base_url.rstrip('/')}/a/{token}"


def revoke_link(services: Any, doc_id: str, owner: str) -> None:
    """Stop sharing: the link answers 404 from now on."""
    owned_document(services, doc_id, owner)
    services.shares.revoke(doc_id)


def image_slots(doc: Document) -> list[tuple[str, int]]:
    """(label, block id) for each image block, for the slot picker."""
    return [(f"🖼 {number}: {block.caption[:60]}", block.id)
            for number, block in enumerate(doc.image_blocks, start=1)]


def candidate_gallery(services: Any, doc: Document, block_id: Any) -> list[tuple[str, str]]:
    """(thumbnail path, caption) of an image block's candidates; the chosen one is marked ✓.

    Cached thumbnails, not the originals: a library photo can be tens of megabytes.
    """
    block = next((b for b in doc.image_blocks if b.id == whole_number("image slot", block_id)), None)
    if block is None:
        raise NotFoundError(f"document {doc.id} has no image block {block_id}")
    items = []
    for candidate in block.candidates:
        try:
            path = str(services.images.thumbnail(candidate.image_id, 256))
        except NotFoundError:
            continue  # deleted from the library since (or its file is gone)
        mark = "✓ " if candidate.image_id == block.image_id else ""
        items.append((path, f"{mark}{candidate.caption[:80]} ({candidate.score:.2f})"))
    return items
