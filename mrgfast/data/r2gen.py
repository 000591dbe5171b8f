"""R2Gen ``annotation.json`` loader (IU X-Ray, MIMIC-CXR, and the synthetic set) into TRL's format.

Input layout (the community's R2Gen format)::

    {"train": [{"id": ..., "report": ..., "image_path": ["rel/0.png", ...], "split": "train"}, ...],
     "val": [...], "test": [...]}

with image paths relative to an image root. Output rows, ready for TRL's ``SFTTrainer`` and
``GRPOTrainer`` on a vision-language model::

    {"id": str, "prompt": [{"role": "user", "content": INSTRUCTION}], "images": [PIL images],
     "report": str,                                          # the reference (reward column)
     "completion": [{"role": "assistant", "content": "<think>…</think><report>…</report>"}]}

TRL inserts one image placeholder per image before the instruction. Missing or unreadable images
fail fast (the first few paths and the count are named) unless ``skip_missing=True``; then the
studies are dropped, their ids written to ``skipped_file`` and counted in the log.
"""

from __future__ import annotations

import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("mrgfast.data")

DEFAULT_INSTRUCTION = (
    "You are a radiologist. Look at the chest X-ray and write the findings. First reason briefly inside "
    "<think> </think>, then give the report inside <report> </report>."
)
# SFT target reasoning when a record has no ``think`` text (real IU X-Ray / MIMIC-CXR): a choice of
# mrgfast, not the paper's; it keeps the format reward's "both blocks non-empty" satisfiable.
DEFAULT_THINK = "I review the lungs, pleura, heart, mediastinum, bones and devices."

KINDS = {
    # kind: (views kept per study by default; documented choice, see presets)
    "iu_xray": 2,  # R2Gen uses both views of IU X-Ray
    "mimic_cxr": 1,  # R2Gen uses the first view of each MIMIC-CXR study
    "synthetic": 2,
}


class DataError(ValueError):
    """Bad dataset input; the message names the file / row / field."""


@dataclass
class Study:
    id: str
    report: str
    image_paths: list[str]  # absolute
    split: str
    think: str | None = None


def format_target(report: str, think: str | None = None) -> str:
    return f"<think>{think or DEFAULT_THINK}</think><report>{report}</report>"


def _check_image(path: str, decode: bool = True) -> str | None:
    """None when the image is there and decodes (fully with `decode`, else its header), else the reason."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            if decode:
                im.load()  # every pixel: a truncated PNG fails here, not mid-training
            else:
                _ = im.size  # header parsed
        return None
    except FileNotFoundError:
        return "missing"
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        return f"unreadable ({type(e).__name__}: {e})"


def image_path_inside(root: Path, rel: str) -> Path | None:
    """`root / rel` when it stays inside `root` once symlinks are resolved, else None.

    Absolute paths and `..` components are refused before the file system is touched, so the answer
    never depends on what exists elsewhere on disk.
    """
    pure = Path(rel)
    if not rel or pure.is_absolute() or rel.startswith(("/", "\\")) or ".." in pure.parts:
        return None
    candidate = root / pure
    resolved = candidate.resolve()
    try:
        resolved.relative_to(root.resolve())
    except ValueError:
        return None
    return candidate


def read_annotation(
    annotation: str | os.PathLike,
    image_root: str | os.PathLike | None = None,
    *,
    splits: tuple[str, ...] = ("train", "val", "test"),
    kind: str = "iu_xray",
    max_images: int | None = None,
    skip_missing: bool = False,
    skipped_file: str | os.PathLike | None = None,
    check: str = "decode",
    max_samples: int | None = None,
    threads: int = 8,
) -> dict[str, list[Study]]:
    """Read and validate an R2Gen annotation file; returns ``{split: [Study, ...]}``.

    ``image_root`` defaults to ``<annotation dir>/images``; every image path must be relative and stay
    inside it (symlinks resolved), else the entry is refused by name. ``max_images`` caps the views
    per study (default per ``kind``: IU X-Ray 2, MIMIC-CXR 1). ``check``: ``"decode"`` decodes every
    image fully once (a truncated file is found here, with its study id and path), ``"open"`` parses
    each header, ``"exists"`` only stats it, ``"none"`` trusts the file. A split left empty is an
    error naming the split and the file. ``max_samples`` keeps the first N studies
    per split (a deliberate subset, logged, not a silent drop).
    """
    annotation = Path(annotation)
    if kind not in KINDS:
        raise DataError(f"unknown dataset kind {kind!r}; expected one of {sorted(KINDS)}")
    if not annotation.is_file():
        raise DataError(f"annotation file not found: {annotation}")
    try:
        data = json.loads(annotation.read_text())
    except json.JSONDecodeError as e:
        raise DataError(f"{annotation}: not valid JSON ({e})") from e
    if not isinstance(data, dict):
        raise DataError(f"{annotation}: expected an object with split keys (train/val/test), got {type(data).__name__}")
    root = Path(image_root) if image_root is not None else annotation.parent / "images"
    if not root.is_dir():
        raise DataError(f"image root not found: {root} (set --image-root)")
    max_images = KINDS[kind] if max_images is None else max_images

    out: dict[str, list[Study]] = {}
    for split in splits:
        if split not in data:
            raise DataError(f"{annotation}: split {split!r} not present (splits: {sorted(data)})")
        rows = data[split]
        if not isinstance(rows, list):
            raise DataError(f"{annotation}: split {split!r} must be a list of records")
        if max_samples is not None and len(rows) > max_samples:
            log.info("%s: using the first %d of %d studies (max_samples)", split, max_samples, len(rows))
            rows = rows[:max_samples]
        studies = []
        for i, row in enumerate(rows):
            where = f"{annotation}: {split}[{i}]"
            if not isinstance(row, dict):
                raise DataError(f"{where}: expected an object, got {type(row).__name__}")
            for key in ("id", "report", "image_path"):
                if key not in row:
                    raise DataError(f"{where}: missing field {key!r}")
            report = row["report"]
            if not isinstance(report, str) or not report.strip():
                raise DataError(f"{where} (id={row['id']}): field 'report' must be a non-empty string")
            try:
                report.encode("utf-8")
            except UnicodeEncodeError as e:
                raise DataError(f"{where} (id={row['id']}): field 'report' is not valid text ({e})") from None
            paths = row["image_path"]
            if isinstance(paths, str):
                paths = [paths]
            if not isinstance(paths, list) or not paths or not all(isinstance(p, str) for p in paths):
                raise DataError(f"{where} (id={row['id']}): field 'image_path' must be a non-empty list of strings")
            inside = []
            for p in paths[:max_images]:
                q = image_path_inside(root, p)
                if q is None:
                    raise DataError(
                        f"{where} (id={row['id']}): image_path {p!r} is not a relative path inside the image "
                        f"root {root}; absolute paths, '..' and symlinks out of the root are refused"
                    )
                inside.append(str(q))
            paths = inside
            think = row.get("think") if isinstance(row.get("think"), str) else None
            studies.append(Study(id=str(row["id"]), report=report.strip(), image_paths=paths, split=split, think=think))
        if not studies:
            raise DataError(f"{annotation}: split {split!r} holds no studies")
        out[split] = studies

    if check not in ("decode", "open", "exists", "none"):
        raise DataError(f"check must be 'decode', 'open', 'exists' or 'none', got {check!r}")
    if check != "none":
        all_paths = sorted({p for ss in out.values() for s in ss for p in s.image_paths})
        if check in ("decode", "open"):
            decode = check == "decode"
            with ThreadPoolExecutor(max(1, threads)) as ex:
                reasons = dict(zip(all_paths, ex.map(lambda p: _check_image(p, decode), all_paths)))
        else:
            reasons = {p: (None if os.path.isfile(p) else "missing") for p in all_paths}
        bad = {p: r for p, r in reasons.items() if r is not None}
        if bad:
            bad_ids = {s.id for ss in out.values() for s in ss if any(p in bad for p in s.image_paths)}
            study_of = {p: s.id for ss in out.values() for s in ss for p in s.image_paths}
            first = "\n  ".join(f"study {study_of[p]}: {p}: {r}" for p, r in list(bad.items())[:5])
            if not skip_missing:
                raise DataError(
                    f"{len(bad)} image(s) missing or unreadable under {root} ({len(bad_ids)} studies), e.g.:\n  {first}\n"
                    "Fix the paths / image root, or pass --skip-missing-images to drop those studies "
                    "(their ids are then written to a file)."
                )
            skipped_file = Path(skipped_file) if skipped_file else Path("skipped_ids.txt")
            skipped_file.parent.mkdir(parents=True, exist_ok=True)
            from mrgfast.atomic import open_replacing

            with open_replacing(skipped_file) as fh:
                for split, ss in out.items():
                    for s in ss:
                        if s.id in bad_ids:
                            fh.write(f"{split}\t{s.id}\t" + ",".join(bad.get(p, "ok") for p in s.image_paths) + "\n")
            for split in out:
                before = len(out[split])
                out[split] = [s for s in out[split] if s.id not in bad_ids]
                if not out[split]:
                    raise DataError(
                        f"{annotation}: split {split!r} holds no studies once those with bad images are dropped"
                    )
                if before != len(out[split]):
                    log.warning(
                        "%s: skipped %d of %d studies with missing/unreadable images (ids in %s)",
                        split,
                        before - len(out[split]),
                        before,
                        skipped_file,
                    )
    for split, ss in out.items():
        log.info("%s: %d studies, %d images", split, len(ss), sum(len(s.image_paths) for s in ss))
    return out


def to_dataset(studies: list[Study], *, instruction: str = DEFAULT_INSTRUCTION, with_completion: bool = True):
    """A ``datasets.Dataset`` in TRL's prompt/completion + images format (images decoded lazily)."""
    import datasets

    if not studies:
        raise DataError("no studies to build a dataset from (empty split after filtering?)")
    cols: dict[str, list[Any]] = {
        "id": [s.id for s in studies],
        "prompt": [[{"role": "user", "content": instruction}] for s in studies],
        "images": [list(s.image_paths) for s in studies],
        "report": [s.report for s in studies],
    }
    if with_completion:
        cols["completion"] = [[{"role": "assistant", "content": format_target(s.report, s.think)}] for s in studies]
    ds = datasets.Dataset.from_dict(cols)
    list_feature = getattr(datasets, "List", None) or datasets.Sequence
    return ds.cast_column("images", list_feature(datasets.Image()))
