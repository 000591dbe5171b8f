"""Python API over the Rust engine (`mrgfast._core`): NumPy arrays in and out, records on request.

The extension returns raw bytes so it stays abi3 and NumPy-free; this module views them as
arrays without copying and turns label rows into CheXpert-style records.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from mrgfast import _core
from mrgfast.contracts import BLANK, CODES, COMPETITION_FIVE, DEFAULT_MARGIN, DEFAULT_UNCERTAIN, OBSERVATIONS
from mrgfast.labelers import RUST, Labeler, resolve_labeler

__all__ = [
    "BLANK",
    "COMPETITION_FIVE",
    "DEFAULT_MARGIN",
    "DEFAULT_UNCERTAIN",
    "OBSERVATIONS",
    "as_labels",
    "ce_metrics",
    "label",
    "mccs",
    "mccs_from_labels",
    "mccs_group",
    "to_float",
    "to_records",
]

Record = dict[str, float | None]


def label(
    reports: Sequence[str],
    *,
    threads: int | None = None,
    records: bool = False,
    labeler: Labeler | str | None = None,
) -> np.ndarray | list[Record]:
    """Label reports with the 14 CheXpert codes (1, 0, -1, `BLANK`).

    Returns an (n, 14) int8 array, or with `records=True` one dict per report mapping each
    observation to 1.0 / 0.0 / -1.0 / None, the CheXpert CSV convention. `threads=None` uses
    every core; the GIL is released while labelling. `labeler`: the Rust engine (``None``,
    ``"rust"``) or another backend of `mrgfast.labelers` (e.g. a `CheXbert` instance).
    """
    backend = resolve_labeler(labeler)
    if backend is RUST:
        rows = np.frombuffer(_core.label(reports, threads), dtype=np.int8).reshape(-1, len(OBSERVATIONS))
    else:
        rows = as_labels(backend.label(reports, threads=threads), f"labels from {backend.name}")
        if rows.shape[0] != len(reports):
            raise ValueError(f"labeler {backend.name} returned {rows.shape[0]} rows for {len(reports)} reports")
    return to_records(rows) if records else rows


def to_records(labels: np.ndarray) -> list[Record]:
    """CheXpert-style records from an (n, 14) int8 label array."""
    labels = as_labels(labels, "labels")
    return [
        {obs: (None if code == BLANK else float(code)) for obs, code in zip(OBSERVATIONS, row.tolist())}
        for row in labels
    ]


def to_float(labels: np.ndarray) -> np.ndarray:
    """An int8 label array as float32 with NaN for blank (as in the CheXpert CSVs)."""
    labels = as_labels(labels, "labels")
    out = labels.astype(np.float32)
    out[labels == BLANK] = np.nan
    return out


def mccs(
    generated: Sequence[str],
    references: Sequence[str],
    *,
    margin: float = DEFAULT_MARGIN,
    uncertain: float = DEFAULT_UNCERTAIN,
    threads: int | None = None,
    labeler: Labeler | str | None = None,
) -> np.ndarray:
    """MCCS of `generated[i]` against `references[i]`, float64 in [0, 1]."""
    backend = resolve_labeler(labeler)
    if backend is not RUST:
        if len(generated) != len(references):
            raise ValueError(f"{len(generated)} generated reports but {len(references)} references")
        rows = label([*generated, *references], threads=threads, labeler=backend)
        n = len(generated)
        return mccs_from_labels(rows[:n], rows[n:], margin=margin, uncertain=uncertain)
    out = _core.mccs_pairs(generated, references, margin, uncertain, threads)
    return np.frombuffer(out, dtype="<f8").copy()


def mccs_group(
    generated: Sequence[str],
    reference: str,
    *,
    margin: float = DEFAULT_MARGIN,
    uncertain: float = DEFAULT_UNCERTAIN,
    threads: int | None = None,
    labeler: Labeler | str | None = None,
) -> np.ndarray:
    """MCCS of many completions against one shared reference, which is labelled once."""
    backend = resolve_labeler(labeler)
    if backend is not RUST:
        if not isinstance(reference, str):
            raise TypeError(f"reference must be a str, got {type(reference).__name__}")
        rows = label([reference, *generated], threads=threads, labeler=backend)
        refs = np.repeat(rows[:1], len(generated), axis=0)
        return mccs_from_labels(rows[1:], refs, margin=margin, uncertain=uncertain)
    out = _core.mccs_group(generated, reference, margin, uncertain, threads)
    return np.frombuffer(out, dtype="<f8").copy()


def mccs_from_labels(
    generated: np.ndarray,
    references: np.ndarray,
    *,
    margin: float = DEFAULT_MARGIN,
    uncertain: float = DEFAULT_UNCERTAIN,
) -> np.ndarray:
    """MCCS from label arrays already computed (n×14 int8 each)."""
    g = as_labels(generated, "generated")
    r = as_labels(references, "references")
    return np.frombuffer(_core.mccs_from_labels(g.tobytes(), r.tobytes(), margin, uncertain), dtype="<f8").copy()


def ce_metrics(
    predicted: np.ndarray | Sequence[str],
    references: np.ndarray | Sequence[str],
    *,
    uncertain_positive: bool = False,
    subset: Sequence[str] | None = None,
    threads: int | None = None,
    labeler: Labeler | str | None = None,
) -> dict[str, Any]:
    """Clinical-efficacy precision, recall and F1: per observation, micro and macro.

    Inputs are label arrays (n×14 int8) or report texts (labelled here). Binarisation follows
    R2Gen: positive = 1, anything else 0; `uncertain_positive=True` also counts -1 as positive.
    `subset` restricts the observations (default all 14; `COMPETITION_FIVE` for the 5-subset).
    `labeler` labels texts (arrays are used as they are).
    """
    p = _labels_or_texts(predicted, "predicted", threads, labeler)
    r = _labels_or_texts(references, "references", threads, labeler)
    names = list(OBSERVATIONS) if subset is None else list(subset)
    unknown = [n for n in names if n not in OBSERVATIONS]
    if unknown:
        raise ValueError(f"subset names unknown observations {unknown}; known: {list(OBSERVATIONS)}")
    if not names:
        raise ValueError("subset is empty")
    columns = [OBSERVATIONS.index(n) for n in names]
    per, micro, macro = _core.ce_metrics(p.tobytes(), r.tobytes(), columns, uncertain_positive)
    per_observation = {
        OBSERVATIONS[col]: {
            "precision": prec,
            "recall": rec,
            "f1": f1,
            "tp": tp,
            "fp": fp,
            "fn": fn,
            "tn": tn,
            "support": tp + fn,
        }
        for col, tp, fp, fn, tn, prec, rec, f1 in per
    }
    return {
        "n": int(p.shape[0]),
        "observations": names,
        "uncertain_positive": uncertain_positive,
        "per_observation": per_observation,
        "micro": dict(zip(("precision", "recall", "f1"), micro)),
        "macro": dict(zip(("precision", "recall", "f1"), macro)),
    }


def _labels_or_texts(x: Any, name: str, threads: int | None, labeler: Labeler | str | None) -> np.ndarray:
    if isinstance(x, np.ndarray):
        return as_labels(x, name)
    return label(x, threads=threads, labeler=labeler)


def as_labels(x: Any, name: str) -> np.ndarray:
    """`x` as a C-contiguous (n, 14) int8 label array; errors name `name` and the first bad cell."""
    arr = np.asarray(x)
    if arr.ndim != 2 or arr.shape[1] != len(OBSERVATIONS):
        raise ValueError(f"{name} must have shape (n, {len(OBSERVATIONS)}), got {arr.shape}")
    if arr.dtype != np.int8:
        if not np.issubdtype(arr.dtype, np.integer):
            raise TypeError(f"{name} must be an integer label array (int8 codes), got dtype {arr.dtype}")
        bad = ~np.isin(arr, CODES)
        if bad.any():
            i, j = map(int, np.argwhere(bad)[0])
            raise ValueError(f"{name}[{i}, {j}] ({OBSERVATIONS[j]}) is {arr[i, j]}, not a code (1, 0, -1 or {BLANK})")
        arr = arr.astype(np.int8)
    return np.ascontiguousarray(arr)
