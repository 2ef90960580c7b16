"""The vision side of image-grounded writing: pictures -> embeddings in the language model's space.

Follows InternLM-XComposer2 (docs: /work/shared/REFERENCE.md section 2) with SPHINX-X skip
tokens for high-resolution tiling (section 7):

- `VisionTower` (models/vision_tower.py): a CLIP or SigLIP vision encoder returning patch
  features of one layer.
- `Projector`: XComposer2's `vision_proj`, an MLP vision_dim -> d_model -> d_model with GELU.
  It is an nn.Sequential, so XComposer2's `vision_proj.*` weights load into it after removing
  the "vision_proj." prefix.
- `plan_tiles` (models/tiling.py): the geometry of high-resolution tiling (grid, resized
  size, which tiles are pure padding). Padding goes on the right and at the bottom.
- `ImageEncoder`: tower + projector + tiling. Each image becomes one token sequence
  (`TOKEN LAYOUT` below); tiles that are pure padding are never encoded and stand as one
  learnable skip embedding each. `save_adapter` / `load_adapter` (models/vision_adapter.py)
  store the trainable parts (projector, skip and newline embeddings) in a safetensors file.

TOKEN LAYOUT of one image (every token has d_model values):

    [global view: n_patches tokens]
    for each grid row, top to bottom:
        for each tile, left to right: [n_patches tokens] or, for a pure-padding tile, [1 skip]
        [1 newline token]                      (when `newline=True`, the default)

With `max_tiles=0` only the global view is used: XComposer2's own layout (256 tokens at 224 px
with 14-px patches). The newline after each row makes the grid's shape readable from the
sequence (a 1x4 and a 2x2 grid would otherwise look alike).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from models.clip import load_rgb_image
from models.tiling import (
    DEFAULT_MAX_TILES,
    DEFAULT_TILE,
    TilePlan,
    check_positive,
    checked_grids,
    cut_views,
    plan_tiles,
)
from models.vision_adapter import EncoderAdapterFiles
from models.vision_tower import VisionTower

ImageInput = Any  # str | Path | PIL.Image.Image
EMBEDDING_INIT_STD = 0.02


class Projector(nn.Sequential):
    """XComposer2's vision_proj: Linear(vision_dim, d_model), GELU, Linear(d_model, d_model).

    Maps patch features into the language model's embedding space. State-dict keys are
    "0.weight", "0.bias", "2.weight", "2.bias", as in XComposer2's `vision_proj`.
    """

    def __init__(self, vision_dim: int, d_model: int, *, dtype: torch.dtype = torch.float32,
                 device: str | torch.device | None = None) -> None:
        """Build the MLP with PyTorch's default initialisation on `device` in `dtype`."""
        check_positive(vision_dim, "vision_dim")
        check_positive(d_model, "d_model")
        super().__init__(nn.Linear(vision_dim, d_model, device=device, dtype=dtype), nn.GELU(),
                         nn.Linear(d_model, d_model, device=device, dtype=dtype))
        self.vision_dim = vision_dim
        self.d_model = d_model


@dataclass
class EncodedImage:
    """One image's token sequence (see the module's TOKEN LAYOUT) and how it was tiled."""

    embeddings: torch.Tensor  # [n_tokens, d_model]
    plan: TilePlan
    encoded_tiles: int
    skipped_tiles: int

    @property
    def n_tokens(self) -> int:
        """Length of the sequence."""
        return int(self.embeddings.shape[0])


class ImageEncoder(EncoderAdapterFiles, nn.Module):
    """Pictures -> token sequences in the language model's embedding space.

    Tower (frozen) + projector + tiling with skip tokens for pure-padding tiles and an
    optional newline token after each tile row. The trainable parts are the projector, the
    skip embedding and the newline embedding (`trainable_parameters()`); they are saved and
    loaded with `save_adapter` / `load_adapter`.
    """

    def __init__(self, tower: VisionTower, d_model: int, *, max_tiles: int = DEFAULT_MAX_TILES,
                 grids: Sequence[tuple[int, int]] | None = None, newline: bool = True,
                 dtype: torch.dtype = torch.float32, batch_size: int = 16,
                 seed: int = 0) -> None:
        """Combine a tower with a new projector and embeddings (initialised from `seed`).

        `max_tiles` / `grids` choose the tiling (plan_tiles); `dtype` is that of the projector
        and embeddings (the outputs); `batch_size` is how many views go through the tower at
        once.
        """
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size} must be at least 1")
        self.tower = tower
        self.max_tiles = max_tiles
        self.grids = None if grids is None else checked_grids(grids, max_tiles)
        self.batch_size = batch_size
        self.use_newline = newline
        plan_tiles(1, 1, tile=tower.image_size, max_tiles=max_tiles, grids=grids)  # checks
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.projector = Projector(tower.hidden_size, d_model, dtype=dtype,
                                       device=tower.device)
            self.skip_embedding = _embedding(d_model, dtype, tower.device)
            self.newline_embedding = _embedding(d_model, dtype, tower.device) if newline \
                else None

    @classmethod
    def from_pretrained(cls, source: str | Path, d_model: int, *,
                        image_size: int | None = DEFAULT_TILE, feature_layer: int = -1,
                        device: str = "cpu", tower_dtype: str = "auto",
                        **options: Any) -> ImageEncoder:
        """Load a tower (VisionTower.from_pretrained) and add a new projector for `d_model`.

        `image_size` defaults to 224 (XComposer2); None keeps the checkpoint's size. Other
        keyword options go to the constructor (max_tiles, grids, newline, dtype, ...).
        """
        tower = VisionTower.from_pretrained(source, image_size=image_size,
                                            feature_layer=feature_layer, device=device,
                                            dtype=tower_dtype)
        return cls(tower, d_model, **options)

    @property
    def d_model(self) -> int:
        """Length of each output token."""
        return self.projector.d_model

    @property
    def tile(self) -> int:
        """Tile (and global view) size in pixels: the tower's input size."""
        return self.tower.image_size

    def train(self, mode: bool = True) -> ImageEncoder:
        """Set training mode; a frozen tower stays in eval mode (no dropout on it)."""
        super().train(mode)
        if not any(parameter.requires_grad for parameter in self.tower.parameters()):
            self.tower.eval()
        return self

    def trainable_parameters(self) -> list[nn.Parameter]:
        """The parameters the adapter trainer updates: projector, skip and newline."""
        parameters = [*self.projector.parameters(), self.skip_embedding]
        if self.newline_embedding is not None:
            parameters.append(self.newline_embedding)
        return parameters

    def plan(self, width: int, height: int) -> TilePlan:
        """The tiling of an upright width x height image with this encoder's settings."""
        return plan_tiles(width, height, tile=self.tile, max_tiles=self.max_tiles,
                          grids=self.grids)

    def num_tokens(self, width: int, height: int) -> int:
        """Tokens an upright width x height image becomes, without encoding it."""
        plan = self.plan(width, height)
        newlines = plan.rows if self.use_newline else 0
        return (1 + plan.encoded_tiles) * self.tower.n_patches + plan.skipped_tiles + newlines

    def encode(self, images: list[ImageInput]) -> list[torch.Tensor]:
        """Each image (path or PIL image) -> its tokens [n_tokens, d_model] (TOKEN LAYOUT)."""
        return [item.embeddings for item in self.encode_hd(images)]

    def encode_hd(self, images: list[ImageInput]) -> list[EncodedImage]:
        """Encode images with tiling: tokens plus each image's plan and tile counts.

        Images are turned upright by their EXIF orientation and made RGB (transparency on
        white). The global views and content tiles of all images go through the tower in
        batches of `batch_size`; pure-padding tiles never do. Runs under inference_mode
        unless the encoder is in training mode (then the projector and embeddings get
        gradients; a frozen tower runs under no_grad).
        """
        images = _checked_images(images)
        context = contextlib.nullcontext() if self.training else torch.inference_mode()
        with context:
            pictures = [load_rgb_image(item) for item in images]
            plans = [self.plan(*picture.size) for picture in pictures]
            views = [cut_views(picture, plan, self.tower.fill)
                     for picture, plan in zip(pictures, plans, strict=True)]
            tokens = self._project_views([view for group in views for view in group])
            results, start = [], 0
            for plan, group in zip(plans, views, strict=True):
                per_view = tokens[start:start + len(group)]
                start += len(group)
                results.append(EncodedImage(self._assemble(plan, per_view), plan,
                                            plan.encoded_tiles, plan.skipped_tiles))
        return results

    def _project_views(self, views: list[Any]) -> list[torch.Tensor]:
        """Tower + projector over views in batches: one [n_patches, d_model] tensor per view."""
        frozen = not any(parameter.requires_grad for parameter in self.tower.parameters())
        outputs: list[torch.Tensor] = []
        for batch in _batches(views, self.batch_size):
            with torch.no_grad() if frozen else contextlib.nullcontext():
                features = self.tower(self.tower.preprocess(batch))
            projected = self.projector(features.to(self.skip_embedding.dtype))
            outputs.extend(projected.unbind(0))
        return outputs

    def _assemble(self, plan: TilePlan, per_view: list[torch.Tensor]) -> torch.Tensor:
        """The TOKEN LAYOUT from the projected views (global first, then content tiles)."""
        pieces = [per_view[0]]
        content = iter(per_view[1:])
        for row in range(plan.rows):
            for col in range(plan.cols):
                pieces.append(self.skip_embedding[None] if plan.is_padding(row, col)
                              else next(content))
            if self.newline_embedding is not None:
                pieces.append(self.newline_embedding[None])
        return torch.cat(pieces)

def _embedding(d_model: int, dtype: torch.dtype, device: Any) -> nn.Parameter:
    """A learnable d_model vector, normal(0, 0.02) from the current RNG."""
    return nn.Parameter((torch.randn(d_model) * EMBEDDING_INIT_STD).to(device=device,
                                                                         dtype=dtype))


def _checked_images(images: Any) -> list[Any]:
    """`images` as a list after checking each item is a path or a PIL image."""
    from PIL import Image

    if isinstance(images, (str, Path, Image.Image)) or not isinstance(images, (list, tuple)):
        raise TypeError(f"encode() takes a list of images, not a single "
                        f"{type(images).__name__}: wrap it in a list")
    for position, item in enumerate(images):
        if not isinstance(item, (str, Path, Image.Image)):
            raise TypeError(f"encode(): item [{position}] is {type(item).__name__}; expected a "
                            "file path or a PIL image")
    return list(images)


def _batches(items: list[Any], size: int) -> Iterator[list[Any]]:
    """Consecutive slices of at most `size` items."""
    for start in range(0, len(items), size):
        yield items[start:start + size]
