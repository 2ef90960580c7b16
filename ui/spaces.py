"""`@spaces_gpu`: Hugging Face ZeroGPU's decorator when the `spaces` package exists, else a no-op.

On a ZeroGPU Space a GPU is attached only while a function decorated with `spaces.GPU` runs;
everywhere else the handlers run as they are.
"""

from __future__ import annotations

from typing import Callable, TypeVar

F = TypeVar("F", bound=Callable)


def spaces_gpu(function: F) -> F:
    """Wrap `function` with spaces.GPU when the `spaces` package is importable."""
    try:
        import spaces  # type: ignore[import-not-found]
    except ImportError:
        return function
    return spaces.GPU(function)
