"""The Editor's paragraph operations: model previews and accepting them, direct edits.

A model operation is previewed (composer/edit_previews.py) and accepted as one change; a
paragraph the model wrote that is replaced non-trivially leaves a preference pair.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import replace
from typing import Iterator

from composer.edit_base import EditorBase
from composer.edit_blocks import (
    final_paragraphs,
    insert_ops,
    insert_place,
    regenerate_ops,
    replace_ops,
)
from composer.edit_checks import (
    block_label,
    check_instruction,
    check_text,
    check_version,
    find_block,
    sampled,
    section_blocks,
    text_block,
)
from composer.edit_previews import (
    PREVIEW_OPS,
    REPLACING_OPS,
    EditPreview,
    Proposal,
    paragraph_plan,
    regenerate_plan,
    stream_plan,
)
from composer.edit_prompts import PARAGRAPH_OPS
from composer.pairs_capture import capture, make_pair, wants_pair
from composer.types import (
    MODEL_TEXT_ORIGINS,
    ConflictError,
    Document,
    InputError,
    TextBlock,
)
from storage.edit_ops import DeleteBlock, EditOp, InsertBlock, MoveBlock, UpdateBlock

log = logging.getLogger(__name__)


class ParagraphEdits(EditorBase):
    """Previews and accepts model operations on paragraphs and sections; edits, inserts,
    deletes and moves blocks by hand."""

    # -- model operations: preview, then accept ------------------------------------------------

    def preview(self, doc: Document | str, op: str, *, block_id: int | None = None,
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
        doc = self._document(doc)
        if op == "regenerate":
            plan = regenerate_plan(doc, section, block_id, instruction)
        elif op in PARAGRAPH_OPS:
            plan = paragraph_plan(doc, op, block_id, instruction)
        else:
            raise InputError(f"unknown edit operation {op!r}: use one of {list(PREVIEW_OPS)}")
        plan.config = sampled(plan.config, seed)
        return stream_plan(self.sections, plan, cancel)

    def accept(self, proposal: Proposal, *, expected_version: int, owner: str | None = None,
               edited_text: str | None = None, doc: Document | None = None) -> Document:
        """Apply a previewed proposal as one change; returns the document after it.

        `expected_version` is the version the person's view is based on; it must be the
        proposal's base_version and the stored version (else ConflictError, nothing written).
        `edited_text` is the preview as the person tweaked it before accepting: when it differs
        from the proposal, it is used (split at blank lines) and the paragraphs' origin is
        "manual". A model paragraph replaced non-trivially yields a preference pair.
        `doc`: the proposal's document when the caller has loaded it already.
        """
        if expected_version != proposal.base_version:
            raise ConflictError(f"the preview was made from version {proposal.base_version} "
                                f"but your view is at version {expected_version}: make the "
                                "preview again")
        if doc is not None and doc.id != proposal.doc_id:
            raise InputError(f"the preview belongs to document {proposal.doc_id!r}, not "
                             f"{doc.id!r}: make the preview again")
        doc = self._document(doc if doc is not None else proposal.doc_id)
        check_version(doc, expected_version)
        paragraphs, origin = final_paragraphs(proposal, edited_text)
        checks = proposal.checks if origin != "manual" else []
        if proposal.op == "regenerate":
            ops, label = regenerate_ops(doc, proposal.section, paragraphs, origin, checks)
        elif proposal.op in REPLACING_OPS:
            ops, label = replace_ops(doc, proposal, paragraphs, origin, checks)
        else:
            ops, label = insert_ops(doc, proposal, paragraphs, origin, checks)
        saved = self._commit(doc.id, ops, label, expected_version)
        pair_op = "manual" if origin == "manual" else proposal.op
        self._capture_replacement(doc, proposal, "\n\n".join(paragraphs), pair_op, owner)
        return saved

    # -- direct paragraph edits ---------------------------------------------------------------

    def edit_text(self, doc: Document | str, block_id: int, text: str, *, expected_version: int,
                  owner: str | None = None) -> Document:
        """Replace a paragraph's text with what the person typed (origin "manual").

        The same text again changes nothing (the document is returned as it is). A
        preference pair is stored when the old text was the model's and the change is not
        trivial. InputError for empty text (delete the paragraph instead) or over the limit.
        """
        text = check_text(text)
        doc = self._document(doc)
        _, block = text_block(doc, block_id)
        check_version(doc, expected_version)
        if text == block.text:
            return doc  # nothing changed: no change in the history, the origin stays
        label = f"edit {block_label(doc, block_id)}"
        ops = [UpdateBlock(block_id, text=text, origin="manual")]
        saved = self._commit(doc.id, ops, label, expected_version)
        self._capture(doc, block, text, "manual", owner)
        return saved

    def insert_text(self, doc: Document | str, text: str, *, expected_version: int,
                    after_block_id: int | None = None, before_block_id: int | None = None,
                    owner: str | None = None) -> Document:
        """Insert a typed paragraph (origin "typed") after or before a block.

        With neither block given, the paragraph goes at the end of the document. It joins
        the section of the block it is placed next to.
        """
        text = check_text(text)
        doc = self._document(doc)
        position, section, label = insert_place(doc, after_block_id, before_block_id)
        check_version(doc, expected_version)
        block = TextBlock(text=text, section=section, origin="typed")
        return self._commit(doc.id, [InsertBlock(position, block)], f"type a paragraph {label}",
                            expected_version)

    def delete_block(self, doc: Document | str, block_id: int, *, expected_version: int,
                     owner: str | None = None) -> Document:
        """Delete a paragraph or an image (one change; undo brings it back)."""
        doc = self._document(doc)
        find_block(doc, block_id)
        check_version(doc, expected_version)
        return self._commit(doc.id, [DeleteBlock(block_id)],
                            f"delete {block_label(doc, block_id)}", expected_version)

    def move_block(self, doc: Document | str, block_id: int, position: int, *, expected_version: int,
                   owner: str | None = None) -> Document:
        """Move a block (an image, or a paragraph) to `position` (0..n-1, final position).

        The block joins the section of the block it ends up after (the first block's when
        moved to the top), so that outline changes keep it with its new neighbours.
        """
        doc = self._document(doc)
        current, _ = find_block(doc, block_id)
        if not 0 <= position < len(doc.blocks):
            raise InputError(f"position {position} is outside 0..{len(doc.blocks) - 1}: pick a "
                             "position in that range")
        check_version(doc, expected_version)
        others = [block for block in doc.blocks if block.id != block_id]
        neighbour = others[position - 1] if position > 0 else (others[0] if others else None)
        section = neighbour.section if neighbour is not None else doc.blocks[current].section
        ops: list[EditOp] = [MoveBlock(block_id, position)]
        if section != doc.blocks[current].section:
            ops.append(UpdateBlock(block_id, section=section))
        return self._commit(doc.id, ops, f"move {block_label(doc, block_id)}",
                            expected_version)

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
        old = [b for b in section_blocks(doc, proposal.section) if isinstance(b, TextBlock)]
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

