"""The eval: compose each brief of a JSONL file with the configured writer and measure it.

A brief is {"id", "instruction", "language", "words", "images" ("auto" or N), "genre"}. Each
is composed through the normal Composer (composer/services.py), then measured with
composer/quality.py: LongWriter's length score S_l, outline validity, meta-commentary and
prompt leakage, repeated sentences, distinct-2, paragraph relevance to the instruction,
mid-sentence endings, language purity, images requested / placed / relevant, and time. A
brief the app refuses (an InputError, e.g. Chinese with an English-only writer) records the
app's message as its outcome, which is what a person would see.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from composer import quality
from composer.types import (
    ComposeRequest,
    Document,
    GenerationConfig,
    ImageBlock,
    InputError,
    TextBlock,
    count_words,
)

# Cosine similarity (all-MiniLM-L6-v2) from which a placed image counts as relevant: between
# the paragraph it follows and the image's own library caption (what it shows), and between
# the caption shown under it and that library caption. Provisional: calibrate on a labelled set.
IMAGE_RELEVANCE = 0.25
MAX_TOKENS = 1024  # per model call, as `python -m composer compose` asks by default
EXAMPLES = 3  # offending sentences kept per metric in the JSON, for a reader to check


@dataclass
class Brief:
    """One eval brief: what a person would ask for."""

    id: str
    instruction: str
    language: str = "en"
    words: int = 800
    images: int | None = None  # None: "auto"
    genre: str = ""

    def request(self, text_only: bool = False, seed: int = 0,
                candidates: int = GenerationConfig.candidates,
                decoding: str = "default") -> ComposeRequest:
        """The ComposeRequest the app would build for this brief."""
        return ComposeRequest(
            instruction=self.instruction, language=self.language, target_words=self.words,
            images=self.images, text_only=text_only, seed=seed,
            generation=GenerationConfig(max_new_tokens=MAX_TOKENS, seed=seed,
                                        candidates=candidates, decoding=decoding))


def load_briefs(path: Path, limit: int | None = None, ids: list[str] | None = None
                ) -> list[Brief]:
    """Briefs of a JSONL file, optionally only `ids` (in file order) and the first `limit`.
    Raises InputError naming the line of a malformed brief or an unknown id."""
    if not path.is_file():
        raise InputError(f"briefs file {path} does not exist: give a .jsonl file of briefs")
    briefs = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            images = data.get("images", "auto")
            briefs.append(Brief(
                id=str(data["id"]), instruction=str(data["instruction"]),
                language=str(data.get("language", "en")), words=int(data.get("words", 800)),
                images=None if images in (None, "auto") else int(images),
                genre=str(data.get("genre", ""))))
        except (ValueError, KeyError, TypeError) as error:
            raise InputError(f"{path} line {number}: not a brief ({error}); each line must be "
                             'JSON with "id", "instruction" and optionally "language", '
                             '"words", "images" ("auto" or a number) and "genre"') from None
    if ids:
        known = {brief.id for brief in briefs}
        unknown = [brief_id for brief_id in ids if brief_id not in known]
        if unknown:
            raise InputError(f"--ids {','.join(unknown)}: no such brief in {path}; its ids are "
                             f"{', '.join(sorted(known))}")
        briefs = [brief for brief in briefs if brief.id in ids]
    return briefs[:limit] if limit is not None else briefs


@dataclass
class BriefResult:
    """What one brief gave: the outcome ("done", "interrupted", "failed" or the app's error
    message) and the metrics of the saved article (zero when nothing was written)."""

    id: str
    language: str
    genre: str
    target: int
    outcome: str = "done"
    document_id: str | None = None
    words: int = 0
    paragraphs: int = 0
    length_score: float = 0.0
    outline_valid: float | None = None  # share of sections without a problem (title, points)
    outline_problems: list[str] = field(default_factory=list)
    meta: int = 0
    leaked: int = 0
    repeated: int = 0
    duplicate_paragraphs: int = 0
    distinct_2: float = 0.0
    relevance: float | None = None  # mean paragraph similarity to the instruction
    off_topic: int = 0  # paragraphs under quality.MIN_RELEVANCE
    mid_sentence: int = 0
    purity: float = 0.0
    gibberish: int = 0
    images_requested: str = "auto"
    images_placed: int = 0
    images_relevant: int = 0
    caption_mismatch: int = 0
    seconds: float = 0.0
    examples: dict[str, list[str]] = field(default_factory=dict)

    @property
    def measured(self) -> bool:
        return self.words > 0


def measure(doc: Document, brief: Brief, embedder: Any = None,
            library_captions: Callable[[list[str]], dict[str, str]] | None = None
            ) -> BriefResult:
    """The metrics of a saved document for its brief. Relevance needs `embedder`; image
    relevance also needs `library_captions` (image ids -> their library captions)."""
    paragraphs = [block.text for block in doc.blocks if isinstance(block, TextBlock)]
    text = "\n\n".join(paragraphs)
    language = brief.language
    result = BriefResult(brief.id, language, brief.genre, brief.words, outcome=doc.status,
                         document_id=doc.id, images_requested=_images_label(brief.images))
    result.words = count_words(text)
    result.paragraphs = len(paragraphs)
    result.length_score = round(quality.length_score(brief.words, result.words), 1)
    if doc.outline is not None and doc.outline.sections:
        sections = [(s.title, list(s.key_points)) for s in doc.outline.sections]
        result.outline_problems = quality.outline_problems(doc.title, sections, brief.instruction)
        bad_sections = {problem.split(":")[0] for problem in result.outline_problems
                        if problem.startswith("section ")}
        result.outline_valid = round(1 - len(bad_sections) / len(sections), 3)
    meta = [s for paragraph in paragraphs for s in quality.meta_sentences(paragraph, language)]
    leaks = [leak for paragraph in paragraphs for leak in quality.leaked_prompt(paragraph)]
    repeats = quality.repeated_sentences(paragraphs)
    cut = [paragraph for paragraph in paragraphs if quality.ends_mid_sentence(paragraph)]
    gibberish = [paragraph for paragraph in paragraphs if quality.caps_gibberish(paragraph)]
    result.meta, result.leaked, result.repeated = len(meta), len(leaks), len(repeats)
    result.duplicate_paragraphs = len(quality.near_duplicate_paragraphs(paragraphs))
    result.mid_sentence, result.gibberish = len(cut), len(gibberish)
    result.distinct_2 = round(quality.distinct_n(text, 2), 3)
    result.purity = round(quality.language_purity(text, language), 3)
    examples = {"meta": meta, "leaked": leaks, "repeated": repeats,
                "mid_sentence": [p[-60:] for p in cut], "gibberish": [p[:60] for p in gibberish]}
    if embedder is not None and paragraphs:
        scores = quality.relevance(paragraphs, brief.instruction, embedder)
        result.relevance = round(statistics.fmean(scores), 3)
        off = [p for p, s in zip(paragraphs, scores) if s < quality.MIN_RELEVANCE]
        result.off_topic = len(off)
        examples["off_topic"] = [p[:80] for p in off]
    _measure_images(doc, result, embedder, library_captions, examples)
    result.examples = {key: value[:EXAMPLES] for key, value in examples.items() if value}
    return result


def _measure_images(doc: Document, result: BriefResult, embedder: Any,
                    library_captions: Callable[[list[str]], dict[str, str]] | None,
                    examples: dict[str, list[str]]) -> None:
    """Placed images; relevant when the image's library caption fits the paragraph before it
    and the caption under it describes the image (both above IMAGE_RELEVANCE)."""
    placed: list[tuple[str, ImageBlock]] = []
    before = ""
    for block in doc.blocks:
        if isinstance(block, TextBlock):
            before = block.text
        elif isinstance(block, ImageBlock) and block.image_id:
            placed.append((before, block))
    result.images_placed = len(placed)
    if not placed or embedder is None or library_captions is None:
        return
    shows = library_captions([block.image_id for _, block in placed])
    mismatched = []
    for paragraph, block in placed:
        truth = shows.get(block.image_id, "")
        fits = bool(truth) and quality.relevance([paragraph], truth, embedder)[0] >= IMAGE_RELEVANCE
        described = bool(truth) and block.caption.strip() and quality.relevance(
            [block.caption], truth, embedder)[0] >= IMAGE_RELEVANCE
        result.images_relevant += int(fits and described)
        if not described:
            mismatched.append(f"{block.caption!r} under an image of {truth!r}")
    result.caption_mismatch = len(mismatched)
    examples["caption_mismatch"] = mismatched


def _images_label(images: int | None) -> str:
    return "auto" if images is None else str(images)


def run_brief(services: Any, brief: Brief, text_only: bool = False, seed: int = 0,
              on_event: Callable[[Any], None] | None = None,
              candidates: int = GenerationConfig.candidates,
              decoding: str = "default") -> BriefResult:
    """Compose one brief through the app's Composer and measure what was saved. An
    InputError (the app refusing the brief) becomes the outcome; Ctrl-C propagates after
    the pipeline has saved and marked the partial document."""
    request = brief.request(text_only=text_only, seed=seed, candidates=candidates,
                            decoding=decoding)
    started = time.perf_counter()
    document_id = None
    try:
        services.check_language(request.language)  # as `compose` does, before any model loads
        composer = services.composer(with_images=not text_only)
        events = composer.compose(request)
        try:
            for event in events:
                document_id = event.document_id or document_id
                if on_event is not None:
                    on_event(event)
        finally:
            events.close()
    except InputError as error:
        return BriefResult(brief.id, brief.language, brief.genre, brief.words,
                           outcome=f"refused: {error}", images_requested=_images_label(
                               brief.images), seconds=round(time.perf_counter() - started, 1))
    seconds = time.perf_counter() - started
    doc = services.documents.get(document_id)
    embedder = services.embedder
    captions = services.images.captions if not text_only else None
    result = measure(doc, brief, embedder, captions)
    result.seconds = round(seconds, 1)
    return result


def run_eval(services: Any, briefs: list[Brief], text_only: bool = False, seed: int = 0,
             on_event: Callable[[Any], None] | None = None) -> Iterator[BriefResult]:
    """Compose and measure each brief in turn, yielding its result as soon as it is known."""
    for brief in briefs:
        yield run_brief(services, brief, text_only=text_only, seed=seed, on_event=on_event)


def summarize(results: list[BriefResult]) -> dict[str, Any]:
    """Means over measured briefs (overall and per language) and totals of the counts."""
    summary: dict[str, Any] = {"briefs": len(results),
                               "measured": sum(r.measured for r in results),
                               "refused": sum(r.outcome.startswith("refused") for r in results)}
    for language in sorted({r.language for r in results}):
        measured = [r for r in results if r.language == language and r.measured]
        if measured:
            summary[f"mean_length_score_{language}"] = _mean([r.length_score for r in measured])
    measured = [r for r in results if r.measured]
    for name in ("length_score", "outline_valid", "distinct_2", "relevance", "purity",
                 "seconds"):
        summary[f"mean_{name}"] = _mean([getattr(r, name) for r in measured])
    for name in ("words", "meta", "leaked", "repeated", "duplicate_paragraphs", "off_topic",
                 "mid_sentence", "gibberish", "images_placed", "images_relevant",
                 "caption_mismatch"):
        summary[f"total_{name}"] = sum(getattr(r, name) for r in results)
    summary["total_seconds"] = round(sum(r.seconds for r in results), 1)
    return summary


def _mean(values: list[Any]) -> float | None:
    values = [v for v in values if v is not None]
    return round(statistics.fmean(values), 3) if values else None


COLUMNS = [  # header, width, value
    ("id", 22, lambda r: r.id),
    ("lang", 4, lambda r: r.language),
    ("target", 6, lambda r: r.target),
    ("words", 6, lambda r: r.words),
    ("S_l", 5, lambda r: f"{r.length_score:.0f}"),
    ("outl", 4, lambda r: "-" if r.outline_valid is None else f"{r.outline_valid:.2f}"[1:]
     if r.outline_valid < 1 else "1"),
    ("meta", 4, lambda r: r.meta),
    ("leak", 4, lambda r: r.leaked),
    ("rep", 4, lambda r: r.repeated),
    ("dup", 3, lambda r: r.duplicate_paragraphs),
    ("dist2", 5, lambda r: f"{r.distinct_2:.2f}"),
    ("rel", 5, lambda r: "-" if r.relevance is None else f"{r.relevance:.2f}"),
    ("cut", 3, lambda r: r.mid_sentence),
    ("pure", 4, lambda r: f"{r.purity:.2f}"[1:] if r.purity < 1 else "1"),
    ("img r/p/ok", 10, lambda r: f"{r.images_requested}/{r.images_placed}/{r.images_relevant}"),
    ("sec", 6, lambda r: f"{r.seconds:.0f}"),
]


def format_table(results: list[BriefResult], summary: dict[str, Any] | None = None) -> str:
    """A fixed-width table, one row per brief (the outcome under a row that did not finish),
    then a summary row of means and totals."""
    lines = [" ".join(f"{name:>{width}}" if i else f"{name:<{width}}"
                      for i, (name, width, _) in enumerate(COLUMNS))]
    for result in results:
        cells = [str(value(result))[:width] for _, width, value in COLUMNS]
        lines.append(" ".join(cell.rjust(width) if i else cell.ljust(width)
                              for i, (cell, (_, width, _)) in enumerate(zip(cells, COLUMNS))))
        if result.outcome != "done":
            lines.append(f"  -> {result.outcome}")
    summary = summary if summary is not None else summarize(results)
    lines.append(
        f"{summary['measured']} of {summary['briefs']} briefs measured, {summary['refused']} "
        f"refused · mean S_l {_show(summary['mean_length_score'])}"
        + "".join(f" ({key[-2:]} {_show(value)})" for key, value in summary.items()
                  if key.startswith("mean_length_score_"))
        + f" · outline valid {_show(summary['mean_outline_valid'])}"
        f" · meta {summary['total_meta']} · leaked {summary['total_leaked']}"
        f" · repeated {summary['total_repeated']} · mid-sentence {summary['total_mid_sentence']}"
        f" · distinct-2 {_show(summary['mean_distinct_2'])}"
        f" · relevance {_show(summary['mean_relevance'])}"
        f" · purity {_show(summary['mean_purity'])}"
        f" · images placed {summary['total_images_placed']}, relevant "
        f"{summary['total_images_relevant']} · {summary['total_seconds']:.0f} s")
    return "\n".join(lines)


def _show(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}" if value < 2 else f"{value:.1f}"


def to_json(results: list[BriefResult], settings: dict[str, Any]) -> dict[str, Any]:
    """The eval as JSON-ready data: settings, summary and one object per brief."""
    return {"settings": settings, "summary": summarize(results),
            "briefs": [asdict(result) for result in results]}
