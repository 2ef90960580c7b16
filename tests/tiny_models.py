"""Tiny random language models for fast tests, built offline from a config.

`build_tiny_lm(folder)` trains a small byte-level BPE tokenizer on a few sentences (with the
`tokenizers` library; no download), gives it a ChatML chat template and an EOS token, builds
a 2-layer Llama with random weights (fixed seed) sized to that vocabulary, and saves both to
`folder`, so tests load it by path exactly as a real model is loaded.
"""

from __future__ import annotations

from pathlib import Path

import pytest

CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
SENTENCES = [
    "The river runs past the old stone bridge in the morning light.",
    "A garden of tomatoes grows beside the harbor market.",
    "History is written in letters, paintings and songs.",
    "Engineers measured the orbit of the small moon.",
    "Café owners in Italy serve espresso before the trains leave.",
    "长城是中国古代的伟大工程。",
    "Write an article about bridges, gardens and forests.",
    "system user assistant: Write about 100 words in 2 paragraphs.",
]


def build_tokenizer(vocab_size: int = 400, chat_template: bool = True):
    """A PreTrainedTokenizerFast (byte-level BPE) trained on SENTENCES."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    core.train_from_iterator(SENTENCES * 4, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token="<|im_start|>", eos_token="<|im_end|>",
        unk_token="<|endoftext|>", pad_token="<|endoftext|>",
    )
    if chat_template:
        tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def build_tiny_llama(vocab_size: int, eos_id: int, pad_id: int, seed: int = 0,
                     max_positions: int = 512):
    """A 2-layer Llama (hidden 32) with random weights from a fixed seed, in float32."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=max_positions,
        bos_token_id=None, eos_token_id=eos_id, pad_token_id=pad_id, tie_word_embeddings=True,
        initializer_range=0.5,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).eval()
    model.generation_config.eos_token_id = eos_id
    model.generation_config.pad_token_id = pad_id
    return model


def build_tiny_lm(folder: Path, chat_template: bool = True, seed: int = 0) -> Path:
    """Save a tiny tokenizer + random Llama to `folder` (created); returns the folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(chat_template=chat_template)
    model = build_tiny_llama(len(tokenizer), tokenizer.eos_token_id, tokenizer.pad_token_id,
                             seed=seed)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_lm_dir(tmp_path_factory) -> Path:
    """A saved tiny model folder (import this fixture into a test module to use it)."""
    return build_tiny_lm(tmp_path_factory.mktemp("tiny-lm"))
