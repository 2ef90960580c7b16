"""The compose view's article: rendered whole from a document, or grown as it is written.

While an article is written, the composer's "write" events carry each saved paragraph: the
view keeps the HTML of what it shows and appends the new block, instead of reading the
document and rendering every block again a few times a second (work quadratic in the
article's length). Images are served from /media/ with their credit line.
"""

from __future__ import annotations

from typing import Any

from composer.render import (
    ARTICLE_CLOSE,
    article_html,
    article_open,
    block_html,
    heading_html,
    planned_html,
    section_title,
    shows,
    streaming_html,
)
from composer.types import Block, Document, LibraryImage, NotFoundError, TextBlock, count_words


def media_url(image_id: str) -> str:
    """Where the browser UI serves a library image (ui/media.py)."""
    return f"/media/{image_id}"


def image_lookup(services: Any):
    """image id -> its LibraryImage (None once deleted), for the credit under a figure."""
    def info(image_id: str) -> LibraryImage | None:
        try:
            return services.images.get(image_id)
        except NotFoundError:
            return None
    return info


def render_document(services: Any, doc: Document, streaming_tail: str = "",
                    section: int | None = None) -> str:
    """The editor's view of a document (images served from /media/), with the checks each
    model paragraph passed; `streaming_tail` is text still being written into outline
    section `section`."""
    return article_html(doc, media_url, image_lookup(services), streaming_tail, section,
                        show_checks=True)


class ArticleView:
    """The editor's view of a document being written, kept between renders.

    `reset(doc)` renders a document read from the store; `append(block)` adds a block saved
    after the last one (its section's heading first, when it opens the section); `html()`
    is the same HTML that render_document gives for the document with those blocks.
    """

    def __init__(self, services: Any, doc: Document) -> None:
        self._info = image_lookup(services)
        self.reset(doc)

    def reset(self, doc: Document) -> None:
        """Show `doc` as stored (its title, outline and blocks)."""
        self.doc = doc
        self._seen: set[int] = set()
        self._shown: set[int] = set()
        self._body: list[str] = []
        self.words = 0  # in the text blocks shown
        for block in doc.blocks:
            self._add(block)

    def append(self, block: Block) -> None:
        """A block saved after the last one shown (one already shown, by id, is skipped:
        a page that opened the document mid-write may hear of it again)."""
        if block.id is None or block.id not in self._shown:
            self._add(block)

    def html(self, streaming_tail: str = "", section: int | None = None,
             planned: list[tuple[str, list[str]]] | None = None) -> str:
        """The article, with `streaming_tail` (text not saved yet) in outline `section`;
        `planned` (heading, key points) sections show until the first words are written."""
        heading = "" if section is None or section in self._seen else section_title(
            self.doc, section)
        waiting = not self._body and not streaming_tail.strip()
        outline = planned_html(planned) if planned and waiting else ""
        return (article_open(self.doc) + "".join(self._body) + outline
                + streaming_html(streaming_tail, heading) + ARTICLE_CLOSE)

    def _add(self, block: Block) -> None:
        if block.id is not None:
            self._shown.add(block.id)
        if isinstance(block, TextBlock):
            self.words += count_words(block.text)
        if shows(block) and block.section not in self._seen:
            self._seen.add(block.section)
            title = section_title(self.doc, block.section)
            if title:
                self._body.append(heading_html(title))
        self._body.append(block_html(block, media_url, self._info, show_checks=True,
                                     language=self.doc.language))
