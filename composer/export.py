"""Document -> Markdown (with an images folder or a zip) and self-contained HTML.

Every piece of text a person or the model wrote is escaped: the HTML export embeds images as
data URIs and carries a Content-Security-Policy that allows no script at all, so an article
containing "<script>" shows those characters and runs nothing. Markdown escapes with
CommonMark's backslash escapes (not HTML entities, which Markdown viewers show as text), so
"<<a title>>" reads as written and raw HTML in any text is never rendered as HTML. Each
section's title is a `##` heading (`<h2>` in HTML) before its first block.
"""

from __future__ import annotations

import base64
import html
import io
import mimetypes
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol
from urllib.parse import quote

from composer.render import ARTICLE_CSS, article_html, credit_text, section_headings
from composer.types import Document, ImageBlock, LibraryImage, TextBlock

FORMATS = ("md", "html", "zip")
HTML_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


class ImageSource(Protocol):
    """What export needs from the image store."""

    def get(self, image_id: str) -> LibraryImage: ...

    def path(self, image_id: str) -> Path: ...


@dataclass
class ExportedImage:
    """An image referenced by the export: where its file is and its name inside the export."""

    image: LibraryImage
    file: Path
    name: str


def _images(doc: Document, store: ImageSource) -> dict[str, ExportedImage]:
    found: dict[str, ExportedImage] = {}
    for block in doc.image_blocks:
        if block.image_id and block.image_id not in found:
            image = store.get(block.image_id)
            file = store.path(block.image_id)
            found[block.image_id] = ExportedImage(image, file, f"{image.id[:16]}{file.suffix}")
    return found


# CommonMark lets a backslash escape any ASCII punctuation. These can start markup anywhere
# in a line: emphasis, code, links and images, raw HTML and autolinks, tables, strikethrough.
_INLINE_MARKUP = re.compile(r"([\\`*_\[\]<>|~])")
_ENTITY = re.compile(r"&(?=#?\w+;)")  # "&lt;" would be shown as "<"
# These only at the start of a line: headings, quotes, lists, setext underlines.
_LINE_MARKUP = re.compile(r"^(?:(\d+)([.)])|([#+=-]))")
# Characters kept as they are in an image address (the rest is percent-encoded).
_URL_SAFE = "/:@!$&'*+,;=?#~%"


def _escape_inline(text: str) -> str:
    return _ENTITY.sub(r"\\&", _INLINE_MARKUP.sub(r"\\\1", text))


def _escape_line_start(match: re.Match[str]) -> str:
    number, mark, other = match.groups()
    return f"{number}\\{mark}" if number else f"\\{other}"


def escape_markdown(text: str) -> str:
    """Text that Markdown viewers show exactly as written: markup characters get CommonMark
    backslash escapes, so raw HTML such as "<script>" is shown as text and never rendered.
    Lines lose their indentation (four spaces would make a code block)."""
    lines = text.replace("\r\n", "\n").split("\n")
    return "\n".join(_LINE_MARKUP.sub(_escape_line_start, _escape_inline(line.strip()))
                     for line in lines)


def _one_line(text: str) -> str:
    """Escaped text on one line, for headings, alt text and captions (which cannot span
    lines); "#" too, which would otherwise close a heading."""
    return _escape_inline(" ".join(text.split())).replace("#", "\\#")


def to_markdown(doc: Document, store: ImageSource,
                link: Callable[[ExportedImage], str] = lambda e: f"images/{e.name}") -> str:
    """The article as Markdown: the title, a `##` heading per section, paragraphs, images with
    caption and credit; `link` gives each image's address (default images/<name>)."""
    images = _images(doc, store)
    headings = section_headings(doc)
    lines = [f"# {_one_line(doc.title)}", ""]
    for position, block in enumerate(doc.blocks):
        if position in headings:
            lines += [f"## {_one_line(headings[position])}", ""]
        if isinstance(block, TextBlock) and block.text.strip():
            lines += [escape_markdown(block.text.strip()), ""]
        elif isinstance(block, ImageBlock) and block.image_id:
            exported = images[block.image_id]
            caption = _one_line(block.caption)
            lines += [f"![{caption}]({quote(link(exported), safe=_URL_SAFE)})", ""]
            source = credit_text(exported.image)
            credit = f" ({_one_line(source)})" if source else ""
            lines += [(f"*{caption}*" if caption else "") + credit, ""]
    return "\n".join(lines).rstrip() + "\n"


def _write(out: Path, content: str | bytes) -> None:
    """Write one file of an export; StorageError "cannot write OUT: why: choose another --out"
    when it cannot be written (no such folder, read-only, a folder, disk full)."""
    from storage.faults import ANOTHER_OUT, file_faults

    with file_faults(out, ANOTHER_OUT):
        if isinstance(content, bytes):
            out.write_bytes(content)
        else:
            out.write_text(content, encoding="utf-8")


def write_markdown(doc: Document, store: ImageSource, out: Path) -> Path:
    """Write out.md and its images into a folder beside it named <stem>_images/."""
    from storage.faults import ANOTHER_OUT, file_faults

    folder = out.with_name(f"{out.stem}_images")
    images = _images(doc, store)
    _write(out, to_markdown(doc, store, lambda e: f"{folder.name}/{e.name}"))
    if images:
        with file_faults(folder, ANOTHER_OUT):
            folder.mkdir(parents=True, exist_ok=True)
        for exported in images.values():
            _write(folder / exported.name, exported.file.read_bytes())
    return out


def to_zip(doc: Document, store: ImageSource) -> bytes:
    """A zip holding article.md and images/ (the reference's export)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("article.md", to_markdown(doc, store))
        for exported in _images(doc, store).values():
            archive.write(exported.file, f"images/{exported.name}")
    return buffer.getvalue()


def _data_uri(file: Path) -> str:
    mime = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
    return f"data:{mime};base64,{base64.b64encode(file.read_bytes()).decode('ascii')}"


_STYLE = """
body{margin:2rem auto;padding:0 1rem;background:#fff}
"""


def to_html(doc: Document, store: ImageSource) -> str:
    """A standalone HTML page: escaped text, images inline as data URIs, no script allowed."""
    images = _images(doc, store)
    article = article_html(doc, lambda image_id: _data_uri(images[image_id].file),
                           lambda image_id: images[image_id].image)
    lang = "zh" if doc.language == "zh" else "en"
    return (
        f'<!doctype html>\n<html lang="{lang}"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{HTML_CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(doc.title)}</title><style>{_STYLE}{ARTICLE_CSS}</style></head>"
        f"<body>{article}</body></html>\n"
    )


def export(doc: Document, store: ImageSource, fmt: str, out: Path | None) -> str | bytes | Path:
    """Export in `fmt`; with `out`, write the file(s) and return the path, else the content."""
    if fmt not in FORMATS:
        raise ValueError(f"format {fmt!r} is not one of {FORMATS}")
    if fmt == "md":
        if out is None:
            return to_markdown(doc, store, lambda e: e.file.resolve().as_uri())
        return write_markdown(doc, store, out)
    content: str | bytes = to_html(doc, store) if fmt == "html" else to_zip(doc, store)
    if out is None:
        return content
    _write(out, content)
    return out
