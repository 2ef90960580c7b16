"""Editing's input checks and lookups: limits, the block an operation is about, versions,
the document's decoding settings.

Every check runs before any work (and before the model is asked), so that a bad request is
refused with nothing written; each message names the value, the limit and what to do.
"""

from __future__ import annotations

import secrets

from composer.config import MAX_CAPTION_CHARS
from composer.types import (
    Block,
    ConflictError,
    Document,
    GenerationConfig,
    ImageBlock,
    InputError,
    NotFoundError,
    TextBlock,
)

MAX_EDIT_INSTRUCTION_CHARS = 2_000
MAX_PARAGRAPH_CHARS = 20_000


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


def check_version(doc: Document, expected_version: int) -> None:
    """ConflictError, before any work, when the view is older than the stored document."""
    if doc.version != expected_version:
        raise ConflictError(f"document {doc.id} was changed elsewhere (version {doc.version}, "
                            f"you had {expected_version}): reload it and try again")


def section_blocks(doc: Document, section: int) -> list[Block]:
    """The blocks (paragraphs and images) of a section, in order."""
    return [block for block in doc.blocks if block.section == section]


def section_insert_position(doc: Document, section: int) -> int:
    """Where the blocks of `section` start (or would start if it has none)."""
    for position, block in enumerate(doc.blocks):
        if block.section >= section:
            return position
    return len(doc.blocks)


def used_images(doc: Document, except_block: int | None = None) -> set[str]:
    """The library images the document shows (but `except_block`'s): a search skips them."""
    return {block.image_id for block in doc.image_blocks
            if block.image_id and block.id != except_block}
