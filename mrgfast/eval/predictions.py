"""The predictions file of ``mrgfast eval``: JSONL written as it is produced, resumable.

One JSON object per study, in the order they were generated::

    {"id": "...", "generated": "<think>…</think><report>…</report>", "report": "…", "reference": "…"}

``generated`` is the decoded completion, ``report`` the text MCCS/CE score
(:func:`mrgfast.reward.extract_report` of ``generated``), ``reference`` the ground truth.

Each batch is appended with a single ``write`` and flushed to disk (``fsync``) before the next
batch starts, so a killed run leaves at most one partial last line. :func:`load_existing` reads
what is there: a partial last line (no newline and not valid JSON) is the mark of an interrupted
write and is cut off (its study is generated again); any other bad line stops with
``FILE:LINE: reason``. A sidecar ``<predictions>.meta.json`` records the generation settings so that a
rerun with different settings cannot silently extend a file made with others.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mrgfast.contracts import PREDICTION_FIELDS as REQUIRED


class PredictionsError(ValueError):
    """A problem with an existing predictions file; the message names the file and line."""


@dataclass
class Prediction:
    id: str
    generated: str
    report: str
    reference: str

    def to_json(self) -> str:
        return json.dumps(
            {"id": self.id, "generated": self.generated, "report": self.report, "reference": self.reference},
            ensure_ascii=False,
        )


@dataclass
class Existing:
    records: list[Prediction] = field(default_factory=list)
    truncated_bytes: int = 0  # bytes of a partial last line that were cut off


def meta_path(path: str | os.PathLike) -> Path:
    return Path(str(path) + ".meta.json")


def load_existing(path: str | os.PathLike, *, repair: bool = True) -> Existing:
    """The complete records of an existing predictions file (see the module doc).

    With ``repair=True`` a partial last line is cut off the file on disk so appending continues
    from a clean line boundary.
    """
    p = Path(path)
    out = Existing()
    if not p.exists():
        return out
    with open(p, "rb") as f:
        data = f.read()
    seen: dict[str, int] = {}
    pos = 0
    number = 0
    while pos < len(data):
        end = data.find(b"\n", pos)
        last = end < 0
        raw = data[pos:] if last else data[pos:end]
        number += 1
        line_start = pos
        pos = len(data) if last else end + 1
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            if last:  # an interrupted write: regenerate this study
                out.truncated_bytes = len(data) - line_start
                if repair:
                    with open(p, "r+b") as f:
                        f.truncate(line_start)
                break
            reason = (
                "invalid UTF-8" if isinstance(e, UnicodeDecodeError) else f"invalid JSON ({e.msg}, column {e.colno})"
            )
            raise PredictionsError(f"{p}:{number}: {reason}; fix or delete the file (or pass --overwrite)") from None
        if not isinstance(obj, dict):
            raise PredictionsError(f"{p}:{number}: expected a JSON object, got {type(obj).__name__}")
        for key in REQUIRED:
            if key not in obj:
                raise PredictionsError(f"{p}:{number}: field {key!r} is missing")
            if not isinstance(obj[key], str):
                raise PredictionsError(f"{p}:{number}: field {key!r} is {type(obj[key]).__name__}, not a string")
            try:
                obj[key].encode("utf-8")
            except UnicodeEncodeError as e:
                raise PredictionsError(
                    f"{p}:{number}: field {key!r} is not valid text ({e}); fix or delete the file (or pass --overwrite)"
                ) from None
        rid = obj["id"]
        if rid in seen:
            raise PredictionsError(f"{p}:{number}: duplicate id {rid!r} (first on line {seen[rid]})")
        seen[rid] = number
        out.records.append(Prediction(rid, obj["generated"], obj["report"], obj["reference"]))
        if last and repair:  # a complete last record without its newline: add it before appending
            with open(p, "ab") as f:
                f.write(b"\n")
    return out


def check_against_studies(path: str | os.PathLike, records: Sequence[Prediction], studies: Iterable[Any]) -> None:
    """Every existing record must belong to the studies being evaluated, with the same reference."""
    refs = {s.id: s.report for s in studies}
    for i, rec in enumerate(records):
        if rec.id not in refs:
            raise PredictionsError(
                f"{path}: record {i + 1} has id {rec.id!r}, which is not in the evaluated split; the file belongs "
                "to another dataset/split/--limit (use another --out, or --overwrite)"
            )
        if rec.reference != refs[rec.id]:
            raise PredictionsError(
                f"{path}: record {i + 1} (id {rec.id!r}) holds a reference that differs from the dataset's; "
                "the annotation changed since it was written (use --overwrite)"
            )


class PredictionsWriter:
    """Appends records batch by batch; each batch is on disk when :meth:`write_batch` returns."""

    def __init__(self, path: str | os.PathLike, *, fsync: bool = True):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(self.path, "a", encoding="utf-8")
        self._fsync = fsync
        self.written = 0

    def write_batch(self, records: Sequence[Prediction]) -> None:
        if not records:
            return
        self._f.write("".join(r.to_json() + "\n" for r in records))
        self._f.flush()
        if self._fsync:
            os.fsync(self._f.fileno())
        self.written += len(records)

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> PredictionsWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def check_meta(path: str | os.PathLike, settings: dict[str, Any], *, have_records: bool) -> str | None:
    """None when the settings of an existing file match (or there is none), else why not."""
    mp = meta_path(path)
    if not mp.is_file():
        if have_records:
            return f"{path} exists but {mp.name} (its generation settings) does not, so a resume cannot be checked"
        return None
    try:
        old = json.loads(mp.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        return f"{mp}: unreadable ({e})"
    old_settings = old.get("settings", {}) if isinstance(old, dict) else {}
    diffs = [
        f"{k}: {old_settings.get(k)!r} -> {settings.get(k)!r}"
        for k in sorted(set(old_settings) | set(settings))
        if old_settings.get(k) != settings.get(k)
    ]
    if diffs:
        return f"{path} was written with other settings (" + "; ".join(diffs) + ")"
    return None


def write_meta(path: str | os.PathLike, settings: dict[str, Any]) -> None:
    from mrgfast.atomic import write_json

    write_json(meta_path(path), {"settings": settings})
