"""composer/checked.py: drafts checked and the best kept, a corrective rewrite, the clean
sentences as the last resort, Stop; on a batching and a one-at-a-time scripted backend."""

from __future__ import annotations

import threading

import pytest

from composer.checked import KEPT, REWRITTEN, STOPPED, TRIMMED, CheckContext, CheckedWriter
from composer.prompts import Prompt
from composer.types import ChatMessage, GenerationConfig
from tests.fakes import BatchScriptedLM, ScriptedLM
from tests.test_planner import WordEmbedder

PROMPT = Prompt([ChatMessage("user", "Write about 40 words in 1 paragraph about herons.")])
CONFIG = GenerationConfig(candidates=3, max_new_tokens=200)
EARLIER = "Herons stand still at the edge of the pond for minutes at a time before they strike."
CONTEXT = CheckContext(EARLIER, "en", "Birdwatching in city parks", "Herons: how they hunt",
                       "Herons", words=40)
META = "In this article, we will explore herons. I hope this helps!"
CLEAN = "A heron spears small fish with its sharp bill and swallows them head first."
OTHER = "Young herons learn to hunt by watching adults along the shallow margins."
REPEAT = EARLIER + " They wait."


def run(writer, prompt=PROMPT, config=CONFIG, context=CONTEXT, cancel=None):
    steps = list(writer.write(prompt, config, context, cancel))
    kept = steps[-1].kept
    assert kept is not None and all(step.kept is None for step in steps[:-1])
    return steps, kept


def test_the_best_draft_of_a_batch_is_kept_and_the_lead_streams():
    lm = BatchScriptedLM([[META, CLEAN, REPEAT]])
    steps, kept = run(CheckedWriter(lm))
    assert kept.paragraphs == [CLEAN] and kept.how == KEPT and kept.drafts == 3
    assert kept.check.ok and "new" in kept.check.passed and "clean" in kept.check.passed
    assert "".join(step.delta for step in steps) == META  # draft 0 is what streamed
    assert lm.calls == [] and lm.batch_calls[0][2] == 3


def test_the_most_on_topic_passing_draft_wins():
    lm = BatchScriptedLM([["Tax returns are due in April for most people in the city.",
                           CLEAN, OTHER]])
    context = CheckContext(EARLIER, "en", "how a heron spears fish", "a heron spears fish",
                           "Herons", words=40)
    _, kept = run(CheckedWriter(lm, WordEmbedder(), min_relevance=0.0), context=context)
    assert kept.paragraphs == [CLEAN] and "on_topic" in kept.check.passed


def test_when_no_draft_passes_a_rewrite_names_the_problems():
    lm = BatchScriptedLM([[META, REPEAT, "I'm sure many of you"], [OTHER, META, META]])
    steps, kept = run(CheckedWriter(lm))
    assert kept.paragraphs == [OTHER] and kept.how == REWRITTEN and kept.drafts == 6
    repair = lm.batch_calls[1][0][-1].content
    assert "Problems:" in repair and ("talks about the article" in repair
                                      or "repeats what the article already says" in repair)
    assert EARLIER[:40] in repair  # the rewrite sees the end of the article
    assert any(step.restart and "rewriting" in step.note for step in steps)


def test_when_the_rewrite_fails_too_the_clean_sentences_are_kept():
    drafts = [f"{CLEAN} I hope this helps! I hope you enjoyed it. Let me know.", META, REPEAT]
    lm = BatchScriptedLM([drafts, [META, META, META]])
    _, kept = run(CheckedWriter(lm))
    assert kept.how == TRIMMED and kept.paragraphs == [CLEAN] and kept.check.ok


def test_nothing_is_kept_when_no_sentence_is_clean():
    lm = BatchScriptedLM([[META, META, META], [META, "I'm sure many of you", META]])
    _, kept = run(CheckedWriter(lm))
    assert kept.paragraphs == [] and kept.how == TRIMMED


def test_a_draft_with_one_bad_sentence_is_cut_rather_than_rewritten():
    long_clean = f"{CLEAN} {OTHER} Herons nest high in the trees beside the lake."
    lm = BatchScriptedLM([[META, f"{long_clean} I hope this helps!", REPEAT]])
    steps, kept = run(CheckedWriter(lm))
    assert kept.how == TRIMMED and kept.paragraphs == [long_clean] and kept.check.ok
    assert len(lm.batch_calls) == 1  # no rewrite was needed


def test_a_one_at_a_time_backend_stops_drawing_at_the_first_draft_that_passes():
    lm = ScriptedLM(replies=[CLEAN])
    _, kept = run(CheckedWriter(lm))
    assert kept.paragraphs == [CLEAN] and kept.drafts == 1 and len(lm.calls) == 1


def test_a_one_at_a_time_backend_samples_the_next_drafts_with_new_seeds():
    lm = ScriptedLM(replies=[META, CLEAN])
    steps, kept = run(CheckedWriter(lm))
    assert kept.paragraphs == [CLEAN] and kept.drafts == 2
    first, second = (call[2] for call in lm.calls)
    assert not first.do_sample and second.do_sample and second.seed == first.seed + 1
    assert [step.restart for step in steps].count(True) == 1


@pytest.mark.parametrize("change", [{"num_beams": 3}, {"decoding": "opera"}])
def test_beams_and_opera_draw_their_drafts_one_at_a_time(change):
    lm = BatchScriptedLM([], replies=[META, CLEAN])
    _, kept = run(CheckedWriter(lm), config=CONFIG.replace(**change))
    assert kept.paragraphs == [CLEAN] and lm.batch_calls == []
    first, second = (call[2] for call in lm.calls)
    assert first.num_beams == CONFIG.replace(**change).num_beams
    assert first.decoding == CONFIG.replace(**change).decoding
    # The next draft is sampled: beam search and OPERA would give the same text again.
    assert (second.num_beams, second.decoding, second.do_sample) == (1, "default", True)


def test_stop_keeps_the_clean_sentences_of_the_lead_draft_as_far_as_it_got():
    cancel = threading.Event()
    lm = BatchScriptedLM([[CLEAN + " " + OTHER, META, META]])
    writer = CheckedWriter(lm)
    steps = []
    for step in writer.write(PROMPT, CONFIG, CONTEXT, cancel):
        steps.append(step)
        if len(steps) == 17:
            cancel.set()
    kept = steps[-1].kept
    assert kept.how == STOPPED and kept.paragraphs[0].startswith(CLEAN)
    assert len(lm.batch_calls) == 1  # no rewrite after Stop


def test_chinese_drafts_are_checked_in_chinese():
    context = CheckContext("茶起源于中国西南地区，已有几千年的历史。", "zh", "中国茶文化", "宋代点茶", "宋代",
                           words=40)
    lm = BatchScriptedLM([["The tea leaves were dried in the sun.", "本文将介绍宋代点茶。",
                           "宋代人用茶筅击拂茶汤，使其产生细密的泡沫，这种方法叫做点茶，在文人中非常流行。"]])
    _, kept = run(CheckedWriter(lm), context=context)
    assert kept.paragraphs == ["宋代人用茶筅击拂茶汤，使其产生细密的泡沫，这种方法叫做点茶，在文人中非常流行。"]
    assert kept.how == KEPT


def test_title_lines_inside_a_draft_are_dropped_and_edit_speak_is_cut():
    draft = (f'"Herons: tips for the pond\n\n{CLEAN} {OTHER}\n\nHere is a rewritten version with '
             "minor edits to improve clarity:")
    lm = BatchScriptedLM([[draft, META, META]])
    _, kept = run(CheckedWriter(lm))
    assert kept.paragraphs == [f"{CLEAN} {OTHER}"]


def test_clean_sentences_unquote_a_paragraph_whose_unfinished_end_was_cut():
    from composer.checked import clean_sentences

    draft = ('"Batteries last a day on one charge. They charge again in an hour." '
             "And then the")
    assert clean_sentences([draft], "", "en") == [
        "Batteries last a day on one charge. They charge again in an hour."]
