"""Image slots -> captions -> candidates -> selection, as the reference pipeline does it.

1. The model is shown the paragraphs tagged <Seg0>..<SegN> and names the ones that benefit
   from an image; the answer is pre-filled and parsed back with a regex, then completed or
   trimmed deterministically to the requested count.
2. One caption per slot, given the article up to the slot and the captions already chosen.
3. Candidates are retrieved with the caption as the query, excluding images already used.
4. Selection: the best retrieval score, or the model picks a letter A-D (fallback A), among
   the candidates whose score reaches the placement threshold (COMPOSER_IMAGE_THRESHOLD);
   none reaching it leaves the slot to a generated or web picture, or to no picture.
5. The caption shown is the chosen image's own library caption (shown_caption), never the
   query of step 2.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence

from composer import prompts
from composer.config import MAX_IMAGES, MAX_PARAGRAPHS
from composer.generation import collect
from composer.types import GenerationConfig, ImageCandidate
from models.lm import LanguageModel

WORDS_PER_AUTO_IMAGE = 300
CONTEXT_CHARS = 1200
CANDIDATES = 4

_TAG = re.compile(r"(?:<\s*Seg\s*|\bSeg\s*|#)(\d{1,3})", re.I)
_CHOICE = re.compile(r"\b([A-D])\b|^\s*([A-D])")


def auto_image_count(words: int, paragraphs: int) -> int:
    """Images for "automatic" when the model names none: one per ~300 words, within limits."""
    return max(1, min(MAX_IMAGES, paragraphs, round(words / WORDS_PER_AUTO_IMAGE)))


def parse_slots(text: str, paragraphs: int) -> list[int]:
    """Paragraph numbers named in a reply like "<Seg2>, <Seg5>" (valid, unique, in order)."""
    found: list[int] = []
    for match in _TAG.finditer(text):
        number = int(match.group(1))
        if 0 <= number < paragraphs and number not in found:
            found.append(number)
    return found


def complete_slots(chosen: list[int], count: int, paragraphs: int) -> list[int]:
    """Exactly `count` slots: the model's picks first, then evenly spaced free paragraphs."""
    count = min(count, paragraphs)
    slots = list(dict.fromkeys(chosen))[:count]
    step = paragraphs / count if count else 1
    targets = [min(paragraphs - 1, int(i * step + step / 2)) for i in range(count)]
    for slot in slots:  # each pick covers the evenly spaced target nearest to it
        targets.remove(min(targets, key=lambda t: abs(t - slot)))
    for target in targets:
        free = [p for p in range(paragraphs) if p not in slots]
        slots.append(min(free, key=lambda p: (abs(p - target), p)))
    return sorted(slots)


def parse_choice(text: str, options: int) -> int:
    """The first letter A-D in a reply as an index; 0 (A) when none is valid, as the reference."""
    for match in _CHOICE.finditer(text.strip()):
        letter = match.group(1) or match.group(2)
        index = ord(letter) - ord("A")
        if index < options:
            return index
    return 0


def fallback_caption(paragraph: str, language: str) -> str:
    """A query from the paragraph itself when the model gives no caption: its first sentence."""
    first = re.split(r"(?<=[.!?。！？])\s*", paragraph.strip(" \"'“”‘’"), maxsplit=1)[0]
    first = first.strip(" \"'“”‘’")
    if language == "zh":
        return first[:40]
    return " ".join(first.split()[:20])


MAX_SHOWN_CAPTION_WORDS = 30  # a library caption longer than this is cut at a clause


def shown_caption(library_caption: str) -> str:
    """The caption shown under a placed image: the image's own library caption, cleaned
    (one line, no surrounding quotes) and cut to its first sentence, then to the last
    clause (comma, semicolon) that fits in MAX_SHOWN_CAPTION_WORDS words.

    Never the search query or a sentence of the paragraph: those say what the slot wanted,
    not what the picture shows.
    """
    text = " ".join(library_caption.split()).strip(" \"'“”‘’")
    if not text:
        return ""
    first = re.split(r"(?<=[.!?])[\"”’]?\s+|(?<=[。！？])", text, maxsplit=1)[0].strip(" \"“”")
    words = first.split()
    if len(words) <= MAX_SHOWN_CAPTION_WORDS:
        return first
    head = " ".join(words[:MAX_SHOWN_CAPTION_WORDS])
    cut = max(head.rfind(", "), head.rfind("; "))
    if cut >= len(head) // 2:
        return head[:cut] + "."
    return head.rstrip(",;:") + "…"


def no_match_message(query: str, generator: bool, web: bool) -> str:
    """What the status says when no library image reaches the threshold for a slot."""
    message = f"No picture in your library matches '{query}': the slot is left without one"
    if generator or web:
        return message + "."
    return (message + ". Add images with `python -m composer library add`, or set "
            "COMPOSER_IMAGE_GENERATOR (generate pictures) or COMPOSER_WEB_IMAGES (search the "
            "web).")


_META_WORDS = re.compile(r"\b(paragraph|article|section|caption|sentence)\b|段落|文章|描述", re.I)


def usable_caption(caption: str, chosen: list[str], language: str, title: str = "") -> bool:
    """False for captions that describe the prompt instead of a picture, repeat an earlier
    caption or the article title (small models often echo it)."""
    long_enough = len(caption) >= 4 if language == "zh" else len(caption.split()) >= 3
    echoes = {c.lower().strip(" .") for c in chosen} | {title.lower().strip(" .")}
    return (long_enough and not _META_WORDS.search(caption)
            and caption.lower().strip(" .") not in echoes
            and not caption.lower().startswith(("in conclusion", "in summary")))


class Illustrator:
    """Asks the language model where images go, what they show, and which candidate fits."""

    def __init__(self, lm: LanguageModel):
        self.lm = lm

    def choose_slots(self, paragraphs: list[str], count: int | None, language: str,
                     config: GenerationConfig, cancel: threading.Event | None = None,
                     images: Sequence[str] = ()) -> list[int]:
        """Indices of the paragraphs that get an image (count None = the model decides);
        `images`: the reference images the prompts show."""
        picks: list[int] = []
        # Long articles are shown to the model in windows of at most MAX_PARAGRAPHS paragraphs.
        for start in range(0, len(paragraphs), MAX_PARAGRAPHS):
            window = paragraphs[start:start + MAX_PARAGRAPHS]
            share = None if count is None else max(1, round(count * len(window) / len(paragraphs)))
            prompt = prompts.slots_prompt([p[:300] for p in window], share, language,
                                          images=images)
            reply = collect(self.lm, prompt, config.replace(max_new_tokens=48, stop=("\n",)), cancel)
            picks += [start + n for n in parse_slots(prompt.prefix[-4:] + reply, len(window))]
        words = sum(len(p.split()) for p in paragraphs)
        if count is None:
            wanted = len(picks) or auto_image_count(words, len(paragraphs))
            count = min(wanted, MAX_IMAGES, max(1, len(paragraphs) // 2))
        return complete_slots(picks, count, len(paragraphs))

    def caption(self, title: str, chosen: list[str], paragraph: str, language: str,
                config: GenerationConfig, cancel: threading.Event | None = None,
                images: Sequence[str] = ()) -> str:
        """A one-sentence description of a photo for `paragraph` (the retrieval query)."""
        prompt = prompts.caption_prompt(title, paragraph[:CONTEXT_CHARS], chosen, language,
                                        images=images)
        close = prompts.CAPTION_CLOSE[language]
        reply = collect(self.lm, prompt, config.replace(max_new_tokens=40, stop=(close, "\n")), cancel)
        caption = reply.strip().strip("\"“”").strip()
        if usable_caption(caption, chosen, language, title):
            return caption
        return fallback_caption(paragraph, language)

    def select(self, candidates: list[ImageCandidate], context: str, mode: str, language: str,
               config: GenerationConfig, cancel: threading.Event | None = None,
               images: Sequence[str] = ()) -> int:
        """Index of the chosen candidate: best score, or the model's letter A-D."""
        if not candidates:
            raise ValueError("select() needs at least one candidate")
        if mode == "score" or len(candidates) == 1:
            return max(range(len(candidates)), key=lambda i: candidates[i].score)
        options = [c.caption or c.image_id[:12] for c in candidates[:CANDIDATES]]
        prompt = prompts.select_prompt(context[-CONTEXT_CHARS:], options, language, images=images)
        reply = collect(self.lm, prompt, config.replace(max_new_tokens=4), cancel)
        return parse_choice(reply, len(options))
