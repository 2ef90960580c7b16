"""The vision side of image-grounded writing: pictures -> embeddings in the language model's space.

Follows InternLM-XComposer2 (docs: /work/shared/REFERENCE.md section 2) with SPHINX-X skip
tokens for high-resolution tiling (section 7):

- `VisionTower`: a CLIP or SigLIP vision encoder loaded through transformers (from a full
  image-text checkpoint or a vision-only one). It returns patch features
  [n_images, n_patches, vision_dim] from one layer (`feature_layer`, an index into the
  model's `hidden_states`: 0 = the embeddings, -1 = the last block's output, which for SigLIP
  is before its post-layernorm, as in LLaVA; CLIP's CLS token is dropped). Built for an
  `image_size` other than its training size, its position table is interpolated once
  (bicubic over the patch grid, CLS kept), so the model then runs natively at that size:
  XComposer2 uses CLIP ViT-L/14 trained at 336 px (24x24 patches) at 224 px (16x16 patches,
  256 tokens).
- `Projector`: XComposer2's `vision_proj`, an MLP vision_dim -> d_model -> d_model with GELU.
  It is an nn.Sequential, so XComposer2's `vision_proj.*` weights load into it after removing
  the "vision_proj." prefix.
- `plan_tiles`: the geometry of high-resolution tiling (grid, resized size, which tiles are
  pure padding). Padding goes on the right and at the bottom.
- `ImageEncoder`: tower + projector + tiling. Each image becomes one token sequence
  (`TOKEN LAYOUT` below); tiles that are pure padding are never encoded and stand as one
  learnable skip embedding each. `save_adapter` / `load_adapter` store the trainable parts
  (projector, skip and newline embeddings) in a safetensors file.

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
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from models.clip import load_rgb_image, torch_dtype

ImageInput = Any  # str | Path | PIL.Image.Image

# Normalisation used when the checkpoint has no preprocessor_config.json.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
SIGLIP_MEAN = (0.5, 0.5, 0.5)
SIGLIP_STD = (0.5, 0.5, 0.5)
# model_type in config.json -> family; a full image-text checkpoint or a vision-only one.
FAMILIES = {"clip": "clip", "clip_vision_model": "clip",
            "siglip": "siglip", "siglip_vision_model": "siglip"}
ADAPTER_FORMAT = "image-adapter/1"
DEFAULT_TILE = 224  # XComposer2's input size
DEFAULT_MAX_TILES = 4
EMBEDDING_INIT_STD = 0.02


# --- Tiling geometry ---------------------------------------------------------------------


@dataclass(frozen=True)
class TilePlan:
    """How one image is tiled: a rows x cols grid of `tile`-pixel squares.

    The image (`width` x `height`, upright) is resized keeping its aspect ratio to
    `content_width` x `content_height`, the largest size that fits the grid, and placed at the
    top-left of the grid's canvas; the rest (right and bottom) is padding. A tile is pure
    padding when it lies wholly outside the content. rows = cols = 0 means no tiles (only the
    global view).
    """

    width: int
    height: int
    tile: int
    rows: int
    cols: int
    content_width: int
    content_height: int

    @property
    def n_tiles(self) -> int:
        """Tiles in the grid, padding ones included."""
        return self.rows * self.cols

    def is_padding(self, row: int, col: int) -> bool:
        """True when tile (row, col) holds no pixel of the image (from geometry alone)."""
        return col * self.tile >= self.content_width or row * self.tile >= self.content_height

    def tiles(self) -> list[tuple[int, int]]:
        """Every tile as (row, col), row-major: the order of the token layout."""
        return [(row, col) for row in range(self.rows) for col in range(self.cols)]

    def box(self, row: int, col: int) -> tuple[int, int, int, int]:
        """The tile's (left, top, right, bottom) on the padded canvas, for PIL's crop()."""
        left, top = col * self.tile, row * self.tile
        return left, top, left + self.tile, top + self.tile

    @property
    def encoded_tiles(self) -> int:
        """Tiles that show part of the image (each one goes through the vision tower)."""
        return sum(not self.is_padding(row, col) for row, col in self.tiles())

    @property
    def skipped_tiles(self) -> int:
        """Pure-padding tiles (each one becomes one skip token, never encoded)."""
        return self.n_tiles - self.encoded_tiles


def candidate_grids(max_tiles: int) -> list[tuple[int, int]]:
    """Every (rows, cols) grid with rows * cols <= max_tiles."""
    return [(rows, cols) for rows in range(1, max_tiles + 1)
            for cols in range(1, max_tiles // rows + 1)]


def choose_grid(width: int, height: int, grids: Sequence[tuple[int, int]]) -> tuple[int, int]:
    """The grid whose aspect ratio (cols / rows) is closest to the image's (width / height).

    Closeness is the distance of the logarithms (so 2:1 and 1:2 are equally far from 1:1).
    Ties go to the grid with more tiles (more resolution: a square picks 2x2 over 1x1), then to
    the one with fewer rows. Among all grids up to a budget, the closest one never has a
    pure-padding tile (a grid one tile narrower would be closer); a restricted list such as
    SPHINX's fixed 2x2 does produce them.
    """
    image_ratio = math.log(width / height)

    def key(grid: tuple[int, int]) -> tuple[float, int, int]:
        rows, cols = grid
        return round(abs(math.log(cols / rows) - image_ratio), 12), -rows * cols, rows

    return min(grids, key=key)


def plan_tiles(width: int, height: int, *, tile: int = DEFAULT_TILE,
               max_tiles: int = DEFAULT_MAX_TILES,
               grids: Sequence[tuple[int, int]] | None = None) -> TilePlan:
    """Plan the high-resolution tiling of a `width` x `height` image (see TilePlan).

    The grid is chosen by `choose_grid` among `grids` (default: every grid of at most
    `max_tiles` tiles); `max_tiles=0` plans no tiles. The image is then scaled (up or down) to
    the largest size that fits the grid keeping its aspect ratio, so it fills the grid's width
    or its height.
    """
    _check_positive(width, "width")
    _check_positive(height, "height")
    _check_positive(tile, "tile")
    if max_tiles < 0:
        raise ValueError(f"max_tiles={max_tiles} must be 0 (global view only) or more")
    choices = candidate_grids(max_tiles) if grids is None else _checked_grids(grids, max_tiles)
    if not choices:
        return TilePlan(width, height, tile, 0, 0, 0, 0)
    rows, cols = choose_grid(width, height, choices)
    scale = min(cols * tile / width, rows * tile / height)
    content_width = min(cols * tile, max(1, round(width * scale)))
    content_height = min(rows * tile, max(1, round(height * scale)))
    return TilePlan(width, height, tile, rows, cols, content_width, content_height)


def _checked_grids(grids: Sequence[tuple[int, int]], max_tiles: int) -> list[tuple[int, int]]:
    """The given candidate grids after checking each is (rows >= 1, cols >= 1) within budget."""
    checked = []
    for grid in grids:
        rows, cols = (int(value) for value in grid)
        if rows < 1 or cols < 1:
            raise ValueError(f"grid {grid!r} must have at least 1 row and 1 column")
        if rows * cols > max_tiles:
            raise ValueError(f"grid {grid!r} has {rows * cols} tiles, more than "
                             f"max_tiles={max_tiles}: raise max_tiles or drop the grid")
        checked.append((rows, cols))
    if max_tiles > 0 and not checked:
        raise ValueError("grids is empty: give at least one (rows, cols) or pass None for "
                         "every grid up to max_tiles")
    return checked


def cut_views(image: Any, plan: TilePlan, fill: tuple[int, int, int]) -> list[Any]:
    """The images the tower sees for one picture: the global view, then each tile that shows
    part of the image (row-major). Pure-padding tiles are not cut.

    The global view is the whole picture squashed to tile x tile (as XComposer2 resizes).
    Tiles come from the picture resized to the plan's content size on a canvas of `fill`
    colour (the normalisation mean, so padding pixels become about zero).
    """
    from PIL import Image

    bicubic = Image.Resampling.BICUBIC
    views = [image.resize((plan.tile, plan.tile), bicubic)]
    if plan.n_tiles == 0:
        return views
    canvas = Image.new("RGB", (plan.cols * plan.tile, plan.rows * plan.tile), fill)
    canvas.paste(image.resize((plan.content_width, plan.content_height), bicubic), (0, 0))
    views.extend(canvas.crop(plan.box(row, col)) for row, col in plan.tiles()
                 if not plan.is_padding(row, col))
    return views


# --- Vision tower --------------------------------------------------------------------------


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
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        model, mean, std = _load_vision_model(source, torch_dtype(dtype, device))
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


# --- Projector and the whole encoder --------------------------------------------------------


class Projector(nn.Sequential):
    """XComposer2's vision_proj: Linear(vision_dim, d_model), GELU, Linear(d_model, d_model).

    Maps patch features into the language model's embedding space. State-dict keys are
    "0.weight", "0.bias", "2.weight", "2.bias", as in XComposer2's `vision_proj`.
    """

    def __init__(self, vision_dim: int, d_model: int, *, dtype: torch.dtype = torch.float32,
                 device: str | torch.device | None = None) -> None:
        """Build the MLP with PyTorch's default initialisation on `device` in `dtype`."""
        _check_positive(vision_dim, "vision_dim")
        _check_positive(d_model, "d_model")
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


class ImageEncoder(nn.Module):
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
        self.grids = None if grids is None else _checked_grids(grids, max_tiles)
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

    # --- adapter files --------------------------------------------------------------------

    def adapter_state_dict(self) -> dict[str, torch.Tensor]:
        """The trainable tensors by name: "projector.<key>", "skip_embedding",
        "newline_embedding" (when used)."""
        state = {f"projector.{key}": value for key, value in self.projector.state_dict().items()}
        state["skip_embedding"] = self.skip_embedding.detach()
        if self.newline_embedding is not None:
            state["newline_embedding"] = self.newline_embedding.detach()
        return state

    def adapter_metadata(self) -> dict[str, str]:
        """What the saved tensors depend on, stored in the file and checked on load."""
        return {"format": ADAPTER_FORMAT, "tower": self.tower.name,
                "vision_dim": str(self.tower.hidden_size), "d_model": str(self.d_model),
                "image_size": str(self.tile), "feature_layer": str(self.tower.feature_layer),
                "newline": str(self.use_newline).lower()}

    def save_adapter(self, path: str | Path) -> Path:
        """Write projector + skip (+ newline) embeddings to a safetensors file, atomically."""
        from safetensors.torch import save_file

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tensors = {key: value.detach().to("cpu").contiguous()
                   for key, value in self.adapter_state_dict().items()}
        partial = path.with_name(path.name + ".partial")
        save_file(tensors, str(partial), metadata=self.adapter_metadata())
        partial.replace(path)
        return path

    def load_adapter(self, path: str | Path) -> None:
        """Load a file written by save_adapter into this encoder (cast to its dtype/device).

        Refuses a file made for another tower size, feature layer, vision_dim or d_model, or
        with/without the newline embedding, since its tensors would not fit or mean the same.
        """
        from safetensors import safe_open

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"adapter file {str(path)!r} does not exist: check the path "
                                    "or train one first")
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
        self._check_adapter(path, metadata, tensors)
        with torch.no_grad():
            for key, target in self.adapter_state_dict().items():
                target.copy_(tensors[key].to(target.device, dtype=target.dtype))

    def _check_adapter(self, path: Path, metadata: dict[str, str],
                       tensors: dict[str, torch.Tensor]) -> None:
        """Raise ValueError naming the first way the file does not fit this encoder."""
        if metadata.get("format") != ADAPTER_FORMAT:
            raise ValueError(f"{str(path)!r} is not an image adapter file (format "
                             f"{metadata.get('format')!r}, expected {ADAPTER_FORMAT!r})")
        expected = self.adapter_metadata()
        for key in ("vision_dim", "d_model", "image_size", "feature_layer", "newline"):
            if metadata.get(key) != expected[key]:
                raise ValueError(f"{str(path)!r} was saved with {key}={metadata.get(key)}, this "
                                 f"encoder has {key}={expected[key]}: build the encoder with "
                                 "the same settings (tower, d_model, image_size, "
                                 "feature_layer, newline) or train a new adapter")
        for key, target in self.adapter_state_dict().items():
            if key not in tensors or tuple(tensors[key].shape) != tuple(target.shape):
                found = tuple(tensors[key].shape) if key in tensors else "missing"
                raise ValueError(f"{str(path)!r}: tensor {key!r} is {found}, expected "
                                 f"{tuple(target.shape)}")


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


def _check_positive(value: int, name: str) -> None:
    """Raise ValueError unless `value` is an integer of at least 1."""
    if not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}={value!r} must be a positive integer")


def _batches(items: list[Any], size: int) -> Iterator[list[Any]]:
    """Consecutive slices of at most `size` items."""
    for start in range(0, len(items), size):
        yield items[start:start + size]
