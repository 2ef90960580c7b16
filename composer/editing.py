"""Editing a written article: paragraph and image operations, the outline after writing.

The service layer of issue 6 (no UI): the UI and the CLI call an Editor, which composes
ParagraphEdits (composer/edit_paragraphs.py), ImageEdits (composer/edit_images.py) and
OutlineEdits (composer/edit_outline.py); previews are planned and streamed in
composer/edit_previews.py, accepted text becomes block operations in composer/edit_blocks.py,
and inputs are checked in composer/edit_checks.py.

* Model operations are two steps. `Editor.preview` streams the model's text into an
  EditPreview as it is written (the person watches, may stop it: what was streamed is kept);
  the last preview carries a Proposal. `Editor.accept(proposal, expected_version=...)` applies
  it; dropping the proposal is "cancel" (nothing was written).
* Every operation takes the document as a loaded Document (the UI has just loaded it to check
  who owns it: it is not read again) or as its id.
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

from composer.edit_images import ImageEdits
from composer.edit_outline import OutlineEdits
from composer.edit_paragraphs import ParagraphEdits


class Editor(ParagraphEdits, ImageEdits, OutlineEdits):
    """Edits saved documents: previews and accepts model operations, applies direct edits.

    `lm` a LanguageModel; `documents` the DocumentRepository; `retriever` the library
    retriever (image search; None: image search is refused); `pairs` the preference pair
    repository (None: no pairs are stored); `generator` an image generator (None: generating
    is refused); `images` the ImageStore generated images go into (default: the retriever's).
    """

