"""Checks on what a model planned: titles and key points that are real content, on the subject.

A small model's outline can hold its own scaffolding ("Key Points", "List of Sections:"),
markup (`<img src=...>`, a title ending in `</p>`), dates in place of headings ("2018-03-04"),
URLs, duplicates, or the instruction copied back. Each check here names what is wrong, so the
planner can resample the item or fill in from a genre template (composer/genres.py).
"""

from __future__ import annotations

import re
from difflib import SequenceMatcher
from typing import Any

# Cosine (all-MiniLM-L6-v2) between a key point and the instruction from which the point is
# on the subject, per language: the best balanced accuracy on labelled points, measured by
# bench/bench_outline_topic.py (bench/results/outline_topic.json). The embedder reads
# Chinese poorly, hence the higher, less certain Chinese value.
TOPIC_THRESHOLDS = {"en": 0.10, "zh": 0.48}
MAX_ITEM_CHARS = 100
COPY_RATIO = 0.85  # difflib ratio from which a title is a copy of the instruction

_MARKUP = re.compile(r"<\s*/?\s*[a-zA-Z!][^>]*>?|</|/>|\[[^\]]*\]\(|&[a-zA-Z]+;|&#\d+;|[`|{}\\]"
                     r"|^\s*#|\*\*|__")
_URL = re.compile(r"https?:|www\.|\b[\w-]+\.(?:com|org|net|html?|io|cn|jpg|png)\b", re.I)
_MONTHS = ("january|february|march|april|may|june|july|august|september|october|november|"
           "december|jan|feb|mar|apr|jun|jul|aug|sep|sept|oct|nov|dec")
_DATE_ONLY = re.compile(rf"^(?:[\d\s\-/.:,年月日号]|{_MONTHS}|st|nd|rd|th)+$", re.I)
_NUMBERED_LABEL = re.compile(
    r"^(?:section|part|heading|chapter|point|key point|title|subheading|paragraph|item|step)"
    r"\s*(?:\d+|[ivx]+|one|two|three|four|five)?$"
    r"|^第?[一二三四五六七八九十\d]+(?:部分|节|章|段|点)?$|^(?:要点|部分|标题)[一二三四五六七八九十\d]*$",
    re.I)
META_ITEMS = {
    "key points", "key point", "main points", "points", "section headings", "section heading",
    "headings", "heading", "list of sections", "sections", "outline", "article outline",
    "table of contents", "contents", "section title", "section titles", "subheadings",
    "title", "article title", "summary of sections", "numbered list", "bullet points",
    "first key point", "second key point", "your title", "insert title", "sub points",
    "要点", "提纲", "大纲", "部分标题", "标题", "目录", "章节", "小标题", "要点一", "要点二",
    "文章标题", "关键要点", "部分列表", "article", "blog post", "section", "subheading",
    "summary of the article", "essay", "post",
}
_EDGE = " \t\r\n\"'“”‘’《》「」*_#-–—•.。:：;；,，"
_LEADING_NUMBER = re.compile(r"^\s*(?:\d{1,2}|[一二三四五六七八九十]+)\s*[.)、．:：]\s+")


def clean_item(text: str) -> str:
    """A title or key point without list numbers, quotes, decoration or a trailing colon."""
    text = _LEADING_NUMBER.sub("", " ".join(str(text).split()))
    return text.strip(_EDGE)


def normalise(text: str) -> str:
    """Lower case, letters and digits only: what two items must differ in."""
    return "".join(char for char in text.lower() if char.isalnum())


def is_copy(text: str, instruction: str) -> bool:
    """Whether `text` is the instruction copied back (same words, or nearly)."""
    a, b = normalise(text), normalise(instruction)
    if not a or not b:
        return False
    return a == b or (len(b) > 20 and SequenceMatcher(None, a, b).ratio() >= COPY_RATIO)


def item_problem(text: str, instruction: str = "") -> str | None:
    """Why a planned title or key point is unusable, or None when it is fine.

    `text` is the raw item; markup and URLs are judged on it, the rest on clean_item(text).
    """
    if _MARKUP.search(text):
        return f"{text[:60]!r} holds markup"
    if _URL.search(text):
        return f"{text[:60]!r} holds a URL or file name"
    item = clean_item(text)
    if not item or not any(char.isalpha() for char in item):
        return f"{text[:60]!r} has no words"
    if len(item) > MAX_ITEM_CHARS:
        return f"{item[:60]!r}... is {len(item)} characters; the limit is {MAX_ITEM_CHARS}"
    if _DATE_ONLY.match(item):
        return f"{item!r} is a date, not a heading"
    lowered = item.lower()
    if lowered in META_ITEMS or _NUMBERED_LABEL.match(lowered):
        return f"{item!r} names a part of the outline, not its content"
    if any(char in item for char in "\ufffd\x00") or any(ord(c) < 32 for c in item):
        return f"{item!r} holds control characters"
    if instruction and is_copy(item, instruction):
        return f"{item!r} copies the instruction"
    return None


def off_topic(points: list[str], instruction: str, embedder: Any | None,
              language: str = "en", threshold: float | None = None) -> list[bool]:
    """For each key point, whether it is off the subject: its embedding's cosine with the
    instruction's is under the language's threshold (TOPIC_THRESHOLDS, or `threshold`).
    Without an embedder nothing is judged off topic."""
    if embedder is None or not points:
        return [False] * len(points)
    if threshold is None:
        threshold = TOPIC_THRESHOLDS.get(language, TOPIC_THRESHOLDS["en"])
    vectors = embedder.encode([instruction, *points])
    similarity = vectors[1:] @ vectors[0]
    return [float(value) < threshold for value in similarity]
