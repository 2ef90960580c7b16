"""check_request(): every limit on a ComposeRequest, checked before any work starts.

Each error names the value that was given and the limit, and says what to do instead. A request
is checked once, where it enters (the UI's form, or Composer.compose / plan_stream for the CLI
and other callers): check_request returns a read-only CheckedRequest, which the composer takes
as it is instead of checking it again.
"""

from __future__ import annotations

import unicodedata
from dataclasses import fields

from composer.config import (
    DECODINGS,
    MAX_BEAMS,
    MAX_CANDIDATES,
    MAX_IMAGES,
    MAX_INSTRUCTION_CHARS,
    MAX_MATERIAL_CHARS,
    MAX_NEW_TOKENS,
    MAX_REFERENCE_IMAGES,
    MAX_TARGET_WORDS,
    MIN_TARGET_WORDS,
)
from composer.languages import length_text, length_unit
from composer.types import LANGUAGES, ComposeRequest, GenerationConfig, InputError

WORDS_PER_IMAGE_MIN = 50
SELECTION_MODES = ("score", "model")


MAX_FILTER_CHARS = 300


class CheckedRequest(ComposeRequest):
    """A ComposeRequest that check_request passed (only check_request makes one).

    Read-only, so that it stays as it was checked: to change a field, change a ComposeRequest
    and check that (dataclasses.replace on a CheckedRequest raises AttributeError).
    """

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"a checked request is read-only (setting {name!r}): change a "
                             "ComposeRequest and check it again")


def check_request(request: ComposeRequest) -> CheckedRequest:
    """The request as a CheckedRequest (itself if it is one already); InputError for the
    first invalid field."""
    if isinstance(request, CheckedRequest):
        return request
    if not isinstance(request.instruction, str):
        raise InputError(f"instruction must be text, got {type(request.instruction).__name__}")
    if not visible_text(request.instruction):
        raise InputError("instruction is empty: give a title or describe the article you want")
    if len(request.instruction) > MAX_INSTRUCTION_CHARS:
        raise InputError(
            f"instruction is {len(request.instruction):,} characters; the limit is "
            f"{MAX_INSTRUCTION_CHARS:,}: shorten it, or pass long source text as material"
        )
    if len(request.material) > MAX_MATERIAL_CHARS:
        raise InputError(
            f"material is {len(request.material):,} characters; the limit is {MAX_MATERIAL_CHARS:,}"
        )
    if request.language not in LANGUAGES:
        raise InputError(f"language {request.language!r} is not supported; use one of {LANGUAGES}")
    _check_int("target words" if request.language == "en" else
               f"target length in {length_unit(request.language)}", request.target_words,
               MIN_TARGET_WORDS, MAX_TARGET_WORDS)
    if request.images is not None and not request.text_only:
        _check_int("images", request.images, 1, MAX_IMAGES)
        most = max(1, request.target_words // WORDS_PER_IMAGE_MIN)
        if request.images > most:
            raise InputError(
                f"{request.images} images is more than an article of "
                f"{length_text(request.target_words, request.language)} has paragraphs for (at "
                f"most {most}): ask for fewer images or a longer article"
            )
    if request.selection not in SELECTION_MODES:
        raise InputError(f"selection {request.selection!r} is not one of {SELECTION_MODES}")
    _check_int("seed", request.seed, 0, 2**32 - 1)
    if not isinstance(request.reference_images, list) or not all(
            isinstance(path, str) for path in request.reference_images):
        raise InputError("reference images must be a list of file paths")
    if len(request.reference_images) > MAX_REFERENCE_IMAGES:
        raise InputError(f"{len(request.reference_images)} reference images were given; the "
                         f"limit is {MAX_REFERENCE_IMAGES}: keep the ones that matter most")
    for name, value in (("image license", request.image_license),
                        ("image source", request.image_source)):
        if not isinstance(value, str) or len(value) > MAX_FILTER_CHARS:
            raise InputError(f"{name} must be text of at most {MAX_FILTER_CHARS} characters, "
                             f"got {str(value)[:40]!r}: pick one from the library's list")
    check_generation(request.generation)
    checked = object.__new__(CheckedRequest)
    checked.__dict__.update({f.name: getattr(request, f.name) for f in fields(ComposeRequest)})
    checked.__dict__["reference_images"] = list(request.reference_images)
    return checked


def visible_text(text: str) -> str:
    """`text` without format characters (Unicode Cf: zero-width spaces and joiners,
    direction overrides, BOM) and surrounding whitespace: what a reader would see."""
    return "".join(char for char in text if unicodedata.category(char) != "Cf").strip()


def check_generation(config: GenerationConfig) -> None:
    """Raise InputError for decoding settings outside their ranges."""
    _check_int("max tokens", config.max_new_tokens, 16, MAX_NEW_TOKENS)
    _check_int("beams", config.num_beams, 1, MAX_BEAMS)
    _check_int("candidates", config.candidates, 1, MAX_CANDIDATES)
    if config.decoding not in DECODINGS:
        raise InputError(f"decoding {config.decoding!r} is not one of {DECODINGS}")
    _check_int("no-repeat n-gram size", config.no_repeat_ngram_size, 0, 10)
    _check_int("top-k", config.top_k, 0, 1000)
    _check_float("temperature", config.temperature, 0.01, 5.0)
    _check_float("top-p", config.top_p, 0.01, 1.0)
    _check_float("repetition penalty", config.repetition_penalty, 1.0, 3.0)


def _check_int(name: str, value: object, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"{name} must be a whole number, got {value!r}")
    if not low <= value <= high:
        raise InputError(f"{name} is {value}; it must be between {low} and {high}")


def _check_float(name: str, value: object, low: float, high: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputError(f"{name} must be a number, got {value!r}")
    if not low <= float(value) <= high:
        raise InputError(f"{name} is {value}; it must be between {low} and {high}")
