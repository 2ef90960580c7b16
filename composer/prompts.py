"""Every prompt the composer sends, in English and Chinese, in one place.

Each builder returns chat messages plus, where the reference pre-fills the answer, the prefix
the model continues from. Keeping the wording here lets a reader see the whole dialogue with
the model without reading the pipeline.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from composer.types import ChatMessage, Outline, SectionPlan


@dataclass
class Prompt:
    """Chat messages plus the start of the assistant's reply the model must continue."""

    messages: list[ChatMessage]
    prefix: str = ""

    @property
    def images(self) -> tuple[str, ...]:
        """The image files the prompt shows (on its user message; () for none)."""
        return next((m.images for m in self.messages if m.role == "user"), ())


SYSTEM = {
    "en": "You are a skilled writer. You write clear, accurate, well-structured articles.",
    "zh": "你是一位优秀的作者，擅长撰写清晰、准确、结构良好的文章。",
}

_TITLE = {
    "en": "Give a short, specific title for an article that follows this instruction:\n{instruction}",
    "zh": "请为按照以下要求写成的文章拟一个简短具体的标题：\n{instruction}",
}
_TITLE_PREFIX = {"en": 'Title: "', "zh": "标题：“"}
TITLE_CLOSE = {"en": '"', "zh": "”"}

_OUTLINE = {
    "en": (
        "Write an outline for an article titled \"{title}\".\n"
        "{instruction}"
        "{material}"
        "List {sections} section headings as a numbered list. After each heading, add a colon "
        "and two key points separated by a semicolon."
    ),
    "zh": (
        "请为题为《{title}》的文章写提纲。\n"
        "{instruction}"
        "{material}"
        "用编号列表列出{sections}个部分的标题。每个标题后加冒号，再写两个要点，用分号隔开。"
    ),
}
_OUTLINE_JSON = {
    "en": (
        "Plan an article for this instruction:\n{instruction}\n"
        "{material}"
        "Give the article a specific title, and {sections} sections. Each section has a short "
        "heading that names what it covers, and {points} key points: facts or ideas about the "
        "subject. Reply in JSON."
    ),
    "zh": (
        "请为以下要求的文章做规划：\n{instruction}\n"
        "{material}"
        "给文章一个具体的标题，并分为{sections}个部分。每部分有一个简短的小标题，说明写什么，"
        "以及{points}个要点：关于主题的事实或观点。用JSON回答。"
    ),
}
_MATERIAL = {
    "en": "Reference material (use it, do not contradict it):\n{material}\n",
    "zh": "参考资料（请使用，不要与之矛盾）：\n{material}\n",
}

_SECTION = {
    "en": (
        "You are writing the article \"{title}\".\n"
        "Outline:\n{outline}\n"
        "{material}"
        "{previous}"
        "Now write section {number}, \"{section}\". Cover: {points}.\n"
        "Write about {words} words in {paragraphs} paragraph(s) of plain prose, separated by "
        "blank lines. Do not repeat the section title, do not add headings or lists."
    ),
    "zh": (
        "你正在写文章《{title}》。\n"
        "提纲：\n{outline}\n"
        "{material}"
        "{previous}"
        "现在请写第{number}部分“{section}”，内容包括：{points}。\n"
        "写约{words}字，分{paragraphs}段，段落之间空一行。不要重复部分标题，不要加小标题或列表。"
    ),
}
_PARAGRAPH = {
    "en": (
        "You are writing the article \"{title}\".\n"
        "Outline:\n{outline}\n"
        "{material}"
        "{previous}"
        "Now write paragraph {part} of {parts} of section {number}, \"{section}\". "
        "This paragraph covers: {focus}.\n"
        "Write about {words} words in 1 paragraph of plain prose about the subject itself. "
        "Do not repeat the section title or earlier sentences, do not add headings or lists."
    ),
    "zh": (
        "你正在写文章《{title}》。\n"
        "提纲：\n{outline}\n"
        "{material}"
        "{previous}"
        "现在请写第{number}部分“{section}”的第{part}段（共{parts}段），这一段写：{focus}。\n"
        "写约{words}字，分1段，只写关于主题本身的内容。不要重复部分标题或前文，不要加小标题或列表。"
    ),
}
_REPAIR = {
    "en": (
        "Article section \"{section}\", about {focus}.\n"
        "{previous}"
        "Draft paragraph:\n\"{draft}\"\n"
        "Problems: {problems}.\n"
        "Write the paragraph again in about {words} words of plain prose about {focus}: facts "
        "about the subject only, never about the article, the reader or yourself; nothing the "
        "article already says; end with a complete sentence. Reply with the new paragraph only."
    ),
    "zh": (
        "文章的部分“{section}”，内容：{focus}。\n"
        "{previous}"
        "草稿段落：\n“{draft}”\n"
        "问题：{problems}。\n"
        "请重写这一段，约{words}字，只写关于主题的事实，不要谈论文章、读者或自己，不要重复前文，"
        "以完整的句子结尾。只回复新段落。"
    ),
}
_PROBLEMS = {
    "en": {
        "clean": "it talks about the article, the reader or the writer instead of the subject",
        "no_leak": "it contains instructions, tags or markup",
        "new": "it repeats what the article already says",
        "complete": "it stops in the middle of a sentence",
        "language": "it is not written in English",
        "no_gibberish": "it contains upper-case nonsense words",
        "on_topic": "it strays from the subject",
    },
    "zh": {
        "clean": "它在谈论文章、读者或作者，而不是主题",
        "no_leak": "它含有指令、标签或标记",
        "new": "它重复了前文",
        "complete": "它在句子中间中断",
        "language": "它不是用中文写的",
        "no_gibberish": "它含有无意义的大写词",
        "on_topic": "它偏离了主题",
    },
}
_PREVIOUS = {
    "en": "The article so far ends with:\n\"...{text}\"\n",
    "zh": "文章前文的结尾是：\n“……{text}”\n",
}

_SLOTS = {
    "en": (
        "Here is an article, one paragraph per tag:\n{tagged}\n"
        "Which {count} paragraphs would benefit most from an illustrating image? "
        "Answer with their tags."
    ),
    "zh": "下面是一篇文章，每段前有标签：\n{tagged}\n哪{count}段最适合配一张插图？请用标签回答。",
}
_SLOTS_AUTO = {"en": "a few", "zh": "几"}
_SLOTS_PREFIX = {"en": "The paragraphs suitable for images are <Seg", "zh": "适合配图的段落是 <Seg"}

_CAPTION = {
    "en": (
        "Article: {title}\n"
        "Paragraph: {paragraph}\n"
        "{chosen}"
        "Describe, in one short sentence, a photo that would illustrate this paragraph: "
        "what it shows, not what the text says."
    ),
    "zh": "文章：{title}\n段落：{paragraph}\n{chosen}请用一句简短的话描述一张适合为这段配图的照片：写照片里有什么。",
}
_CHOSEN = {
    "en": "Images already placed: {captions}. Describe a different one.\n",
    "zh": "已经使用的图片：{captions}。请描述一张不同的图片。\n",
}
_CAPTION_PREFIX = {"en": 'Photo: "', "zh": "照片：“"}

_SELECT = {
    "en": (
        "Article so far:\n{context}\n"
        "Which image fits best after the last paragraph?\n{options}\n"
        "Answer with one letter."
    ),
    "zh": "前文：\n{context}\n哪张图片最适合放在最后一段之后？\n{options}\n请只回答一个字母。",
}
_SELECT_PREFIX = {"en": "The best image is", "zh": "最合适的图片是"}

TEMPLATES = {
    "title": _TITLE, "outline": _OUTLINE, "outline_json": _OUTLINE_JSON, "section": _SECTION,
    "paragraph": _PARAGRAPH, "repair": _REPAIR, "slots": _SLOTS, "caption": _CAPTION,
    "select": _SELECT,
}
"""Each prompt kind's user-message template by language, so a tool (or test double) that
must tell the prompts apart matches this wording rather than a copy of it."""


def _system(language: str) -> ChatMessage:
    return ChatMessage("system", SYSTEM[language])


def _user(text: str, images: Sequence[str]) -> ChatMessage:
    """The user turn: the text, shown after the reference images (to a writer that sees them)."""
    return ChatMessage("user", text, tuple(images))


def _material_block(material: str, language: str) -> str:
    return _MATERIAL[language].format(material=material) if material.strip() else ""


def outline_text(outline: Outline, language: str) -> str:
    """The outline as numbered lines, as shown to the model and to people."""
    separator = "；" if language == "zh" else "; "
    colon = "：" if language == "zh" else ": "
    lines = []
    for number, section in enumerate(outline.sections, start=1):
        points = separator.join(section.key_points)
        lines.append(f"{number}. {section.title}{colon + points if points else ''}")
    return "\n".join(lines)


def title_prompt(instruction: str, language: str, *, images: Sequence[str] = ()) -> Prompt:
    """Ask for a title when the instruction is longer than a title."""
    user = _TITLE[language].format(instruction=instruction)
    return Prompt([_system(language), _user(user, images)], _TITLE_PREFIX[language])


def outline_prompt(
    title: str, instruction: str, material: str, sections: int, language: str, *,
    images: Sequence[str] = (),
) -> Prompt:
    """Ask for an outline of `sections` numbered lines; the reply is pre-filled with "1."."""
    label = "要求：" if language == "zh" else "Instruction: "
    same = instruction.strip().rstrip(".。").lower() == title.strip().lower()
    user = _OUTLINE[language].format(
        title=title,
        instruction="" if same else f"{label}{instruction}\n",
        material=_material_block(material, language),
        sections=sections,
    )
    return Prompt([_system(language), _user(user, images)], "1.")


def outline_json_prompt(instruction: str, material: str, sections: int, points: int,
                        language: str, *, images: Sequence[str] = ()) -> Prompt:
    """Ask for {"title", "sections": [{"title", "key_points"}]} (decoded under a JSON schema,
    so the reply is not pre-filled)."""
    user = _OUTLINE_JSON[language].format(
        instruction=instruction.strip(), material=_material_block(material, language),
        sections=sections, points=points,
    )
    return Prompt([_system(language), _user(user, images)], "")


def section_prompt(
    outline: Outline,
    index: int,
    previous_text: str,
    material: str,
    paragraphs: int,
    language: str,
) -> Prompt:
    """Ask for one section, grounded on the whole outline and the end of what came before."""
    section: SectionPlan = outline.sections[index]
    separator = "、" if language == "zh" else ", "
    previous = _PREVIOUS[language].format(text=previous_text) if previous_text.strip() else ""
    user = _SECTION[language].format(
        title=outline.title,
        outline=outline_text(outline, language),
        material=_material_block(material, language),
        previous=previous,
        number=index + 1,
        section=section.title,
        points=separator.join(section.key_points) or section.title,
        words=section.words,
        paragraphs=paragraphs,
    )
    return Prompt([_system(language), ChatMessage("user", user)], "")


def paragraph_prompt(outline: Outline, index: int, part: int, parts: int, focus: str,
                     previous_text: str, material: str, words: int, language: str, *,
                     images: Sequence[str] = ()) -> Prompt:
    """Ask for paragraph `part` (1-based) of `parts` of section `index`, about `focus`,
    grounded on the outline and the end of what came before (VIGC: one piece at a time,
    each re-grounded on the plan)."""
    section: SectionPlan = outline.sections[index]
    previous = _PREVIOUS[language].format(text=previous_text) if previous_text.strip() else ""
    user = _PARAGRAPH[language].format(
        title=outline.title, outline=outline_text(outline, language),
        material=_material_block(material, language), previous=previous, number=index + 1,
        section=section.title, part=part, parts=parts, focus=focus, words=words,
    )
    return Prompt([_system(language), _user(user, images)], "")


def repair_prompt(draft: str, failed: list[str], focus: str, section: str, words: int,
                  language: str, previous_text: str = "", *,
                  images: Sequence[str] = ()) -> Prompt:
    """Ask for a paragraph again, naming what was wrong with the draft (the corrective step
    of generate-then-correct), after the end of the article so far."""
    problems = _PROBLEMS[language]
    separator = "；" if language == "zh" else "; "
    named = separator.join(problems[name] for name in failed if name in problems)
    previous = _PREVIOUS[language].format(text=previous_text) if previous_text.strip() else ""
    user = _REPAIR[language].format(section=section, focus=focus or section, draft=draft[:1500],
                                    problems=named or problems["clean"], words=words,
                                    previous=previous)
    return Prompt([_system(language), _user(user, images)], "")


def slots_prompt(paragraphs: list[str], count: int | None, language: str, *,
                 images: Sequence[str] = ()) -> Prompt:
    """Ask which paragraphs benefit from an image; paragraphs are tagged <Seg0>, <Seg1>, ..."""
    tagged = "\n".join(f"<Seg{number}> {text}" for number, text in enumerate(paragraphs))
    wanted = str(count) if count is not None else _SLOTS_AUTO[language]
    user = _SLOTS[language].format(tagged=tagged, count=wanted)
    return Prompt([_system(language), _user(user, images)], _SLOTS_PREFIX[language])


def caption_prompt(title: str, paragraph: str, chosen: list[str], language: str, *,
                   images: Sequence[str] = ()) -> Prompt:
    """Ask for a one-sentence description of a photo for `paragraph` of the article `title`.

    The reference shows the whole article up to the slot; a small model stays on topic far
    better when shown the title and the one paragraph the image goes with.
    """
    chosen_text = _CHOSEN[language].format(captions="; ".join(chosen)) if chosen else ""
    user = _CAPTION[language].format(title=title, paragraph=paragraph, chosen=chosen_text)
    return Prompt([_system(language), _user(user, images)], _CAPTION_PREFIX[language])


def select_prompt(context: str, options: list[str], language: str, *,
                  images: Sequence[str] = ()) -> Prompt:
    """Ask the model to choose among candidate images A-D, described by their captions."""
    lines = "\n".join(f"{chr(ord('A') + i)}. {caption}" for i, caption in enumerate(options))
    user = _SELECT[language].format(context=context, options=lines)
    return Prompt([_system(language), _user(user, images)], _SELECT_PREFIX[language])


CAPTION_CLOSE = {"en": '"', "zh": "”"}
