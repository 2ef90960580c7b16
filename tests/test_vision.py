"""models/vision.py, vision_tower.py, tiling.py, vision_adapter.py: vision tower, position
interpolation, projector, tiling with skip tokens and the image encoder, on tiny random
CLIP / SigLIP vision models loaded from folders."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw
from safetensors import safe_open

from models.tiling import cut_views, plan_tiles
from models.vision import ImageEncoder, Projector
from models.vision_tower import CLIP_MEAN, VisionTower
from tests.tiny_models import (  # noqa: F401
    build_tiny_clip_vision,
    build_tiny_siglip_vision,
    tiny_clip_dir,
    tiny_siglip_dir,
)

D_MODEL = 24


@pytest.fixture(scope="module")
def clip_vision_dir(tmp_path_factory):
    """A vision-only CLIP checkpoint: 56 px, 14-px patches (4x4 grid), no preprocessor file."""
    return build_tiny_clip_vision(tmp_path_factory.mktemp("clip-vision"))


@pytest.fixture(scope="module")
def siglip_vision_dir(tmp_path_factory):
    """A vision-only SigLIP checkpoint: 32 px, 8-px patches (4x4 grid)."""
    return build_tiny_siglip_vision(tmp_path_factory.mktemp("siglip-vision"))


@pytest.fixture(scope="module")
def clip_tower(tiny_clip_dir):  # noqa: F811
    """The tiny full CLIP checkpoint's vision tower at its training size (32 px, 16 patches)."""
    return VisionTower.from_pretrained(tiny_clip_dir)


def reference_clip(folder):
    from transformers import CLIPModel

    return CLIPModel.from_pretrained(folder).eval().vision_model


def picture(width: int = 48, height: int = 32, seed: int = 0) -> Image.Image:
    """A deterministic, asymmetric RGB picture: smooth noise plus two solid shapes."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(4, 6, 3), dtype=np.uint8)
    image = Image.fromarray(small).resize((width, height), Image.Resampling.BILINEAR)
    draw = ImageDraw.Draw(image)
    draw.rectangle([1, 1, width // 3, height // 2], fill=(250, 30, 30))
    draw.ellipse([width // 2, height // 3, width - 2, height - 2], fill=(20, 40, 230))
    return image


def pixels(n: int, size: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def make_encoder(tower, **options) -> ImageEncoder:
    return ImageEncoder(tower, D_MODEL, **options).eval()


# --- Vision tower -------------------------------------------------------------------------


def test_clip_tower_from_full_checkpoint_gives_last_layer_patches_without_cls(
        clip_tower, tiny_clip_dir):  # noqa: F811
    reference = reference_clip(tiny_clip_dir)
    batch = pixels(2, 32)
    with torch.inference_mode():
        features = clip_tower(batch)
        expected = reference(pixel_values=batch).last_hidden_state
    assert clip_tower.n_patches == 16 and clip_tower.hidden_size == 32
    assert features.shape == (2, 16, 32)
    torch.testing.assert_close(features, expected[:, 1:], rtol=0, atol=0)
    assert not any(parameter.requires_grad for parameter in clip_tower.parameters())


def test_feature_layer_picks_that_hidden_state(tiny_clip_dir):  # noqa: F811
    tower = VisionTower.from_pretrained(tiny_clip_dir, feature_layer=-2)
    reference = reference_clip(tiny_clip_dir)
    batch = pixels(1, 32)
    with torch.inference_mode():
        expected = reference(pixel_values=batch, output_hidden_states=True).hidden_states[-2]
        torch.testing.assert_close(tower(batch), expected[:, 1:], rtol=0, atol=0)
    with pytest.raises(ValueError, match="feature_layer=3 .*-3..2"):
        VisionTower.from_pretrained(tiny_clip_dir, feature_layer=3)


def test_vision_only_clip_checkpoint_loads_with_default_normalisation(clip_vision_dir):
    tower = VisionTower.from_pretrained(clip_vision_dir)
    assert (tower.family, tower.image_size, tower.patch_size, tower.n_patches) == (
        "clip", 56, 14, 16)
    assert tower.image_mean == CLIP_MEAN
    with torch.inference_mode():
        assert tower(pixels(3, 56)).shape == (3, 16, 32)


@pytest.mark.parametrize("which", ["full", "vision-only"])
def test_siglip_tower_keeps_every_patch(which, tiny_siglip_dir, siglip_vision_dir):  # noqa: F811
    from transformers import SiglipVisionModel

    folder = tiny_siglip_dir if which == "full" else siglip_vision_dir
    tower = VisionTower.from_pretrained(folder)
    reference = SiglipVisionModel.from_pretrained(folder).eval()
    batch = pixels(2, 32)
    with torch.inference_mode():
        expected = reference(pixel_values=batch, output_hidden_states=True).hidden_states[-1]
        features = tower(batch)
    assert tower.family == "siglip" and tower.image_mean == (0.5, 0.5, 0.5)
    assert features.shape == (2, 16, 32)  # SigLIP has no CLS token
    torch.testing.assert_close(features, expected, rtol=0, atol=0)


def test_preprocess_matches_the_checkpoints_image_processor(clip_tower, tiny_clip_dir):  # noqa: F811
    from transformers import AutoImageProcessor

    image = picture(32, 32)
    processor = AutoImageProcessor.from_pretrained(tiny_clip_dir)
    expected = processor(images=[image], return_tensors="pt")["pixel_values"]
    torch.testing.assert_close(clip_tower.preprocess([image]), expected, rtol=0, atol=1e-5)
    assert clip_tower.preprocess([picture(50, 20)]).shape == (1, 3, 32, 32)


def test_load_errors_say_what_to_do(tmp_path):
    from transformers import LlamaConfig

    with pytest.raises(RuntimeError, match="does not exist"):
        VisionTower.from_pretrained(tmp_path / "missing")
    LlamaConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                intermediate_size=64).save_pretrained(tmp_path)
    with pytest.raises(RuntimeError, match="'llama' is not CLIP or SigLIP"):
        VisionTower.from_pretrained(tmp_path)
    with pytest.raises(ValueError, match="empty"):
        VisionTower.from_pretrained(" ")


# --- Position-embedding interpolation -------------------------------------------------------


def test_training_size_changes_nothing(tiny_clip_dir, clip_tower):  # noqa: F811
    reference = reference_clip(tiny_clip_dir)
    tower = VisionTower.from_pretrained(tiny_clip_dir, image_size=32)
    table = tower.model.embeddings.position_embedding.weight
    torch.testing.assert_close(table, reference.embeddings.position_embedding.weight,
                               rtol=0, atol=0)
    with torch.inference_mode():
        torch.testing.assert_close(tower(pixels(1, 32)), clip_tower(pixels(1, 32)),
                                   rtol=0, atol=0)


@pytest.mark.parametrize("size,grid", [(24, 3), (48, 6)])
def test_clip_interpolated_table_is_bicubic_over_the_grid_with_cls_kept(
        tiny_clip_dir, size, grid):  # noqa: F811
    reference = reference_clip(tiny_clip_dir)
    original = reference.embeddings.position_embedding.weight.detach()
    tower = VisionTower.from_pretrained(tiny_clip_dir, image_size=size)
    square = original[1:].reshape(1, 4, 4, 32).permute(0, 3, 1, 2)
    expected = torch.nn.functional.interpolate(square, size=(grid, grid), mode="bicubic",
                                               align_corners=False)
    expected = torch.cat([original[:1], expected.permute(0, 2, 3, 1).reshape(grid * grid, 32)])
    table = tower.model.embeddings.position_embedding.weight
    assert table.shape == (grid * grid + 1, 32)
    torch.testing.assert_close(table, expected, rtol=0, atol=0)
    batch = pixels(2, size)
    with torch.inference_mode():
        features = tower(batch)
        # transformers' own forward-time interpolation gives the same result
        on_the_fly = reference(pixel_values=batch, interpolate_pos_encoding=True)
    assert features.shape == (2, grid * grid, 32) and tower.n_patches == grid * grid
    torch.testing.assert_close(features, on_the_fly.last_hidden_state[:, 1:], rtol=0, atol=1e-6)


def test_siglip_interpolation_agrees_with_transformers(siglip_vision_dir):
    from transformers import SiglipVisionModel

    tower = VisionTower.from_pretrained(siglip_vision_dir, image_size=24)
    reference = SiglipVisionModel.from_pretrained(siglip_vision_dir).eval()
    batch = pixels(2, 24)
    with torch.inference_mode():
        expected = reference(pixel_values=batch, interpolate_pos_encoding=True,
                             output_hidden_states=True).hidden_states[-1]
        features = tower(batch)
    assert features.shape == (2, 9, 32)
    torch.testing.assert_close(features, expected, rtol=0, atol=1e-6)


def test_xcomposer_like_downsizing_of_a_vision_only_clip(clip_vision_dir):
    """56 px / 14-px patches (4x4) used at 42 px (3x3), as 336 -> 224 px for ViT-L/14."""
    tower = VisionTower.from_pretrained(clip_vision_dir, image_size=42)
    assert (tower.training_image_size, tower.image_size, tower.n_patches) == (56, 42, 9)
    with torch.inference_mode():
        assert tower(pixels(1, 42)).shape == (1, 9, 32)
    with pytest.raises(ValueError, match=r"pixel_values are \(56, 56\).*42x42"):
        tower(pixels(1, 56))
    with pytest.raises(ValueError, match="image_size=40 is not a multiple of the patch size 14"):
        VisionTower.from_pretrained(clip_vision_dir, image_size=40)


# --- Projector -------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_projector_is_linear_gelu_linear(dtype):
    projector = Projector(32, D_MODEL, dtype=dtype)
    assert list(projector.state_dict()) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert isinstance(projector[1], torch.nn.GELU)
    features = torch.randn(2, 5, 32, dtype=dtype)
    output = projector(features)
    assert output.shape == (2, 5, D_MODEL) and output.dtype == dtype
    expected = projector[2](torch.nn.functional.gelu(projector[0](features)))
    torch.testing.assert_close(output, expected)
    with pytest.raises(ValueError, match="d_model=0"):
        Projector(32, 0)


# --- Tiling geometry -------------------------------------------------------------------------


@pytest.mark.parametrize("width,height,grid", [
    (900, 300, (1, 3)),   # 3:1 panorama
    (300, 300, (2, 2)),   # square: the larger of the exact grids
    (300, 900, (3, 1)),   # tall 1:3
    (600, 300, (1, 2)),   # 2:1
    (400, 300, (2, 2)),   # 4:3: closer to 1:1 than to 2:1; 2x2 over 1x1
    (2000, 300, (1, 4)),  # wider than any grid: the widest
])
def test_grid_matches_the_aspect_ratio(width, height, grid):
    plan = plan_tiles(width, height, tile=32, max_tiles=4)
    assert (plan.rows, plan.cols) == grid
    # the image is scaled to fill the grid's width or height, keeping its aspect ratio
    assert plan.content_width == plan.cols * 32 or plan.content_height == plan.rows * 32
    assert abs(plan.content_width / plan.content_height - width / height) < 0.1 * width / height


def test_default_grids_never_have_pure_padding_tiles():
    for width in range(8, 200, 7):
        for height in range(8, 200, 11):
            for max_tiles in (1, 4, 6, 9):
                plan = plan_tiles(width, height, tile=16, max_tiles=max_tiles)
                assert plan.skipped_tiles == 0, (width, height, max_tiles, plan)


def content_on_canvas(plan) -> np.ndarray:
    """Which canvas pixels show the image, found by drawing it (white on black)."""
    white = Image.new("RGB", (plan.content_width, plan.content_height), (255, 255, 255))
    canvas = Image.new("RGB", (plan.cols * plan.tile, plan.rows * plan.tile), (0, 0, 0))
    canvas.paste(white, (0, 0))
    return np.asarray(canvas)[..., 0] > 0


@pytest.mark.parametrize("width,height,grids,skipped", [
    (64, 32, [(1, 1), (2, 2)], 2),  # 2:1 on square grids only: bottom row is padding
    (90, 30, [(2, 2)], 2),          # SPHINX-style fixed 2x2 grid, 3:1 panorama
    (100, 37, [(3, 3)], 3),         # awkward size: the middle row keeps 2 pixel rows
    (37, 100, [(3, 3)], 3),         # the same, tall: the right column is padding
    (30, 90, [(2, 2)], 2),
    (50, 50, [(3, 3)], 0),
])
def test_padding_tiles_follow_from_geometry(width, height, grids, skipped):
    plan = plan_tiles(width, height, tile=16, max_tiles=9, grids=grids)
    shown = content_on_canvas(plan)
    for row, col in plan.tiles():
        left, top, right, bottom = plan.box(row, col)
        assert plan.is_padding(row, col) == (not shown[top:bottom, left:right].any()), (row, col)
    assert plan.skipped_tiles == skipped
    assert plan.encoded_tiles + plan.skipped_tiles == plan.n_tiles
    views = cut_views(picture(width, height), plan, (0, 0, 0))
    assert len(views) == 1 + plan.encoded_tiles
    assert all(view.size == (16, 16) for view in views)


def test_plan_arguments_are_checked():
    assert plan_tiles(50, 20, tile=16, max_tiles=0).n_tiles == 0  # global view only
    with pytest.raises(ValueError, match="width=0"):
        plan_tiles(0, 20)
    with pytest.raises(ValueError, match=r"grid \(2, 3\) has 6 tiles, more than max_tiles=4"):
        plan_tiles(50, 20, max_tiles=4, grids=[(2, 3)])
    with pytest.raises(ValueError, match="max_tiles=-1"):
        plan_tiles(50, 20, max_tiles=-1)


# --- Image encoder ---------------------------------------------------------------------------


def test_token_layout_global_tiles_skips_and_newlines(clip_tower):
    encoder = make_encoder(clip_tower, max_tiles=4, grids=[(1, 1), (2, 2)])
    image = picture(64, 32)  # 2:1 -> 2x2 grid, bottom row pure padding
    (result,) = encoder.encode_hd([image])
    plan = result.plan
    assert (plan.rows, plan.cols, result.encoded_tiles, result.skipped_tiles) == (2, 2, 2, 2)
    n = clip_tower.n_patches
    assert result.embeddings.shape == (n + 2 * n + 1 + 2 + 1, D_MODEL)
    assert result.n_tokens == encoder.num_tokens(64, 32)
    views = cut_views(image, plan, clip_tower.fill)
    with torch.inference_mode():
        expected = encoder.projector(clip_tower(clip_tower.preprocess(views)))
    tokens = result.embeddings
    torch.testing.assert_close(tokens[:n], expected[0], rtol=0, atol=1e-6)  # global view
    torch.testing.assert_close(tokens[n:2 * n], expected[1], rtol=0, atol=1e-6)  # tile (0, 0)
    torch.testing.assert_close(tokens[2 * n:3 * n], expected[2], rtol=0, atol=1e-6)  # (0, 1)
    assert torch.equal(tokens[3 * n], encoder.newline_embedding)
    assert torch.equal(tokens[3 * n + 1], encoder.skip_embedding)  # (1, 0)
    assert torch.equal(tokens[3 * n + 2], encoder.skip_embedding)  # (1, 1)
    assert torch.equal(tokens[3 * n + 3], encoder.newline_embedding)


def test_padding_tiles_never_reach_the_tower(clip_tower):
    encoder = make_encoder(clip_tower, max_tiles=9, grids=[(3, 3)], batch_size=4)
    batch_sizes: list[int] = []
    hook = clip_tower.model.register_forward_hook(
        lambda module, args, kwargs, output: batch_sizes.append(kwargs["pixel_values"].shape[0]),
        with_kwargs=True)
    try:
        images = [picture(100, 37), picture(37, 100, seed=1), picture(50, 50, seed=2)]
        results = encoder.encode_hd(images)
    finally:
        hook.remove()
    assert [(r.encoded_tiles, r.skipped_tiles) for r in results] == [(6, 3), (6, 3), (9, 0)]
    assert sum(batch_sizes) == 3 + 6 + 6 + 9  # one global view each + content tiles only
    assert max(batch_sizes) <= 4
    n = clip_tower.n_patches
    for result in results:
        skips = (result.embeddings == encoder.skip_embedding).all(dim=1)
        assert int(skips.sum()) == result.skipped_tiles
        assert result.n_tokens == (1 + result.encoded_tiles) * n + result.skipped_tiles + 3


def test_default_tiling_of_a_panorama_and_global_only(clip_tower):
    encoder = make_encoder(clip_tower)
    (tokens,) = encoder.encode([picture(96, 32)])  # 3:1 -> 1x3, nothing skipped
    assert tokens.shape == ((1 + 3) * 16 + 1, D_MODEL)
    single = make_encoder(clip_tower, max_tiles=0, newline=False)  # XComposer2's layout
    (tokens,) = single.encode([picture(96, 32)])
    assert tokens.shape == (16, D_MODEL) and single.newline_embedding is None


def test_encoding_is_deterministic_and_seeded(clip_tower):
    images = [picture(64, 40), picture(30, 70, seed=3)]
    first = make_encoder(clip_tower, seed=7).encode(images)
    torch.manual_seed(123)  # the global RNG does not matter
    again = make_encoder(clip_tower, seed=7)
    for a, b in zip(first, again.encode(images), strict=True):
        assert torch.equal(a, b)
    for a, b in zip(again.encode(images), again.encode(images), strict=True):
        assert torch.equal(a, b)
    other = make_encoder(clip_tower, seed=8).encode(images)
    assert not torch.equal(first[0], other[0])


def test_exif_orientation_is_applied(clip_tower, tmp_path):
    upright = picture(32, 64)  # tall
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # 64 x 32 as a camera stores it
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 clockwise to display"
    path = tmp_path / "phone.png"
    stored.save(path, exif=exif)
    encoder = make_encoder(clip_tower)
    (from_file,) = encoder.encode_hd([path])
    (from_upright,) = encoder.encode_hd([upright])
    assert (from_file.plan.width, from_file.plan.height) == (32, 64)
    assert (from_file.plan.rows, from_file.plan.cols) == (2, 1)
    assert torch.equal(from_file.embeddings, from_upright.embeddings)


def test_rgba_and_grey_images_are_made_rgb(clip_tower):
    encoder = make_encoder(clip_tower)
    rgba = picture(40, 40).convert("RGBA")
    grey = picture(40, 40).convert("L")
    outputs = encoder.encode([rgba, grey])
    assert [tuple(t.shape) for t in outputs] == [(16 * 5 + 2, D_MODEL)] * 2


def test_inference_and_training_modes(clip_tower):
    encoder = make_encoder(clip_tower, grids=[(2, 2)])
    (tokens,) = encoder.encode([picture(64, 32)])
    assert torch.is_inference(tokens)
    encoder.train()
    assert not clip_tower.training  # the frozen tower stays in eval mode
    (tokens,) = encoder.encode([picture(64, 32)])
    tokens.square().mean().backward()
    assert all(p.grad is not None for p in encoder.trainable_parameters())
    assert encoder.skip_embedding.grad.abs().sum() > 0
    assert all(p.grad is None for p in clip_tower.parameters())
    encoder.eval()


def test_output_dtype_and_siglip_encoder(siglip_vision_dir):
    encoder = ImageEncoder.from_pretrained(siglip_vision_dir, D_MODEL, image_size=None,
                                           dtype=torch.bfloat16).eval()
    (tokens,) = encoder.encode([picture(32, 32)])  # square -> 2x2
    assert tokens.dtype == torch.bfloat16
    assert tokens.shape == (16 * 5 + 2, D_MODEL)


def test_from_pretrained_interpolates_to_the_tile_size(clip_vision_dir):
    encoder = ImageEncoder.from_pretrained(clip_vision_dir, D_MODEL, image_size=42).eval()
    assert (encoder.tile, encoder.tower.n_patches) == (42, 9)
    (tokens,) = encoder.encode([picture(84, 42)])  # 2:1 -> 1x2
    assert tokens.shape == (9 * 3 + 1, D_MODEL)


def test_encode_rejects_a_single_image_and_unknown_items(clip_tower):
    encoder = make_encoder(clip_tower)
    with pytest.raises(TypeError, match="wrap it in a list"):
        encoder.encode(picture())
    with pytest.raises(TypeError, match=r"item \[1\] is int"):
        encoder.encode([picture(), 3])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        encoder.encode(["/no/such/picture.png"])


# --- Adapter files ---------------------------------------------------------------------------


def test_adapter_round_trip(clip_tower, tmp_path):
    images = [picture(64, 32)]
    trained = make_encoder(clip_tower, grids=[(2, 2)], seed=1)
    path = trained.save_adapter(tmp_path / "adapters" / "vision.safetensors")
    with safe_open(str(path), framework="pt") as handle:
        assert sorted(handle.keys()) == ["newline_embedding", "projector.0.bias",
                                         "projector.0.weight", "projector.2.bias",
                                         "projector.2.weight", "skip_embedding"]
        assert handle.metadata()["d_model"] == str(D_MODEL)
    fresh = make_encoder(clip_tower, grids=[(2, 2)], seed=2)
    assert not torch.equal(fresh.encode(images)[0], trained.encode(images)[0])
    fresh.load_adapter(path)
    assert torch.equal(fresh.encode(images)[0], trained.encode(images)[0])
    half = make_encoder(clip_tower, grids=[(2, 2)], dtype=torch.bfloat16)
    half.load_adapter(path)
    assert torch.equal(half.skip_embedding, trained.skip_embedding.to(torch.bfloat16))


def test_adapter_mismatches_are_refused(clip_tower, tmp_path):
    path = make_encoder(clip_tower).save_adapter(tmp_path / "vision.safetensors")
    with pytest.raises(ValueError, match="saved with d_model=24, this encoder has d_model=8"):
        ImageEncoder(clip_tower, 8).load_adapter(path)
    with pytest.raises(ValueError, match="newline=true, this encoder has newline=false"):
        make_encoder(clip_tower, newline=False).load_adapter(path)
    with pytest.raises(FileNotFoundError, match="train one first"):
        make_encoder(clip_tower).load_adapter(tmp_path / "missing.safetensors")
