"""Test doubles for model backends. They live here, never in the product code path.

ScriptedLM follows the LanguageModel protocol: it replies from a queue of scripted replies,
or, when the queue is empty, with a plausible reply for each kind of prompt the composer
sends (outline, section, slots, caption, selection), so whole compositions run without a
real model. It streams word by word and honours stop strings, max_new_tokens and cancel.
"""

from __future__ import annotations

import json
import random
import re
import threading
import time
import zlib
from typing import Callable, Iterator

from composer.types import ChatMessage, GenerationConfig

WORDS = (
    "light river stone garden morning history engine market voice signal harbor forest "
    "museum letter orbit bridge season kitchen lantern archive mountain field painting"
).split()


class ScriptedLM:
    """A fake LanguageModel: scripted replies first, then a reply shaped by the prompt."""

    name = "scripted"
    context_length = 100_000
    languages = ("en", "zh")  # what it declares it writes (composer/languages.py)

    def __init__(self, replies: list[str] | None = None, delay: float = 0.0,
                 responder: Callable[[list[ChatMessage], str], str] | None = None,
                 json_schema: bool = False):
        """json_schema=True declares `supports_json_schema` (the planner then asks for JSON;
        queued replies are returned as they are, valid or not)."""
        self.supports_json_schema = json_schema
        self.replies = list(replies or [])
        self.delay = delay
        self.responder = responder or default_reply
        self.calls: list[tuple[list[ChatMessage], str, GenerationConfig]] = []

    def stream(self, messages: list[ChatMessage], config: GenerationConfig, *,
               prefix: str = "", cancel: threading.Event | None = None) -> Iterator[str]:
        self.calls.append((messages, prefix, config))
        reply = self.replies.pop(0) if self.replies else self.responder(messages, prefix)
        emitted = ""
        for count, piece in enumerate(re.findall(r"\S+\s*|\s+", reply)):
            if count >= config.max_new_tokens or (cancel is not None and cancel.is_set()):
                return
            start = len(emitted)
            emitted += piece
            cuts = [emitted.find(stop) for stop in config.stop if stop and stop in emitted]
            if cuts:
                if min(cuts) > start:
                    yield emitted[start:min(cuts)]
                return
            if self.delay:
                time.sleep(self.delay)
            yield piece

    def count_tokens(self, text: str) -> int:
        return len(text.split())


def _user_text(messages: list[ChatMessage]) -> str:
    return next((m.content for m in reversed(messages) if m.role == "user"), "")


def default_reply(messages: list[ChatMessage], prefix: str) -> str:
    """A reply of the right shape for each composer prompt, deterministic in the prompt."""
    user = _user_text(messages)
    if "Reply with the new paragraph only" in user or "只回复新段落" in user:
        # composer/edit_prompts.py: one paragraph of the asked length (the last "about N").
        found = re.findall(r"about (\d+) words|约(\d+)字", user)
        words = int(next(g for g in found[-1] if g)) if found else 60
        seed = zlib.crc32(user.encode())
        if "只回复新段落" in user:
            return _chinese(max(3, words), seed * 7919 + 1)
        return _edit_sentences(max(3, words), seed)
    if "Reply in JSON" in user or "用JSON回答" in user:
        count = _number(r"and (\d+) sections|分为(\d+)个部分", user, 3)
        sections = [{"title": f"Part {WORDS[n].title()}",
                     "key_points": [f"the {WORDS[n]} idea", f"{WORDS[n + 1]} facts"]}
                    for n in range(count)]
        return json.dumps({"title": "A Scripted Title", "sections": sections})
    if prefix == "1.":
        count = _number(r"List (\d+) section headings|列出(\d+)个", user, 3)
        lines = [f" Part {WORDS[0].title()}: the {WORDS[0]} idea; why it matters"]
        lines += [f"{n}. Part {WORDS[(n - 1) % len(WORDS)].title()}: {WORDS[n]} facts; examples"
                  for n in range(2, count + 1)]
        return "\n".join(lines)
    if "Write about" in user or "现在请写" in user:
        words = _number(r"Write about (\d+) words|写约(\d+)字", user, 100)
        paragraphs = _number(r"in (\d+) paragraph|分(\d+)段", user, 1)
        per = max(5, words // paragraphs)
        seed = zlib.crc32(user.encode())
        write = _chinese if "现在请写" in user else _sentences
        return "\n\n".join(write(per, seed + p) for p in range(paragraphs))
    if prefix.endswith("<Seg"):
        return '1>, <Seg3>\n'
    if prefix.startswith("Photo") or prefix.startswith("照片"):
        return 'a quiet harbor at sunrise with boats" and more'
    if prefix.startswith("The best image") or prefix.startswith("最合适"):
        return " B."
    if prefix.startswith("Title"):
        return 'A Scripted Title"'
    return "ok"


def _number(pattern: str, text: str, default: int) -> int:
    match = re.search(pattern, text)
    return int(next(g for g in match.groups() if g)) if match else default


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


def _sentences(words: int, seed: int) -> str:
    return _prose(words, seed, 9)


def _edit_sentences(words: int, seed: int) -> str:
    """Like _sentences but from another stream (an edited paragraph really differs from the
    composed one)."""
    return _prose(words, seed * 7919 + 1, 8)


def scripted_factory(settings: object) -> ScriptedLM:
    """Plugin factory (COMPOSER_MODEL=tests.fakes:scripted_factory) for CLI/app tests."""
    return ScriptedLM()


def slow_scripted_factory(settings: object) -> ScriptedLM:
    """Like scripted_factory but each word takes 20 ms, so a test can interrupt it mid-way."""
    return ScriptedLM(delay=0.02)


class WordOverlapRetriever:
    """A retriever double ranking library images by words shared between query and caption."""

    def __init__(self, store):
        self.store = store

    def index(self) -> int:
        return 0

    def search(self, query: str, k: int = 4, exclude=frozenset(), owner=None, license=None,
               source=None):
        from composer.types import ImageCandidate

        words = set(re.findall(r"\w+", query.lower()))
        scored = []
        for image in self.store.list(owner=owner, license=license, source=source):
            if image.id in exclude:
                continue
            shared = words & set(re.findall(r"\w+", image.caption.lower()))
            scored.append(ImageCandidate(image.id, image.caption, len(shared) / (len(words) or 1),
                                         image.license, image.attribution))
        scored.sort(key=lambda c: (-c.score, c.image_id))
        return scored[:k]


class BatchScriptedLM(ScriptedLM):
    """A ScriptedLM that also decodes drafts in one batch (`stream_candidates`), as
    TransformersLM does: each call takes the next queued list of replies, one per draft, and
    fails when the queue is empty or the list has the wrong length (an unexpected call)."""

    def __init__(self, batches: list[list[str]], replies: list[str] | None = None):
        super().__init__(replies)
        self.batches = [list(batch) for batch in batches]
        self.batch_calls: list[tuple[list[ChatMessage], GenerationConfig, int]] = []

    def stream_candidates(self, messages: list[ChatMessage], config: GenerationConfig,
                          count: int, *, prefix: str = "",
                          cancel: threading.Event | None = None) -> Iterator[list[str]]:
        self.batch_calls.append((messages, config, count))
        if not self.batches:
            raise AssertionError(f"unexpected batch call: {messages[-1].content[:80]!r}")
        replies = self.batches.pop(0)
        if len(replies) != count:
            raise AssertionError(f"{count} drafts asked for, {len(replies)} queued")
        pieces = [re.findall(r"\S+\s*|\s+", reply) for reply in replies]
        for step in range(max(map(len, pieces))):
            if cancel is not None and cancel.is_set():
                return
            yield [words[step] if step < len(words) else "" for words in pieces]
