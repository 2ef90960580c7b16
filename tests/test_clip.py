"""models/clip.py: CLIP / SigLIP / SigLIP2 embeddings of texts and images, on tiny random models
saved to a folder and loaded offline exactly as a real model is."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw, ImageOps

from models.clip import ClipEmbedder, load_rgb_image, text_image_similarity
from models.embed import Embedder, normalise
from tests.tiny_models import (  # noqa: F401
    CLIP_TEXT_POSITIONS,
    build_tiny_lm,
    tiny_clip_dir,
    tiny_siglip2_dir,
    tiny_siglip_dir,
)

CLIP_MEAN = np.array([0.48145466, 0.4578275, 0.40821073], dtype=np.float32)
CLIP_STD = np.array([0.26862954, 0.26130258, 0.27577711], dtype=np.float32)
TEXTS = ["a cat", "the dog sleeps on a red sofa", "", "Falcon 9 lifts off at night"]
LONG_TEXT = " ".join(["the river runs past the old stone bridge"] * 20)


@pytest.fixture(scope="module")
def clip(tiny_clip_dir):  # noqa: F811
    return ClipEmbedder.from_pretrained(tiny_clip_dir)


@pytest.fixture(scope="module")
def reference(tiny_clip_dir):  # noqa: F811
    """The same model and tokenizer loaded directly with transformers, for reference values."""
    from transformers import AutoTokenizer, CLIPModel

    return CLIPModel.from_pretrained(tiny_clip_dir).eval(), AutoTokenizer.from_pretrained(
        tiny_clip_dir)


def picture(width: int = 48, height: int = 32, seed: int = 0) -> Image.Image:
    """A deterministic, asymmetric RGB picture: smooth noise plus a few solid shapes."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(4, 6, 3), dtype=np.uint8)
    image = Image.fromarray(small).resize((width, height), Image.Resampling.BILINEAR)
    draw = ImageDraw.Draw(image)
    draw.rectangle([2, 2, width // 3, height // 2], fill=(250, 30, 30))
    draw.ellipse([width // 2, height // 3, width - 3, height - 3], fill=(20, 40, 230))
    return image


def reference_text(reference, text: str) -> np.ndarray:
    """get_text_features on one unpadded text, truncated like the tower's positions."""
    model, tokenizer = reference
    tokens = tokenizer([text], truncation=True, max_length=CLIP_TEXT_POSITIONS,
                       return_tensors="pt")
    with torch.inference_mode():
        features = model.get_text_features(**tokens).pooler_output
    return normalise(features.numpy())[0]


def reference_image(reference, image: Image.Image) -> np.ndarray:
    """get_image_features on a 32x32 image preprocessed by hand (rescale, CLIP mean/std)."""
    model, _ = reference
    assert image.size == (32, 32)  # resize and crop are identities at this size
    pixels = (np.asarray(image, dtype=np.float32) / 255.0 - CLIP_MEAN) / CLIP_STD
    pixel_values = torch.from_numpy(pixels.transpose(2, 0, 1)[None].copy())
    with torch.inference_mode():
        features = model.get_image_features(pixel_values=pixel_values).pooler_output
    return normalise(features.numpy())[0]


def test_satisfies_the_embedder_protocol_and_names_the_model(clip, tiny_clip_dir):  # noqa: F811
    protocol: Embedder = clip
    assert protocol.name == f"clip:{tiny_clip_dir}"
    assert clip.dim == 16
    assert clip.max_text_tokens == CLIP_TEXT_POSITIONS
    assert not clip.model.training


def test_text_vectors_have_shape_dtype_and_unit_norm(clip):
    vectors = clip.encode(TEXTS)
    assert vectors.shape == (len(TEXTS), 16)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert clip.encode([]).shape == (0, 16)


def test_text_vectors_equal_a_direct_computation_with_the_model(clip, reference):
    batched = clip.encode(TEXTS)  # padded to the longest text in the batch
    for text, vector in zip(TEXTS, batched):
        np.testing.assert_allclose(vector, reference_text(reference, text), atol=1e-5)


def test_encoding_is_deterministic_and_independent_of_batching(tiny_clip_dir):  # noqa: F811
    torch.manual_seed(0)
    one = ClipEmbedder.from_pretrained(tiny_clip_dir, batch_size=1)
    many = ClipEmbedder.from_pretrained(tiny_clip_dir, batch_size=3)
    np.testing.assert_array_equal(one.encode(TEXTS), one.encode(TEXTS))
    np.testing.assert_allclose(one.encode(TEXTS), many.encode(TEXTS), atol=1e-5)
    images = [picture(seed=seed) for seed in range(4)]
    np.testing.assert_allclose(one.encode_images(images), many.encode_images(images), atol=1e-5)


def test_long_text_is_truncated_to_the_text_tower(clip, reference):
    vector = clip.encode([LONG_TEXT])[0]
    np.testing.assert_allclose(vector, reference_text(reference, LONG_TEXT), atol=1e-5)
    # words past the limit do not change the vector
    np.testing.assert_allclose(vector, clip.encode([LONG_TEXT + " and a rocket"])[0], atol=1e-6)
    assert not np.allclose(vector, clip.encode(["the river"])[0], atol=1e-3)


def test_image_vectors_equal_a_direct_computation_with_the_model(clip, reference):
    images = [picture(32, 32, seed=seed) for seed in range(3)]
    vectors = clip.encode_images(images)
    assert vectors.shape == (3, 16) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    for image, vector in zip(images, vectors):
        np.testing.assert_allclose(vector, reference_image(reference, image), atol=1e-4)


def test_non_square_images_go_through_the_models_own_processor(clip, reference, tiny_clip_dir):  # noqa: F811
    from transformers import AutoImageProcessor

    image = picture(64, 40)
    processor = AutoImageProcessor.from_pretrained(tiny_clip_dir)
    pixel_values = processor(images=[image], return_tensors="pt")["pixel_values"]
    assert tuple(pixel_values.shape) == (1, 3, 32, 32)  # shortest edge 32, centre crop
    with torch.inference_mode():
        expected = reference[0].get_image_features(pixel_values=pixel_values).pooler_output
    np.testing.assert_allclose(clip.encode_images([image])[0], normalise(expected.numpy())[0],
                               atol=1e-5)


def test_the_same_picture_twice_gives_identical_vectors(clip, tmp_path):
    path = tmp_path / "photo.png"
    picture().save(path)
    first = clip.encode_images([path])
    np.testing.assert_array_equal(first, clip.encode_images([path]))  # bit for bit
    np.testing.assert_array_equal(first, clip.encode_images([str(path)]))
    np.testing.assert_array_equal(first, clip.encode_images([picture()]))  # PNG is lossless
    # rows of one batch agree up to float rounding
    np.testing.assert_allclose(clip.encode_images([path, path]), np.repeat(first, 2, axis=0),
                               atol=1e-6)


def test_exif_rotated_jpeg_embeds_like_the_upright_picture(clip, tmp_path):
    upright = picture(48, 32)
    # Orientation 8 tells viewers to rotate 90 degrees counter-clockwise; store the pixels
    # turned the other way, as a camera held sideways does.
    stored = upright.transpose(Image.Transpose.ROTATE_270)
    exif = Image.Exif()
    exif[0x0112] = 8
    rotated_path, upright_path = tmp_path / "sideways.jpg", tmp_path / "upright.jpg"
    stored.save(rotated_path, quality=100, subsampling=0, exif=exif.tobytes())
    upright.save(upright_path, quality=100, subsampling=0)
    with Image.open(rotated_path) as opened:
        assert opened.size == (32, 48)
        raw = Image.fromarray(np.asarray(opened.convert("RGB")))  # pixels only, no EXIF
    assert load_rgb_image(rotated_path).size == (48, 32)

    from_exif, from_upright, ignoring_exif = clip.encode_images([rotated_path, upright_path,
                                                                 raw])
    # `raw` holds the stored pixels without the EXIF tag, so it stays sideways. The tiny
    # random model sees little of the content, so compare distances rather than thresholds.
    to_upright = 1.0 - float(from_exif @ from_upright)  # JPEG rounding only
    to_sideways = 1.0 - float(from_exif @ ignoring_exif)
    assert to_upright < 1e-4
    assert to_upright < 0.01 * to_sideways
    with Image.open(rotated_path) as opened:
        turned_by_hand = ImageOps.exif_transpose(opened)
    np.testing.assert_allclose(from_exif, clip.encode_images([turned_by_hand])[0], atol=1e-6)


def test_transparent_pixels_become_white(clip):
    clear = Image.new("RGBA", (32, 32), (0, 0, 0, 0))
    assert load_rgb_image(clear).getpixel((0, 0)) == (255, 255, 255)
    white = Image.new("RGB", (32, 32), (255, 255, 255))
    np.testing.assert_allclose(clip.encode_images([clear]), clip.encode_images([white]),
                               atol=1e-6)


def test_similarity_matrix_is_the_cosine_of_text_and_image_vectors(clip):
    images = [picture(seed=1), picture(seed=2)]
    matrix = text_image_similarity(clip, TEXTS[:3], images)
    assert matrix.shape == (3, 2) and matrix.dtype == np.float32
    expected = clip.encode(TEXTS[:3]) @ clip.encode_images(images).T
    np.testing.assert_allclose(matrix, expected, atol=1e-6)
    assert np.all(np.abs(matrix) <= 1.0 + 1e-5)


def test_wrong_inputs_say_what_to_pass(clip, tmp_path):
    with pytest.raises(TypeError, match="list of strings"):
        clip.encode("a cat")
    with pytest.raises(TypeError, match=r"item \[1\] is int"):
        clip.encode(["a cat", 3])
    with pytest.raises(TypeError, match="list of file paths or PIL images"):
        clip.encode_images(picture())
    with pytest.raises(FileNotFoundError, match="missing.png"):
        clip.encode_images([tmp_path / "missing.png"])
    (tmp_path / "notes.jpg").write_text("not a picture")
    with pytest.raises(ValueError, match="not an image"):
        clip.encode_images([tmp_path / "notes.jpg"])
    assert clip.encode_images([]).shape == (0, 16)


def test_unknown_model_id_offline_says_to_download_it():
    with pytest.raises(RuntimeError, match=r"(?s)no-such-org/no-such-clip.*hf download"):
        ClipEmbedder.from_pretrained("no-such-org/no-such-clip")


def test_missing_folder_and_text_only_model_are_explained(tmp_path):
    with pytest.raises(RuntimeError, match="does not exist"):
        ClipEmbedder.from_pretrained(tmp_path / "nowhere")
    with pytest.raises(RuntimeError, match="no text and image towers"):
        ClipEmbedder.from_pretrained(build_tiny_lm(tmp_path / "llama"))
    with pytest.raises(ValueError, match="empty"):
        ClipEmbedder.from_pretrained(" ")


def test_dtype_setting(tiny_clip_dir):  # noqa: F811
    half = ClipEmbedder.from_pretrained(tiny_clip_dir, dtype="bfloat16")
    assert half.model.dtype == torch.bfloat16
    vectors = half.encode(["a cat"])
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    with pytest.raises(ValueError, match="dtype 'int3'"):
        ClipEmbedder.from_pretrained(tiny_clip_dir, dtype="int3")


def test_siglip_pads_texts_to_full_length_like_its_training(tiny_siglip_dir):  # noqa: F811
    from transformers import AutoModel, AutoTokenizer

    siglip = ClipEmbedder.from_pretrained(tiny_siglip_dir)
    assert siglip.name == f"clip:{tiny_siglip_dir}" and siglip.dim == 32
    model = AutoModel.from_pretrained(tiny_siglip_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_siglip_dir)
    texts = ["a cat", LONG_TEXT]
    full = tokenizer(texts, padding="max_length", truncation=True,
                     max_length=CLIP_TEXT_POSITIONS, return_tensors="pt")
    short = tokenizer(texts[:1], return_tensors="pt")
    with torch.inference_mode():
        expected = normalise(model.get_text_features(**full).pooler_output.numpy())
        unpadded = normalise(model.get_text_features(**short).pooler_output.numpy())
    vectors = siglip.encode(texts)
    np.testing.assert_allclose(vectors, expected, atol=1e-5)
    assert not np.allclose(vectors[0], unpadded[0], atol=1e-3)  # the padding matters

    images = [picture(seed=3), picture(32, 32, seed=4)]
    pixels = siglip.image_processor(images=images, return_tensors="pt")
    with torch.inference_mode():
        expected_images = normalise(model.get_image_features(**pixels).pooler_output.numpy())
    np.testing.assert_allclose(siglip.encode_images(images), expected_images, atol=1e-5)


def test_siglip2_naflex_images_and_lower_cased_text(tiny_siglip2_dir):  # noqa: F811
    siglip2 = ClipEmbedder.from_pretrained(tiny_siglip2_dir)
    assert siglip2.model_type == "siglip2" and siglip2.dim == 32
    upper, lower, other = siglip2.encode(["A CAT ON THE SOFA", "a cat on the sofa", "a dog"])
    np.testing.assert_allclose(upper, lower, atol=1e-6)
    assert not np.allclose(lower, other, atol=1e-3)
    vectors = siglip2.encode_images([picture(48, 32), picture(20, 60, seed=5)])
    assert vectors.shape == (2, 32)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
