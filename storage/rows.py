"""Conversions between table rows and the composer.types dataclasses, with their checks.

Shared by DocumentRepository and ImageStore so that both validate captions the same way;
`image_row` and `chunks` serve the image library's parts (storage/images.py and the rest).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from sqlalchemy.orm import Session

from composer.config import MAX_CAPTION_CHARS
from composer.types import (
    BLOCK_ORIGINS,
    Block,
    Document,
    ImageBlock,
    ImageCandidate,
    InputError,
    LibraryImage,
    NotFoundError,
    Outline,
    TextBlock,
)
from storage.tables import BlockRow, DocumentRow, ImageRow, utcnow

IN_LIST_CHUNK = 500  # ids per IN (...) list: SQLite allows a limited number of parameters
# Who wrote a caption; "model:<captioner name>" is allowed as well.
CAPTION_SOURCES = ("", "user", "sidecar", "seed", "web")
MODEL_CAPTION_PREFIX = "model:"
MAX_CAPTION_SOURCE_CHARS = 64


def block_content(row: BlockRow) -> dict[str, Any]:
    """What a revision keeps of a block: enough to show or restore it."""
    content: dict[str, Any] = {"kind": row.kind, "position": row.position, "section": row.section,
                               "origin": row.origin}
    if row.kind == "text":
        content["text"] = row.text
        if row.checks is not None:
            content["checks"] = dict(row.checks)
    else:
        content.update(caption=row.caption, image_id=row.image_id,
                       candidates=list(row.candidates))
    return content


def to_block(row: BlockRow) -> Block:
    """The TextBlock or ImageBlock a blocks row holds."""
    if row.kind == "text":
        return TextBlock(text=row.text, section=row.section, id=row.id, origin=row.origin,
                         checks=dict(row.checks) if row.checks is not None else None)
    candidates = [ImageCandidate.from_dict(item) for item in row.candidates]
    return ImageBlock(caption=row.caption, image_id=row.image_id, candidates=candidates,
                      section=row.section, id=row.id, origin=row.origin)


def to_document(row: DocumentRow, blocks: list[BlockRow]) -> Document:
    """A Document from its row and its block rows (already in position order)."""
    return Document(
        id=row.id, slug=row.slug, title=row.title, instruction=row.instruction,
        language=row.language, status=row.status, options=dict(row.options),
        outline=Outline.from_dict(row.outline) if row.outline is not None else None,
        blocks=[to_block(block) for block in blocks], version=row.version,
        created_at=row.created_at.isoformat(), updated_at=row.updated_at.isoformat(),
        owner=row.owner, share_token=row.share_token,
    )


def check_caption(caption: str) -> None:
    """InputError if a caption is longer than MAX_CAPTION_CHARS."""
    if len(caption) > MAX_CAPTION_CHARS:
        raise InputError(f"caption of {len(caption)} characters is longer than the limit of "
                         f"{MAX_CAPTION_CHARS}: shorten it")


def check_caption_source(caption_source: str) -> None:
    """InputError unless `caption_source` is one of CAPTION_SOURCES or "model:<name>"."""
    known = caption_source in CAPTION_SOURCES or (
        caption_source.startswith(MODEL_CAPTION_PREFIX)
        and len(caption_source) > len(MODEL_CAPTION_PREFIX))
    if not known or len(caption_source) > MAX_CAPTION_SOURCE_CHARS:
        raise InputError(f"caption source {caption_source!r} is not one of "
                         f"{list(CAPTION_SOURCES)} or 'model:<captioner name>' (at most "
                         f"{MAX_CAPTION_SOURCE_CHARS} characters): use one of those")


def check_origin(origin: str) -> None:
    """InputError unless `origin` is one of composer.types.BLOCK_ORIGINS."""
    if origin not in BLOCK_ORIGINS:
        raise InputError(f"block origin {origin!r} is not one of {list(BLOCK_ORIGINS)}")


def check_image(session: Session, image_id: str | None) -> None:
    """InputError if `image_id` is given but not in the library (before the FK would fail)."""
    if image_id is not None and session.get(ImageRow, image_id) is None:
        raise InputError(f"image {image_id!r} is not in the library: add it first")


def new_block_row(session: Session, doc_id: str, position: int, block: Block) -> BlockRow:
    """A BlockRow for a TextBlock or ImageBlock, validated (caption length, image exists)."""
    now = utcnow()
    check_origin(block.origin)
    common = {"document_id": doc_id, "position": position, "section": block.section,
              "origin": block.origin, "created_at": now, "updated_at": now}
    if isinstance(block, TextBlock):
        return BlockRow(kind="text", text=block.text, caption="", image_id=None,
                        candidates=[], checks=block.checks, **common)
    if isinstance(block, ImageBlock):
        check_caption(block.caption)
        check_image(session, block.image_id)
        candidates = [asdict(candidate) for candidate in block.candidates]
        return BlockRow(kind="image", text="", caption=block.caption, image_id=block.image_id,
                        candidates=candidates, **common)
    raise InputError(f"block {block!r} is neither a TextBlock nor an ImageBlock")


def to_image(row: ImageRow) -> LibraryImage:
    """The LibraryImage an images row holds (`path` relative to the images directory)."""
    return LibraryImage(id=row.id, path=row.path, width=row.width, height=row.height,
                        format=row.format, bytes=row.bytes, caption=row.caption,
                        source=row.source, license=row.license, attribution=row.attribution,
                        phash=row.phash or "", caption_source=row.caption_source or "",
                        owner=row.owner)


def image_row(session: Session, image_id: str) -> ImageRow:
    """The images row `image_id`; NotFoundError if the library has no such image."""
    row = session.get(ImageRow, image_id)
    if row is None:
        raise NotFoundError(f"no image with id {image_id!r} in the library: "
                            "list the library to find the right id")
    return row


def chunks(values: list[str]) -> list[list[str]]:
    """`values` in slices of IN_LIST_CHUNK, one IN (...) list each."""
    return [values[start:start + IN_LIST_CHUNK] for start in range(0, len(values), IN_LIST_CHUNK)]
