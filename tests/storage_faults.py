"""A real storage fault: the database file and its write-ahead log made immutable for a while.

As root, file permissions are no fault at all (root writes a read-only file), and a read-only
bind mount is not available everywhere; the immutable attribute (``chattr +i``) is, on ext4,
xfs and btrfs, and root cannot write through it either. SQLite then fails every commit with
``disk I/O error`` (SQLITE_IOERR_WRITE), as it did for the operator whose disk filled, while
reads still work. The shared-memory index (``-shm``) is left alone: it is mapped into memory,
and a write to an immutable mapping kills the process with SIGBUS rather than failing a call.

Where the attribute cannot be set (another file system, no CAP_LINUX_IMMUTABLE), the test that
asked for the fault is skipped with a sentence saying why.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def _files(database: Path) -> list[Path]:
    return [path for path in (database, database.with_name(database.name + "-wal")) if path.exists()]


def _chattr(flag: str, paths: list[Path]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["chattr", flag, *map(str, paths)], capture_output=True, text=True, check=False)


def make_immutable(paths: list[Path]) -> None:
    """From now on nothing writes to ``paths`` (files, or folders: nothing is created in them), root included."""
    if shutil.which("chattr") is None:
        pytest.skip("chattr is not installed, so no file can be made to refuse writes")
    done = _chattr("+i", paths)
    if done.returncode != 0:
        _chattr("-i", paths)
        pytest.skip(f"files cannot be made immutable here ({done.stderr.strip()})")


def make_writable(paths: list[Path]) -> None:
    done = _chattr("-i", paths)
    assert done.returncode == 0, done.stderr


def refuse_writes(database: Path) -> None:
    """From now on every commit to ``database`` fails with ``disk I/O error``; ``allow_writes`` ends it."""
    make_immutable(_files(database))


def allow_writes(database: Path) -> None:
    make_writable(_files(database))


@contextmanager
def writes_refused(database: Path) -> Iterator[None]:
    """``database`` refuses writes inside the block, and takes them again after it, whatever happened."""
    refuse_writes(database)
    try:
        yield
    finally:
        allow_writes(database)


@contextmanager
def folder_refused(folder: Path) -> Iterator[None]:
    """Nothing can be created in ``folder`` inside the block (as on a full disk), and can again after it."""
    folder.mkdir(parents=True, exist_ok=True)
    make_immutable([folder])
    try:
        yield
    finally:
        make_writable([folder])
