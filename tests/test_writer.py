"""Writer: paragraph splitting, clean-up, budgets, and the section writer's prompts."""

import pytest

from composer.sections import SectionWriter, paragraph_focus
from composer.types import GenerationConfig, Outline, SectionPlan
from composer.writer import (
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


def test_each_paragraph_prompt_holds_outline_previous_text_focus_and_budget():
    first = ("Green tea came to Japan with Buddhist monks who had studied in China. They "
             "planted seeds near their temples and drank the tea to stay awake through long "
             "hours of meditation.")
    second = ("Matcha is whisked, not steeped, in a wide bowl. The powder is made from shaded "
              "leaves that are steamed, dried and ground between stones into a fine green "
              "dust.")
    lm = ScriptedLM(replies=[first, second])
    outline = Outline("Tea", [SectionPlan("Origins", ["China"], 180),
                              SectionPlan("Japan", ["monks", "matcha"], 180)])
    steps = list(SectionWriter(lm).write_section(
        outline, 1, "Earlier text about China.", "", "en", GenerationConfig(candidates=1)))
    kept = [step.kept.paragraphs for _, step in steps if step.kept is not None]
    assert kept == [[first], [second]]
    asked_first, asked_second = (call[0][-1].content for call in lm.calls)
    assert "1. Origins: China" in asked_first and "2. Japan: monks; matcha" in asked_first
    assert "Earlier text about China." in asked_first and "paragraph 1 of 2" in asked_first
    assert "covers: monks." in asked_first and "covers: matcha." in asked_second
    # The second paragraph is grounded on the first one, as kept.
    assert first[-60:] in asked_second
    assert "about 90 words" in asked_first
    assert lm.calls[0][2].max_new_tokens == token_budget(90, "en", 512)


def test_paragraph_focus_shares_out_key_points():
    section = SectionPlan("Japan", ["monks", "matcha", "ceremony"], 300)
    assert [paragraph_focus(section, part, 3) for part in range(3)] == [
        "monks", "matcha", "ceremony"]
    assert [paragraph_focus(section, part, 2) for part in range(2)] == [
        "monks; matcha", "ceremony"]
    assert paragraph_focus(section, 4, 5) == "monks; matcha; ceremony"
    assert paragraph_focus(SectionPlan("Japan", [], 90), 0, 1) == "Japan"


def test_titles_in_quotes_are_dropped_but_quotations_stay():
    assert clean_paragraph('"The Ultimate Guide to Local Bird Watching: A Beginner\'s Guide"',
                           "x") == ""
    assert clean_paragraph('"Births and Bites: A Guide" Birds eat seeds.', "x") == \
        "Birds eat seeds."
    for quotation in ('"I love birds," she said. They sing.', '"Hello" is what she said.',
                      '"Birds sing." That is true.'):
        assert clean_paragraph(quotation, "x") == quotation


def test_a_paragraph_wholly_in_quotes_loses_them_and_a_stray_one_goes():
    assert clean_paragraph('"In recent years the harbor grew. Ships came."', "x") == \
        "In recent years the harbor grew. Ships came."
    assert clean_paragraph("“Ships came to the harbor.”", "x") == "Ships came to the harbor."
    assert clean_paragraph("The harbor shaped trade.\"", "x") == "The harbor shaped trade."
    spoken = '"Ships come," she said, "and go."'
    assert clean_paragraph(spoken, "x") == spoken


@pytest.mark.parametrize("written, kept", [
    ("3. The Process of Beekeeping: bees collect nectar from flowers in spring.",
     "bees collect nectar from flowers in spring."),
    ("Building Technology and Engineering. The story begins with a stone tower on the coast.",
     "The story begins with a stone tower on the coast."),
    ("Making Honey The journey of nectar ends in wax cells sealed by the bees.",
     "The journey of nectar ends in wax cells sealed by the bees."),
])
def test_a_heading_written_into_the_paragraph_is_dropped(written, kept):
    assert clean_paragraph(written, "Making honey") == kept


@pytest.mark.parametrize("prose", [
    "New York City. It grew around its harbor, and the harbor grew with it.",
    "In 1820 the harbor froze. Ships waited outside for weeks.",
    "Making honey takes time: bees fan the nectar until it thickens.",
])
def test_prose_that_looks_like_a_heading_stays(prose):
    assert clean_paragraph(prose, "Making honey") == prose
