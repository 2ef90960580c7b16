"""The edit operations a person's change is made of, and the recorded revision of a row.

`DocumentRepository.apply` runs a list of these (InsertBlock, UpdateBlock, DeleteBlock,
MoveBlock, UpdateMeta) as one undoable change; composer/edit_blocks.py builds them. Plain data:
no database here, only the conversions between a revision's content dict and a Block.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Union

from composer.types import Block, ImageBlock, ImageCandidate, Outline, TextBlock

MAX_OPS_PER_CHANGE = 500


@dataclass
class Revision:
    """One recorded change: `old` is the content before (None for a create), `new` after."""

    id: int
    document_id: str
    block_id: int | None
    document_version: int
    op: str
    old: dict[str, Any] | None
    new: dict[str, Any] | None
    created_at: str


@dataclass
class InsertBlock:
    """Insert `block` at `position` (0..n at that point of the change)."""

    position: int
    block: Block
    keep_id: bool = False  # re-create a deleted block under its old id (undo, restore)


@dataclass
class UpdateBlock:
    """Change a block's content; None leaves a field as it is, image_id "" clears it."""

    block_id: int
    text: str | None = None
    caption: str | None = None
    image_id: str | None = None
    candidates: list[ImageCandidate] | None = None
    section: int | None = None
    origin: str | None = None
    # With `text`: the checks the new text passed (None: a person's text, no checks).
    checks: dict[str, Any] | None = None


@dataclass
class DeleteBlock:
    """Delete a block; the later ones move up."""

    block_id: int


@dataclass
class MoveBlock:
    """Move a block to `position` (0..n-1); the ones in between shift by one."""

    block_id: int
    position: int


@dataclass
class UpdateMeta:
    """Change the document's title or outline (None leaves it as it is)."""

    title: str | None = None
    outline: Outline | None = None


EditOp = Union[InsertBlock, UpdateBlock, DeleteBlock, MoveBlock, UpdateMeta]


def block_from_content(block_id: int, content: dict[str, Any]) -> Block:
    """The Block a revision's content dict describes (as storage.rows.block_content wrote it)."""
    origin = content.get("origin", "compose")
    if content["kind"] == "text":
        return TextBlock(text=content["text"], section=content["section"], id=block_id,
                         origin=origin, checks=content.get("checks"))
    return ImageBlock(caption=content["caption"], image_id=content["image_id"],
                      candidates=[ImageCandidate.from_dict(c) for c in content["candidates"]],
                      section=content["section"], id=block_id, origin=origin)


def update_to(block: Block) -> UpdateBlock:
    """An UpdateBlock that sets every content field of an existing block to `block`'s."""
    if isinstance(block, TextBlock):
        return UpdateBlock(block.id or 0, text=block.text, section=block.section,
                           origin=block.origin, checks=block.checks)
    return UpdateBlock(block.id or 0, caption=block.caption, image_id=block.image_id or "",
                       candidates=block.candidates, section=block.section, origin=block.origin)
