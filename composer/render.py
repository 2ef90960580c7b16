"""Document -> HTML for the editor preview and the public share page.

Every piece of text (title, paragraphs, captions, attribution) goes through html.escape, so
whatever a person or the model wrote shows as text and never runs. Image addresses come from
a function so the editor and the share page can each serve images their own way.
"""

from __future__ import annotations

import html
from typing import Callable

from composer.types import Document, ImageBlock, LibraryImage, TextBlock

ImageUrl = Callable[[str], str]
ImageInfo = Callable[[str], LibraryImage | None]

ARTICLE_CSS = """
.xc-article{font-family:Georgia,'Noto Serif','Songti SC',serif;line-height:1.7;color:#1d1d1f;
max-width:46rem;margin:0 auto}
.xc-article h1{font-size:2rem;line-height:1.25;margin:0 0 1.25rem}
.xc-article p{margin:0 0 1.1rem;font-size:1.08rem}
.xc-article figure{margin:1.5rem 0}
.xc-article img{max-width:100%;height:auto;border-radius:6px;display:block}
.xc-article figcaption{font-size:.9rem;color:#555;margin-top:.4rem}
.xc-article .credit{color:#888}
.xc-article .streaming{color:#444;white-space:pre-wrap}
"""


def credit_text(image: LibraryImage | None) -> str:
    """"attribution, license" for an image, or "" when neither is known."""
    if image is None:
        return ""
    return ", ".join(part for part in (image.attribution, image.license) if part)


def figure_html(block: ImageBlock, image_url: ImageUrl, image_info: ImageInfo) -> str:
    """One image with its caption and credit, escaped."""
    if not block.image_id:
        return ""
    caption = html.escape(block.caption)
    credit = html.escape(credit_text(image_info(block.image_id)))
    credit_html = f' <span class="credit">({credit})</span>' if credit else ""
    return (f'<figure><img src="{html.escape(image_url(block.image_id))}" alt="{caption}" '
            f'loading="lazy"><figcaption>{caption}{credit_html}</figcaption></figure>')


def article_html(doc: Document, image_url: ImageUrl, image_info: ImageInfo,
                 streaming_tail: str = "") -> str:
    """The article as escaped HTML; `streaming_tail` is text still being written."""
    parts = [f'<article class="xc-article"><h1>{html.escape(doc.title)}</h1>']
    for block in doc.blocks:
        if isinstance(block, TextBlock):
            parts.append(f"<p>{html.escape(block.text)}</p>")
        elif isinstance(block, ImageBlock):
            parts.append(figure_html(block, image_url, image_info))
    if streaming_tail.strip():
        parts.append(f'<p class="streaming">{html.escape(streaming_tail.strip())}▍</p>')
    parts.append("</article>")
    return "".join(parts)


def first_paragraph(doc: Document, limit: int = 200) -> str:
    """The opening text, shortened, for link previews (Open Graph description)."""
    for block in doc.text_blocks:
        text = " ".join(block.text.split())
        return text if len(text) <= limit else text[: limit - 1].rsplit(" ", 1)[0] + "…"
    return ""
