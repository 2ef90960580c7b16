"""What every part of the Editor shares: its components, and applying a change atomically."""

from __future__ import annotations

from typing import Any

from composer.sections import SectionWriter
from composer.types import Document
from storage.edit_ops import EditOp


class EditorBase:
    """The Editor's components (composer/editing.py documents the arguments), `_document`
    and `_commit`. Every operation takes a loaded Document or a document id."""

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

    def _document(self, doc: Document | str) -> Document:
        """The document an operation works on: the one the caller already loaded (the UI
        checks who owns it first), or the one stored under that id. Either way the change is
        written only if the stored version is still the expected one (`_commit`)."""
        return doc if isinstance(doc, Document) else self.documents.get(doc)

    def _commit(self, doc_id: str, ops: list[EditOp], label: str,
                expected_version: int) -> Document:
        """Apply `ops` in order as ONE change labelled `label` (one undo) with the repository's
        atomic `apply`; ConflictError if the document is no longer at `expected_version`.
        Returns the document after it."""
        return self.documents.apply(doc_id, ops, label=label, expected_version=expected_version)
