"""Which languages the writer model writes, checked before any work, and how length is named.

A 135M English model asked for Chinese writes gibberish, so a request in a language the
writer does not write is refused at once, naming models that can. The writer's languages
come from, in order: COMPOSER_MODEL_LANGUAGES (the operator's word), the backend's own
`languages` attribute (a plugin or a test double may declare it), and the model's name: the
embedded SmolLM2 and the names in ENGLISH_ONLY write English only; any other model is assumed
to write every language the app offers.

Length is counted in words for English and in characters (字) for Chinese (count_words).
"""

from __future__ import annotations

from typing import Any

from composer.config import Settings
from composer.types import LANGUAGES, ComposerError, InputError

LANGUAGE_NAMES = {"en": "English", "zh": "Chinese"}
# Fragments of model names (ids or folders) trained on English only.
ENGLISH_ONLY = ("smollm", "gpt2", "tinystories")
# Instruct models that write each language well, named in the refusal.
CAPABLE_MODELS = {
    "zh": ("Qwen/Qwen2.5-1.5B-Instruct", "Qwen/Qwen2.5-7B-Instruct",
           "internlm/internlm2_5-7b-chat"),
    "en": ("Qwen/Qwen2.5-1.5B-Instruct", "HuggingFaceTB/SmolLM2-1.7B-Instruct"),
}
EMBEDDED_NAME = "embedded (SmolLM2-135M-Instruct)"


def parse_languages(text: str) -> tuple[str, ...]:
    """COMPOSER_MODEL_LANGUAGES ("en,zh") as language codes; ComposerError naming an unknown
    code."""
    codes = tuple(dict.fromkeys(part.strip().lower() for part in text.split(",")
                                if part.strip()))
    unknown = [code for code in codes if code not in LANGUAGES]
    if unknown or not codes:
        raise ComposerError(f"COMPOSER_MODEL_LANGUAGES={text!r} names {unknown or 'nothing'}: "
                            f"list the languages your writer writes, from {list(LANGUAGES)}, "
                            "e.g. en,zh")
    return codes


def writer_languages(settings: Settings, lm: Any | None = None) -> tuple[str, ...]:
    """The languages the configured writer writes well; `lm` is the writer when it is already
    loaded or injected (nothing is loaded here)."""
    if settings.model_languages.strip():
        return parse_languages(settings.model_languages)
    declared = getattr(lm, "languages", None) if lm is not None else None
    if declared:
        return tuple(declared)
    if settings.writer_url.strip():  # a model server: judged by the model it serves
        name = settings.writer_model.strip().lower()
        return ("en",) if any(fragment in name for fragment in ENGLISH_ONLY) else LANGUAGES
    name = settings.model.strip().lower()
    if name == "embedded" or any(fragment in name for fragment in ENGLISH_ONLY):
        return ("en",)
    return LANGUAGES


def check_writer_language(language: str, settings: Settings, lm: Any | None = None) -> None:
    """InputError before any work when the writer does not write `language`: names the model,
    models that can, and how to set one."""
    languages = writer_languages(settings, lm)
    if language not in LANGUAGES or language in languages:
        return  # an unknown code is check_request's to name
    model = EMBEDDED_NAME if settings.model.strip() == "embedded" else settings.model.strip()
    raise InputError(_refusal(language, model, languages))


def check_declared_language(language: str, lm: Any) -> None:
    """InputError when the writer `lm` declares its `languages` and `language` is not one of
    them (the composer's own check, for callers that did not ask the settings first)."""
    declared = getattr(lm, "languages", None)
    if declared and language in LANGUAGES and language not in declared:
        raise InputError(_refusal(language, str(getattr(lm, "name", "in use")), tuple(declared)))


def _refusal(language: str, model: str, languages: tuple[str, ...]) -> str:
    wanted = LANGUAGE_NAMES[language]
    writes = " and ".join(LANGUAGE_NAMES.get(code, code) for code in languages)
    examples = ", ".join(CAPABLE_MODELS[language])
    declare = ",".join(dict.fromkeys((*languages, language)))
    return (f"the writer model {model} writes {writes} only, so a {wanted} ({language}) "
            f"article would be gibberish: set COMPOSER_MODEL (or --model) to a model that writes "
            f"{wanted}, e.g. {examples}; if yours does, set COMPOSER_MODEL_LANGUAGES={declare}")


def length_unit(language: str) -> str:
    """What length is counted in: "words", or "characters (字)" for Chinese."""
    return "characters (字)" if language == "zh" else "words"


def length_text(count: int, language: str) -> str:
    """A length for people: "820 words", or "820 characters (字)" for Chinese."""
    return f"{count:,} {length_unit(language)}"
