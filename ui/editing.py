"""The editing panel's actions as plain functions: no Gradio objects in, plain values out.

Paragraph and image operations go through composer/editing.py's Editor; history (undo, redo,
viewing and restoring a version) and likes go to the repositories. Every change takes the
version the person's view was based on, so an edit made in a stale tab is refused with a
clear message instead of overwriting what another tab saved.
"""

from __future__ import annotations

import threading
from dataclasses import asdict
from typing import Any, Iterator

from composer.edit_checks import find_block
from composer.types import (
    Change,
    Document,
    ImageBlock,
    InputError,
    NotFoundError,
    TextBlock,
)
from ui.article_view import render_document
from ui.handlers import owned_document, whole_number
from ui.i18n import say

PARAGRAPH_OPS = ("rewrite", "expand", "abbreviate", "insert_before", "insert_after",
                 "regenerate")
LABEL_CHARS = 60


def _short(text: str, limit: int = LABEL_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def paragraph_choices(doc: Document) -> list[tuple[str, int]]:
    """(label, block id) of each paragraph, for the paragraph picker: "¶3 · Section: start…"."""
    sections = doc.outline.sections if doc.outline else []
    choices = []
    for number, block in enumerate(doc.text_blocks, start=1):
        title = sections[block.section].title if block.section < len(sections) else ""
        prefix = f"¶{number} · {_short(title, 24)}: " if title else f"¶{number}: "
        choices.append((prefix + _short(block.text), block.id))
    return choices


def picked_block(doc: Document, block_id: Any, kind: type | None = None
                 ) -> TextBlock | ImageBlock:
    """The block a picker chose (a form value), of `kind` if given; InputError when nothing
    or the wrong kind is picked, NotFoundError when it is gone (composer's find_block)."""
    if block_id in (None, ""):
        raise InputError("pick a paragraph or image first")
    wanted = whole_number("block", block_id)
    _, block = find_block(doc, wanted)
    if kind is not None and not isinstance(block, kind):
        what = "a paragraph" if kind is TextBlock else "an image"
        raise InputError(f"block {wanted} is not {what}: pick {what}")
    return block


def paragraph_text(services: Any, doc_id: str, owner: str, block_id: Any) -> str:
    """The current text of one paragraph (loaded into the manual-edit box)."""
    doc = owned_document(services, doc_id, owner)
    return picked_block(doc, block_id, TextBlock).text


# -- feedback ----------------------------------------------------------------------------------

def rate(services: Any, doc_id: str, owner: str, block_id: Any, value: int,
         language: str = "en") -> str:
    """Like (+1) or dislike (-1) a paragraph (block_id) or the document (None); pressing the
    same rating again clears it. Returns a short message for the status line."""
    from composer.loop import paragraph_kind

    doc = owned_document(services, doc_id, owner)
    current = services.feedback.for_document(doc.id, owner)
    block = None if block_id in (None, "") else picked_block(doc, block_id, TextBlock)
    target = None if block is None else block.id
    if current.get(target) == value:
        services.feedback.rate(doc.id, target, owner, 0)
        return say(language, "rating_cleared")
    kind, origin = "", ""
    if block is not None:
        sections = len(doc.outline.sections) if doc.outline else 1
        kind, origin = paragraph_kind(block.section, sections), block.origin
    services.feedback.rate(doc.id, target, owner, value, kind=kind, origin=origin)
    what = "article" if target is None else "paragraph"
    return say(language, f"{'liked' if value > 0 else 'disliked'}_{what}")


def rating_text(services: Any, doc_id: str, owner: str, block_id: Any,
                language: str = "en") -> str:
    """What the person said so far, shown beside the buttons: "liked" / "disliked" / "–"
    (the owner's own ratings only: the document need not be loaded again)."""
    ratings = services.feedback.for_document(doc_id, owner)
    words = {1: say(language, "liked"), -1: say(language, "disliked")}
    paragraph = words.get(ratings.get(whole_number("block", block_id)), "–") if block_id else "–"
    return say(language, "your_rating", paragraph=paragraph,
               article=words.get(ratings.get(None), "–"))


# -- history -----------------------------------------------------------------------------------

def history_view(services: Any, doc: Document) -> tuple[list[tuple[str, int]], bool, bool]:
    """The version picker's choices (history_choices), and whether Undo and Redo can act."""
    changes: list[Change] = services.documents.history(doc.id)
    can_undo = any(change.state == "done" for change in changes)
    can_redo = any(change.state == "undone" for change in changes)
    return history_choices(doc, changes), can_undo, can_redo


def history_choices(doc: Document, changes: list[Change]) -> list[tuple[str, int]]:
    """(label, version) for each recorded change, newest first, plus the original version."""
    choices = []
    for change in reversed(changes):
        state = {"undone": " (undone)", "discarded": " (undone, replaced)"}.get(change.state, "")
        when = change.created_at[:16].replace("T", " ")
        choices.append((f"v{change.version_after} · {when} · {_short(change.label, 50)}{state}",
                        change.version_after))
    first = changes[0].version_before if changes else doc.version
    choices.append((f"v{first} · as written", first))
    return choices


def undo(services: Any, doc_id: str, owner: str, version: Any) -> Document:
    """Revert the latest edit (refused if the document changed in another tab)."""
    owned_document(services, doc_id, owner)
    return services.documents.undo(doc_id, expected_version=_version(version))


def redo(services: Any, doc_id: str, owner: str, version: Any) -> Document:
    """Make the most recently undone edit again."""
    owned_document(services, doc_id, owner)
    return services.documents.redo(doc_id, expected_version=_version(version))


def view_version(services: Any, doc_id: str, owner: str, version: Any) -> str:
    """The document as it was at `version`, rendered read-only."""
    owned_document(services, doc_id, owner)
    old = services.documents.state_at(doc_id, whole_number("version", version))
    return render_document(services, old)


def restore_version(services: Any, doc_id: str, owner: str, version: Any,
                    expected_version: Any) -> Document:
    """Make the document as it was at `version` again (one undoable edit)."""
    owned_document(services, doc_id, owner)
    return services.documents.restore(doc_id, whole_number("version", version),
                                      expected_version=_version(expected_version))


def _version(value: Any) -> int:
    if value in (None, ""):
        raise InputError("no document is open: compose one or open one from Documents")
    return whole_number("version", value)


# -- paragraph operations ----------------------------------------------------------------------

def preview(services: Any, doc_id: str, owner: str, op: str, block_id: Any, instruction: str,
            cancel: threading.Event) -> Iterator[tuple[str, dict[str, Any] | None, float]]:
    """Stream a model edit: (preview text so far, the proposal once done, fraction); the
    last text is the cleaned proposal, what Accept saves unless the person changes it."""
    if op not in PARAGRAPH_OPS:
        raise InputError(f"operation {op!r} is not one of {list(PARAGRAPH_OPS)}")
    doc = owned_document(services, doc_id, owner)
    services.check_language(doc.language)  # an English-only writer cannot edit Chinese
    block = picked_block(doc, block_id, TextBlock)
    editor = services.editor(with_images=False)
    options: dict[str, Any] = {"block_id": block.id, "instruction": instruction or ""}
    if op == "regenerate":
        options = {"section": block.section, "instruction": instruction or ""}
    for step in editor.preview(doc, op, cancel=cancel, **options):
        proposal = step.proposal
        if proposal is None:
            yield step.text, None, step.fraction
        else:  # the text as it will be saved: the model's remarks about its answer dropped
            yield "\n\n".join(proposal.paragraphs), asdict(proposal), step.fraction


def checks_status(proposal: dict[str, Any], language: str = "en") -> str:
    """The status line after a preview: what the paragraph checks passed and how the text
    was kept (composer/checked.py), e.g. "Preview ready (kept as drafted, 3 drafts read):
    passed clean, new, complete, on topic", in the UI's `language`."""
    from composer.render import check_labels

    labels, hows = check_labels(language)
    checks = next((c for c in proposal.get("checks") or [] if c), None)
    if not proposal.get("paragraphs"):
        return say(language, "preview_empty")
    if checks is None:
        return say(language, "preview_ready")
    passed = ", ".join(labels.get(name, name) for name in checks.get("passed", []))
    failed = ", ".join(labels.get(name, name) for name in checks.get("failed", {}))
    line = say(language, "preview_checked", how=hows.get(str(checks.get("how")), ""),
               drafts=checks.get("drafts", 0), passed=passed)
    return line + (say(language, "still_failing", failed=failed) if failed else "")


def accept(services: Any, owner: str, proposal: dict[str, Any] | None, edited_text: str,
           version: Any) -> Document:
    """Apply a previewed edit (with the person's tweaks to the preview text, if any)."""
    from composer.edit_previews import Proposal

    if not proposal:
        raise InputError("there is no preview to accept: press Preview first")
    doc = owned_document(services, proposal["doc_id"], owner)
    return services.editor(with_images=False).accept(
        Proposal(**proposal), doc=doc, expected_version=_version(version), owner=owner,
        edited_text=edited_text if (edited_text or "").strip() else None)


def save_text(services: Any, doc_id: str, owner: str, block_id: Any, text: str,
              version: Any) -> Document:
    """Save a paragraph edited by hand."""
    doc = owned_document(services, doc_id, owner)
    block = picked_block(doc, block_id, TextBlock)
    return services.editor(with_images=False).edit_text(
        doc, block.id, text or "", expected_version=_version(version), owner=owner)


def insert_typed(services: Any, doc_id: str, owner: str, block_id: Any, text: str,
                 where: str, version: Any) -> Document:
    """Insert a paragraph typed by the person before or after the picked block."""
    doc = owned_document(services, doc_id, owner)
    block = picked_block(doc, block_id)
    side = {"before_block_id": block.id} if where == "before" else {"after_block_id": block.id}
    return services.editor(with_images=False).insert_text(
        doc, text=text or "", expected_version=_version(version), **side)


def delete_block(services: Any, doc_id: str, owner: str, block_id: Any,
                 version: Any) -> Document:
    """Delete a paragraph or an image (undo brings it back)."""
    doc = owned_document(services, doc_id, owner)
    block = picked_block(doc, block_id)
    return services.editor(with_images=False).delete_block(
        doc, block.id, expected_version=_version(version))


def move_block(services: Any, doc_id: str, owner: str, block_id: Any, offset: int,
               version: Any) -> Document:
    """Move a block up (-1) or down (+1) by one place."""
    doc = owned_document(services, doc_id, owner)
    block = picked_block(doc, block_id)
    index = doc.blocks.index(block)
    target = index + offset
    if not 0 <= target < len(doc.blocks):
        raise InputError(f"block {block.id} is already {'first' if offset < 0 else 'last'}")
    return services.editor(with_images=False).move_block(
        doc, block.id, target, expected_version=_version(version))


# -- image operations --------------------------------------------------------------------------

def image_caption(services: Any, doc_id: str, owner: str, block_id: Any) -> str:
    """The caption of one image block (loaded into the caption box)."""
    doc = owned_document(services, doc_id, owner)
    return picked_block(doc, block_id, ImageBlock).caption


def search_again(services: Any, doc_id: str, owner: str, block_id: Any, caption: str,
                 version: Any) -> Document:
    """Search the library again with an edited caption; the best match is shown."""
    doc = owned_document(services, doc_id, owner)
    block = picked_block(doc, block_id, ImageBlock)
    return services.editor().search_again(doc, block.id, caption or "",
                                           expected_version=_version(version), owner=owner)


def choose_candidate(services: Any, doc_id: str, owner: str, block_id: Any, index: int,
                     version: Any) -> Document:
    """Show candidate `index` (as the gallery lists them: only those still in the library)."""
    doc = owned_document(services, doc_id, owner)
    block = picked_block(doc, block_id, ImageBlock)
    live = [c for c in block.candidates if _in_library(services, c.image_id)]
    if not 0 <= index < len(live):
        raise InputError(f"candidate {index + 1} does not exist: this image has {len(live)}")
    return services.editor(with_images=False).choose_candidate(
        doc, block.id, live[index].image_id, expected_version=_version(version))


def _in_library(services: Any, image_id: str) -> bool:
    try:
        services.images.get(image_id)
        return True
    except NotFoundError:
        return False


def upload_into_slot(services: Any, doc_id: str, owner: str, block_id: Any, file: Any,
                     caption: str, version: Any) -> Document:
    """Add one's own picture to one's library and show it in the image block.

    The person chose this very picture, so a look-alike in the library does not replace it
    (near-duplicates are kept); the same file already in the library is reused.
    """
    from pathlib import Path

    from composer.library import add_images

    doc = owned_document(services, doc_id, owner)
    block = picked_block(doc, block_id, ImageBlock)
    if not file:
        raise InputError("choose an image file to upload first")
    path = Path(file if isinstance(file, str) else getattr(file, "name", str(file)))
    result = add_images(services.images, [path],
                        caption=(caption or block.caption).strip() or None, owner=owner,
                        allow_near_duplicates=True)
    if result.failed:
        _, message = result.failed[0]
        raise InputError(f"{path.name} was not added: {message.replace(str(path), path.name)}")
    if not (result.added or result.existing):
        raise InputError(f"{path.name} was not added: try another file")
    image = (result.added or result.existing)[0]
    services.retriever.index()
    return services.editor(with_images=False).use_image(
        doc, block.id, image.id, expected_version=_version(version), owner=owner)


def generate_into_slot(services: Any, doc_id: str, owner: str, block_id: Any, caption: str,
                       seed: Any, version: Any, progress: Any = None,
                       cancel: threading.Event | None = None) -> Document:
    """Generate a picture for the caption (COMPOSER_IMAGE_GENERATOR) and show it."""
    doc = owned_document(services, doc_id, owner)
    block = picked_block(doc, block_id, ImageBlock)
    if not services.settings.image_generator:
        raise InputError("no image generator is configured: start the app with "
                         "COMPOSER_IMAGE_GENERATOR set to a diffusers model id or folder")
    updated = services.editor().generate_image(
        doc, block.id, expected_version=_version(version), caption=(caption or None),
        seed=whole_number("seed", seed or 0), owner=owner, progress=progress, cancel=cancel)
    services.retriever.index()
    return updated


def image_after(doc: Document, block_id: Any) -> int | None:
    """The id of the image block right after block `block_id` (a just inserted image)."""
    ids = [block.id for block in doc.blocks]
    wanted = whole_number("block", block_id) if block_id not in (None, "") else None
    if wanted not in ids:
        return None
    following = doc.blocks[ids.index(wanted) + 1:]
    return following[0].id if following and isinstance(following[0], ImageBlock) else None


def insert_image(services: Any, doc_id: str, owner: str, after_block_id: Any, caption: str,
                 version: Any) -> Document:
    """Insert an image (searched by `caption`) after the picked paragraph."""
    doc = owned_document(services, doc_id, owner)
    block = picked_block(doc, after_block_id)
    if not (caption or "").strip():
        raise InputError("write a caption for the new image first: it is what the library "
                         "is searched for")
    return services.editor().insert_image(doc, block.id, caption,
                                          expected_version=_version(version), owner=owner)


# -- the outline after writing -----------------------------------------------------------------

def apply_outline(services: Any, doc_id: str, owner: str, title: str, rows: Any,
                  version: Any) -> tuple[Document, list[int]]:
    """Apply an edited outline to a written article: removed sections go, moved ones move,
    and the indices of new (unwritten) sections come back for write_new_sections."""
    from ui.handlers import outline_from_rows

    doc = owned_document(services, doc_id, owner)
    outline = outline_from_rows(title or doc.title, rows)
    if not outline.sections:
        raise InputError("the outline is empty: plan or type at least one section")
    return services.editor(with_images=False).update_outline(
        doc, outline, expected_version=_version(version), owner=owner)


def write_new_sections(services: Any, doc: Document, owner: str, sections: list[int],
                       cancel: threading.Event) -> Iterator[tuple[str, str, float, Document]]:
    """Write only the new sections, streaming: (html, status, fraction, document)."""
    services.check_language(doc.language)
    editor = services.editor(with_images=False)
    current, pending, status, section = doc, "", "", None
    total = max(1, len(sections))
    done = 0
    for event in editor.write_sections(doc, sections, expected_version=doc.version,
                                       owner=owner, cancel=cancel):
        if event.stage == "write":
            pending = event.pending
            section = event.section if event.section is not None else section
        elif event.stage == "save":
            done += 1
            pending = ""
        if event.message:
            status = f"⚠ {event.message}" if event.stage == "warning" else event.message
        if event.stage in ("save", "done", "stopped") or event.message:
            current = services.documents.get(doc.id)
        yield (render_document(services, current, pending, section), status,
               min(1.0, done / total), current)
    current = services.documents.get(doc.id)
    yield render_document(services, current), status or "Done", 1.0, current
