"""The outline after writing: match the new outline's sections to the old ones, move and
delete blocks to follow it, and write the new (empty) sections.
"""

from __future__ import annotations

import threading
from typing import Iterator

from composer.edit_base import EditorBase
from composer.edit_blocks import regenerate_ops
from composer.edit_checks import check_version, section_blocks
from composer.edit_previews import EditPreview, regenerate_plan, stream_plan
from composer.pairs_capture import section_outline
from composer.types import (
    Block,
    Document,
    InputError,
    Outline,
    ProgressEvent,
    TextBlock,
    count_words,
)
from storage.edit_ops import DeleteBlock, EditOp, MoveBlock, UpdateBlock, UpdateMeta


class OutlineEdits(EditorBase):
    """Changes a written document's outline and writes its new sections."""

    def update_outline(self, doc: Document | str, outline: Outline, *, expected_version: int,
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
        doc = self._document(doc)
        old = section_outline(doc)
        mapping = match_sections(old, outline, sources)
        check_version(doc, expected_version)
        if outline == doc.outline and mapping == list(range(len(old.sections))):
            return doc, []  # the same outline: nothing to change
        ops, new_sections = outline_ops(doc, outline, mapping)
        saved = self._commit(doc.id, ops, "change the outline", expected_version)
        return saved, new_sections

    def write_sections(self, doc: Document | str, sections: list[int], *, expected_version: int,
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
        doc = self._document(doc)
        check_version(doc, expected_version)
        outline = section_outline(doc)
        for index in sections:
            if not 0 <= index < len(outline.sections):
                raise InputError(f"section {index} is outside 0..{len(outline.sections) - 1}: "
                                 "pick a section of the outline")
            if any(isinstance(b, TextBlock) for b in section_blocks(doc, index)):
                raise InputError(f"section {index + 1} already has text: regenerate it instead")
        return self._write_sections(doc, sorted(set(sections)), expected_version, cancel)

    def _write_sections(self, doc: Document, sections: list[int], version: int,
                        cancel: threading.Event | None) -> Iterator[ProgressEvent]:
        outline = section_outline(doc)
        for done, index in enumerate(sections):
            plan = regenerate_plan(doc, index, None, "")
            yield ProgressEvent("write", f"Writing section {index + 1} of "
                                f"{len(outline.sections)}: {outline.sections[index].title}",
                                section=index, sections=len(outline.sections),
                                fraction=done / len(sections), document_id=doc.id)
            last: EditPreview | None = None
            for preview in stream_plan(self.sections, plan, cancel):
                last = preview
                if not preview.done:
                    yield ProgressEvent("write", delta=preview.delta, section=index,
                                        sections=len(outline.sections),
                                        words=count_words(preview.text), document_id=doc.id,
                                        fraction=(done + preview.fraction) / len(sections),
                                        pending=preview.text)
            assert last is not None and last.proposal is not None
            if last.proposal.paragraphs:
                ops, _ = regenerate_ops(doc, index, last.proposal.paragraphs, "compose",
                                        last.proposal.checks)
                doc = self._commit(doc.id, ops, f"write section {index + 1}", version)
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


def outline_ops(doc: Document, outline: Outline,
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


def match_sections(old: Outline, new: Outline,
                   sources: list[int | None] | None = None) -> list[int | None]:
    """For each new section, the index of the old section it continues, or None (new).

    See OutlineEdits.update_outline for the rule. InputError for sources of the wrong length, an
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

