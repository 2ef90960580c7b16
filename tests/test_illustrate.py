"""Illustrate: slot parsing and completion, captions, selection."""

from composer.illustrate import (
    Illustrator,
    auto_image_count,
    complete_slots,
    fallback_caption,
    parse_choice,
    parse_slots,
)
from composer.types import GenerationConfig, ImageCandidate
from tests.fakes import ScriptedLM


def test_parse_slots_reads_tags_in_order_without_duplicates_or_out_of_range():
    assert parse_slots("<Seg3>, <Seg1> and <Seg3>, <Seg99>", 5) == [3, 1]
    assert parse_slots("Seg 2 and #4", 5) == [2, 4]
    assert parse_slots("none", 5) == []


def test_complete_slots_fills_evenly_and_trims():
    assert complete_slots([], 3, 9) == [1, 4, 7]
    assert complete_slots([0], 2, 10) == [0, 7]
    assert complete_slots([5, 1, 2], 2, 10) == [1, 5]
    assert complete_slots([], 5, 3) == [0, 1, 2]


def test_auto_count_scales_with_words_and_respects_paragraphs():
    assert auto_image_count(800, 10) == 3
    assert auto_image_count(100, 10) == 1
    assert auto_image_count(100_000, 8) == 8


def test_parse_choice_takes_the_first_valid_letter_with_fallback_a():
    assert parse_choice(" C, because", 4) == 2
    assert parse_choice("D", 3) == 0
    assert parse_choice("nothing", 4) == 0


def test_choose_slots_uses_the_model_answer_with_prefilled_tag():
    lm = ScriptedLM(replies=["2>, <Seg0>"])
    slots = Illustrator(lm).choose_slots(["p"] * 6, 2, "en", GenerationConfig())
    assert slots == [0, 2]
    assert lm.calls[0][1].endswith("<Seg")


def test_choose_slots_auto_falls_back_when_the_model_names_none():
    lm = ScriptedLM(replies=["no idea"])
    paragraphs = ["word " * 100] * 8
    assert len(Illustrator(lm).choose_slots(paragraphs, None, "en", GenerationConfig())) == 3


def test_caption_stops_at_closing_quote_and_falls_back_to_the_paragraph():
    lm = ScriptedLM(replies=['a red lighthouse on a cliff" extra', ""])
    illustrator = Illustrator(lm)
    assert illustrator.caption("Coasts", [], "p", "en", GenerationConfig()) == "a red lighthouse on a cliff"
    paragraph = "Boats leave the harbor at dawn. Later they return."
    assert illustrator.caption("Coasts", [], paragraph, "en", GenerationConfig()) == fallback_caption(
        paragraph, "en") == "Boats leave the harbor at dawn."


def test_select_by_score_or_by_model_letter():
    candidates = [ImageCandidate("a", "cat", 0.2), ImageCandidate("b", "dog", 0.9),
                  ImageCandidate("c", "cow", 0.5)]
    lm = ScriptedLM(replies=[" C"])
    illustrator = Illustrator(lm)
    assert illustrator.select(candidates, "ctx", "score", "en", GenerationConfig()) == 1
    assert illustrator.select(candidates, "ctx", "model", "en", GenerationConfig()) == 2
    user = lm.calls[0][0][-1].content
    assert "A. cat" in user and "C. cow" in user


def test_captions_about_the_prompt_or_repeated_are_not_used():
    from composer.illustrate import usable_caption

    assert usable_caption("a lighthouse at dusk", [], "en")
    assert not usable_caption("The Last Paragraph", [], "en")
    assert not usable_caption("an image for this article", [], "en")
    assert not usable_caption("a lighthouse at dusk", ["A lighthouse at dusk"], "en")
    assert not usable_caption("two", [], "en")
    assert not usable_caption("The history of tea", [], "en", title="The History of Tea")


def test_fallback_caption_drops_quotes():
    assert fallback_caption('"Quoted start here. Then more."', "en") == "Quoted start here."
