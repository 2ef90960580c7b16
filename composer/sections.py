"""Section -> checked paragraphs: the one section writer that composing, writing a section
of an outline and regenerating a section all use.

A section is written paragraph by paragraph (VIGC: each piece re-grounded on the plan and
on the text kept so far); each paragraph covers one of the section's key points in turn and
goes through CheckedWriter (composer/checked.py): k drafts, checked, the best kept.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any, Iterator

from composer import prompts
from composer.checked import CheckContext, CheckedWriter, WriteStep
from composer.config import PROMPT_MATERIAL_CHARS
from composer.types import GenerationConfig, Outline, SectionPlan, count_words
from composer.writer import paragraphs_for, previous_window, token_budget

MIN_PARAGRAPH_WORDS = 20


def paragraph_focus(section: SectionPlan, part: int, parts: int) -> str:
    """What paragraph `part` (0-based) of `parts` covers: the section's key points in turn,
    all of them when there are more paragraphs than points (or none: the section title)."""
    points = [point for point in section.key_points if point.strip()]
    if not points:
        return section.title
    if parts <= len(points):
        share = [points[i] for i in range(len(points)) if i * parts // len(points) == part]
        return "; ".join(share) or points[min(part, len(points) - 1)]
    return points[part] if part < len(points) else "; ".join(points)


def join_text(*parts: str) -> str:
    return "\n\n".join(part for part in parts if part.strip())


class SectionWriter:
    """Writes one section of an outline as checked paragraphs (see module doc)."""

    def __init__(self, lm: Any, embedder: Any | None = None) -> None:
        self.checked = CheckedWriter(lm, embedder)

    def write_section(self, outline: Outline, index: int, before: str, material: str,
                      language: str, config: GenerationConfig, instruction: str = "",
                      cancel: threading.Event | None = None, after: str = "",
                      images: Sequence[str] = (), done: Sequence[str] = (),
                      ) -> Iterator[tuple[int, WriteStep]]:
        """Yield (paragraph number, step) while section `index` is written: pieces of the
        lead draft, then each kept paragraph (a step with `kept`). `before` is the article
        up to the section (the prompt shows its end); `after` the text that follows it,
        which kept paragraphs must not repeat either. `images`: the reference images the
        prompts show (composer/prompts.py). `done`: paragraphs of this section already saved
        (a resumed job): writing goes on after them, within what is left of the budget."""
        section = outline.sections[index]
        parts = paragraphs_for(section.words, language)
        per_part = max(MIN_PARAGRAPH_WORDS, round(section.words / parts))
        written = join_text(*done)
        for part in range(len(done), parts):
            # The section's budget holds: a paragraph gets what is left of it (LongWriter's
            # length control), and none when less than half a paragraph is left.
            left = section.words - count_words(written)
            if part and left < per_part / 2:
                return
            words = max(MIN_PARAGRAPH_WORDS, min(per_part, left))
            budget = config.replace(max_new_tokens=token_budget(words, language,
                                                                config.max_new_tokens))
            focus = paragraph_focus(section, part, parts)
            so_far = join_text(before, written)
            prompt = prompts.paragraph_prompt(outline, index, part + 1, parts, focus,
                                              previous_window(so_far),
                                              material[:PROMPT_MATERIAL_CHARS], words, language,
                                              images=images)
            context = CheckContext(join_text(so_far, after), language, instruction,
                                   f"{section.title}: {focus}" if focus != section.title
                                   else focus, section.title, words=words)
            for step in self.checked.write(prompt, budget, context, cancel):
                yield part, step
                if step.kept is not None:
                    written = join_text(written, *step.kept.paragraphs)
            if cancel is not None and cancel.is_set():
                return
