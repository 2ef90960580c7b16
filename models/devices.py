"""Device and dtype names -> what torch needs: the one place "auto" is decided.

torch is imported inside the functions, so importing this module stays cheap.
"""

from __future__ import annotations

from typing import Any

from composer.types import InputError

DTYPES = ("auto", "float32", "bfloat16", "float16")
# What "auto" means on a GPU, per kind of model (float32 is always the CPU's choice).
GPU_AUTO = ("half", "float16", "checkpoint")


def resolve_device(device: str | None) -> str:
    """"auto" (or empty) -> "cuda" when torch sees a GPU, else "cpu"; other names as given."""
    if (device or "auto") != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_dtype(dtype: str | None, device: str, *, gpu_auto: str = "half") -> Any:
    """The torch dtype for a dtype name; InputError naming the value and the choices.

    "auto" is float32 off the GPU (half precision is slow or unsupported on the CPU). On a
    GPU it is, by `gpu_auto`: "half" bfloat16 where supported, else float16 (language
    models); "float16" (what diffusion checkpoints ship in); "checkpoint" the string "auto",
    which transformers reads as the checkpoint's own dtype (CLIP / SigLIP towers).
    """
    import torch

    name = dtype or "auto"
    if name not in DTYPES:
        raise InputError(f"dtype {dtype!r} is not one of {list(DTYPES)}: set COMPOSER_DTYPE "
                         "(or the dtype option) to one of those")
    if gpu_auto not in GPU_AUTO:
        raise ValueError(f"gpu_auto {gpu_auto!r} is not one of {GPU_AUTO}")
    if name != "auto":
        return getattr(torch, name)
    if not str(device).startswith("cuda"):
        return torch.float32
    if gpu_auto == "checkpoint":
        return "auto"
    if gpu_auto == "half" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16
