"""Streaming readers of report files for ``mrgfast label`` / ``score`` (and ``eval``).

Three formats, chosen by extension or ``--format``:

* ``csv``   — a header row and a named text column (quoted multi-line fields allowed);
* ``jsonl`` — one JSON object per line with a named text field (``.jsonl``, ``.ndjson``, ``.json``);
* ``txt``   — one report per line (any other extension).

Every row comes back with the (1-based) line number it starts on, so a bad row — invalid JSON,
invalid UTF-8, a missing or non-string field, a CSV row with the wrong number of fields, an empty
line in a text file — is reported as ``FILE:LINE: message``. Files are read line by line in binary
and decoded per line, so a progress bar can follow the bytes read and a decoding error names its
line.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import IO

FORMATS = ("csv", "jsonl", "txt")

# Tried in this order when no text column / field is named.
TEXT_FIELD_CANDIDATES = (
    "report",
    "Reports",
    "Report",
    "text",
    "generated",
    "prediction",
    "pred",
    "reference",
    "ref",
    "findings",
)
# `mrgfast score` looks for the generated text first in --pred and the reference first in --ref,
# so a file holding both columns is read the right way round.
PRED_FIELD_CANDIDATES = (
    "generated",
    "prediction",
    "pred",
    "completion",
    "hypothesis",
    "report",
    "Reports",
    "Report",
    "text",
    "findings",
)
REF_FIELD_CANDIDATES = ("reference", "ref", "ground_truth", "report", "Reports", "Report", "text", "findings")
ID_FIELD_DEFAULT = "id"

csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


@dataclass
class Row:
    line: int
    text: str
    id: str | None = None
    fields: dict[str, str] | None = None  # every column of a CSV row, with ``keep_fields=True``


@dataclass
class BadRow:
    path: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"


def text_problem(text: str) -> str | None:
    """Why `text` cannot be labelled or written out (a lone surrogate from a JSON escape), else None."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        return f"is not valid text: a lone surrogate {text[e.start]!r} at character {e.start}"
    return None


class InputError(Exception):
    """A problem with an input file as a whole (unknown column, unreadable file...)."""


def detect_format(path: str, fmt: str | None = None) -> str:
    if fmt:
        if fmt not in FORMATS:
            raise InputError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
        return fmt
    lower = path.lower()
    if lower.endswith(".gz"):
        raise InputError(f"{path}: compressed input is not supported; decompress it first")
    if lower.endswith(".csv"):
        return "csv"
    if lower.endswith((".jsonl", ".ndjson", ".json")):
        return "jsonl"
    return "txt"


class _Progress:
    """Counts bytes read for a tqdm bar (disabled on non-terminals unless forced)."""

    def __init__(self, total: int | None, desc: str, enabled: bool | None):
        self.bar = None
        if enabled is False:
            return
        try:
            from tqdm import tqdm
        except ImportError:  # pragma: no cover - tqdm is a dependency
            return
        self.bar = tqdm(
            total=total,
            desc=desc,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            disable=None if enabled is None else False,
            leave=False,
            file=sys.stderr,
        )

    def update(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _open_binary(path: str) -> tuple[IO[bytes], int | None]:
    if path == "-":
        return sys.stdin.buffer, None
    try:
        f = open(path, "rb")
    except OSError as e:
        raise InputError(f"{path}: cannot open ({e.strerror or e})") from None
    try:
        size = os.fstat(f.fileno()).st_size
    except OSError:
        size = None
    return f, size


def _decoded_lines(f: IO[bytes], progress: _Progress, bad_lines: dict) -> Iterator[tuple[int, str]]:
    """(line number, text with its line ending) for each line; undecodable lines go to ``bad_lines``."""
    for number, raw in enumerate(f, start=1):
        progress.update(len(raw))
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            text = raw.decode("utf-8", errors="replace")
            bad_lines[number] = f"invalid UTF-8 at byte {e.start} of the line"
        if number == 1 and text.startswith("\ufeff"):
            text = text[1:]
        yield number, text


def read_rows(
    path: str,
    *,
    fmt: str | None = None,
    text_field: str | None = None,
    id_field: str | None = None,
    progress: bool | None = None,
    desc: str | None = None,
    candidates: Sequence[str] = TEXT_FIELD_CANDIDATES,
    keep_fields: bool = False,
) -> RowStream:
    """A stream of :class:`Row` / :class:`BadRow` items of one file (see module doc).

    Without ``text_field``, the first of ``candidates`` present in the header / first object is used.
    ``keep_fields`` (CSV only) also hands each row's columns as ``Row.fields``; the stream's ``header``
    is the CSV header once the first item is read.
    """
    stream = RowStream(path, detect_format(path, fmt), text_field, id_field, progress, desc, tuple(candidates))
    stream.keep_fields = keep_fields
    return stream


class RowStream:
    """Iterates the rows of one file; after the first item, ``text_field``/``id_field`` are known."""

    def __init__(self, path, fmt, text_field, id_field, progress, desc, candidates=TEXT_FIELD_CANDIDATES):
        self.path = path
        self.candidates = candidates
        self.format = fmt
        self.text_field = text_field
        self.id_field = id_field
        self.has_ids = False
        self.keep_fields = False
        self.header: list[str] | None = None
        self._progress_enabled = progress
        self._desc = desc or os.path.basename(path)

    def __iter__(self) -> Iterator[Row | BadRow]:
        f, size = _open_binary(self.path)
        progress = _Progress(size, self._desc, self._progress_enabled)
        bad_lines: dict = {}
        try:
            lines = _decoded_lines(f, progress, bad_lines)
            if self.format == "txt":
                yield from self._txt(lines, bad_lines)
            elif self.format == "jsonl":
                yield from self._jsonl(lines, bad_lines)
            else:
                yield from self._csv(lines, bad_lines)
        finally:
            progress.close()
            if f is not sys.stdin.buffer:
                f.close()

    def _bad(self, line: int, message: str) -> BadRow:
        return BadRow(self.path, line, message)

    # -- plain text ----------------------------------------------------------------------------
    def _txt(self, lines, bad_lines) -> Iterator[Row | BadRow]:
        if self.text_field is not None:
            raise InputError(f"{self.path}: a plain-text file has no fields; drop the field option or use csv/jsonl")
        for number, text in lines:
            if number in bad_lines:
                yield self._bad(number, bad_lines[number])
                continue
            text = text.rstrip("\r\n")
            if not text.strip():
                yield self._bad(number, "empty line (a text file holds one report per line)")
                continue
            yield Row(number, text)

    # -- JSON lines ----------------------------------------------------------------------------
    def _jsonl(self, lines, bad_lines) -> Iterator[Row | BadRow]:
        decided = False
        for number, text in lines:
            if number in bad_lines:
                yield self._bad(number, bad_lines[number])
                continue
            if not text.strip():
                continue  # blank lines separate nothing in JSONL; trailing newlines are common
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as e:
                yield self._bad(number, f"invalid JSON ({e.msg}, column {e.colno})")
                continue
            if not isinstance(obj, dict):
                yield self._bad(number, f"expected a JSON object, got {type(obj).__name__}")
                continue
            if not decided:
                self._decide_fields(list(obj.keys()), number)
                decided = True
            if self.text_field not in obj:
                yield self._bad(number, f"field {self.text_field!r} is missing")
                continue
            value = obj[self.text_field]
            if not isinstance(value, str):
                yield self._bad(number, f"field {self.text_field!r} is {type(value).__name__}, not a string")
                continue
            problem = text_problem(value)
            if problem:
                yield self._bad(number, f"field {self.text_field!r} {problem}")
                continue
            rid = None
            if self.has_ids:
                raw_id = obj.get(self.id_field)
                if raw_id is None or isinstance(raw_id, (dict, list, bool)) or raw_id == "":
                    yield self._bad(number, f"id field {self.id_field!r} is missing or not a string/number")
                    continue
                rid = str(raw_id)
                problem = text_problem(rid)
                if problem:
                    yield self._bad(number, f"id field {self.id_field!r} {problem}")
                    continue
            yield Row(number, value, rid)

    # -- CSV ------------------------------------------------------------------------------------
    def _csv(self, lines, bad_lines) -> Iterator[Row | BadRow]:
        starts: list[int] = []

        def text_lines():
            for number, text in lines:
                starts.append(number)
                yield text

        reader = csv.reader(text_lines(), strict=True)
        try:
            header = next(reader)
        except StopIteration:
            return  # an empty file holds no reports
        except csv.Error as e:
            raise InputError(f"{self.path}:1: malformed CSV header ({e})") from None
        header_end = starts[-1] if starts else 1
        if any(n in bad_lines for n in range(1, header_end + 1)):
            raise InputError(f"{self.path}:1: invalid UTF-8 in the header row")
        header = [h.strip() for h in header]
        self.header = header
        self._decide_fields(header, 1)
        col = header.index(self.text_field)
        id_col = header.index(self.id_field) if self.has_ids else None
        prev_end = header_end
        while True:
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error as e:
                start = prev_end + 1
                prev_end = starts[-1] if starts else start
                yield self._bad(start, f"malformed CSV row ({e})")
                continue
            start, end = prev_end + 1, starts[-1]
            prev_end = end
            span = [n for n in range(start, end + 1) if n in bad_lines]
            if span:
                yield self._bad(span[0], bad_lines[span[0]])
                continue
            if not row or (len(row) == 1 and not row[0].strip() and len(header) > 1):
                continue  # blank line
            if len(row) != len(header):
                yield self._bad(start, f"row has {len(row)} fields, the header has {len(header)}")
                continue
            rid = None
            if id_col is not None:
                rid = row[id_col].strip()
                if not rid:
                    yield self._bad(start, f"id column {self.id_field!r} is empty")
                    continue
            yield Row(start, row[col], rid, dict(zip(header, row)) if self.keep_fields else None)

    def _decide_fields(self, keys: Sequence[str], line: int) -> None:
        if self.text_field is None:
            found = next((c for c in self.candidates if c in keys), None)
            if found is None:
                raise InputError(
                    f"{self.path}:{line}: no report column found among {list(keys)}; "
                    f"name it with the text-field option (tried {', '.join(self.candidates)})"
                )
            self.text_field = found
        elif self.text_field not in keys:
            kind = "column" if self.format == "csv" else "field"
            raise InputError(f"{self.path}:{line}: {kind} {self.text_field!r} not found; available: {list(keys)}")
        if self.id_field is None:
            self.id_field = ID_FIELD_DEFAULT
            self.has_ids = ID_FIELD_DEFAULT in keys
        else:
            if self.id_field not in keys:
                kind = "column" if self.format == "csv" else "field"
                raise InputError(f"{self.path}:{line}: id {kind} {self.id_field!r} not found; available: {list(keys)}")
            self.has_ids = True


def collect(
    stream: Iterable[Row | BadRow], *, skip_bad: bool, prefix: str = "", err: IO[str] | None = None
) -> tuple[list[Row], list[BadRow]]:
    """All rows of a stream; the first bad row raises unless ``skip_bad`` (then each is reported)."""
    rows: list[Row] = []
    bad: list[BadRow] = []
    for item in stream:
        if isinstance(item, BadRow):
            if not skip_bad:
                raise BadRowError(item)
            print(f"{prefix}skipped {item}", file=err if err is not None else sys.stderr)
            bad.append(item)
        else:
            rows.append(item)
    return rows, bad


class BadRowError(Exception):
    def __init__(self, bad: BadRow):
        super().__init__(str(bad))
        self.bad = bad


def add_input_options(
    p, *, prefix: str = "", help_name: str = "input", candidates: Sequence[str] = TEXT_FIELD_CANDIDATES
) -> None:
    """--format / --text-field / --id-field options (with an optional prefix, e.g. 'pred-')."""
    dest = prefix.replace("-", "_")
    p.add_argument(
        f"--{prefix}format",
        dest=f"{dest}format",
        choices=FORMATS,
        default=None,
        help=f"format of the {help_name} (default: from the extension: .csv, .jsonl/.ndjson/.json, else text)",
    )
    p.add_argument(
        f"--{prefix}field",
        dest=f"{dest}field",
        default=None,
        metavar="NAME",
        help=f"column (CSV) or field (JSONL) of the {help_name} holding the report text "
        f"(default: the first of {', '.join(candidates[:4])}, ... present)",
    )
    p.add_argument(
        f"--{prefix}id-field",
        dest=f"{dest}id_field",
        default=None,
        metavar="NAME",
        help=f"column/field of the {help_name} holding the report id (default: 'id' when present)",
    )


def atomic_writer(path: str | None, *, newline: str | None = None, inputs: tuple[str, ...] = ()):
    """A text output that appears whole or not at all, moved into place (or copied to stdout) by ``commit()``.

    A file is written under a temporary name beside it (:mod:`mrgfast.atomic`); stdout output is
    spooled to an anonymous temporary file and copied out only on ``commit()``, so an error found at
    row 20,000 leaves no partial CSV on stdout. Refused up front: a folder, a missing parent folder,
    a path equal to one of ``inputs``.
    """
    return _AtomicWriter(path, newline, inputs)


class _AtomicWriter:
    def __init__(self, path: str | None, newline: str | None, inputs: tuple[str, ...] = ()):
        from mrgfast.atomic import OutputPathError, check_output_path, clean_stale, tmp_path

        self.path = path
        if path is None or path == "-":
            self.tmp = None
            self.spool = tempfile.TemporaryFile()
            self.f = io.TextIOWrapper(self.spool, encoding="utf-8", newline=newline)
        else:
            try:
                check_output_path(path, inputs=inputs)
            except OutputPathError as e:
                raise InputError(str(e)) from None
            clean_stale(path)
            self.tmp = str(tmp_path(path))
            self.f = open(self.tmp, "w", encoding="utf-8", newline=newline)

    def commit(self) -> None:
        if self.tmp is None:
            self.f.flush()
            self.spool.seek(0)
            out = sys.stdout.buffer if hasattr(sys.stdout, "buffer") else None
            if out is None:  # a replaced sys.stdout (tests, notebooks) takes text
                sys.stdout.write(self.spool.read().decode("utf-8"))
            else:
                sys.stdout.flush()
                shutil.copyfileobj(self.spool, out)
                out.flush()
            self.f.close()
            return
        self.f.flush()
        os.fsync(self.f.fileno())
        self.f.close()
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        self.f.close()
        if self.tmp is not None:
            with contextlib.suppress(OSError):
                os.remove(self.tmp)
