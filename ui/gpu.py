"""`spaces_gpu`: a UI handler that runs model work asks for a GPU on a Hugging Face Space.

Only event handlers of the browser UI are decorated (ZeroGPU lends a GPU per call of a
decorated function), so the decorator lives with them rather than with the models.
"""

from __future__ import annotations

from typing import Any, Callable, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


def spaces_gpu(fn: F) -> F:
    """Decorate a handler with `spaces.GPU` (ZeroGPU on Hugging Face Spaces) when available.

    Without the `spaces` package the function is returned unchanged, so the app runs the same
    anywhere else.
    """
    try:
        import spaces  # type: ignore[import-not-found]
    except ImportError:
        return fn
    return spaces.GPU(fn)
