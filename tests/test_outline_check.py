"""Outline checks (composer/outline_check.py) and genre templates (composer/genres.py)."""

from __future__ import annotations

import pytest

from composer.genres import choose_genre, headline, subject_of, template_sections
from composer.outline_check import clean_item, is_copy, item_problem

NEWS = "Write a news story about the new city library opening for local readers"


@pytest.mark.parametrize("item", [
    "Key Points", "Section Headings", "Section Headings:", "List of Sections:", "Key Points:",
    "Section 2", "Part 3", "要点", "部分标题", "第一部分",
    "2018-03-04", "2019-05-27", "March 4, 2018", "2018年3月4日",
    '<img src="birds.jpg">', "A day in the park</p>", "Birds **in** parks", "&lt;&lt;birds&gt;&gt;",
    "See https://example.com", "www.birds.org", "photo.jpg",
    "", "   ", "1.", "---",
])
def test_each_bad_item_seen_from_small_models_is_rejected(item):
    assert item_problem(item, "Write a guide to birdwatching in city parks") is not None


@pytest.mark.parametrize("item", [
    "Introduction", "Conclusion:", "Conclusion", "Choosing binoculars", "Birds of the city",
    "引言", "长城的起源", "The 1969 Moon landing", "Part of the landscape",
])
def test_real_titles_pass(item):
    assert item_problem(item, "Write a guide to birdwatching in city parks") is None


def test_a_copy_of_the_instruction_is_rejected():
    assert item_problem(NEWS, NEWS) is not None
    assert item_problem(NEWS.upper() + ".", NEWS) is not None
    assert is_copy("Write a news story about the new city library opening", NEWS)
    assert not is_copy("City library opens its doors", NEWS)


def test_clean_item_strips_numbers_quotes_and_trailing_colons():
    assert clean_item('2. "Conclusion:"') == "Conclusion"
    assert clean_item("  Birds  of the   park ") == "Birds of the park"
    assert clean_item("1. The Basics of Birdwatching") == "The Basics of Birdwatching"


@pytest.mark.parametrize("instruction,genre", [
    (NEWS, "news"), ("写一则关于小区停水的通知", "notice"),
    ("A beginner's guide to sourdough", "howto"), ("如何种植番茄", "howto"),
    ("A week-long trip to Kyoto", "travel"), ("A review of the Kindle Paperwhite", "review"),
    ("The history of the printing press", "history"), ("Why the sky is blue", "explainer"),
])
def test_genre_is_chosen_from_the_instruction(instruction, genre):
    assert choose_genre(instruction) == genre


def test_subject_and_headline_come_from_an_instruction():
    assert subject_of(NEWS, "en") == "the new city library opening"
    assert headline(NEWS, "en") == "The new city library opening"
    assert subject_of("Write a 500-word guide to birdwatching in city parks for beginners.",
                      "en") == "birdwatching in city parks"
    assert subject_of("请写一篇关于长城历史的文章", "zh") == "长城历史"


@pytest.mark.parametrize("count", [1, 3, 5, 7])
def test_templates_give_count_distinct_sections_on_the_subject(count):
    sections = template_sections(NEWS, "en", count)
    assert len(sections) == count
    assert len({s.title for s in sections}) == count
    assert all(any("library" in p for p in s.key_points) for s in sections)
    assert all(item_problem(s.title, NEWS) is None for s in sections)
