"""Instruction -> title and Outline: sections with key points and word budgets (plan, then write).

The model proposes the title, section titles and key points, under a JSON schema when its
backend enforces one at decode time (models/constrained.py), else as numbered lines. Every
item is checked (composer/outline_check.py): invalid ones are resampled, and after
RESAMPLE_TRIES tries a genre template (composer/genres.py) fills what is still missing. The
word budgets are computed here so that they always sum to the requested length.
"""

from __future__ import annotations

import re
import threading
from typing import Any, Iterator

from composer import prompts
from composer.genres import headline, reads_as_instruction, template_sections
from composer.generation import collect, stream
from composer.outline_check import clean_item, item_problem, normalise, off_topic
from composer.outline_json import outline_schema, partial_outline, pending_section_title
from composer.types import ComposeRequest, GenerationConfig, Outline, SectionPlan
from models.lm import LanguageModel

WORDS_PER_SECTION = 200
MAX_SECTIONS = 12
MAX_TITLE_CHARS = 120
MAX_SECTION_TITLE_CHARS = 80
MAX_POINT_CHARS = 100
KEY_POINTS = 2
# Longest title, heading and key point the schema lets the model decode: a small model fills
# whatever room it has, and each character is time.
SCHEMA_CHARS = (80, 60, 80)
RESAMPLE_TRIES = 3  # model outlines tried (the first as configured, then sampled)


class PlannedHeading(SectionPlan):
    """The heading of a section whose key points are still being planned: the last section of
    an outline `Planner.stream` yields while the model writes it (not yet checked; the next
    outline yielded replaces it). Never part of a finished outline."""


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
    if "\n" in text or len(text) > MAX_TITLE_CHARS or reads_as_instruction(text):
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


_STRUCTURE_POINTS = {normalise(word) for word in (
    "Introduction", "Conclusion", "Overview", "Background", "Summary", "Body", "Main body",
    "Description", "Details", "Examples", "引言", "结语", "结论", "概述", "背景", "总结", "正文")}


class Planner:
    """Writes the title and the outline for a request with the language model.

    `embedder` (models/embed.py), when given, judges whether key points are on the subject;
    `tries` is how many model outlines are read before a genre template fills the rest.
    """

    def __init__(self, lm: LanguageModel, embedder: Any | None = None,
                 tries: int = RESAMPLE_TRIES):
        self.lm = lm
        self.embedder = embedder
        self.tries = tries

    def title(self, request: ComposeRequest, config: GenerationConfig,
              cancel: threading.Event | None = None) -> str:
        """The article title: the instruction if it reads as one, else a checked model title,
        else a headline made from the instruction's subject."""
        direct = title_from_instruction(request.instruction)
        if direct:
            return direct
        prompt = prompts.title_prompt(request.instruction, request.language,
                                      images=request.reference_images)
        close = prompts.TITLE_CLOSE[request.language]
        reply = collect(self.lm, prompt, config.replace(max_new_tokens=32, stop=(close, "\n"),
                                                        json_schema=None), cancel)
        return self._checked_title(reply, request)

    def outline(self, request: ComposeRequest, title: str | None, config: GenerationConfig,
                cancel: threading.Event | None = None) -> Outline:
        """An outline with section_count(target) sections whose budgets sum to the target;
        `title` None lets the planner choose the article's title."""
        outline = Outline(title=title or "")
        for outline in self.stream(request, config, cancel, title=title):
            pass
        return outline

    def stream(self, request: ComposeRequest, config: GenerationConfig,
               cancel: threading.Event | None = None, title: str | None = None
               ) -> Iterator[Outline]:
        """Plan, yielding the outline as it grows: each yield holds the checked sections so
        far (no budgets yet); the last one is complete, with budgets that sum to the target.

        `title` fixes the article title; None lets the planner choose one.
        """
        count = section_count(request.target_words)
        accepted: list[SectionPlan] = []
        titles: list[str] = []
        direct = title or title_from_instruction(request.instruction)
        for attempt in range(self.tries):
            if len(accepted) >= count or (cancel is not None and cancel.is_set()):
                break
            tried, done = self._try_config(config, attempt), 0
            for model_title, raw, pending in self._attempt(request, count, tried, cancel):
                if model_title is not None and model_title not in titles:
                    titles.append(model_title)
                before = len(accepted)
                for item in raw[done:]:
                    section = self._checked_section(item, accepted, request,
                                                    [direct or "", *titles])
                    if section is not None and len(accepted) < count:
                        accepted.append(section)
                done = max(done, len(raw))
                heading = _section_title(pending, accepted, request, [direct or "", *titles])
                if len(accepted) > before or heading is not None:
                    copies = [SectionPlan(s.title, list(s.key_points)) for s in accepted]
                    if heading is not None and len(accepted) < count:
                        copies.append(PlannedHeading(heading, []))
                    shown = direct or (self._checked_title(titles[0], request) if titles else "")
                    yield Outline(title=shown, sections=copies)
        if direct is None:
            direct = self._choose_title(titles, request, config, cancel)
        sections = self._fill(accepted, request, count)
        for section, words in zip(sections, distribute_words(request.target_words, count)):
            section.words = words
        yield Outline(title=direct, sections=sections)

    # -- one model outline ---------------------------------------------------------------------

    def _attempt(self, request: ComposeRequest, count: int, config: GenerationConfig,
                 cancel: threading.Event | None
                 ) -> Iterator[tuple[str | None, list[Any], str | None]]:
        """(model title, raw sections so far, heading of the section being written) as the
        reply streams in; raw sections are dicts (JSON) or SectionPlans (numbered lines)."""
        budget = min(60 * count + 40, 4 * config.max_new_tokens)
        if getattr(self.lm, "supports_json_schema", False):
            prompt = prompts.outline_json_prompt(request.instruction, request.material, count,
                                                 KEY_POINTS, request.language,
                                                 images=request.reference_images)
            schema = outline_schema(count, KEY_POINTS, *SCHEMA_CHARS)
            # Beams are not combined with a schema; n-gram bans could forbid every allowed token.
            tried = config.replace(max_new_tokens=budget, json_schema=schema, num_beams=1,
                                   no_repeat_ngram_size=0, stop=())
            text, shown, heading = "", -1, None
            for piece in stream(self.lm, prompt, tried, cancel):
                text += piece
                if "}" in piece or '"' in piece:
                    model_title, raw = partial_outline(text)
                    pending = pending_section_title(text)
                    if len(raw) > shown or pending != heading:
                        shown, heading = len(raw), pending
                        yield model_title, raw, pending
            yield *partial_outline(text), None
            return
        prompt = prompts.outline_prompt(request.instruction.strip()[:MAX_TITLE_CHARS],
                                        request.instruction, request.material, count,
                                        request.language, images=request.reference_images)
        reply = collect(self.lm, prompt, config.replace(max_new_tokens=budget), cancel)
        yield None, parse_outline(prompt.prefix + reply, request.language), None

    @staticmethod
    def _try_config(config: GenerationConfig, attempt: int) -> GenerationConfig:
        """The first try as configured; later ones sampled, each with its own seed."""
        if attempt == 0:
            return config
        seed = (config.seed or 0) + attempt
        return config.replace(do_sample=True, seed=seed, temperature=max(config.temperature, 0.8),
                              top_p=max(config.top_p, 0.9))

    # -- checks --------------------------------------------------------------------------------

    def _checked_section(self, item: Any, accepted: list[SectionPlan],
                         request: ComposeRequest, article_titles: list[str]
                         ) -> SectionPlan | None:
        """A clean SectionPlan from a raw section, or None when its title is unusable, a
        duplicate or the article's title. Key points that fail a check, repeat or stray off
        the subject are dropped."""
        if isinstance(item, SectionPlan):
            raw_title, raw_points = item.title, item.key_points
        elif isinstance(item, dict):
            raw_title = item.get("title", "")
            points = item.get("key_points", [])
            raw_points = [p for p in points if isinstance(p, str)] if isinstance(points, list) \
                else []
        else:
            return None
        title = _section_title(raw_title, accepted, request, article_titles)
        if title is None:
            return None
        seen = {normalise(section.title) for section in accepted}
        # a point repeating a title, or naming a part of an article, says nothing
        used = {normalise(p) for section in accepted for p in section.key_points} | seen | {
            normalise(title)} | _STRUCTURE_POINTS
        points: list[str] = []
        for raw in raw_points[:5]:
            point = _shorten(clean_item(raw), MAX_POINT_CHARS)
            if item_problem(raw, request.instruction) or normalise(point) in used:
                continue
            used.add(normalise(point))
            points.append(point)
        away = off_topic(points, request.instruction, self.embedder, request.language)
        return SectionPlan(title=title, key_points=[p for p, off in zip(points, away) if not off])

    def _checked_title(self, candidate: str, request: ComposeRequest) -> str:
        """`candidate` cleaned when it is a usable title, else the instruction's headline."""
        title = _shorten(clean_item(_DECORATION.sub("", candidate or "")), MAX_TITLE_CHARS)
        if title and not item_problem(candidate, request.instruction) and \
                not reads_as_instruction(title):
            return title
        return _shorten(headline(request.instruction, request.language), MAX_TITLE_CHARS)

    def _choose_title(self, titles: list[str], request: ComposeRequest,
                      config: GenerationConfig, cancel: threading.Event | None) -> str:
        """The first usable model title of the outline replies; else one asked for alone."""
        for candidate in titles:
            title = self._checked_title(candidate, request)
            if normalise(title) == normalise(candidate):
                return title
        return self.title(request, config, cancel)

    @staticmethod
    def _fill(accepted: list[SectionPlan], request: ComposeRequest,
              count: int) -> list[SectionPlan]:
        """`count` sections: the checked ones in order, then template sections not yet
        used, then generic ones (complete_sections)."""
        sections = list(accepted[:count])
        seen = {normalise(section.title) for section in sections}
        for spare in template_sections(request.instruction, request.language, MAX_SECTIONS):
            if len(sections) >= count:
                break
            if normalise(spare.title) not in seen:
                seen.add(normalise(spare.title))
                sections.append(spare)
        return complete_sections(sections, count, request.language)


def _section_title(raw: Any, accepted: list[SectionPlan], request: ComposeRequest,
                   article_titles: list[str]) -> str | None:
    """A model's section heading, cleaned; None when it is unusable, repeats an accepted
    section or is the article's title."""
    if not isinstance(raw, str) or not raw or item_problem(raw, request.instruction):
        return None
    title = _shorten(clean_item(raw), MAX_SECTION_TITLE_CHARS)
    if title.isupper() and len(title) > 3:  # "BEST BOOKS IN TOWN" -> "Best Books In Town"
        title = title.title()
    taken = {normalise(section.title) for section in accepted}
    if not title or normalise(title) in taken | {normalise(t) for t in article_titles}:
        return None
    return title


def _shorten(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0]
    return cut or text[:limit]
