"""Writer: paragraph splitting, clean-up, budgets and the streamed section call."""

from composer.types import GenerationConfig, Outline, SectionPlan
from composer.writer import (
    SectionWriter,
    clean_paragraph,
    drop_unfinished_sentence,
    paragraphs_for,
    previous_window,
    split_paragraphs,
    token_budget,
)
from tests.fakes import ScriptedLM


def test_blank_lines_collapse_and_paragraphs_split():
    text = "First line\ncontinues here.\n\n\n\nSecond one.\n \n\nThird."
    assert split_paragraphs(text) == ["First line continues here.", "Second one.", "Third."]


def test_headings_and_the_repeated_section_title_are_dropped():
    text = "## The Harbor\n\nThe Harbor\nBoats come in.\n\n**Section 2**\n\n- A list item."
    assert split_paragraphs(text, "The Harbor") == ["Boats come in.", "A list item."]


def test_unfinished_trailing_sentence_is_cut_only_when_a_sentence_ends():
    assert drop_unfinished_sentence("One. Two is cut off mid") == "One."
    assert drop_unfinished_sentence("Complete sentence.") == "Complete sentence."
    assert drop_unfinished_sentence("no sentence end at all") == "no sentence end at all"
    assert drop_unfinished_sentence("他说。然后") == "他说。"


def test_previous_window_is_bounded():
    text = "word " * 1000
    window = previous_window(text, 100)
    assert len(window) <= 100 and not window.startswith(" ")


def test_budgets():
    assert paragraphs_for(200) == 2 and paragraphs_for(10) == 1
    assert token_budget(200, "en", 4096) > 200
    assert token_budget(5000, "en", 1024) == 1024


def test_clean_paragraph_keeps_prose():
    assert clean_paragraph("  Hello   world.  ", "x") == "Hello world."


def test_section_prompt_holds_outline_previous_text_and_budget():
    lm = ScriptedLM(replies=["Body text."])
    outline = Outline("Tea", [SectionPlan("Origins", ["China"], 180), SectionPlan("Japan", [], 180)])
    pieces = list(SectionWriter(lm).stream_section(
        outline, 1, "Earlier text about China.", "", "en", GenerationConfig()))
    assert "".join(pieces) == "Body text."
    messages, prefix, config = lm.calls[0]
    user = messages[-1].content
    assert "1. Origins: China" in user and "2. Japan" in user
    assert "Earlier text about China." in user
    assert "about 180 words" in user
    assert config.max_new_tokens == token_budget(180, "en", 512)


def test_labels_and_lead_ins_that_small_models_add_are_removed():
    text = '[Article] Title: The Sea\n\nHere is the full article:\n\nSection Title: Waves roll in.'
    assert split_paragraphs(text) == ["The Sea", "Waves roll in."]


def test_chinese_text_is_cut_at_chinese_sentence_ends():
    assert drop_unfinished_sentence("唐代饮茶成风！宋代点茶盛行？明代散茶") == "唐代饮茶成风！宋代点茶盛行？"
    assert drop_unfinished_sentence("他说：“茶是好东西。”然后") == "他说：“茶是好东西。”"
    assert drop_unfinished_sentence("茶起源于中国。") == "茶起源于中国。"
    assert split_paragraphs("茶起源于中国。\n\n\n唐代饮茶成风！") == ["茶起源于中国。", "唐代饮茶成风！"]


def test_previous_window_starts_after_a_sentence_end_in_chinese():
    text = "茶" * 500 + "。" + "唐代饮茶成风，" * 60
    window = previous_window(text, 430)
    assert len(window) <= 430 and window.startswith("唐代")


def test_chinese_paragraphs_are_counted_in_characters():
    assert paragraphs_for(300, "zh") == 2 and paragraphs_for(300, "en") == 3
