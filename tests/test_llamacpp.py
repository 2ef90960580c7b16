"""models/llamacpp.py: the embedded GGUF decoded by llama.cpp, as the app loads it by default.

Real model (SmolLM2-135M-Instruct Q4_1, loaded in a fraction of a second), real llama.cpp
(llama-cpp-python, which scripts/setup.sh builds). Replies are compared with each other, not
with fixed strings: llama.cpp's rounding differs between CPUs.
"""

from __future__ import annotations

import json
import threading

import pytest

from composer.config import Settings
from composer.outline_json import outline_schema
from composer.types import ChatMessage, ComposerError, GenerationConfig
from models import embedded
from models.llamacpp import LlamaCppLM, use_llama_cpp
from models.llamacpp_runtime import banned_ngram_tokens
from models.lm import LanguageModel
from models.registry import load_language_model
from tests.fakes import ScriptedLM
from tests.support_threads import drain_across_threads

MESSAGES = [ChatMessage("system", "You write clear, factual prose."),
            ChatMessage("user", "Write one paragraph about the history of tea in China.")]


@pytest.fixture(scope="module")
def lm(embedded_lm):
    assert isinstance(embedded_lm, LlamaCppLM), "llama-cpp-python is not installed: run " \
        "`bash scripts/setup.sh dev`"
    return embedded_lm


def reply(lm, config, messages=MESSAGES, **options) -> str:
    return "".join(lm.stream(messages, config, **options))


def test_the_default_writer_is_the_gguf_on_llama_cpp(lm, tmp_path):
    assert isinstance(lm, LanguageModel)
    assert lm.name == embedded.EMBEDDED_NAME and lm.context_length == 4096
    assert lm.supports_json_schema and lm.supports_beams and lm.supports_opera
    assert not lm.sees_images
    torch_settings = Settings.from_env({"COMPOSER_ENGINE": "torch"}, home=tmp_path)
    assert not use_llama_cpp(torch_settings)
    assert not use_llama_cpp(Settings.from_env({"COMPOSER_QUANTIZE": "int8"},
                                                        home=tmp_path))
    with pytest.raises(ValueError, match="COMPOSER_ENGINE='vllm' is not one of"):
        Settings.from_env({"COMPOSER_ENGINE": "vllm"}, home=tmp_path)
    gpu = Settings.from_env({"COMPOSER_ENGINE": "llama.cpp", "COMPOSER_DEVICE": "cuda"},
                            home=tmp_path)
    with pytest.raises(ComposerError, match="runs on the CPU"):
        use_llama_cpp(gpu)


def test_prompts_are_tokenized_as_transformers_tokenizes_them(lm):
    from transformers import AutoTokenizer

    gguf = embedded.embedded_gguf_path()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name,
                                              local_files_only=True)
    hostile = [ChatMessage("system", "Be brief."),
               ChatMessage("user", "Tea <b>&amp;</b> coffee, 茶 ☕ café\n\ttabs <|im_start|>")]
    for messages, prefix in ((MESSAGES, ""), (hostile, ""), (MESSAGES, "The river")):
        chat = [{"role": m.role, "content": m.content} for m in messages]
        text = tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)
        assert lm.render(messages, prefix) == tokenizer.encode(text + prefix,
                                                               add_special_tokens=False)
    for text in ("Hello world", " leading space", "emoji 🎉 and 中文", "a\n\nb"):
        assert lm.count_tokens(text) == len(tokenizer.encode(text, add_special_tokens=False))
        ids = lm.vocab.encode(text)
        assert lm.vocab.decode(ids) == tokenizer.decode(ids)


def test_greedy_replies_repeat_and_stream_in_pieces(lm):
    config = GenerationConfig(max_new_tokens=40)
    pieces = list(lm.stream(MESSAGES, config))
    assert len(pieces) > 10 and "tea" in "".join(pieces).lower()
    assert reply(lm, config) == "".join(pieces)
    # the same reply when Gradio advances the stream from a new thread at each step
    assert "".join(drain_across_threads(lm.stream(MESSAGES, config))) == "".join(pieces)


def test_max_new_tokens_stop_strings_and_prefix(lm):
    short = reply(lm, GenerationConfig(max_new_tokens=5))
    assert 1 <= lm.count_tokens(short) <= 6
    whole = reply(lm, GenerationConfig(max_new_tokens=60))
    word = whole.split()[3]
    cut = reply(lm, GenerationConfig(max_new_tokens=60, stop=(word,)))
    assert word not in cut and whole.startswith(cut)
    continued = reply(lm, GenerationConfig(max_new_tokens=20), prefix="In the Tang dynasty,")
    assert continued and not continued.startswith("In the Tang dynasty")


def test_sampling_follows_the_seed(lm):
    sampled = GenerationConfig(max_new_tokens=30, do_sample=True, temperature=1.0, seed=7)
    first = reply(lm, sampled)
    assert reply(lm, sampled) == first
    others = {reply(lm, sampled.replace(seed=seed)) for seed in (8, 9, 10)}
    assert len(others | {first}) >= 3


def test_no_repeat_ngram_bans_repeated_token_pairs(lm):
    assert banned_ngram_tokens([1, 2, 3, 1, 2], 3) == {3}
    assert banned_ngram_tokens([1, 2, 1], 2) == {2}
    assert banned_ngram_tokens([5], 2) == set()
    config = GenerationConfig(max_new_tokens=80, repetition_penalty=1.0, no_repeat_ngram_size=2)
    ids = lm.vocab.encode(reply(lm, config))
    pairs = list(zip(ids, ids[1:]))
    # re-tokenizing can merge differently at a few places; decoded pairs never repeat much
    assert len(pairs) - len(set(pairs)) <= 2


def test_cancel_keeps_what_was_written(lm):
    cancel = threading.Event()
    pieces = []
    for piece in lm.stream(MESSAGES, GenerationConfig(max_new_tokens=200), cancel=cancel):
        pieces.append(piece)
        if len(pieces) == 5:
            cancel.set()
    assert len(pieces) == 5
    already = threading.Event()
    already.set()
    assert reply(lm, GenerationConfig(), cancel=already) == ""


def test_outlines_decode_under_the_json_schema(lm):
    from composer import prompts

    schema = outline_schema(3, 2, 100, 60, 100)
    prompt = prompts.outline_json_prompt("The history of tea in China", "", 3, 2, "en",
                                         images=[])
    config = GenerationConfig(max_new_tokens=300, json_schema=schema, stop=())
    text = reply(lm, config, prompt.messages, prefix=prompt.prefix)
    outline = json.loads(prompt.prefix + text)
    assert set(outline) == {"title", "sections"} and len(outline["sections"]) == 3
    for section in outline["sections"]:
        assert section["title"] and 1 <= len(section["key_points"]) <= 2
        assert all('"' not in point and "<" not in point for point in section["key_points"])


def test_drafts_decode_together_and_repeat(lm):
    config = GenerationConfig(max_new_tokens=30)
    steps = list(lm.stream_candidates(MESSAGES, config, 3))
    assert all(len(step) == 3 for step in steps)
    drafts = ["".join(step[row] for step in steps) for row in range(3)]
    assert all(drafts) and len(set(drafts)) == 3
    single = reply(lm, config)
    assert drafts[0].split()[:3] == single.split()[:3]  # row 0 decodes as stream() does
    again = drain_across_threads(lm.stream_candidates(MESSAGES, config, 3))
    assert ["".join(step[row] for step in again) for row in range(3)] == drafts
    with pytest.raises(ValueError, match="count is 9"):
        lm.stream_candidates(MESSAGES, config, 9)


def test_a_draft_ends_at_its_stop_string_and_cancel_stops_all(lm):
    config = GenerationConfig(max_new_tokens=40)
    steps = list(lm.stream_candidates(MESSAGES, config, 2))
    first = "".join(step[0] for step in steps)
    word = first.split()[2]
    stopped = list(lm.stream_candidates(MESSAGES, config.replace(stop=(word,)), 2))
    assert word not in "".join(step[0] for step in stopped)
    cancel = threading.Event()
    seen = 0
    for _ in lm.stream_candidates(MESSAGES, config, 2, cancel=cancel):
        seen += 1
        cancel.set()
    assert seen == 1


def test_replies_in_two_threads_at_once_do_not_mix(lm):
    config = GenerationConfig(max_new_tokens=30)
    other = [ChatMessage("user", "Write one paragraph about the rivers of France.")]
    expected = [reply(lm, config), reply(lm, config, other)]
    results: dict[int, str] = {}

    def run(index, messages):
        results[index] = reply(lm, config, messages)

    threads = [threading.Thread(target=run, args=(i, m))
               for i, m in enumerate([MESSAGES, other, MESSAGES, other])]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [results[i] for i in range(4)] == expected * 2


def test_long_prompts_are_cut_to_leave_room_for_the_reply():
    small = LlamaCppLM(embedded.embedded_gguf_path(), threads=1, context_length=512)
    try:
        long_text = "The tea trade grew along the rivers. " * 200  # ~1,600 tokens
        ids = small.prompt_ids([ChatMessage("user", long_text)], 100)
        assert len(ids) <= 512 - 100
        assert small.render([ChatMessage("user", long_text)])[-3:] == ids[-3:]
        long_reply = reply(small, GenerationConfig(max_new_tokens=1000),
                           [ChatMessage("user", long_text)])
        assert 0 < small.count_tokens(long_reply) <= 512 - len(small.prompt_ids(
            [ChatMessage("user", long_text)], 1000)) + 2
    finally:
        small.close()


def test_beams_and_opera_go_to_the_transformers_twin():
    twin = ScriptedLM(["beam reply", "opera reply"])
    lm = LlamaCppLM(embedded.embedded_gguf_path(), threads=1, twin=lambda: twin)
    try:
        assert reply(lm, GenerationConfig(num_beams=2)) == "beam reply"
        assert reply(lm, GenerationConfig(decoding="opera")) == "opera reply"
        assert [call[2].num_beams for call in twin.calls] == [2, 1]
        assert reply(lm, GenerationConfig(max_new_tokens=5))  # plain decoding stays here
        assert len(twin.calls) == 2
    finally:
        lm.close()
    alone = LlamaCppLM(embedded.embedded_gguf_path(), threads=1)
    try:
        assert not alone.supports_beams
        with pytest.raises(ComposerError, match="COMPOSER_ENGINE=torch"):
            reply(alone, GenerationConfig(num_beams=2))
    finally:
        alone.close()


def test_bad_model_files_get_clear_messages(tmp_path):
    with pytest.raises(ComposerError, match="no GGUF model file"):
        LlamaCppLM(tmp_path / "missing.gguf")
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\0" * 64)
    with pytest.raises(ComposerError, match="could not load"):
        LlamaCppLM(broken)
    settings = Settings.from_env({}, home=tmp_path, model=str(tmp_path / "nope.gguf"))
    with pytest.raises(ComposerError, match="no such file"):
        load_language_model(settings)
    with pytest.raises(ValueError, match="threads is 0"):
        LlamaCppLM(embedded.embedded_gguf_path(), threads=0)


def test_a_gguf_path_as_the_model_loads_on_llama_cpp(tmp_path):
    settings = Settings.from_env({"COMPOSER_THREADS": "1"}, home=tmp_path,
                                 model=str(embedded.embedded_gguf_path()))
    lm = load_language_model(settings)
    try:
        assert isinstance(lm, LlamaCppLM) and lm.name.endswith(".gguf")
        assert reply(lm, GenerationConfig(max_new_tokens=8))
    finally:
        lm.close()
