"""Files written atomically: under a temporary name beside the target, moved into place when complete.

A reader (or a rerun after ``kill -9``) sees either the old file or the whole new one, never a
half-written one. The temporary name is ``<stem>.tmp-<pid><suffix>`` (the suffix kept so tools that
pick a format by extension, such as matplotlib, still work). A temporary file is removed on every
exit path Python sees (error, Ctrl-C, SIGTERM through :func:`exit_on_sigterm`); one left by a
killed process is removed by the next write of the same target, once its process is gone.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any


class OutputPathError(ValueError):
    """An output path that cannot be written (a folder, a missing parent, one of the inputs)."""


def tmp_path(path: str | os.PathLike) -> Path:
    p = Path(path)
    return p.with_name(f"{p.stem}.tmp-{os.getpid()}{p.suffix}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale(path: str | os.PathLike) -> list[Path]:
    """Remove temporary files of `path` left by processes that no longer run; returns them."""
    p = Path(path)
    folder = p.parent if str(p.parent) else Path(".")
    pattern = re.compile(re.escape(p.stem) + r"\.tmp-(\d+)" + re.escape(p.suffix) + "$")
    removed = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for name in names:
        m = pattern.fullmatch(name)
        if m and int(m.group(1)) != os.getpid() and not _alive(int(m.group(1))):
            with contextlib.suppress(OSError):
                os.remove(folder / name)
                removed.append(folder / name)
    return removed


def check_output_path(
    path: str | os.PathLike, *, inputs: tuple[str | os.PathLike, ...] = (), what: str = "output"
) -> None:
    """Refuse, before any work, an output that is a folder, lacks its parent folder, or is an input."""
    p = Path(path)
    if p.is_dir():
        raise OutputPathError(f"{what} {p} is a folder; give a file name")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise OutputPathError(f"{what} {p}: the folder {parent} does not exist")
    for i in inputs:
        if i in (None, "-"):
            continue
        same = os.path.abspath(i) == os.path.abspath(p)
        with contextlib.suppress(OSError):
            same = same or os.path.samefile(i, p)
        if same:
            raise OutputPathError(f"{what} {p} is also an input; writing it would destroy the input")


@contextlib.contextmanager
def replacing(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces `path` (fsynced), on error it is removed."""
    target = Path(path)
    clean_stale(target)
    tmp = tmp_path(target)
    try:
        yield tmp
        with contextlib.suppress(OSError), open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


@contextlib.contextmanager
def open_replacing(path: str | os.PathLike, mode: str = "w", **kwargs: Any) -> Iterator[IO]:
    """`open()` of a temporary file that replaces `path` when the block ends without an error."""
    if "b" not in mode:
        kwargs.setdefault("encoding", "utf-8")
    with replacing(path) as tmp, open(tmp, mode, **kwargs) as fh:
        yield fh


def write_text(path: str | os.PathLike, text: str) -> None:
    with open_replacing(path) as fh:
        fh.write(text)


def write_json(path: str | os.PathLike, obj: Any, *, indent: int = 1) -> None:
    write_text(path, json.dumps(obj, indent=indent, ensure_ascii=False) + "\n")


def exit_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit(143) so `finally` blocks (temporary-file cleanup) run."""

    def _handler(signum, frame):
        raise SystemExit(128 + signum)

    with contextlib.suppress(ValueError):  # not the main thread
        signal.signal(signal.SIGTERM, _handler)
