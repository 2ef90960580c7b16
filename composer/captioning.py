"""Captions for library images that have none, written by a captioning model.

An image without a caption cannot be retrieved (retrieval matches captions), so a job walks
the library and asks a Captioner (models/captioner.py) for a detailed caption of each
uncaptioned image (REFERENCE section 6, ShareGPT4V). Every caption is saved the moment it is
made, with `caption_source="model:<captioner name>"`, so the job is idempotent (a second run
finds nothing to do) and resumable (a run stopped or killed halfway continues where it
stopped). Captions written by people (user, sidecar, seed) are never replaced.

`caption_library` is the job (the CLI runs it in the foreground); `CaptionWorker` runs it in
a background thread for the web app and reports its progress.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from composer.types import LibraryImage, NotFoundError
from models.captioner import Captioner, clean_caption
from storage.images import ImageStore
from storage.rows import MAX_CAPTION_SOURCE_CHARS

MODEL_SOURCE_PREFIX = "model:"
HASH_CHARS = 10  # hex digits of the name's hash ending a shortened caption source
NO_CAPTIONER_MESSAGE = (
    "No captioning model is configured, so captions come from you: give them with "
    "`python -m composer library add --caption TEXT`, edit them in the Library view, or put "
    "sidecar files next to the images (photo.jpg.txt, or captions.json / captions.csv in the "
    "folder). To caption images automatically, set COMPOSER_CAPTIONER (or pass --model) to an "
    "image-to-text model id or local folder, e.g. Salesforce/blip-image-captioning-large or "
    "HuggingFaceTB/SmolVLM-256M-Instruct."
)
Progress = Callable[[int, int, str], None]


@dataclass
class CaptionReport:
    """What one captioning run did: captions written (`done`), images left alone because
    they already had a caption (`skipped`), failures as (image id, message), images still to
    caption when the run was stopped (`remaining`), and whether it was stopped."""

    done: int = 0
    skipped: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    remaining: int = 0
    stopped: bool = False


def caption_source(captioner: Captioner) -> str:
    """The caption_source stored with this captioner's captions: "model:<name>".

    The store keeps at most MAX_CAPTION_SOURCE_CHARS; a longer one (a model in a deep local
    folder) keeps its start and ends with a hash of the whole name, so it stays the same for
    the same captioner and differs between captioners.
    """
    source = MODEL_SOURCE_PREFIX + captioner.name
    if len(source) <= MAX_CAPTION_SOURCE_CHARS:
        return source
    digest = hashlib.sha256(captioner.name.encode("utf-8")).hexdigest()[:HASH_CHARS]
    return source[:MAX_CAPTION_SOURCE_CHARS - HASH_CHARS - 1] + "~" + digest


def needs_caption(image: LibraryImage, source: str, recaption_model_captions: bool) -> bool:
    """Whether the job should caption `image`: its caption is empty, or (when asked) it was
    written by another captioning model. Captions by people are never replaced."""
    if not image.caption.strip():
        return True
    return (recaption_model_captions and image.caption_source.startswith(MODEL_SOURCE_PREFIX)
            and image.caption_source != source)


def caption_library(store: ImageStore, captioner: Captioner, *, retriever: Any = None,
                    progress: Progress | None = None, stop: threading.Event | None = None,
                    recaption_model_captions: bool = False,
                    report: CaptionReport | None = None) -> CaptionReport:
    """Caption every image that needs it (see `needs_caption`), saving each caption at once.

    A failing image (unreadable file, model error, empty output) is reported and the job
    goes on. `progress(handled, total, message)` is called before the first image and after
    each one; `stop` is checked between images. When captions were written and a retriever
    is given, `retriever.index()` embeds them so they become searchable. `report`, when
    given, is filled in as the job runs (a progress callback can read it) and returned.
    """
    source = caption_source(captioner)
    images = store.list()
    todo = [image for image in images if needs_caption(image, source, recaption_model_captions)]
    report = report if report is not None else CaptionReport()
    report.skipped += len(images) - len(todo)
    _tell(progress, 0, len(todo), f"{len(todo)} of {len(images)} images to caption")
    for position, image in enumerate(todo):
        if stop is not None and stop.is_set():
            report.stopped = True
            report.remaining = len(todo) - position
            break
        message = _caption_one(store, captioner, image.id, source, recaption_model_captions,
                               report)
        _tell(progress, position + 1, len(todo), message)
    if retriever is not None and report.done:
        retriever.index()
    return report


def _tell(progress: Progress | None, handled: int, total: int, message: str) -> None:
    if progress is not None:
        progress(handled, total, message)


def _caption_one(store: ImageStore, captioner: Captioner, image_id: str, source: str,
                 recaption_model_captions: bool, report: CaptionReport) -> str:
    """Caption one image and save it, counting the outcome in `report`; returns a progress
    message. The record is read again just before saving, so a caption someone typed while
    the model was busy is kept."""
    short = image_id[:12]
    try:
        text = clean_caption(captioner.caption(store.path(image_id)))
        if not text:
            raise ValueError("the model wrote an empty caption")
        if not needs_caption(store.get(image_id), source, recaption_model_captions):
            report.skipped += 1
            return f"kept {short}: it was captioned meanwhile"
        store.update(image_id, caption=text, caption_source=source)
    except NotFoundError:
        report.skipped += 1
        return f"skipped {short}: it was deleted meanwhile"
    except Exception as error:  # noqa: BLE001 (one bad image must not end the job)
        message = f"{type(error).__name__}: {error}"
        report.failed.append((image_id, message))
        return f"failed {short}: {message}"
    report.done += 1
    return f"captioned {short}: {text[:60]}"


@dataclass
class CaptionStatus:
    """A snapshot of a CaptionWorker: whether a job runs, images handled of the total,
    failures, a line for people, when the last job ended (ISO UTC, None before), the failures
    of the current or last job as (image id, message), and its report once it ended."""

    running: bool = False
    done: int = 0
    total: int = 0
    failed: int = 0
    message: str = ""
    finished_at: str | None = None
    errors: list[tuple[str, str]] = field(default_factory=list)
    report: CaptionReport | None = None


CaptionerSource = Captioner | Callable[[], Captioner | None] | None


class CaptionWorker:
    """Runs `caption_library` in a background daemon thread, one job at a time.

    `captioner` is a Captioner, a function returning one (called once, in the background
    thread, so loading a model does not block the caller), or None (no model configured:
    `start` refuses and the status says where captions come from). Thread-safe.
    """

    def __init__(self, store: ImageStore, captioner: CaptionerSource, *,
                 retriever: Any = None) -> None:
        """Caption images of `store` with `captioner`; `retriever.index()` runs after a job."""
        self.store = store
        self.retriever = retriever
        self._source = captioner
        self._captioner: Captioner | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        message = "idle" if captioner is not None else NO_CAPTIONER_MESSAGE
        self._status = CaptionStatus(message=message)

    @property
    def configured(self) -> bool:
        """Whether a captioning model is configured at all."""
        return self._source is not None

    def start(self, *, recaption_model_captions: bool = False) -> bool:
        """Start a job in the background; False when one is running or no model is set."""
        with self._lock:
            if self._source is None or (self._thread is not None and self._thread.is_alive()):
                return False
            self._stop.clear()
            self._status = CaptionStatus(running=True, message="starting",
                                         finished_at=self._status.finished_at)
            self._thread = threading.Thread(target=self._run, args=(recaption_model_captions,),
                                            name="caption-worker", daemon=True)
            self._thread.start()
            return True

    def stop(self) -> None:
        """Ask the running job to stop after the current image (captions so far are kept)."""
        self._stop.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the running job to end; True when no job is running any more."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        return thread is None or not thread.is_alive()

    def status(self) -> CaptionStatus:
        """A copy of the current status (safe to read from any thread)."""
        with self._lock:
            current = self._status
            return CaptionStatus(running=current.running, done=current.done,
                                 total=current.total, failed=current.failed,
                                 message=current.message, finished_at=current.finished_at,
                                 errors=list(current.errors), report=current.report)

    def _update(self, **changes: Any) -> None:
        with self._lock:
            for name, value in changes.items():
                setattr(self._status, name, value)

    def _run(self, recaption_model_captions: bool) -> None:
        """The thread's body: load the captioner if needed, run the job, record the end."""
        report = CaptionReport()

        def progress(handled: int, total: int, message: str) -> None:
            self._update(done=handled, total=total, message=message,
                         failed=len(report.failed), errors=list(report.failed))

        try:
            captioner = self._load()
            caption_library(self.store, captioner, retriever=self.retriever, progress=progress,
                            stop=self._stop, recaption_model_captions=recaption_model_captions,
                            report=report)
        except Exception as error:  # noqa: BLE001 (reported in the status; the app goes on)
            self._update(running=False, message=f"captioning failed: {type(error).__name__}: "
                         f"{error}", finished_at=_now())
            return
        self._update(running=False, failed=len(report.failed), errors=list(report.failed),
                     report=report, message=summary(report), finished_at=_now())

    def _load(self) -> Captioner:
        """The captioner, built on first use when a function was given."""
        if self._captioner is None:
            source = self._source
            if callable(getattr(source, "caption", None)):
                self._captioner = source  # type: ignore[assignment]
            else:
                self._update(message="loading the captioning model")
                self._captioner = source()  # type: ignore[misc]
            if self._captioner is None:
                raise RuntimeError(NO_CAPTIONER_MESSAGE)
        return self._captioner


def summary(report: CaptionReport) -> str:
    """One line for people: what a captioning run did."""
    line = (f"Captioned {report.done} images, failed {len(report.failed)}, kept "
            f"{report.skipped} existing captions")
    if report.stopped:
        line += f"; stopped with {report.remaining} left: run it again to continue"
    return line + "."


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
