"""The writer on llama.cpp's engine: GGUF models decoded by llama-cpp-python's C API.

On a CPU, llama.cpp's quantized kernels decode a GGUF model faster than the torch path, load
it in a tenth of a second (memory-mapped, no conversion) and hold it in a fraction of the
memory (bench/bench_llamacpp.py measures both side by side). This backend drives the
low-level API directly, one token per call, so the app keeps every writer feature:
streaming, stop strings, greedy and sampled decoding with the repetition penalty and
n-gram bans, seeds, JSON-schema outlines (a llama.cpp grammar), cancel between tokens,
threads, and drafts decoded together as sequences of one batch (composer/checked.py).
Beam search and OPERA need the transformers model: a `twin` loader gives it, loaded on
first use only.

Prompts are rendered with the GGUF's own chat template (jinja2, as transformers renders
it) and tokenized by llama.cpp, and the text streams through models/text_stream.py, the
same code the torch backend uses. Each reply borrows a llama.cpp context (its KV cache)
from a small pool, so replies in different threads never share one.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from composer.types import ChatMessage, ComposerError, GenerationConfig
from models.llamacpp_runtime import (
    LlamaContext,
    LlamaSampler,
    LlamaVocab,
    default_threads,
    llama_api,
    llama_cpp_installed,
)
from models.lm import check_count, check_generation_config, check_messages, fit_prompt, fit_reply
from models.text_stream import stream_candidate_text, stream_text

DEFAULT_CONTEXT = 4096  # tokens per context (KV cache ~23 KB/token for the embedded model)
IDLE_CONTEXTS = 2  # contexts kept (with their caches) for the next replies


def use_llama_cpp(settings: Any) -> bool:
    """Whether a GGUF writer runs on llama.cpp: COMPOSER_ENGINE=llama.cpp, or "auto" with
    llama-cpp-python installed and the writer on the CPU (COMPOSER_DEVICE cpu, or auto on a
    machine without an NVIDIA GPU). An explicit COMPOSER_QUANTIZE, a torch setting, keeps
    "auto" on torch."""
    if settings.engine == "llama.cpp":
        if settings.device not in ("auto", "cpu"):
            raise ComposerError(f"COMPOSER_ENGINE=llama.cpp runs on the CPU, and COMPOSER_DEVICE"
                                f"={settings.device!r}: unset one of them")
        return True
    on_cpu = settings.device == "cpu" or (settings.device == "auto" and not _nvidia_gpu())
    return (settings.engine == "auto" and settings.quantize == "auto" and on_cpu
            and llama_cpp_installed())


def _nvidia_gpu() -> bool:
    """Whether this machine has an NVIDIA driver loaded (checked without importing torch,
    which the llama.cpp writer does not need)."""
    return Path("/proc/driver/nvidia/version").exists()


class LlamaCppLM:
    """A LanguageModel decoding a GGUF file with llama.cpp in this process (CPU).

    gguf: the model file. threads: CPU threads (None: the cores this process may use).
    context_length: tokens per reply's context (prompt plus reply). twin: loads the same
    model as a transformers backend, for beam search and OPERA (None: those are refused).
    repack: llama.cpp's extra buffer types (weights repacked for the CPU's wide kernels);
    off by default because it crashed in llama_decode on an Intel Xeon with AMX.
    """

    sees_images = False  # text only
    supports_json_schema = True

    def __init__(self, gguf: str | Path, *, threads: int | None = None,
                 context_length: int | None = None, name: str | None = None,
                 twin: Callable[[], Any] | None = None, repack: bool = False) -> None:
        if threads is not None and threads < 1:
            raise ValueError(f"threads is {threads}; it must be at least 1 (or unset)")
        path = Path(gguf).expanduser()
        if not path.is_file():
            raise ComposerError(f"no GGUF model file at {path}: give the path of a .gguf file")
        self.api = llama_api()
        self.source = str(path)
        self.name = name or path.stem
        self.threads = threads or default_threads()
        params = self.api.llama_model_default_params()
        params.use_extra_bufts = repack
        self.model = self.api.llama_model_load_from_file(str(path).encode(), params)
        if not self.model:
            raise ComposerError(f"llama.cpp could not load {path}: is it a GGUF model file "
                                "of an architecture this llama.cpp knows?")
        self.vocab = LlamaVocab(self.api, self.api.llama_model_get_vocab(self.model))
        trained = self.api.llama_model_n_ctx_train(self.model)
        self.context_length = context_length or min(trained or DEFAULT_CONTEXT, DEFAULT_CONTEXT)
        if self.context_length < 2:
            raise ValueError(f"context_length is {self.context_length}; it must be at least 2")
        self.template = self._chat_template()
        self._template_tokens = {"bos_token": self._special_text("bos"),
                                 "eos_token": self._special_text("eos")}
        self._twin_loader = twin
        self._twin: Any = None
        self._lock = threading.Lock()
        self._idle: list[LlamaContext] = [LlamaContext(self)]  # ready for the first reply

    # -- the LanguageModel protocol -------------------------------------------------------

    @property
    def supports_beams(self) -> bool:
        return self._twin_loader is not None

    @property
    def supports_opera(self) -> bool:
        return self._twin_loader is not None

    def count_tokens(self, text: str) -> int:
        """Tokens of `text` under this model's tokenizer (no special tokens added)."""
        return len(self.vocab.encode(text))

    def stream(self, messages: list[ChatMessage], config: GenerationConfig, *,
               prefix: str = "", cancel: threading.Event | None = None) -> Iterator[str]:
        """Yield the reply in pieces; see models.lm.LanguageModel. Checks inputs first."""
        check_generation_config(config)
        check_messages(messages)
        if config.json_schema is None and (config.num_beams > 1 or config.decoding == "opera"):
            return self.twin().stream(messages, config, prefix=prefix, cancel=cancel)
        ids = self.prompt_ids(messages, config.max_new_tokens, prefix)
        grammar = _grammar(config.json_schema)
        return self._stream(ids, fit_reply(config, self.context_length, len(ids)), grammar,
                            cancel)

    def stream_candidates(self, messages: list[ChatMessage], config: GenerationConfig,
                          count: int, *, prefix: str = "",
                          cancel: threading.Event | None = None) -> Iterator[list[str]]:
        """Decode `count` replies to one prompt together (sequences of one batch); yields a
        list of text pieces per step, "" for a reply with nothing new. Reply 0 decodes as
        `stream` would (greedy, or sampled with config.seed); the others are sampled with
        seeds seed + n. Sequences share the prompt's cache; replies are shortened so that
        all fit the context."""
        check_generation_config(config)
        check_count(count)
        check_messages(messages)
        ids = self.prompt_ids(messages, config.max_new_tokens, prefix)
        room = max(1, (self.context_length - len(ids)) // count)
        config = fit_reply(config, self.context_length, len(ids)).replace(
            max_new_tokens=min(config.max_new_tokens, room))
        drafts = _Drafts(self, ids, config, count, cancel)
        return stream_candidate_text(drafts, self.vocab, ids, config.stop, cancel)

    def twin(self) -> Any:
        """The same model on the transformers backend (beam search, OPERA), loaded once."""
        if self._twin_loader is None:
            raise ComposerError("beam search and OPERA need a transformers writer: set "
                                "COMPOSER_ENGINE=torch, or choose 1 beam and default decoding")
        with self._lock:
            if self._twin is None:
                self._twin = self._twin_loader()
            return self._twin

    # -- prompts ----------------------------------------------------------------------------

    def render(self, messages: list[ChatMessage], prefix: str = "") -> list[int]:
        """Prompt token ids: the GGUF's chat template with the generation prompt, then
        `prefix`; plain "role: content" lines for a model without a template."""
        if self.template is None:
            lines = "".join(f"{message.role}: {message.content}\n" for message in messages)
            return self.vocab.encode(f"{lines}assistant: {prefix}", add_special_tokens=True)
        chat = [{"role": message.role, "content": message.content} for message in messages]
        text = self.template.render(messages=chat, add_generation_prompt=True,
                                    **self._template_tokens)
        return self.vocab.encode(text + prefix)

    def prompt_ids(self, messages: list[ChatMessage], max_new_tokens: int,
                   prefix: str = "") -> list[int]:
        """Rendered prompt ids that leave room for the reply (models.lm.fit_prompt)."""
        return fit_prompt(self.render, self.vocab, messages, self.context_length,
                          max_new_tokens, prefix)

    def _chat_template(self) -> Any:
        """The GGUF's chat template compiled as transformers compiles it (None if absent)."""
        raw = self.api.llama_model_chat_template(self.model, None)
        if not raw:
            return None
        from jinja2.ext import loopcontrols
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        def raise_exception(message: str) -> None:
            raise ValueError(f"the chat template refused the messages: {message}")

        environment = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                                    extensions=[loopcontrols])
        environment.filters["tojson"] = lambda value, indent=None: json.dumps(
            value, ensure_ascii=False, indent=indent)
        environment.globals["raise_exception"] = raise_exception
        environment.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
        return environment.from_string(raw.decode("utf-8"))

    def _special_text(self, which: str) -> str:
        token_id = getattr(self.api, f"llama_vocab_{which}")(self.vocab.vocab)
        return self.vocab.text(token_id)

    # -- decoding ---------------------------------------------------------------------------

    def _stream(self, ids: list[int], config: GenerationConfig, grammar: str | None,
                cancel: threading.Event | None) -> Iterator[str]:
        tokens = self._tokens(ids, config, grammar, cancel)
        yield from stream_text(self.vocab, ids, config.stop, tokens, cancel)

    def _tokens(self, ids: list[int], config: GenerationConfig, grammar: str | None,
                cancel: threading.Event | None) -> Iterator[int]:
        """New token ids, one per llama_decode; ends at an end token (not yielded), after
        max_new_tokens, or when `cancel` is set (checked before every decode)."""
        if cancel is not None and cancel.is_set():
            return
        sampler = LlamaSampler(self, config, ids, sample=config.do_sample, seed=config.seed,
                               grammar=grammar)
        ctx = self._borrow()
        try:
            ctx.prefill(ids)
            position = len(ids)
            for step in range(config.max_new_tokens):
                if step and (cancel is not None and cancel.is_set()):
                    return
                token_id = sampler.pick(ctx, -1, self.vocab.size)
                if self.vocab.is_end(token_id):
                    return
                yield token_id
                if step + 1 == config.max_new_tokens or (cancel is not None and
                                                         cancel.is_set()):
                    return
                ctx.decode([(token_id, position, 0, True)])
                position += 1
        finally:
            sampler.free()
            self._give_back(ctx)

    def _borrow(self) -> LlamaContext:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        return LlamaContext(self)

    def _give_back(self, ctx: LlamaContext) -> None:
        with self._lock:
            if len(self._idle) < IDLE_CONTEXTS:
                self._idle.append(ctx)
                return
        ctx.free()

    def close(self) -> None:
        """Free the contexts and the model (the object is unusable afterwards)."""
        with self._lock:
            idle, self._idle = self._idle, []
        for ctx in idle:
            ctx.free()
        if self.model:
            self.api.llama_model_free(self.model)
            self.model = None

    def __repr__(self) -> str:
        return f"LlamaCppLM({self.source!r}, threads={self.threads})"


class _Drafts:
    """`count` replies to one prompt, decoded as sequences of one llama.cpp batch.

    Iterating yields one entry per reply and step: the new token id, or None once the reply
    has ended (end token, max_new_tokens, or `finish(row)`, e.g. on a stop string).
    """

    def __init__(self, lm: LlamaCppLM, ids: list[int], config: GenerationConfig, count: int,
                 cancel: threading.Event | None) -> None:
        self.lm = lm
        self.ids = ids
        self.config = config
        self.count = count
        self.cancel = cancel
        self.finished: set[int] = set()

    def finish(self, row: int) -> None:
        self.finished.add(row)

    def __iter__(self) -> Iterator[list[int | None]]:
        lm, config = self.lm, self.config
        if self.cancel is not None and self.cancel.is_set():
            return
        base = config.seed if config.seed is not None else 0
        samplers = [LlamaSampler(lm, config, self.ids, sample=config.do_sample or row > 0,
                                 seed=config.seed if row == 0 else base + row)
                    for row in range(self.count)]
        ctx = lm._borrow()
        try:
            ctx.prefill(self.ids)
            for row in range(1, self.count):
                lm.api.llama_memory_seq_cp(ctx.memory, 0, row, -1, -1)
            position = len(self.ids)
            index = {row: -1 for row in range(self.count)}  # batch entry holding its logits
            for step in range(config.max_new_tokens):
                if step and self.cancel is not None and self.cancel.is_set():
                    return
                out: list[int | None] = [None] * self.count
                feed = []
                for row, sampler in enumerate(samplers):
                    if row in self.finished:
                        continue
                    token_id = sampler.pick(ctx, index[row], lm.vocab.size)
                    if lm.vocab.is_end(token_id):
                        self.finished.add(row)
                        continue
                    out[row] = token_id
                    feed.append((row, token_id))
                if not feed:
                    return
                yield out
                feed = [(row, token_id) for row, token_id in feed if row not in self.finished]
                if not feed or step + 1 == config.max_new_tokens:
                    return
                if self.cancel is not None and self.cancel.is_set():
                    return
                ctx.decode([(token_id, position, row, True) for row, token_id in feed])
                for i, (row, _token_id) in enumerate(feed):
                    index[row] = i
                position += 1
        finally:
            for sampler in samplers:
                sampler.free()
            lm._give_back(ctx)


def _grammar(json_schema: str | None) -> str | None:
    """A JSON schema as a llama.cpp grammar (GBNF), or None without a schema."""
    if json_schema is None:
        return None
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    try:
        return json_schema_to_gbnf(json_schema)
    except (ValueError, KeyError, TypeError, NotImplementedError) as error:
        raise ValueError(f"json_schema cannot be enforced by llama.cpp ({error}): simplify "
                         "the schema") from None
