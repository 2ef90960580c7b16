"""The prompts of the edit operations (rewrite, expand, abbreviate, insert), English and Chinese.

Like composer/prompts.py, every wording the editor sends lives here. A paragraph operation
shows the model the article title, the outline entry of the paragraph's section, the end of
the paragraph before and the start of the paragraph after (bounded), the paragraph itself and
the person's optional instruction, and asks for the new paragraph only. Regenerating a whole
section reuses prompts.section_prompt, exactly as the composer wrote it.
"""

from __future__ import annotations

from dataclasses import dataclass

from composer.prompts import SYSTEM, Prompt
from composer.types import ChatMessage, SectionPlan
from composer.writer import previous_window

NEIGHBOUR_CHARS = 600  # how much of the paragraph before / after the model is shown
PARAGRAPH_CHARS = 6000  # the paragraph itself (longer ones are cut for the prompt only)

# Paragraph operations and how long their answer should be, relative to the paragraph.
LENGTH_FACTORS = {"rewrite": 1.0, "expand": 1.6, "abbreviate": 0.5}

_EDIT = {
    "en": (
        "You are editing the article \"{title}\".\n"
        "The paragraph is in section {number}, \"{section}\", which covers: {points}.\n"
        "{before}"
        "{after}"
        "The paragraph:\n\"{paragraph}\"\n"
        "{task}\n"
        "{instruction}"
        "Reply with the new paragraph only, as plain prose: no heading, no list, no quotes, "
        "no comments."
    ),
    "zh": (
        "你正在修改文章《{title}》。\n"
        "这段文字属于第{number}部分“{section}”，该部分的内容包括：{points}。\n"
        "{before}"
        "{after}"
        "这段文字：\n“{paragraph}”\n"
        "{task}\n"
        "{instruction}"
        "只回复新段落，写成连贯的正文：不要标题、列表、引号或说明。"
    ),
}
_BEFORE = {
    "en": "The paragraph before it ends with:\n\"...{text}\"\n",
    "zh": "前一段的结尾是：\n“……{text}”\n",
}
_AFTER = {
    "en": "The paragraph after it begins with:\n\"{text}...\"\n",
    "zh": "后一段的开头是：\n“{text}……”\n",
}
_INSTRUCTION = {
    "en": "Follow this instruction from the author: {instruction}\n",
    "zh": "请遵循作者的要求：{instruction}\n",
}
_TASKS = {
    "rewrite": {
        "en": "Rewrite this paragraph in about {words} words, keeping its meaning and the "
              "article's style.",
        "zh": "请改写这段文字，约{words}字，保留原意和文章风格。",
    },
    "expand": {
        "en": "Expand this paragraph to about {words} words: add details, examples or "
              "explanations that fit the section, without repeating it.",
        "zh": "请扩写这段文字到约{words}字：补充符合该部分的细节、例子或解释，不要重复。",
    },
    "abbreviate": {
        "en": "Shorten this paragraph to about {words} words, keeping its key points.",
        "zh": "请把这段文字缩写到约{words}字，保留要点。",
    },
    "insert_before": {
        "en": "Write a new paragraph of about {words} words to go just before this paragraph, "
              "following the paragraph before it and leading into this one.",
        "zh": "请写一段约{words}字的新段落，放在这段文字之前：承接前一段，引出这一段。",
    },
    "insert_after": {
        "en": "Write a new paragraph of about {words} words to go just after this paragraph, "
              "following on from it and leading into the paragraph after it.",
        "zh": "请写一段约{words}字的新段落，放在这段文字之后：承接这一段，引出后一段。",
    },
}
PARAGRAPH_OPS = tuple(_TASKS)
TEMPLATE = _EDIT
"""The user-message template by language (with {task} one of TASKS[op][language]), for a
tool or test double that must recognise an edit prompt by the product's own wording."""
TASKS = _TASKS


@dataclass
class ParagraphContext:
    """What a paragraph operation shows the model about where the paragraph sits."""

    title: str
    section_number: int  # 1-based, as shown
    section: SectionPlan
    paragraph: str
    before: str = ""
    after: str = ""


def _head(text: str, limit: int) -> str:
    """The first `limit` characters of `text`, cut at a word boundary when there is one."""
    text = text.strip()
    if len(text) <= limit:
        return text
    head = text[:limit]
    space = head.rfind(" ")
    return head[:space] if space > limit - 40 else head


def edit_prompt(op: str, context: ParagraphContext, words: int, instruction: str,
                language: str) -> Prompt:
    """Ask for a paragraph that replaces (rewrite, expand, abbreviate) or goes next to
    (insert_before, insert_after) `context.paragraph`, in about `words` words."""
    if op not in _TASKS:
        raise ValueError(f"unknown paragraph operation {op!r}; one of {list(_TASKS)}")
    separator = "、" if language == "zh" else ", "
    section = context.section
    before = _BEFORE[language].format(text=previous_window(context.before, NEIGHBOUR_CHARS)) \
        if context.before.strip() else ""
    after = _AFTER[language].format(text=_head(context.after, NEIGHBOUR_CHARS)) \
        if context.after.strip() else ""
    wish = _INSTRUCTION[language].format(instruction=instruction.strip()) \
        if instruction.strip() else ""
    user = _EDIT[language].format(
        title=context.title, number=context.section_number, section=section.title,
        points=separator.join(section.key_points) or section.title, before=before,
        after=after, paragraph=_head(context.paragraph, PARAGRAPH_CHARS),
        task=_TASKS[op][language].format(words=words), instruction=wish,
    )
    return Prompt([ChatMessage("system", SYSTEM[language]), ChatMessage("user", user)], "")
