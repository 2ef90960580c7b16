"""Advance a generator the way Gradio does: each step in a different worker thread.

Gradio runs each `next()` of a streaming handler through anyio's worker threads, so one
generator's steps land on several threads. Per-thread state entered inside the generator
(torch's grad mode, thread-locals) must not be held across a yield.
"""

from __future__ import annotations

import threading
from typing import Any, Iterator

_DONE = object()


def next_in_new_thread(iterator: Iterator[Any]) -> Any:
    """`next(iterator)` run in a fresh thread; _DONE at the end, the thread's error re-raised."""
    result: dict[str, Any] = {}

    def step() -> None:
        try:
            result["value"] = next(iterator, _DONE)
        except BaseException as error:  # re-raised in the caller's thread
            result["error"] = error

    thread = threading.Thread(target=step)
    thread.start()
    thread.join(timeout=120)
    assert not thread.is_alive(), "a step of the stream did not finish in 120 s"
    if "error" in result:
        raise result["error"]
    return result["value"]


def drain_across_threads(iterable: Any, limit: int = 10_000) -> list[Any]:
    """Every item of `iterable`, each step taken in a new thread (at most `limit` steps)."""
    iterator = iter(iterable)
    items = []
    for _ in range(limit):
        value = next_in_new_thread(iterator)
        if value is _DONE:
            return items
        items.append(value)
    raise AssertionError(f"the stream gave more than {limit} items")
