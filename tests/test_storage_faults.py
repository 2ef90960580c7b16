"""Storage faults end in one clear line (the path, what to do) and exit 1, never a traceback:
a read-only data directory, a data directory that cannot be created, a full disk (database
and image files), an --out that cannot be written, an unreachable PostgreSQL server. Reading
commands still work on a read-only database.

A read-only home is made the way the OS refuses writes: without write permission when the
tests run as a normal user, and as root (whom permissions do not stop) with a read-only bind
mount. Where neither is possible, os.access is made to answer as the OS would for a normal
user; the tests then check the app's handling, not the kernel's refusal.
"""

from __future__ import annotations

import errno
import os
import pathlib
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support_pipeline import png_bytes

from tests.test_cli import FAKE, home, run  # noqa: F401  (the CLI tests' data dir and runner)

WRITABLE_HOME = "give a writable --home or COMPOSER_HOME"


def one_line(stderr: str) -> str:
    """The error line; fails when stderr holds more (a traceback, a second message)."""
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    assert "Traceback" not in stderr
    return lines[0]


def compose_one(capsys, words: int = 100) -> str:
    code, stdout, stderr = run(capsys, "--model", FAKE, "compose", "Lighthouses", "--words",
                               str(words), "--text-only", "--quiet")
    assert code == 0, stderr
    return stdout.strip()


def _set_read_only(path: Path, read_only: bool) -> None:
    for folder, _, files in os.walk(path):
        for name in files:
            os.chmod(os.path.join(folder, name), 0o444 if read_only else 0o644)
        os.chmod(folder, 0o555 if read_only else 0o755)


def _bind_read_only(path: Path) -> bool:
    """Mount `path` read-only over itself (root only); False when mounting is not allowed."""
    def command(*argv: str) -> bool:
        return subprocess.run(argv, capture_output=True, check=False).returncode == 0

    if not command("mount", "--bind", str(path), str(path)):
        return False
    if not command("mount", "-o", "remount,ro,bind", str(path)):
        command("umount", "-l", str(path))
        return False
    return True


@pytest.fixture
def read_only(monkeypatch):
    """make(path) turns `path` read-only; returns "permissions", "mount" or "simulated"."""
    undo = []

    def make(path: Path) -> str:
        if os.geteuid() != 0:
            _set_read_only(path, True)
            undo.append(lambda: _set_read_only(path, False))
            return "permissions"
        if _bind_read_only(path):
            undo.append(lambda: subprocess.run(["umount", "-l", str(path)], check=True))
            assert not os.access(path, os.W_OK)
            return "mount"
        real_access = os.access

        def access(target, mode, *args, **kwargs):
            inside = Path(target).absolute().is_relative_to(path)
            return False if inside and mode & os.W_OK else real_access(target, mode, *args,
                                                                       **kwargs)
        monkeypatch.setattr(os, "access", access)
        return "simulated"

    yield make
    for step in reversed(undo):
        step()


# -- a read-only data directory ------------------------------------------------------------

def test_reading_commands_work_on_a_read_only_home(home, tmp_path, capsys, read_only):
    doc_id = compose_one(capsys)
    mode = read_only(home)
    refused = "permission denied" if mode == "permissions" else "the file system is read-only"
    code, listing, stderr = run(capsys, "list")
    assert code == 0, stderr
    assert doc_id in listing and "Lighthouses" in listing
    code, markdown, stderr = run(capsys, "export", doc_id)
    assert code == 0 and markdown.startswith("# Lighthouses"), stderr
    out = tmp_path / "copy.html"
    code, _, stderr = run(capsys, "export", doc_id, "--format", "html", "--out", str(out))
    assert code == 0 and out.read_text().startswith("<!doctype html>"), stderr
    code, _, stderr = run(capsys, "library", "list")
    assert code == 0 and "Traceback" not in stderr
    if mode != "simulated":  # the OS itself refuses a file written into the read-only home
        code, _, stderr = run(capsys, "export", doc_id, "--out", str(home / "a.md"))
        assert code == 1
        assert one_line(stderr) == (f"error: cannot write {home / 'a.md'}: {refused}: "
                                    "choose another --out")


def test_writing_to_a_read_only_home_says_so_in_one_line(home, capsys, read_only):
    doc_id = compose_one(capsys)
    read_only(home)
    code, _, stderr = run(capsys, "--model", FAKE, "compose", "Harbors", "--words", "100",
                          "--text-only")
    assert code == 1
    line = one_line(stderr)
    assert f"the database {home / 'composer.db'} is read-only" in line
    assert line.endswith(f"make it writable or {WRITABLE_HOME}")
    code, listing, _ = run(capsys, "list")
    assert code == 0 and listing.count("\n") == 1 and doc_id in listing


def test_a_read_only_database_of_an_older_schema_cannot_be_upgraded(home, capsys, read_only):
    compose_one(capsys)
    with sqlite3.connect(home / "composer.db") as connection:
        connection.execute("update alembic_version set version_num = '0001_old'")
    connection.close()
    read_only(home)
    code, _, stderr = run(capsys, "list")
    assert code == 1
    line = one_line(stderr)
    assert "is read-only and has schema 0001_old" in line and "open it once with write" in line


def test_the_app_refuses_to_start_on_a_read_only_home(home, capsys, read_only, monkeypatch):
    import app

    compose_one(capsys)
    read_only(home)
    monkeypatch.setattr(sys, "argv", ["app.py", "--home", str(home), "--port", "1"])
    with pytest.raises(SystemExit) as stopped:
        app.main()
    assert stopped.value.code == 1
    line = one_line(capsys.readouterr().err)
    assert f"{home / 'composer.db'} is read-only" in line and WRITABLE_HOME in line


def test_a_data_directory_that_cannot_be_created_is_named(tmp_path, capsys, monkeypatch):
    import app

    monkeypatch.delenv("DATABASE_URL", raising=False)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    expected = (f"error: cannot create the data directory {blocker / 'home'}: a part of the "
                f"path is a file, not a folder: {WRITABLE_HOME}")
    code, _, stderr = run(capsys, "--home", str(blocker / "home"), "list")
    assert code == 1 and one_line(stderr) == expected
    monkeypatch.setattr(sys, "argv", ["app.py", "--home", str(blocker / "home")])
    with pytest.raises(SystemExit) as stopped:
        app.main()
    assert stopped.value.code == 1 and one_line(capsys.readouterr().err) == expected


# -- a full disk ----------------------------------------------------------------------------

def test_a_full_disk_while_composing_keeps_what_was_written(home, capsys, monkeypatch):
    """SQLite's own SQLITE_FULL: the database may grow by only a few pages."""
    import storage.db

    run(capsys, "list")  # create and migrate the database first
    on_connect = storage.db._sqlite_on_connect

    def small_disk(connection, wal, foreign_keys):
        on_connect(connection, wal, foreign_keys)
        pages = connection.execute("PRAGMA page_count").fetchone()[0]
        connection.execute(f"PRAGMA max_page_count={pages + 1}")

    monkeypatch.setattr(storage.db, "_sqlite_on_connect", small_disk)
    code, _, stderr = run(capsys, "--model", FAKE, "compose", "Lighthouses", "--words", "1500",
                          "--text-only", "--quiet")
    assert code == 1
    assert one_line(stderr) == (f"error: the database {home / 'composer.db'} could not be "
                                "written: the disk is full: free some disk space and try again "
                                "(what was saved before is kept)")
    monkeypatch.setattr(storage.db, "_sqlite_on_connect", on_connect)
    with sqlite3.connect(home / "composer.db") as connection:
        blocks = connection.execute("select count(*) from blocks").fetchone()[0]
    connection.close()
    assert blocks >= 1  # the paragraphs saved before the disk filled up stay


def test_a_full_disk_writing_an_image_file_stops_the_import(home, tmp_path, capsys,
                                                            monkeypatch):
    import storage.image_files

    photo = tmp_path / "photo.png"
    photo.write_bytes(png_bytes((200, 30, 30)))

    def no_space(descriptor):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(storage.image_files.os, "fsync", no_space)
    code, _, stderr = run(capsys, "library", "add", str(photo), "--caption", "a red square")
    assert code == 1
    line = one_line(stderr)
    assert line.startswith(f"error: cannot write {home / 'images'}")
    assert line.endswith(f"the disk is full: free some disk space or {WRITABLE_HOME}")
    assert not [path for path in (home / "images").rglob("*") if path.is_file()]


# -- export --out ---------------------------------------------------------------------------

@pytest.mark.parametrize("case", ["proc", "missing folder", "a folder", "disk full"])
def test_export_to_an_out_that_cannot_be_written(home, tmp_path, capsys, monkeypatch, case):
    doc_id = compose_one(capsys)
    out, reason = {
        "proc": (Path("/proc/x.md"), "its folder does not accept new files"),
        "missing folder": (tmp_path / "nope" / "x.md",
                           f"the folder {tmp_path / 'nope'} does not exist"),
        "a folder": (tmp_path, "it is a folder"),
        "disk full": (tmp_path / "x.md", "the disk is full"),
    }[case]
    if case == "proc" and not Path("/proc").is_dir():
        pytest.skip("no /proc on this system")
    todo = "free some disk space or choose another --out" if case == "disk full" \
        else "choose another --out"
    if case == "disk full":
        write_text = pathlib.Path.write_text

        def full(self, *args, **kwargs):
            if self == out:
                raise OSError(errno.ENOSPC, "No space left on device", str(self))
            return write_text(self, *args, **kwargs)
        monkeypatch.setattr(pathlib.Path, "write_text", full)
    code, _, stderr = run(capsys, "export", doc_id, "--out", str(out))
    assert code == 1
    assert one_line(stderr) == f"error: cannot write {out}: {reason}: {todo}"


# -- PostgreSQL unreachable -----------------------------------------------------------------

def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_an_unreachable_postgresql_server_is_named_without_its_password(tmp_path, capsys,
                                                                        monkeypatch):
    import app

    pytest.importorskip("psycopg2")
    port = _closed_port()
    monkeypatch.setenv("DATABASE_URL",
                       f"postgresql+psycopg2://composer:s3cret@127.0.0.1:{port}/composer")
    monkeypatch.setenv("COMPOSER_HOME", str(tmp_path / "home"))
    code, _, stderr = run(capsys, "list")
    assert code == 1
    line = one_line(stderr)
    assert line.startswith(f"error: cannot connect to the database postgresql+psycopg2://"
                           f"composer:***@127.0.0.1:{port}/composer: ")
    assert "s3cret" not in line
    assert line.endswith("check that the server is running and that DATABASE_URL or "
                         "--database-url is right")
    monkeypatch.setattr(sys, "argv", ["app.py"])
    with pytest.raises(SystemExit) as stopped:
        app.main()
    assert stopped.value.code == 1 and one_line(capsys.readouterr().err) == line


# -- what is not a storage fault stays as it was --------------------------------------------

def test_other_database_errors_are_not_translated(tmp_path):
    from sqlalchemy import text
    from sqlalchemy.exc import IntegrityError, OperationalError

    from storage.db import Database

    database = Database(f"sqlite:///{tmp_path / 'plain.db'}")
    with database.session() as session:
        session.execute(text("create table t (id integer primary key)"))
        session.execute(text("insert into t values (1)"))
    with pytest.raises(IntegrityError), database.session() as session:
        session.execute(text("insert into t values (1)"))
    with pytest.raises(OperationalError), database.session() as session:
        session.execute(text("select * from no_such_table"))
    database.dispose()
