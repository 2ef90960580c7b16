"""Editing a written article: paragraph and image operations, the outline after writing.

The service layer of issue 6 (no UI): the UI and the CLI call an Editor.

* Model operations are two steps. `Editor.preview` streams the model's text into an
  EditPreview as it is written (the person watches, may stop it: what was streamed is kept);
  the last preview carries a Proposal. `Editor.accept(proposal, expected_version=...)` applies
  it; dropping the proposal is "cancel" (nothing was written).
* Every accepted change (accept, edit_text, an image operation, update_outline, each written
  section) is ONE change in the document's history (one undo), applied with optimistic
  concurrency: `expected_version` is the version the person's view was based on, and a
  document changed meanwhile raises ConflictError with nothing written.
* When a paragraph the model wrote is replaced (rewrite, expand, abbreviate, regenerate, or
  by hand), a preference pair (prompt, rejected = the model's text, chosen = the final text)
  is stored unless the change is trivial (composer/pairs_capture.py).

Block origins (composer.types): text "rewrite", "expand", "abbreviate", "insert",
"regenerate" (model), "manual" (edited by hand, including a preview tweaked before
accepting), "typed" (inserted by hand); images "search", "candidate", "upload", "generated".
"""

from __future__ import annotations

import logging
import re
import secrets
import threading
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterator

from composer import edit_prompts, prompts
from composer.config import MAX_CAPTION_CHARS
from composer.edit_prompts import LENGTH_FACTORS, PARAGRAPH_OPS, ParagraphContext
from composer.checked import CheckContext, WriteStep, describe
from composer.illustrate import CANDIDATES, shown_caption
from composer.pairs_capture import capture, make_pair, section_outline, wants_pair
from composer.types import (
    MODEL_TEXT_ORIGINS,
    Block,
    ConflictError,
    Document,
    GenerationConfig,
    ImageBlock,
    ImageCandidate,
    InputError,
    NotFoundError,
    Outline,
    ProgressEvent,
    SectionPlan,
    TextBlock,
    count_words,
)
from composer.sections import SectionWriter
from composer.writer import (
    paragraphs_for,
    previous_window,
    split_paragraphs,
    token_budget,
)
from storage.documents import (
    DeleteBlock,
    EditOp,
    InsertBlock,
    MoveBlock,
    UpdateBlock,
    UpdateMeta,
)

log = logging.getLogger(__name__)

MAX_EDIT_INSTRUCTION_CHARS = 2_000
MAX_PARAGRAPH_CHARS = 20_000
MATERIAL_CHARS = 4_000
MIN_WORDS = {"rewrite": 10, "expand": 30, "abbreviate": 8, "insert": 30}
PREVIEW_OPS = PARAGRAPH_OPS + ("regenerate",)
# The origin an accepted model operation gives the paragraphs it wrote.
OP_ORIGINS = {"rewrite": "rewrite", "expand": "expand", "abbreviate": "abbreviate",
              "insert_before": "insert", "insert_after": "insert", "regenerate": "regenerate"}
REPLACING_OPS = ("rewrite", "expand", "abbreviate")


# -- what goes between the layers ------------------------------------------------------------


@dataclass
class Proposal:
    """What accepting a preview would apply.

    `base_version`: the document version the preview was made from (accept refuses another);
    `block_id`: the paragraph operated on (the anchor of an insert; the first paragraph of the
    section for regenerate, None if it has none); `section`: its outline section; `paragraphs`:
    the model's text split into paragraphs (a rewrite may come back as several); `rejected`:
    the text it would replace (the section's text for regenerate, "" for an insert);
    `prompt`: the chat messages sent ([{"role", "content"}]); `cancelled`: the person stopped
    the model, `paragraphs` hold what was streamed until then.
    """

    doc_id: str
    op: str
    base_version: int
    block_id: int | None
    section: int
    paragraphs: list[str]
    rejected: str = ""
    prompt: list[dict[str, str]] = field(default_factory=list)
    text: str = ""
    cancelled: bool = False
    instruction: str = ""
    # Per paragraph: the checks it passed (composer/checked.py KeptParagraphs.summary).
    checks: list[dict[str, Any] | None] = field(default_factory=list)

    @property
    def proposed_text(self) -> str:
        """The proposed paragraphs as one text, blank-line separated (what a preview shows)."""
        return "\n\n".join(self.paragraphs)


@dataclass
class EditPreview:
    """The model's text streamed so far for an operation on `block_id` (or `section`).

    `delta` is the newly streamed piece; `fraction` an estimate of the share written (0..1).
    The last preview has done=True and carries the `proposal` to accept.
    """

    op: str
    block_id: int | None
    text: str
    done: bool = False
    fraction: float = 0.0
    delta: str = ""
    section: int | None = None
    proposal: Proposal | None = None
    cancelled: bool = False
    note: str = ""  # what the checks decided (a draft failed, a rewrite was kept, ...)




@dataclass
class _Plan:
    """A model operation ready to stream: its prompt, budget and what it is about."""

    doc: Document
    op: str
    block_id: int | None
    section: int
    prompt: prompts.Prompt
    config: GenerationConfig
    words: int
    rejected: str
    section_title: str
    instruction: str = ""
    # What kept text is checked against: the article without the text being replaced
    # (before / after it), and what it should be about.
    before: str = ""
    after: str = ""
    focus: str = ""
    material: str = ""


# -- checks and small helpers ----------------------------------------------------------------


def check_instruction(instruction: str) -> None:
    """InputError for an instruction over MAX_EDIT_INSTRUCTION_CHARS (empty is fine)."""
    if len(instruction) > MAX_EDIT_INSTRUCTION_CHARS:
        raise InputError(f"instruction of {len(instruction)} characters is longer than the "
                         f"limit of {MAX_EDIT_INSTRUCTION_CHARS}: shorten it")


def check_text(text: str) -> str:
    """The paragraph text stripped; InputError if empty or over MAX_PARAGRAPH_CHARS."""
    if len(text) > MAX_PARAGRAPH_CHARS:
        raise InputError(f"paragraph text of {len(text)} characters is longer than the limit "
                         f"of {MAX_PARAGRAPH_CHARS}: split it into several paragraphs")
    if not text.strip():
        raise InputError("the paragraph text is empty: type some text, or delete the paragraph")
    return text.strip()


def check_caption(caption: str) -> str:
    """The caption stripped; InputError if empty or over MAX_CAPTION_CHARS."""
    if len(caption) > MAX_CAPTION_CHARS:
        raise InputError(f"caption of {len(caption)} characters is longer than the limit of "
                         f"{MAX_CAPTION_CHARS}: shorten it")
    if not caption.strip():
        raise InputError("the caption is empty: describe the image to search for")
    return caption.strip()


def generation_config(doc: Document) -> GenerationConfig:
    """The decoding settings the document was composed with (its stored options)."""
    stored = doc.options.get("generation") or {}
    known = set(GenerationConfig.__dataclass_fields__)
    try:
        config = GenerationConfig(**{k: v for k, v in stored.items() if k in known})
    except TypeError:
        config = GenerationConfig()
    config = config.replace(stop=tuple(config.stop))
    seed = doc.options.get("seed")
    return config.replace(seed=seed) if isinstance(seed, int) else config


def sampled(config: GenerationConfig, seed: int | None) -> GenerationConfig:
    """`config` with sampling on and `seed` (a fresh random seed when None): an edit asked
    for again should not return the very same text, as greedy decoding would."""
    return config.replace(do_sample=True, num_beams=1,
                          seed=seed if seed is not None else secrets.randbelow(2**31))


def find_block(doc: Document, block_id: int) -> tuple[int, Block]:
    """(position, block) of `block_id` in `doc`; NotFoundError if it is not there."""
    for position, block in enumerate(doc.blocks):
        if block.id == block_id:
            return position, block
    raise NotFoundError(f"no block with id {block_id!r} in document {doc.id}: it may have "
                        "been deleted; reload the document")


def text_block(doc: Document, block_id: int | None) -> tuple[int, TextBlock]:
    """(position, paragraph) of `block_id`; InputError if it is an image block."""
    if block_id is None:
        raise InputError("no paragraph given: pass the block_id of the paragraph to edit")
    position, block = find_block(doc, block_id)
    if not isinstance(block, TextBlock):
        raise InputError(f"block {block_id} is an image, not a paragraph: use the image "
                         "operations (search again, choose a candidate, upload, generate)")
    return position, block


def image_block(doc: Document, block_id: int) -> tuple[int, ImageBlock]:
    """(position, image block) of `block_id`; InputError if it is a paragraph."""
    position, block = find_block(doc, block_id)
    if not isinstance(block, ImageBlock):
        raise InputError(f"block {block_id} is a paragraph, not an image: use the paragraph "
                         "operations")
    return position, block


def block_label(doc: Document, block_id: int) -> str:
    """"paragraph 3" / "image 2": the block's 1-based number among blocks of its kind."""
    _, block = find_block(doc, block_id)
    same = doc.text_blocks if isinstance(block, TextBlock) else doc.image_blocks
    number = next(n for n, other in enumerate(same, start=1) if other.id == block_id)
    return f"{'paragraph' if isinstance(block, TextBlock) else 'image'} {number}"


def _check_version(doc: Document, expected_version: int) -> None:
    """ConflictError, before any work, when the view is older than the stored document."""
    if doc.version != expected_version:
        raise ConflictError(f"document {doc.id} was changed elsewhere (version {doc.version}, "
                            f"you had {expected_version}): reload it and try again")


_QUOTES = {'"': '"', "“": "”", "「": "」"}


def _unquote(paragraph: str) -> str:
    """A paragraph without the quotes a model sometimes wraps around its whole answer
    (only when the opening and closing quote are the paragraph's only ones)."""
    text = paragraph.strip()
    close = _QUOTES.get(text[:1])
    if close is None or len(text) < 3 or not text.endswith(close):
        return text
    inner = text[1:-1]
    return text if text[0] in inner or close in inner else inner.strip()


_META_START = re.compile(
    r"^\s*(here(?:'s| is| are)\b|sure\b|certainly\b|of course\b|okay\b|ok\b|"
    r"i(?:'ll| will| hope)\b|i(?:'ve| have) (?:rewritten|revised|expanded|shortened|condensed|"
    r"made|created|kept|added)\b|below is|as requested\b|note:|"
    r"(?:this|the|my) (?:revised|rewritten|expanded|shortened|abbreviated|condensed) "
    r"(?:version|paragraph|text|piece)|in this "
    r"(?:version|revision)\b|以下是|好的|这是(?:修改|改写|扩写|缩写)|修改后的|改写后的)", re.I)


def is_meta_comment(paragraph: str) -> bool:
    """Whether a reply paragraph talks about the answer instead of being part of it (small
    models wrap their text in "Here's the rewritten paragraph:" and "This version ...")."""
    text = paragraph.strip()
    return bool(_META_START.match(text)) or text.endswith((":", "："))


def reply_paragraphs(text: str, section_title: str) -> list[str]:
    """A model's reply to an edit as clean paragraphs: its remarks about the answer ("Here's
    the rewritten paragraph:", "This version ...") and wrapping quotes dropped."""
    paragraphs = [_unquote(p) for p in split_paragraphs(text, section_title)]
    return [p for p in paragraphs if p and not is_meta_comment(p)]


def human_paragraphs(text: str) -> list[str]:
    """A person's text as paragraphs: split at blank lines, stripped, nothing else removed
    (split_paragraphs also drops headings and lead-ins, which only a model's reply needs)."""
    return [part.strip() for part in re.split(r"\n\s*\n", text.replace("\r\n", "\n"))
            if part.strip()]


def _messages(prompt: prompts.Prompt) -> list[dict[str, str]]:
    return [{"role": message.role, "content": message.content} for message in prompt.messages]


def _section_blocks(doc: Document, section: int) -> list[Block]:
    return [block for block in doc.blocks if block.section == section]


def _section_insert_position(doc: Document, section: int) -> int:
    """Where the blocks of `section` start (or would start if it has none)."""
    for position, block in enumerate(doc.blocks):
        if block.section >= section:
            return position
    return len(doc.blocks)


def _used_images(doc: Document, except_block: int | None = None) -> set[str]:
    return {block.image_id for block in doc.image_blocks
            if block.image_id and block.id != except_block}


# -- the editor ----------------------------------------------------------------------------


class Editor:
    """Edits saved documents: previews and accepts model operations, applies direct edits.

    `lm` a LanguageModel; `documents` the DocumentRepository; `retriever` the library
    retriever (image search; None: image search is refused); `pairs` the preference pair
    repository (None: no pairs are stored); `generator` an image generator (None: generating
    is refused); `images` the ImageStore generated images go into (default: the retriever's).
    """

    def __init__(self, lm: Any, documents: Any, retriever: Any | None = None,
                 pairs: Any | None = None, generator: Any | None = None,
                 images: Any | None = None, embedder: Any | None = None) -> None:
        """`embedder` (a text embedder; default: the retriever's) lets the checks judge
        whether new text is on the subject; without one that check is skipped."""
        self.lm = lm
        embedder = embedder if embedder is not None else getattr(retriever, "embedder", None)
        self.sections = SectionWriter(lm, embedder)
        self.documents = documents
        self.retriever = retriever
        self.pairs = pairs
        self.generator = generator
        self.images = images if images is not None else getattr(retriever, "store", None)

    # -- model operations: preview, then accept ------------------------------------------------

    def preview(self, doc_id: str, op: str, *, block_id: int | None = None,
                section: int | None = None, instruction: str = "",
                cancel: threading.Event | None = None,
                seed: int | None = None) -> Iterator[EditPreview]:
        """Stream a model operation's text; the last EditPreview (done) holds the Proposal.

        `op`: "rewrite", "expand", "abbreviate", "insert_before", "insert_after" (of the
        paragraph `block_id`) or "regenerate" (the section `section`, or that of `block_id`).
        Inputs are checked now (NotFoundError, InputError), before the first preview. Setting
        `cancel` stops the model; what was streamed stays in the last preview's proposal.
        Nothing is written: pass the proposal to accept(), or drop it to cancel.

        The model samples (do_sample, the document's temperature / top_p) with `seed`, a fresh
        random one when None, so that asking again gives another take; pass a seed to
        reproduce a preview.
        """
        check_instruction(instruction)
        doc = self.documents.get(doc_id)
        if op == "regenerate":
            plan = self._regenerate_plan(doc, section, block_id, instruction)
        elif op in PARAGRAPH_OPS:
            plan = self._paragraph_plan(doc, op, block_id, instruction)
        else:
            raise InputError(f"unknown edit operation {op!r}: use one of {list(PREVIEW_OPS)}")
        plan.config = sampled(plan.config, seed)
        return self._stream(plan, cancel)

    def accept(self, proposal: Proposal, *, expected_version: int, owner: str | None = None,
               edited_text: str | None = None) -> Document:
        """Apply a previewed proposal as one change; returns the document after it.

        `expected_version` is the version the person's view is based on; it must be the
        proposal's base_version and the stored version (else ConflictError, nothing written).
        `edited_text` is the preview as the person tweaked it before accepting: when it differs
        from the proposal, it is used (split at blank lines) and the paragraphs' origin is
        "manual". A model paragraph replaced non-trivially yields a preference pair.
        """
        if expected_version != proposal.base_version:
            raise ConflictError(f"the preview was made from version {proposal.base_version} "
                                f"but your view is at version {expected_version}: make the "
                                "preview again")
        doc = self.documents.get(proposal.doc_id)
        _check_version(doc, expected_version)
        paragraphs, origin = self._final_paragraphs(proposal, edited_text)
        checks = proposal.checks if origin != "manual" else []
        if proposal.op == "regenerate":
            ops, label = self._regenerate_ops(doc, proposal.section, paragraphs, origin, checks)
        elif proposal.op in REPLACING_OPS:
            ops, label = self._replace_ops(doc, proposal, paragraphs, origin, checks)
        else:
            ops, label = self._insert_ops(doc, proposal, paragraphs, origin, checks)
        saved = self._commit(doc.id, ops, label, expected_version, owner)
        pair_op = "manual" if origin == "manual" else proposal.op
        self._capture_replacement(doc, proposal, "\n\n".join(paragraphs), pair_op, owner)
        return saved

    # -- direct paragraph edits ---------------------------------------------------------------

    def edit_text(self, doc_id: str, block_id: int, text: str, *, expected_version: int,
                  owner: str | None = None) -> Document:
        """Replace a paragraph's text with what the person typed (origin "manual").

        The same text again changes nothing (the document is returned as it is). A
        preference pair is stored when the old text was the model's and the change is not
        trivial. InputError for empty text (delete the paragraph instead) or over the limit.
        """
        text = check_text(text)
        doc = self.documents.get(doc_id)
        _, block = text_block(doc, block_id)
        _check_version(doc, expected_version)
        if text == block.text:
            return doc  # nothing changed: no change in the history, the origin stays
        label = f"edit {block_label(doc, block_id)}"
        ops = [UpdateBlock(block_id, text=text, origin="manual")]
        saved = self._commit(doc_id, ops, label, expected_version, owner)
        self._capture(doc, block, text, "manual", owner)
        return saved

    def insert_text(self, doc_id: str, text: str, *, expected_version: int,
                    after_block_id: int | None = None, before_block_id: int | None = None,
                    owner: str | None = None) -> Document:
        """Insert a typed paragraph (origin "typed") after or before a block.

        With neither block given, the paragraph goes at the end of the document. It joins
        the section of the block it is placed next to.
        """
        text = check_text(text)
        doc = self.documents.get(doc_id)
        position, section, label = self._insert_place(doc, after_block_id, before_block_id)
        _check_version(doc, expected_version)
        block = TextBlock(text=text, section=section, origin="typed")
        return self._commit(doc_id, [InsertBlock(position, block)], f"type a paragraph {label}",
                            expected_version, owner)

    def delete_block(self, doc_id: str, block_id: int, *, expected_version: int,
                     owner: str | None = None) -> Document:
        """Delete a paragraph or an image (one change; undo brings it back)."""
        doc = self.documents.get(doc_id)
        find_block(doc, block_id)
        _check_version(doc, expected_version)
        return self._commit(doc_id, [DeleteBlock(block_id)],
                            f"delete {block_label(doc, block_id)}", expected_version, owner)

    def move_block(self, doc_id: str, block_id: int, position: int, *, expected_version: int,
                   owner: str | None = None) -> Document:
        """Move a block (an image, or a paragraph) to `position` (0..n-1, final position).

        The block joins the section of the block it ends up after (the first block's when
        moved to the top), so that outline changes keep it with its new neighbours.
        """
        doc = self.documents.get(doc_id)
        current, _ = find_block(doc, block_id)
        if not 0 <= position < len(doc.blocks):
            raise InputError(f"position {position} is outside 0..{len(doc.blocks) - 1}: pick a "
                             "position in that range")
        _check_version(doc, expected_version)
        others = [block for block in doc.blocks if block.id != block_id]
        neighbour = others[position - 1] if position > 0 else (others[0] if others else None)
        section = neighbour.section if neighbour is not None else doc.blocks[current].section
        ops: list[EditOp] = [MoveBlock(block_id, position)]
        if section != doc.blocks[current].section:
            ops.append(UpdateBlock(block_id, section=section))
        return self._commit(doc_id, ops, f"move {block_label(doc, block_id)}",
                            expected_version, owner)

    # -- images ---------------------------------------------------------------------------------

    def search_again(self, doc_id: str, block_id: int, caption: str, *, expected_version: int,
                     owner: str | None = None) -> Document:
        """Search the library with a new caption: new candidates, the best one chosen
        (origin "search"). InputError when nothing matches (nothing is written)."""
        caption = check_caption(caption)
        doc = self.documents.get(doc_id)
        _, block = image_block(doc, block_id)
        _check_version(doc, expected_version)
        candidates = self._search(doc, caption, _used_images(doc, block_id), owner)
        best = max(candidates, key=lambda candidate: candidate.score)
        # `caption` was the query; the caption shown is the found image's own.
        update = UpdateBlock(block_id, caption=self._shown_caption(best.image_id, best.caption),
                             image_id=best.image_id, candidates=candidates, origin="search")
        return self._commit(doc_id, [update],
                            f"search {block_label(doc, block_id)} again", expected_version, owner)

    def choose_candidate(self, doc_id: str, block_id: int, image_id: str, *,
                         expected_version: int, owner: str | None = None) -> Document:
        """Show another of the image block's candidates (origin "candidate"), captioned
        with that image's own caption (a caption edited by hand goes with the old image)."""
        doc = self.documents.get(doc_id)
        _, block = image_block(doc, block_id)
        chosen = {candidate.image_id: candidate for candidate in block.candidates}.get(image_id)
        if chosen is None:
            raise InputError(f"image {image_id!r} is not a candidate of "
                             f"{block_label(doc, block_id)}: pick one of its candidates, or "
                             "search again")
        _check_version(doc, expected_version)
        update = UpdateBlock(block_id, caption=self._shown_caption(image_id, chosen.caption),
                             image_id=image_id, origin="candidate")
        return self._commit(doc_id, [update],
                            f"choose another picture for {block_label(doc, block_id)}",
                            expected_version, owner)

    def use_image(self, doc_id: str, block_id: int, image_id: str, *, expected_version: int,
                  owner: str | None = None) -> Document:
        """Show an uploaded library image (origin "upload").

        Uploading goes through the library (ImageStore.add); pass the new image's id here.
        """
        doc = self.documents.get(doc_id)
        image_block(doc, block_id)
        if not image_id:
            raise InputError("no image given: upload an image, then pass its id")
        _check_version(doc, expected_version)
        update = UpdateBlock(block_id, caption=self._shown_caption(image_id, "") or None,
                             image_id=image_id, origin="upload")
        return self._commit(doc_id, [update],
                            f"use an uploaded picture for {block_label(doc, block_id)}",
                            expected_version, owner)

    def generate_image(self, doc_id: str, block_id: int, *, expected_version: int,
                       caption: str | None = None, seed: int = 0, owner: str | None = None,
                       progress: Callable[..., Any] | None = None,
                       cancel: threading.Event | None = None) -> Document:
        """Generate a picture for the caption (the block's, or a new one) into the library
        and show it (origin "generated"). InputError when no generator is configured."""
        if self.generator is None:
            raise InputError("no image generator is configured: set COMPOSER_IMAGE_GENERATOR "
                             "to generate images")
        if self.images is None:
            raise InputError("no image library is configured to keep generated images")
        doc = self.documents.get(doc_id)
        _, block = image_block(doc, block_id)
        caption = check_caption(caption if caption is not None else block.caption)
        _check_version(doc, expected_version)
        from composer.generate_image import generate_into_library

        image = generate_into_library(self.generator, self.images, caption,
                                      owner=owner if owner is not None else doc.owner,
                                      seed=seed, progress=progress, cancel=cancel)
        update = UpdateBlock(block_id, caption=caption, image_id=image.id, origin="generated")
        return self._commit(doc_id, [update],
                            f"generate a picture for {block_label(doc, block_id)}",
                            expected_version, owner)

    def insert_image(self, doc_id: str, after_block_id: int, caption: str, *,
                     expected_version: int, owner: str | None = None) -> Document:
        """Insert an image after a block, searched by `caption` (origin "search").

        When the library has no match, the slot is inserted without a picture (image_id None)
        so that the person can upload or generate one.
        """
        caption = check_caption(caption)
        doc = self.documents.get(doc_id)
        position, anchor = find_block(doc, after_block_id)
        _check_version(doc, expected_version)
        try:
            candidates = self._search(doc, caption, _used_images(doc), owner)
        except InputError:
            if self.retriever is None:
                raise
            candidates = []
        best = max(candidates, key=lambda c: c.score) if candidates else None
        # A found image is captioned with its own caption; an empty slot keeps the query.
        shown = self._shown_caption(best.image_id, best.caption) if best else caption
        block = ImageBlock(caption=shown, image_id=best.image_id if best else None,
                           candidates=candidates, section=anchor.section, origin="search")
        return self._commit(doc_id, [InsertBlock(position + 1, block)],
                            f"insert an image after {block_label(doc, after_block_id)}",
                            expected_version, owner)

    # -- the outline after writing --------------------------------------------------------------

    def update_outline(self, doc_id: str, outline: Outline, *, expected_version: int,
                       sources: list[int | None] | None = None,
                       owner: str | None = None) -> tuple[Document, list[int]]:
        """Change the outline of a written document: add, remove, rename or reorder sections.

        Returns the document and the indices (in the new outline) of the new sections, which
        have no text yet: write them with write_sections(). One change: removed sections'
        blocks are deleted, the blocks of moved sections move with them (images included),
        and every block's section number is renumbered.

        Matching a new section to an old one: `sources[i]` names the old section index new
        section i comes from (None: new), when the UI knows it. Otherwise by title (case and
        surrounding spaces ignored, each old section used once, in order), then an unmatched
        new section takes the unmatched old section at the same position if their key points
        are the same (a renamed section). Every other new section is new.
        """
        from composer.pipeline import check_outline

        check_outline(outline)
        doc = self.documents.get(doc_id)
        old = section_outline(doc)
        mapping = match_sections(old, outline, sources)
        _check_version(doc, expected_version)
        if outline == doc.outline and mapping == list(range(len(old.sections))):
            return doc, []  # the same outline: nothing to change
        ops, new_sections = self._outline_ops(doc, outline, mapping)
        saved = self._commit(doc_id, ops, "change the outline", expected_version, owner)
        return saved, new_sections

    def write_sections(self, doc_id: str, sections: list[int], *, expected_version: int,
                       owner: str | None = None, cancel: threading.Event | None = None,
                       ) -> Iterator[ProgressEvent]:
        """Write the given sections (new ones, without text) in place, streaming progress.

        Events as the composer's: stage "write" with `delta` and `pending` (the section's text
        not saved yet), then "save" once a section is saved, and finally "done" (or "stopped"
        when `cancel` was set: what was written so far is saved). Each section is saved as
        its own change ("write section N"), so undo removes one section at a time; the first
        save needs `expected_version`, the next ones follow on from it. InputError (raised on
        the first next()) for a section that is unknown or already has text.
        """
        doc = self.documents.get(doc_id)
        _check_version(doc, expected_version)
        outline = section_outline(doc)
        for index in sections:
            if not 0 <= index < len(outline.sections):
                raise InputError(f"section {index} is outside 0..{len(outline.sections) - 1}: "
                                 "pick a section of the outline")
            if any(isinstance(b, TextBlock) for b in _section_blocks(doc, index)):
                raise InputError(f"section {index + 1} already has text: regenerate it instead")
        return self._write_sections(doc, sorted(set(sections)), expected_version, owner, cancel)

    # -- building the operations' prompts ----------------------------------------------------

    def _paragraph_plan(self, doc: Document, op: str, block_id: int | None,
                        instruction: str) -> _Plan:
        _, block = text_block(doc, block_id)
        outline = section_outline(doc)
        index = min(max(block.section, 0), len(outline.sections) - 1)
        texts = doc.text_blocks
        number = next(n for n, other in enumerate(texts) if other.id == block.id)
        context = ParagraphContext(
            title=doc.title, section_number=index + 1, section=outline.sections[index],
            paragraph=block.text, before=texts[number - 1].text if number > 0 else "",
            after=texts[number + 1].text if number + 1 < len(texts) else "")
        words = self._op_words(op, block.text, outline.sections[index])
        prompt = edit_prompts.edit_prompt(op, context, words, instruction, doc.language)
        config = generation_config(doc)
        budget = config.replace(max_new_tokens=token_budget(words, doc.language,
                                                            config.max_new_tokens))
        rejected = block.text if op in REPLACING_OPS else ""
        others = [other.text for other in texts if other.id != block.id or op not in
                  REPLACING_OPS]
        plan_section = outline.sections[index]
        focus = "; ".join(plan_section.key_points) or plan_section.title
        return _Plan(doc, op, block.id, block.section, prompt, budget, words, rejected,
                     plan_section.title, instruction, before="\n\n".join(others),
                     focus=f"{plan_section.title}: {focus}")

    @staticmethod
    def _op_words(op: str, paragraph: str, section: SectionPlan) -> int:
        """The length asked for: ~1x (rewrite), ~1.6x (expand), ~0.5x (abbreviate) the
        paragraph; an inserted paragraph as long as one of its section's paragraphs."""
        if op in LENGTH_FACTORS:
            words = round(count_words(paragraph) * LENGTH_FACTORS[op])
            return max(MIN_WORDS[op], words)
        per_paragraph = section.words // paragraphs_for(section.words) if section.words else 0
        return max(MIN_WORDS["insert"], per_paragraph or count_words(paragraph))

    def _regenerate_plan(self, doc: Document, section: int | None, block_id: int | None,
                         instruction: str) -> _Plan:
        if section is None:
            if block_id is None:
                raise InputError("regenerate needs a section index or a block_id in it")
            section = find_block(doc, block_id)[1].section
        outline = section_outline(doc)
        if not 0 <= section < len(outline.sections):
            raise InputError(f"section {section} is outside 0..{len(outline.sections) - 1}: "
                             "pick a section of the outline")
        plan_section = outline.sections[section]
        start = _section_insert_position(doc, section)
        before = "\n\n".join(b.text for b in doc.blocks[:start] if isinstance(b, TextBlock))
        material = str(doc.options.get("material", "") or "")[:MATERIAL_CHARS]
        if instruction.strip():
            label = "作者的要求：" if doc.language == "zh" else "Author's instruction: "
            material = (material + "\n" if material else "") + label + instruction.strip()
        prompt = prompts.section_prompt(outline, section, previous_window(before), material,
                                        paragraphs_for(plan_section.words, doc.language),
                                        doc.language)
        config = generation_config(doc)
        budget = config.replace(max_new_tokens=token_budget(
            plan_section.words, doc.language, config.max_new_tokens))
        old = [b for b in _section_blocks(doc, section) if isinstance(b, TextBlock)]
        after = "\n\n".join(b.text for b in doc.blocks[start:]
                             if isinstance(b, TextBlock) and b.section != section)
        return _Plan(doc, "regenerate", old[0].id if old else None, section, prompt, budget,
                     plan_section.words, "\n\n".join(b.text for b in old), plan_section.title,
                     instruction, before=before, after=after, material=material)

    def _stream(self, plan: _Plan, cancel: threading.Event | None) -> Iterator[EditPreview]:
        """Stream the plan's text as previews (kept paragraphs, then the draft being
        written); the last one carries the Proposal with the checked paragraphs."""
        kept: list[str] = []
        checks: list[dict[str, Any] | None] = []
        draft = ""
        for step in self._steps(plan, cancel):
            if step.restart:
                draft = ""
            draft += step.delta
            if step.kept is not None:
                draft = ""
                kept += step.kept.paragraphs
                checks += [step.kept.summary()] * len(step.kept.paragraphs)
            text = "\n\n".join(kept + ([draft] if draft else []))
            yield EditPreview(plan.op, plan.block_id, text, fraction=min(
                0.99, count_words(text) / (plan.words or 1)), delta=step.delta,
                section=plan.section, note=step.note or (
                    describe(step.kept) if step.kept is not None else ""))
        cancelled = cancel is not None and cancel.is_set()
        text = "\n\n".join(kept)
        proposal = Proposal(plan.doc.id, plan.op, plan.doc.version, plan.block_id, plan.section,
                            kept, plan.rejected, _messages(plan.prompt), text, cancelled,
                            plan.instruction, checks)
        yield EditPreview(plan.op, plan.block_id, text, done=True, fraction=1.0,
                          section=plan.section, proposal=proposal, cancelled=cancelled)

    def _steps(self, plan: _Plan, cancel: threading.Event | None) -> Iterator[WriteStep]:
        """The writer's steps for a plan: a section written paragraph by paragraph, or one
        paragraph operation, each through the checks (composer/checked.py)."""
        doc = plan.doc
        if plan.op == "regenerate":
            steps = self.sections.write_section(
                section_outline(doc), plan.section, plan.before, plan.material, doc.language,
                plan.config, doc.instruction, cancel, after=plan.after)
            yield from (step for _, step in steps)
            return
        context = CheckContext(plan.before, doc.language, doc.instruction, plan.focus,
                               plan.section_title, words=plan.words, split=reply_paragraphs)
        yield from self.sections.checked.write(plan.prompt, plan.config, context, cancel)

    # -- turning an accepted proposal into block operations ----------------------------------

    @staticmethod
    def _final_paragraphs(proposal: Proposal, edited_text: str | None) -> tuple[list[str], str]:
        """The paragraphs to save and their origin ("manual" when the person changed them)."""
        paragraphs, origin = list(proposal.paragraphs), OP_ORIGINS[proposal.op]
        if edited_text is not None:
            check_text(edited_text)
            edited = human_paragraphs(edited_text)
            if edited != paragraphs:
                paragraphs, origin = edited, "manual"
        if not paragraphs:
            raise InputError("the preview is empty: run the operation again, or type the text")
        for paragraph in paragraphs:
            check_text(paragraph)
        return paragraphs, origin

    @staticmethod
    def _replace_ops(doc: Document, proposal: Proposal, paragraphs: list[str],
                     origin: str, checks: list[dict[str, Any] | None]
                     ) -> tuple[list[EditOp], str]:
        position, block = text_block(doc, proposal.block_id)
        ops: list[EditOp] = [UpdateBlock(block.id, text=paragraphs[0], origin=origin,
                                         checks=_nth(checks, 0))]
        ops += [InsertBlock(position + offset, TextBlock(
            text=paragraph, section=block.section, origin=origin, checks=_nth(checks, offset)))
                for offset, paragraph in enumerate(paragraphs[1:], start=1)]
        return ops, f"{proposal.op} {block_label(doc, block.id)}"

    @staticmethod
    def _insert_ops(doc: Document, proposal: Proposal, paragraphs: list[str],
                    origin: str, checks: list[dict[str, Any] | None]
                    ) -> tuple[list[EditOp], str]:
        position, block = text_block(doc, proposal.block_id)
        where = "before" if proposal.op == "insert_before" else "after"
        start = position if where == "before" else position + 1
        ops: list[EditOp] = [InsertBlock(start + offset, TextBlock(
            text=paragraph, section=block.section, origin=origin, checks=_nth(checks, offset)))
            for offset, paragraph in enumerate(paragraphs)]
        return ops, f"insert a paragraph {where} {block_label(doc, block.id)}"

    @staticmethod
    def _regenerate_ops(doc: Document, section: int, paragraphs: list[str],
                        origin: str, checks: list[dict[str, Any] | None] | None = None,
                        ) -> tuple[list[EditOp], str]:
        """Replace the section's paragraphs in place: the first ones are updated (so images
        stay after the same-numbered paragraph), extra ones inserted after the last, surplus
        old ones deleted. A section without text gets its paragraphs where it begins."""
        old = [(p, b) for p, b in enumerate(doc.blocks)
               if b.section == section and isinstance(b, TextBlock)]
        checks = checks or []
        ops: list[EditOp] = [UpdateBlock(block.id, text=text, origin=origin,
                                         checks=_nth(checks, number))
                             for number, ((_, block), text) in enumerate(zip(old, paragraphs))]
        ops += [DeleteBlock(block.id) for _, block in old[len(paragraphs):]]
        if len(paragraphs) > len(old):
            start = old[-1][0] + 1 if old else _section_insert_position(doc, section)
            ops += [InsertBlock(start + offset, TextBlock(
                text=text, section=section, origin=origin,
                checks=_nth(checks, len(old) + offset)))
                    for offset, text in enumerate(paragraphs[len(old):])]
        return ops, f"regenerate section {section + 1}"

    def _insert_place(self, doc: Document, after_block_id: int | None,
                      before_block_id: int | None) -> tuple[int, int, str]:
        """(position, section, label words) for a block inserted after / before a block."""
        if after_block_id is not None and before_block_id is not None:
            raise InputError("give after_block_id or before_block_id, not both")
        if after_block_id is not None:
            position, block = find_block(doc, after_block_id)
            return position + 1, block.section, f"after {block_label(doc, after_block_id)}"
        if before_block_id is not None:
            position, block = find_block(doc, before_block_id)
            return position, block.section, f"before {block_label(doc, before_block_id)}"
        section = doc.blocks[-1].section if doc.blocks else 0
        return len(doc.blocks), section, "at the end"

    # -- preference pairs -------------------------------------------------------------------

    def _capture(self, doc: Document, block: TextBlock, final_text: str, op: str,
                 owner: str | None) -> None:
        """Store a pair for a replaced model paragraph; a storage failure is logged, not
        raised (the edit itself is already saved)."""
        try:
            capture(self.pairs, doc, block, final_text, op, owner)
        except Exception:  # noqa: BLE001 - the edit is saved; losing a pair must not undo it
            log.exception("could not store the preference pair of block %s", block.id)

    def _capture_replacement(self, doc: Document, proposal: Proposal, final_text: str,
                             op: str, owner: str | None) -> None:
        """Pairs of an accepted proposal: a replaced paragraph, or a regenerated section
        (all of its old paragraphs the model's: rejected = the section's old text, prompt =
        the section prompt the regeneration used)."""
        if proposal.op in REPLACING_OPS:
            _, block = text_block(doc, proposal.block_id)
            self._capture(doc, block, final_text, op, owner)
            return
        if proposal.op != "regenerate" or self.pairs is None:
            return
        old = [b for b in _section_blocks(doc, proposal.section) if isinstance(b, TextBlock)]
        if not old or any(block.origin not in MODEL_TEXT_ORIGINS for block in old):
            return
        whole = replace(old[0], text="\n\n".join(block.text for block in old))
        if not wants_pair(whole.text, whole.origin, final_text):
            return
        pair = make_pair(doc, whole, final_text, op, owner)
        pair.prompt = proposal.prompt
        try:
            self.pairs.add(pair)
        except Exception:  # noqa: BLE001 - as in _capture
            log.exception("could not store the preference pair of section %s", proposal.section)

    # -- images -------------------------------------------------------------------------------

    def set_caption(self, doc_id: str, block_id: int, caption: str, *, expected_version: int,
                    owner: str | None = None) -> Document:
        """Write an image's caption by hand; it stays until another picture is chosen."""
        doc = self.documents.get(doc_id)
        image_block(doc, block_id)
        caption = check_caption(caption)
        _check_version(doc, expected_version)
        return self._commit(doc_id, [UpdateBlock(block_id, caption=caption)],
                            f"caption {block_label(doc, block_id)}", expected_version, owner)

    def _shown_caption(self, image_id: str, caption: str) -> str:
        """The caption to show under a library image: its current library caption (the
        candidate's copy when the library is not at hand), shortened (shown_caption)."""
        store = self.images if self.images is not None else getattr(self.retriever, "store",
                                                                      None)
        if store is not None:
            try:
                caption = store.get(image_id).caption
            except NotFoundError:
                pass
        return shown_caption(caption)

    def _search(self, doc: Document, caption: str, exclude: set[str],
                owner: str | None) -> list[ImageCandidate]:
        """Library candidates for a caption, as the composer searches (owner's and shared
        images, the document's license / source filters, images used elsewhere excluded)."""
        if self.retriever is None:
            raise InputError("image search is not available here: no image library is "
                             "configured; upload an image instead")
        license_ = str(doc.options.get("image_license") or "") or None
        source = str(doc.options.get("image_source") or "") or None
        candidates = list(self.retriever.search(
            caption, k=CANDIDATES, exclude=exclude,
            owner=owner if owner is not None else doc.owner, license=license_, source=source))
        if not candidates:
            raise InputError(f"the image library has no unused image for \"{caption}\": try "
                             "another caption, upload an image, or add images with "
                             "`python -m composer library add`")
        return candidates

    # -- the outline ---------------------------------------------------------------------------

    @staticmethod
    def _outline_ops(doc: Document, outline: Outline,
                     mapping: list[int | None]) -> tuple[list[EditOp], list[int]]:
        """Operations turning the document's blocks into the new outline's order."""
        old_count = len(section_outline(doc).sections)
        owned = {index: [b for b in doc.blocks if min(b.section, old_count - 1) == index]
                 for index in range(old_count)}
        kept = {old for old in mapping if old is not None}
        ops: list[EditOp] = [UpdateMeta(title=outline.title, outline=outline)]
        ops += [DeleteBlock(block.id) for index, blocks in owned.items() if index not in kept
                for block in blocks]
        target: list[tuple[Block, int]] = [(block, new) for new, old in enumerate(mapping)
                                           if old is not None for block in owned[old]]
        current = [block.id for block in doc.blocks
                   if min(block.section, old_count - 1) in kept]
        for position, (block, _) in enumerate(target):
            if current[position] != block.id:
                ops.append(MoveBlock(block.id, position))
                current.remove(block.id)
                current.insert(position, block.id)
        ops += [UpdateBlock(block.id, section=new) for block, new in target
                if block.section != new]
        new_sections = [index for index, old in enumerate(mapping) if old is None]
        return ops, new_sections

    def _write_sections(self, doc: Document, sections: list[int], version: int,
                        owner: str | None, cancel: threading.Event | None,
                        ) -> Iterator[ProgressEvent]:
        outline = section_outline(doc)
        for done, index in enumerate(sections):
            plan = self._regenerate_plan(doc, index, None, "")
            yield ProgressEvent("write", f"Writing section {index + 1} of "
                                f"{len(outline.sections)}: {outline.sections[index].title}",
                                section=index, sections=len(outline.sections),
                                fraction=done / len(sections), document_id=doc.id)
            last: EditPreview | None = None
            for preview in self._stream(plan, cancel):
                last = preview
                if not preview.done:
                    yield ProgressEvent("write", delta=preview.delta, section=index,
                                        sections=len(outline.sections),
                                        words=count_words(preview.text), document_id=doc.id,
                                        fraction=(done + preview.fraction) / len(sections),
                                        pending=preview.text)
            assert last is not None and last.proposal is not None
            if last.proposal.paragraphs:
                ops, _ = self._regenerate_ops(doc, index, last.proposal.paragraphs, "compose",
                                              last.proposal.checks)
                doc = self._commit(doc.id, ops, f"write section {index + 1}", version, owner)
                version = doc.version
                yield ProgressEvent("save", f"Saved section {index + 1}", section=index,
                                    sections=len(outline.sections), document_id=doc.id,
                                    fraction=(done + 1) / len(sections))
            elif not last.cancelled:
                yield ProgressEvent("warning", f"The model wrote nothing for section {index + 1}"
                                    ": write it again, or type it", section=index,
                                    document_id=doc.id)
            if last.cancelled:
                yield ProgressEvent("stopped", "Stopped; what was written is saved",
                                    document_id=doc.id)
                return
        yield ProgressEvent("done", "Done", fraction=1.0, document_id=doc.id,
                            words=doc.word_count)

    # -- storage ------------------------------------------------------------------------------

    def _commit(self, doc_id: str, ops: list[EditOp], label: str, expected_version: int,
                owner: str | None) -> Document:
        """Apply `ops` in order as ONE change labelled `label` (one undo); ConflictError if
        the document is no longer at `expected_version`. Returns the document after it."""
        return apply_ops(self.documents, doc_id, ops, label, expected_version, owner)


def _nth(checks: list[dict[str, Any] | None], number: int) -> dict[str, Any] | None:
    return checks[number] if number < len(checks) else None


def match_sections(old: Outline, new: Outline,
                   sources: list[int | None] | None = None) -> list[int | None]:
    """For each new section, the index of the old section it continues, or None (new).

    See Editor.update_outline for the rule. InputError for sources of the wrong length, an
    old index out of range, or one old section named twice.
    """
    if sources is not None:
        if len(sources) != len(new.sections):
            raise InputError(f"sources has {len(sources)} entries for {len(new.sections)} "
                             "sections: give one per section (None for a new one)")
        named = [s for s in sources if s is not None]
        if any(not 0 <= s < len(old.sections) for s in named) or len(set(named)) < len(named):
            raise InputError(f"sources {sources} must name old sections 0..{len(old.sections) - 1}"
                             " at most once each")
        return list(sources)
    mapping: list[int | None] = [None] * len(new.sections)
    free = list(range(len(old.sections)))
    for index, section in enumerate(new.sections):
        key = section.title.strip().lower()
        match = next((o for o in free if old.sections[o].title.strip().lower() == key), None)
        if match is not None:
            mapping[index] = match
            free.remove(match)
    for index, section in enumerate(new.sections):
        if mapping[index] is None and index in free \
                and old.sections[index].key_points == section.key_points:
            mapping[index] = index
            free.remove(index)
    return mapping


def apply_ops(documents: Any, doc_id: str, ops: list[EditOp], label: str,
              expected_version: int, owner: str | None) -> Document:
    """Hand the operations to the repository's atomic `apply` (one change, one undo).

    `owner` is not recorded with the change (the storage contract has no place for it); it
    is kept in the signature so that a later contract can take it without touching callers.
    """
    return documents.apply(doc_id, ops, label=label, expected_version=expected_version)
