"""Instruction -> title and Outline: sections with key points and word budgets (plan, then write).

The model proposes section titles and key points; the word budgets are computed here so that
they always sum to the requested length, whatever the model wrote.
"""

from __future__ import annotations

import re
import threading

from composer import prompts
from composer.generation import collect
from composer.types import ComposeRequest, GenerationConfig, Outline, SectionPlan
from models.lm import LanguageModel

WORDS_PER_SECTION = 200
MAX_SECTIONS = 12
MAX_TITLE_CHARS = 120
MAX_SECTION_TITLE_CHARS = 80

_FALLBACK_TITLES = {
    "en": ["Introduction", "Background", "Key ideas", "How it works", "Examples", "Challenges",
           "Impact", "Practical advice", "Looking ahead", "Open questions", "Lessons", "Conclusion"],
    "zh": ["引言", "背景", "核心概念", "工作原理", "实例", "挑战", "影响", "实用建议", "展望",
           "开放问题", "经验", "结语"],
}
_LINE = re.compile(r"^\s*(?:\d{1,2}|[一二三四五六七八九十]+)\s*[.)、．:：]\s*(.+?)\s*$")
_TITLE_SPLIT = re.compile(r"\s*(?::|：|\s[-–—]\s)\s*")
_POINT_SPLIT = re.compile(r"\s*[;；]\s*")
_BULLET = re.compile(r"^\s*[-•*]\s+(.+?)\s*$")
# The format example in the outline prompt, which small models sometimes copy.
_TEMPLATE_TITLES = {"section title", "部分标题", "title"}
_TEMPLATE_POINTS = {"first key point", "second key point", "要点一", "要点二"}
_DECORATION = re.compile(r"[*_#`\"“”《》]+")


def section_count(target_words: int) -> int:
    """How many sections an article of this length gets (one per ~200 words, 1..12)."""
    return max(1, min(MAX_SECTIONS, round(target_words / WORDS_PER_SECTION)))


def distribute_words(total: int, count: int) -> list[int]:
    """Split `total` words over `count` sections; first and last get a bit less; sums exactly."""
    if count <= 0:
        return []
    weights = [1.0] * count
    if count >= 4:
        weights[0] = weights[-1] = 0.7
    scale = total / sum(weights)
    raw = [weight * scale for weight in weights]
    budgets = [int(value) for value in raw]
    remainders = sorted(range(count), key=lambda i: raw[i] - budgets[i], reverse=True)
    for i in remainders[: total - sum(budgets)]:
        budgets[i] += 1
    return budgets


def title_from_instruction(instruction: str) -> str | None:
    """The instruction itself when it reads as a title (one short line), else None."""
    text = instruction.strip()
    if "\n" in text or len(text) > MAX_TITLE_CHARS:
        return None
    return text.rstrip(".。")


def parse_outline(text: str, language: str) -> list[SectionPlan]:
    """Numbered lines "N. Title: point; point" -> sections (titles deduplicated, no budgets).

    Bullet lines ("- point") under a numbered line become its key points, as small models
    often write them that way.
    """
    sections: list[SectionPlan] = []
    seen: set[str] = set()
    for line in text.splitlines():
        bullet = _BULLET.match(line)
        if bullet and sections:
            sections[-1].key_points = _points([*sections[-1].key_points, bullet.group(1)])
            continue
        match = _LINE.match(line)
        if not match:
            continue
        body = _DECORATION.sub("", match.group(1)).strip()
        parts = _TITLE_SPLIT.split(body, maxsplit=1)
        title = _shorten(parts[0].strip(" .。"), MAX_SECTION_TITLE_CHARS)
        if not title or title.lower() in seen or title.lower() in _TEMPLATE_TITLES:
            continue
        seen.add(title.lower())
        points = _POINT_SPLIT.split(parts[1]) if len(parts) > 1 else []
        sections.append(SectionPlan(title=title, key_points=_points(points)))
    return sections


def _points(points: list[str]) -> list[str]:
    """Clean key points: trimmed, no template text, at most 5 of at most 25 words each."""
    cleaned = [" ".join(p.strip(" .。-•*").split()[:25]) for p in points]
    return [p for p in cleaned if p and p.lower() not in _TEMPLATE_POINTS][:5]


def complete_sections(parsed: list[SectionPlan], count: int, language: str) -> list[SectionPlan]:
    """Exactly `count` sections: the parsed ones first, then generic titles not yet used."""
    sections = parsed[:count]
    used = {section.title.lower() for section in sections}
    spares = [t for t in _FALLBACK_TITLES[language] if t.lower() not in used]
    while len(sections) < count:
        # Keep "Conclusion" for the end when we are filling a short outline.
        title = spares.pop(-1) if len(sections) == count - 1 and count > 1 else spares.pop(0)
        sections.append(SectionPlan(title=title, key_points=[]))
    return sections


class Planner:
    """Writes the title and the outline for a request with the language model."""

    def __init__(self, lm: LanguageModel):
        self.lm = lm

    def title(self, request: ComposeRequest, config: GenerationConfig,
              cancel: threading.Event | None = None) -> str:
        """The article title: the instruction if it is one, else one the model proposes."""
        direct = title_from_instruction(request.instruction)
        if direct:
            return direct
        prompt = prompts.title_prompt(request.instruction, request.language)
        close = prompts.TITLE_CLOSE[request.language]
        reply = collect(self.lm, prompt, config.replace(max_new_tokens=32, stop=(close, "\n")), cancel)
        title = _shorten(_DECORATION.sub("", reply).strip(), MAX_TITLE_CHARS)
        return title or _shorten(request.instruction.strip().splitlines()[0], MAX_TITLE_CHARS)

    def outline(self, request: ComposeRequest, title: str, config: GenerationConfig,
                cancel: threading.Event | None = None) -> Outline:
        """An outline with section_count(target) sections whose budgets sum to the target."""
        count = section_count(request.target_words)
        prompt = prompts.outline_prompt(
            title, request.instruction, request.material, count, request.language
        )
        budget = config.replace(max_new_tokens=min(40 * count + 40, config.max_new_tokens * 2))
        reply = collect(self.lm, prompt, budget, cancel)
        parsed = parse_outline(prompt.prefix + reply, request.language)
        sections = complete_sections(parsed, count, request.language)
        for section, words in zip(sections, distribute_words(request.target_words, count)):
            section.words = words
        return Outline(title=title, sections=sections)


def _shorten(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0]
    return cut or text[:limit]
