"""A tiny random Stable Diffusion pipeline for fast, offline tests of the image generator.

`build_tiny_pipeline(folder)` builds a StableDiffusionPipeline from configs (a UNet, a VAE
and a CLIP text encoder of a few thousand weights each, fixed seed), with a CLIP tokenizer
written from a small vocab.json / merges.txt made here, and saves it with save_pretrained,
so tests load it by path exactly as a real model folder is loaded. Its images are noise, but
they have the right size and depend on the seed like a real model's.

`fake_generator(**options)` is a "module:factory" plugin for the loader tests: it ignores the
model and paints a flat colour chosen by the seed.
"""

from __future__ import annotations

import json
import string
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image

SPECIAL_TOKENS = ["<|startoftext|>", "<|endoftext|>"]
VOCAB_SIZE = 256  # the text encoder's embedding rows; the vocabulary below needs fewer
HIDDEN = 32


def write_tokenizer_files(folder: Path) -> Path:
    """vocab.json and merges.txt of a character-level CLIP tokenizer (ASCII letters, digits and
    punctuation, each alone and as a word end "x</w>"); other characters become <|endoftext|>."""
    folder.mkdir(parents=True, exist_ok=True)
    characters = string.ascii_lowercase + string.digits + string.punctuation
    tokens = SPECIAL_TOKENS + list(characters) + [f"{char}</w>" for char in characters]
    (folder / "vocab.json").write_text(json.dumps({token: number for number, token
                                                   in enumerate(tokens)}), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    return folder


def build_tiny_pipeline(folder: str | Path, seed: int = 0) -> Path:
    """Save a tiny random StableDiffusionPipeline (DDIM scheduler, no safety checker) to folder."""
    import torch
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    folder = Path(folder)
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=16, in_channels=4, out_channels=4, layers_per_block=1,
        block_out_channels=(8, 16), norm_num_groups=4, cross_attention_dim=HIDDEN,
        attention_head_dim=2, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"))
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 16),
        layers_per_block=1, norm_num_groups=4,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"))
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=VOCAB_SIZE, hidden_size=HIDDEN, intermediate_size=37, num_hidden_layers=2,
        num_attention_heads=4, max_position_embeddings=77, bos_token_id=0, eos_token_id=1,
        pad_token_id=1, projection_dim=HIDDEN))
    tokenizer = CLIPTokenizer.from_pretrained(
        str(write_tokenizer_files(folder.parent / f"{folder.name}-tokenizer-files")),
        model_max_length=77)
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    pipeline = StableDiffusionPipeline(
        unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, scheduler=scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipeline.save_pretrained(folder)
    return folder


class FakeGenerator:
    """An image generator plugin without a model: a flat image whose colour is the seed's."""

    def __init__(self, *, device: str = "cpu", dtype: str = "auto", steps: int = 2,
                 size: int = 32) -> None:
        self.name = "fake-generator"
        self.options = {"device": device, "dtype": dtype, "steps": steps, "size": size}

    def generate(self, prompt: str, *, seed: int = 0, negative_prompt: str = "",
                 progress: Callable[[int, int], None] | None = None,
                 cancel: threading.Event | None = None) -> Image.Image:
        """A size x size image of one colour picked by the seed; reports every step."""
        for step in range(1, self.options["steps"] + 1):
            if progress is not None:
                progress(step, self.options["steps"])
        colour = ((seed * 67) % 256, (seed * 131) % 256, (seed * 197) % 256)
        return Image.new("RGB", (self.options["size"],) * 2, colour)


def fake_generator(**options: Any) -> FakeGenerator:
    """The "tests.tiny_diffusion:fake_generator" plugin factory."""
    return FakeGenerator(**options)
