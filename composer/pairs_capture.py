"""Preference pairs from edits: the model's paragraph (rejected) and what the person kept (chosen).

HA-DPO (REFERENCE.md section 5) trains on style-consistent pairs for the same input; in an
authoring app they come for free whenever a person rewrites or replaces a paragraph the model
wrote. The prompt stored with a pair is the one that would have asked for the paragraph: the
composer's section prompt for its section, after the text before it, asking for one paragraph
of the rejected paragraph's length. Trivial edits (typos, punctuation, a word or two) say
nothing about a preference and are skipped.
"""

from __future__ import annotations

import difflib
import re
from typing import Any

from composer import prompts
from composer.config import PROMPT_MATERIAL_CHARS
from composer.loop import paragraph_kind  # the loop's rule, so reports and pairs agree
from composer.types import (
    MODEL_TEXT_ORIGINS,
    Document,
    Outline,
    PreferencePair,
    SectionPlan,
    TextBlock,
    count_words,
)
from composer.writer import previous_window

TRIVIAL_SIMILARITY = 0.9  # word-level similarity at or above which a small edit is trivial
TRIVIAL_WORDS = 3  # ... provided at most this many words were changed

_PUNCTUATION = re.compile(r"[^\w\s]", re.UNICODE)


def _tokens(text: str) -> list[str]:
    """Words of English-like text, single characters of CJK text (as count_words counts)."""
    spaced = "".join(f" {char} " if "\u4e00" <= char <= "\u9fff" else char for char in text)
    return _PUNCTUATION.sub(" ", spaced.lower()).split()


def changed_words(old: str, new: str) -> int:
    """How many words differ between two texts (per diff block, the longer side counts)."""
    matcher = difflib.SequenceMatcher(a=_tokens(old), b=_tokens(new), autojunk=False)
    return sum(max(i2 - i1, j2 - j1) for tag, i1, i2, j1, j2 in matcher.get_opcodes()
               if tag != "equal")


def is_trivial(old: str, new: str) -> bool:
    """Whether an edit is too small to be a preference, so no pair is stored.

    Trivial: the texts are equal ignoring case, punctuation and whitespace; or the word-level
    similarity (difflib ratio over words, CJK characters counted as words) is at least
    TRIVIAL_SIMILARITY (0.9) AND at most TRIVIAL_WORDS (3) words changed. So fixing a typo or
    two in a long paragraph is trivial, while changing 3 of 10 words is not.
    """
    old_tokens, new_tokens = _tokens(old), _tokens(new)
    if old_tokens == new_tokens:
        return True
    ratio = difflib.SequenceMatcher(a=old_tokens, b=new_tokens, autojunk=False).ratio()
    return ratio >= TRIVIAL_SIMILARITY and changed_words(old, new) <= TRIVIAL_WORDS


def section_outline(doc: Document) -> Outline:
    """The document's outline, or a one-section stand-in (the title) when it has none."""
    if doc.outline is not None and doc.outline.sections:
        return doc.outline
    return Outline(doc.title, [SectionPlan(doc.title, [], max(20, doc.word_count))])


def text_before(doc: Document, block_id: int | None) -> str:
    """The article's text (paragraphs only) before the block `block_id`, blank-line joined."""
    parts = []
    for block in doc.blocks:
        if block.id == block_id:
            break
        if isinstance(block, TextBlock):
            parts.append(block.text)
    return "\n\n".join(parts)


def prompt_context(doc: Document, block: TextBlock) -> list[dict[str, str]]:
    """The chat messages that would have asked for this paragraph, as {"role", "content"}.

    The composer's paragraph prompt (prompts.paragraph_prompt) for the paragraph's place in
    its section, with the end of the text before it, the document's reference material, and
    a budget of the paragraph's own length, so that the stored answer fits the question.
    """
    from composer.sections import paragraph_focus

    outline = section_outline(doc)
    index = min(max(block.section, 0), len(outline.sections) - 1)
    words = max(20, round(count_words(block.text) / 10) * 10)
    siblings = [b.id for b in doc.text_blocks if min(max(b.section, 0),
                                                     len(outline.sections) - 1) == index]
    part = siblings.index(block.id) if block.id in siblings else 0
    parts = max(len(siblings), part + 1)
    focus = paragraph_focus(outline.sections[index], part, parts)
    material = str(doc.options.get("material", "") or "")[:PROMPT_MATERIAL_CHARS]
    prompt = prompts.paragraph_prompt(outline, index, part + 1, parts, focus,
                                      previous_window(text_before(doc, block.id)), material,
                                      words, doc.language)
    return [{"role": message.role, "content": message.content} for message in prompt.messages]


def wants_pair(old_text: str, old_origin: str, final_text: str) -> bool:
    """Whether replacing `old_text` (written by `old_origin`) with `final_text` is a pair:
    the old text was the model's and the change is not trivial."""
    return (old_origin in MODEL_TEXT_ORIGINS and bool(old_text.strip())
            and bool(final_text.strip()) and not is_trivial(old_text, final_text))


def make_pair(doc: Document, block: TextBlock, final_text: str, op: str,
              owner: str | None) -> PreferencePair:
    """The PreferencePair for replacing `block`'s text (as it was) with `final_text`."""
    sections = len(section_outline(doc).sections)
    return PreferencePair(
        prompt=prompt_context(doc, block), rejected=block.text, chosen=final_text.strip(),
        op=op, kind=paragraph_kind(block.section, sections), rejected_origin=block.origin,
        document_id=doc.id, block_id=block.id, owner=owner, language=doc.language,
    )


def capture(pairs_repo: Any, doc: Document, block: TextBlock, final_text: str, op: str,
            owner: str | None) -> PreferencePair | None:
    """Store a pair for replacing `block` (as it was in `doc`) with `final_text` by `op`.

    Returns the stored pair, or None when there is nothing to store: no pairs repository,
    not a paragraph, the old text was not the model's (typed or edited by hand), or the
    change is trivial (is_trivial).
    """
    if pairs_repo is None or not isinstance(block, TextBlock):
        return None
    if not wants_pair(block.text, block.origin, final_text):
        return None
    return pairs_repo.add(make_pair(doc, block, final_text, op, owner))
