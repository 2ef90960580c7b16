"""models/generate.py BatchDecoder and TransformersLM.stream_candidates on a tiny random Llama:
k drafts of one prompt decoded together (one prefill, k-row decode steps)."""

from __future__ import annotations

import threading

import pytest
import torch

from composer.types import ChatMessage, GenerationConfig
from models.generate import BatchDecoder
from models.lm import TransformersLM
from tests.tiny_models import tiny_lm_dir  # noqa: F401

MESSAGES = [ChatMessage("system", "Be brief."),
            ChatMessage("user", "Write about the river and the old stone bridge.")]


@pytest.fixture(scope="module")
def lm(tiny_lm_dir):  # noqa: F811
    return TransformersLM(tiny_lm_dir, device="cpu", name="tiny")


def joined(steps: list[list[str]], count: int) -> list[str]:
    return ["".join(step[row] for step in steps) for row in range(count)]


def prompt(lm: TransformersLM) -> torch.Tensor:
    return torch.tensor([lm.prompt_ids(MESSAGES, 32)], dtype=torch.long)


@pytest.mark.parametrize("sample", [False, True])
def test_row_zero_is_the_reply_a_single_stream_gives(lm, sample):
    config = GenerationConfig(max_new_tokens=20, do_sample=sample, seed=5)
    texts = joined(list(lm.stream_candidates(MESSAGES, config, 3)), 3)
    assert texts[0] == "".join(lm.stream(MESSAGES, config))


def test_other_rows_are_sampled_drafts_that_differ_and_repeat_with_the_seed(lm):
    config = GenerationConfig(max_new_tokens=20, seed=1)
    first = joined(list(lm.stream_candidates(MESSAGES, config, 3)), 3)
    again = joined(list(lm.stream_candidates(MESSAGES, config, 3)), 3)
    assert first == again
    assert len(set(first)) == 3
    other_seed = joined(list(lm.stream_candidates(MESSAGES, config.replace(seed=2), 3)), 3)
    assert other_seed[0] == first[0] and other_seed[1:] != first[1:]


def test_sampled_rows_keep_to_top_k(lm):
    # With top_k 1 a sampled row can only take the most likely token: it is the greedy reply.
    config = GenerationConfig(max_new_tokens=16, seed=7, top_k=1)
    texts = joined(list(lm.stream_candidates(MESSAGES, config, 3)), 3)
    assert texts[1] == texts[2] == texts[0]


def test_sample_top_draws_only_inside_top_p():
    from models.generate import sample_top

    scores = torch.tensor([[5.0, 4.9, 0.0, -1.0, -2.0]])  # two tokens hold ~99% of the mass
    config = GenerationConfig(temperature=1.0, top_k=0, top_p=0.9)
    generator = torch.Generator().manual_seed(0)
    drawn = {sample_top(scores, config, generator) for _ in range(200)}
    assert drawn == {0, 1}
    narrow = config.replace(top_p=0.3)
    assert {sample_top(scores, narrow, generator) for _ in range(50)} == {0}


def test_finished_rows_leave_the_batch_and_the_rest_go_on(lm):
    config = GenerationConfig(max_new_tokens=12, seed=0)
    ids = prompt(lm)
    decoder = BatchDecoder(lm.model, ids, config, 3, lm.eos_ids)
    steps = []
    for number, step in enumerate(decoder):
        steps.append(step)
        if number == 2:
            decoder.finish(1)
    assert all(step[1] is None for step in steps[3:])
    assert any(step[0] is not None for step in steps[3:])
    full = [[] for _ in range(3)]
    for step in BatchDecoder(lm.model, ids, config, 3, lm.eos_ids):
        for row, token in enumerate(step):
            if token is not None:
                full[row].append(token)
    # Dropping row 1 from the cache changes nothing for rows 0 and 2.
    kept = [[step[row] for step in steps if step[row] is not None] for row in range(3)]
    assert kept[0] == full[0] and kept[2] == full[2] and kept[1] == full[1][:3]


def test_stop_strings_end_each_row_separately(lm):
    config = GenerationConfig(max_new_tokens=24, seed=0)
    texts = joined(list(lm.stream_candidates(MESSAGES, config, 3)), 3)
    stop = texts[1][3:6]
    assert stop.strip()
    stopped = joined(list(lm.stream_candidates(MESSAGES, config.replace(stop=(stop,)), 3)), 3)
    for row in range(3):
        assert stopped[row] == texts[row][:texts[row].find(stop)] if stop in texts[row] \
            else stopped[row] == texts[row]


def test_cancel_stops_every_row(lm):
    cancel = threading.Event()
    config = GenerationConfig(max_new_tokens=40, seed=0)
    steps = []
    for step in lm.stream_candidates(MESSAGES, config, 3, cancel=cancel):
        steps.append(step)
        if len(steps) == 2:
            cancel.set()
    assert len(steps) == 2


def test_candidates_advanced_from_different_threads(lm):
    from tests.support_threads import drain_across_threads

    config = GenerationConfig(max_new_tokens=16, seed=0)
    expected = list(lm.stream_candidates(MESSAGES, config, 2))
    assert drain_across_threads(lm.stream_candidates(MESSAGES, config, 2)) == expected
    assert torch.is_grad_enabled() and not torch.is_inference_mode_enabled()


def test_quantized_model_decodes_candidates(tiny_lm_dir):  # noqa: F811
    quantized = TransformersLM(tiny_lm_dir, device="cpu", quantize="int8")
    config = GenerationConfig(max_new_tokens=12, seed=0)
    texts = joined(list(quantized.stream_candidates(MESSAGES, config, 3)), 3)
    assert texts[0] == "".join(quantized.stream(MESSAGES, config))


@pytest.mark.parametrize("count", [0, 9, True, "3"])
def test_count_outside_its_range_is_refused(lm, count):
    with pytest.raises(ValueError, match="count is"):
        lm.stream_candidates(MESSAGES, GenerationConfig(), count)
