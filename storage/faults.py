"""Storage faults as one clear line: a read-only data directory, a full disk, a database
server that cannot be reached, an --out that cannot be written.

SQLite, PostgreSQL and the file system report these in their own words, often as a
traceback. The helpers here turn them into a StorageError whose message names the path (or
the database URL, without its password) and says what to do next; `database_faults` and
`file_faults` wrap the few places that touch the disk or the database (storage/db.py,
storage/image_files.py, composer/export.py). Errors they do not recognise pass through unchanged.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import OperationalError as SQLAlchemyOperationalError

from composer.types import StorageError

WRITABLE_HOME = "give a writable --home or COMPOSER_HOME"
ANOTHER_OUT = "choose another --out"
_DISK_FULL_ERRNOS = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
_DISK_FULL_TEXT = ("database or disk is full", "no space left", "could not extend file",
                   "disk full")
_CONNECT_TEXT = ("connection", "could not connect", "could not translate host name",
                 "password authentication failed", "timeout expired", "does not exist")


def os_reason(error: OSError, path: str | Path | None = None) -> str:
    """Why an OS call failed, in a few plain words (from its errno)."""
    code = error.errno
    if code in _DISK_FULL_ERRNOS:
        return "the disk is full"
    if code == errno.EROFS:
        return "the file system is read-only"
    if code in (errno.EACCES, errno.EPERM):
        return "permission denied"
    if code == errno.EISDIR:
        return "it is a folder"
    if code == errno.ENOTDIR:
        return "a part of the path is a file, not a folder"
    if code == errno.ENOENT and path is not None:
        parent = Path(path).parent
        return "its folder does not accept new files" if parent.is_dir() \
            else f"the folder {parent} does not exist"
    return (error.strerror or str(error)).lower()


def os_error_text(error: OSError) -> str:
    """One line for an OSError no layer translated: the path, why, and what to check."""
    if error.filename is None:
        return f"{os_reason(error)}: check the paths given and the free disk space"
    return f"{error.filename}: {os_reason(error)}: check the path, its folder's permissions " \
        "and the free disk space"


def file_error(path: str | Path, error: OSError, todo: str = WRITABLE_HOME) -> StorageError:
    """"cannot write PATH: why: what to do" (a full disk adds "free some disk space or")."""
    if error.errno in _DISK_FULL_ERRNOS:
        todo = f"free some disk space or {todo}"
    return StorageError(f"cannot write {path}: {os_reason(error, path)}: {todo}")


def directory_error(path: str | Path, error: OSError) -> StorageError:
    """The data directory (or its database's folder) cannot be created."""
    return StorageError(f"cannot create the data directory {path}: "
                        f"{os_reason(error, path)}: {WRITABLE_HOME}")


def read_only_error(name: str | Path, what: str = "database") -> StorageError:
    """A write was attempted on a database (or data directory) this process cannot write."""
    where = "its file or folder cannot be written" if what == "database" else "it cannot be " \
        "written"
    return StorageError(f"the {what} {name} is read-only ({where}) and this needs to write: "
                        f"make it writable or {WRITABLE_HOME}")


@contextmanager
def file_faults(path: str | Path, todo: str = WRITABLE_HOME) -> Iterator[None]:
    """Inside: an OSError becomes file_error(path, ...), naming `path` and what to do."""
    try:
        yield
    except OSError as error:
        raise file_error(path, error, todo) from error


def require_writable_dir(path: Path) -> None:
    """StorageError when the folder `path` exists but this process cannot write into it."""
    if path.is_dir() and not os.access(path, os.W_OK):
        raise read_only_error(path, "data directory")


def database_name(url: URL) -> str:
    """The SQLite file's path, else the URL with its password hidden."""
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        return str(Path(url.database or "").expanduser())
    return url.render_as_string(hide_password=True)


def database_error(error: DBAPIError, url: URL) -> StorageError | None:
    """A StorageError for a read-only, full, missing or unreachable database; None for any
    other error (a constraint, a bug), which the caller re-raises as it was."""
    text = str(error.orig if error.orig is not None else error)
    first_line = text.strip().splitlines()[0].strip() if text.strip() else type(error).__name__
    lowered = text.lower()
    name = database_name(url)
    if "readonly database" in lowered:
        return read_only_error(name)
    if any(part in lowered for part in _DISK_FULL_TEXT):
        return StorageError(f"the database {name} could not be written: the disk is full: "
                            "free some disk space and try again (what was saved before is "
                            "kept)")
    if url.get_backend_name() == "sqlite":
        if "unable to open database file" in lowered:
            return StorageError(f"cannot open the database {name}: its folder is missing, "
                                f"not readable or not writable: {WRITABLE_HOME}")
        if "disk i/o error" in lowered:
            return StorageError(f"the database {name} could not be read or written (disk I/O "
                                "error): check the disk and its free space, then try again")
        if "file is not a database" in lowered or "malformed" in lowered:
            return StorageError(f"{name} is not a usable SQLite database ({first_line}): "
                                f"restore it from a backup or {WRITABLE_HOME}")
        return None
    if isinstance(error, SQLAlchemyOperationalError) and any(
            part in lowered for part in _CONNECT_TEXT):
        return StorageError(f"cannot connect to the database {name}: {first_line}: check that "
                            "the server is running and that DATABASE_URL or --database-url "
                            "is right")
    return None


@contextmanager
def database_faults(url: URL) -> Iterator[None]:
    """Inside: database errors that database_error recognises become its StorageError."""
    try:
        yield
    except DBAPIError as error:
        translated = database_error(error, url)
        if translated is None:
            raise
        raise translated from error
