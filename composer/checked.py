"""Generate, check, keep: the drafting loop every piece of model prose goes through.

After VIGC (generate, then correct): a paragraph is drafted as k candidates (decoded together
in one batch when the backend offers `stream_candidates`, else drawn one at a time until one
passes), each candidate is checked (composer/quality.py check_paragraph: clean, no leaked
prompt, new, complete, right language, no gibberish, on topic), and the best is kept. When
none passes but removing its bad sentences (meta-commentary, leaked prompt, repeats,
gibberish, an unfinished end) leaves most of a paragraph that passes, that is kept; else
the best is rewritten with a prompt that names its problems; when no rewrite passes either,
the draft that keeps the most clean sentences is kept without the others, or nothing. The lead draft streams to the reader while it is written; the kept text replaces it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np

from composer import prompts
from composer.prompts import Prompt
from composer.quality import (
    MIN_PURITY,
    MIN_RELEVANCE,
    ParagraphCheck,
    caps_gibberish,
    check_paragraph,
    ends_mid_sentence,
    language_purity,
    leaked_prompt,
    meta_sentences,
    repeated_sentences,
    split_sentences,
)
from composer.types import GenerationConfig, count_words
from composer.writer import (balance_quotes, drop_unfinished_sentence, previous_window,
                             split_paragraphs)

KEPT = "kept"  # a draft passed every check
REWRITTEN = "rewritten"  # no draft passed; a corrective rewrite did
TRIMMED = "trimmed"  # nothing passed; the best draft's bad sentences were removed
STOPPED = "stopped"  # the person pressed stop; what was drafted so far is kept
ENOUGH_LEFT = 0.6  # a trimmed draft this share of the paragraph's words is kept unrewritten
MIN_SHARE = 0.3  # a paragraph shorter than this share of the words asked for is a stub
MIN_PARAGRAPH_WORDS = {"en": 12, "zh": 20}  # shorter trailing pieces are fragments


@dataclass
class CheckContext:
    """What a paragraph is checked against: the article around it (without the paragraph
    being replaced), its language, and what it should be about."""

    article: str
    language: str
    instruction: str = ""
    focus: str = ""  # the section title and the key point this paragraph covers
    section_title: str = ""
    words: int = 0  # the length asked for (words; characters in Chinese), 0: no length check
    # How a reply becomes paragraphs (default: split_paragraphs, which drops headings and
    # the section title; edits also drop the model's remarks about its answer).
    split: Callable[[str, str], list[str]] = split_paragraphs

    def paragraphs(self, reply: str) -> list[str]:
        return self.split(reply, self.section_title)


@dataclass
class KeptParagraphs:
    """What the writer kept for one slot: usually one paragraph, sometimes more (a draft may
    hold several), none when nothing clean was written; with the checks the kept text
    passed, how it was obtained (KEPT, REWRITTEN, TRIMMED, STOPPED) and how many drafts
    were read."""

    paragraphs: list[str]
    check: ParagraphCheck
    how: str
    drafts: int
    similarity: float | None = None  # to the instruction or focus (None: no embedder)

    def summary(self) -> dict[str, Any]:
        """The checks as stored with a paragraph and shown under it."""
        return {"passed": list(self.check.passed), "failed": dict(self.check.failed),
                "how": self.how, "drafts": self.drafts}


@dataclass
class WriteStep:
    """One thing the writer reports: a piece of the lead draft (`delta`), the start of a new
    draft round (`restart`: the streamed draft is being replaced), or the kept text."""

    delta: str = ""
    restart: bool = False
    note: str = ""
    kept: KeptParagraphs | None = None


@dataclass
class _Draft:
    raw: str
    paragraphs: list[str] = field(default_factory=list)
    check: ParagraphCheck = field(default_factory=ParagraphCheck)
    similarity: float | None = None

    @property
    def text(self) -> str:
        return "\n\n".join(self.paragraphs)


class CheckedWriter:
    """Drafts, checks and keeps model prose for one slot of an article (see module doc)."""

    def __init__(self, lm: Any, embedder: Any | None = None,
                 min_relevance: float = MIN_RELEVANCE) -> None:
        self.lm = lm
        self.embedder = embedder
        self.min_relevance = min_relevance

    def write(self, prompt: Prompt, config: GenerationConfig, context: CheckContext,
              cancel: threading.Event | None = None) -> Iterator[WriteStep]:
        """Stream the lead draft, then yield the kept text (the last step has `kept`)."""
        drafts: list[_Draft] = []
        yield from self._draw(prompt, config, context, drafts, cancel)
        read = len(drafts)
        if _cancelled(cancel):
            yield WriteStep(kept=self._stopped(drafts, context, read))
            return
        best = self._best(drafts)
        if best.check.ok:
            yield WriteStep(kept=KeptParagraphs(best.paragraphs, best.check, KEPT, read))
            return
        # Bad sentences in an otherwise good draft are cut rather than rewritten (a rewrite
        # costs a whole decode): when what is left passes and is most of a paragraph.
        trimmed = self._trimmed(drafts, context, read)
        if trimmed.paragraphs and trimmed.check.ok and count_words(
                "\n\n".join(trimmed.paragraphs)) >= context.words * ENOUGH_LEFT:
            yield WriteStep(restart=True, kept=trimmed)
            return
        problems = "; ".join(best.check.failed.values())
        yield WriteStep(restart=True, note=f"The draft failed its checks ({problems}): "
                        "rewriting it")
        repair = prompts.repair_prompt(best.text or best.raw, list(best.check.failed),
                                       context.focus, context.section_title, context.words,
                                       context.language, previous_window(context.article),
                                       images=prompt.images)
        rewrites: list[_Draft] = []
        yield from self._draw(repair, config, context, rewrites, cancel)
        read += len(rewrites)
        if _cancelled(cancel):
            yield WriteStep(kept=self._stopped(rewrites or drafts, context, read))
            return
        fixed = self._best(rewrites) if rewrites else None
        if fixed is not None and fixed.check.ok:
            yield WriteStep(kept=KeptParagraphs(fixed.paragraphs, fixed.check, REWRITTEN, read))
            return
        yield WriteStep(restart=True, kept=self._trimmed(drafts + rewrites, context, read))

    # -- drafting ---------------------------------------------------------------------------

    def _draw(self, prompt: Prompt, config: GenerationConfig, context: CheckContext,
              drafts: list[_Draft], cancel: threading.Event | None) -> Iterator[WriteStep]:
        """Fill `drafts` (checked), streaming the first one; a batching backend decodes all
        k together, another draws them in turn and stops at the first that passes."""
        count = max(1, config.candidates)
        # Beam search and OPERA rank their own hypotheses: their drafts come one at a time.
        batches = (count > 1 and callable(getattr(self.lm, "stream_candidates", None))
                   and config.num_beams == 1 and config.decoding == "default")
        if batches:
            texts = [""] * count
            for pieces in self.lm.stream_candidates(prompt.messages, config, count,
                                                    prefix=prompt.prefix, cancel=cancel):
                for row, piece in enumerate(pieces):
                    texts[row] += piece
                if pieces[0]:
                    yield WriteStep(delta=pieces[0])
            drafts.extend(_Draft(text) for text in texts)
            self._check(drafts, context, final=not _cancelled(cancel))
            return
        for number in range(count):
            # Later drafts are sampled (beam search and OPERA would repeat the first).
            draw = config if number == 0 else config.replace(
                do_sample=True, num_beams=1, decoding="default",
                seed=(config.seed or 0) + number)
            if number:
                yield WriteStep(restart=True, note=f"Draft {number} failed its checks: "
                                f"drafting another ({number + 1} of {count})")
            text = ""
            for piece in self.lm.stream(prompt.messages, draw, prefix=prompt.prefix,
                                        cancel=cancel):
                text += piece
                yield WriteStep(delta=piece)
            drafts.append(_Draft(text))
            self._check(drafts[-1:], context, final=not _cancelled(cancel))
            if drafts[-1].check.ok or _cancelled(cancel):
                return

    def _check(self, drafts: list[_Draft], context: CheckContext, final: bool) -> None:
        """Clean each draft into paragraphs and run the paragraph checks on it."""
        for draft in drafts:
            # A line without a sentence end before other text is a title, not a paragraph.
            paragraphs = context.paragraphs(draft.raw)
            draft.paragraphs = [p for p in paragraphs[:-1] if not ends_mid_sentence(p)] + \
                paragraphs[-1:]
            if final and draft.paragraphs:
                last = drop_unfinished_sentence(draft.paragraphs[-1])
                draft.paragraphs[-1:] = [last] if last else []
            # A stub of a few words after a paragraph is a fragment, not a paragraph.
            while len(draft.paragraphs) > 1 and count_words(draft.paragraphs[-1]) < \
                    MIN_PARAGRAPH_WORDS[_script(context.language)]:
                draft.paragraphs.pop()
        similarities = self._similarities([draft.text for draft in drafts], context)
        for draft, similarity in zip(drafts, similarities):
            draft.similarity = similarity
            if not draft.paragraphs:
                draft.check = ParagraphCheck(failed={"complete": "no text was written"})
                continue
            draft.check = self._run_checks(draft.text, context, similarity)

    def _run_checks(self, text: str, context: CheckContext,
                    similarity: float | None) -> ParagraphCheck:
        """quality.check_paragraph, plus long_enough: at least a third of the words asked
        for (a sentence or two left of a paragraph is a stub)."""
        check = check_paragraph(text, context.article, context.language,
                                instruction=context.instruction, key_point=context.focus,
                                embedder=self.embedder, min_relevance=self.min_relevance,
                                similarity=similarity)
        written, floor = count_words(text), max(MIN_PARAGRAPH_WORDS[_script(context.language)],
                                                round(context.words * MIN_SHARE))
        check.record("long_enough", f"only {written} of about {context.words} "
                     f"{'characters' if _script(context.language) == 'zh' else 'words'}"
                     if context.words and written < floor else None)
        return check

    def _similarities(self, texts: list[str], context: CheckContext) -> list[float | None]:
        """Each text's similarity to the instruction or its focus (the higher), in one
        embedding call; None without an embedder."""
        references = [ref for ref in (context.instruction, context.focus) if ref.strip()]
        if self.embedder is None or not references or not texts:
            return [None] * len(texts)
        vectors = np.asarray(self.embedder.encode(references + [t or " " for t in texts]),
                             dtype=np.float32)
        scores = vectors[len(references):] @ vectors[:len(references)].T
        return [float(row.max()) for row in scores]

    @staticmethod
    def _best(drafts: list[_Draft]) -> _Draft:
        """Passing drafts first, then the most checks passed, then the most on topic; the
        lead draft wins ties."""
        def key(item: tuple[int, _Draft]) -> tuple[Any, ...]:
            number, draft = item
            return (draft.check.ok, len(draft.check.passed), draft.similarity or 0.0, -number)
        return max(enumerate(drafts), key=key)[1]

    # -- fallbacks ---------------------------------------------------------------------------

    def _trimmed(self, drafts: list[_Draft], context: CheckContext, read: int) -> KeptParagraphs:
        """The draft that keeps the most words once its bad sentences are removed, as
        kept (nothing when no draft has a clean sentence)."""
        kept = [self._recheck(clean_sentences(draft.paragraphs, context.article,
                                              context.language), context, TRIMMED, read)
                for draft in drafts]
        return max(kept, key=lambda item: (item.check.ok, len(item.check.passed),
                                           item.similarity or 0.0,
                                           count_words("\n\n".join(item.paragraphs))))

    def _stopped(self, drafts: list[_Draft], context: CheckContext, read: int
                 ) -> KeptParagraphs:
        """Stop was pressed: the lead draft, as far as it got, keeps its clean sentences."""
        if not drafts:
            return KeptParagraphs([], ParagraphCheck(), STOPPED, read)
        lead = drafts[0]
        lead.paragraphs = lead.paragraphs or context.paragraphs(lead.raw)
        paragraphs = clean_sentences(lead.paragraphs, context.article, context.language,
                                     finished=False)
        return self._recheck(paragraphs, context, STOPPED, read)

    def _recheck(self, paragraphs: list[str], context: CheckContext, how: str,
                 read: int) -> KeptParagraphs:
        """Check what the fallback kept; text that still fails anything but the on-topic
        estimate (e.g. a near copy made of short sentences) is not kept at all, except that
        text cut by Stop may end mid-sentence (what the person saw written is kept)."""
        if not paragraphs:
            return KeptParagraphs([], ParagraphCheck(), how, read)
        draft = _Draft("\n\n".join(paragraphs), paragraphs)
        draft.similarity = self._similarities([draft.text], context)[0]
        check = self._run_checks(draft.text, context, draft.similarity)
        allowed = {"on_topic"} | ({"complete", "long_enough"} if how == STOPPED else set())
        if set(check.failed) - allowed:
            return KeptParagraphs([], check, how, read)
        return KeptParagraphs(paragraphs, check, how, read, draft.similarity)


def describe(kept: KeptParagraphs) -> str:
    """One status line about kept text: how it was obtained and what it passed."""
    if not kept.paragraphs:
        return f"nothing clean was written, so nothing was kept ({kept.drafts} drafts)"
    passed = ", ".join(name.replace("_", " ") for name in kept.check.passed) or "none"
    how = {KEPT: "kept the first draft" if kept.drafts == 1 else
           f"kept the best of {kept.drafts} drafts",
           REWRITTEN: f"no draft passed; kept a rewrite ({kept.drafts} drafts read)",
           TRIMMED: f"no draft passed; kept the clean sentences of the best ({kept.drafts} "
                    "drafts read)",
           STOPPED: "stopped; kept the clean sentences written so far"}[kept.how]
    failed = f"; still failing: {', '.join(kept.check.failed)}" if kept.check.failed else ""
    return f"{how}; passed {passed}{failed}"


def clean_sentences(paragraphs: list[str], article: str, language: str,
                    finished: bool = True) -> list[str]:
    """`paragraphs` without the sentences a reader would object to: meta-commentary, leaked
    prompt or markup, upper-case gibberish, sentences in another language, repeats of the
    article or of each other; a finished text also loses an unfinished last sentence."""
    earlier = [part for part in article.split("\n\n") if part.strip()]
    kept_paragraphs: list[str] = []
    for paragraph in paragraphs:
        kept: list[str] = []
        for sentence in split_sentences(paragraph):
            if (meta_sentences(sentence, language) or leaked_prompt(sentence)
                    or caps_gibberish(sentence)
                    or language_purity(sentence, language) < MIN_PURITY
                    or repeated_sentences([sentence], earlier + kept_paragraphs + kept)):
                continue
            kept.append(sentence)
        text = (" " if not language.startswith("zh") else "").join(kept).strip()
        if text:
            kept_paragraphs.append(text)
    # Every paragraph but a stopped text's last ends at a sentence end.
    complete = []
    for number, paragraph in enumerate(kept_paragraphs):
        if finished or number < len(kept_paragraphs) - 1:
            paragraph = drop_unfinished_sentence(paragraph)
            if ends_mid_sentence(paragraph):
                continue
        complete.append(balance_quotes(paragraph))
    return [p for p in complete if count_words(p) > 0]


def _script(language: str) -> str:
    return "zh" if language.startswith("zh") else "en"


def _cancelled(cancel: threading.Event | None) -> bool:
    return cancel is not None and cancel.is_set()
