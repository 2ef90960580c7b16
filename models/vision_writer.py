"""Image-grounded writing: a LanguageModel whose messages may hold images (PLoRA + encoder).

`VisionWriter` follows the LanguageModel protocol (models/lm.py) for a causal LM with Partial
LoRA adapters (models/plora.py) and an ImageEncoder (models/vision.py). Message content is
a string or a list of {"type": "text"} / {"type": "image"} parts (models/interleave.py);
composer's ChatMessage works too: its `images` (file paths) come before its text.

One reply:

1. `render_template` + `build_inputs` (batch of one, no padding) give `inputs_embeds` and
   the image mask; `prefix` is appended to the rendered prompt's last text piece, so a
   text-only prompt tokenizes exactly as TransformersLM's `text + prefix` does.
2. Prefill: one forward with `inputs_embeds` under the image mask (adapters act on the
   image positions only), filling a KV cache.
3. Decode: one forward per new token with `input_ids` and the cache, under an all-false
   [1, 1] mask (`decode_mask`): every generated token is text.

Logits processing, token choice, the seeded generator, the cache-argument detection, the
cached decode step and the streamed detokenisation with stop strings are those of
models/generate.py, so a text-only prompt decodes exactly as TransformersLM does. Penalties
(repetition, no-repeat n-grams) see the prompt's text tokens (image positions left out) and
the reply.

Beam search (num_beams > 1) runs `model.generate(inputs_embeds=...)` with a forward hook
that sets each forward's image mask, and yields the reply once (as TransformersLM does).
The PLoRA mask holder is per model: forwards of one model are serialised by a lock, so two
replies may stream at once from different threads.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from composer.types import GenerationConfig, InputError
from models.devices import resolve_device, resolve_dtype
from models.generate import forward_last, generate_tokens
from models.interleave import (
    IMAGE_TOKEN_ID,
    ImageRef,
    InterleavedBatch,
    build_inputs,
    decode_mask,
    render_template,
)
from models.lm import _eos_ids, check_generation_config, model_context_length
from models.plora import clear_image_mask, plora_layers, set_image_mask, set_plora_merge
from models.plora_grouped import prefill_last_logits
from models.text_stream import stream_text

DEFAULT_NAME = "vision-writer"


class VisionWriter:
    """A LanguageModel over a PLoRA causal LM and an image encoder; messages may hold images.

    model: a causal LM (e.g. LlamaForCausalLM) with PLoRA injected (inject_plora /
      load_plora); without PLoRA layers it runs as the base model (no mask is set).
    tokenizer: the LM's tokenizer (its chat template renders the prompt).
    encoder: an ImageEncoder (anything with `encode(images) -> list[Tensor[n, d_model]]`).
    context_length: prompt plus reply tokens (image tokens count); default: the model's.
    """

    supports_beams = True
    sees_images = True  # a message's images (ChatMessage.images) reach it as image tokens

    def __init__(self, model: Any, tokenizer: Any, encoder: Any, *, name: str = DEFAULT_NAME,
                 context_length: int | None = None) -> None:
        if context_length is not None and context_length < 2:
            raise ValueError(f"context_length is {context_length}; it must be at least 2")
        self.model = model
        self.tokenizer = tokenizer
        self.encoder = encoder
        self.name = name
        self.context_length = context_length or model_context_length(model.config, tokenizer)
        self.eos_ids = _eos_ids(model, tokenizer)
        self.has_plora = bool(plora_layers(model))
        self._lock = threading.Lock()  # one masked forward per model at a time

    # --- loading ------------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, lm_source: str | Path, vision_source: str | Path, *,
                        adapters: str | Path | None = None, device: str = "cpu",
                        dtype: str = "auto", image_size: int = 224, max_tiles: int = 4,
                        name: str | None = None, context_length: int | None = None,
                        plora_merge: bool = True) -> VisionWriter:
        """Load a causal LM + tokenizer, a vision tower, and (optionally) trained adapters.

        adapters: a `train-plora` output folder (plora/ + vision_adapter.safetensors +
        train.json); loaded with models.adapters.load_trained, which refuses adapters
        trained on other bases. Without it the LM has no PLoRA layers and the projector is
        untrained (images are embedded but meaningless): for tests and wiring only.
        plora_merge: image rows use a merged weight per adapted layer at inference (faster
        prefill, one extra copy of each adapted weight; models/plora_layer.py,
        Settings.plora_merge).
        """
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from models.vision import ImageEncoder

        device_name = resolve_device(device)
        torch_dtype = resolve_dtype(dtype, device_name)
        source = str(lm_source)
        options: dict[str, Any] = {}
        if Path(source).expanduser().exists():
            source = str(Path(source).expanduser())
            options["local_files_only"] = True
        tokenizer = AutoTokenizer.from_pretrained(source, **options)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=torch_dtype, **options)
        model.to(device_name).eval()
        d_model = model.get_input_embeddings().embedding_dim
        newline = True
        if adapters is not None:
            from models.adapters import read_train_record

            newline = bool(read_train_record(adapters).get("newline", True))
        encoder = ImageEncoder.from_pretrained(
            vision_source, d_model, image_size=image_size, device=device_name,
            tower_dtype=str(torch_dtype).removeprefix("torch."), max_tiles=max_tiles,
            newline=newline, dtype=torch_dtype)
        encoder.eval()
        if adapters is not None:
            from models.adapters import load_trained

            load_trained(adapters, model, encoder)
            set_plora_merge(model, plora_merge)
            model.eval()
        return cls(model, tokenizer, encoder, name=name or source,
                   context_length=context_length)

    # --- the LanguageModel protocol ---------------------------------------------------

    def count_tokens(self, text: str) -> int:
        """Tokens of `text` under this model's tokenizer (no special tokens added)."""
        return len(self.tokenizer.encode(text, add_special_tokens=False))

    def stream(self, messages: Sequence[Any], config: GenerationConfig, *,
               prefix: str = "", cancel: threading.Event | None = None) -> Iterator[str]:
        """Yield the reply in pieces; see LanguageModel. Checks the inputs and builds the
        prompt (images encoded) before returning the generator."""
        batch, config = self._prepare_checked(messages, config, prefix)
        return self._stream(batch, config, cancel)

    def generate_ids(self, messages: Sequence[Any], config: GenerationConfig, *,
                     prefix: str = "", cancel: threading.Event | None = None
                     ) -> Iterator[int]:
        """The reply's token ids one at a time (EOS not yielded; stop strings not applied).
        num_beams must be 1 here (beam search only streams text, through `stream`)."""
        if config.num_beams > 1:
            raise ValueError(f"num_beams is {config.num_beams}: generate_ids decodes one "
                             "sequence token by token; use stream() for beam search")
        batch, config = self._prepare_checked(messages, config, prefix)
        return self._generate(batch, config, cancel)

    # --- prompt ---------------------------------------------------------------------

    def pieces(self, messages: Sequence[Any], prefix: str = "") -> list[str | ImageRef]:
        """The rendered prompt as text pieces and ImageRefs, `prefix` appended at the end."""
        pieces = render_template(self.tokenizer, _with_image_parts(messages))
        if prefix:
            if pieces and isinstance(pieces[-1], str):
                pieces[-1] = pieces[-1] + prefix
            else:
                pieces.append(prefix)
        return pieces

    def prepare(self, messages: Sequence[Any], prefix: str = "") -> InterleavedBatch:
        """The model inputs of one prompt (batch of one, images encoded)."""
        pieces = self.pieces(messages, prefix)
        embed_tokens = self.model.get_input_embeddings()
        with torch.inference_mode():
            return build_inputs([pieces], self.tokenizer, embed_tokens, self.encoder.encode)

    def _prepare_checked(self, messages: Sequence[Any], config: GenerationConfig,
                         prefix: str) -> tuple[InterleavedBatch, GenerationConfig]:
        check_generation_config(config)
        if not isinstance(prefix, str):
            raise TypeError(f"prefix must be a string, got {type(prefix).__name__}")
        batch = self.prepare(messages, prefix)
        length = batch.lengths[0]
        room = self.context_length - length
        if room < 1:
            raise InputError(f"the prompt is {length} tokens (images included) but the "
                             f"context holds {self.context_length}: shorten the text, use "
                             "fewer or smaller images (max_tiles), or raise context_length")
        if config.max_new_tokens > room:
            config = config.replace(max_new_tokens=room)
        return batch, config

    # --- decoding -------------------------------------------------------------------

    def _stream(self, batch: InterleavedBatch, config: GenerationConfig,
                cancel: threading.Event | None) -> Iterator[str]:
        if config.num_beams > 1:
            text = self._beam_reply(batch, config, cancel)
            if text:
                yield text
            return
        context = _text_ids(batch)[0].tolist()
        yield from stream_text(self.tokenizer, context, config.stop,
                               self._generate(batch, config, cancel), cancel)

    def _generate(self, batch: InterleavedBatch, config: GenerationConfig,
                  cancel: threading.Event | None) -> Iterator[int]:
        """generate_tokens (models/generate.py) whose first forward is an inputs_embeds
        prefill under the image mask; decode steps run forward_last under decode_mask."""
        step_mask = decode_mask(1, 1, device="cpu")
        started = False

        def forward(new_ids: torch.Tensor, cache: Any, options: dict[str, Any]) -> torch.Tensor:
            nonlocal started
            if not started:
                started = True
                return self._prefill(batch, cache, options)
            with self._lock:
                self._set_mask(step_mask)
                try:
                    return forward_last(self.model, new_ids, cache, options)
                finally:
                    self._clear_mask()

        prompt_text = _text_ids(batch).to(batch.inputs_embeds.device)
        yield from generate_tokens(self.model, prompt_text, config, self.eos_ids, cancel,
                                   forward=forward)

    def _prefill(self, batch: InterleavedBatch, cache: Any,
                 options: dict[str, Any]) -> torch.Tensor:
        """The prompt's forward with inputs_embeds under the image mask; float32 logits
        [1, vocab] of its last position (the cache is filled). With adapters the rows are
        grouped once for the whole model where that applies (models/plora_grouped.py)."""
        kwargs: dict[str, Any] = {options["cache_name"]: cache, "use_cache": True}
        with self._lock:
            logits = prefill_last_logits(
                self.model, batch.inputs_embeds, batch.image_mask,
                attention_mask=batch.attention_mask, position_ids=batch.position_ids,
                keep_last=options["keep_last"], **kwargs)
        return logits.to(torch.float32)

    def _beam_reply(self, batch: InterleavedBatch, config: GenerationConfig,
                    cancel: threading.Event | None) -> str:
        """Beam search through `model.generate(inputs_embeds=...)`; the whole reply, cut at
        a stop string (as TransformersLM's beams).

        generate expands the prompt over the beams (repeat_interleave, as expand_for_beams
        does) and calls the model itself, so a forward pre-hook sets each forward's mask:
        the prompt's image mask, expanded over the rows, for the prefill (the call whose
        inputs_embeds cover the prompt), an all-false [rows, new] mask for decode steps.
        Penalties see only the reply's tokens (generate has no prompt ids here).
        """
        from transformers import StoppingCriteriaList

        from models.generate import CancelCriteria, seeded_rng
        from models.text_stream import decode_reply

        prompt_mask = batch.image_mask
        prompt_length = prompt_mask.shape[1]

        def set_step_mask(module: Any, args: tuple, kwargs: dict) -> None:
            embeds = kwargs.get("inputs_embeds")
            if embeds is not None and embeds.shape[1] == prompt_length:
                mask = prompt_mask.expand(embeds.shape[0], -1)
            else:
                ids = kwargs.get("input_ids")
                shape = (ids if ids is not None else embeds).shape[:2]
                mask = decode_mask(int(shape[0]), int(shape[1]), device="cpu")
            self._set_mask(mask)

        options: dict[str, Any] = {
            "num_beams": config.num_beams, "max_new_tokens": config.max_new_tokens,
            "do_sample": config.do_sample, "repetition_penalty": config.repetition_penalty,
            "no_repeat_ngram_size": config.no_repeat_ngram_size,
            "eos_token_id": self.eos_ids, "pad_token_id": batch.pad_token_id,
        }
        if config.do_sample:
            options.update(temperature=config.temperature, top_p=config.top_p,
                           top_k=config.top_k)
        if cancel is not None:
            options["stopping_criteria"] = StoppingCriteriaList([CancelCriteria(cancel)])
        seed = config.seed if config.do_sample else None
        with self._lock, torch.inference_mode(), seeded_rng(seed):
            handle = self.model.register_forward_pre_hook(set_step_mask, with_kwargs=True)
            try:
                output = self.model.generate(inputs_embeds=batch.inputs_embeds,
                                             attention_mask=batch.attention_mask, **options)
            finally:
                handle.remove()
                self._clear_mask()
        reply = output[0].tolist()
        end = next((i for i, token in enumerate(reply) if token in self.eos_ids), len(reply))
        return decode_reply(self.tokenizer, _text_ids(batch)[0].tolist(), reply[:end],
                            config.stop)

    def _set_mask(self, mask: torch.Tensor) -> None:
        if self.has_plora:
            set_image_mask(self.model, mask)

    def _clear_mask(self) -> None:
        if self.has_plora:
            clear_image_mask(self.model)

    def __repr__(self) -> str:
        return f"VisionWriter({self.name!r}, plora={self.has_plora})"


def _with_image_parts(messages: Sequence[Any]) -> list[Any]:
    """The messages with each one's `images` (ChatMessage.images: file paths) as image parts
    before its text, the form render_template reads; other messages as they are."""
    return [{"role": message.role,
             "content": [{"type": "image", "image": path} for path in message.images]
             + [{"type": "text", "text": message.content}]}
            if getattr(message, "images", ()) else message for message in messages]


def _text_ids(batch: InterleavedBatch) -> torch.Tensor:
    """The prompt's text token ids [1, n] (image positions and padding left out), for the
    penalties and the detokeniser's context."""
    ids = batch.text_token_ids[0][batch.attention_mask[0].bool()]
    return ids[ids != IMAGE_TOKEN_ID].unsqueeze(0)
