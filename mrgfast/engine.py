"""Python API over the Rust engine (`mrgfast._core`): NumPy arrays in and out, records on request.

The extension returns raw bytes so it stays abi3 and NumPy-free; this module views them as
arrays without copying and turns label rows into CheXpert-style records.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from mrgfast import _core
from mrgfast.contracts import (
    BLANK,
    CODES,
    COMPETITION_FIVE,
    DEFAULT_MARGIN,
    DEFAULT_SIDE_WEIGHT,
    DEFAULT_UNCERTAIN,
    DEGREE_NAMES,
    MAX_THREADS,
    OBSERVATIONS,
    SIDE_NAMES,
    SUBSETS,
    check_side_weight,
    check_threads,
)
from mrgfast.labelers import RUST, Labeler, resolve_labeler

__all__ = [
    "BLANK",
    "COMPETITION_FIVE",
    "DEFAULT_MARGIN",
    "DEFAULT_SIDE_WEIGHT",
    "DEFAULT_UNCERTAIN",
    "MAX_THREADS",
    "OBSERVATIONS",
    "Labelled",
    "as_labels",
    "ce_metrics",
    "label",
    "mccs",
    "mccs_from_labels",
    "mccs_group",
    "to_float",
    "to_records",
]

Record = dict[str, Any]


class Labelled(NamedTuple):
    """`mrgfast.label(..., details=True)`: three (n, 14) int8 arrays, columns `OBSERVATIONS`.

    ``codes`` are the labels (1, 0, -1, `BLANK`); ``sides`` the side of each finding (0 not stated,
    1 left, 2 right, 3 bilateral: `SIDE_NAMES`; bits, left | right = bilateral); ``degrees`` its degree
    (0 not stated, 1 mild, 2 moderate, 3 severe: `DEGREE_NAMES`). Sides and degrees are 0 unless the
    code is 1 or -1, and sides are 0 outside `SIDED_OBSERVATIONS`.
    """

    codes: np.ndarray
    sides: np.ndarray
    degrees: np.ndarray


def label(
    reports: Sequence[str],
    *,
    threads: int | None = None,
    records: bool = False,
    labeler: Labeler | str | None = None,
    details: bool = False,
) -> np.ndarray | Labelled | list[Record]:
    """Label reports with the 14 CheXpert codes (1, 0, -1, `BLANK`).

    Returns an (n, 14) int8 array, or with `records=True` one dict per report mapping each
    observation to 1.0 / 0.0 / -1.0 / None, the CheXpert CSV convention. `threads=None` uses
    every core (at most `MAX_THREADS`); the GIL is released while labelling and Ctrl-C stops a long
    call within one chunk. Safe after `fork()`: a child process builds its own threads.
    A report that is not valid text (a lone surrogate) raises ValueError naming its index.
    `labeler`: the Rust engine (``None``, ``"rust"``) or another backend of `mrgfast.labelers`
    (e.g. a `CheXbert` instance).

    `details=True` (the Rust engine only) also reads each finding's side and degree: a `Labelled`
    (codes, sides, degrees), or with `records=True` records that add ``"details"``: for each
    observation but No Finding coded 1 or -1, ``{"side": "left" | "right" | "bilateral" | None, "degree":
    "mild" | "moderate" | "severe" | None}``.
    """
    threads = check_threads(threads)
    backend = resolve_labeler(labeler)
    if details:
        if backend is not RUST:
            raise ValueError(
                f"details=True needs the rule labeler (labeler=None or 'rust'); {backend.name} gives no sides or degrees"
            )
        c, s, d = _core.label_details(reports, threads)
        n_obs = len(OBSERVATIONS)
        out = Labelled(*(np.frombuffer(b, dtype=np.int8).reshape(-1, n_obs) for b in (c, s, d)))
        return to_records(out.codes, details=out) if records else out
    if backend is RUST:
        rows = np.frombuffer(_core.label(reports, threads), dtype=np.int8).reshape(-1, len(OBSERVATIONS))
    else:
        rows = as_labels(backend.label(reports, threads=threads), f"labels from {backend.name}")
        if rows.shape[0] != len(reports):
            raise ValueError(f"labeler {backend.name} returned {rows.shape[0]} rows for {len(reports)} reports")
    return to_records(rows) if records else rows


def to_records(labels: np.ndarray, *, details: Labelled | None = None) -> list[Record]:
    """CheXpert-style records from an (n, 14) int8 label array; with `details` (a `Labelled` of the same
    reports) each record adds ``"details"``: side and degree names (None: not stated) of every
    finding coded 1 or -1 (No Finding has none)."""
    labels = as_labels(labels, "labels")
    out: list[Record] = [
        {obs: (None if code == BLANK else float(code)) for obs, code in zip(OBSERVATIONS, row.tolist())}
        for row in labels
    ]
    if details is not None:
        sides, degrees = np.asarray(details.sides), np.asarray(details.degrees)
        if sides.shape != labels.shape or degrees.shape != labels.shape:
            raise ValueError(f"details must have the labels' shape {labels.shape}, got {sides.shape} / {degrees.shape}")
        for rec, row, srow, drow in zip(out, labels.tolist(), sides.tolist(), degrees.tolist()):
            rec["details"] = {
                obs: {
                    "side": SIDE_NAMES[s] if s else None,
                    "degree": DEGREE_NAMES[d] if d else None,
                }
                for obs, code, s, d in zip(OBSERVATIONS, row, srow, drow)
                if code in (1, -1) and obs != "No Finding"
            }
    return out


def to_float(labels: np.ndarray) -> np.ndarray:
    """An int8 label array as float32 with NaN for blank (as in the CheXpert CSVs)."""
    labels = as_labels(labels, "labels")
    out = labels.astype(np.float32)
    out[labels == BLANK] = np.nan
    return out


def _check_sides(sides: bool, side_weight: float, backend: Labeler) -> None:
    if not isinstance(sides, bool):
        raise TypeError(f"sides must be True or False, got {type(sides).__name__}")
    if sides:
        check_side_weight(side_weight)
        if backend is not RUST:
            raise ValueError(
                f"sides=True (MCCS+) needs the rule labeler's sides (labeler=None or 'rust'); {backend.name} gives none"
            )


def mccs(
    generated: Sequence[str],
    references: Sequence[str],
    *,
    margin: float = DEFAULT_MARGIN,
    uncertain: float = DEFAULT_UNCERTAIN,
    threads: int | None = None,
    labeler: Labeler | str | None = None,
    sides: bool = False,
    side_weight: float = DEFAULT_SIDE_WEIGHT,
) -> np.ndarray:
    """MCCS of `generated[i]` against `references[i]`, float64 in [0, 1].

    `sides=True`: MCCS+, the side-aware MCCS (docs/ARCHITECTURE.md): equal to MCCS when no report
    states a side, lower for a finding on the wrong side; `side_weight` is its β."""
    threads = check_threads(threads)
    backend = resolve_labeler(labeler)
    _check_sides(sides, side_weight, backend)
    if sides:
        out = _core.mccs_pairs(generated, references, margin, uncertain, threads, True, side_weight)
        return np.frombuffer(out, dtype="<f8").copy()
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
    sides: bool = False,
    side_weight: float = DEFAULT_SIDE_WEIGHT,
) -> np.ndarray:
    """MCCS (`sides=True`: MCCS+) of many completions against one shared reference, labelled once."""
    threads = check_threads(threads)
    backend = resolve_labeler(labeler)
    _check_sides(sides, side_weight, backend)
    if sides:
        out = _core.mccs_group(generated, reference, margin, uncertain, threads, True, side_weight)
        return np.frombuffer(out, dtype="<f8").copy()
    if backend is not RUST:
        if not isinstance(reference, str):
            raise TypeError(f"reference must be a str, got {type(reference).__name__}")
        rows = label([reference, *generated], threads=threads, labeler=backend)
        refs = np.repeat(rows[:1], len(generated), axis=0)
        return mccs_from_labels(rows[1:], refs, margin=margin, uncertain=uncertain)
    out = _core.mccs_group(generated, reference, margin, uncertain, threads)
    return np.frombuffer(out, dtype="<f8").copy()


def mccs_from_labels(
    generated: np.ndarray | Labelled,
    references: np.ndarray | Labelled,
    *,
    margin: float = DEFAULT_MARGIN,
    uncertain: float = DEFAULT_UNCERTAIN,
    sides: bool = False,
    side_weight: float = DEFAULT_SIDE_WEIGHT,
) -> np.ndarray:
    """MCCS from label arrays already computed (n×14 int8 each). `sides=True`: MCCS+, from two
    `Labelled` (what ``mrgfast.label(..., details=True)`` returns)."""
    if not isinstance(sides, bool):
        raise TypeError(f"sides must be True or False, got {type(sides).__name__}")
    if sides:
        check_side_weight(side_weight)
        for name, x in (("generated", generated), ("references", references)):
            if not isinstance(x, Labelled):
                raise TypeError(
                    f"sides=True needs {name} as a Labelled (mrgfast.label(..., details=True)), got {type(x).__name__}"
                )
        g = as_labels(generated.codes, "generated")
        r = as_labels(references.codes, "references")
        gs = as_sides(generated.sides, "generated.sides", g.shape)
        rs = as_sides(references.sides, "references.sides", r.shape)
        out = _core.mccs_from_labels(
            g.tobytes(), r.tobytes(), margin, uncertain, gs.tobytes(), rs.tobytes(), side_weight
        )
        return np.frombuffer(out, dtype="<f8").copy()
    g = as_labels(generated.codes if isinstance(generated, Labelled) else generated, "generated")
    r = as_labels(references.codes if isinstance(references, Labelled) else references, "references")
    return np.frombuffer(_core.mccs_from_labels(g.tobytes(), r.tobytes(), margin, uncertain), dtype="<f8").copy()


def ce_metrics(
    predicted: np.ndarray | Labelled | Sequence[str],
    references: np.ndarray | Labelled | Sequence[str],
    *,
    uncertain_positive: bool = False,
    subset: Sequence[str] | None = None,
    threads: int | None = None,
    labeler: Labeler | str | None = None,
    sides: bool = False,
) -> dict[str, Any]:
    """Clinical-efficacy precision, recall and F1: per observation, micro and macro.

    Inputs are label arrays (n×14 int8) or report texts (labelled here). Binarisation follows
    R2Gen: positive = 1, anything else 0; `uncertain_positive=True` also counts -1 as positive.
    `subset` restricts the observations: a sequence of names, one observation name, or a subset name
    of `SUBSETS` ("all", "competition5"); default all 14. `labeler` labels texts (arrays are used as
    they are).

    `sides=True`: side-aware CE. A finding positive in both reports is a true positive only when both
    state the same side or either states none; otherwise a false positive and a false negative. Inputs
    are then texts (labelled with details by the rule labeler) or `Labelled` arrays.
    """
    if not isinstance(sides, bool):
        raise TypeError(f"sides must be True or False, got {type(sides).__name__}")
    side_bytes: tuple[bytes, bytes] | None = None
    if sides:
        if resolve_labeler(labeler) is not RUST:
            raise ValueError("sides=True (side-aware CE) needs the rule labeler's sides (labeler=None or 'rust')")
        pl = _details_or_texts(predicted, "predicted", threads)
        rl = _details_or_texts(references, "references", threads)
        p, r = as_labels(pl.codes, "predicted"), as_labels(rl.codes, "references")
        side_bytes = (
            as_sides(pl.sides, "predicted.sides", p.shape).tobytes(),
            as_sides(rl.sides, "references.sides", r.shape).tobytes(),
        )
    else:
        p = _labels_or_texts(predicted, "predicted", threads, labeler)
        r = _labels_or_texts(references, "references", threads, labeler)
    if subset is None:
        names = list(OBSERVATIONS)
    elif isinstance(subset, str):  # one name, never its letters
        names = list(SUBSETS[subset]) if subset in SUBSETS else [subset]
    else:
        names = list(subset)
    unknown = [n for n in names if n not in OBSERVATIONS]
    if unknown:
        raise ValueError(f"subset names unknown observations {unknown}; known: {list(OBSERVATIONS)}")
    if not names:
        raise ValueError("subset is empty")
    columns = [OBSERVATIONS.index(n) for n in names]
    if p.shape[0] != r.shape[0]:
        raise ValueError(f"{p.shape[0]} predicted rows but {r.shape[0]} reference rows")
    if side_bytes is None:
        per, micro, macro = _core.ce_metrics(p.tobytes(), r.tobytes(), columns, uncertain_positive)
    else:
        per, micro, macro = _core.ce_metrics(p.tobytes(), r.tobytes(), columns, uncertain_positive, *side_bytes)
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
        "sides": sides,
        "per_observation": per_observation,
        "micro": dict(zip(("precision", "recall", "f1"), micro)),
        "macro": dict(zip(("precision", "recall", "f1"), macro)),
    }


def _labels_or_texts(x: Any, name: str, threads: int | None, labeler: Labeler | str | None) -> np.ndarray:
    if isinstance(x, Labelled):
        return as_labels(x.codes, name)
    if isinstance(x, np.ndarray):
        return as_labels(x, name)
    return label(x, threads=threads, labeler=labeler)


def _details_or_texts(x: Any, name: str, threads: int | None) -> Labelled:
    if isinstance(x, Labelled):
        return x
    if isinstance(x, np.ndarray):
        raise TypeError(
            f"sides=True needs {name} as report texts or a Labelled (mrgfast.label(..., details=True)), "
            "not a plain label array: it holds no sides"
        )
    return label(x, threads=threads, details=True)


def as_sides(x: Any, name: str, shape: tuple[int, ...]) -> np.ndarray:
    """`x` as a C-contiguous int8 side array of `shape`; errors name `name` and the first bad cell."""
    arr = np.asarray(x)
    if arr.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"{name} must be an integer side array (int8 codes), got dtype {arr.dtype}")
    bad = (arr < 0) | (arr >= len(SIDE_NAMES))
    if bad.any():
        i, j = map(int, np.argwhere(bad)[0])
        raise ValueError(
            f"{name}[{i}, {j}] ({OBSERVATIONS[j]}) is {arr[i, j]}, not a side code (0 none, 1 left, 2 right, 3 bilateral)"
        )
    return np.ascontiguousarray(arr.astype(np.int8, copy=False))


def as_labels(x: Any, name: str) -> np.ndarray:
    """`x` as a C-contiguous (n, 14) int8 label array; errors name `name` and the first bad cell."""
    arr = np.asarray(x)
    if arr.ndim != 2 or arr.shape[1] != len(OBSERVATIONS):
        raise ValueError(f"{name} must have shape (n, {len(OBSERVATIONS)}), got {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"{name} must be an integer label array (int8 codes), got dtype {arr.dtype}")
    bad = ~np.isin(arr, CODES)
    if bad.any():
        i, j = map(int, np.argwhere(bad)[0])
        raise ValueError(f"{name}[{i}, {j}] ({OBSERVATIONS[j]}) is {arr[i, j]}, not a code (1, 0, -1 or {BLANK})")
    if arr.dtype != np.int8:
        arr = arr.astype(np.int8)
    return np.ascontiguousarray(arr)
