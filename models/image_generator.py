"""Text-to-image generation: a caption in, a picture out, for captions the library cannot match.

`ImageGenerator` wraps any diffusers text-to-image pipeline (Stable Diffusion 1.x/2.x, SDXL,
SD3, PixArt, Flux ...) loaded from a model id or a local folder. Generation is reproducible
(the seed drives a torch.Generator on the pipeline's device), reports every denoising step
and can be cancelled between steps. `load_image_generator` reads the COMPOSER_IMAGE_GENERATOR
setting: a model id, a folder, or "pkg.module:factory" for a plugin.

torch and diffusers are imported inside functions only, so importing this module is cheap.
"""

from __future__ import annotations

import importlib
import inspect
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from PIL import Image

from composer.types import ComposerError, InputError
from models.devices import resolve_device, resolve_dtype

DEFAULT_STEPS = 25
DEFAULT_SIZE = 512
MAX_STEPS = 500
MAX_SIZE = 4096
SIZE_MULTIPLE = 8  # latent diffusion models work on size / 8 latents
SETTING = "COMPOSER_IMAGE_GENERATOR"

Progress = Callable[[int, int], None]


class GenerationCancelled(ComposerError):
    """Image generation stopped because its cancel event was set; nothing was produced."""


class TextToImage(Protocol):
    """What the app needs of an image generator (the diffusers one or a plugin)."""

    name: str

    def generate(self, prompt: str, *, seed: int = 0, negative_prompt: str = "",
                 progress: Progress | None = None,
                 cancel: threading.Event | None = None) -> Image.Image: ...


def check_steps(steps: int) -> int:
    """The number of denoising steps, checked: an integer from 1 to MAX_STEPS."""
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= MAX_STEPS:
        raise InputError(f"image generation steps {steps!r} must be a whole number from 1 to "
                         f"{MAX_STEPS}: set COMPOSER_IMAGE_STEPS to e.g. {DEFAULT_STEPS}")
    return steps


def check_size(size: int) -> int:
    """The image side in pixels, checked: a multiple of 8 from 8 to MAX_SIZE.

    Latent diffusion models denoise an image 8 times smaller, so other sizes cannot be made.
    """
    if isinstance(size, bool) or not isinstance(size, int) or not SIZE_MULTIPLE <= size <= MAX_SIZE:
        raise InputError(f"image size {size!r} must be a whole number of pixels from "
                         f"{SIZE_MULTIPLE} to {MAX_SIZE}: set COMPOSER_IMAGE_SIZE to e.g. "
                         f"{DEFAULT_SIZE}")
    if size % SIZE_MULTIPLE:
        nearest = max(SIZE_MULTIPLE, round(size / SIZE_MULTIPLE) * SIZE_MULTIPLE)
        raise InputError(f"image size {size} is not a multiple of {SIZE_MULTIPLE}, which "
                         f"diffusion models need: set COMPOSER_IMAGE_SIZE to e.g. {nearest}")
    return size


def check_prompt(prompt: str) -> str:
    """The prompt without surrounding spaces; InputError when nothing is left."""
    text = (prompt or "").strip()
    if not text:
        raise InputError("the image prompt is empty: describe the picture to generate, "
                         "e.g. 'a stone bridge over a river at dawn'")
    return text


class ImageGenerator:
    """A diffusers text-to-image pipeline with the app's defaults and safeguards.

    One image at a time per generator (a lock): a pipeline's scheduler keeps state while it
    denoises, so two threads must not share it at once.
    """

    def __init__(self, pipeline: Any, name: str, *, device: str = "cpu",
                 steps: int = DEFAULT_STEPS, size: int = DEFAULT_SIZE) -> None:
        """Wrap a loaded pipeline (already on `device`); `name` is its model id or folder."""
        self.pipeline = pipeline
        self.name = name
        self.device = device
        self.steps = check_steps(steps)
        self.size = check_size(size)
        self._accepts = set(inspect.signature(pipeline.__call__).parameters)
        self._lock = threading.Lock()

    @classmethod
    def from_pretrained(cls, source: str, *, device: str = "auto", dtype: str = "auto",
                        steps: int = DEFAULT_STEPS, size: int = DEFAULT_SIZE) -> ImageGenerator:
        """Load a model id (from the local cache when offline) or a local folder.

        Sizes and steps are checked before anything loads. ComposerError says what to do
        when the model cannot be loaded or is not a text-to-image pipeline.
        """
        source = str(source or "").strip()
        if not source:
            raise ComposerError(f"the image generator is empty: set {SETTING} to a model id "
                                "or a local folder")
        check_steps(steps)
        check_size(size)
        device_name = resolve_device(device)
        # diffusion checkpoints ship in float16
        pipeline = _load_pipeline(source, resolve_dtype(dtype, device_name, gpu_auto="float16"))
        _check_text_to_image(source, pipeline)
        pipeline.to(device_name)
        if hasattr(pipeline, "set_progress_bar_config"):
            pipeline.set_progress_bar_config(disable=True)
        return cls(pipeline, source, device=device_name, steps=steps, size=size)

    def generate(self, prompt: str, *, seed: int = 0, negative_prompt: str = "",
                 progress: Progress | None = None,
                 cancel: threading.Event | None = None) -> Image.Image:
        """A size x size RGB image for `prompt`; the same prompt and seed give the same pixels.

        The prompt's text encoder reads a limited number of tokens (77 for CLIP): the
        tokenizer truncates a longer prompt, so put what matters first. `progress(step,
        total)` is called after each denoising step; setting `cancel` stops generation at the
        next step with GenerationCancelled. InputError for an empty prompt.
        """
        import torch

        text = check_prompt(prompt)
        _stop_if_cancelled(cancel)
        options = self._call_options(negative_prompt, progress, cancel)
        with self._lock:
            generator = torch.Generator(device=self.device).manual_seed(int(seed))
            with torch.inference_mode():
                result = self.pipeline(text, num_inference_steps=self.steps, generator=generator,
                                       output_type="pil", **options)
        return result.images[0].convert("RGB")

    def _call_options(self, negative_prompt: str, progress: Progress | None,
                      cancel: threading.Event | None) -> dict[str, Any]:
        """Keyword arguments this pipeline accepts: size, negative prompt and step callback."""
        options: dict[str, Any] = {"height": self.size, "width": self.size}
        if negative_prompt.strip():
            options["negative_prompt"] = negative_prompt.strip()
        if progress is not None or cancel is not None:
            options["callback_on_step_end"] = _step_callback(self.steps, progress, cancel)
        return {key: value for key, value in options.items() if key in self._accepts}

    def __repr__(self) -> str:
        return (f"ImageGenerator({self.name!r}, device={self.device!r}, steps={self.steps}, "
                f"size={self.size})")


def _stop_if_cancelled(cancel: threading.Event | None) -> None:
    if cancel is not None and cancel.is_set():
        raise GenerationCancelled("image generation was cancelled: start it again to get "
                                  "an image")


def _step_callback(steps: int, progress: Progress | None,
                   cancel: threading.Event | None) -> Callable[..., dict[str, Any]]:
    """diffusers' callback_on_step_end: report the step, then stop if cancelled.

    The total is the pipeline's own count of timesteps (a second-order scheduler runs more
    than `steps`), else `steps`.
    """
    def on_step_end(pipeline: Any, index: int, timestep: Any,
                    tensors: dict[str, Any]) -> dict[str, Any]:
        total = getattr(pipeline, "num_timesteps", None) or steps
        if progress is not None:
            progress(index + 1, int(total))
        _stop_if_cancelled(cancel)
        return tensors
    return on_step_end


def _location(source: str) -> tuple[str, dict[str, Any]]:
    """The folder or id to load, and from_pretrained options (a folder: no network)."""
    path = Path(source).expanduser()
    if path.exists():
        return str(path), {"local_files_only": True}
    if source.startswith((".", "/", "~")):
        raise ComposerError(f"{SETTING}: the folder {source!r} does not exist: give the folder "
                            "that holds model_index.json, or a model id")
    return source, {}


def _load_pipeline(source: str, dtype: Any) -> Any:
    """The text-to-image pipeline of a model id or folder: AutoPipelineForText2Image when it
    knows the model's pipeline class, else the class model_index.json names."""
    from diffusers import AutoPipelineForText2Image, DiffusionPipeline

    location, options = _location(source)
    try:
        try:
            return AutoPipelineForText2Image.from_pretrained(location, dtype=dtype, **options)
        except ValueError as error:
            if "AutoPipeline can't find" not in str(error):
                raise
            return DiffusionPipeline.from_pretrained(location, dtype=dtype, **options)
    except (OSError, ValueError, KeyError, ImportError, AttributeError, TypeError) as error:
        raise ComposerError(
            f"could not load the image generator {source!r} ({type(error).__name__}: "
            f"{error}). Set {SETTING} to a local folder holding a diffusers model "
            "(model_index.json and its parts; fetch one where there is a network with "
            f"`hf download {source} --local-dir DIR`) or to a model id that can be reached "
            f"from here, or set {SETTING}='' to turn image generation off"
        ) from error


def _check_text_to_image(source: str, pipeline: Any) -> None:
    """ComposerError unless the pipeline takes a prompt and a number of steps."""
    accepted = set(inspect.signature(pipeline.__call__).parameters)
    if not {"prompt", "num_inference_steps"} <= accepted:
        raise ComposerError(f"{SETTING}={source!r} loads a {type(pipeline).__name__}, which "
                            "is not a text-to-image pipeline: give a text-to-image model")


def load_image_generator(spec: str, *, device: str = "auto", dtype: str = "auto",
                         steps: int = DEFAULT_STEPS, size: int = DEFAULT_SIZE) -> TextToImage:
    """The image generator a setting names: "pkg.module:factory" -> factory(device=, dtype=,
    steps=, size=) (plugins, tests' fakes); else a diffusers model id or local folder.

    ComposerError when the model or plugin cannot be loaded, saying what to do.
    """
    from models.registry import is_plugin

    name = (spec or "").strip()
    if is_plugin(name):
        return _load_plugin(name, {"device": device, "dtype": dtype, "steps": steps,
                                   "size": size})
    return ImageGenerator.from_pretrained(name, device=device, dtype=dtype, steps=steps,
                                          size=size)


def _load_plugin(spec: str, options: dict[str, Any]) -> TextToImage:
    """Import "pkg.module:factory", call it with the options, check it can generate."""
    module_name, _, factory_name = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ComposerError(f"{SETTING}={spec!r}: cannot import module {module_name!r} "
                            f"({error}); install the package that provides it, or give a "
                            "model id or folder") from error
    factory = getattr(module, factory_name, None)
    if not callable(factory):
        raise ComposerError(f"{SETTING}={spec!r}: module {module_name!r} has no callable "
                            f"{factory_name!r}; name a function that takes device, dtype, "
                            "steps and size and returns an image generator")
    try:
        generator = factory(**options)
    except TypeError as error:
        raise ComposerError(f"{SETTING}={spec!r}: calling {factory_name}(device=, dtype=, "
                            f"steps=, size=) failed ({error}); the factory must take those "
                            "keyword arguments") from error
    if not callable(getattr(generator, "generate", None)):
        raise ComposerError(f"{SETTING}={spec!r} gave a {type(generator).__name__}, which has "
                            "no generate(prompt, *, seed, negative_prompt, progress, cancel) "
                            "method (see models/image_generator.py)")
    return generator
