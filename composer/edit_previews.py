"""Model operations on a written article, previewed: plan the prompt, stream the checked text.

`paragraph_plan` / `regenerate_plan` turn a request into a Plan (prompt, budget, what the
new text is checked against); `stream_plan` streams it as EditPreviews, the last of which
carries the Proposal that accepting would apply (composer/edit_paragraphs.py). Nothing here
writes to storage.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Iterator

from composer import edit_prompts, prompts
from composer.checked import CheckContext, WriteStep, describe
from composer.config import PROMPT_MATERIAL_CHARS
from composer.edit_checks import (
    find_block,
    generation_config,
    section_blocks,
    section_insert_position,
    text_block,
)
from composer.edit_prompts import LENGTH_FACTORS, PARAGRAPH_OPS, ParagraphContext
from composer.edit_replies import reply_paragraphs
from composer.pairs_capture import section_outline
from composer.sections import SectionWriter
from composer.types import (
    Document,
    GenerationConfig,
    InputError,
    SectionPlan,
    TextBlock,
    count_words,
)
from composer.writer import paragraphs_for, previous_window, token_budget

MIN_WORDS = {"rewrite": 10, "expand": 30, "abbreviate": 8, "insert": 30}
PREVIEW_OPS = PARAGRAPH_OPS + ("regenerate",)
REPLACING_OPS = ("rewrite", "expand", "abbreviate")  # ops that replace the paragraph


@dataclass


class Proposal:
    """What accepting a preview would apply.

    `base_version`: the document version the preview was made from (accept refuses another);
    `block_id`: the paragraph operated on (the anchor of an insert; the first paragraph of the
    section for regenerate, None if it has none); `section`: its outline section; `paragraphs`:
    the model's text split into paragraphs (a rewrite may come back as several); `rejected`:
    the text it would replace (the section's text for regenerate, "" for an insert);
    `prompt`: the chat messages sent ([{"role", "content"}]); `cancelled`: the person stopped
    the model, `paragraphs` hold what was streamed until then.
    """

    doc_id: str
    op: str
    base_version: int
    block_id: int | None
    section: int
    paragraphs: list[str]
    rejected: str = ""
    prompt: list[dict[str, str]] = field(default_factory=list)
    text: str = ""
    cancelled: bool = False
    instruction: str = ""
    # Per paragraph: the checks it passed (composer/checked.py KeptParagraphs.summary).
    checks: list[dict[str, Any] | None] = field(default_factory=list)

    @property
    def proposed_text(self) -> str:
        """The proposed paragraphs as one text, blank-line separated (what a preview shows)."""
        return "\n\n".join(self.paragraphs)


@dataclass


class EditPreview:
    """The model's text streamed so far for an operation on `block_id` (or `section`).

    `delta` is the newly streamed piece; `fraction` an estimate of the share written (0..1).
    The last preview has done=True and carries the `proposal` to accept.
    """

    op: str
    block_id: int | None
    text: str
    done: bool = False
    fraction: float = 0.0
    delta: str = ""
    section: int | None = None
    proposal: Proposal | None = None
    cancelled: bool = False
    note: str = ""  # what the checks decided (a draft failed, a rewrite was kept, ...)


@dataclass


class Plan:
    """A model operation ready to stream: its prompt, budget and what it is about."""

    doc: Document
    op: str
    block_id: int | None
    section: int
    prompt: prompts.Prompt
    config: GenerationConfig
    words: int
    rejected: str
    section_title: str
    instruction: str = ""
    # What kept text is checked against: the article without the text being replaced
    # (before / after it), and what it should be about.
    before: str = ""
    after: str = ""
    focus: str = ""
    material: str = ""


def paragraph_plan(doc: Document, op: str, block_id: int | None, instruction: str) -> Plan:
    """The plan of a paragraph operation (rewrite, expand, abbreviate, insert_before / _after)
    on the paragraph `block_id`: its prompt, length and what kept text is checked against."""
    _, block = text_block(doc, block_id)
    outline = section_outline(doc)
    index = min(max(block.section, 0), len(outline.sections) - 1)
    texts = doc.text_blocks
    number = next(n for n, other in enumerate(texts) if other.id == block.id)
    context = ParagraphContext(
        title=doc.title, section_number=index + 1, section=outline.sections[index],
        paragraph=block.text, before=texts[number - 1].text if number > 0 else "",
        after=texts[number + 1].text if number + 1 < len(texts) else "")
    words = op_words(op, block.text, outline.sections[index])
    prompt = edit_prompts.edit_prompt(op, context, words, instruction, doc.language)
    config = generation_config(doc)
    budget = config.replace(max_new_tokens=token_budget(words, doc.language,
                                                        config.max_new_tokens))
    rejected = block.text if op in REPLACING_OPS else ""
    others = [other.text for other in texts if other.id != block.id or op not in
              REPLACING_OPS]
    plan_section = outline.sections[index]
    focus = "; ".join(plan_section.key_points) or plan_section.title
    return Plan(doc, op, block.id, block.section, prompt, budget, words, rejected,
                plan_section.title, instruction, before="\n\n".join(others),
                focus=f"{plan_section.title}: {focus}")


def op_words(op: str, paragraph: str, section: SectionPlan) -> int:
    """The length asked for: ~1x (rewrite), ~1.6x (expand), ~0.5x (abbreviate) the
    paragraph; an inserted paragraph as long as one of its section's paragraphs."""
    if op in LENGTH_FACTORS:
        words = round(count_words(paragraph) * LENGTH_FACTORS[op])
        return max(MIN_WORDS[op], words)
    per_paragraph = section.words // paragraphs_for(section.words) if section.words else 0
    return max(MIN_WORDS["insert"], per_paragraph or count_words(paragraph))


def regenerate_plan(doc: Document, section: int | None, block_id: int | None,
                    instruction: str) -> Plan:
    """The plan of writing a section again (`section`, or the one `block_id` is in), with
    the composer's section prompt; `instruction` joins the reference material."""
    if section is None:
        if block_id is None:
            raise InputError("regenerate needs a section index or a block_id in it")
        section = find_block(doc, block_id)[1].section
    outline = section_outline(doc)
    if not 0 <= section < len(outline.sections):
        raise InputError(f"section {section} is outside 0..{len(outline.sections) - 1}: "
                         "pick a section of the outline")
    plan_section = outline.sections[section]
    start = section_insert_position(doc, section)
    before = "\n\n".join(b.text for b in doc.blocks[:start] if isinstance(b, TextBlock))
    material = str(doc.options.get("material", "") or "")[:PROMPT_MATERIAL_CHARS]
    if instruction.strip():
        label = "作者的要求：" if doc.language == "zh" else "Author's instruction: "
        material = (material + "\n" if material else "") + label + instruction.strip()
    prompt = prompts.section_prompt(outline, section, previous_window(before), material,
                                    paragraphs_for(plan_section.words, doc.language),
                                    doc.language)
    config = generation_config(doc)
    budget = config.replace(max_new_tokens=token_budget(
        plan_section.words, doc.language, config.max_new_tokens))
    old = [b for b in section_blocks(doc, section) if isinstance(b, TextBlock)]
    after = "\n\n".join(b.text for b in doc.blocks[start:]
                         if isinstance(b, TextBlock) and b.section != section)
    return Plan(doc, "regenerate", old[0].id if old else None, section, prompt, budget,
                plan_section.words, "\n\n".join(b.text for b in old), plan_section.title,
                instruction, before=before, after=after, material=material)


def stream_plan(sections: SectionWriter, plan: Plan, cancel: threading.Event | None
                ) -> Iterator[EditPreview]:
    """Stream the plan's text as previews (kept paragraphs, then the draft being
    written); the last one carries the Proposal with the checked paragraphs."""
    kept: list[str] = []
    checks: list[dict[str, Any] | None] = []
    draft = ""
    for step in _steps(sections, plan, cancel):
        if step.restart:
            draft = ""
        draft += step.delta
        if step.kept is not None:
            draft = ""
            kept += step.kept.paragraphs
            checks += [step.kept.summary()] * len(step.kept.paragraphs)
        text = "\n\n".join(kept + ([draft] if draft else []))
        yield EditPreview(plan.op, plan.block_id, text, fraction=min(
            0.99, count_words(text) / (plan.words or 1)), delta=step.delta,
            section=plan.section, note=step.note or (
                describe(step.kept) if step.kept is not None else ""))
    cancelled = cancel is not None and cancel.is_set()
    text = "\n\n".join(kept)
    proposal = Proposal(plan.doc.id, plan.op, plan.doc.version, plan.block_id, plan.section,
                        kept, plan.rejected, prompt_messages(plan.prompt), text, cancelled,
                        plan.instruction, checks)
    yield EditPreview(plan.op, plan.block_id, text, done=True, fraction=1.0,
                      section=plan.section, proposal=proposal, cancelled=cancelled)


def _steps(sections: SectionWriter, plan: Plan, cancel: threading.Event | None
           ) -> Iterator[WriteStep]:
    """The writer's steps for a plan: a section written paragraph by paragraph, or one
    paragraph operation, each through the checks (composer/checked.py)."""
    doc = plan.doc
    if plan.op == "regenerate":
        steps = sections.write_section(
            section_outline(doc), plan.section, plan.before, plan.material, doc.language,
            plan.config, doc.instruction, cancel, after=plan.after)
        yield from (step for _, step in steps)
        return
    context = CheckContext(plan.before, doc.language, doc.instruction, plan.focus,
                           plan.section_title, words=plan.words, split=reply_paragraphs)
    yield from sections.checked.write(plan.prompt, plan.config, context, cancel)


def prompt_messages(prompt: prompts.Prompt) -> list[dict[str, str]]:
    """A prompt's messages as plain dicts (what a Proposal and a preference pair keep)."""
    return [{"role": message.role, "content": message.content} for message in prompt.messages]

