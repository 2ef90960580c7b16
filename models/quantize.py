"""Weight-only int8 / int4 linear layers: faster CPU decoding of small models.

Why weight-only: decoding one token is a matrix-vector product per layer, bound by how many
bytes of weights stream through memory. Storing weights as int8 or int4 cuts those bytes 4x
or 8x against float32, while activations stay in floating point, so quality stays close to
the float model. Measured on the embedded SmolLM2-135M (teacher-forced top-1 agreement with
float32 / mean KL, 5 prompts x 96 tokens; decode tokens/s on a 2-core CPU):

    int4 (group 32) + int8 head   0.979 / 0.0011    ~47 tok/s  (its GGUF is Q4_1, group 32:
                                                                this re-finds the same grid)
    int8 per output row           0.946 / 0.0042    ~37 tok/s
    float32                       1     / 0         ~29 tok/s
    torch.ao dynamic int8         0.467 / 1.53      (activations quantized too: rejected)

The kernels are PyTorch's `_weight_int8pack_mm` and `_weight_int4pack_mm_for_cpu` (fast with
bfloat16 activations; each layer casts its input to bf16 and its output back).
"""

from __future__ import annotations

import torch
from torch import nn

QUANTIZE_MODES = ("none", "int8", "int4")
INT4_GROUP = 32
# Above this many rows (tokens) per call, Int8Linear dequantizes and runs a float matmul,
# which is faster for a prompt's prefill.
PACKED_MAX_ROWS = 16


def kernels_available(mode: str) -> bool:
    """Whether this torch build has the matmul kernel a quantize mode needs."""
    if mode == "int8":
        return hasattr(torch, "_weight_int8pack_mm")
    if mode == "int4":
        return hasattr(torch, "_weight_int4pack_mm_for_cpu") and kernels_available("int8")
    return True


class Int8Linear(nn.Module):
    """A linear layer holding int8 weights with one scale per output feature (symmetric)."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        weight = linear.weight.detach().to(torch.float32)
        self.out_features, self.in_features = weight.shape
        scales = (weight.abs().amax(dim=1) / 127.0).clamp(min=1e-10)
        quantized = torch.round(weight / scales[:, None]).clamp(-127, 127).to(torch.int8)
        self.register_buffer("weight_int8", quantized)
        self.register_buffer("scales", scales.to(torch.bfloat16))
        self.register_buffer("scales_float", scales)
        self.bias = _copy_bias(linear)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features)
        if rows.shape[0] <= PACKED_MAX_ROWS:
            out = torch._weight_int8pack_mm(rows.to(torch.bfloat16), self.weight_int8,
                                            self.scales).to(x.dtype)
        else:
            weight = self.weight_int8.to(x.dtype) * self.scales_float.to(x.dtype)[:, None]
            out = nn.functional.linear(rows, weight)
        return _finish(out, self.bias, x.shape, self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8"


class Int4Linear(nn.Module):
    """A linear layer holding int4 weights: groups of 32 inputs share a scale and an offset.

    Asymmetric (min..max of each group over 16 levels), as GGUF's Q4_1 stores weights.
    """

    def __init__(self, linear: nn.Linear, group: int = INT4_GROUP) -> None:
        super().__init__()
        weight = linear.weight.detach().to(torch.float32)
        self.out_features, self.in_features = weight.shape
        if self.in_features % group:
            raise ValueError(f"in_features {self.in_features} is not a multiple of the int4 "
                             f"group size {group}")
        groups = weight.reshape(self.out_features, -1, group)
        low = groups.amin(dim=-1)
        scale = ((groups.amax(dim=-1) - low) / 15.0).clamp(min=1e-10)
        levels = torch.round((groups - low[..., None]) / scale[..., None]).clamp(0, 15)
        levels = levels.to(torch.int32).reshape(self.out_features, self.in_features)
        # The kernel computes (level - 8) * scale + zero for each weight.
        zero = low + 8.0 * scale
        scales_zeros = torch.stack([scale, zero], dim=-1).transpose(0, 1).contiguous()
        self.group = group
        self.register_buffer("packed", torch._convert_weight_to_int4pack_for_cpu(levels, 2))
        self.register_buffer("scales_zeros", scales_zeros.to(torch.bfloat16))
        self.bias = _copy_bias(linear)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features).to(torch.bfloat16)
        out = torch._weight_int4pack_mm_for_cpu(rows, self.packed, self.group, self.scales_zeros)
        return _finish(out.to(x.dtype), self.bias, x.shape, self.out_features)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"int4 group={self.group}")


def _copy_bias(linear: nn.Linear) -> nn.Parameter | None:
    if linear.bias is None:
        return None
    return nn.Parameter(linear.bias.detach().to(torch.float32, copy=True), requires_grad=False)


def _finish(out: torch.Tensor, bias: torch.Tensor | None, shape: torch.Size,
            features: int) -> torch.Tensor:
    if bias is not None:
        out = out + bias.to(out.dtype)
    return out.reshape(*shape[:-1], features)


def _int4_or_int8(linear: nn.Linear) -> nn.Module:
    """An Int4Linear, or an Int8Linear for shapes the int4 kernel does not take."""
    if linear.in_features % INT4_GROUP:
        return Int8Linear(linear)
    try:
        return Int4Linear(linear)
    except RuntimeError:  # the packing kernel rejects some output sizes
        return Int8Linear(linear)


def quantize_model(model: nn.Module, mode: str, float_dtype: torch.dtype | None = None) -> int:
    """Replace the nn.Linear layers of `model` in place; returns how many were replaced.

    "int8": every linear layer becomes an Int8Linear. "int4": every linear layer becomes an
    Int4Linear except the output head (and layers whose input size is not a multiple of 32),
    which become Int8Linear: the head's logits are the most sensitive, and GGUF files keep
    the embedding/head at 8 bits too. A tied head is untied (the embedding stays float).
    float_dtype: when given, the parameters left in floating point (embedding, norms) are
    cast to it afterwards. The model must be on the CPU.
    """
    if mode not in QUANTIZE_MODES:
        raise ValueError(f"quantize {mode!r} is not one of {QUANTIZE_MODES}")
    if mode == "none":
        return 0
    if not kernels_available(mode):
        raise RuntimeError(f"this torch build lacks the {mode} matmul kernels: upgrade torch "
                           "(2.6 or newer) or set COMPOSER_QUANTIZE=none")
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    count = 0
    with torch.no_grad():
        for module in list(model.modules()):
            for name, child in list(module.named_children()):
                if not isinstance(child, nn.Linear):
                    continue
                if child.weight.device.type != "cpu":
                    raise ValueError(f"{mode} quantization runs on the CPU only, but {name} is "
                                     f"on {child.weight.device}: set COMPOSER_QUANTIZE=none")
                use_int4 = mode == "int4" and child is not head
                setattr(module, name, _int4_or_int8(child) if use_int4 else Int8Linear(child))
                count += 1
    if float_dtype is not None:
        cast_float_parameters(model, float_dtype)
    return count


def cast_float_parameters(model: nn.Module, dtype: torch.dtype) -> None:
    """Cast the floating-point parameters outside the quantized layers to `dtype`.

    (`model.to(dtype)` would also cast the quantized layers' bfloat16 scales, which their
    kernels need as they are.)
    """
    for module in model.modules():
        if isinstance(module, (Int8Linear, Int4Linear)):
            continue
        for parameter in module.parameters(recurse=False):
            if parameter.is_floating_point() and parameter.dtype != dtype:
                parameter.data = parameter.data.to(dtype)
