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


# -- tiny image-to-text models (captioners) -------------------------------------------------

CAPTION_WORDS = ["a", "an", "the", "photo", "of", "dog", "cat", "red", "blue", "green", "sky",
                 "tree", "house", "river", "bridge", "on", "in", "with", "and", "boat", "harbor",
                 "light", "stone"]
VLM_CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] %}{% if part['type'] == 'image' %}{{ '<image>' }}"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}{% endfor %}{% endif %}"
    "{{ '<|im_end|>\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def build_tiny_blip(folder: Path, seed: int = 0) -> Path:
    """Save a tiny random BLIP captioner (BertTokenizer on a small vocabulary, 32-pixel
    BlipImageProcessor, 2-layer vision and text towers) to `folder`; returns the folder."""
    import torch
    from transformers import (
        BertTokenizer,
        BlipConfig,
        BlipForConditionalGeneration,
        BlipImageProcessor,
        BlipProcessor,
    )

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]", *CAPTION_WORDS]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tokenizer = BertTokenizer(str(folder / "vocab.txt"), bos_token="[DEC]")
    processor = BlipProcessor(image_processor=BlipImageProcessor(size={"height": 32, "width": 32}),
                              tokenizer=tokenizer)
    config = BlipConfig(
        text_config={"vocab_size": len(tokenizer), "hidden_size": 32, "intermediate_size": 64,
                     "num_hidden_layers": 2, "num_attention_heads": 4,
                     "max_position_embeddings": 64, "bos_token_id": tokenizer.bos_token_id,
                     "sep_token_id": tokenizer.sep_token_id,
                     "pad_token_id": tokenizer.pad_token_id,
                     "eos_token_id": tokenizer.sep_token_id},
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                       "num_attention_heads": 4, "image_size": 32, "patch_size": 8},
        projection_dim=32,
    )
    torch.manual_seed(seed)
    model = BlipForConditionalGeneration(config).eval()
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def build_tiny_llava(folder: Path, seed: int = 0) -> Path:
    """Save a tiny random LLaVA chat VLM (2-layer CLIP vision tower at 32 pixels, 2-layer
    Llama, the byte-level BPE tokenizer plus an <image> token, a chat template that places
    the image) to `folder`; returns the folder."""
    import torch
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(chat_template=False)
    tokenizer.add_special_tokens({"additional_special_tokens": ["<image>"]})
    image_processor = CLIPImageProcessor(size={"shortest_edge": 32},
                                         crop_size={"height": 32, "width": 32})
    processor = LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer,
                               patch_size=8, vision_feature_select_strategy="default",
                               chat_template=VLM_CHAT_TEMPLATE, image_token="<image>",
                               num_additional_image_tokens=1)
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                       num_attention_heads=4, image_size=32, patch_size=8,
                                       projection_dim=32),
        text_config=LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                                num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                max_position_embeddings=256, bos_token_id=None,
                                eos_token_id=tokenizer.eos_token_id,
                                pad_token_id=tokenizer.pad_token_id),
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"), vision_feature_layer=-1,
        vision_feature_select_strategy="default",
    )
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config).eval()
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def build_tiny_vision_encoder_decoder(folder: Path, seed: int = 0) -> Path:
    """Save a tiny random VisionEncoderDecoder (2-layer ViT at 32 pixels + 2-layer GPT-2, the
    byte-level BPE tokenizer, a ViTImageProcessor) to `folder`; returns the folder."""
    import torch
    from transformers import (
        GPT2Config,
        VisionEncoderDecoderConfig,
        VisionEncoderDecoderModel,
        ViTConfig,
        ViTImageProcessor,
    )

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(chat_template=False)
    encoder = ViTConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                        num_attention_heads=4, image_size=32, patch_size=8)
    decoder = GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=2, n_head=4,
                         n_positions=256, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id)
    config = VisionEncoderDecoderConfig.from_encoder_decoder_configs(encoder, decoder)
    config.decoder_start_token_id = tokenizer.bos_token_id
    config.pad_token_id = tokenizer.pad_token_id
    config.eos_token_id = tokenizer.eos_token_id
    torch.manual_seed(seed)
    model = VisionEncoderDecoderModel(config=config).eval()
    model.generation_config.decoder_start_token_id = tokenizer.bos_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_blip_dir(tmp_path_factory) -> Path:
    """A saved tiny BLIP captioner folder (import this fixture into a test module to use it)."""
    return build_tiny_blip(tmp_path_factory.mktemp("tiny-blip"))


# --- Tiny dual image-text encoders (CLIP, SigLIP, SigLIP2) for models/clip.py -------------

CLIP_TEXT_POSITIONS = 16  # the tiny text towers read at most this many tokens
CLIP_IMAGE_SIZE = 32
CLIP_MERGES = [("c", "a"), ("ca", "t</w>"), ("d", "o"), ("do", "g</w>"), ("t", "h"),
               ("th", "e</w>")]


def build_clip_tokenizer(max_length: int = CLIP_TEXT_POSITIONS):
    """A real CLIPTokenizer over a hand-made vocabulary: the 256 byte symbols, each also with
    the end-of-word mark "</w>", a few merges ("cat", "dog", "the") and the two specials."""
    from tokenizers import pre_tokenizers
    from transformers import CLIPTokenizer

    symbols = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab: dict[str, int] = {}
    for symbol in symbols + [symbol + "</w>" for symbol in symbols]:
        vocab[symbol] = len(vocab)
    for left, right in CLIP_MERGES:
        vocab.setdefault(left + right, len(vocab))
    for special in ("<|startoftext|>", "<|endoftext|>"):
        vocab[special] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=list(CLIP_MERGES), model_max_length=max_length)


def _tiny_towers(tokenizer, **text_extra) -> tuple[dict, dict]:
    """Text and vision config dicts: 2 layers, hidden 32, 4 heads, 8-pixel patches."""
    text = dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                num_hidden_layers=2, num_attention_heads=4,
                max_position_embeddings=CLIP_TEXT_POSITIONS, pad_token_id=tokenizer.pad_token_id,
                bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                **text_extra)
    vision = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
              "num_attention_heads": 4, "patch_size": 8}
    return text, vision


def _save(folder: Path, *parts) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for part in parts:
        part.save_pretrained(folder)
    return folder


def build_tiny_clip(folder: Path, seed: int = 0) -> Path:
    """Save a random 2-layer CLIPModel (projection 16, 32x32 images), its CLIPTokenizer and a
    CLIPImageProcessor (shortest edge 32, centre crop 32) to `folder`; returns the folder."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel

    tokenizer = build_clip_tokenizer()
    text, vision = _tiny_towers(tokenizer)
    config = CLIPConfig(text_config=text,
                        vision_config=dict(vision, image_size=CLIP_IMAGE_SIZE),
                        projection_dim=16)
    torch.manual_seed(seed)
    model = CLIPModel(config).eval()
    processor = CLIPImageProcessorPil(size={"shortest_edge": CLIP_IMAGE_SIZE},
                                      crop_size={"height": CLIP_IMAGE_SIZE,
                                                 "width": CLIP_IMAGE_SIZE})
    return _save(folder, model, tokenizer, processor)


def build_tiny_siglip(folder: Path, seed: int = 0) -> Path:
    """Save a random 2-layer SiglipModel (32x32 images, squashed to size, no crop) with the
    tiny CLIPTokenizer; returns the folder."""
    import torch
    from transformers import SiglipConfig, SiglipImageProcessorPil, SiglipModel

    tokenizer = build_clip_tokenizer()
    text, vision = _tiny_towers(tokenizer, projection_size=32)
    config = SiglipConfig(text_config=text, vision_config=dict(vision,
                                                               image_size=CLIP_IMAGE_SIZE))
    torch.manual_seed(seed)
    model = SiglipModel(config).eval()
    processor = SiglipImageProcessorPil(size={"height": CLIP_IMAGE_SIZE,
                                              "width": CLIP_IMAGE_SIZE})
    return _save(folder, model, tokenizer, processor)


def build_tiny_siglip2(folder: Path, seed: int = 0) -> Path:
    """Save a random 2-layer Siglip2Model (NaFlex: at most 16 patches of 8 pixels) with the
    tiny byte-level BPE tokenizer (case-sensitive on its own); returns the folder."""
    import torch
    from transformers import Siglip2Config, Siglip2Model
    from transformers.models.siglip2 import Siglip2ImageProcessorPil

    tokenizer = build_tokenizer(chat_template=False)
    text, vision = _tiny_towers(tokenizer, projection_size=32)
    config = Siglip2Config(text_config=text, vision_config=dict(vision, num_patches=16))
    torch.manual_seed(seed)
    model = Siglip2Model(config).eval()
    processor = Siglip2ImageProcessorPil(patch_size=8, max_num_patches=16)
    return _save(folder, model, tokenizer, processor)


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory) -> Path:
    """A saved tiny CLIP folder (import this fixture into a test module to use it)."""
    return build_tiny_clip(tmp_path_factory.mktemp("tiny-clip"))


@pytest.fixture(scope="session")
def tiny_siglip_dir(tmp_path_factory) -> Path:
    """A saved tiny SigLIP folder."""
    return build_tiny_siglip(tmp_path_factory.mktemp("tiny-siglip"))


@pytest.fixture(scope="session")
def tiny_siglip2_dir(tmp_path_factory) -> Path:
    """A saved tiny SigLIP2 folder."""
    return build_tiny_siglip2(tmp_path_factory.mktemp("tiny-siglip2"))


# --- A tiny random Llama for models/plora.py ----------------------------------------------

def build_plora_llama(seed: int = 0, dtype=None):
    """A random LlamaForCausalLM (hidden 64, 2 layers, 4 heads, 2 key/value heads, vocab 128)
    in eval mode, built from a config with a fixed seed; `dtype` defaults to float32."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=128, hidden_size=64, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=256, bos_token_id=None, eos_token_id=1,
                         pad_token_id=0, initializer_range=0.2)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).eval()
    return model.to(dtype) if dtype is not None else model


# --- Tiny vision-only encoders (CLIPVisionModel, SiglipVisionModel) for models/vision.py ----

def _tiny_vision_config(image_size: int, patch_size: int) -> dict:
    """Vision tower settings: 2 layers, hidden 32, 4 heads."""
    return {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
            "num_attention_heads": 4, "image_size": image_size, "patch_size": patch_size}


def build_tiny_clip_vision(folder: Path, image_size: int = 56, patch_size: int = 14,
                           seed: int = 0) -> Path:
    """Save a random 2-layer CLIPVisionModel alone (config + weights, no preprocessor file,
    as a vision-only checkpoint) to `folder`; returns the folder."""
    import torch
    from transformers import CLIPVisionConfig, CLIPVisionModel

    torch.manual_seed(seed)
    model = CLIPVisionModel(CLIPVisionConfig(**_tiny_vision_config(image_size, patch_size)))
    return _save(folder, model.eval())


def build_tiny_siglip_vision(folder: Path, image_size: int = 32, patch_size: int = 8,
                             seed: int = 0) -> Path:
    """Save a random 2-layer SiglipVisionModel alone (config + weights, no preprocessor file)
    to `folder`; returns the folder."""
    import torch
    from transformers import SiglipVisionConfig, SiglipVisionModel

    torch.manual_seed(seed)
    model = SiglipVisionModel(SiglipVisionConfig(**_tiny_vision_config(image_size, patch_size)))
    return _save(folder, model.eval())


# --- A tokenizer that adds BOS on a normal encode, for models/interleave.py ---------------

def build_bos_tokenizer(chat_template: bool = True):
    """The tiny byte-level BPE tokenizer plus a "<s>" BOS that a normal encode puts first
    (add_special_tokens=True), like Llama's; with chat_template, the ChatML template opened
    by "{{ bos_token }}" (as Llama's templates are)."""
    from tokenizers import processors

    tokenizer = build_tokenizer(chat_template=False)
    tokenizer.add_special_tokens({"bos_token": "<s>"})
    bos = tokenizer.bos_token_id
    tokenizer.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", bos)])
    if chat_template:
        tokenizer.chat_template = "{{ bos_token }}" + CHAT_TEMPLATE
    return tokenizer


# --- A tiny random InternLM-XComposer2 checkpoint for models/xcomposer2.py ----------------

XCOMPOSER2_TINY_CONFIG = {
    "architectures": ["InternLMXComposer2ForCausalLM"], "model_type": "internlmxcomposer2",
    "hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 8,
    "num_key_value_heads": 2, "num_hidden_layers": 2, "vocab_size": 128,
    "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "max_position_embeddings": 256,
    "rope_scaling": None, "bias": False, "hidden_act": "silu", "tie_word_embeddings": False,
    "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 2,
}
XCOMPOSER2_TINY_VISION = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                          "num_attention_heads": 4, "image_size": 28, "patch_size": 14}


def build_xcomposer2_state(seed: int = 0, rank: int = 16, vision: bool = True,
                           hd: bool = False) -> dict:
    """Random tensors under the public XComposer2 key names and shapes (InternLM2 blocks with
    Plora_A / Plora_B beside each linear weight, fused wqkv, vit.vision_tower.* of a tiny
    CLIPVisionModel, vision_proj.0/2), sized by XCOMPOSER2_TINY_CONFIG; `hd` adds the 4KHD
    plora_glb_GN / plora_sub_GN. Plora_B is random and nonzero (a trained adapter)."""
    import torch
    from transformers import CLIPVisionConfig, CLIPVisionModel

    config = XCOMPOSER2_TINY_CONFIG
    hidden, inter = config["hidden_size"], config["intermediate_size"]
    heads, kv_heads = config["num_attention_heads"], config["num_key_value_heads"]
    head_dim = hidden // heads
    qkv_rows = (heads + 2 * kv_heads) * head_dim
    generator = torch.Generator().manual_seed(seed)

    def rand(*shape, std=0.2):
        return torch.randn(*shape, generator=generator) * std

    state = {"model.tok_embeddings.weight": rand(config["vocab_size"], hidden, std=1.0),
             "model.norm.weight": 1 + rand(hidden, std=0.1),
             "output.weight": rand(config["vocab_size"], hidden)}
    shapes = {"attention.wqkv": (qkv_rows, hidden), "attention.wo": (hidden, hidden),
              "feed_forward.w1": (inter, hidden), "feed_forward.w3": (inter, hidden),
              "feed_forward.w2": (hidden, inter)}
    for i in range(config["num_hidden_layers"]):
        prefix = f"model.layers.{i}."
        for name, (rows, cols) in shapes.items():
            state[f"{prefix}{name}.weight"] = rand(rows, cols)
            state[f"{prefix}{name}.Plora_A.weight"] = rand(rank, cols)
            state[f"{prefix}{name}.Plora_B.weight"] = rand(rows, rank, std=0.1)
        state[f"{prefix}attention_norm.weight"] = 1 + rand(hidden, std=0.1)
        state[f"{prefix}ffn_norm.weight"] = 1 + rand(hidden, std=0.1)
    if vision:
        torch.manual_seed(seed)
        tower = CLIPVisionModel(CLIPVisionConfig(**XCOMPOSER2_TINY_VISION))
        for key, value in tower.state_dict().items():
            state[f"vit.vision_tower.{key}"] = value.clone()
        vision_dim = XCOMPOSER2_TINY_VISION["hidden_size"]
        state["vision_proj.0.weight"] = rand(hidden, vision_dim)
        state["vision_proj.0.bias"] = rand(hidden)
        state["vision_proj.2.weight"] = rand(hidden, hidden)
        state["vision_proj.2.bias"] = rand(hidden)
    if hd:
        state["plora_glb_GN"] = rand(1, 1, 4 * XCOMPOSER2_TINY_VISION["hidden_size"])
        state["plora_sub_GN"] = rand(1, 1, 1, 4 * XCOMPOSER2_TINY_VISION["hidden_size"])
    return state


def write_xcomposer2_folder(folder: Path, state: dict, config: dict | None = None) -> Path:
    """Save `state` as a sharded safetensors checkpoint (two shards + an index) with its
    config.json, as the public XComposer2 folders are laid out; returns the folder."""
    import json

    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    keys = sorted(state)
    half = len(keys) // 2
    weight_map = {}
    for number, part in enumerate((keys[:half], keys[half:]), start=1):
        name = f"model-{number:05d}-of-00002.safetensors"
        save_file({key: state[key].contiguous() for key in part}, str(folder / name),
                  metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(part, name))
    index = {"metadata": {"total_size": sum(t.numel() * t.element_size()
                                            for t in state.values())},
             "weight_map": weight_map}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index), encoding="utf-8")
    (folder / "config.json").write_text(json.dumps(config or XCOMPOSER2_TINY_CONFIG),
                                        encoding="utf-8")
    return folder
