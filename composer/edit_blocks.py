"""An accepted edit as block operations: the paragraphs to save and where they go.

Pure functions of the document and the proposal; the Editor applies the operations as one
change (storage/edit_ops.py). Each returns (operations, the change's label).
"""

from __future__ import annotations

from typing import Any

from composer.edit_checks import (
    block_label,
    check_text,
    find_block,
    section_insert_position,
    text_block,
)
from composer.edit_previews import Proposal
from composer.edit_replies import human_paragraphs
from composer.types import Document, InputError, TextBlock
from storage.edit_ops import DeleteBlock, EditOp, InsertBlock, UpdateBlock

# The origin an accepted model operation gives the paragraphs it wrote.
OP_ORIGINS = {"rewrite": "rewrite", "expand": "expand", "abbreviate": "abbreviate",
              "insert_before": "insert", "insert_after": "insert", "regenerate": "regenerate"}


def final_paragraphs(proposal: Proposal, edited_text: str | None) -> tuple[list[str], str]:
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


def replace_ops(doc: Document, proposal: Proposal, paragraphs: list[str],
                origin: str, checks: list[dict[str, Any] | None]
                ) -> tuple[list[EditOp], str]:
    """Replace the proposal's paragraph by the first paragraph; the others follow it."""
    position, block = text_block(doc, proposal.block_id)
    ops: list[EditOp] = [UpdateBlock(block.id, text=paragraphs[0], origin=origin,
                                     checks=nth_check(checks, 0))]
    ops += [InsertBlock(position + offset, TextBlock(
        text=paragraph, section=block.section, origin=origin, checks=nth_check(checks, offset)))
            for offset, paragraph in enumerate(paragraphs[1:], start=1)]
    return ops, f"{proposal.op} {block_label(doc, block.id)}"


def insert_ops(doc: Document, proposal: Proposal, paragraphs: list[str],
               origin: str, checks: list[dict[str, Any] | None]
               ) -> tuple[list[EditOp], str]:
    """Insert the paragraphs before or after the proposal's paragraph."""
    position, block = text_block(doc, proposal.block_id)
    where = "before" if proposal.op == "insert_before" else "after"
    start = position if where == "before" else position + 1
    ops: list[EditOp] = [InsertBlock(start + offset, TextBlock(
        text=paragraph, section=block.section, origin=origin, checks=nth_check(checks, offset)))
        for offset, paragraph in enumerate(paragraphs)]
    return ops, f"insert a paragraph {where} {block_label(doc, block.id)}"


def regenerate_ops(doc: Document, section: int, paragraphs: list[str],
                   origin: str, checks: list[dict[str, Any] | None] | None = None,
                   ) -> tuple[list[EditOp], str]:
    """Replace the section's paragraphs in place: the first ones are updated (so images
    stay after the same-numbered paragraph), extra ones inserted after the last, surplus
    old ones deleted. A section without text gets its paragraphs where it begins."""
    old = [(p, b) for p, b in enumerate(doc.blocks)
           if b.section == section and isinstance(b, TextBlock)]
    checks = checks or []
    ops: list[EditOp] = [UpdateBlock(block.id, text=text, origin=origin,
                                     checks=nth_check(checks, number))
                         for number, ((_, block), text) in enumerate(zip(old, paragraphs))]
    ops += [DeleteBlock(block.id) for _, block in old[len(paragraphs):]]
    if len(paragraphs) > len(old):
        start = old[-1][0] + 1 if old else section_insert_position(doc, section)
        ops += [InsertBlock(start + offset, TextBlock(
            text=text, section=section, origin=origin,
            checks=nth_check(checks, len(old) + offset)))
                for offset, text in enumerate(paragraphs[len(old):])]
    return ops, f"regenerate section {section + 1}"


def insert_place(doc: Document, after_block_id: int | None,
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


def nth_check(checks: list[dict[str, Any] | None], number: int) -> dict[str, Any] | None:
    """The checks of paragraph `number` (None when they are not known)."""
    return checks[number] if number < len(checks) else None

