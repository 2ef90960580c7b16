"""CLIP-style image-text embeddings: texts and pictures as vectors in one space.

A dual encoder (CLIP, SigLIP, SigLIP2) embeds a caption and a photo so that their dot product
says how well they match. The app uses it to compare a query with the pictures themselves
(not only with their captions) and the parrot benchmark uses it to measure how much an image
is chosen for the words it shows.

`ClipEmbedder` satisfies models.embed.Embedder for texts and adds `encode_images`. Vectors are
named "clip:<model id or folder>" so that they are never mixed with another model's.

Preprocessing follows each family's training setup:
- CLIP pools the end-of-text token, so texts are padded to the longest in the batch;
- SigLIP and SigLIP2 pool the last position and were trained on texts padded to the full
  length (64 tokens), so texts are padded to the text tower's maximum length;
- SigLIP2 was trained on lower-cased text, so its texts are lower-cased first.
Texts longer than the text tower's positions are truncated (CLIP: 77 tokens).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from models.devices import resolve_device, resolve_dtype
from models.embed import DEFAULT_BATCH_SIZE, normalise

ImageInput = Any  # str | Path | PIL.Image.Image (PIL is imported lazily)
T = TypeVar("T")

NAME_PREFIX = "clip:"
# Families whose text tower pools the last position and was trained on full-length padding.
PAD_TO_MAX_LENGTH = frozenset({"siglip", "siglip2"})
# Families trained on lower-cased text.
LOWERCASE_TEXT = frozenset({"siglip2"})
TEXT_INPUTS = ("input_ids", "attention_mask", "position_ids")
# A tokenizer without a known limit reports a huge model_max_length; ignore such values.
UNKNOWN_MAX_LENGTH = 1_000_000


class ClipEmbedder:
    """Texts and images -> L2-normalised float32 vectors of one dual-encoder model.

    Build it with `ClipEmbedder.from_pretrained(id_or_folder)`; the constructor takes
    already-loaded parts (tests and callers that share a model use it).
    """

    def __init__(self, model: Any, tokenizer: Any, image_processor: Any, *, name: str,
                 device: str = "cpu", batch_size: int = DEFAULT_BATCH_SIZE) -> None:
        """Wrap a loaded model, its tokenizer and its image processor.

        `name` is the name stored with the vectors ("clip:<source>" from from_pretrained).
        """
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size} must be at least 1")
        for method in ("get_text_features", "get_image_features"):
            if not callable(getattr(model, method, None)):
                raise TypeError(
                    f"{type(model).__name__} has no {method}(): give a dual image-text model "
                    "such as CLIPModel, SiglipModel or Siglip2Model"
                )
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.name = name
        self.device = device
        self.batch_size = batch_size
        self.model_type = str(getattr(model.config, "model_type", ""))
        self.max_text_tokens = _max_text_tokens(model.config, tokenizer)
        self._dim: int | None = None

    @classmethod
    def from_pretrained(cls, source: str | Path, *, device: str = "cpu", dtype: str = "auto",
                        batch_size: int = DEFAULT_BATCH_SIZE) -> ClipEmbedder:
        """Load a CLIP, SigLIP or SigLIP2 model from a hub id (cached) or a local folder.

        `device` "auto" picks cuda when available. `dtype` "auto" keeps float32 on the CPU
        (half precision is slow there) and the checkpoint's own dtype on a GPU; "float32",
        "float16" and "bfloat16" force one. The model is put in eval mode.
        """
        source = str(source).strip()
        if not source:
            raise ValueError("CLIP model id or folder is empty: pass a model id such as "
                             "'openai/clip-vit-base-patch32' or a local folder")
        device = resolve_device(device)
        dtype_value = resolve_dtype(dtype, device, gpu_auto="checkpoint")
        model, tokenizer, image_processor = _load_parts(source, device, dtype_value)
        return cls(model, tokenizer, image_processor, name=NAME_PREFIX + source, device=device,
                   batch_size=batch_size)

    @property
    def dim(self) -> int:
        """The vector length (found once by embedding an empty text)."""
        if self._dim is None:
            self._dim = int(self._encode_text_batch([""]).shape[1])
        return self._dim

    def encode(self, texts: list[str]) -> np.ndarray:
        """Embed texts in batches: float32 [len(texts), dim], rows of unit length.

        Texts longer than the text tower's positions are truncated, never rejected.
        """
        texts = _checked_list(texts, str, "encode", "strings")
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        parts = [self._encode_text_batch(batch) for batch in _batches(texts, self.batch_size)]
        return normalise(np.concatenate(parts))

    def encode_images(self, images: list[ImageInput]) -> np.ndarray:
        """Embed pictures in batches: float32 [len(images), dim], rows of unit length.

        Items are file paths or PIL images. Each is turned upright by its EXIF orientation
        and converted to RGB (transparency over white) before the model's own preprocessing,
        so a phone photo embeds the way it is displayed. Files are opened one batch at a time.
        """
        from PIL import Image

        images = _checked_list(images, (str, Path, Image.Image), "encode_images",
                               "file paths or PIL images")
        if not images:
            return np.zeros((0, self.dim), dtype=np.float32)
        parts = [self._encode_image_batch([load_rgb_image(item) for item in batch])
                 for batch in _batches(images, self.batch_size)]
        return normalise(np.concatenate(parts))

    def _encode_text_batch(self, texts: list[str]) -> np.ndarray:
        """One forward pass of the text tower; unnormalised float32 features."""
        import torch

        if self.model_type in LOWERCASE_TEXT:
            texts = [text.lower() for text in texts]
        padding = "max_length" if self.model_type in PAD_TO_MAX_LENGTH else True
        tokens = self.tokenizer(texts, padding=padding, truncation=True,
                                max_length=self.max_text_tokens, return_tensors="pt")
        inputs = {key: value.to(self.device) for key, value in tokens.items()
                  if key in TEXT_INPUTS}
        with torch.inference_mode():
            output = self.model.get_text_features(**inputs)
        return _features(output)

    def _encode_image_batch(self, images: list[Any]) -> np.ndarray:
        """One forward pass of the image tower; unnormalised float32 features."""
        import torch

        processed = self.image_processor(images=images, return_tensors="pt")
        dtype = self.model.dtype
        inputs = {key: value.to(self.device, dtype=dtype) if value.is_floating_point()
                  else value.to(self.device) for key, value in processed.items()}
        with torch.inference_mode():
            output = self.model.get_image_features(**inputs)
        return _features(output)

    def __repr__(self) -> str:
        return f"ClipEmbedder(name={self.name!r}, device={self.device!r})"


def text_image_similarity(embedder: ClipEmbedder, texts: list[str],
                          images: list[ImageInput]) -> np.ndarray:
    """Cosine similarity of every text with every image: float32 [len(texts), len(images)].

    A convenience for tests and benchmarks (for example how much a picture that shows a word
    attracts a query containing that word).
    """
    return embedder.encode(texts) @ embedder.encode_images(images).T


def load_rgb_image(item: ImageInput) -> Any:
    """A PIL RGB image, upright per its EXIF orientation, from a path or a PIL image.

    A transparent background becomes white (a plain RGB conversion would show whatever colour
    the invisible pixels hold, often black).
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    if isinstance(item, Image.Image):
        return _to_rgb(ImageOps.exif_transpose(item))
    path = Path(item).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"image file {str(path)!r} does not exist: check the path")
    try:
        with Image.open(path) as opened:
            return _to_rgb(ImageOps.exif_transpose(opened))
    except (UnidentifiedImageError, OSError) as error:
        raise ValueError(f"{str(path)!r} is not an image Pillow can read ({error}): give a "
                         "JPEG, PNG, WebP or another common format") from error


def _to_rgb(image: Any) -> Any:
    """RGB copy of an image; transparency is composited over white."""
    from PIL import Image

    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _features(output: Any) -> np.ndarray:
    """The projected embeddings from get_*_features, as float32 numpy.

    transformers 5 returns a model output whose `pooler_output` holds the embeddings; older
    versions (and some remote-code models) return the tensor itself.
    """
    import torch

    tensor = output if isinstance(output, torch.Tensor) else getattr(output, "pooler_output",
                                                                       None)
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"the model returned {type(output).__name__} without pooler_output: "
                           "this transformers version or model is not supported here")
    return tensor.detach().to("cpu", dtype=torch.float32).numpy()


def _max_text_tokens(config: Any, tokenizer: Any) -> int:
    """Tokens the text tower accepts: its position count, or the tokenizer's smaller limit."""
    text_config = getattr(config, "text_config", config)
    limit = int(getattr(text_config, "max_position_embeddings", 77))
    tokenizer_limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(tokenizer_limit, int) and 0 < tokenizer_limit < UNKNOWN_MAX_LENGTH:
        limit = min(limit, tokenizer_limit)
    return limit


def _load_parts(source: str, device: str, dtype: Any) -> tuple[Any, Any, Any]:
    """Model, tokenizer and image processor of `source`, with errors that say what to do.

    A local folder is read with local_files_only, so no network call is attempted for it.
    """
    from transformers import (
        AutoConfig,
        AutoImageProcessor,
        AutoModel,
        AutoTokenizer,
        CLIPModel,
    )

    local = Path(source).expanduser()
    looks_local = source.startswith((".", "/", "~")) or local.exists()
    if looks_local and not local.is_dir():
        raise RuntimeError(f"CLIP model folder {source!r} does not exist: give the folder that "
                           "holds config.json, the weights, the tokenizer files and "
                           "preprocessor_config.json, or a Hugging Face model id")
    where = str(local) if looks_local else source
    options = {"local_files_only": True} if looks_local else {}
    try:
        config = AutoConfig.from_pretrained(where, **options)
        model_class = CLIPModel if config.model_type == "clip" else AutoModel
        model = model_class.from_pretrained(where, dtype=dtype, **options)
        _check_dual_encoder(model, source)
        tokenizer = AutoTokenizer.from_pretrained(where, **options)
        image_processor = AutoImageProcessor.from_pretrained(where, **options)
    except (OSError, ValueError, KeyError) as error:
        where_hint = ("check that the folder holds config.json, the weights, the tokenizer "
                      "files and preprocessor_config.json") if looks_local else (
            f"without internet access download it first (`hf download {source}`) or give a "
            "local folder holding its files")
        raise RuntimeError(f"could not load the image-text model {source!r} "
                           f"({type(error).__name__}: {error}); {where_hint}") from error
    return model.to(device).eval(), tokenizer, image_processor


def _check_dual_encoder(model: Any, source: str) -> None:
    """Raise when the loaded model lacks a text or an image tower."""
    if not (callable(getattr(model, "get_text_features", None))
            and callable(getattr(model, "get_image_features", None))):
        # RuntimeError like every other load failure, so callers handle one kind of error
        raise RuntimeError(  # noqa: TRY004
            f"{source!r} loads as {type(model).__name__}, which has no text and image towers: "
            "give a CLIP, SigLIP or SigLIP2 model")


def _checked_list(items: Sequence[T], kinds: Any, method: str, what: str) -> list[T]:
    """`items` as a list after checking it is a list of `kinds`, with errors naming the item."""
    if isinstance(items, (str, Path)) or not isinstance(items, (list, tuple)):
        raise TypeError(f"{method}() takes a list of {what}, not a single "
                        f"{type(items).__name__}: wrap it in a list")
    for position, item in enumerate(items):
        if not isinstance(item, kinds):
            raise TypeError(f"{method}(): item [{position}] is {type(item).__name__}; expected "
                            f"{what}")
    return list(items)


def _batches(items: list[T], size: int) -> Iterator[list[T]]:
    """Consecutive slices of at most `size` items."""
    for start in range(0, len(items), size):
        yield items[start:start + size]
