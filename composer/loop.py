"""The data-engine loop (MLLM-DataEngine, REFERENCE.md 9): score, find weak kinds, sample.

Evaluate -> find the weak categories -> draw the next training batch with weight
(1 - score) per category -> train (composer/train_dpo.py) -> evaluate again. Here the
categories are the paragraph kinds (PARAGRAPH_KINDS: where a paragraph sits in the article)
and, in a second table, what wrote a paragraph's text (its origin: the composer or an edit
operation of the model, or a person).

Definitions (per kind, and per origin in the by-operation table):

  paragraphs     current paragraphs of that kind / origin in all documents
  likes/dislikes ratings (+1 / -1) of paragraphs of that kind / origin (whole-document
                 ratings are not counted)
  like rate      likes / (likes + dislikes); None when unrated
  rewrite rate   pairs / (pairs + live), where pairs = preference pairs whose rejected text
                 was of that kind (by kind) or written by that origin (pair.rejected_origin,
                 by operation), and live = current paragraphs of that kind / origin still
                 written by the model (origin in MODEL_TEXT_ORIGINS). None when both are 0,
                 and for human origins (a person's text is never a pair's rejected side).
  score          (like rate, 0.5 when unrated) x (1 - rewrite rate, 0 when None), in [0, 1]

    report = build_report(paragraphs, feedback, pairs)   # plain data, no database
    report = report_from_services(services)              # the same, gathered from the app
    batch = sample_batch(pairs, report.kind_scores(), size=32, seed=0)
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

from composer.types import (
    HUMAN_TEXT_ORIGINS,
    MODEL_TEXT_ORIGINS,
    PARAGRAPH_KINDS,
    FeedbackRecord,
    PreferencePair,
    TextBlock,
)

UNRATED_LIKE_RATE = 0.5
TEXT_ORIGINS = MODEL_TEXT_ORIGINS + HUMAN_TEXT_ORIGINS
ALL_DOCUMENTS = 1_000_000
T = TypeVar("T")


def paragraph_kind(section_index: int, section_count: int) -> str:
    """Where a paragraph sits (one of PARAGRAPH_KINDS): "introduction" in the first section,
    "conclusion" in the last section of an article with 2+ sections, "body" otherwise."""
    if section_index <= 0:
        return "introduction"
    if section_count >= 2 and section_index >= section_count - 1:
        return "conclusion"
    return "body"


@dataclass
class Paragraph:
    """A current paragraph as the report sees it: its kind and what wrote its text."""

    kind: str
    origin: str


@dataclass
class CategoryStats:
    """One row of the report (a paragraph kind or an origin); see the module docstring."""

    name: str
    paragraphs: int = 0
    model_paragraphs: int = 0
    likes: int = 0
    dislikes: int = 0
    pairs: int = 0
    like_rate: float | None = None
    rewrite_rate: float | None = None
    score: float = UNRATED_LIKE_RATE


@dataclass
class LoopReport:
    """Scores by paragraph kind and by origin (edit operation), plus the totals counted."""

    by_kind: list[CategoryStats]
    by_origin: list[CategoryStats]
    paragraphs: int = 0
    ratings: int = 0
    pairs: int = 0
    unknown: dict[str, int] = field(default_factory=dict)

    def kind_scores(self) -> dict[str, float]:
        """{paragraph kind: score}: the sampler's weights are 1 - these."""
        return {row.name: row.score for row in self.by_kind}

    def to_json(self) -> dict[str, Any]:
        """The report as plain data (`loop report --json`)."""
        return asdict(self)


def _finish(row: CategoryStats, rewrites_apply: bool = True) -> CategoryStats:
    rated = row.likes + row.dislikes
    row.like_rate = row.likes / rated if rated else None
    exposed = row.pairs + row.model_paragraphs
    row.rewrite_rate = row.pairs / exposed if exposed and rewrites_apply else None
    like = row.like_rate if row.like_rate is not None else UNRATED_LIKE_RATE
    row.score = like * (1.0 - (row.rewrite_rate or 0.0))
    return row


def build_report(paragraphs: Iterable[Paragraph], feedback: Iterable[FeedbackRecord],
                 pairs: Iterable[PreferencePair]) -> LoopReport:
    """The loop report from plain data (see the module docstring for every number).

    Every kind of PARAGRAPH_KINDS and every text origin gets a row, even when empty.
    Ratings of whole documents or of images (kind not a paragraph kind) are skipped;
    `unknown` counts records whose kind or origin was not recognised.
    """
    kinds = {name: CategoryStats(name) for name in PARAGRAPH_KINDS}
    origins = {name: CategoryStats(name) for name in TEXT_ORIGINS}
    unknown: dict[str, int] = defaultdict(int)
    counts = {"paragraphs": 0, "ratings": 0, "pairs": 0}

    def rows(kind: str, origin: str) -> list[CategoryStats]:
        found = []
        for table, key, label in ((kinds, kind, "kind"), (origins, origin, "origin")):
            if key in table:
                found.append(table[key])
            else:
                unknown[f"{label}:{key or '-'}"] += 1
        return found

    for paragraph in paragraphs:
        counts["paragraphs"] += 1
        for row in rows(paragraph.kind, paragraph.origin):
            row.paragraphs += 1
            if paragraph.origin in MODEL_TEXT_ORIGINS:
                row.model_paragraphs += 1
    for record in feedback:
        if record.block_id is None or record.value == 0 or record.kind not in PARAGRAPH_KINDS:
            continue
        counts["ratings"] += 1
        for row in rows(record.kind, record.origin):
            if record.value > 0:
                row.likes += 1
            else:
                row.dislikes += 1
    for pair in pairs:
        counts["pairs"] += 1
        for row in rows(pair.kind, pair.rejected_origin):
            row.pairs += 1
    return LoopReport(
        by_kind=[_finish(row) for row in kinds.values()],
        by_origin=[_finish(row, row.name in MODEL_TEXT_ORIGINS) for row in origins.values()],
        unknown=dict(unknown), **counts)


def document_paragraphs(doc: Any) -> list[Paragraph]:
    """The paragraphs of a Document with their kind (by outline section) and origin.

    A document without an outline counts as one section (every paragraph an introduction),
    as composer/pairs_capture.py does when it stores pairs.
    """
    outline = getattr(doc, "outline", None)
    sections = len(outline.sections) if outline is not None and outline.sections else 1
    return [Paragraph(paragraph_kind(block.section, sections), block.origin)
            for block in doc.blocks if isinstance(block, TextBlock)]


def gather(services: Any) -> tuple[list[Paragraph], list[FeedbackRecord], list[PreferencePair]]:
    """(current paragraphs, every rating, every preference pair) from the app's database."""
    documents = services.documents
    paragraphs: list[Paragraph] = []
    for summary in documents.list(limit=ALL_DOCUMENTS):
        paragraphs.extend(document_paragraphs(documents.get(summary.id)))
    return paragraphs, list(services.feedback.all()), list(services.pairs.list())


def report_from_services(services: Any) -> LoopReport:
    """build_report over everything in the app's database."""
    return build_report(*gather(services))


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def format_report(report: LoopReport) -> str:
    """The report as two aligned text tables (by kind, by origin), weakest kinds named."""
    header = (f"{'':<13}{'paras':>6}{'model':>6}{'likes':>6}{'disl.':>6}{'pairs':>6}"
              f"{'like%':>7}{'rewr%':>7}{'score':>7}")
    lines = [f"{report.paragraphs} paragraphs, {report.ratings} paragraph ratings, "
             f"{report.pairs} preference pairs.", "", "By paragraph kind", header]
    for title, table in (("", report.by_kind), ("By origin (what wrote the text)",
                                                report.by_origin)):
        if title:
            lines += ["", title, header]
        for row in table:
            lines.append(f"{row.name:<13}{row.paragraphs:>6}{row.model_paragraphs:>6}"
                         f"{row.likes:>6}{row.dislikes:>6}{row.pairs:>6}"
                         f"{_rate(row.like_rate):>7}{_rate(row.rewrite_rate):>7}"
                         f"{row.score:>7.2f}")
    weakest = min(report.by_kind, key=lambda row: row.score)
    lines += ["", f"Weakest kind: {weakest.name} (score {weakest.score:.2f}); `loop sample` "
              "draws kinds with weight 1 - score."]
    if report.unknown:
        lines.append("Unrecognised: " + ", ".join(f"{k} x{v}" for k, v in
                                                  sorted(report.unknown.items())))
    return "\n".join(lines)


# --- the sampler ----------------------------------------------------------------------------


def item_kind(item: Any) -> str:
    """An item's kind: its `kind` attribute, or its "kind" key for a dict (a JSONL record)."""
    if isinstance(item, Mapping):
        return str(item.get("kind", ""))
    return str(getattr(item, "kind", ""))


def kind_weights(kinds: Iterable[str], scores: Mapping[str, float],
                 default_score: float = UNRATED_LIKE_RATE) -> dict[str, float]:
    """{kind: 1 - score} for the given kinds (a kind missing from `scores` gets
    default_score); ValueError for a score outside [0, 1]."""
    weights = {}
    for kind in kinds:
        score = scores.get(kind, default_score)
        if not 0.0 <= score <= 1.0:
            raise ValueError(f"score of kind {kind!r} is {score}; scores must be in [0, 1]")
        weights[kind] = 1.0 - score
    return weights


def sample_batch(items: Sequence[T], scores: Mapping[str, float], size: int, seed: int = 0,
                 *, kind_of: Callable[[Any], str] = item_kind,
                 default_score: float = UNRATED_LIKE_RATE) -> list[T]:
    """Draw `size` items: each draw picks a kind with probability proportional to
    (1 - score[kind]) among the kinds that have items, then an item of that kind uniformly.

    A kind scoring 1 is never drawn; kinds with no items are left out. Within a kind, items
    are drawn without replacement (a shuffled round) until the kind runs out, then a new
    round starts, so a batch repeats an item only when it must. Deterministic for a seed.
    ValueError when there are no items, size < 1, or every kind with items scores 1.
    """
    if size < 1:
        raise ValueError(f"size is {size}; draw at least 1 item")
    if not items:
        raise ValueError("nothing to sample from: there are no items (no preference pairs "
                         "yet: edit or rewrite model paragraphs in the app first)")
    groups: dict[str, list[T]] = defaultdict(list)
    for item in items:
        groups[kind_of(item)].append(item)
    weights = {kind: weight for kind, weight in
               kind_weights(sorted(groups), scores, default_score).items() if weight > 0}
    if not weights:
        raise ValueError(f"every kind with items ({', '.join(sorted(groups))}) scores 1: "
                         "nothing is weak, so there is nothing to draw")
    rng = random.Random(seed)
    names = list(weights)
    chosen = rng.choices(names, weights=[weights[name] for name in names], k=size)
    rounds: dict[str, list[T]] = {name: [] for name in names}
    batch = []
    for name in chosen:
        if not rounds[name]:
            rounds[name] = list(groups[name])
            rng.shuffle(rounds[name])
        batch.append(rounds[name].pop())
    return batch


def expected_shares(items: Sequence[Any], scores: Mapping[str, float], *,
                    kind_of: Callable[[Any], str] = item_kind,
                    default_score: float = UNRATED_LIKE_RATE) -> dict[str, float]:
    """{kind: share of draws} that sample_batch aims at: (1 - score) normalised over the
    kinds that have items (for reports and tests)."""
    weights = kind_weights(sorted({kind_of(item) for item in items}), scores, default_score)
    total = sum(weights.values())
    return {kind: (weight / total if total else 0.0) for kind, weight in weights.items()}
