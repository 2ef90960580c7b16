"""Planner: outline parsing, section counts and word budgets."""

from composer.planner import (
    Planner,
    complete_sections,
    distribute_words,
    parse_outline,
    section_count,
    title_from_instruction,
)
from composer.types import ComposeRequest, GenerationConfig
from tests.fakes import ScriptedLM


def test_budgets_sum_exactly_to_target():
    for total in (50, 799, 800, 801, 1234, 10_000):
        for count in range(1, 13):
            budgets = distribute_words(total, count)
            assert len(budgets) == count
            assert sum(budgets) == total
            assert max(budgets) - min(budgets) <= total // count


def test_first_and_last_sections_are_shorter_in_long_outlines():
    budgets = distribute_words(1000, 5)
    assert budgets[0] < budgets[1] and budgets[-1] < budgets[2]


def test_section_count_scales_with_length_within_limits():
    assert section_count(50) == 1
    assert section_count(800) == 4
    assert section_count(10_000) == 12


def test_parse_outline_reads_titles_and_points_and_skips_noise():
    text = (
        "1. The Launch: Saturn V; the crew\n"
        "Some chatter the model added\n"
        "2) **Landing** - the Eagle; Tranquility Base\n"
        "3. The Launch: duplicate title\n"
        "4、回家：返回地球；溅落\n"
        "5. Splashdown:\n- the capsule lands\n- recovery ships\n"
    )
    sections = parse_outline(text, "en")
    assert [s.title for s in sections] == ["The Launch", "Landing", "回家", "Splashdown"]
    assert sections[3].key_points == ["the capsule lands", "recovery ships"]
    assert sections[0].key_points == ["Saturn V", "the crew"]
    assert sections[1].key_points == ["the Eagle", "Tranquility Base"]
    assert sections[2].key_points == ["返回地球", "溅落"]


def test_complete_sections_fills_with_generic_titles_and_ends_with_conclusion():
    parsed = parse_outline("1. Only one: a", "en")
    sections = complete_sections(parsed, 4, "en")
    assert [s.title for s in sections][0] == "Only one"
    assert len({s.title for s in sections}) == 4
    assert sections[-1].title == "Conclusion"


def test_title_is_the_instruction_when_it_reads_as_one():
    assert title_from_instruction("The history of tea.") == "The history of tea"
    assert title_from_instruction("Write about tea.\nMake it long.") is None
    assert title_from_instruction("x" * 500) is None


def test_outline_from_model_has_requested_sections_and_budgets():
    lm = ScriptedLM()
    request = ComposeRequest("Lighthouses of the world", target_words=800)
    outline = Planner(lm).outline(request, "Lighthouses", GenerationConfig())
    assert outline.title == "Lighthouses"
    assert len(outline.sections) == 4
    assert outline.total_words == 800
    assert outline.sections[0].title == "Part Light"
    assert lm.calls[0][1] == "1."  # the reply is pre-filled as the reference does


def test_garbage_outline_reply_falls_back_to_generic_sections():
    lm = ScriptedLM(replies=["I cannot do that."])
    outline = Planner(lm).outline(ComposeRequest("x", target_words=600), "X", GenerationConfig())
    assert len(outline.sections) == 3 and outline.total_words == 600
    assert all(section.title for section in outline.sections)


def test_long_instruction_gets_a_model_title_cut_at_the_closing_quote():
    lm = ScriptedLM(replies=['Tea Across Asia" and some trailing words'])
    request = ComposeRequest("Write a long article about tea.\nCover China and Japan.")
    assert Planner(lm).title(request, GenerationConfig()) == "Tea Across Asia"


def test_the_prompts_format_example_is_not_taken_as_a_section():
    text = "1. Section title: first key point; second key point\n2. Real one: a; first key point"
    sections = parse_outline(text, "en")
    assert [s.title for s in sections] == ["Real one"] and sections[0].key_points == ["a"]
