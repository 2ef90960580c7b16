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
.xc-article h2{font-size:1.35rem;line-height:1.3;margin:2rem 0 .8rem}
.xc-article p{margin:0 0 1.1rem;font-size:1.08rem}
.xc-article figure{margin:1.5rem 0}
.xc-article img{max-width:100%;height:auto;border-radius:6px;display:block}
.xc-article figcaption{font-size:.9rem;color:#555;margin-top:.4rem}
.xc-article .credit{color:#888}
.xc-article .streaming{color:#444;white-space:pre-wrap}
.xc-article .planned{color:#6b7280}
.xc-article ul.planned{font-family:system-ui,sans-serif;font-size:.9rem;margin:0 0 1rem}
.xc-article .checks{font-family:system-ui,sans-serif;font-size:.75rem;color:#6b7280;
margin:-.8rem 0 1.1rem}
.xc-article .checks .failed{color:#b45309}
"""
# The checks line under a paragraph in the editor's view, in the article's language.
CHECK_LABELS = {
    "en": {"clean": "clean", "no_leak": "no leaked prompt", "new": "new",
           "complete": "complete", "language": "right language",
           "no_gibberish": "no gibberish", "on_topic": "on topic",
           "long_enough": "long enough"},
    "zh": {"clean": "干净", "no_leak": "无提示泄漏", "new": "不重复", "complete": "完整",
           "language": "语言正确", "no_gibberish": "无乱码", "on_topic": "切题",
           "long_enough": "长度足够"},
}
HOW_LABELS = {
    "en": {"kept": "kept as drafted", "rewritten": "rewritten after failing a check",
           "trimmed": "bad sentences removed", "stopped": "stopped early"},
    "zh": {"kept": "按草稿保留", "rewritten": "未通过检查后重写", "trimmed": "已删去不合格的句子",
           "stopped": "提前停止"},
}
DRAFTS_READ = {"en": "{how}, {drafts} draft{s} read", "zh": "{how}，读了 {drafts} 份草稿"}


def check_labels(language: str) -> tuple[dict[str, str], dict[str, str]]:
    """(check name -> label, how-kept -> label) in `language` (English for others)."""
    known = language if language in CHECK_LABELS else "en"
    return CHECK_LABELS[known], HOW_LABELS[known]


def credit_text(image: LibraryImage | None) -> str:
    """"attribution, license" for an image, or "" when neither is known."""
    if image is None:
        return ""
    return ", ".join(part for part in (image.attribution, image.license) if part)


def section_headings(doc: Document) -> dict[int, str]:
    """Block position -> the title of the outline section that block opens.

    Each section gets one heading, before its first block in document order, so a person's
    reordered or deleted sections still read sensibly. No heading for a document without an
    outline, a section the outline does not name, an empty title, or a one-section article
    whose section title is the article's title.
    """
    headings: dict[int, str] = {}
    seen: set[int] = set()
    for position, block in enumerate(doc.blocks):
        if block.section in seen or not shows(block):
            continue
        seen.add(block.section)
        title = section_title(doc, block.section)
        if title:
            headings[position] = title
    return headings


def section_title(doc: Document, section: int) -> str:
    """The heading of outline section `section` ("" when it gets none, see section_headings)."""
    sections = doc.outline.sections if doc.outline else []
    if not 0 <= section < len(sections):
        return ""
    title = " ".join(sections[section].title.split())
    if not title or title.casefold() == " ".join(doc.title.split()).casefold():
        return ""
    return title


def shows(block: TextBlock | ImageBlock) -> bool:
    """Whether a block renders anything (a heading never stands over nothing)."""
    return bool(block.text.strip()) if isinstance(block, TextBlock) else bool(block.image_id)


def figure_html(block: ImageBlock, image_url: ImageUrl, image_info: ImageInfo) -> str:
    """One image with its caption and credit, escaped."""
    if not block.image_id:
        return ""
    caption = html.escape(block.caption)
    credit = html.escape(credit_text(image_info(block.image_id)))
    credit_html = f' <span class="credit">({credit})</span>' if credit else ""
    return (f'<figure><img src="{html.escape(image_url(block.image_id))}" alt="{caption}" '
            f'loading="lazy"><figcaption>{caption}{credit_html}</figcaption></figure>')


def checks_html(checks: dict | None, language: str = "en") -> str:
    """One small line under a model paragraph: the checks it passed (✓) and failed (✗), how
    it was kept and from how many drafts; "" for a paragraph without recorded checks."""
    if not checks:
        return ""
    labels, hows = check_labels(language)
    passed = [labels.get(name, name) for name in checks.get("passed", [])]
    failed = [labels.get(name, name) for name in checks.get("failed", {})]
    drafts = checks.get("drafts", 0)
    how = hows.get(str(checks.get("how", "")), "")
    parts = [f"✓ {html.escape(' · '.join(passed))}"] if passed else []
    if failed:
        reasons = "; ".join(str(reason) for reason in checks.get("failed", {}).values())
        parts.append(f'<span class="failed" title="{html.escape(reasons)}">✗ '
                     f'{html.escape(" · ".join(failed))}</span>')
    if how:
        template = DRAFTS_READ["zh" if language == "zh" else "en"]
        parts.append(html.escape(template.format(how=how, drafts=drafts,
                                                 s="s" if drafts != 1 else "")))
    return f'<div class="checks">{" — ".join(parts)}</div>'


def article_html(doc: Document, image_url: ImageUrl, image_info: ImageInfo,
                 streaming_tail: str = "", streaming_section: int | None = None,
                 show_checks: bool = False) -> str:
    """The article as escaped HTML; `streaming_tail` is text still being written, in section
    `streaming_section` (its heading shows before the tail when it has no saved block yet).
    `show_checks` adds under each model paragraph the checks it passed (the editor's view;
    readers of a shared article do not see them)."""
    parts = [article_open(doc)]
    headings = section_headings(doc)
    for position, block in enumerate(doc.blocks):
        if position in headings:
            parts.append(heading_html(headings[position]))
        parts.append(block_html(block, image_url, image_info, show_checks, doc.language))
    if streaming_tail.strip():
        shown = any(b.section == streaming_section and shows(b) for b in doc.blocks)
        heading = "" if streaming_section is None or shown else section_title(
            doc, streaming_section)
        parts.append(streaming_html(streaming_tail, heading))
    parts.append(ARTICLE_CLOSE)
    return "".join(parts)


ARTICLE_CLOSE = "</article>"


def article_open(doc: Document) -> str:
    """The start of the article's HTML: its element and the title."""
    return f'<article class="xc-article"><h1>{html.escape(doc.title)}</h1>'


def heading_html(title: str) -> str:
    """A section heading, escaped."""
    return f"<h2>{html.escape(title)}</h2>"


def block_html(block: TextBlock | ImageBlock, image_url: ImageUrl, image_info: ImageInfo,
               show_checks: bool = False, language: str = "en") -> str:
    """One block as escaped HTML: a paragraph (with its checks line in the article's
    `language` when `show_checks`) or a figure; a section's heading is the caller's
    (section_headings)."""
    if isinstance(block, TextBlock):
        return f"<p>{html.escape(block.text)}</p>" + (checks_html(block.checks, language)
                                                      if show_checks else "")
    if isinstance(block, ImageBlock):
        return figure_html(block, image_url, image_info)
    return ""


def streaming_html(tail: str, heading: str = "") -> str:
    """Text still being written, with a cursor, under `heading` ("": none); "" for no text."""
    if not tail.strip():
        return ""
    opening = heading_html(heading) if heading else ""
    return opening + f'<p class="streaming">{html.escape(tail.strip())}▍</p>'


def planned_html(planned: list[tuple[str, list[str]]]) -> str:
    """The outline as it is being planned: each section's heading and key points, muted,
    escaped (shown before any paragraph is written)."""
    parts = []
    for heading, points in planned:
        parts.append(f'<h2 class="planned">{html.escape(heading)}</h2>')
        if points:
            items = "".join(f"<li>{html.escape(point)}</li>" for point in points)
            parts.append(f'<ul class="planned">{items}</ul>')
    return "".join(parts)


def first_paragraph(doc: Document, limit: int = 200) -> str:
    """The opening text, shortened, for link previews (Open Graph description)."""
    for block in doc.text_blocks:
        text = " ".join(block.text.split())
        return text if len(text) <= limit else text[: limit - 1].rsplit(" ", 1)[0] + "…"
    return ""
