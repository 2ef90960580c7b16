"""The text clean-up that turns a model's reply into paragraphs, and the length arithmetic
of sections (paragraphs per section, token budgets, the window of text shown before).

composer/sections.py writes sections with these; composer/checked.py checks what it keeps.
"""

from __future__ import annotations

import math
import re

from composer.types import count_words

PREVIOUS_CHARS = 800
WORDS_PER_PARAGRAPH = 90
CHARACTERS_PER_PARAGRAPH = 150  # Chinese length is counted in characters (count_words)
TOKENS_PER_WORD = {"en": 1.4, "zh": 1.6}

_HEADING = re.compile(r"^\s*(#{1,6}\s+|\*\*[^*]+\*\*\s*$|section\s+\d+\b|第.{1,3}部分)", re.I)
_LABEL = re.compile(r"^\s*(?:\[[^\]]{1,20}\]\s*)*(?:[\"“]?(?:section title|title|标题)\s*[:：]\s*)?",
                    re.I)
_SENTENCE_END = re.compile(r"[.!?。！？…][\"'”’)\]]*")


def paragraphs_for(words: int, language: str = "en") -> int:
    """How many paragraphs a section of this many words (characters for Chinese) is asked
    for."""
    per = CHARACTERS_PER_PARAGRAPH if language == "zh" else WORDS_PER_PARAGRAPH
    return max(1, round(words / per))


def token_budget(words: int, language: str, cap: int) -> int:
    """max_new_tokens for a section: its word budget in tokens plus slack, never above cap."""
    return max(16, min(cap, math.ceil(words * TOKENS_PER_WORD[language] * 1.1) + 16))


def previous_window(text: str, limit: int = PREVIOUS_CHARS) -> str:
    """The last `limit` characters of the article, starting after a sentence end (Chinese has
    no spaces) or else at a word boundary, when one is near the cut."""
    text = text.strip()
    if len(text) <= limit:
        return text
    tail = text[-limit:]
    sentence = _SENTENCE_END.search(tail[:60])
    if sentence is not None:
        return tail[sentence.end():].lstrip()
    space = tail.find(" ")
    return tail[space + 1:] if 0 <= space < 40 else tail


_QUOTED_TITLE = re.compile(r'^\s*["“]([^"“”]{3,120})["”]\s*')


def _quoted_title(line: str) -> str | None:
    """A leading title in quotes ('"The Ultimate Guide: A Beginner's Guide" This post ...'):
    the quoted part when it has no sentence end or comma inside and at most 15 words."""
    match = _QUOTED_TITLE.match(line)
    if match is None:
        return None
    inner = match.group(1).strip()
    rest = line[match.end():]
    if len(inner.split()) > 15 or re.search(r"[.!?,。！？，]$", inner) or (
            rest and not rest[0].isupper()):
        return None  # a quotation inside a sentence ('"Hello" is what she said.')
    return match.group(0)


def clean_paragraph(text: str, section_title: str) -> str:
    """One paragraph as prose: lines joined; headings, titles in quotes and the repeated
    section title dropped."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    kept = []
    for line in lines:
        bare = line.strip("#*:：. ").lower()
        if bare == section_title.lower().strip() or _HEADING.match(line):
            continue
        if line.endswith((":", "：")) and len(line.split()) <= 8:
            continue  # "Here is the full article:" and similar lead-ins
        title = _quoted_title(line)
        if title is not None:
            line = line[len(title):].strip()
            if not line:
                continue
        kept.append(_LABEL.sub("", line).lstrip("-•* ").strip())
    joined = re.sub(r"[ \t]{2,}", " ", " ".join(kept)).strip()
    return balance_quotes(_drop_title_label(joined, section_title))


_NUMBERED_LABEL = re.compile(r"^\d{1,2}[.)]\s+(?:[^\s.:!?]+\s+){0,7}[^\s.:!?]+\s*[:：]\s+")
_TITLE_WORD = r"(?:[A-Z][\w'’&-]*|and|of|the|in|for|to|a|an|on|at|&)"
# four to eight words: "New York City." may open a paragraph, a four-word heading rarely does
_TITLE_SENTENCE = re.compile(rf"^[A-Z][\w'’&-]*(?:\s+{_TITLE_WORD}){{3,7}}\.\s+(?=[A-Z])")


def _drop_title_label(text: str, section_title: str) -> str:
    """Text without a leading heading that the model wrote into the paragraph: "Section
    Title:" or "Section Title The ..." (the heading repeated as a label), "3. The Process of
    Beekeeping: bees ..." (an outline line), "Building Technology and Engineering. The story
    ..." (a title-case heading ended by a period)."""
    title = section_title.strip().rstrip(".:：")
    if title and text.lower().startswith(title.lower()):
        rest = text[len(title):]
        if rest[:1] in (":", "："):
            return rest[1:].strip()
        if len(title.split()) >= 2 and re.match(r"\s+[A-Z]", rest):
            return rest.strip()
    for label in (_NUMBERED_LABEL, _TITLE_SENTENCE):
        match = label.match(text)
        if match is not None and len(text) > match.end() + 20:
            return text[match.end():].strip()
    return text


def balance_quotes(text: str) -> str:
    """Text without a stray opening or closing double quote: a model often starts (or ends)
    a paragraph with a quote mark it never closes (opens), or puts a whole paragraph in
    quotes."""
    for opening, closing in (('"', '"'), ("“", "”")):
        inner = text[1:-1]
        if (len(text) > 2 and text.startswith(opening) and text.endswith(closing)
                and opening not in inner and closing not in inner):
            text = inner.strip()
            continue
        if opening == closing:
            if text.count('"') % 2 == 1:
                if text.startswith('"'):
                    text = text[1:].lstrip()
                elif text.endswith('"'):
                    text = text[:-1].rstrip()
            continue
        if text.startswith(opening) and closing not in text:
            text = text[1:].lstrip()
        if text.endswith(closing) and opening not in text:
            text = text[:-1].rstrip()
    return text


def drop_unfinished_sentence(text: str) -> str:
    """Cut a trailing sentence fragment (a reply that hit its token limit), if a sentence ends."""
    stripped = text.rstrip()
    if not stripped or _SENTENCE_END.fullmatch(stripped[-1]) or stripped[-1] in "\"'”’)":
        return stripped
    ends = list(_SENTENCE_END.finditer(stripped))
    return stripped[: ends[-1].end()] if ends else stripped


def split_paragraphs(text: str, section_title: str = "") -> list[str]:
    """Text -> paragraphs at blank lines (runs of blank lines collapse), cleaned, empties dropped."""
    blocks = re.split(r"\n\s*\n", text.replace("\r\n", "\n"))
    cleaned = (clean_paragraph(block, section_title) for block in blocks)
    return [paragraph for paragraph in cleaned if count_words(paragraph) > 0]
