"""models/lm.py, models/generate.py, models/quantize.py on a tiny random Llama.

The tiny model (2 layers, hidden 32, a byte-level BPE trained on a few sentences) is built
once per session and loaded by path, as a real model is. Parity tests compare the streamed
text with Hugging Face `generate` on the same weights.
"""

from __future__ import annotations

import threading

import pytest
import torch

from composer.types import ChatMessage, GenerationConfig
from models.generate import generate_tokens
from models.lm import LanguageModel, TransformersLM, check_generation_config
from models.quantize import Int4Linear, Int8Linear, quantize_model
from models.text_stream import TextAssembler, cut_at_stop, longest_stop_overlap
from tests.tiny_models import build_tiny_lm, build_tokenizer, tiny_lm_dir  # noqa: F401

MESSAGES = [ChatMessage("system", "Be brief."),
            ChatMessage("user", "Write about the river and the old stone bridge.")]


@pytest.fixture(scope="session")
def tiny_dir(tiny_lm_dir):  # noqa: F811
    return tiny_lm_dir


@pytest.fixture(scope="session")
def lm(tiny_dir):
    return TransformersLM(tiny_dir, device="cpu", name="tiny")


def hf_reply(lm: TransformersLM, ids: list[int], config: GenerationConfig) -> str:
    """The reply Hugging Face generate() gives for the same prompt ids and settings."""
    options = dict(max_new_tokens=config.max_new_tokens, do_sample=config.do_sample,
                   num_beams=config.num_beams, repetition_penalty=config.repetition_penalty,
                   no_repeat_ngram_size=config.no_repeat_ngram_size,
                   pad_token_id=lm.tokenizer.pad_token_id)
    if config.do_sample:
        options.update(temperature=config.temperature, top_p=config.top_p, top_k=config.top_k)
        torch.manual_seed(config.seed)
    with torch.inference_mode():
        output = lm.model.generate(torch.tensor([ids]), **options)
    reply = output[0, len(ids):].tolist()
    if lm.tokenizer.eos_token_id in reply:
        reply = reply[:reply.index(lm.tokenizer.eos_token_id)]
    return lm.tokenizer.decode(reply, skip_special_tokens=True)


def test_follows_the_protocol(lm):
    assert isinstance(lm, LanguageModel)
    assert lm.name == "tiny" and lm.context_length == 512
    assert lm.count_tokens("the river") >= 2


@pytest.mark.parametrize("penalty, ngram", [(1.0, 0), (1.1, 0), (1.3, 3)])
def test_greedy_stream_matches_hf_generate(lm, penalty, ngram):
    config = GenerationConfig(max_new_tokens=40, repetition_penalty=penalty,
                              no_repeat_ngram_size=ngram)
    pieces = list(lm.stream(MESSAGES, config))
    assert len(pieces) > 1  # really streamed
    assert "".join(pieces) == hf_reply(lm, lm.prompt_ids(MESSAGES, 40), config)


def test_sampling_is_reproducible_and_matches_hf(lm):
    config = GenerationConfig(max_new_tokens=30, do_sample=True, temperature=1.5, top_k=50,
                              top_p=0.95, seed=7)
    first = "".join(lm.stream(MESSAGES, config))
    assert first == "".join(lm.stream(MESSAGES, config))
    assert first != "".join(lm.stream(MESSAGES, config.replace(seed=8)))
    assert first == hf_reply(lm, lm.prompt_ids(MESSAGES, 30), config)


def test_stop_string_ends_the_reply_and_is_not_yielded(lm):
    config = GenerationConfig(max_new_tokens=40)
    full = "".join(lm.stream(MESSAGES, config))
    stop = full[12:15]
    pieces = list(lm.stream(MESSAGES, config.replace(stop=(stop, "never-there"))))
    assert "".join(pieces) == full[:full.find(stop)]
    assert not any(stop in piece for piece in pieces)


def test_max_new_tokens_caps_the_reply(lm):
    ids = torch.tensor([lm.prompt_ids(MESSAGES, 5)])
    tokens = list(generate_tokens(lm.model, ids, GenerationConfig(max_new_tokens=5),
                                  lm.eos_ids))
    assert 1 <= len(tokens) <= 5
    short = "".join(lm.stream(MESSAGES, GenerationConfig(max_new_tokens=5)))
    assert short == hf_reply(lm, ids[0].tolist(), GenerationConfig(max_new_tokens=5))


def test_cancel_stops_between_tokens(lm):
    cancel = threading.Event()
    stream = lm.stream(MESSAGES, GenerationConfig(max_new_tokens=40), cancel=cancel)
    assert next(stream)
    cancel.set()
    assert list(stream) == []
    assert list(lm.stream(MESSAGES, GenerationConfig(), cancel=cancel)) == []


def test_prefix_prefills_the_reply_and_is_not_yielded(lm):
    config = GenerationConfig(max_new_tokens=30)
    ids = lm.prompt_ids(MESSAGES, 30, prefix="The river")
    assert lm.tokenizer.decode(ids).endswith("<|im_start|>assistant\nThe river")
    reply = "".join(lm.stream(MESSAGES, config, prefix="The river"))
    assert reply == hf_reply(lm, ids, config)
    assert reply != "".join(lm.stream(MESSAGES, config))


def test_beam_search_yields_the_generate_result_once(lm):
    config = GenerationConfig(max_new_tokens=20, num_beams=3)
    pieces = list(lm.stream(MESSAGES, config))
    assert len(pieces) == 1
    assert pieces[0] == hf_reply(lm, lm.prompt_ids(MESSAGES, 20), config)


def test_seeded_beam_sampling_repeats_and_leaves_the_global_rng_alone(lm):
    config = GenerationConfig(max_new_tokens=12, num_beams=2, do_sample=True, seed=3)
    torch.manual_seed(123)
    expected_draw = torch.rand(1)
    torch.manual_seed(123)
    first = "".join(lm.stream(MESSAGES, config))
    assert torch.equal(torch.rand(1), expected_draw)  # the caller's random stream is as it was
    assert "".join(lm.stream(MESSAGES, config)) == first


def test_long_prompt_is_cut_from_the_left_keeping_the_system_message(tiny_dir):
    small = TransformersLM(tiny_dir, device="cpu", context_length=64)
    long_turns = [ChatMessage("system", "Be brief."),
                  ChatMessage("user", "old question " * 40),
                  ChatMessage("assistant", "old answer " * 40),
                  ChatMessage("user", "history is written in letters " * 30 + "LAST WORDS")]
    ids = small.prompt_ids(long_turns, 16)
    text = small.tokenizer.decode(ids)
    assert len(ids) <= 64 - 16
    assert "Be brief." in text and "LAST WORDS" in text and "old answer" not in text
    assert text.endswith("<|im_start|>assistant\n")
    assert "".join(small.stream(long_turns, GenerationConfig(max_new_tokens=16))) is not None
    # A reply as long as the context: the prompt keeps half, the reply stops at the end.
    assert len(small.prompt_ids(long_turns, 64)) <= 32
    assert small.count_tokens("".join(small.stream(
        long_turns, GenerationConfig(max_new_tokens=64, repetition_penalty=1.0)))) <= 64


def test_an_oversized_system_message_goes_before_the_question(tiny_dir):
    small = TransformersLM(tiny_dir, device="cpu", context_length=64)
    rules = ChatMessage("system", "rules " * 100)
    ids = small.prompt_ids([rules, ChatMessage("user", "LAST WORDS")], 16)
    assert len(ids) <= 48 and "LAST WORDS" in small.tokenizer.decode(ids)
    assert len(small.prompt_ids([rules], 16)) == 48  # alone: its last tokens are kept


@pytest.mark.parametrize("changes, message", [
    ({"num_beams": 7}, "num_beams is 7; it must be between 1 and 6"),
    ({"max_new_tokens": 0}, "max_new_tokens is 0; it must be between 1 and 4096"),
    ({"max_new_tokens": 5000}, "max_new_tokens is 5000"),
    ({"temperature": 0.0}, "temperature is 0.0; it must be greater than 0"),
    ({"top_p": 0.0}, r"top_p is 0.0; it must be in \(0, 1\]"),
    ({"top_p": 1.5}, "top_p is 1.5"),
    ({"top_k": -1}, "top_k is -1; it must be at least 0"),
    ({"repetition_penalty": 0.0}, "repetition_penalty is 0.0"),
    ({"max_new_tokens": 2.5}, "max_new_tokens must be a whole number"),
])
def test_bad_settings_fail_before_any_work(lm, changes, message):
    config = GenerationConfig().replace(**changes)
    with pytest.raises(ValueError, match=message):
        lm.stream(MESSAGES, config)  # raises on the call, not on iteration
    with pytest.raises(ValueError, match="stop"):
        check_generation_config(GenerationConfig(stop="abc"))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="messages is empty"):
        lm.stream([], GenerationConfig())


def test_bad_load_options_name_the_value(tiny_dir):
    with pytest.raises(ValueError, match="quantize 'int3'"):
        TransformersLM(tiny_dir, device="cpu", quantize="int3")
    with pytest.raises(ValueError, match="dtype 'float8'"):
        TransformersLM(tiny_dir, device="cpu", dtype="float8")


@pytest.mark.parametrize("mode", ["int8", "int4"])
def test_quantized_model_streams(tiny_dir, mode):
    quantized = TransformersLM(tiny_dir, device="cpu", quantize=mode)
    kinds = {type(module) for module in quantized.model.modules()}
    assert Int8Linear in kinds and torch.nn.Linear not in kinds
    assert (Int4Linear in kinds) == (mode == "int4")
    assert "".join(quantized.stream(MESSAGES, GenerationConfig(max_new_tokens=12)))


@pytest.mark.parametrize("layer_type", [Int8Linear, Int4Linear])
@pytest.mark.parametrize("rows", [1, 40])  # one decoded token; a prompt's prefill
def test_quantized_linear_is_close_to_float(layer_type, rows):
    torch.manual_seed(0)
    linear = torch.nn.Linear(64, 48, bias=True)
    x = torch.randn(2, rows, 64)
    expected = linear(x)
    got = layer_type(linear)(x)
    assert got.shape == expected.shape and got.dtype == torch.float32
    error = (got - expected).abs().max() / expected.abs().max()
    assert error < (0.02 if layer_type is Int8Linear else 0.12)


def test_quantize_model_rejects_unknown_modes():
    with pytest.raises(ValueError, match="quantize 'int2'"):
        quantize_model(torch.nn.Linear(4, 4), "int2")


def test_plain_format_without_a_chat_template(tmp_path):
    folder = build_tiny_lm(tmp_path / "plain", chat_template=False)
    plain = TransformersLM(folder, device="cpu")
    text = plain.tokenizer.decode(plain.prompt_ids(MESSAGES, 8, prefix="Once"))
    assert text.endswith("system: Be brief.\nuser: Write about the river and the old stone "
                         "bridge.\nassistant: Once")


def test_text_assembler_never_splits_characters():
    tokenizer = build_tokenizer()
    text = "Café in Italy, 长城 and ☕ espresso."
    ids = tokenizer.encode(text, add_special_tokens=False)
    assembler = TextAssembler(tokenizer, [])
    pieces = [assembler.push(token_id) for token_id in ids] + [assembler.flush()]
    assert "".join(pieces) == text
    assert not any("\ufffd" in piece for piece in pieces)


def test_text_assembler_holds_back_a_possible_stop_string():
    tokenizer = build_tokenizer()
    ids = tokenizer.encode("The river runs. END of it", add_special_tokens=False)
    assembler = TextAssembler(tokenizer, [], stops=("END",))
    pieces = [assembler.push(token_id) for token_id in ids]
    assert "".join(pieces) == "The river runs. " and assembler.stopped
    assert assembler.flush() == ""


def test_stop_helpers():
    assert longest_stop_overlap("abc<Se", ["<Seg>", "xyz"]) == 3
    assert longest_stop_overlap("abc", ["<Seg>"]) == 0
    assert cut_at_stop("one\n\ntwo", ["\n\n"]) == "one"
    assert cut_at_stop("one", ["\n\n", ""]) == "one"


@pytest.mark.parametrize("sample", [False, True])
def test_stream_advanced_from_different_threads_matches_one_thread(lm, sample):
    # Gradio steps a streaming handler from different worker threads; grad mode is per
    # thread, so a mode held across a yield made later steps fail ("Inference tensors
    # cannot be saved for backward").
    from tests.support_threads import drain_across_threads

    config = GenerationConfig(max_new_tokens=24, do_sample=sample, seed=3)
    expected = "".join(lm.stream(MESSAGES, config))
    pieces = drain_across_threads(lm.stream(MESSAGES, config))
    assert "".join(pieces) == expected and len(pieces) > 3
    assert torch.is_grad_enabled() and not torch.is_inference_mode_enabled()


def test_stream_leaves_no_inference_mode_behind_in_the_stepping_thread(lm):
    from tests.support_threads import next_in_new_thread

    stream = lm.stream(MESSAGES, GenerationConfig(max_new_tokens=8))
    modes = []

    def first_step() -> None:
        next(stream)
        modes.append(torch.is_inference_mode_enabled())

    thread = threading.Thread(target=first_step)
    thread.start()
    thread.join()
    assert modes == [False]
    next_in_new_thread(stream)
    stream.close()


def test_quantized_stream_advanced_from_different_threads(tiny_dir):
    from tests.support_threads import drain_across_threads

    quantized = TransformersLM(tiny_dir, device="cpu", quantize="int8")
    config = GenerationConfig(max_new_tokens=16)
    assert "".join(drain_across_threads(quantized.stream(MESSAGES, config))) == "".join(
        quantized.stream(MESSAGES, config))
