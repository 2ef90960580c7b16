"""Language-model backends: the protocol every backend follows, and the local transformers one.

A backend turns chat messages into streamed text under a GenerationConfig. torch and
transformers are imported lazily, inside TransformersLM, so that importing this module (for
the protocol) stays cheap for the CLI and the UI.
"""

from __future__ import annotations

import importlib.util
import json
import math
import threading
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol, runtime_checkable

from composer.config import DECODINGS, MAX_BEAMS, MAX_CANDIDATES, MAX_NEW_TOKENS
from composer.types import ChatMessage, GenerationConfig
from models.devices import resolve_device, resolve_dtype


@runtime_checkable
class LanguageModel(Protocol):
    """What the composer needs from a language model.

    name: a short label for logs and stored options.
    context_length: how many tokens fit in the prompt plus the reply.
    sees_images: whether the backend reads the image files a message shows
      (ChatMessage.images, the request's reference images) as image input; a backend with
      False ignores them and reads the text only.
    stream(): yields pieces of the reply as they are decoded. `prefix` pre-fills the start of
      the assistant's reply (the model continues it; the prefix itself is not yielded).
      Stops at EOS, at any of config.stop (not yielded), after config.max_new_tokens, or when
      `cancel` is set.
    count_tokens(): tokens of a text under this model's tokenizer.
    A backend that enforces config.json_schema at decode time says so with a class attribute
    `supports_json_schema = True` (absent means False: callers parse free text instead).
    """

    name: str
    context_length: int
    sees_images: bool

    def stream(
        self,
        messages: list[ChatMessage],
        config: GenerationConfig,
        *,
        prefix: str = "",
        cancel: threading.Event | None = None,
    ) -> Iterator[str]: ...

    def count_tokens(self, text: str) -> int: ...


QUANTIZE_MODES = ("none", "int8", "int4")  # models.quantize.QUANTIZE_MODES, without torch
DEFAULT_CONTEXT_LENGTH = 2048


def check_generation_config(config: GenerationConfig) -> None:
    """Raise ValueError naming the first decoding setting outside what the backend supports."""
    _check_whole("max_new_tokens", config.max_new_tokens, 1, MAX_NEW_TOKENS)
    _check_whole("num_beams", config.num_beams, 1, MAX_BEAMS)
    _check_whole("candidates", config.candidates, 1, MAX_CANDIDATES)
    if config.decoding not in DECODINGS:
        raise ValueError(f"decoding {config.decoding!r} is not one of {DECODINGS}")
    _check_whole("top_k", config.top_k, 0, None)
    _check_whole("no_repeat_ngram_size", config.no_repeat_ngram_size, 0, None)
    if config.seed is not None:
        _check_whole("seed", config.seed, 0, 2**63 - 1)
    if not _is_number(config.temperature) or not 0 < config.temperature < math.inf:
        raise ValueError(f"temperature is {config.temperature!r}; it must be greater than 0")
    if not _is_number(config.top_p) or not 0 < config.top_p <= 1:
        raise ValueError(f"top_p is {config.top_p!r}; it must be in (0, 1]")
    if not _is_number(config.repetition_penalty) or not 0 < config.repetition_penalty < math.inf:
        raise ValueError(
            f"repetition_penalty is {config.repetition_penalty!r}; it must be greater than 0 "
            "(1.0 means no penalty)"
        )
    if isinstance(config.stop, str) or not all(isinstance(s, str) for s in config.stop):
        raise ValueError(f"stop is {config.stop!r}; it must be a tuple of strings")
    if config.json_schema is not None and not isinstance(config.json_schema, str):
        raise ValueError(f"json_schema is {config.json_schema!r}; it must be a JSON schema "
                         "in a string (json.dumps it)")
    if config.json_schema is not None:
        try:
            schema = json.loads(config.json_schema)
        except ValueError as error:
            raise ValueError(f"json_schema is not valid JSON ({error}): give a JSON schema "
                             "as a string") from None
        if not isinstance(schema, dict):
            raise ValueError(f"json_schema is {config.json_schema[:60]!r}; it must be a JSON "
                             "object")


def check_messages(messages: list[ChatMessage]) -> None:
    """ValueError for no messages, or one whose role or content is not text."""
    if not messages:
        raise ValueError("messages is empty: give at least one user message")
    for message in messages:
        if not isinstance(message.content, str) or not isinstance(message.role, str):
            raise ValueError(f"message {message!r} must have text role and content")


def check_count(count: object) -> None:
    """ValueError unless `count` (drafts decoded together) is a whole number in range."""
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= \
            MAX_CANDIDATES:
        raise ValueError(f"count is {count!r}; it must be between 1 and {MAX_CANDIDATES}")


def fit_reply(config: GenerationConfig, context_length: int, prompt_length: int
              ) -> GenerationConfig:
    """`config` with max_new_tokens cut to the room the prompt leaves in the context."""
    room = context_length - prompt_length
    return config.replace(max_new_tokens=room) if config.max_new_tokens > room else config


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value


def _check_whole(name: str, value: object, low: int, high: int | None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be a whole number, got {value!r}")
    if value < low or (high is not None and value > high):
        limit = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise ValueError(f"{name} is {value}; it must be {limit}")


def model_context_length(model_config: Any, tokenizer: Any) -> int:
    """Tokens the model attends to: the config's position limit, capped by the tokenizer's."""
    length = None
    for key in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(model_config, key, None)
        if isinstance(value, int) and value > 0:
            length = value
            break
    tokenizer_limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(tokenizer_limit, int) and 0 < tokenizer_limit < 1_000_000:
        length = min(length or tokenizer_limit, tokenizer_limit)
    return length or DEFAULT_CONTEXT_LENGTH


def _installed(module: str) -> bool:
    """Whether `module` can be imported (None in sys.modules counts as absent)."""
    try:
        return importlib.util.find_spec(module) is not None
    except ValueError:
        return False


class TransformersLM:
    """A LanguageModel running a Hugging Face causal LM in this process.

    source: a hub id or a local folder (loaded with local_files_only); gguf_file: a .gguf file
    inside it (transformers de-quantizes it at load, slow: prefer a converted folder).
    dtype: "auto" | "float32" | "bfloat16" | "float16". device: "auto" (accelerate's
    device_map="auto" when CUDA is available, else the CPU) or a torch device name.
    quantize: "none", "int8" (weight-only int8 linear layers) or "int4" (int4 in groups of 32,
    int8 head): CPU only, ~1.3x / ~1.6x faster decoding of a small model (models.quantize).
    threads: torch CPU threads (None leaves torch's choice).
    context_length: overrides the model's own limit (prompt plus reply tokens).

    Greedy and sampled decoding run in the caller's thread, token by token (models.generate);
    beam search (num_beams > 1) runs `model.generate` and yields the reply once. A config with
    a json_schema is decoded under it (models/constrained.py, xgrammar), greedy or sampled:
    beams are not combined with a schema, such a reply is decoded with one beam.
    """

    supports_beams = True
    supports_opera = True  # config.decoding "opera" (models/opera.py)
    sees_images = False  # text only: messages' images are ignored
    # Schemas need xgrammar (scripts/setup.sh installs it); without it outlines are parsed
    # from free text and checked the same way.
    supports_json_schema = _installed("xgrammar")

    def __init__(self, source: str | Path, *, gguf_file: str | None = None, dtype: str = "auto",
                 device: str = "auto", quantize: str = "none", threads: int | None = None,
                 context_length: int | None = None, name: str | None = None) -> None:
        if quantize not in QUANTIZE_MODES:
            raise ValueError(f"quantize {quantize!r} is not one of {QUANTIZE_MODES}: set "
                             "COMPOSER_QUANTIZE to one")
        if threads is not None and threads < 1:
            raise ValueError(f"threads is {threads}; it must be at least 1 (or unset)")
        if context_length is not None and context_length < 2:
            raise ValueError(f"context_length is {context_length}; it must be at least 2")
        self.source = str(source)
        self.name = name or self.source
        self.device_name = resolve_device(device)
        self.quantize = quantize
        if threads is not None:
            import torch

            torch.set_num_threads(threads)
        self.tokenizer, self.model = _load(self.source, gguf_file, dtype, device,
                                           self.device_name, quantize)
        self.dtype = str(self.model.dtype).removeprefix("torch.")
        self.context_length = context_length or model_context_length(self.model.config,
                                                                      self.tokenizer)
        self.eos_ids = _eos_ids(self.model, self.tokenizer)

    def count_tokens(self, text: str) -> int:
        """Tokens of `text` under this model's tokenizer (no special tokens added)."""
        return len(self.tokenizer.encode(text, add_special_tokens=False))

    def stream(self, messages: list[ChatMessage], config: GenerationConfig, *,
               prefix: str = "", cancel: threading.Event | None = None) -> Iterator[str]:
        """Yield the reply in pieces; see LanguageModel. Checks the inputs before any work."""
        check_generation_config(config)
        check_messages(messages)
        ids = self.prompt_ids(messages, config.max_new_tokens, prefix)
        return self._stream(ids, config, cancel)

    def _stream(self, ids: list[int], config: GenerationConfig,
                cancel: threading.Event | None) -> Iterator[str]:
        import torch

        from models.generate import generate_tokens
        from models.text_stream import stream_text

        input_ids = torch.tensor([ids], dtype=torch.long, device=self.input_device)
        config = fit_reply(config, self.context_length, len(ids))
        constraint = None
        if config.json_schema is not None:
            from models.constrained import JsonSchemaConstraint

            vocab = getattr(self.model.config, "vocab_size", None) or len(self.tokenizer)
            constraint = JsonSchemaConstraint(self.tokenizer, vocab, config.json_schema)
        elif config.decoding == "opera":
            text = self._opera_reply(input_ids, config, cancel)
            if text:
                yield text
            return
        elif config.num_beams > 1:
            text = self._beam_reply(input_ids, config, cancel)
            if text:
                yield text
            return
        tokens = generate_tokens(self.model, input_ids, config, self.eos_ids, cancel,
                                 constraint=constraint)
        yield from stream_text(self.tokenizer, ids, config.stop, tokens, cancel)

    def stream_candidates(self, messages: list[ChatMessage], config: GenerationConfig,
                          count: int, *, prefix: str = "",
                          cancel: threading.Event | None = None) -> Iterator[list[str]]:
        """Decode `count` replies to the same prompt together, in one batch; yields one list
        of text pieces per step (one entry per reply, "" when it has nothing new). Reply 0 is
        the one `stream` would give; the others are sampled (seed + n). See BatchDecoder."""
        import torch

        from models.generate import BatchDecoder
        from models.text_stream import stream_candidate_text

        check_generation_config(config)
        check_count(count)
        check_messages(messages)
        ids = self.prompt_ids(messages, config.max_new_tokens, prefix)
        config = fit_reply(config, self.context_length, len(ids))
        input_ids = torch.tensor([ids], dtype=torch.long, device=self.input_device)
        decoder = BatchDecoder(self.model, input_ids, config, count, self.eos_ids, cancel)
        return stream_candidate_text(decoder, self.tokenizer, ids, config.stop, cancel)

    def _opera_reply(self, input_ids: Any, config: GenerationConfig,
                     cancel: threading.Event | None) -> str:
        """OPERA beam search (models/opera.py); the whole reply, cut at a stop string."""
        from models.opera import opera_generate
        from models.text_stream import decode_reply

        reply = opera_generate(self.model, input_ids, config, self.eos_ids, cancel)
        return decode_reply(self.tokenizer, input_ids[0].tolist(), reply, config.stop)

    def _beam_reply(self, input_ids: Any, config: GenerationConfig,
                    cancel: threading.Event | None) -> str:
        """Beam search through model.generate; the whole reply, cut at a stop string."""
        import torch
        from transformers import StoppingCriteriaList

        from models.generate import CancelCriteria, seeded_rng
        from models.text_stream import decode_reply

        options: dict[str, Any] = {
            "num_beams": config.num_beams, "max_new_tokens": config.max_new_tokens,
            "do_sample": config.do_sample, "repetition_penalty": config.repetition_penalty,
            "no_repeat_ngram_size": config.no_repeat_ngram_size, "eos_token_id": self.eos_ids,
            "pad_token_id": self.eos_ids[0],
        }
        if self.tokenizer.pad_token_id is not None:
            options["pad_token_id"] = self.tokenizer.pad_token_id
        if config.do_sample:
            options.update(temperature=config.temperature, top_p=config.top_p,
                           top_k=config.top_k)
        if cancel is not None:
            options["stopping_criteria"] = StoppingCriteriaList([CancelCriteria(cancel)])
        seed = config.seed if config.do_sample else None
        with torch.inference_mode(), seeded_rng(seed):
            output = self.model.generate(input_ids, attention_mask=torch.ones_like(input_ids),
                                         **options)
        reply = output[0, input_ids.shape[1]:].tolist()
        end = next((i for i, token in enumerate(reply) if token in self.eos_ids), len(reply))
        return decode_reply(self.tokenizer, input_ids[0].tolist(), reply[:end], config.stop)

    @property
    def input_device(self) -> Any:
        """Where input ids go: the device of the input embedding (first shard)."""
        return self.model.get_input_embeddings().weight.device

    def render(self, messages: list[ChatMessage], prefix: str = "") -> list[int]:
        """Prompt token ids: the chat template with the generation prompt, then `prefix`.

        A tokenizer without a chat template gets plain "role: content" lines.
        """
        if getattr(self.tokenizer, "chat_template", None):
            chat = [{"role": message.role, "content": message.content} for message in messages]
            text = self.tokenizer.apply_chat_template(chat, add_generation_prompt=True,
                                                      tokenize=False)
            return self.tokenizer.encode(text + prefix, add_special_tokens=False)
        lines = "".join(f"{message.role}: {message.content}\n" for message in messages)
        return self.tokenizer.encode(f"{lines}assistant: {prefix}", add_special_tokens=True)

    def prompt_ids(self, messages: list[ChatMessage], max_new_tokens: int,
                   prefix: str = "") -> list[int]:
        """Rendered prompt ids that leave room for the reply in the context (fit_prompt)."""
        return fit_prompt(self.render, self.tokenizer, messages, self.context_length,
                          max_new_tokens, prefix)

    def __repr__(self) -> str:
        return (f"TransformersLM({self.source!r}, device={self.device_name!r}, "
                f"dtype={self.dtype!r}, quantize={self.quantize!r})")


def fit_prompt(render: Callable[[list[ChatMessage], str], list[int]], tokenizer: Any,
               messages: list[ChatMessage], context_length: int, max_new_tokens: int,
               prefix: str = "") -> list[int]:
    """Rendered prompt ids (`render(messages, prefix)`) that leave room for the reply.

    The reply's room is max_new_tokens, but at most half the context (a longer reply is
    then cut at the context's end). Too long a prompt: drop the oldest turns after the
    system message, then cut the last message from the left, then (if the system message
    alone is too long) drop it too, and as a last resort keep the prompt's last tokens.
    `tokenizer` encodes and decodes the last message's text while it is cut.
    """
    budget = context_length - min(max_new_tokens, context_length // 2)
    ids = render(messages, prefix)
    if len(ids) <= budget:
        return ids
    system = [m for m in messages[:1] if m.role == "system"]
    turns = list(messages[len(system):])
    while len(turns) > 1:
        turns.pop(0)
        ids = render(system + turns, prefix)
        if len(ids) <= budget:
            return ids
    if not turns:  # a lone system message, too long by itself
        return ids[-budget:]
    for head in (system, []):
        ids = _fit_last_message(render, tokenizer, head, turns[-1], prefix, budget)
        if len(ids) <= budget:
            return ids
    return ids[-budget:]


def _fit_last_message(render: Callable[[list[ChatMessage], str], list[int]], tokenizer: Any,
                      head: list[ChatMessage], last: ChatMessage, prefix: str,
                      budget: int) -> list[int]:
    """Cut the last message's text from the left until the prompt fits (a few tries)."""
    content = last.content
    ids = render(head + [last], prefix)
    for _ in range(4):
        over = len(ids) - budget
        if over <= 0 or not content:
            break
        tokens = tokenizer.encode(content, add_special_tokens=False)
        content = tokenizer.decode(tokens[over + 1:])
        ids = render(head + [ChatMessage(last.role, content)], prefix)
    return ids


def _load(source: str, gguf_file: str | None, dtype: str, device: str,
          device_name: str, quantize: str) -> tuple[Any, Any]:
    """Tokenizer and model, in eval mode on their device(s), quantized if asked.

    A model to quantize is loaded in its stored dtype and quantized layer by layer, and only
    the rest is cast to the compute dtype: no float32 copy of every weight is ever made
    (peak memory of the embedded model ~0.9 GB instead of ~1.2 GB).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    options: dict[str, Any] = {}
    if gguf_file:
        options["gguf_file"] = gguf_file
    if Path(source).expanduser().exists():
        source = str(Path(source).expanduser())
        options["local_files_only"] = True
    tokenizer = AutoTokenizer.from_pretrained(source, **options)
    compute_dtype = resolve_dtype(dtype, device_name)
    load_dtype = "auto" if quantize != "none" else compute_dtype
    model_options = dict(options, dtype=load_dtype)
    use_device_map = device == "auto" and device_name.startswith("cuda")
    if use_device_map:
        model_options["device_map"] = "auto"
    model = AutoModelForCausalLM.from_pretrained(source, **model_options)
    if not use_device_map:
        model.to(device_name)
    model.eval()
    if quantize != "none":
        from models.quantize import quantize_model

        quantize_model(model, quantize, float_dtype=compute_dtype)
    return tokenizer, model


def _eos_ids(model: Any, tokenizer: Any) -> list[int]:
    """Every id that ends a reply: the generation config's, the model config's, the tokenizer's."""
    found: list[int] = []
    candidates = [getattr(getattr(model, "generation_config", None), "eos_token_id", None),
                  getattr(model.config, "eos_token_id", None), tokenizer.eos_token_id]
    for value in candidates:
        for token_id in value if isinstance(value, (list, tuple)) else [value]:
            if isinstance(token_id, int) and token_id not in found:
                found.append(token_id)
    if not found:
        raise ValueError("the model defines no end-of-sequence token: give its tokenizer an "
                         "eos_token")
    return found
