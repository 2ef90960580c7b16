"""The on-disk form of an in-process vector index: a manifest plus one data folder.

A saved index is a folder: `manifest.json` (format version, kind, dim, model, count,
synced_at and the name of the data folder) beside one `data-<token>/` folder holding the
files. A save writes a new data folder, then swaps the manifest with os.replace, so a crash
leaves either the old index or the new one, never a mix. Anything that does not add up on
load raises IndexFileError; the caller rebuilds from the stored embeddings.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from composer.retrieval.contract import IndexFileError

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
IDS_FILE = "ids.json"
VECTORS_FILE = "vectors.npy"
FAISS_FILE = "index.faiss"


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())


def _fsync_dir(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def write_json(path: Path, value: Any) -> None:
    """Write `value` as JSON to `path` and fsync it."""
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(value, handle)
        handle.flush()
        os.fsync(handle.fileno())


def read_manifest(folder: Path) -> dict[str, Any]:
    """The manifest of a saved index, checked for the format version and the basic fields."""
    path = Path(folder) / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise IndexFileError(f"no saved index in {folder} ({MANIFEST} is missing): build the "
                             "index from the stored embeddings and save it") from None
    except (OSError, ValueError) as error:
        raise IndexFileError(f"{path} is unreadable ({error}): delete {folder} and rebuild "
                             "the index") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_VERSION:
        found = manifest.get("format") if isinstance(manifest, dict) else manifest
        raise IndexFileError(f"{path} has format {found!r}, this code reads {FORMAT_VERSION}: "
                             "rebuild the index")
    for field, kind in (("kind", str), ("dim", int), ("model", str), ("count", int),
                        ("data", str)):
        if not isinstance(manifest.get(field), kind):
            raise IndexFileError(f"{path} lacks a valid {field!r}: delete {folder} and rebuild")
    return manifest


def check_expected(manifest: dict[str, Any], folder: Path, kind: str | None,
                    model: str | None, dim: int | None) -> None:
    """Raise IndexFileError when the saved index is of another kind, model or dim."""
    for field, expected in (("kind", kind), ("model", model), ("dim", dim)):
        if expected is not None and manifest[field] != expected:
            raise IndexFileError(f"the index in {folder} has {field} {manifest[field]!r}, "
                                 f"expected {expected!r}: rebuild it for this {field}")


def data_folder(folder: Path, manifest: dict[str, Any]) -> Path:
    """The manifest's data folder, with every listed file present at its recorded size."""
    data = folder / manifest["data"]
    if Path(manifest["data"]).name != manifest["data"] or not data.is_dir():
        raise IndexFileError(f"the data folder {manifest['data']!r} named in {folder / MANIFEST} "
                             "is missing: delete the folder and rebuild the index")
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        raise IndexFileError(f"{folder / MANIFEST} lists no files: rebuild the index")
    for name, size in files.items():
        path = data / name
        actual = path.stat().st_size if path.is_file() else None
        if actual != size:
            raise IndexFileError(f"{path} has {actual} bytes, the manifest says {size}: the "
                                 "save was cut short or the file changed; rebuild the index")
    return data


def save_folder(folder: Path, manifest: dict[str, Any],
                write_files: Callable[[Path], None]) -> None:
    """Write a new data folder with `write_files(path)`, then swap the manifest atomically."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    name = f"data-{uuid.uuid4().hex[:16]}"
    staging = folder / f"{name}.tmp"
    staging.mkdir()
    try:
        write_files(staging)
        files = {}
        for path in sorted(staging.iterdir()):
            _fsync_file(path)
            files[path.name] = path.stat().st_size
        _fsync_dir(staging)
        os.replace(staging, folder / name)
        manifest = {**manifest, "data": name, "files": files}
        temporary = folder / f"{MANIFEST}.tmp"
        write_json(temporary, manifest)
        os.replace(temporary, folder / MANIFEST)
        _fsync_dir(folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    for old in folder.iterdir():
        if old.is_dir() and old.name.startswith("data-") and old.name != name:
            shutil.rmtree(old, ignore_errors=True)


def read_ids(path: Path, count: int, nullable: bool) -> list[str | None]:
    """The JSON list of ids (label order); None marks a dead label where `nullable`."""
    try:
        ids = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise IndexFileError(f"{path} is unreadable ({error}): rebuild the index") from None
    if not isinstance(ids, list) or len(ids) != count:
        found = len(ids) if isinstance(ids, list) else type(ids).__name__
        raise IndexFileError(f"{path} holds {found} ids, expected {count}: rebuild the index")
    live = [i for i in ids if i is not None]
    if any(not isinstance(i, str) for i in live) or (not nullable and len(live) != count):
        raise IndexFileError(f"{path} holds ids that are not strings: rebuild the index")
    if len(set(live)) != len(live):
        raise IndexFileError(f"{path} lists an id twice: rebuild the index")
    return ids
