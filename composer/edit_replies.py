"""A reply to an edit as paragraphs: the model's without its remarks, a person's as typed."""

from __future__ import annotations

import re

from composer.writer import split_paragraphs

_QUOTES = {'"': '"', "“": "”", "「": "」"}


def _unquote(paragraph: str) -> str:
    """A paragraph without the quotes a model sometimes wraps around its whole answer
    (only when the opening and closing quote are the paragraph's only ones)."""
    text = paragraph.strip()
    close = _QUOTES.get(text[:1])
    if close is None or len(text) < 3 or not text.endswith(close):
        return text
    inner = text[1:-1]
    return text if text[0] in inner or close in inner else inner.strip()


_META_START = re.compile(
    r"^\s*(here(?:'s| is| are)\b|sure\b|certainly\b|of course\b|okay\b|ok\b|"
    r"i(?:'ll| will| hope)\b|i(?:'ve| have) (?:rewritten|revised|expanded|shortened|condensed|"
    r"made|created|kept|added)\b|below is|as requested\b|note:|"
    r"(?:this|the|my) (?:revised|rewritten|expanded|shortened|abbreviated|condensed) "
    r"(?:version|paragraph|text|piece)|in this "
    r"(?:version|revision)\b|以下是|好的|这是(?:修改|改写|扩写|缩写)|修改后的|改写后的)", re.I)


def is_meta_comment(paragraph: str) -> bool:
    """Whether a reply paragraph talks about the answer instead of being part of it (small
    models wrap their text in "Here's the rewritten paragraph:" and "This version ...")."""
    text = paragraph.strip()
    return bool(_META_START.match(text)) or text.endswith((":", "："))


def reply_paragraphs(text: str, section_title: str) -> list[str]:
    """A model's reply to an edit as clean paragraphs: its remarks about the answer ("Here's
    the rewritten paragraph:", "This version ...") and wrapping quotes dropped."""
    paragraphs = [_unquote(p) for p in split_paragraphs(text, section_title)]
    return [p for p in paragraphs if p and not is_meta_comment(p)]


def human_paragraphs(text: str) -> list[str]:
    """A person's text as paragraphs: split at blank lines, stripped, nothing else removed
    (split_paragraphs also drops headings and lead-ins, which only a model's reply needs)."""
    return [part.strip() for part in re.split(r"\n\s*\n", text.replace("\r\n", "\n"))
            if part.strip()]
