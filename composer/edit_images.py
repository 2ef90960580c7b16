"""The Editor's image operations: search again, choose a candidate, upload, generate, caption,
insert an image. Each is one change; a search that finds nothing writes nothing.
"""

from __future__ import annotations

import threading
from typing import Any, Callable

from composer.edit_base import EditorBase
from composer.edit_checks import (
    block_label,
    check_caption,
    check_version,
    find_block,
    image_block,
    used_images,
)
from composer.illustrate import CANDIDATES, shown_caption
from composer.types import (
    Document,
    ImageBlock,
    ImageCandidate,
    InputError,
    NotFoundError,
)
from storage.edit_ops import InsertBlock, UpdateBlock


class ImageEdits(EditorBase):
    """Image operations on an image block: every picture comes from the library (searched,
    uploaded into it, or generated into it)."""

    # -- images ---------------------------------------------------------------------------------

    def search_again(self, doc: Document | str, block_id: int, caption: str, *, expected_version: int,
                     owner: str | None = None) -> Document:
        """Search the library with a new caption: new candidates, the best one chosen
        (origin "search"). InputError when nothing matches (nothing is written)."""
        caption = check_caption(caption)
        doc = self._document(doc)
        _, block = image_block(doc, block_id)
        check_version(doc, expected_version)
        candidates = self._search(doc, caption, used_images(doc, block_id), owner)
        best = max(candidates, key=lambda candidate: candidate.score)
        # `caption` was the query; the caption shown is the found image's own.
        update = UpdateBlock(block_id, caption=self._shown_caption(best.image_id, best.caption),
                             image_id=best.image_id, candidates=candidates, origin="search")
        return self._commit(doc.id, [update],
                            f"search {block_label(doc, block_id)} again", expected_version)

    def choose_candidate(self, doc: Document | str, block_id: int, image_id: str, *,
                         expected_version: int, owner: str | None = None) -> Document:
        """Show another of the image block's candidates (origin "candidate"), captioned
        with that image's own caption (a caption edited by hand goes with the old image)."""
        doc = self._document(doc)
        _, block = image_block(doc, block_id)
        chosen = {candidate.image_id: candidate for candidate in block.candidates}.get(image_id)
        if chosen is None:
            raise InputError(f"image {image_id!r} is not a candidate of "
                             f"{block_label(doc, block_id)}: pick one of its candidates, or "
                             "search again")
        check_version(doc, expected_version)
        update = UpdateBlock(block_id, caption=self._shown_caption(image_id, chosen.caption),
                             image_id=image_id, origin="candidate")
        return self._commit(doc.id, [update],
                            f"choose another picture for {block_label(doc, block_id)}",
                            expected_version)

    def use_image(self, doc: Document | str, block_id: int, image_id: str, *, expected_version: int,
                  owner: str | None = None) -> Document:
        """Show an uploaded library image (origin "upload").

        Uploading goes through the library (ImageStore.add); pass the new image's id here.
        """
        doc = self._document(doc)
        image_block(doc, block_id)
        if not image_id:
            raise InputError("no image given: upload an image, then pass its id")
        check_version(doc, expected_version)
        update = UpdateBlock(block_id, caption=self._shown_caption(image_id, "") or None,
                             image_id=image_id, origin="upload")
        return self._commit(doc.id, [update],
                            f"use an uploaded picture for {block_label(doc, block_id)}",
                            expected_version)

    def generate_image(self, doc: Document | str, block_id: int, *, expected_version: int,
                       caption: str | None = None, seed: int = 0, owner: str | None = None,
                       progress: Callable[..., Any] | None = None,
                       cancel: threading.Event | None = None) -> Document:
        """Generate a picture for the caption (the block's, or a new one) into the library
        and show it (origin "generated"). InputError when no generator is configured."""
        if self.generator is None:
            raise InputError("no image generator is configured: set COMPOSER_IMAGE_GENERATOR "
                             "to generate images")
        if self.images is None:
            raise InputError("no image library is configured to keep generated images")
        doc = self._document(doc)
        _, block = image_block(doc, block_id)
        caption = check_caption(caption if caption is not None else block.caption)
        check_version(doc, expected_version)
        from composer.generate_image import generate_into_library

        image = generate_into_library(self.generator, self.images, caption,
                                      owner=owner if owner is not None else doc.owner,
                                      seed=seed, progress=progress, cancel=cancel)
        update = UpdateBlock(block_id, caption=caption, image_id=image.id, origin="generated")
        return self._commit(doc.id, [update],
                            f"generate a picture for {block_label(doc, block_id)}",
                            expected_version)

    def insert_image(self, doc: Document | str, after_block_id: int, caption: str, *,
                     expected_version: int, owner: str | None = None) -> Document:
        """Insert an image after a block, searched by `caption` (origin "search").

        When the library has no match, the slot is inserted without a picture (image_id None)
        so that the person can upload or generate one.
        """
        caption = check_caption(caption)
        doc = self._document(doc)
        position, anchor = find_block(doc, after_block_id)
        check_version(doc, expected_version)
        try:
            candidates = self._search(doc, caption, used_images(doc), owner)
        except InputError:
            if self.retriever is None:
                raise
            candidates = []
        best = max(candidates, key=lambda c: c.score) if candidates else None
        # A found image is captioned with its own caption; an empty slot keeps the query.
        shown = self._shown_caption(best.image_id, best.caption) if best else caption
        block = ImageBlock(caption=shown, image_id=best.image_id if best else None,
                           candidates=candidates, section=anchor.section, origin="search")
        return self._commit(doc.id, [InsertBlock(position + 1, block)],
                            f"insert an image after {block_label(doc, after_block_id)}",
                            expected_version)

    def set_caption(self, doc: Document | str, block_id: int, caption: str, *, expected_version: int,
                    owner: str | None = None) -> Document:
        """Write an image's caption by hand; it stays until another picture is chosen."""
        doc = self._document(doc)
        image_block(doc, block_id)
        caption = check_caption(caption)
        check_version(doc, expected_version)
        return self._commit(doc.id, [UpdateBlock(block_id, caption=caption)],
                            f"caption {block_label(doc, block_id)}", expected_version)

    def _shown_caption(self, image_id: str, caption: str) -> str:
        """The caption to show under a library image: its current library caption (the
        candidate's copy when the library is not at hand), shortened (shown_caption)."""
        store = self.images if self.images is not None else getattr(self.retriever, "store",
                                                                      None)
        if store is not None:
            try:
                caption = store.get(image_id).caption
            except NotFoundError:
                pass
        return shown_caption(caption)

    def _search(self, doc: Document, caption: str, exclude: set[str],
                owner: str | None) -> list[ImageCandidate]:
        """Library candidates for a caption, as the composer searches (owner's and shared
        images, the document's license / source filters, images used elsewhere excluded)."""
        if self.retriever is None:
            raise InputError("image search is not available here: no image library is "
                             "configured; upload an image instead")
        license_ = str(doc.options.get("image_license") or "") or None
        source = str(doc.options.get("image_source") or "") or None
        candidates = list(self.retriever.search(
            caption, k=CANDIDATES, exclude=exclude,
            owner=owner if owner is not None else doc.owner, license=license_, source=source))
        if not candidates:
            raise InputError(f"the image library has no unused image for \"{caption}\": try "
                             "another caption, upload an image, or add images with "
                             "`python -m composer library add`")
        return candidates

