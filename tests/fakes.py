"""Test doubles for model backends. They live here, never in the product code path.

ScriptedLM follows the LanguageModel protocol, streaming word by word and honouring stop
strings, max_new_tokens and cancel. It has two modes:

- scripted (the default): it replies from the queue of replies the test gave it, in order,
  and fails (AssertionError naming the call number and the start of the last user message)
  on any call beyond them, so a test states every reply its code path needs;
- article (ArticleWriter, opted into by whole-composition tests, and by CLI/app tests as
  COMPOSER_MODEL=tests.fakes:article_factory): once the queue is empty it answers each
  composer prompt, recognised by the product's own prompt templates (tests/fake_article.py),
  with a reply of the right shape, and fails on a prompt it does not recognise.

A test may also pass its own `responder(messages, prefix) -> reply` for calls past the queue.
BatchScriptedLM adds batched decoding with its own queue of batches, equally strict.
"""

from __future__ import annotations

import re
import threading
import time
from typing import Callable, Iterator

from composer.types import ChatMessage, GenerationConfig
from tests.fake_article import UnknownPrompt, article_reply, user_text


class ScriptedLM:
    """A fake LanguageModel: the queued replies, then the responder's (if any), else a failure."""

    name = "scripted"
    context_length = 100_000
    sees_images = False  # messages' images (ChatMessage.images) are ignored
    languages = ("en", "zh")  # what it declares it writes (composer/languages.py)

    def __init__(self, replies: list[str] | None = None, delay: float = 0.0,
                 responder: Callable[[list[ChatMessage], str], str] | None = None,
                 json_schema: bool = False):
        """json_schema=True declares `supports_json_schema` (the planner then asks for JSON;
        queued replies are returned as they are, valid or not)."""
        self.supports_json_schema = json_schema
        self.replies = list(replies or [])
        self.delay = delay
        self.responder = responder
        self.calls: list[tuple[list[ChatMessage], str, GenerationConfig]] = []

    def stream(self, messages: list[ChatMessage], config: GenerationConfig, *,
               prefix: str = "", cancel: threading.Event | None = None) -> Iterator[str]:
        self.calls.append((messages, prefix, config))
        reply = self._reply(messages, prefix)
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

    def _reply(self, messages: list[ChatMessage], prefix: str) -> str:
        """The next queued reply, else the responder's; an unscripted call fails."""
        if self.replies:
            return self.replies.pop(0)
        why = "no reply queued"
        if self.responder is not None:
            try:
                return self.responder(messages, prefix)
            except UnknownPrompt as error:
                why = str(error)
        raise AssertionError(unscripted(len(self.calls), why, messages))

    def count_tokens(self, text: str) -> int:
        return len(text.split())


def unscripted(number: int, why: str, messages: list[ChatMessage]) -> str:
    """The failure message of an unscripted call: its number and the last user message."""
    return f"unscripted model call {number} ({why}): {user_text(messages)[:200]!r}"


class ArticleWriter(ScriptedLM):
    """A ScriptedLM that, once its queue is empty, writes whole articles: it answers every
    composer prompt (tests/fake_article.py) and fails on any other."""

    def __init__(self, replies: list[str] | None = None, delay: float = 0.0,
                 json_schema: bool = False):
        super().__init__(replies, delay, responder=article_reply, json_schema=json_schema)


def article_factory(settings: object) -> ArticleWriter:
    """Plugin factory (COMPOSER_MODEL=tests.fakes:article_factory) for CLI/app tests."""
    return ArticleWriter()


def slow_article_factory(settings: object) -> ArticleWriter:
    """Like article_factory but each word takes 20 ms, so a test can interrupt it mid-way."""
    return ArticleWriter(delay=0.02)


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
            raise AssertionError(unscripted(len(self.batch_calls), "no batch queued", messages))
        replies = self.batches.pop(0)
        if len(replies) != count:
            raise AssertionError(f"{count} drafts asked for, {len(replies)} queued")
        pieces = [re.findall(r"\S+\s*|\s+", reply) for reply in replies]
        for step in range(max(map(len, pieces))):
            if cancel is not None and cancel.is_set():
                return
            yield [words[step] if step < len(words) else "" for words in pieces]
