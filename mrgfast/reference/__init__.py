"""Pure-Python reference implementation of mrgfast's reward engine.

Same rules (``rules.txt``, shared with the Rust labeler) and the same algorithm, written plainly:
the oracle of the differential tests and the baseline of ``bench/bench_reward.py``. Slow by design;
use :func:`mrgfast.label` / :func:`mrgfast.mccs` for real work.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from mrgfast.contracts import (
    DEFAULT_MARGIN,
    DEFAULT_SIDE_WEIGHT,
    DEFAULT_UNCERTAIN,
    SIDE_BILATERAL,
    SIDE_LEFT,
    SIDE_RIGHT,
    check_mccs_params,
    check_side_weight,
)
from mrgfast.reference.labeler import (
    BLANK,
    NEGATIVE,
    OBSERVATIONS,
    POSITIVE,
    RULES_PATH,
    SIDED,
    UNCERTAIN,
    label_report,
    label_report_details,
    rules,
    sentences,
    tokenize,
)

__all__ = [
    "BLANK",
    "OBSERVATIONS",
    "RULES_PATH",
    "label",
    "label_details",
    "label_report",
    "label_report_details",
    "mccs",
    "mccs_group",
    "mccs_labels",
    "mccs_plus_labels",
    "rules",
    "sentences",
    "tokenize",
]


def label(reports: Sequence[str]) -> np.ndarray:
    """(n, 14) int8 codes, the same as :func:`mrgfast.label`."""
    if isinstance(reports, str):
        raise TypeError("reports must be a sequence of str, got a single str; wrap one report in a list")
    rows = [label_report(r) for r in reports]
    return np.array(rows, dtype=np.int8).reshape(-1, len(OBSERVATIONS))


def label_details(reports: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(codes, sides, degrees), three (n, 14) int8 arrays, the same as ``mrgfast.label(..., details=True)``."""
    if isinstance(reports, str):
        raise TypeError("reports must be a sequence of str, got a single str; wrap one report in a list")
    rows = [label_report_details(r) for r in reports]
    return tuple(np.array([x[k] for x in rows], dtype=np.int8).reshape(-1, len(OBSERVATIONS)) for k in range(3))


def _signed(labels: Sequence[int], uncertain: float) -> list[float]:
    out = []
    for code in list(labels)[1:]:
        code = int(code)
        if code == POSITIVE:
            out.append(1.0)
        elif code == NEGATIVE:
            out.append(-1.0)
        elif code == UNCERTAIN:
            out.append(float(uncertain))
        else:
            out.append(0.0)
    return out


def _plus(labels: Sequence[int], sides: Sequence[int], uncertain: float, side_weight: float) -> list[float]:
    """MCCS+'s vector: the signed vector, then a (left, right) pair per sided observation; a present
    finding with a stated side keeps √(1 − β) of its value on its own dimension and puts √β on its side
    (√(β/2) on each for bilateral)."""
    v = _signed(labels, uncertain)
    extra: list[float] = []
    a, b = math.sqrt(1.0 - side_weight), math.sqrt(side_weight)
    for o in range(1, len(OBSERVATIONS)):
        if not SIDED[o]:
            continue
        x = v[o - 1]
        side = int(sides[o])
        lr = {SIDE_LEFT: (b, 0.0), SIDE_RIGHT: (0.0, b), SIDE_BILATERAL: (b * math.sqrt(0.5), b * math.sqrt(0.5))}
        left, right = lr.get(side, (0.0, 0.0))
        if int(labels[o]) in (POSITIVE, UNCERTAIN) and (left or right):
            v[o - 1] = x * a
            extra += [x * left, x * right]
        else:
            extra += [0.0, 0.0]
    return v + extra


def mccs_plus_labels(
    generated: Sequence[int],
    generated_sides: Sequence[int],
    reference: Sequence[int],
    reference_sides: Sequence[int],
    *,
    margin: float = DEFAULT_MARGIN,
    uncertain: float = DEFAULT_UNCERTAIN,
    side_weight: float = DEFAULT_SIDE_WEIGHT,
) -> float:
    """MCCS+ of two label rows with their side rows (docs/ARCHITECTURE.md, "MCCS+")."""
    check_mccs_params(margin, uncertain)
    check_side_weight(side_weight)
    return _shaped(
        _plus(generated, generated_sides, uncertain, side_weight),
        _plus(reference, reference_sides, uncertain, side_weight),
        margin,
    )


def mccs_labels(
    generated: Sequence[int],
    reference: Sequence[int],
    *,
    margin: float = DEFAULT_MARGIN,
    uncertain: float = DEFAULT_UNCERTAIN,
) -> float:
    """MCCS of two label rows (docs/ARCHITECTURE.md): cosine of signed vectors, margin-shaped."""
    check_mccs_params(margin, uncertain)
    return _shaped(_signed(generated, uncertain), _signed(reference, uncertain), margin)


def _shaped(g: list[float], r: list[float], margin: float) -> float:
    dot = gg = rr = 0.0
    for a, b in zip(g, r):
        dot += a * b
        gg += a * a
        rr += b * b
    if gg == 0.0 and rr == 0.0:
        c = 1.0
    elif gg == 0.0 or rr == 0.0:
        c = 0.0
    else:
        c = min(max(dot / (math.sqrt(gg) * math.sqrt(rr)), -1.0), 1.0)
    return min(max((c - margin) / (1.0 - margin), 0.0), 1.0)


def _pair(g: str, r: str, margin: float, uncertain: float, sides: bool, side_weight: float) -> float:
    if not sides:
        return mccs_labels(label_report(g), label_report(r), margin=margin, uncertain=uncertain)
    (gc, gs, _), (rc, rs, _) = label_report_details(g), label_report_details(r)
    return mccs_plus_labels(gc, gs, rc, rs, margin=margin, uncertain=uncertain, side_weight=side_weight)


def mccs(
    generated: Sequence[str],
    references: Sequence[str],
    *,
    margin: float = DEFAULT_MARGIN,
    uncertain: float = DEFAULT_UNCERTAIN,
    sides: bool = False,
    side_weight: float = DEFAULT_SIDE_WEIGHT,
) -> np.ndarray:
    """MCCS (``sides=True``: MCCS+) of generated[i] against references[i] (float64), like :func:`mrgfast.mccs`."""
    if len(generated) != len(references):
        raise ValueError(f"generated and references differ in length: {len(generated)} vs {len(references)}")
    return np.array(
        [_pair(g, r, margin, uncertain, sides, side_weight) for g, r in zip(generated, references)],
        dtype=np.float64,
    )


def mccs_group(
    generated: Sequence[str],
    reference: str,
    *,
    margin: float = DEFAULT_MARGIN,
    uncertain: float = DEFAULT_UNCERTAIN,
    sides: bool = False,
    side_weight: float = DEFAULT_SIDE_WEIGHT,
) -> np.ndarray:
    """MCCS (``sides=True``: MCCS+) of many completions against one reference."""
    return np.array([_pair(g, reference, margin, uncertain, sides, side_weight) for g in generated], dtype=np.float64)
