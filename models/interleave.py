"""Interleaved text and images -> `inputs_embeds` + image mask for a Partial-LoRA model.

Chat messages may hold text and images in any order (docs: /work/shared/REFERENCE.md
section 2). Two steps turn them into model inputs:

1. `render_template(tokenizer, messages)` renders the tokenizer's own chat template with each
   image replaced by a unique placeholder string, then splits the rendered prompt at the
   placeholders: a list of text pieces and `ImageRef`s, in prompt order. The template's
   formatting (role headers, special tokens, generation prompt) is kept exactly, and each
   image sits exactly where the person put it in its message.
2. `build_inputs(pieces_per_sample, tokenizer, embed_tokens, encode_images)` tokenizes each
   text piece on its own (no special tokens added: the pieces already carry them), embeds
   the tokens with the language model's input embedding, encodes every image of the batch
   in one call, and pads the samples into an `InterleavedBatch`: `inputs_embeds`,
   `image_mask` (true exactly on image token positions), `attention_mask`, `position_ids`.

A text-only conversation gives exactly the embeddings of the ids from
`tokenizer.apply_chat_template(..., tokenize=True)`, so the base model's text behaviour is
unchanged. For beam search, `expand_for_beams` repeats every row `num_beams` times in the
order Hugging Face `generate` uses; on decode steps every new token is text, so the mask for
the new positions is `decode_mask(...)` (all false).

Message format (dicts, or objects with `role` and `content`, such as composer's ChatMessage):

    [{"role": "user", "content": [{"type": "text", "text": "Describe"},
                                  {"type": "image", "image": PIL.Image or a file path}]},
     {"role": "assistant", "content": "A plain string is one text part."}]

Parts of one message are joined with nothing in between: add spaces or newlines to the
text parts where you want them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

IMAGE_TOKEN_ID = -1  # text_token_ids value at image positions (never a real token id)
PADDING_SIDES = ("left", "right")
PART_TYPES = ("text", "image")
PLACEHOLDER = "<|interleave-image-{nonce}-{index}|>"


@dataclass(frozen=True, eq=False)
class ImageRef:
    """One image of a prompt: a PIL image or a file path, as the person gave it.

    `index` is the image's number in its conversation (0-based, in message order) and
    `label` says where it came from ("message 1, part 2"), for error messages.
    """

    image: Any
    index: int = 0
    label: str = ""

    def load(self) -> Any:
        """The image as a loaded PIL image (a path is opened and decoded now).

        Decoding here, before any model work, turns a missing or unreadable file into a
        clear error naming it. The EXIF data stays, so the encoder can still turn it upright.
        """
        from PIL import Image, UnidentifiedImageError

        if isinstance(self.image, Image.Image):
            return self.image
        path = Path(self.image).expanduser()
        where = f" ({self.label})" if self.label else ""
        if not path.is_file():
            raise FileNotFoundError(f"image file {str(path)!r}{where} does not exist: check "
                                    "the path or pass a PIL image")
        try:
            opened = Image.open(path)
            opened.load()
        except (UnidentifiedImageError, OSError) as error:
            raise ValueError(f"image {str(path)!r}{where} could not be opened ({error}): give "
                             "a readable JPEG, PNG, WebP or another common format") from error
        return opened


Piece = str | ImageRef


@dataclass
class InterleavedBatch:
    """Model inputs for a batch of interleaved prompts (B samples, T positions, d features).

    inputs_embeds [B, T, d] (embed_tokens' dtype and device); image_mask [B, T] bool, true
    exactly on image token positions (false on text and padding); attention_mask [B, T] long
    (1 real, 0 padding); position_ids [B, T] long, counting only real tokens
    (`attention_mask.cumsum(-1) - 1`, padding positions set to 1 as Hugging Face does);
    lengths: real tokens per sample; text_token_ids [B, T] long, for debugging: the token id
    at text positions, IMAGE_TOKEN_ID (-1) at image positions, `pad_token_id` at padding.
    """

    inputs_embeds: torch.Tensor
    image_mask: torch.Tensor
    attention_mask: torch.Tensor
    position_ids: torch.Tensor
    lengths: list[int]
    text_token_ids: torch.Tensor
    pad_token_id: int
    padding_side: str = "left"

    @property
    def batch_size(self) -> int:
        """Number of rows (samples, or samples x beams after expand_for_beams)."""
        return self.inputs_embeds.shape[0]

    def model_inputs(self) -> dict[str, torch.Tensor]:
        """The keyword arguments of a Hugging Face causal LM's forward."""
        return {"inputs_embeds": self.inputs_embeds, "attention_mask": self.attention_mask,
                "position_ids": self.position_ids}


# --- 1. Messages -> pieces --------------------------------------------------------------


def render_template(tokenizer: Any, messages: Sequence[Any],
                    add_generation_prompt: bool = True) -> list[Piece]:
    """Render a conversation with the tokenizer's chat template; text pieces and ImageRefs.

    Each image becomes a unique placeholder string in its message's text, the template is
    applied to those plain-string messages (so any text-only template works, and its own
    formatting is kept), and the result is split at the placeholders. Empty text pieces are
    dropped. Raises TypeError for a wrongly typed message or part, ValueError for a bad value
    (no messages, no role, an unknown part type) or a template that drops or repeats a
    placeholder. Images are not opened here (build_inputs does).

    Without a chat template, the fallback is the one TransformersLM uses: a line
    "role: content" per message, then "assistant: " (when add_generation_prompt), preceded by
    the special tokens (BOS) the tokenizer adds at the start of a normal encode, as a piece
    of its own.
    """
    parsed = _parse_messages(messages)
    images = [part for _, parts in parsed for part in parts if isinstance(part, ImageRef)]
    nonce = _free_nonce(parsed)
    flat = [{"role": role, "content": _flatten(parts, nonce)} for role, parts in parsed]
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(flat, add_generation_prompt=add_generation_prompt,
                                             tokenize=False)
        lead: list[str] = []
    else:
        text = "".join(f"{m['role']}: {m['content']}\n" for m in flat)
        text += "assistant: " if add_generation_prompt else ""
        lead = _leading_special_tokens(tokenizer)
    return lead + _split_at_placeholders(text, images, nonce)


def _parse_messages(messages: Sequence[Any]) -> list[tuple[str, list[Piece]]]:
    """(role, parts) per message, parts being text strings and ImageRefs; checks the format."""
    if isinstance(messages, (str, dict)) or not isinstance(messages, Sequence):
        raise TypeError(f"messages must be a list of messages, got {type(messages).__name__}: "
                        "wrap a single message in a list")
    if not messages:
        raise ValueError("messages is empty: give at least one user message")
    parsed, count = [], 0
    for number, message in enumerate(messages):
        role, content = _role_and_content(message, number)
        parts = _parse_content(content, number, count)
        count += sum(isinstance(part, ImageRef) for part in parts)
        parsed.append((role, parts))
    return parsed


def _role_and_content(message: Any, number: int) -> tuple[str, Any]:
    """A message's role and content, from a dict or an object with those attributes."""
    if isinstance(message, dict):
        role, content = message.get("role"), message.get("content")
    else:
        role, content = getattr(message, "role", None), getattr(message, "content", None)
    if not isinstance(role, str) or not role:
        raise ValueError(f"message {number} has role {role!r}: give a role such as 'user', "
                         "'assistant' or 'system'")
    if content is None:
        raise ValueError(f"message {number} ({role}) has no content: give a string or a list "
                         "of text/image parts")
    return role, content


def _parse_content(content: Any, number: int, first_image: int) -> list[Piece]:
    """A message's content as text strings and ImageRefs (numbered from first_image)."""
    if isinstance(content, str):
        return [content]
    if not isinstance(content, (list, tuple)):
        raise TypeError(f"message {number} content is {type(content).__name__}: give a string "
                        "or a list of parts like {'type': 'text', 'text': ...}")
    parts: list[Piece] = []
    index = first_image
    for position, part in enumerate(content):
        label = f"message {number}, part {position}"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            parts.append(_text_of(part, label))
        elif kind == "image":
            parts.append(ImageRef(_image_of(part, label), index, label))
            index += 1
        else:
            shown = kind if isinstance(part, dict) else type(part).__name__
            raise ValueError(f"{label} has unknown type {shown!r}: each part must be a dict "
                             f"whose 'type' is one of {PART_TYPES}")
    return parts


def _text_of(part: dict, label: str) -> str:
    """The string of a text part."""
    text = part.get("text")
    if not isinstance(text, str):
        raise TypeError(f"{label} is a text part whose 'text' is {text!r}: give a string")
    return text


def _image_of(part: dict, label: str) -> Any:
    """The PIL image or path of an image part (checked for its type, not opened)."""
    from PIL import Image

    image = part.get("image")
    if isinstance(image, (Image.Image, Path)) or (isinstance(image, str) and image):
        return image
    raise TypeError(f"{label} is an image part whose 'image' is {type(image).__name__} "
                    f"({image!r:.60}): give a PIL.Image or a file path")


def _free_nonce(parsed: list[tuple[str, list[Piece]]]) -> int:
    """The smallest number whose placeholders occur in no text of the conversation."""
    texts = [role for role, _ in parsed]
    texts += [part for _, parts in parsed for part in parts if isinstance(part, str)]
    nonce = 0
    while any(_placeholder_head(nonce) in text for text in texts):
        nonce += 1
    return nonce


def _placeholder_head(nonce: int) -> str:
    """The start of every placeholder of one nonce (the part before the image index)."""
    return PLACEHOLDER.split("{index}")[0].format(nonce=nonce)


def _flatten(parts: list[Piece], nonce: int) -> str:
    """A message's parts as one string, each image as its placeholder."""
    return "".join(part if isinstance(part, str)
                   else PLACEHOLDER.format(nonce=nonce, index=part.index) for part in parts)


def _split_at_placeholders(text: str, images: list[ImageRef], nonce: int) -> list[Piece]:
    """Split the rendered prompt at the image placeholders; non-empty texts and ImageRefs."""
    tail = PLACEHOLDER.split("{index}")[1]
    pattern = re.compile(re.escape(_placeholder_head(nonce)) + r"(\d+)" + re.escape(tail))
    found = [int(match.group(1)) for match in pattern.finditer(text)]
    if sorted(found) != list(range(len(images))):
        raise ValueError(f"the chat template kept image placeholders {found} of "
                         f"{len(images)} images: it must copy message content verbatim (use "
                         "a template that does not drop, repeat or alter message text)")
    pieces: list[Piece] = []
    for number, chunk in enumerate(pattern.split(text)):
        if number % 2:
            pieces.append(images[int(chunk)])
        elif chunk:
            pieces.append(chunk)
    return pieces


def _leading_special_tokens(tokenizer: Any) -> list[str]:
    """The special tokens (e.g. BOS) a normal encode puts before the text, as token strings.

    Found by encoding a probe with and without special tokens. Special tokens a normal
    encode appends (an EOS) are not kept: a prompt for generation must not end there.
    """
    probe = "a"
    plain = tokenizer.encode(probe, add_special_tokens=False)
    full = tokenizer.encode(probe, add_special_tokens=True)
    for start in range(len(full) - len(plain) + 1):
        if full[start:start + len(plain)] == plain:
            return list(tokenizer.convert_ids_to_tokens(full[:start]))
    return []


# --- 2. Pieces -> model inputs ----------------------------------------------------------


def build_inputs(pieces_per_sample: Sequence[Sequence[Piece]], tokenizer: Any,
                 embed_tokens: nn.Embedding,
                 encode_images: Callable[[list[Any]], list[torch.Tensor]] | None, *,
                 padding_side: str = "left") -> InterleavedBatch:
    """Embed a batch of interleaved prompts and pad them into an InterleavedBatch.

    Each text piece is tokenized on its own with add_special_tokens=False (the pieces from
    render_template already hold every special token, so no BOS is added between pieces),
    and embedded with `embed_tokens`. All images of the batch go to `encode_images` in ONE
    call (none when there are no images; then it may be None), which must return one
    [n_tokens, d_model] tensor per image. Everything is cast to embed_tokens' dtype and
    device. Padding ("left" for generation, or "right") holds the pad token's embedding
    (pad_token_id, else eos_token_id, else 0) and is masked out by attention_mask.
    An image file that is missing or unreadable raises FileNotFoundError / ValueError naming
    it, before the encoder runs.
    """
    samples = _checked_pieces(pieces_per_sample)
    if padding_side not in PADDING_SIDES:
        raise ValueError(f"padding_side is {padding_side!r}: use one of {PADDING_SIDES}")
    weight = embed_tokens.weight
    texts = [piece for sample in samples for piece in sample if isinstance(piece, str)]
    token_ids = _tokenize_pieces(tokenizer, texts, embed_tokens.num_embeddings)
    refs = [piece for sample in samples for piece in sample if isinstance(piece, ImageRef)]
    image_embeds = _encode_all(refs, encode_images, embed_tokens.embedding_dim, weight)
    pad_id = _pad_id(tokenizer)
    rows = []
    text_iter, image_iter = iter(token_ids), iter(image_embeds)
    for number, sample in enumerate(samples):
        rows.append(_embed_sample(sample, text_iter, image_iter, embed_tokens, number))
    return _pad_rows(rows, embed_tokens, pad_id, padding_side)


def _checked_pieces(pieces_per_sample: Any) -> list[list[Piece]]:
    """The batch as lists of pieces, after checking each piece is a str or an ImageRef."""
    if isinstance(pieces_per_sample, (str, ImageRef)) or not isinstance(pieces_per_sample,
                                                                         Sequence):
        raise TypeError("pieces_per_sample must be a list of samples, each a list of text "
                        f"pieces and ImageRefs; got {type(pieces_per_sample).__name__}")
    if not pieces_per_sample:
        raise ValueError("pieces_per_sample is empty: give at least one sample (e.g. "
                         "[render_template(tokenizer, messages)])")
    samples = []
    for number, sample in enumerate(pieces_per_sample):
        if isinstance(sample, (str, ImageRef)) or not isinstance(sample, Sequence):
            raise TypeError(f"sample {number} is {type(sample).__name__}: each sample must be "
                            "a list of pieces (wrap a single sample's pieces in a list)")
        for position, piece in enumerate(sample):
            if not isinstance(piece, (str, ImageRef)):
                raise TypeError(f"sample {number}, piece {position} is "
                                f"{type(piece).__name__}: pieces are str or ImageRef (use "
                                "render_template to make them)")
        samples.append(list(sample))
    return samples


def _tokenize_pieces(tokenizer: Any, texts: list[str], vocab_size: int) -> list[list[int]]:
    """Token ids of each text piece (no special tokens added), checked against the vocabulary."""
    if not texts:
        return []
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    for text, piece_ids in zip(texts, ids, strict=True):
        if piece_ids and max(piece_ids) >= vocab_size:
            raise ValueError(f"token id {max(piece_ids)} of {text[:40]!r} is outside the "
                             f"embedding's {vocab_size} rows: use the tokenizer that belongs "
                             "to this language model")
    return [list(piece_ids) for piece_ids in ids]


def _encode_all(refs: list[ImageRef], encode_images: Callable | None, d_model: int,
                weight: torch.Tensor) -> list[torch.Tensor]:
    """Every image of the batch through encode_images in one call, checked and cast."""
    if not refs:
        return []
    if encode_images is None:
        raise ValueError(f"the batch holds {len(refs)} images but encode_images is None: pass "
                         "an image encoder's encode (e.g. ImageEncoder.encode)")
    embeds = encode_images([ref.load() for ref in refs])
    if not isinstance(embeds, (list, tuple)) or len(embeds) != len(refs):
        shown = len(embeds) if isinstance(embeds, (list, tuple)) else type(embeds).__name__
        raise ValueError(f"encode_images returned {shown} results for {len(refs)} images: it "
                         "must return one [n_tokens, d_model] tensor per image")
    checked = []
    for ref, tokens in zip(refs, embeds, strict=True):
        if not isinstance(tokens, torch.Tensor) or tokens.dim() != 2 \
                or tokens.shape[0] < 1 or tokens.shape[1] != d_model:
            shape = tuple(tokens.shape) if isinstance(tokens, torch.Tensor) else type(tokens)
            raise ValueError(f"encode_images gave {shape} for image {ref.index} ({ref.label}): "
                             f"expected [n_tokens >= 1, {d_model}] (d_model of embed_tokens)")
        checked.append(tokens.to(device=weight.device, dtype=weight.dtype))
    return checked


def _pad_id(tokenizer: Any) -> int:
    """The id whose embedding fills padding: pad_token_id, else eos_token_id, else 0."""
    for value in (getattr(tokenizer, "pad_token_id", None),
                  getattr(tokenizer, "eos_token_id", None)):
        if isinstance(value, int):
            return value
    return 0


def _embed_sample(sample: list[Piece], text_iter: Any, image_iter: Any,
                  embed_tokens: nn.Embedding, number: int) -> tuple[torch.Tensor, ...]:
    """One sample's (embeddings [L, d], image mask [L], token ids [L]) in piece order."""
    device = embed_tokens.weight.device
    embeds, masks, ids = [], [], []
    for piece in sample:
        if isinstance(piece, str):
            piece_ids = torch.tensor(next(text_iter), dtype=torch.long, device=device)
            embeds.append(embed_tokens(piece_ids))
            masks.append(torch.zeros(len(piece_ids), dtype=torch.bool, device=device))
            ids.append(piece_ids)
        else:
            tokens = next(image_iter)
            embeds.append(tokens)
            masks.append(torch.ones(tokens.shape[0], dtype=torch.bool, device=device))
            ids.append(torch.full((tokens.shape[0],), IMAGE_TOKEN_ID, dtype=torch.long,
                                  device=device))
    length = sum(int(mask.shape[0]) for mask in masks)
    if length == 0:
        raise ValueError(f"sample {number} has no tokens (its text pieces are empty and it "
                         "has no images): give each sample some text or an image")
    return torch.cat(embeds), torch.cat(masks), torch.cat(ids)


def _pad_rows(rows: list[tuple[torch.Tensor, ...]], embed_tokens: nn.Embedding, pad_id: int,
              padding_side: str) -> InterleavedBatch:
    """Pad the samples to one length and derive attention mask and position ids."""
    device = embed_tokens.weight.device
    lengths = [int(mask.shape[0]) for _, mask, _ in rows]
    total = max(lengths)
    pad_vector = embed_tokens(torch.tensor([pad_id], dtype=torch.long, device=device))
    embeds, masks, ids, attention = [], [], [], []
    for (row_embeds, row_mask, row_ids), length in zip(rows, lengths, strict=True):
        missing = total - length
        real = torch.ones(length, dtype=torch.long, device=device)
        pads = (pad_vector.expand(missing, -1), torch.zeros(missing, dtype=torch.bool,
                                                            device=device),
                torch.full((missing,), pad_id, dtype=torch.long, device=device),
                torch.zeros(missing, dtype=torch.long, device=device))
        parts = (row_embeds, row_mask, row_ids, real)
        joined = [torch.cat((pad, part) if padding_side == "left" else (part, pad))
                  for pad, part in zip(pads, parts, strict=True)]
        for store, value in zip((embeds, masks, ids, attention), joined, strict=True):
            store.append(value)
    attention_mask = torch.stack(attention)
    return InterleavedBatch(
        inputs_embeds=torch.stack(embeds), image_mask=torch.stack(masks),
        attention_mask=attention_mask, position_ids=position_ids_for(attention_mask),
        lengths=lengths, text_token_ids=torch.stack(ids), pad_token_id=pad_id,
        padding_side=padding_side)


def position_ids_for(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions counting only real tokens: `cumsum(-1) - 1`, padding set to 1 (HF's rule)."""
    positions = attention_mask.long().cumsum(-1) - 1
    return positions.masked_fill(attention_mask == 0, 1)


# --- 3. Beams and decode steps ----------------------------------------------------------


def expand_for_beams(batch: InterleavedBatch, num_beams: int) -> InterleavedBatch:
    """Each row repeated num_beams times in place (row 0's beams first), as HF generate does.

    Hugging Face `generate` expands its inputs with `repeat_interleave(num_beams, dim=0)`;
    the image mask given to the model must follow the same order.
    """
    if isinstance(num_beams, bool) or not isinstance(num_beams, int) or num_beams < 1:
        raise ValueError(f"num_beams is {num_beams!r}: it must be a whole number of at least 1")
    if num_beams == 1:
        return batch

    def repeat(tensor: torch.Tensor) -> torch.Tensor:
        return tensor.repeat_interleave(num_beams, dim=0)

    return InterleavedBatch(
        inputs_embeds=repeat(batch.inputs_embeds), image_mask=repeat(batch.image_mask),
        attention_mask=repeat(batch.attention_mask), position_ids=repeat(batch.position_ids),
        lengths=[length for length in batch.lengths for _ in range(num_beams)],
        text_token_ids=repeat(batch.text_token_ids), pad_token_id=batch.pad_token_id,
        padding_side=batch.padding_side)


def decode_mask(batch_size: int, new_tokens: int = 1,
                device: torch.device | str | None = None) -> torch.Tensor:
    """The image mask of a decode step: all false [batch_size, new_tokens].

    Every generated token is text; the mask must match the step's query positions (the new
    tokens), never the cached length.
    """
    for name, value in (("batch_size", batch_size), ("new_tokens", new_tokens)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} is {value!r}: it must be a whole number of at least 1")
    return torch.zeros(batch_size, new_tokens, dtype=torch.bool, device=device)
