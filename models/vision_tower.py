"""The vision tower: a CLIP or SigLIP vision encoder returning patch features of one layer.

Follows InternLM-XComposer2 (docs: /work/shared/REFERENCE.md section 2). `VisionTower` is
loaded through transformers (from a full image-text checkpoint or a vision-only one). It
returns patch features [n_images, n_patches, vision_dim] from one layer (`feature_layer`, an
index into the model's `hidden_states`: 0 = the embeddings, -1 = the last block's output,
which for SigLIP is before its post-layernorm, as in LLaVA; CLIP's CLS token is dropped).
Built for an `image_size` other than its training size, its position table is interpolated
once (bicubic over the patch grid, CLS kept), so the model then runs natively at that size:
XComposer2 uses CLIP ViT-L/14 trained at 336 px (24x24 patches) at 224 px (16x16 patches,
256 tokens).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from models.devices import resolve_device, resolve_dtype

# Normalisation used when the checkpoint has no preprocessor_config.json.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
SIGLIP_MEAN = (0.5, 0.5, 0.5)
SIGLIP_STD = (0.5, 0.5, 0.5)
# model_type in config.json -> family; a full image-text checkpoint or a vision-only one.
FAMILIES = {"clip": "clip", "clip_vision_model": "clip",
            "siglip": "siglip", "siglip_vision_model": "siglip"}


def interpolate_position_embeddings(model: nn.Module, image_size: int) -> bool:
    """Resize a CLIP/SigLIP vision model's position table in place for `image_size` inputs.

    The patch positions form a square grid; it is resized with bicubic interpolation
    (align_corners=False, computed in float32, as transformers' `interpolate_pos_encoding`
    and XComposer2 do), CLIP's CLS position is kept as is. The model's image size is updated
    so it then accepts `image_size` inputs without `interpolate_pos_encoding`. Returns False
    (and changes nothing) when the size already matches.
    """
    embeddings = model.embeddings
    patch = int(embeddings.patch_size)
    if image_size % patch:
        raise ValueError(f"image_size={image_size} is not a multiple of the patch size {patch}: "
                         f"use {max(patch, image_size // patch * patch)} or "
                         f"{(image_size // patch + 1) * patch}")
    has_cls = hasattr(embeddings, "class_embedding")
    table = embeddings.position_embedding.weight.detach()
    new_grid = image_size // patch
    old_grid = math.isqrt(table.shape[0] - int(has_cls))
    if old_grid * old_grid != table.shape[0] - int(has_cls):
        raise ValueError(f"the position table has {table.shape[0]} rows, not a square grid"
                         f"{' plus CLS' if has_cls else ''}: this model cannot be resized here")
    if new_grid == old_grid:
        return False
    new_table = torch.cat([table[:1], resize_position_grid(table[1:], new_grid)]) if has_cls \
        else resize_position_grid(table, new_grid)
    position_embedding = nn.Embedding(new_table.shape[0], new_table.shape[1],
                                      device=table.device, dtype=table.dtype)
    position_embedding.weight.data.copy_(new_table)
    embeddings.position_embedding = position_embedding
    embeddings.position_ids = torch.arange(new_table.shape[0], device=table.device)[None]
    embeddings.num_patches = new_grid * new_grid
    embeddings.num_positions = new_table.shape[0]
    embeddings.image_size = image_size
    model.config.image_size = image_size
    return True


def resize_position_grid(table: torch.Tensor, new_grid: int) -> torch.Tensor:
    """A [g*g, dim] row-major position grid resized to [new_grid*new_grid, dim] (bicubic)."""
    grid = math.isqrt(table.shape[0])
    dim = table.shape[1]
    square = table.float().reshape(1, grid, grid, dim).permute(0, 3, 1, 2)
    resized = nn.functional.interpolate(square, size=(new_grid, new_grid), mode="bicubic",
                                        align_corners=False)
    return resized.permute(0, 2, 3, 1).reshape(new_grid * new_grid, dim).to(table.dtype)


class VisionTower(nn.Module):
    """A CLIP or SigLIP vision encoder returning patch features of one layer.

    Build it with `VisionTower.from_pretrained(id_or_folder, image_size=...)`; the constructor
    takes an already-loaded CLIPVisionModel or SiglipVisionModel. The weights are frozen
    (requires_grad False) unless `freeze=False`.
    """

    def __init__(self, model: nn.Module, *, name: str = "", image_size: int | None = None,
                 feature_layer: int = -1, image_mean: Sequence[float] | None = None,
                 image_std: Sequence[float] | None = None, freeze: bool = True) -> None:
        """Wrap a loaded vision model; `image_size` None keeps its training size."""
        super().__init__()
        model_type = str(getattr(model.config, "model_type", ""))
        if model_type not in ("clip_vision_model", "siglip_vision_model"):
            raise TypeError(f"{type(model).__name__} (model_type {model_type!r}) is not a CLIP "
                            "or SigLIP vision model: pass a CLIPVisionModel or "
                            "SiglipVisionModel, or use VisionTower.from_pretrained")
        self.family = FAMILIES[model_type]
        self.model = model.eval()
        self.name = name or str(getattr(model.config, "_name_or_path", "")) or model_type
        self.training_image_size = int(model.config.image_size)
        self.feature_layer = _checked_layer(feature_layer, int(model.config.num_hidden_layers))
        default_mean, default_std = (CLIP_MEAN, CLIP_STD) if self.family == "clip" else (
            SIGLIP_MEAN, SIGLIP_STD)
        self.image_mean = tuple(float(v) for v in (image_mean or default_mean))
        self.image_std = tuple(float(v) for v in (image_std or default_std))
        if freeze:
            self.model.requires_grad_(False)
        interpolate_position_embeddings(self.model, image_size or self.training_image_size)

    @classmethod
    def from_pretrained(cls, source: str | Path, *, image_size: int | None = None,
                        feature_layer: int = -1, device: str = "cpu",
                        dtype: str = "auto", freeze: bool = True) -> VisionTower:
        """Load the vision encoder of a CLIP or SigLIP checkpoint (hub id or local folder).

        Works with a full image-text checkpoint (its text tower is not loaded) and a
        vision-only one. The normalisation comes from the checkpoint's
        preprocessor_config.json, else the family's defaults. `device` "auto" picks cuda when
        available; `dtype` "auto" keeps float32 on the CPU and the checkpoint's dtype on a GPU.
        """
        source = str(source).strip()
        if not source:
            raise ValueError("vision model id or folder is empty: pass a model id such as "
                             "'openai/clip-vit-large-patch14-336' or a local folder")
        device = resolve_device(device)
        model, mean, std = _load_vision_model(
            source, resolve_dtype(dtype, device, gpu_auto="checkpoint"))
        return cls(model.to(device), name=source, image_size=image_size,
                   feature_layer=feature_layer, image_mean=mean, image_std=std, freeze=freeze)

    @property
    def image_size(self) -> int:
        """The input size the tower runs at (pixels per side)."""
        return int(self.model.embeddings.image_size)

    @property
    def patch_size(self) -> int:
        """Pixels per patch side."""
        return int(self.model.embeddings.patch_size)

    @property
    def n_patches(self) -> int:
        """Feature tokens per image: (image_size / patch_size) ** 2 (no CLS)."""
        return (self.image_size // self.patch_size) ** 2

    @property
    def hidden_size(self) -> int:
        """vision_dim: the length of each patch feature."""
        return int(self.model.config.hidden_size)

    @property
    def n_layers(self) -> int:
        """Transformer blocks in the tower (hidden_states has one more entry)."""
        return int(self.model.config.num_hidden_layers)

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of the tower's weights (its inputs are cast to it)."""
        return self.model.embeddings.patch_embedding.weight.dtype

    @property
    def device(self) -> torch.device:
        """Where the tower's weights are."""
        return self.model.embeddings.patch_embedding.weight.device

    @property
    def fill(self) -> tuple[int, int, int]:
        """The RGB colour of padding: the normalisation mean (normalises to about zero)."""
        return tuple(round(value * 255) for value in self.image_mean)

    def preprocess(self, images: list[Any]) -> torch.Tensor:
        """PIL RGB images -> normalised pixels [n, 3, image_size, image_size] on the tower.

        Images of another size are squashed to image_size (bicubic); the tiling code hands
        over views already at that size, so nothing is resized twice.
        """
        from PIL import Image

        size = self.image_size
        arrays = []
        for image in images:
            if image.size != (size, size):
                image = image.resize((size, size), Image.Resampling.BICUBIC)
            arrays.append(np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0)
        pixels = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)
        mean = torch.tensor(self.image_mean).view(1, 3, 1, 1)
        std = torch.tensor(self.image_std).view(1, 3, 1, 1)
        return ((pixels - mean) / std).to(self.device, dtype=self.dtype)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Patch features [n, n_patches, vision_dim] of `feature_layer` (CLS dropped)."""
        size = self.image_size
        if tuple(pixel_values.shape[-2:]) != (size, size):
            raise ValueError(f"pixel_values are {tuple(pixel_values.shape[-2:])}, the tower runs "
                             f"at {size}x{size}: use preprocess() or build the tower with "
                             f"image_size={pixel_values.shape[-1]}")
        pixel_values = pixel_values.to(self.device, dtype=self.dtype)
        if self.family == "clip" and self.feature_layer in (-1, self.n_layers):
            # CLIP's last_hidden_state is the last block's output (no norm after it), so the
            # other layers' states need not be kept (ViT-L: 25 of them per batch)
            return self.model(pixel_values=pixel_values).last_hidden_state[:, 1:]
        output = self.model(pixel_values=pixel_values, output_hidden_states=True)
        features = output.hidden_states[self.feature_layer]
        return features[:, 1:] if self.family == "clip" else features


def _checked_layer(feature_layer: int, n_layers: int) -> int:
    """`feature_layer` after checking it indexes hidden_states (n_layers + 1 entries)."""
    if not -(n_layers + 1) <= feature_layer <= n_layers:
        raise ValueError(f"feature_layer={feature_layer} is outside the tower's hidden states "
                         f"({n_layers} layers: use -{n_layers + 1}..{n_layers}, -1 = last)")
    return feature_layer


def _load_vision_model(source: str, dtype: Any) -> tuple[nn.Module, Any, Any]:
    """The vision model of `source` plus its normalisation mean and std (None: defaults)."""
    from transformers import AutoConfig, CLIPVisionModel, SiglipVisionModel
    from transformers.utils import logging as hf_logging

    local = Path(source).expanduser()
    looks_local = source.startswith((".", "/", "~")) or local.exists()
    if looks_local and not local.is_dir():
        raise RuntimeError(f"vision model folder {source!r} does not exist: give the folder "
                           "that holds config.json and the weights, or a Hugging Face model id")
    where = str(local) if looks_local else source
    options = {"local_files_only": True} if looks_local else {}
    try:
        model_type = AutoConfig.from_pretrained(where, **options).model_type
        if model_type not in FAMILIES:
            raise ValueError(f"model_type {model_type!r} is not CLIP or SigLIP")
        model_class = CLIPVisionModel if FAMILIES[model_type] == "clip" else SiglipVisionModel
        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()  # a full checkpoint reports its unused text tower
        try:
            model = model_class.from_pretrained(where, dtype=dtype, **options)
        finally:
            hf_logging.set_verbosity(verbosity)
    except (OSError, ValueError, KeyError) as error:
        hint = ("check that the folder holds config.json and the weights of a CLIP or SigLIP "
                "model" if looks_local else f"without internet access download it first "
                f"(`hf download {source}`) or give a local folder holding its files")
        raise RuntimeError(f"could not load the vision encoder of {source!r} "
                           f"({type(error).__name__}: {error}); {hint}") from error
    mean, std = _normalisation(where, options)
    return model.eval(), mean, std


def _normalisation(where: str, options: dict) -> tuple[Any, Any]:
    """image_mean and image_std from preprocessor_config.json, (None, None) without one."""
    import json

    from transformers.utils import cached_file

    try:
        path = cached_file(where, "preprocessor_config.json",
                           _raise_exceptions_for_missing_entries=False,
                           _raise_exceptions_for_connection_errors=False, **options)
    except OSError:
        return None, None
    if not path:
        return None, None
    settings = json.loads(Path(path).read_text(encoding="utf-8"))
    return settings.get("image_mean"), settings.get("image_std")
