"""models/opera.py: OPERA decoding on a tiny random Llama, and its pure parts on small tensors.

With no penalty and every token a candidate, OPERA's candidate log-softmax is the full
log-softmax, so it must pick what `model.generate` beam search picks, token for token.
"""

from __future__ import annotations

import threading

import pytest
import torch

from composer.types import ChatMessage, GenerationConfig
from models import opera
from models.lm import TransformersLM
from models.opera import (
    COLUMN_SCALE,
    OperaSettings,
    grounding_penalty,
    opera_generate,
    overtrust_penalty,
    rollback_position,
)
from tests.tiny_models import build_tiny_llama, tiny_lm_dir  # noqa: F401

VOCAB = 400
PROMPT = torch.tensor([[5, 17, 33, 90, 120, 7, 64]])
NO_EOS = [2]  # a token this tiny model does not emit after PROMPT


@pytest.fixture(scope="module")
def model():
    return build_tiny_llama(VOCAB, eos_id=2, pad_id=0)


def hf_beam_search(model, beams: int, max_new_tokens: int, eos: int) -> list[int]:
    with torch.inference_mode():
        output = model.generate(PROMPT, num_beams=beams, do_sample=False,
                                max_new_tokens=max_new_tokens, eos_token_id=eos, pad_token_id=0,
                                repetition_penalty=1.0)
    reply = output[0, PROMPT.shape[1]:].tolist()
    return reply[:reply.index(eos)] if eos in reply else reply


class CancelAfter(threading.Event):
    """An Event that reads as set from its n-th check on."""

    def __init__(self, checks: int) -> None:
        super().__init__()
        self.left = checks

    def is_set(self) -> bool:
        self.left -= 1
        return self.left < 0


def test_settings_and_efficient_preset():
    assert OperaSettings() == OperaSettings(50.0, 15, 5, 1.0, 512, 3)
    efficient = OperaSettings.efficient()
    assert (efficient.threshold, efficient.num_attn_candidates) == (25, 1)
    assert OperaSettings.efficient(beams=5).beams == 5


@pytest.mark.parametrize("beams, eos", [(1, 2), (3, 2), (4, 16), (4, 8)])
def test_without_penalty_and_all_candidates_it_is_beam_search(model, beams, eos):
    config = GenerationConfig(max_new_tokens=16, num_beams=beams, repetition_penalty=1.0)
    settings = OperaSettings(penalty_weights=0.0, num_attn_candidates=VOCAB, beams=1)
    assert opera_generate(model, PROMPT, config, [eos], settings=settings) == \
        hf_beam_search(model, beams, 16, eos)


def test_is_deterministic_and_stops_at_max_new_tokens(model):
    config = GenerationConfig(max_new_tokens=20)
    first = opera_generate(model, PROMPT, config, NO_EOS)
    assert first == opera_generate(model, PROMPT, config, NO_EOS)
    assert len(first) == 20
    assert len(opera_generate(model, PROMPT, config.replace(max_new_tokens=5), NO_EOS)) == 5


def test_stops_at_eos_and_leaves_it_out(model):
    config = GenerationConfig(max_new_tokens=20)
    settings = OperaSettings.efficient(beams=1)  # one beam, one candidate: greedy
    reply = opera_generate(model, PROMPT, config, NO_EOS, settings=settings)
    eos = reply[3]
    assert eos not in reply[:3]
    assert opera_generate(model, PROMPT, config, [eos, 2], settings=settings) == reply[:3]


def test_cancel_returns_early_with_the_best_beam(model):
    config = GenerationConfig(max_new_tokens=20)
    cancelled = threading.Event()
    cancelled.set()
    assert opera_generate(model, PROMPT, config, NO_EOS, cancel=cancelled) == []
    partial = opera_generate(model, PROMPT, config, NO_EOS, cancel=CancelAfter(4))
    assert len(partial) == 4


def test_attention_implementation_is_restored(model):
    before = model.config._attn_implementation
    assert before != "eager"
    opera_generate(model, PROMPT, GenerationConfig(max_new_tokens=3), NO_EOS)
    assert model.config._attn_implementation == before

    class Broken(threading.Event):
        def is_set(self) -> bool:
            assert model.config._attn_implementation == "eager"
            raise RuntimeError("stop")

    with pytest.raises(RuntimeError):
        opera_generate(model, PROMPT, GenerationConfig(max_new_tokens=3), NO_EOS,
                       cancel=Broken())
    assert model.config._attn_implementation == before


def test_penalty_is_largest_on_the_column_every_later_row_attends_to():
    size = 6
    attn = torch.full((size, size), 0.05).tril()
    attn[1:, 1] = 0.6  # token 1 is the "summary token"
    attn = attn / attn.sum(dim=-1, keepdim=True)
    penalty, column = overtrust_penalty(attn, scale_factor=50.0)
    assert int(column) == 1
    expected = COLUMN_SCALE * torch.prod(50.0 * attn[1:, 1].double())
    assert torch.isclose(penalty, expected)
    # batched maps, and huge products stay finite
    long = torch.eye(300)[None].repeat(2, 1, 1)
    long[1, :, 0] = 1.0
    penalty, column = overtrust_penalty(long, scale_factor=50.0)
    assert column.tolist()[1] == 0 and torch.isfinite(penalty).all()
    assert penalty[1] > penalty[0]


def test_grounding_penalty_rewards_attention_on_the_span():
    rows = torch.tensor([[0.1, 0.5, 0.3, 0.1], [0.4, 0.1, 0.1, 0.4]])
    assert grounding_penalty(rows, (1, 3)).tolist() == pytest.approx([-0.8, -0.2])


def test_rollback_decision():
    both = torch.stack([torch.full((20,), 12), torch.cat([torch.arange(4), torch.full((16,), 12)])])
    assert rollback_position(both, threshold=15) == 13
    assert rollback_position(both, threshold=16) is None
    one_beam_moves_on = both.clone()
    one_beam_moves_on[0, -1] = 14
    assert rollback_position(one_beam_moves_on, threshold=15) is None
    early = torch.full((2, 20), 9)
    assert rollback_position(early, threshold=15) is None
    assert rollback_position(torch.full((2, 20), 11), threshold=15) == 12
    new_location = torch.tensor([[3] * 16 + [12] * 4])  # 12 is the location only 4 times
    assert rollback_position(new_location, threshold=15) is None


def test_retrospection_rolls_back_and_bans_the_token(model, monkeypatch):
    """Every step reports reply position 10 as the summary column: once the history has it
    more than `threshold` times and position 11 exists, decoding restarts there, banning the
    tokens chosen at 11, at most K times."""
    restarts = []
    real_start, real_penalty = opera.start_beams, opera.overtrust_penalty

    def counting_start(search, tokens, scores, locations):
        restarts.append((tokens.shape[1], {k: set(v) for k, v in search.banned.items()}))
        return real_start(search, tokens, scores, locations)

    def column_ten(attn_map, scale_factor):
        penalty, column = real_penalty(attn_map, scale_factor)
        return penalty, torch.full_like(column, 10)

    monkeypatch.setattr(opera, "start_beams", counting_start)
    monkeypatch.setattr(opera, "overtrust_penalty", column_ten)
    config = GenerationConfig(max_new_tokens=16)
    settings = OperaSettings(threshold=3, num_attn_candidates=2)
    unbanned = opera_generate(model, PROMPT, config, NO_EOS,
                              settings=OperaSettings(threshold=1000, num_attn_candidates=2))
    restarts.clear()
    reply = opera_generate(model, PROMPT, config, NO_EOS, settings=settings)
    assert len(reply) == 16
    assert [length for length, _ in restarts] == [0, 11, 11]  # prompt, then 2 = K rollbacks
    banned = restarts[-1][1][11]
    assert unbanned[11] in banned and reply[11] not in banned


def test_grounding_span_changes_nothing_structural(model):
    config = GenerationConfig(max_new_tokens=12)
    reply = opera_generate(model, PROMPT, config, NO_EOS, grounding=(1, 5))
    assert len(reply) == 12 and all(0 <= token < VOCAB for token in reply)


def test_transformers_lm_streams_opera_once(tiny_lm_dir):  # noqa: F811
    if not hasattr(GenerationConfig(), "decoding"):
        pytest.skip("GenerationConfig has no decoding field yet")
    lm = TransformersLM(tiny_lm_dir, device="cpu", name="tiny")
    messages = [ChatMessage("user", "Write about the river and the old stone bridge.")]
    config = GenerationConfig(max_new_tokens=12).replace(decoding="opera")
    pieces = list(lm.stream(messages, config))
    assert len(pieces) <= 1
    ids = lm.prompt_ids(messages, 12)
    expected = opera_generate(lm.model, torch.tensor([ids]), config, lm.eos_ids)
    assert "".join(pieces) == lm.tokenizer.decode(expected, skip_special_tokens=True)
    assert lm.model.config._attn_implementation != "eager"
