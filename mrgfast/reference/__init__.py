"""Pure-Python reference implementation of mrgfast's reward engine.

Same rules (``rules.txt``, shared with the Rust labeler) and the same algorithm, written plainly:
the oracle of the differential tests and the baseline of ``bench/bench_reward.py``. Slow by design;
use :func:`mrgfast.label` / :func:`mrgfast.mccs` for real work.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from mrgfast.contracts import DEFAULT_MARGIN, DEFAULT_UNCERTAIN, check_mccs_params
from mrgfast.reference.labeler import (
    BLANK,
    NEGATIVE,
    OBSERVATIONS,
    POSITIVE,
    RULES_PATH,
    UNCERTAIN,
    label_report,
    rules,
    sentences,
    tokenize,
)

__all__ = [
    "BLANK",
    "OBSERVATIONS",
    "RULES_PATH",
    "label",
    "label_report",
    "mccs",
    "mccs_group",
    "mccs_labels",
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


def mccs_labels(
    generated: Sequence[int],
    reference: Sequence[int],
    *,
    margin: float = DEFAULT_MARGIN,
    uncertain: float = DEFAULT_UNCERTAIN,
) -> float:
    """MCCS of two label rows (docs/ARCHITECTURE.md): cosine of signed vectors, margin-shaped."""
    check_mccs_params(margin, uncertain)
    g = _signed(generated, uncertain)
    r = _signed(reference, uncertain)
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


def mccs(
    generated: Sequence[str],
    references: Sequence[str],
    *,
    margin: float = DEFAULT_MARGIN,
    uncertain: float = DEFAULT_UNCERTAIN,
) -> np.ndarray:
    """MCCS of generated[i] against references[i] (float64), like :func:`mrgfast.mccs`."""
    if len(generated) != len(references):
        raise ValueError(f"generated and references differ in length: {len(generated)} vs {len(references)}")
    return np.array(
        [
            mccs_labels(label_report(g), label_report(r), margin=margin, uncertain=uncertain)
            for g, r in zip(generated, references)
        ],
        dtype=np.float64,
    )


def mccs_group(
    generated: Sequence[str], reference: str, *, margin: float = DEFAULT_MARGIN, uncertain: float = DEFAULT_UNCERTAIN
) -> np.ndarray:
    """MCCS of many completions against one reference (labelled once)."""
    ref = label_report(reference)
    return np.array(
        [mccs_labels(label_report(g), ref, margin=margin, uncertain=uncertain) for g in generated], dtype=np.float64
    )
