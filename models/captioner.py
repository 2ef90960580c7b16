"""Image captioners: a library image -> a detailed caption that retrieval can match.

Retrieval matches a writer's image description against library captions, so an image without
a caption can never be found. ShareGPT4V (REFERENCE section 6) showed that long, detailed
captions align images and text far better than short ones; a captioning model fills the gap
for images that came without a caption (the default is no model: captions come from users
and sidecar files).

`TransformersCaptioner` runs any image-to-text model transformers can load:
  classic captioners (BLIP, BLIP-2, GIT, VisionEncoderDecoder ...): image in, caption out;
  chat vision-language models with a chat template (Qwen2-VL, LLaVA, SmolVLM, Idefics3 ...):
    the image and DETAILED_PROMPT go in as one user message.
Decoding is greedy, so the same image always gets the same caption.
"""

from __future__ import annotations

import importlib
import threading
import unicodedata
from pathlib import Path
from typing import Any, Protocol

from PIL import Image, ImageOps

from composer.config import MAX_CAPTION_CHARS

DETAILED_PROMPT = ("Describe this image in detail: the main subjects, their attributes and "
                   "actions, the setting, colours, and any visible text.")
DEFAULT_MAX_NEW_TOKENS = 160
NO_CAPTIONER = ("", "none")
# Models that caption from the image alone; any other model with a chat template is prompted.
CLASSIC_MODEL_TYPES = {"blip", "blip-2", "git", "vision-encoder-decoder", "pix2struct",
                       "kosmos-2", "florence2"}


class Captioner(Protocol):
    """Writes a caption for one image. `name` identifies the model (stored with the caption)."""

    name: str

    def caption(self, image: str | Path | Image.Image) -> str: ...


def open_image(image: str | Path | Image.Image) -> Image.Image:
    """An RGB copy of the image, turned upright by its EXIF orientation.

    Phones store portrait photos sideways with an orientation tag; a model shown the raw
    pixels would describe a sideways scene.
    """
    if isinstance(image, Image.Image):
        return ImageOps.exif_transpose(image).convert("RGB")
    path = Path(image)
    try:
        with Image.open(path) as opened:
            opened.load()
            return ImageOps.exif_transpose(opened).convert("RGB")
    except (OSError, ValueError, SyntaxError) as error:
        raise ValueError(f"cannot open the image {path} ({error}): check that the file "
                         "exists and is a whole image") from None


def clean_caption(text: str, prompt: str = "") -> str:
    """Model output made into a caption: control characters dropped, whitespace collapsed, a
    leading echo of `prompt` removed, and cut (at a word boundary) to MAX_CAPTION_CHARS."""
    printable = "".join(" " if unicodedata.category(char) in ("Cc", "Cf") else char
                        for char in text)
    caption = " ".join(printable.split())
    echo = " ".join(prompt.split())
    if echo and caption.lower().startswith(echo.lower()):
        caption = caption[len(echo):].lstrip(" :.-")
    if len(caption) > MAX_CAPTION_CHARS:
        cut = caption[:MAX_CAPTION_CHARS]
        space = cut.rfind(" ")
        caption = cut[:space] if space > MAX_CAPTION_CHARS // 2 else cut
    return caption.strip()


class TransformersCaptioner:
    """A Captioner over a transformers image-to-text model; build it with `from_pretrained`."""

    def __init__(self, source: str, model: Any, processor: Any, image_processor: Any,
                 decoder: Any, *, chat: bool, device: str,
                 max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
                 prompt: str = DETAILED_PROMPT) -> None:
        """Wrap loaded parts: `processor` makes chat inputs, `image_processor` the pixel inputs
        of classic models, `decoder` turns token ids into text; `chat` picks the mode."""
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens={max_new_tokens} must be at least 1")
        self.source = source
        self.name = f"captioner:{source}"
        self.model = model
        self.processor = processor
        self.image_processor = image_processor
        self.decoder = decoder
        self.chat = chat
        self.device = device
        self.max_new_tokens = max_new_tokens
        self.prompt = prompt
        self._lock = threading.Lock()

    @classmethod
    def from_pretrained(cls, source: str, *, device: str = "cpu", dtype: str = "auto",
                        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
                        prompt: str = DETAILED_PROMPT) -> TransformersCaptioner:
        """Load a model id (from the local cache when offline) or a local folder.

        Chat mode is used when the processor has a chat template and the model is not a
        classic captioner. RuntimeError says what to do when the model cannot be loaded.
        """
        from models.devices import resolve_device, resolve_dtype

        source = str(source).strip()
        if not source:
            raise ValueError("the captioning model is empty: give a model id or a folder")
        device_name = resolve_device(device)
        torch_dtype = resolve_dtype(dtype, device_name)
        location, options = _location(source)
        try:
            config, model = _load_model(location, options, torch_dtype)
            processor, image_processor, decoder = _load_processing(location, options)
        except (OSError, ValueError, KeyError, ImportError) as error:
            raise RuntimeError(
                f"could not load the captioning model {source!r} ({type(error).__name__}: "
                f"{error}). Without internet access give a local folder holding config.json, "
                "the processor/tokenizer files and the weights (fetch it once with `hf "
                f"download {source} --local-dir DIR` where there is a network), or set "
                "COMPOSER_CAPTIONER='' and write captions yourself"
            ) from error
        model.to(device_name).eval()
        chat = (config.model_type not in CLASSIC_MODEL_TYPES
                and bool(getattr(processor, "chat_template", None)))
        return cls(source, model, processor, image_processor, decoder, chat=chat,
                   device=device_name, max_new_tokens=max_new_tokens, prompt=prompt)

    def inputs(self, image: str | Path | Image.Image) -> Any:
        """The model inputs for one image, on the model's device and dtype (a BatchFeature)."""
        picture = open_image(image)
        if self.chat:
            messages = [{"role": "user", "content": [{"type": "image"},
                                                     {"type": "text", "text": self.prompt}]}]
            text = self.processor.apply_chat_template(messages, add_generation_prompt=True,
                                                      tokenize=False)
            batch = self.processor(images=[picture], text=[text], return_tensors="pt")
        else:
            batch = self.image_processor(images=picture, return_tensors="pt")
        batch = batch.to(self.device)
        for key, value in batch.items():
            if hasattr(value, "is_floating_point") and value.is_floating_point():
                batch[key] = value.to(self.model.dtype)
        return batch

    def generation_options(self) -> dict[str, Any]:
        """The decoding settings: greedy, one beam, at most max_new_tokens."""
        return {"max_new_tokens": self.max_new_tokens, "do_sample": False, "num_beams": 1}

    def caption(self, image: str | Path | Image.Image) -> str:
        """A detailed caption of one image (may be "" if the model writes nothing)."""
        import torch

        inputs = self.inputs(image)
        with self._lock, torch.inference_mode():
            output = self.model.generate(**inputs, **self.generation_options())
        if self.chat:
            output = output[:, inputs["input_ids"].shape[1]:]
        text = self.decoder.batch_decode(output, skip_special_tokens=True)[0]
        return clean_caption(text, self.prompt if self.chat else "")

    def __repr__(self) -> str:
        mode = "chat" if self.chat else "image-to-text"
        return f"TransformersCaptioner({self.source!r}, {mode}, device={self.device!r})"


def _location(source: str) -> tuple[str, dict[str, Any]]:
    """The path or id to load, and from_pretrained options (local folders: no network)."""
    path = Path(source).expanduser()
    if path.exists():
        return str(path), {"local_files_only": True}
    if source.startswith((".", "/", "~")):
        raise RuntimeError(f"captioning model folder {source!r} does not exist: give the folder "
                           "that holds config.json and the weights, or a model id")
    return source, {}


def _load_model(location: str, options: dict[str, Any], dtype: Any) -> tuple[Any, Any]:
    """(config, model): AutoModelForImageTextToText when it knows the model type, else the
    class the config's `architectures` names."""
    import transformers
    from transformers import AutoConfig, AutoModelForImageTextToText
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES,
    )

    config = AutoConfig.from_pretrained(location, **options)
    if config.model_type in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES:
        model_class = AutoModelForImageTextToText
    else:
        names = list(getattr(config, "architectures", None) or [])
        found = [getattr(transformers, name) for name in names if hasattr(transformers, name)]
        if not found:
            raise ValueError(f"model type {config.model_type!r} (architectures {names}) is not "
                             "an image-to-text model this transformers version knows")
        model_class = found[0]
    return config, model_class.from_pretrained(location, dtype=dtype, **options)


def _load_processing(location: str, options: dict[str, Any]) -> tuple[Any, Any, Any]:
    """(processor, image processor, decoder). A VisionEncoderDecoder folder's AutoProcessor is
    only its tokenizer (or only its image processor), so the missing half is loaded alone."""
    from transformers import AutoImageProcessor, AutoProcessor, AutoTokenizer

    processor = AutoProcessor.from_pretrained(location, **options)
    handles_images = hasattr(processor, "image_processor") or not hasattr(processor,
                                                                          "batch_decode")
    image_processor = (processor if handles_images
                       else AutoImageProcessor.from_pretrained(location, **options))
    decoder = (processor if hasattr(processor, "batch_decode")
               else AutoTokenizer.from_pretrained(location, **options))
    return processor, image_processor, decoder


def load_captioner(spec: str, device: str = "cpu") -> Captioner | None:
    """The captioner a setting names: "" or "none" -> None (captions come from people);
    "pkg.module:factory" -> factory() (plugins, tests' fakes); else a model id or folder.

    RuntimeError when a model or plugin module cannot be loaded, TypeError when a plugin
    factory is missing or returns something that is not a Captioner; both say what to do.
    """
    from models.registry import is_plugin

    name = (spec or "").strip()
    if name.lower() in NO_CAPTIONER:
        return None
    if is_plugin(name):
        return _load_plugin(name)
    return TransformersCaptioner.from_pretrained(name, device=device)


def _load_plugin(spec: str) -> Captioner:
    """Import "pkg.module:factory" and return factory(), checked to be a Captioner."""
    module_name, _, factory_name = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise RuntimeError(f"captioner {spec!r}: cannot import module {module_name!r} ({error}); "
                           "install the package that provides it, or give a model id or "
                           "folder") from error
    factory = getattr(module, factory_name, None)
    if not callable(factory):
        raise TypeError(f"captioner {spec!r}: module {module_name!r} has no callable "
                           f"{factory_name!r}; name a function that takes no arguments and "
                           "returns a captioner")
    captioner = factory()
    if not (isinstance(getattr(captioner, "name", None), str)
            and callable(getattr(captioner, "caption", None))):
        raise TypeError(f"captioner {spec!r} gave a {type(captioner).__name__}, which lacks "
                           "a `name` string or a caption(image) method (see models/captioner.py)")
    return captioner
