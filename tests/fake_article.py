"""The article responder of the fake model: a reply of the right shape for each composer prompt.

Whole-composition tests (CLI, app, browser) opt into it (tests.fakes.ArticleWriter) because
queueing a whole article's replies by hand is impractical. It recognises a prompt by matching
its user message against the product's own templates (composer/prompts.TEMPLATES,
composer/edit_prompts.TEMPLATE and TASKS), reading the asked sizes (words, paragraphs,
sections) from the placeholders, so a reworded prompt changes nothing here; a prompt that
matches no template raises UnknownPrompt (never a catch-all reply).
"""

from __future__ import annotations

import json
import random
import re
import zlib
from collections.abc import Iterator
from functools import cache

from composer import edit_prompts, prompts
from composer.types import ChatMessage

WORDS = (
    "light river stone garden morning history engine market voice signal harbor forest "
    "museum letter orbit bridge season kitchen lantern archive mountain field painting"
).split()


class UnknownPrompt(AssertionError):
    """The prompt is none of the composer's (the fake has no reply for it)."""


def user_text(messages: list[ChatMessage]) -> str:
    """The last user message's text ("" for none)."""
    return next((m.content for m in reversed(messages) if m.role == "user"), "")


_NUMBERS = {"words", "paragraphs", "sections", "number", "part", "parts"}  # always digits


@cache
def _pattern(template: str) -> tuple[tuple[str, ...], re.Pattern]:
    """The template's literal pieces (a quick filter) and a regex that matches a filled-in
    template, capturing each placeholder: greedily, so that text the model echoed into an
    earlier field (the article so far) does not pass for the prompt's own wording; adjacent
    placeholders share the first's group, a repeated one is matched without a group."""
    parts = re.split(r"\{(\w+)\}", template)
    regex, named, field_before = [], set(), False
    for index, part in enumerate(parts):
        if index % 2 == 0:
            if part:
                regex.append(re.escape(part))
                field_before = False
        elif not field_before:
            value = r"\d+" if part in _NUMBERS else ".*"
            regex.append(f"(?P<{part}>{value})" if part not in named else value)
            named.add(part)
            field_before = True
    return tuple(p for p in parts[::2] if p), re.compile("".join(regex), re.DOTALL)


def fill(template: str, text: str) -> dict[str, str] | None:
    """The placeholders' values when `text` is `template` filled in, else None."""
    literals, regex = _pattern(template)
    position = 0
    for literal in literals:  # all literal pieces in order: cheap, and spares the regex
        position = text.find(literal, position)
        if position < 0:
            return None
        position += len(literal)
    match = regex.fullmatch(text)
    return match.groupdict() if match else None


def _templates() -> Iterator[tuple[str, str, str]]:
    """(kind, language, template) of every composer prompt; an edit prompt's template has
    its operation's task filled in (kind "edit")."""
    for language, template in edit_prompts.TEMPLATE.items():
        for tasks in edit_prompts.TASKS.values():
            yield "edit", language, template.replace("{task}", tasks[language])
    for kind, templates in prompts.TEMPLATES.items():
        for language, template in templates.items():
            yield kind, language, template


def recognise(user: str) -> tuple[str, str, dict[str, str]]:
    """(kind, language, placeholders) of a composer prompt's user message, the kind a key of
    prompts.TEMPLATES or "edit"; UnknownPrompt if it is none of them."""
    for kind, language, template in _templates():
        fields = fill(template, user)
        if fields is not None:
            return kind, language, fields
    raise UnknownPrompt("not a composer prompt")


def article_reply(messages: list[ChatMessage], prefix: str) -> str:
    """A reply of the right shape for each composer prompt, deterministic in the prompt."""
    user = user_text(messages)
    kind, language, fields = recognise(user)
    seed = zlib.crc32(user.encode())
    if kind in ("edit", "repair"):  # one paragraph of the asked length
        words = max(3, int(fields["words"]))
        return _chinese(words, seed * 7919 + 1) if language == "zh" else _edit_sentences(words,
                                                                                          seed)
    if kind == "outline_json":
        sections = [{"title": f"Part {WORDS[n].title()}",
                     "key_points": [f"the {WORDS[n]} idea", f"{WORDS[n + 1]} facts"]}
                    for n in range(int(fields["sections"]))]
        return json.dumps({"title": "A Scripted Title", "sections": sections})
    if kind == "outline":  # continues the pre-filled "1."
        lines = [f" Part {WORDS[0].title()}: the {WORDS[0]} idea; why it matters"]
        lines += [f"{n}. Part {WORDS[(n - 1) % len(WORDS)].title()}: {WORDS[n]} facts; examples"
                  for n in range(2, int(fields["sections"]) + 1)]
        return "\n".join(lines)
    if kind in ("section", "paragraph"):
        paragraphs = int(fields.get("paragraphs", 1))
        per = max(5, int(fields["words"]) // paragraphs)
        write = _chinese if language == "zh" else sentences
        return "\n\n".join(write(per, seed + p) for p in range(paragraphs))
    if kind == "slots":  # continues "... <Seg"
        return "1>, <Seg3>\n"
    if kind == "caption":
        return f"a quiet harbor at sunrise with boats{prompts.CAPTION_CLOSE[language]} and more"
    if kind == "select":
        return " B."
    if kind == "title":
        return ("一个脚本标题" if language == "zh" else "A Scripted Title") + \
            prompts.TITLE_CLOSE[language]
    raise UnknownPrompt(f"no article reply for a {kind} prompt")


_ONSETS = ("b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "br", "st", "tr")
_VOWELS = ("a", "e", "i", "o", "u", "ai", "ea", "ou")


def _word(rng: random.Random) -> str:
    """A pronounceable made-up word: the scripted text never repeats itself by accident,
    as a good writer's would not (the paragraph checks reject near-copies)."""
    return "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) for _ in range(rng.randint(1, 3)))


def _prose(words: int, seed: int, per_sentence: int) -> str:
    """`words` words of sentences, deterministic in `seed`: the first word of each sentence
    is one of WORDS (so texts read as being about something), the rest made up."""
    rng = random.Random(seed)
    out, sentence = [], []
    for i in range(words):
        sentence.append(WORDS[rng.randrange(len(WORDS))] if not sentence else _word(rng))
        if len(sentence) == per_sentence or i == words - 1:
            out.append(" ".join(sentence).capitalize() + ".")
            sentence = []
    return " ".join(out)


_HANZI = "山水河桥城市花园早晨历史机器市场声音信号港口森林博物馆信件轨道季节厨房灯笼档案田野绘画"


def _chinese(characters: int, seed: int) -> str:
    """`characters` Chinese characters in sentences of about 12, ending with 。"""
    rng = random.Random(seed)
    out, sentence = [], ""
    for i in range(characters):
        sentence += rng.choice(_HANZI)
        if len(sentence) == 12 or i == characters - 1:
            out.append(sentence + "。")
            sentence = ""
    return "".join(out)


def sentences(words: int, seed: int) -> str:
    """`words` words of made-up prose in sentences of 9, deterministic in `seed`."""
    return _prose(words, seed, 9)



def _edit_sentences(words: int, seed: int) -> str:
    """Like sentences but from another stream (an edited paragraph really differs from the
    composed one)."""
    return _prose(words, seed * 7919 + 1, 8)
