"""One process per run folder: an exclusive lock for ``mrgfast train`` and ``mrgfast eval``.

Two runs writing the same folder interleave ``metrics.jsonl``, predictions and checkpoints. The lock
is ``fcntl.flock`` on ``<folder>/.mrgfast.lock`` (which holds the owner's PID and command): the
kernel releases it when the process ends in any way, ``kill -9`` included, so a stale lock never
blocks the next run.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
from collections.abc import Iterator
from pathlib import Path

LOCK_NAME = ".mrgfast.lock"


class FolderLocked(RuntimeError):
    """Another live process holds the folder; the message names its PID."""


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike, what: str) -> Iterator[Path]:
    """Hold the exclusive lock of `folder` (created if needed) for the block; FolderLocked if taken."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid, _, command = (os.pread(fd, 4096, 0).decode("utf-8", "replace").strip() or "unknown").partition(" ")
            raise FolderLocked(
                f"{folder} is in use by another mrgfast {what} (PID {pid}{': ' + command if command else ''}); "
                "wait for it to finish, stop it, or use another folder"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {' '.join(sys.argv[:4])}\n".encode(), 0)
        yield path
    finally:
        os.close(fd)  # releases the lock
