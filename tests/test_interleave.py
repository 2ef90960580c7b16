"""Interleaved text + image prompts -> inputs_embeds, image mask, attention mask, positions.

The image encoder here is a stand-in (models/vision.py is not needed): each image becomes
width // 8 tokens of fixed random values derived from the image's size and first pixel, and
every call is recorded.
"""

from __future__ import annotations

import pytest
import torch
from PIL import Image
from torch import nn

from models.interleave import (
    IMAGE_TOKEN_ID,
    ImageRef,
    InterleavedBatch,
    build_inputs,
    decode_mask,
    expand_for_beams,
    render_template,
)
from tests.tiny_models import build_bos_tokenizer, build_tiny_llama, build_tokenizer

D_MODEL = 32  # hidden size of build_tiny_llama


class StandInEncoder:
    """encode(images) -> one [width // 8, D_MODEL] tensor per image, fixed per image content.

    Runs under inference_mode, as the real ImageEncoder does outside training.
    """

    def __init__(self) -> None:
        self.calls: list[list] = []

    def encode(self, images: list) -> list[torch.Tensor]:
        self.calls.append(list(images))
        with torch.inference_mode():
            return [self.tokens_for(image) for image in images]

    @staticmethod
    def tokens_for(image: Image.Image) -> torch.Tensor:
        seed = image.width * 1000 + image.height * 7 + sum(image.getpixel((0, 0)))
        generator = torch.Generator().manual_seed(seed)
        return torch.randn(image.width // 8, D_MODEL, generator=generator)


def picture(width: int, shade: int = 0) -> Image.Image:
    """An RGB image `width` x 8 pixels of one grey shade (width // 8 stand-in tokens)."""
    return Image.new("RGB", (width, 8), (shade, shade, shade))


def text_part(text: str) -> dict:
    return {"type": "text", "text": text}


def image_part(image) -> dict:
    return {"type": "image", "image": image}


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer()


@pytest.fixture(scope="module")
def model(tokenizer):
    return build_tiny_llama(len(tokenizer), tokenizer.eos_token_id, tokenizer.pad_token_id)


@pytest.fixture(scope="module")
def embed(model) -> nn.Embedding:
    return model.get_input_embeddings()


def template_ids(tokenizer, messages) -> list[int]:
    """The normal text-only path: apply_chat_template(..., tokenize=True)."""
    encoded = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    return list(encoded["input_ids"] if hasattr(encoded, "keys") else encoded)


def kinds(pieces) -> list:
    """Pieces with each ImageRef shown as ("image", index)."""
    return [("image", piece.index) if isinstance(piece, ImageRef) else piece
            for piece in pieces]


# --- Text-only prompts: exactly the normal chat-template path ---------------------------


def test_text_only_prompt_embeds_equal_the_chat_template_ids(tokenizer, embed):
    messages = [{"role": "system", "content": "Write about bridges."},
                {"role": "user", "content": [text_part("The river runs past "),
                                             text_part("the old stone bridge.")]}]
    pieces = render_template(tokenizer, messages)
    encoder = StandInEncoder()
    batch = build_inputs([pieces], tokenizer, embed, encoder.encode)

    ids = template_ids(tokenizer, [{"role": "system", "content": "Write about bridges."},
                                   {"role": "user",
                                    "content": "The river runs past the old stone bridge."}])
    assert pieces == [tokenizer.apply_chat_template(
        [{"role": "system", "content": "Write about bridges."},
         {"role": "user", "content": "The river runs past the old stone bridge."}],
        add_generation_prompt=True, tokenize=False)]
    assert batch.text_token_ids[0].tolist() == ids
    assert torch.equal(batch.inputs_embeds[0], embed(torch.tensor(ids)))
    assert not batch.image_mask.any()
    assert batch.attention_mask.tolist() == [[1] * len(ids)]
    assert batch.position_ids.tolist() == [list(range(len(ids)))]
    assert batch.lengths == [len(ids)]
    assert encoder.calls == []  # no image, no encoder call


def test_left_padded_text_batch_gives_the_logits_of_each_prompt_alone(tokenizer, model,
                                                                      embed):
    short = [{"role": "user", "content": "Write about bridges."}]
    long = [{"role": "system", "content": "History is written in letters, paintings and songs."},
            {"role": "user", "content": "Engineers measured the orbit of the small moon."}]
    batch = build_inputs([render_template(tokenizer, short), render_template(tokenizer, long)],
                         tokenizer, embed, None)
    with torch.no_grad():
        logits = model(**batch.model_inputs()).logits
        for row, messages in enumerate((short, long)):
            ids = template_ids(tokenizer, messages)
            alone = model(input_ids=torch.tensor([ids])).logits[0]
            assert batch.lengths[row] == len(ids)
            real = logits[row, -len(ids):]
            assert torch.allclose(real, alone, atol=1e-5, rtol=0)
    pad = batch.inputs_embeds.shape[1] - batch.lengths[0]
    assert pad > 0 and batch.attention_mask[0, :pad].sum() == 0


def test_template_that_starts_with_bos_gets_no_second_bos():
    tokenizer = build_bos_tokenizer(chat_template=True)
    embed = nn.Embedding(len(tokenizer), D_MODEL)
    messages = [{"role": "user", "content": "Write about bridges."}]
    batch = build_inputs([render_template(tokenizer, messages)], tokenizer, embed, None)
    ids = template_ids(tokenizer, messages)
    assert ids.count(tokenizer.bos_token_id) == 1
    assert batch.text_token_ids[0].tolist() == ids


def test_fallback_without_template_adds_bos_as_a_normal_encode_does():
    tokenizer = build_bos_tokenizer(chat_template=False)
    embed = nn.Embedding(len(tokenizer), D_MODEL)
    messages = [{"role": "system", "content": "Write about bridges."},
                {"role": "user", "content": "The river runs."}]
    pieces = render_template(tokenizer, messages)
    text = "system: Write about bridges.\nuser: The river runs.\nassistant: "
    assert pieces == ["<s>", text]
    batch = build_inputs([pieces], tokenizer, embed, None)
    assert batch.text_token_ids[0].tolist() == tokenizer.encode(text, add_special_tokens=True)


def test_fallback_of_a_tokenizer_without_bos_adds_nothing():
    tokenizer = build_tokenizer(chat_template=False)
    pieces = render_template(tokenizer, [{"role": "user", "content": "Hi"}],
                             add_generation_prompt=False)
    assert pieces == ["user: Hi\n"]


# --- Where images go --------------------------------------------------------------------


def test_images_at_start_middle_end_and_adjacent_keep_their_places(tokenizer):
    first, second, third, fourth = picture(8), picture(16), picture(24), picture(8, 50)
    messages = [{"role": "user", "content": [
        image_part(first), text_part("Write about"), image_part(second), image_part(third),
        text_part(" bridges."), image_part(fourth)]}]
    pieces = render_template(tokenizer, messages)
    assert kinds(pieces) == [
        "<|im_start|>user\n", ("image", 0), "Write about", ("image", 1), ("image", 2),
        " bridges.", ("image", 3), "<|im_end|>\n<|im_start|>assistant\n"]
    assert [piece.image for piece in pieces if isinstance(piece, ImageRef)] == [
        first, second, third, fourth]


def test_images_in_several_messages_are_numbered_in_order(tokenizer):
    messages = [{"role": "user", "content": [text_part("Look: "), image_part(picture(8))]},
                {"role": "assistant", "content": "A grey square."},
                {"role": "user", "content": [image_part(picture(16)), text_part("And this?"),
                                             image_part(picture(24))]}]
    pieces = render_template(tokenizer, messages)
    assert kinds(pieces) == [
        "<|im_start|>user\nLook: ", ("image", 0),
        "<|im_end|>\n<|im_start|>assistant\nA grey square.<|im_end|>\n<|im_start|>user\n",
        ("image", 1), "And this?", ("image", 2), "<|im_end|>\n<|im_start|>assistant\n"]
    assert [piece.label for piece in pieces if isinstance(piece, ImageRef)] == [
        "message 0, part 1", "message 2, part 0", "message 2, part 2"]


def test_mask_and_embeddings_follow_the_pieces(tokenizer, embed):
    images = [picture(16), picture(8), picture(24, 90), picture(8, 30)]
    pieces = [ImageRef(images[0], 0), "Write about", ImageRef(images[1], 1),
              ImageRef(images[2], 2), " bridges.", ImageRef(images[3], 3)]
    batch = build_inputs([pieces], tokenizer, embed, StandInEncoder().encode)

    write = tokenizer.encode("Write about", add_special_tokens=False)
    bridges = tokenizer.encode(" bridges.", add_special_tokens=False)
    expected_mask = [True] * 2 + [False] * len(write) + [True] * (1 + 3) \
        + [False] * len(bridges) + [True]
    assert batch.image_mask[0].tolist() == expected_mask
    assert batch.text_token_ids[0].tolist() == [IMAGE_TOKEN_ID] * 2 + write \
        + [IMAGE_TOKEN_ID] * 4 + bridges + [IMAGE_TOKEN_ID]
    image_rows = torch.cat([StandInEncoder.tokens_for(image) for image in images])
    assert torch.equal(batch.inputs_embeds[0][batch.image_mask[0]], image_rows)
    text_rows = embed(torch.tensor(write + bridges))
    assert torch.equal(batch.inputs_embeds[0][~batch.image_mask[0]], text_rows)


def test_rendered_conversation_puts_image_tokens_where_the_person_put_them(tokenizer, embed):
    messages = [{"role": "user", "content": [text_part("Compare "), image_part(picture(16)),
                                             text_part(" with "), image_part(picture(8))]}]
    batch = build_inputs([render_template(tokenizer, messages)], tokenizer, embed,
                         StandInEncoder().encode)
    head = tokenizer.encode("<|im_start|>user\nCompare ", add_special_tokens=False)
    middle = tokenizer.encode(" with ", add_special_tokens=False)
    tail = tokenizer.encode("<|im_end|>\n<|im_start|>assistant\n", add_special_tokens=False)
    assert batch.text_token_ids[0].tolist() == head + [IMAGE_TOKEN_ID] * 2 + middle \
        + [IMAGE_TOKEN_ID] + tail


# --- Batches ----------------------------------------------------------------------------


def two_samples() -> list[list]:
    return [[ImageRef(picture(24), 0), "Write about bridges."],
            ["Hi ", ImageRef(picture(8), 0), " and ", ImageRef(picture(16, 70), 1), " more"]]


def test_left_padding_puts_pads_first_with_false_mask_and_real_positions(tokenizer, embed):
    encoder = StandInEncoder()
    batch = build_inputs(two_samples(), tokenizer, embed, encoder.encode)
    alone = [build_inputs([sample], tokenizer, embed, StandInEncoder().encode)
             for sample in two_samples()]
    total = max(batch.lengths)
    assert batch.inputs_embeds.shape == (2, total, D_MODEL)
    for row, single in enumerate(alone):
        length = batch.lengths[row]
        assert length == single.lengths[0]
        pads = total - length
        assert batch.attention_mask[row].tolist() == [0] * pads + [1] * length
        assert batch.position_ids[row].tolist() == [1] * pads + list(range(length))
        assert not batch.image_mask[row, :pads].any()
        assert torch.equal(batch.image_mask[row, pads:], single.image_mask[0])
        assert torch.equal(batch.inputs_embeds[row, pads:], single.inputs_embeds[0])
        assert batch.text_token_ids[row, :pads].tolist() == [tokenizer.pad_token_id] * pads
    assert min(batch.lengths) < total  # the two samples really differ in length


def test_right_padding_puts_pads_last(tokenizer, embed):
    batch = build_inputs(two_samples(), tokenizer, embed, StandInEncoder().encode,
                         padding_side="right")
    total = batch.inputs_embeds.shape[1]
    row = batch.lengths.index(min(batch.lengths))
    length = batch.lengths[row]
    assert batch.attention_mask[row].tolist() == [1] * length + [0] * (total - length)
    assert batch.position_ids[row].tolist() == list(range(length)) + [1] * (total - length)
    assert not batch.image_mask[row, length:].any()


def test_all_images_of_a_batch_go_to_the_encoder_in_one_call(tokenizer, embed):
    encoder = StandInEncoder()
    samples = two_samples()
    build_inputs(samples, tokenizer, embed, encoder.encode)
    given = [piece.image for sample in samples for piece in sample
             if isinstance(piece, ImageRef)]
    assert len(encoder.calls) == 1
    assert encoder.calls[0] == given  # batch order: sample 0's images first


def test_image_given_as_a_path_is_opened_before_encoding(tmp_path, tokenizer, embed):
    path = tmp_path / "grey.png"
    picture(16, 40).save(path)
    encoder = StandInEncoder()
    pieces = render_template(tokenizer, [{"role": "user", "content": [image_part(str(path))]}])
    batch = build_inputs([pieces], tokenizer, embed, encoder.encode)
    assert isinstance(encoder.calls[0][0], Image.Image)
    assert int(batch.image_mask.sum()) == 2


def test_embeddings_take_the_embedding_dtype(tokenizer):
    embed = nn.Embedding(len(tokenizer), D_MODEL).to(torch.bfloat16)
    image = picture(16)
    batch = build_inputs([["Hi", ImageRef(image, 0)]], tokenizer, embed,
                         StandInEncoder().encode)
    assert batch.inputs_embeds.dtype == torch.bfloat16
    expected = StandInEncoder.tokens_for(image).to(torch.bfloat16)
    assert torch.equal(batch.inputs_embeds[0][batch.image_mask[0]], expected)


def test_inputs_keep_gradients_for_training(tokenizer):
    embed = nn.Embedding(len(tokenizer), D_MODEL)
    batch = build_inputs([["Hi", ImageRef(picture(8), 0)]], tokenizer, embed,
                         StandInEncoder().encode)
    batch.inputs_embeds.sum().backward()
    assert embed.weight.grad is not None and embed.weight.grad.abs().sum() > 0


def test_kv_cache_decode_step_continues_the_left_padded_prefill(tokenizer, model, embed):
    batch = build_inputs(two_samples(), tokenizer, embed, StandInEncoder().encode)
    next_ids = torch.tensor([[5], [9]])
    with torch.no_grad():
        prefill = model(**batch.model_inputs(), use_cache=True)
        attention = torch.cat([batch.attention_mask, torch.ones(2, 1, dtype=torch.long)], 1)
        step = model(input_ids=next_ids, cache=prefill.cache, attention_mask=attention,
                     position_ids=batch.position_ids[:, -1:] + 1)
        whole = model(inputs_embeds=torch.cat([batch.inputs_embeds, embed(next_ids)], 1),
                      attention_mask=attention,
                      position_ids=torch.cat([batch.position_ids,
                                              batch.position_ids[:, -1:] + 1], 1))
    # logits reach ~12 with these random weights: 1e-4 is float32 rounding of the cached path
    assert torch.allclose(step.logits[:, -1], whole.logits[:, -1], atol=1e-4, rtol=0)
    assert decode_mask(2, device=batch.image_mask.device).shape == next_ids.shape


# --- Beams and decode steps -------------------------------------------------------------


def test_expand_for_beams_repeats_each_row_in_place(tokenizer, embed):
    batch = build_inputs(two_samples(), tokenizer, embed, StandInEncoder().encode)
    beams = expand_for_beams(batch, 3)
    assert isinstance(beams, InterleavedBatch)
    assert beams.lengths == [batch.lengths[0]] * 3 + [batch.lengths[1]] * 3
    for name in ("inputs_embeds", "image_mask", "attention_mask", "position_ids",
                 "text_token_ids"):
        expanded, original = getattr(beams, name), getattr(batch, name)
        assert torch.equal(expanded, original.repeat_interleave(3, dim=0))
        for row in range(6):
            assert torch.equal(expanded[row], original[row // 3])
    assert expand_for_beams(batch, 1) is batch
    with pytest.raises(ValueError, match="num_beams is 0"):
        expand_for_beams(batch, 0)


def test_decode_mask_is_all_false_for_the_new_tokens():
    mask = decode_mask(4, 2)
    assert mask.dtype == torch.bool and mask.shape == (4, 2) and not mask.any()
    assert decode_mask(3).shape == (3, 1)
    with pytest.raises(ValueError, match="batch_size is 0"):
        decode_mask(0)


# --- Bad inputs -------------------------------------------------------------------------


def test_placeholder_text_written_by_a_person_stays_text(tokenizer):
    lookalike = "<|interleave-image-0-0|>"
    pieces = render_template(tokenizer, [{"role": "user", "content": [
        text_part(lookalike), image_part(picture(8))]}])
    assert kinds(pieces) == [f"<|im_start|>user\n{lookalike}", ("image", 0),
                             "<|im_end|>\n<|im_start|>assistant\n"]


def test_template_that_drops_content_is_refused():
    tokenizer = build_tokenizer()
    tokenizer.chat_template = "{% for m in messages %}{{ m['role'] }}{% endfor %}"
    with pytest.raises(ValueError, match="placeholders .* of 1 images"):
        render_template(tokenizer, [{"role": "user", "content": [image_part(picture(8))]}])


@pytest.mark.parametrize("messages, error, message", [
    ([], ValueError, "messages is empty"),
    ({"role": "user", "content": "Hi"}, TypeError, "wrap a single message in a list"),
    ([{"role": "user", "content": [{"type": "audio", "audio": b""}]}], ValueError,
     "message 0, part 0 has unknown type 'audio'"),
    ([{"role": "user", "content": ["plain string part"]}], ValueError, "unknown type 'str'"),
    ([{"role": "user", "content": [{"type": "image", "image": 42}]}], TypeError,
     "give a PIL.Image or a file path"),
    ([{"role": "user", "content": [{"type": "text", "text": None}]}], TypeError,
     "give a string"),
    ([{"content": "Hi"}], ValueError, "message 0 has role None"),
    ([{"role": "user"}], ValueError, "has no content"),
    ([{"role": "user", "content": 7}], TypeError, "content is int"),
])
def test_bad_messages_are_refused_with_the_reason(tokenizer, messages, error, message):
    with pytest.raises(error, match=message):
        render_template(tokenizer, messages)


def test_image_that_cannot_be_opened_is_named(tmp_path, tokenizer, embed):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image at all")
    encoder = StandInEncoder()
    pieces = render_template(tokenizer, [{"role": "user", "content": [image_part(broken)]}])
    with pytest.raises(ValueError, match="broken.png.*message 0, part 0.*could not be opened"):
        build_inputs([pieces], tokenizer, embed, encoder.encode)
    missing = render_template(tokenizer, [{"role": "user", "content": [
        image_part(str(tmp_path / "missing.jpg"))]}])
    with pytest.raises(FileNotFoundError, match="missing.jpg.*does not exist"):
        build_inputs([missing], tokenizer, embed, encoder.encode)
    assert encoder.calls == []  # refused before any encoding


def test_bad_batches_are_refused_with_the_reason(tokenizer, embed):
    image = ImageRef(picture(8), 0)
    cases = [
        ({"pieces_per_sample": []}, ValueError, "pieces_per_sample is empty"),
        ({"pieces_per_sample": ["Hi"]}, TypeError, "sample 0 is str"),
        ({"pieces_per_sample": [["Hi", 3]]}, TypeError, "sample 0, piece 1 is int"),
        ({"pieces_per_sample": [[""]]}, ValueError, "sample 0 has no tokens"),
        ({"pieces_per_sample": [["Hi"]], "padding_side": "middle"}, ValueError,
         "padding_side is 'middle'"),
        ({"pieces_per_sample": [[image]], "encode_images": None}, ValueError,
         "encode_images is None"),
        ({"pieces_per_sample": [[image]], "encode_images": lambda images: []}, ValueError,
         "returned 0 results for 1 images"),
        ({"pieces_per_sample": [[image]],
          "encode_images": lambda images: [torch.zeros(2, D_MODEL + 1)]}, ValueError,
         r"expected \[n_tokens >= 1, 32\]"),
    ]
    for overrides, error, message in cases:
        arguments = {"tokenizer": tokenizer, "embed_tokens": embed,
                     "encode_images": StandInEncoder().encode} | overrides
        pieces = arguments.pop("pieces_per_sample")
        with pytest.raises(error, match=message):
            build_inputs(pieces, **arguments)


def test_tokenizer_larger_than_the_embedding_is_refused(tokenizer):
    small = nn.Embedding(10, D_MODEL)
    with pytest.raises(ValueError, match="outside the embedding's 10 rows"):
        build_inputs([["Write about bridges."]], tokenizer, small, None)
