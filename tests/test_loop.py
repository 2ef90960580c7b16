"""composer/loop.py: paragraph kinds, the like / rewrite report and the (1 - score) sampler,
on hand-made plain data (no database)."""

from __future__ import annotations

from collections import Counter

import pytest

from composer.loop import (
    Paragraph,
    build_report,
    document_paragraphs,
    expected_shares,
    format_report,
    paragraph_kind,
    sample_batch,
)
from composer.types import (
    Document,
    FeedbackRecord,
    ImageBlock,
    Outline,
    PreferencePair,
    SectionPlan,
    TextBlock,
)


def test_paragraph_kind_first_last_and_body():
    assert paragraph_kind(0, 1) == "introduction"
    assert paragraph_kind(0, 4) == "introduction"
    assert [paragraph_kind(i, 4) for i in range(4)] == ["introduction", "body", "body",
                                                        "conclusion"]
    assert paragraph_kind(1, 2) == "conclusion"
    assert paragraph_kind(3, 1) == "body"  # a section index past a one-section outline


def test_document_paragraphs_use_the_outline_and_skip_images():
    doc = Document(id="d", slug="d", title="T", instruction="T",
                   outline=Outline("T", [SectionPlan("a"), SectionPlan("b"), SectionPlan("c")]),
                   blocks=[TextBlock("x", 0), ImageBlock("cap", section=0),
                           TextBlock("y", 1, origin="manual"), TextBlock("z", 2,
                                                                         origin="rewrite")])
    assert document_paragraphs(doc) == [Paragraph("introduction", "compose"),
                                        Paragraph("body", "manual"),
                                        Paragraph("conclusion", "rewrite")]


def rating(value, kind, origin="compose", block_id=1):
    return FeedbackRecord("d", block_id, "u", value, kind=kind, origin=origin)


def pair(kind, rejected_origin="compose", op="manual"):
    return PreferencePair([{"role": "user", "content": "q"}], "old", "new", op, kind=kind,
                          rejected_origin=rejected_origin)


@pytest.fixture
def report():
    paragraphs = ([Paragraph("introduction", "compose")] * 3 + [Paragraph("introduction",
                                                                          "manual")]
                  + [Paragraph("body", "compose")] * 6 + [Paragraph("body", "expand")] * 2)
    feedback = [rating(1, "introduction"), rating(1, "introduction"),
                rating(-1, "introduction", "manual"), rating(-1, "body", "expand"),
                rating(1, "body"), rating(1, "body"), rating(-1, "body"),
                rating(0, "body"),                       # a cleared rating: not counted
                rating(1, "", block_id=None),            # the whole document: not counted
                rating(-1, "", origin="search")]         # an image: not counted
    pairs = [pair("introduction"), pair("body"), pair("body", "expand", "rewrite"),
             pair("body", "rewrite")]
    return build_report(paragraphs, feedback, pairs)


def row(table, name):
    return next(r for r in table if r.name == name)


def test_report_by_kind(report):
    intro, body, conclusion = (row(report.by_kind, k) for k in ("introduction", "body",
                                                                "conclusion"))
    assert (report.paragraphs, report.ratings, report.pairs) == (12, 7, 4)
    assert (intro.paragraphs, intro.model_paragraphs, intro.likes, intro.dislikes,
            intro.pairs) == (4, 3, 2, 1, 1)
    assert intro.like_rate == pytest.approx(2 / 3)
    assert intro.rewrite_rate == pytest.approx(1 / (1 + 3))
    assert intro.score == pytest.approx(2 / 3 * 3 / 4)
    assert (body.paragraphs, body.model_paragraphs, body.likes, body.dislikes,
            body.pairs) == (8, 8, 2, 2, 3)
    assert body.like_rate == pytest.approx(0.5)
    assert body.rewrite_rate == pytest.approx(3 / 11)
    assert body.score == pytest.approx(0.5 * 8 / 11)
    # no paragraphs, ratings or pairs: unrated (0.5) and never rewritten
    assert (conclusion.like_rate, conclusion.rewrite_rate, conclusion.score) == (None, None,
                                                                                 0.5)
    assert report.kind_scores() == {"introduction": intro.score, "body": body.score,
                                    "conclusion": 0.5}


def test_report_by_origin(report):
    compose, expand, rewrite, manual = (row(report.by_origin, o) for o in
                                        ("compose", "expand", "rewrite", "manual"))
    assert (compose.paragraphs, compose.likes, compose.dislikes, compose.pairs) == (9, 4, 1, 2)
    assert compose.rewrite_rate == pytest.approx(2 / 11)
    assert compose.score == pytest.approx(4 / 5 * 9 / 11)
    assert (expand.paragraphs, expand.dislikes, expand.pairs) == (2, 1, 1)
    assert expand.like_rate == 0.0 and expand.score == 0.0
    assert expand.rewrite_rate == pytest.approx(1 / 3)
    # a rewrite's text was replaced once and none is left: rewrite rate 1, score 0
    assert (rewrite.paragraphs, rewrite.pairs, rewrite.rewrite_rate, rewrite.score) == (
        0, 1, 1.0, 0.0)
    # a person's text is never the rejected side of a pair: no rewrite rate
    assert (manual.paragraphs, manual.dislikes, manual.rewrite_rate) == (1, 1, None)
    assert manual.score == 0.0
    assert not report.unknown


def test_report_text_and_json(report):
    text = format_report(report)
    assert "By paragraph kind" in text and "By origin" in text
    assert "Weakest kind: body" in text
    data = report.to_json()
    assert data["by_kind"][0]["name"] == "introduction"
    assert data["pairs"] == 4


def test_unknown_kinds_and_origins_are_counted_not_crashing():
    report = build_report([Paragraph("preface", "compose")], [], [pair("body", "alien")])
    assert report.unknown == {"kind:preface": 1, "origin:alien": 1}


# --- the sampler ----------------------------------------------------------------------------


def items_of(counts: dict[str, int]) -> list[dict]:
    return [{"kind": kind, "n": i} for kind, count in counts.items() for i in range(count)]


def test_sampler_proportions_follow_one_minus_score():
    items = items_of({"introduction": 5, "body": 40, "conclusion": 3})
    scores = {"introduction": 0.2, "body": 0.6, "conclusion": 0.9}
    batch = sample_batch(items, scores, size=20000, seed=1)
    shares = Counter(item["kind"] for item in batch)
    expected = expected_shares(items, scores)
    assert expected == pytest.approx({"introduction": 0.8 / 1.3, "body": 0.4 / 1.3,
                                      "conclusion": 0.1 / 1.3})
    for kind, share in expected.items():
        assert shares[kind] / 20000 == pytest.approx(share, abs=0.015)
    # within a kind, items are drawn uniformly (rounds without replacement)
    per_item = Counter(item["n"] for item in batch if item["kind"] == "introduction")
    assert set(per_item) == set(range(5))
    assert max(per_item.values()) - min(per_item.values()) <= 1


def test_a_kind_scoring_one_is_never_drawn():
    items = items_of({"introduction": 4, "body": 4, "conclusion": 4})
    batch = sample_batch(items, {"introduction": 1.0, "body": 0.5, "conclusion": 0.0},
                         size=5000, seed=3)
    kinds = Counter(item["kind"] for item in batch)
    assert kinds["introduction"] == 0
    assert kinds["conclusion"] / 5000 == pytest.approx(2 / 3, abs=0.03)


def test_kinds_without_items_are_left_out_and_items_repeat_only_when_needed():
    items = items_of({"body": 3})
    batch = sample_batch(items, {"introduction": 0.0, "body": 0.5}, size=3, seed=0)
    assert sorted(item["n"] for item in batch) == [0, 1, 2]
    assert len(sample_batch(items, {"body": 0.5}, size=7, seed=0)) == 7


def test_sampler_is_deterministic_for_a_seed_and_takes_dataclasses():
    items = [pair(kind) for kind in ("introduction", "body", "body", "conclusion")]
    scores = {"introduction": 0.3, "body": 0.5, "conclusion": 0.1}
    first = sample_batch(items, scores, size=50, seed=7)
    assert [id(p) for p in first] == [id(p) for p in sample_batch(items, scores, 50, seed=7)]
    assert [id(p) for p in first] != [id(p) for p in sample_batch(items, scores, 50, seed=8)]


def test_sampler_errors_say_why():
    with pytest.raises(ValueError, match="no items"):
        sample_batch([], {"body": 0.5}, size=3)
    with pytest.raises(ValueError, match="scores 1"):
        sample_batch(items_of({"body": 2, "conclusion": 1}), {"body": 1.0, "conclusion": 1.0},
                     size=3)
    with pytest.raises(ValueError, match="at least 1"):
        sample_batch(items_of({"body": 2}), {"body": 0.5}, size=0)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        sample_batch(items_of({"body": 2}), {"body": 1.5}, size=2)
