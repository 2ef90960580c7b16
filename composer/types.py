"""Plain dataclasses passed between the layers.

This module is a leaf: it imports nothing from the project and nothing heavy (no torch), so
the UI, the CLI, storage and the model backends can all share these shapes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Union

LANGUAGES = ("en", "zh")
Language = Literal["en", "zh"]
DocumentStatus = Literal["composing", "done", "failed", "interrupted"]
DOCUMENT_STATUSES = ("composing", "done", "failed", "interrupted")
SelectionMode = Literal["model", "score"]


class ComposerError(Exception):
    """An error a user can act on; its message says what was wrong and what to do next."""


class InputError(ComposerError, ValueError):
    """Bad input from a user: the message names the value and the limit."""


class NotFoundError(ComposerError, LookupError):
    """An id that names no document, block or image."""


class ConflictError(ComposerError):
    """A save based on a stale version of a document (another tab or process saved first)."""


class StorageError(ComposerError):
    """The database or a data file cannot be read or written (read-only, disk full, server
    unreachable ...): the message names the path or URL and what to do (storage/faults.py)."""


@dataclass
class GenerationConfig:
    """How the language model decodes. Defaults suit the small embedded model.

    `seed` None means "do not reseed"; any integer makes sampling reproducible.
    `stop` holds extra strings that end generation (EOS always does).
    `json_schema`, a JSON schema as a string (so the config stays plain and hashable), makes
    a backend whose `supports_json_schema` is True decode only replies valid under it.
    `candidates` is how many drafts of each paragraph the section writer decodes (together,
    in one batch, on a backend that batches) before it checks them and keeps the best; 1 keeps
    the first draft that passes or is repaired (composer/checked.py).
    `decoding` "opera" decodes with OPERA (models/opera.py) on a local transformers writer;
    "default" is greedy / sampled / beam search as the other fields say.
    """

    max_new_tokens: int = 512
    do_sample: bool = False
    temperature: float = 0.7
    top_p: float = 0.8
    top_k: int = 40
    repetition_penalty: float = 1.1
    no_repeat_ngram_size: int = 0
    num_beams: int = 1
    seed: int | None = 0
    stop: tuple[str, ...] = ()
    json_schema: str | None = None
    candidates: int = 3
    decoding: str = "default"

    def replace(self, **changes: Any) -> "GenerationConfig":
        """A copy with some fields changed (dataclasses.replace, spelled for callers)."""
        values = asdict(self)
        values.update(changes)
        values["stop"] = tuple(values["stop"])
        return GenerationConfig(**values)


@dataclass
class ChatMessage:
    """One turn of a chat prompt; role is "system", "user" or "assistant".

    `images`: image files (paths) the turn shows before its text: the request's reference
    images, set by the prompt builders (composer/prompts.py). A backend that sees images
    (LanguageModel.sees_images) reads them; the others ignore them.
    """

    role: str
    content: str
    images: tuple[str, ...] = ()


@dataclass
class ComposeRequest:
    """Everything a person asks for when composing an article.

    `images` is None for "automatic" (the model decides how many), else the exact count.
    `selection` picks how an image is chosen among candidates: "score" takes the best
    retrieval score, "model" asks the language model to pick A-D as the reference does.
    `image_license` / `image_source`, when not empty, keep only library images with exactly
    that license or source (e.g. "CC0 1.0" for an article that must be free to reuse).
    `reference_images` (file paths) reach a writer that sees images as image tokens; for a
    text-only writer, callers describe them in `material` instead (composer/references.py).
    """

    instruction: str
    language: str = "en"
    target_words: int = 800
    images: int | None = None
    text_only: bool = False
    seed: int = 0
    selection: str = "score"
    material: str = ""
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    image_license: str = ""
    image_source: str = ""
    reference_images: list[str] = field(default_factory=list)

    def options(self) -> dict[str, Any]:
        """The request's options as JSON-ready data, as stored with the document."""
        data = asdict(self)
        data.pop("instruction")
        data["generation"]["stop"] = list(data["generation"]["stop"])
        return data

    @staticmethod
    def from_options(instruction: str, options: dict[str, Any]) -> "ComposeRequest":
        """The request back from `options()` (a queued job, a stored document)."""
        values = dict(options)
        generation = dict(values.pop("generation", {}))
        generation["stop"] = tuple(generation.get("stop", ()))
        return ComposeRequest(instruction=instruction, generation=GenerationConfig(**generation),
                              **values)


@dataclass
class SectionPlan:
    """One section of the outline: a title, the points it covers and its word budget."""

    title: str
    key_points: list[str] = field(default_factory=list)
    words: int = 0


@dataclass
class Outline:
    """The article plan: a title and sections whose budgets sum to the target length."""

    title: str
    sections: list[SectionPlan] = field(default_factory=list)

    @property
    def total_words(self) -> int:
        return sum(section.words for section in self.sections)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_dict(data: dict[str, Any]) -> "Outline":
        return Outline(
            title=str(data.get("title", "")),
            sections=[SectionPlan(**section) for section in data.get("sections", [])],
        )


@dataclass
class LibraryImage:
    """An image of the library as stored: content-addressed by the sha256 of the given bytes
    (a private upload by the sha256 of its owner and that hash: storage.images.copy_id).

    `phash` is the 64-bit perceptual hash as 16 hex digits ("" when not computed or the
    image is flat); `caption_source` says who wrote the caption ("user", "sidecar", "seed",
    "model:<captioner>", "web", or "" when unknown); `owner` is None for the shared library,
    else the person who uploaded the image (only they and the shared library's users see it).
    """

    id: str
    path: str
    width: int
    height: int
    format: str
    bytes: int
    caption: str = ""
    source: str = ""
    license: str = ""
    attribution: str = ""
    phash: str = ""
    caption_source: str = ""
    owner: str | None = None


@dataclass
class ImageCandidate:
    """One image offered for a slot, with how well it matched the query."""

    image_id: str
    caption: str
    score: float
    license: str = ""
    attribution: str = ""

    @staticmethod
    def from_dict(data: dict[str, Any]) -> "ImageCandidate":
        return ImageCandidate(**data)


# What wrote a block's current content. Text: the composer ("compose"), an edit operation
# of the model ("rewrite", "expand", "abbreviate", "insert", "regenerate") or a person
# ("manual": edited by hand, "typed": inserted by hand). Images: "compose", "search" (a new
# caption searched again), "candidate" (another candidate picked), "upload", "generated".
MODEL_TEXT_ORIGINS = ("compose", "rewrite", "expand", "abbreviate", "insert", "regenerate")
HUMAN_TEXT_ORIGINS = ("manual", "typed")
IMAGE_ORIGINS = ("compose", "search", "candidate", "upload", "generated")
BLOCK_ORIGINS = tuple(dict.fromkeys(MODEL_TEXT_ORIGINS + HUMAN_TEXT_ORIGINS + IMAGE_ORIGINS))
# Where a paragraph sits in the article (composer/loop.py reports feedback by these).
PARAGRAPH_KINDS = ("introduction", "body", "conclusion")


@dataclass
class TextBlock:
    """A paragraph of the article; section is the outline section it belongs to;
    origin says what wrote its current text (MODEL_TEXT_ORIGINS, HUMAN_TEXT_ORIGINS);
    checks, what that text passed when the model wrote it."""

    text: str
    section: int = 0
    id: int | None = None
    kind: Literal["text"] = "text"
    origin: str = "compose"
    # The checks the model's text passed before it was kept (composer/checked.py
    # KeptParagraphs.summary): {"passed": [...], "failed": {...}, "how": ..., "drafts": n};
    # None for text a person wrote or that predates the checks.
    checks: dict[str, Any] | None = None


@dataclass
class ImageBlock:
    """An image placed after a paragraph: the query caption, the chosen image, the others."""

    caption: str
    image_id: str | None = None
    candidates: list[ImageCandidate] = field(default_factory=list)
    section: int = 0
    id: int | None = None
    kind: Literal["image"] = "image"
    origin: str = "compose"


Block = Union[TextBlock, ImageBlock]


@dataclass
class Document:
    """An article with its blocks in order, as kept in the database."""

    id: str
    slug: str
    title: str
    instruction: str
    language: str = "en"
    status: str = "composing"
    options: dict[str, Any] = field(default_factory=dict)
    outline: Outline | None = None
    blocks: list[Block] = field(default_factory=list)
    version: int = 1
    created_at: str = ""
    updated_at: str = ""
    owner: str | None = None
    share_token: str | None = None

    @property
    def text_blocks(self) -> list[TextBlock]:
        return [block for block in self.blocks if isinstance(block, TextBlock)]

    @property
    def image_blocks(self) -> list[ImageBlock]:
        return [block for block in self.blocks if isinstance(block, ImageBlock)]

    @property
    def word_count(self) -> int:
        return sum(count_words(block.text) for block in self.text_blocks)


@dataclass
class Change:
    """One accepted edit of a document (a unit of undo / redo).

    `version_before` / `version_after`: the document's versions around it; state "done"
    (in effect), "undone" (undone, can be redone) or "discarded" (undone, then a new edit
    was made, so it can no longer be redone). `kind` is "edit", "undo" or "redo".
    """

    id: int
    document_id: str
    label: str
    kind: str
    version_before: int
    version_after: int
    state: str
    created_at: str


@dataclass
class FeedbackRecord:
    """A like (+1) or dislike (-1) of one paragraph (block_id) or of a document (None).

    `kind` (PARAGRAPH_KINDS) and `origin` (BLOCK_ORIGINS) are the paragraph's when rated.
    """

    document_id: str
    block_id: int | None
    owner: str
    value: int
    kind: str = ""
    origin: str = ""
    created_at: str = ""


@dataclass
class PreferencePair:
    """A user's preference over a model paragraph (HA-DPO training data).

    `prompt`: the chat messages that asked for the paragraph ([{"role", "content"}]);
    `rejected`: the model's text; `chosen`: the text the person kept instead. `op` is what
    replaced it ("manual" or a model edit operation), `rejected_origin` what had written the
    rejected text, `kind` the paragraph's place (PARAGRAPH_KINDS).
    """

    prompt: list[dict[str, str]]
    rejected: str
    chosen: str
    op: str
    kind: str = "body"
    rejected_origin: str = "compose"
    document_id: str | None = None
    block_id: int | None = None
    owner: str | None = None
    language: str = "en"
    id: int | None = None
    created_at: str = ""

    def to_json(self) -> dict[str, Any]:
        """The JSONL record of `pairs export` (TRL's conversational preference format)."""
        return {"prompt": self.prompt,
                "chosen": [{"role": "assistant", "content": self.chosen}],
                "rejected": [{"role": "assistant", "content": self.rejected}],
                "kind": self.kind, "op": self.op, "rejected_origin": self.rejected_origin,
                "language": self.language, "document_id": self.document_id,
                "block_id": self.block_id, "id": self.id, "created_at": self.created_at}


@dataclass
class DocumentSummary:
    """One row of a document listing."""

    id: str
    title: str
    status: str
    language: str
    created_at: str
    updated_at: str
    words: int = 0


@dataclass
class ProgressEvent:
    """What the composer reports while it works; the UI and the CLI both render these.

    stage: "plan", "write", "draft", "check", "slots", "caption", "retrieve", "select",
    "save", "done", "warning" or "error". A "draft" event's `delta` is newly streamed text of
    the draft being written and `pending` that whole draft (a UI shows it after the saved
    blocks; it may be replaced by the checked version); a "write" event's `delta` is a
    paragraph as kept and saved, and `block` that saved TextBlock (with its id and checks),
    so a view appends it without reading the document; a "check" event says what the
    paragraph checks decided. `fraction` is the share of the whole job done so far (0..1).
    A "queued" event (composer/queue.py) says where a job waits for a worker. A "plan" event
    about one planned section carries its `heading` and `points` (key points; none yet while
    they are being planned), so a view can show the outline as it grows.
    """

    stage: str
    message: str = ""
    section: int | None = None
    sections: int | None = None
    tokens: int = 0
    words: int = 0
    delta: str = ""
    fraction: float = 0.0
    document_id: str | None = None
    pending: str = ""
    block: TextBlock | None = None
    position: int | None = None  # "queued": place in the line of waiting jobs (1 = next)
    wait_seconds: float | None = None  # "queued": estimated wait (None: no estimate yet)
    heading: str = ""
    points: list[str] = field(default_factory=list)


def count_words(text: str) -> int:
    """Words in English-like text, characters in CJK text (how Chinese length is counted)."""
    cjk = sum(1 for char in text if "\u4e00" <= char <= "\u9fff")
    latin = len([token for token in _strip_cjk(text).split() if any(c.isalnum() for c in token)])
    return cjk + latin


def _strip_cjk(text: str) -> str:
    return "".join(" " if "\u4e00" <= char <= "\u9fff" else char for char in text)
