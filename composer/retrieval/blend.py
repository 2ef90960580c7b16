"""How the retrieval signals become one score, and the parrot penalty.

For the union of the signals' shortlists:

    score = (1 - clip) * caption cosine + clip * image cosine + keyword * BM25 (0..1) - penalty

An image missing from one signal's shortlist gets that shortlist's lowest score (its true
score is at most that), or 0 when the signal found nothing. The parrot penalty (REFERENCE
section 4) is text_penalty x (share of the query's words the image shows as text) x (share of
the image that text covers). A caption that merely spells the image's visible text is no
evidence of what it depicts: its caption and keyword scores are replaced by the shortlist's
lowest and 0, and so are a picture of text's (models/visual_text.py) when the query asks for
no text, whatever its caption says.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from composer.retrieval.contract import Hit
from models.ocr import caption_spells_text, text_match_share
from models.visual_text import TextPictureCheck

# Defaults measured on the labelled set of bench/retrieval_set.py
# (bench/bench_retrieval_quality.py).
DEFAULT_TEXT_PENALTY = 3.0
DEFAULT_KEYWORD_WEIGHT = 0.15
DEFAULT_CLIP_WEIGHT = 0.5


@dataclass
class Weights:
    """How the signals are blended; see the module docstring."""

    text_penalty: float = DEFAULT_TEXT_PENALTY
    keyword: float = DEFAULT_KEYWORD_WEIGHT
    clip: float = DEFAULT_CLIP_WEIGHT
    distrust_spelled_captions: bool = True


@dataclass
class ScoredImage:
    """One image's blended score and the parts it was made of (for reports and tests)."""

    image_id: str
    score: float
    caption: float = 0.0
    image: float = 0.0
    keyword: float = 0.0
    penalty: float = 0.0
    spelled_caption: bool = False
    text_picture: bool = False  # a picture of text, for a query that wants none


def blend(query: str, caption_hits: dict[str, float], image_hits: dict[str, float],
          keyword_hits: dict[str, float], *, captions: dict[str, str],
          visible: dict[str, tuple[list[str], float]], weights: Weights, clip_share: float,
          text_pictures: TextPictureCheck, path: Callable[[str], Path]) -> list[ScoredImage]:
    """Every shortlisted image's ScoredImage, best first (ties by id); see the module docstring.

    `captions` and `visible` ({id: (words, area)}) describe the shortlisted images;
    `clip_share` is the image signal's weight (0 without one); `path` gives an image's file
    for the picture-of-text check.
    """
    ids = set(caption_hits) | set(image_hits) | set(keyword_hits)
    caption_floor = min(caption_hits.values(), default=0.0)
    image_floor = min(image_hits.values(), default=0.0)
    scored = []
    for image_id in ids:
        caption = caption_hits.get(image_id, caption_floor)
        image = image_hits.get(image_id, image_floor)
        keyword = keyword_hits.get(image_id, 0.0)
        words, area = visible.get(image_id, ([], 0.0))
        spelled = caption_spells_text(captions.get(image_id, ""), words)
        picture = text_pictures.demote(query, image_id, words, area, path)
        if (spelled and weights.distrust_spelled_captions) or picture:
            caption, keyword = caption_floor, 0.0  # the caption is no evidence
        penalty = weights.text_penalty * text_match_share(query, words) * area
        score = ((1 - clip_share) * caption + clip_share * image
                 + weights.keyword * keyword - penalty)
        scored.append(ScoredImage(image_id, float(score), float(caption), float(image),
                                  float(keyword), float(penalty), spelled, picture))
    scored.sort(key=lambda item: (-item.score, item.image_id))
    return scored


def top_scores(scores: dict[str, float], n: int, exclude: frozenset[str],
               allowed: set[str] | None) -> dict[str, float]:
    """The n best non-zero scores that pass the filters."""
    kept: list[Hit] = [(image_id, score) for image_id, score in scores.items()
                       if score > 0 and image_id not in exclude
                       and (allowed is None or image_id in allowed)]
    kept.sort(key=lambda item: (-item[1], item[0]))
    return dict(kept[:n])
