"""The writer on a model server: any OpenAI-compatible chat API (vLLM, SGLang, TGI, Ollama,
llama.cpp server, a provider), reached through langchain_openai.ChatOpenAI.

COMPOSER_WRITER_URL turns it on (models/registry.py); the embedder, OCR, retrieval and the
image models stay local. Each request streams; what this backend adds on top of ChatOpenAI:

- retries (429, 5xx, no connection, timeout) with exponential backoff, only before the first
  text arrives: a reply is never retried once text flowed, that would repeat it;
- errors a person can act on (ComposerError naming COMPOSER_WRITER_URL / _KEY / _MODEL);
- `prefix`: sent as a trailing assistant message with vLLM's `continue_final_message`, which
  SGLang and llama.cpp also honour (they continue a trailing assistant turn); a server that
  echoes the prefix has it stripped;
- stop strings cut here too (servers differ), cancel between chunks (closing the response);
- json_schema as `response_format` (json_schema, strict); top_k and repetition_penalty in the
  body (vLLM, SGLang, llama.cpp read them). A server that answers 400 naming one of these
  fields is asked again once without them, and is then never sent them again.
- max_tokens goes in the body as `max_tokens`, the name every compatible server reads
  (ChatOpenAI would send OpenAI's newer `max_completion_tokens`).

Greedy decoding is temperature 0. Beam search, OPERA and n-gram bans are local decoding: a
server writer refuses beams and OPERA, and ignores no_repeat_ngram_size.
"""

from __future__ import annotations

import base64
import io
import json
import math
import threading
import time
from collections.abc import Iterator
from typing import Any

from composer.config import Settings
from composer.types import ChatMessage, ComposerError, GenerationConfig, InputError
from models.lm import check_generation_config

DEFAULT_CONTEXT = 8192
MAX_IMAGE_SIDE = 1024  # pixels; larger images are downscaled before they are sent
MAX_RETRY_AFTER = 30.0  # seconds; a longer Retry-After is not waited for in full
# Fragments of model names that read images (COMPOSER_WRITER_VISION=auto).
VISION_NAMES = ("-vl", "_vl", "vl-", "vision", "llava", "pixtral", "internvl", "minicpm-v")
# Body fields only some servers accept (see _downgrade).
SCHEMA_FIELDS = ("response_format", "json_schema")
EXTRA_FIELDS = ("top_k", "repetition_penalty", "continue_final_message",
                "add_generation_prompt")


def looks_like_vision(model: str) -> bool:
    """Whether a served model's name says it reads images (Qwen2-VL, llava, ...)."""
    name = model.lower()
    return any(fragment in name for fragment in VISION_NAMES)


class RemoteLM:
    """A LanguageModel (models/lm.py) on an OpenAI-compatible server.

    Build it with `RemoteLM.connect(settings)`, which checks the server first. `backoff` is
    the first retry's wait in seconds (doubled each retry; tests make it small).
    """

    supports_beams = False
    supports_opera = False

    def __init__(self, base_url: str, model: str, *, api_key: str = "none",
                 timeout: float = 60.0, retries: int = 2, context_length: int = DEFAULT_CONTEXT,
                 sees_images: bool = False, backoff: float = 1.0) -> None:
        from langchain_openai import ChatOpenAI

        self.base_url = base_url.rstrip("/")
        self.model = model
        self.name = f"{model} @ {self.base_url}"
        self.context_length = context_length
        self.sees_images = sees_images
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.api_key = api_key
        # Per server: cleared when it rejects response_format / the extra fields (400).
        self.supports_json_schema = True
        self.sends_extras = True
        self._counts: dict[str, int] = {}
        self._has_tokenize: bool | None = None  # POST /tokenize works (None: not tried yet)
        self.chat = ChatOpenAI(base_url=self.base_url, api_key=api_key, model=model,
                               streaming=True, stream_usage=False, timeout=timeout,
                               max_retries=0)

    def __repr__(self) -> str:
        return f"RemoteLM({self.model!r}, base_url={self.base_url!r})"

    @classmethod
    def connect(cls, settings: Settings, **options: Any) -> RemoteLM:
        """A RemoteLM for settings.writer_url, after GET /models shows the server answers,
        accepts the key and serves the model; ComposerError saying what to fix otherwise.
        `options` go to the constructor (e.g. backoff)."""
        base = settings.writer_url.rstrip("/")
        served = list_models(base, settings.writer_key, settings.writer_timeout)
        names = [entry["id"] for entry in served]
        model = settings.writer_model or (names[0] if names else "")
        if not names:
            raise ComposerError(f"the writer server at {base} serves no model (GET /models is "
                                "empty): start it with a model loaded")
        if model not in names:
            raise ComposerError(f"the writer server at {base} serves {names}, not {model!r}: "
                                "set COMPOSER_WRITER_MODEL to one of them")
        entry = served[names.index(model)]
        context = settings.writer_context or _positive_int(entry.get("max_model_len")) \
            or DEFAULT_CONTEXT
        vision = settings.writer_vision == "1" or (settings.writer_vision == "auto"
                                                   and looks_like_vision(model))
        return cls(base, model, api_key=settings.writer_key, timeout=settings.writer_timeout,
                   retries=settings.writer_retries, context_length=context, sees_images=vision,
                   **options)

    # -- tokens --------------------------------------------------------------------------------

    def count_tokens(self, text: str) -> int:
        """Tokens of `text`: the server's POST /tokenize when it has one (vLLM, llama.cpp
        server), else a conservative estimate (one token per 3 UTF-8 bytes)."""
        if text in self._counts:
            return self._counts[text]
        count = self._tokenize(text)
        if count is None:
            return estimate_tokens(text)
        if len(self._counts) > 1024:
            self._counts.clear()
        self._counts[text] = count
        return count

    def _tokenize(self, text: str) -> int | None:
        """The server's token count, or None when it has no /tokenize (remembered)."""
        import httpx

        root = self.base_url.removesuffix("/v1")
        if self._has_tokenize is False:
            return None
        try:  # vLLM reads "prompt", llama.cpp "content"; each ignores the other
            response = httpx.post(f"{root}/tokenize", json={"model": self.model, "prompt": text,
                                                            "content": text},
                                  headers=self._headers(), timeout=self.timeout)
            tokens = response.json().get("tokens") if response.status_code == 200 else None
        except (httpx.HTTPError, ValueError, AttributeError):
            tokens = None
        self._has_tokenize = isinstance(tokens, list)
        return len(tokens) if isinstance(tokens, list) else None

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}

    # -- streaming -----------------------------------------------------------------------------

    def stream(self, messages: list[ChatMessage], config: GenerationConfig, *,
               prefix: str = "", cancel: threading.Event | None = None) -> Iterator[str]:
        """Yield the reply in pieces as the server streams it; see LanguageModel. Checks the
        inputs (and reads the images) before any request."""
        check_generation_config(config)
        if config.num_beams > 1 or config.decoding == "opera":
            raise InputError(f"beam search and OPERA decoding need a local writer; {self.name!r} "
                             "is a model server: choose 1 beam and the default decoding")
        if not messages:
            raise ValueError("messages is empty: give at least one user message")
        for message in messages:
            if not isinstance(message.content, str) or not isinstance(message.role, str):
                raise TypeError(f"message {message!r} must have text role and content")
        chat_messages = self._chat_messages(messages, prefix)
        return self._stream(chat_messages, config, prefix, cancel)

    def _stream(self, chat_messages: list[Any], config: GenerationConfig, prefix: str,
                cancel: threading.Event | None) -> Iterator[str]:
        """Requests until one succeeds, the retries are spent or text has flowed."""
        import httpx
        import openai

        retryable = (openai.RateLimitError, openai.InternalServerError,
                     openai.APIConnectionError, httpx.TransportError)
        attempt = 0
        while True:
            if cancel is not None and cancel.is_set():
                return
            progress = {"received": 0}
            request = self._request(chat_messages, config, prefix, cancel, progress)
            try:
                yield from request
                return
            except (openai.BadRequestError, openai.UnprocessableEntityError) as error:
                if progress["received"] or not self._downgrade(error, config):
                    raise ComposerError(f"the writer server at {self.base_url} rejected the "
                                        f"request ({_describe(error)}): check its log") from None
            except (openai.AuthenticationError, openai.PermissionDeniedError) as error:
                raise ComposerError(self._key_message(error)) from None
            except openai.NotFoundError as error:
                raise ComposerError(self._model_message(error)) from None
            except retryable as error:
                if progress["received"]:
                    raise ComposerError(
                        f"the writer server at {self.base_url} broke off the reply after "
                        f"{progress['received']} characters ({_describe(error)}); it was not "
                        "retried, to avoid repeating text: check the server and try again"
                    ) from None
                # llama-cpp-python's server answers an unknown response_format with a 500
                if isinstance(error, openai.InternalServerError) and \
                        self._downgrade(error, config):
                    continue
                if attempt >= self.retries:
                    tries = f"{attempt + 1} time" + ("s" if attempt else "")
                    raise ComposerError(
                        f"the writer server at {self.base_url} failed {tries} "
                        f"({_describe(error)}): check that it runs (its log), raise "
                        "COMPOSER_WRITER_RETRIES, or unset COMPOSER_WRITER_URL to use the "
                        "embedded model") from None
                if cancel is not None and cancel.wait(self._delay(error, attempt)):
                    return
                if cancel is None:
                    time.sleep(self._delay(error, attempt))
                attempt += 1
            except openai.APIError as error:  # another status, or an error event mid-reply
                raise ComposerError(f"the writer server at {self.base_url} answered "
                                    f"{_describe(error)}: check its log") from None
            finally:
                request.close()

    def _request(self, chat_messages: list[Any], config: GenerationConfig, prefix: str,
                 cancel: threading.Event | None, progress: dict[str, int]) -> Iterator[str]:
        """One streamed request: text pieces, the echoed prefix and stop strings cut off;
        progress["received"] counts the characters the server sent."""
        chunks = self.chat.stream(chat_messages, stop=list(config.stop) or None,
                                  **self._options(chat_messages, config, prefix))
        pieces = _Pieces(prefix, config.stop)
        try:
            for chunk in chunks:
                if cancel is not None and cancel.is_set():
                    return
                text = chunk.content if isinstance(chunk.content, str) else ""
                if not text:
                    continue
                progress["received"] += len(text)
                ready, stopped = pieces.add(text)
                if ready:
                    yield ready
                if stopped:
                    return
            rest = pieces.rest()
            if rest:
                yield rest
        finally:
            chunks.close()  # closes the HTTP response: the server sees the client leave

    def _options(self, chat_messages: list[Any], config: GenerationConfig,
                 prefix: str) -> dict[str, Any]:
        """The sampling options and body fields of one request."""
        body: dict[str, Any] = {"max_tokens": self._max_tokens(chat_messages, config)}
        options: dict[str, Any] = {"temperature": 0.0, "top_p": 1.0}
        if config.do_sample:
            options = {"temperature": config.temperature, "top_p": config.top_p}
            if config.seed is not None:
                options["seed"] = config.seed
            if self.sends_extras:
                body.update(top_k=config.top_k if config.top_k > 0 else -1,
                            repetition_penalty=config.repetition_penalty)
        elif self.sends_extras and config.repetition_penalty != 1.0:
            body["repetition_penalty"] = config.repetition_penalty
        if prefix and self.sends_extras:
            body.update(continue_final_message=True, add_generation_prompt=False)
        if config.json_schema is not None and self.supports_json_schema:
            body["response_format"] = {"type": "json_schema", "json_schema": {
                "name": "outline", "schema": json.loads(config.json_schema), "strict": True}}
        options["extra_body"] = body
        return options

    def _max_tokens(self, chat_messages: list[Any], config: GenerationConfig) -> int:
        """config.max_new_tokens, lowered when the prompt leaves less room in the context
        (the estimate first; the server's count only when the estimate is near the limit)."""
        text = "".join(m.content if isinstance(m.content, str) else str(m.content)
                       for m in chat_messages)
        overhead = 8 * len(chat_messages)  # role markers of the chat template
        if estimate_tokens(text) + overhead + config.max_new_tokens <= self.context_length:
            return config.max_new_tokens
        room = self.context_length - self.count_tokens(text) - overhead
        return max(1, min(config.max_new_tokens, room))

    def _downgrade(self, error: Any, config: GenerationConfig) -> bool:
        """Stop sending what a 400 names (response_format, or the extra fields), so the
        request can go again; False when the 400 is about something else."""
        message = str(error).lower()
        if config.json_schema is not None and self.supports_json_schema and \
                any(name in message for name in SCHEMA_FIELDS):
            self.supports_json_schema = False  # the outline is then parsed from free text
            return True
        if self.sends_extras and any(name in message for name in EXTRA_FIELDS):
            self.sends_extras = False
            return True
        return False

    def _delay(self, error: Any, attempt: int) -> float:
        """Seconds before the next try: the server's Retry-After, else exponential backoff."""
        response = getattr(error, "response", None)
        header = response.headers.get("retry-after") if response is not None else None
        try:
            return min(max(float(header), 0.0), MAX_RETRY_AFTER)
        except (TypeError, ValueError):
            return self.backoff * 2 ** attempt

    def _key_message(self, error: Any) -> str:
        return (f"the writer server at {self.base_url} refused the API key "
                f"({_describe(error)}): set COMPOSER_WRITER_KEY to a key it accepts")

    def _model_message(self, error: Any) -> str:
        return (f"the writer server at {self.base_url} has no model {self.model!r} "
                f"({_describe(error)}): set COMPOSER_WRITER_MODEL to one it serves "
                f"(GET {self.base_url}/models lists them)")

    # -- messages ------------------------------------------------------------------------------

    def _chat_messages(self, messages: list[ChatMessage], prefix: str) -> list[Any]:
        """LangChain messages: images (when the server reads them) as data-URL parts before
        the text, and the prefix as a trailing assistant message to continue."""
        from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

        kinds = {"system": SystemMessage, "user": HumanMessage, "assistant": AIMessage}
        out: list[Any] = []
        for message in messages:
            kind = kinds.get(message.role)
            if kind is None:
                raise ValueError(f"message role {message.role!r} is not one of {list(kinds)}")
            if self.sees_images and message.images and message.role == "user":
                parts: list[Any] = [{"type": "image_url", "image_url": {"url": data_url(path)}}
                                    for path in message.images]
                out.append(kind(content=[*parts, {"type": "text", "text": message.content}]))
            else:
                out.append(kind(content=message.content))
        if prefix:
            out.append(AIMessage(content=prefix))
        return out


class _Pieces:
    """Turns streamed text into pieces to yield: drops the prefix when the server echoes it,
    cuts at the first stop string, and holds back a tail that may start a stop string."""

    def __init__(self, prefix: str, stop: tuple[str, ...]) -> None:
        self.prefix = prefix
        self.stop = [s for s in stop if s]
        self.checking_echo = bool(prefix)
        self.pending = ""

    def add(self, text: str) -> tuple[str, bool]:
        """(text ready to yield, whether a stop string ended the reply)."""
        self.pending += text
        if self.checking_echo:
            if self.prefix.startswith(self.pending):
                return "", False  # could still be the echo: wait
            self.checking_echo = False
            self.pending = self.pending.removeprefix(self.prefix)
        cuts = [self.pending.find(s) for s in self.stop if s in self.pending]
        if cuts:
            ready, self.pending = self.pending[:min(cuts)], ""
            return ready, True
        hold = max((n for s in self.stop for n in range(1, len(s))
                    if self.pending.endswith(s[:n])), default=0)
        ready = self.pending[:len(self.pending) - hold]
        self.pending = self.pending[len(ready):]
        return ready, False

    def rest(self) -> str:
        """What is still held when the stream ends (an echo check or a stop's start)."""
        rest, self.pending = self.pending, ""
        return "" if self.checking_echo and rest == self.prefix else rest


def list_models(base: str, key: str, timeout: float) -> list[dict[str, Any]]:
    """The served models (GET {base}/models "data" entries); ComposerError saying what to do
    when the server does not answer, refuses the key or answers something else."""
    import httpx

    try:
        response = httpx.get(f"{base}/models", headers={"Authorization": f"Bearer {key}"},
                             timeout=timeout)
    except httpx.HTTPError as error:
        raise ComposerError(f"the writer server at {base} does not answer ({_reason(error)}): "
                            "start it, or unset COMPOSER_WRITER_URL to use the embedded "
                            "model") from None
    if response.status_code in (401, 403):
        raise ComposerError(f"the writer server at {base} refused the API key (HTTP "
                            f"{response.status_code}): set COMPOSER_WRITER_KEY to a key it "
                            "accepts")
    try:
        data = response.json()["data"] if response.status_code == 200 else None
    except (ValueError, KeyError, TypeError):
        data = None
    if not isinstance(data, list) or not all(isinstance(e, dict) and isinstance(e.get("id"), str)
                                             for e in data):
        raise ComposerError(f"the writer server at {base} answered GET /models with HTTP "
                            f"{response.status_code}, not a model list: set "
                            "COMPOSER_WRITER_URL to the OpenAI-compatible API base (it "
                            "usually ends in /v1)")
    return data


def data_url(path: str) -> str:
    """An image file as a base64 data URL (PNG when it has transparency, else JPEG),
    downscaled so that its longer side is at most MAX_IMAGE_SIDE pixels."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.load()
            picture = image.convert("RGBA" if _has_alpha(image) else "RGB")
    except (OSError, ValueError) as error:
        raise ComposerError(f"cannot read the image {path} for the writer server ({error}): "
                            "check the file") from None
    picture.thumbnail((MAX_IMAGE_SIDE, MAX_IMAGE_SIDE))
    buffer = io.BytesIO()
    kind = "png" if picture.mode == "RGBA" else "jpeg"
    picture.save(buffer, format=kind.upper(), **({"quality": 90} if kind == "jpeg" else {}))
    return f"data:image/{kind};base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _has_alpha(image: Any) -> bool:
    return image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info


def estimate_tokens(text: str) -> int:
    """A count no tokenizer exceeds by much: one token per 3 UTF-8 bytes, rounded up."""
    return math.ceil(len(text.encode("utf-8")) / 3)


def _positive_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 \
        else None


def _reason(error: Exception) -> str:
    """Why a connection failed, in a few words (ConnectionRefused, timed out, ...)."""
    text = str(error).lower()
    if "refused" in text:
        return "ConnectionRefused"
    if "timed out" in text or "timeout" in type(error).__name__.lower():
        return "timed out"
    return type(error).__name__


def _describe(error: Any) -> str:
    """An API error as "HTTP 500: message" or "ConnectionRefused" / the error's type."""
    status = getattr(error, "status_code", None)
    if status is not None:
        body = getattr(error, "body", None)
        message = body.get("message") if isinstance(body, dict) else None
        message = str(message or getattr(error, "message", "") or error)
        return f"HTTP {status}: {message.removeprefix(f'Error code: {status} - ')[:200]}"
    root = error
    while isinstance(root.__cause__, Exception):  # the transport's own error says most
        root = root.__cause__
    message = getattr(error, "message", None)
    if root is error and message:  # an error event in the stream: the server's words
        return str(message)[:200]
    return _reason(root)
