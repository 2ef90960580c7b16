"""Planner: outline parsing, section counts and word budgets."""

from composer.planner import (
    PlannedHeading,
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
    lm = ScriptedLM([" Part Light: the light idea; why it matters\n2. Part River: stone facts; "
                     "examples\n3. Part Stone: garden facts; examples\n4. Part Garden: morning "
                     "facts; examples"])
    request = ComposeRequest("Lighthouses of the world", target_words=800)
    outline = Planner(lm).outline(request, "Lighthouses", GenerationConfig())
    assert outline.title == "Lighthouses"
    assert len(outline.sections) == 4
    assert outline.total_words == 800
    assert outline.sections[0].title == "Part Light"
    assert lm.calls[0][1] == "1."  # the reply is pre-filled as the reference does


def test_garbage_outline_reply_falls_back_to_generic_sections():
    lm = ScriptedLM(replies=["I cannot do that."] * RESAMPLE_TRIES)
    outline = Planner(lm).outline(ComposeRequest("x", target_words=600), "X", GenerationConfig())
    assert len(outline.sections) == 3 and outline.total_words == 600 and lm.replies == []
    assert all(section.title for section in outline.sections)


def test_long_instruction_gets_a_model_title_cut_at_the_closing_quote():
    lm = ScriptedLM(replies=['Tea Across Asia" and some trailing words'])
    request = ComposeRequest("Write a long article about tea.\nCover China and Japan.")
    assert Planner(lm).title(request, GenerationConfig()) == "Tea Across Asia"


def test_the_prompts_format_example_is_not_taken_as_a_section():
    text = "1. Section title: first key point; second key point\n2. Real one: a; first key point"
    sections = parse_outline(text, "en")
    assert [s.title for s in sections] == ["Real one"] and sections[0].key_points == ["a"]


# -- structured planning (JSON outline, checks, resampling, templates, streaming) ------------

import json  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from composer.genres import reads_as_instruction  # noqa: E402
from composer.outline_check import item_problem, normalise  # noqa: E402
from composer.planner import RESAMPLE_TRIES  # noqa: E402

NEWS = "Write a news story about the new city library opening for local readers"


def outline_json(title, sections):
    return json.dumps({"title": title, "sections": [
        {"title": t, "key_points": points} for t, points in sections]})


JUNK = [
    outline_json("Key Points", [("Introduction", ["Section Headings:", "List of Sections:"]),
                                ("Key Points", ["List of Sections:"]),
                                ("2018-03-04", ["2019-05-27"])]),
    outline_json(NEWS, [("<img src=\"a.png\">", ["www.example.com"]),
                        ("A title</p>", ["x"]), ("Section Headings", ["Key Points"])]),
    "I cannot do that.",
]


def plan(lm, instruction=NEWS, words=600, **kwargs):
    request = ComposeRequest(instruction, target_words=words)
    return list(Planner(lm, **kwargs).stream(request, GenerationConfig()))


def test_json_outline_is_asked_under_a_schema_and_read():
    reply = outline_json("City Library Opens Its Doors", [
        ("Opening day", ["the ribbon cutting", "first visitors"]),
        ("Inside the building", ["reading rooms"]), ("What readers say", ["reactions"])])
    lm = ScriptedLM([reply], json_schema=True)
    outline = plan(lm)[-1]
    assert outline.title == "City Library Opens Its Doors"
    assert [s.title for s in outline.sections] == ["Opening day", "Inside the building",
                                                   "What readers say"]
    assert outline.total_words == 600
    schema = json.loads(lm.calls[0][2].json_schema)
    assert schema["properties"]["sections"]["minItems"] == 3
    assert len(lm.calls) == 1


def test_junk_outlines_are_resampled_then_a_genre_template_fills_in():
    lm = ScriptedLM(list(JUNK), json_schema=True, responder=lambda m, p: "Key Points")
    outline = plan(lm)[-1]
    titles = [s.title for s in outline.sections]
    # "Introduction" alone is a fine title; everything else came from the news template.
    assert titles == ["Introduction", "What happened", "Who is involved"]
    assert outline.sections[0].key_points == []  # its points were scaffolding
    assert "the new city library opening" in outline.sections[1].key_points[0]
    assert all(item_problem(t, NEWS) is None for t in titles)
    prompts_sent = [call for call in lm.calls if call[2].json_schema]
    assert len(prompts_sent) == RESAMPLE_TRIES
    # later tries are sampled, each with its own seed
    assert [c[2].do_sample for c in prompts_sent] == [False, True, True]
    assert len({c[2].seed for c in prompts_sent}) == RESAMPLE_TRIES
    assert outline.title == "The new city library opening"  # not the instruction copied


def test_resampling_keeps_valid_sections_and_replaces_invalid_ones():
    first = outline_json("Library Day", [("Opening day", ["ribbon"]), ("Key Points", ["x"]),
                                         ("Opening day", ["again"])])
    second = outline_json("Other", [("Opening day", ["dup"]), ("The new shelves", ["books"]),
                                    ("Readers react", ["queues"])])
    outline = plan(ScriptedLM([first, second], json_schema=True))[-1]
    assert [s.title for s in outline.sections] == ["Opening day", "The new shelves",
                                                   "Readers react"]
    assert outline.title == "Library Day"


def test_a_short_title_like_instruction_stays_the_title():
    reply = outline_json("Something else", [("A", ["a"]), ("Bee keeping", ["b"]),
                                            ("Hives", ["c"])])
    outline = plan(ScriptedLM([reply], json_schema=True), instruction="The secret life of bees")[-1]
    assert outline.title == "The secret life of bees"


def test_a_copied_instruction_is_never_the_title_of_an_instruction():
    reply = outline_json(NEWS, [("Opening day", ["a"]), ("Shelves", ["b"]), ("Readers", ["c"])])
    lm = ScriptedLM([reply, 'Write a news story about the new city library"'], json_schema=True)
    assert plan(lm)[-1].title == "The new city library opening"


def test_outline_streams_sections_before_it_is_complete():
    reply = outline_json("Library Day", [("Opening day", ["a"]), ("Shelves", ["b"]),
                                         ("Readers", ["c"])])
    outlines = plan(ScriptedLM([reply], json_schema=True))
    # each heading shows while its key points are written, then the checked section
    shown = [[(s.title, isinstance(s, PlannedHeading)) for s in o.sections] for o in outlines]
    assert shown[:4] == [[("Opening day", True)], [("Opening day", False)],
                         [("Opening day", False), ("Shelves", True)],
                         [("Opening day", False), ("Shelves", False)]]
    assert [len(o.sections) for o in outlines][4:] == [3, 3, 3]
    assert not any(isinstance(s, PlannedHeading) for s in outlines[-1].sections)
    assert all(s.words == 0 for o in outlines[:-1] for s in o.sections)
    assert outlines[-1].total_words == 600


class WordEmbedder:
    """A bag-of-words embedder: texts sharing words are similar (deterministic)."""

    name = "words"
    dim = 64

    def encode(self, texts):
        vectors = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in text.lower().split():
                vectors[row, sum(map(ord, word.strip(".,"))) % self.dim] += 1
        return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-9)


def test_off_topic_key_points_are_dropped():
    reply = outline_json("Library Day", [
        ("Opening day", ["the library opening", "quarterly tax returns"]),
        ("Shelves", ["new city library shelves"]), ("Readers", ["local readers"])])
    outline = plan(ScriptedLM([reply], json_schema=True), embedder=WordEmbedder())[-1]
    assert outline.sections[0].key_points == ["the library opening"]


def test_models_without_a_schema_still_get_checked_line_outlines():
    lm = ScriptedLM(["1. Key Points: Section Headings:; List of Sections:\n2. 2018-03-04: a\n"
                     "3. Opening day: the ribbon"] * RESAMPLE_TRIES + ['Library Opening Day"'])
    outline = plan(lm)[-1]
    assert outline.sections[0].title == "Opening day"
    assert all(lm_call[2].json_schema is None for lm_call in lm.calls)


@pytest.mark.slow
def test_embedded_model_plans_outlines_whose_every_title_is_valid(embedded_lm):
    briefs = [("Write a 500-word guide to birdwatching in city parks for beginners.", 400),
              (NEWS, 400), ("The history and science of lighthouses", 600)]
    for instruction, words in briefs:
        request = ComposeRequest(instruction, target_words=words)
        outline = Planner(embedded_lm).outline(request, None, GenerationConfig())
        assert len(outline.sections) == section_count(words)
        assert outline.total_words == words
        assert item_problem(outline.title, "") is None
        assert not reads_as_instruction(outline.title)
        titles = [section.title for section in outline.sections]
        assert len({normalise(title) for title in titles}) == len(titles)
        for title in titles:
            assert item_problem(title, instruction) is None, (instruction, title)


def test_key_points_that_repeat_their_title_or_name_a_part_are_dropped():
    reply = outline_json("Rooftop Tomatoes", [
        ("Use a drip irrigation system", ["use a drip irrigation system.", "timers save water"]),
        ("Overview", ["Introduction", "Conclusion", "why tomatoes like the sun"]),
        ("Staking", ["stakes and cages"])])
    outline = plan(ScriptedLM([reply], json_schema=True),
                   instruction="Tips for growing tomatoes on a rooftop garden")[-1]
    assert outline.sections[0].key_points == ["timers save water"]
    assert outline.sections[1].key_points == ["why tomatoes like the sun"]


def test_a_section_is_not_the_article_title_and_does_not_shout():
    reply = outline_json("Library Day", [("Library Day", ["opening"]), ("BEST BOOKS ON SHELF",
                                                                        ["new shelves"]),
                                         ("Readers", ["queues"]), ("Opening hours", ["times"])])
    outline = plan(ScriptedLM([reply], json_schema=True))[-1]
    assert [s.title for s in outline.sections] == ["Best Books On Shelf", "Readers",
                                                   "Opening hours"]
