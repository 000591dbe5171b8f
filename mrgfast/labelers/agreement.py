"""Agreement between two labelers on the same reports, per observation.

For each observation: the 4 x 4 confusion counts over the codes (positive, negative, uncertain,
blank), 4-way agreement and Cohen's kappa over those four classes, and present/absent agreement and
kappa after collapsing positive and uncertain to "present", negative and blank to "absent" (the
reading MCCS's u = +1 and CE's binarisation share). Summaries: the mean over observations (macro)
and the pooled counts over all cells (micro). `format_agreement` prints it, `plot_agreement`
draws the heatmap.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mrgfast.contracts import BLANK, NEGATIVE, OBSERVATIONS, POSITIVE, UNCERTAIN
from mrgfast.engine import as_labels

CLASS_ORDER: tuple[int, ...] = (POSITIVE, NEGATIVE, UNCERTAIN, BLANK)
CLASS_NAMES: tuple[str, ...] = ("positive", "negative", "uncertain", "blank")


def cohen_kappa(confusion: np.ndarray) -> float:
    """Cohen's kappa of a square confusion matrix; 1.0 when both raters use one same class only."""
    c = np.asarray(confusion, dtype=np.float64)
    n = c.sum()
    if n == 0:
        return float("nan")
    po = np.trace(c) / n
    pe = float((c.sum(axis=1) * c.sum(axis=0)).sum()) / (n * n)
    if pe >= 1.0:
        return 1.0 if po >= 1.0 else 0.0
    return float((po - pe) / (1.0 - pe))


_CLASS_INDEX = np.full(256, -1, dtype=np.intp)
for _i, _code in enumerate(CLASS_ORDER):
    _CLASS_INDEX[_code & 0xFF] = _i


def confusion(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """4 x 4 counts: rows `a`'s code, columns `b`'s, in `CLASS_ORDER` (int8 codes)."""
    ia = _CLASS_INDEX[a.astype(np.int64) & 0xFF]
    ib = _CLASS_INDEX[b.astype(np.int64) & 0xFF]
    out = np.zeros((4, 4), dtype=np.int64)
    np.add.at(out, (ia, ib), 1)
    return out


def _present(c4: np.ndarray) -> np.ndarray:
    """Collapse a 4 x 4 confusion to present (positive, uncertain) / absent (negative, blank)."""
    groups = [[0, 2], [1, 3]]
    return np.array([[c4[np.ix_(r, c)].sum() for c in groups] for r in groups], dtype=np.int64)


def agreement(labels_a: np.ndarray, labels_b: np.ndarray, *, names: tuple[str, str] = ("a", "b")) -> dict[str, Any]:
    """Per-observation agreement of two (n, 14) label arrays of the same reports (JSON-ready)."""
    a = as_labels(labels_a, names[0])
    b = as_labels(labels_b, names[1])
    if a.shape != b.shape:
        raise ValueError(f"{names[0]} has {a.shape[0]} rows but {names[1]} has {b.shape[0]}")
    n = int(a.shape[0])
    per: dict[str, Any] = {}
    pooled4 = np.zeros((4, 4), dtype=np.int64)
    for j, obs in enumerate(OBSERVATIONS):
        c4 = confusion(a[:, j], b[:, j])
        c2 = _present(c4)
        pooled4 += c4
        per[obs] = {
            "agreement_4way": float(np.trace(c4) / n) if n else float("nan"),
            "kappa_4way": cohen_kappa(c4),
            "agreement_present": float(np.trace(c2) / n) if n else float("nan"),
            "kappa_present": cohen_kappa(c2),
            "present": {names[0]: int(c2[0].sum()), names[1]: int(c2[:, 0].sum())},
            "confusion": {
                "rows": names[0],
                "columns": names[1],
                "classes": list(CLASS_NAMES),
                "counts": c4.tolist(),
            },
        }
    keys = ("agreement_4way", "kappa_4way", "agreement_present", "kappa_present")
    macro = {k: float(np.nanmean([per[o][k] for o in OBSERVATIONS])) if n else float("nan") for k in keys}
    pooled2 = _present(pooled4)
    total = pooled4.sum()
    micro = {
        "agreement_4way": float(np.trace(pooled4) / total) if total else float("nan"),
        "kappa_4way": cohen_kappa(pooled4),
        "agreement_present": float(np.trace(pooled2) / total) if total else float("nan"),
        "kappa_present": cohen_kappa(pooled2),
    }
    return {"n": n, "labelers": list(names), "per_observation": per, "macro": macro, "micro": micro}


def _f(x: float) -> str:
    return "   nan" if x != x else f"{x:6.3f}"


def format_agreement(result: dict[str, Any], *, title: str | None = None) -> str:
    """The agreement result as a text table."""
    a, b = result["labelers"]
    lines = [title] if title else []
    lines.append(f"reports: {result['n']}   labelers: {a} (rows) vs {b} (columns)")
    width = max(len(o) for o in OBSERVATIONS) + 2
    wa, wb = max(9, len(a) + 3), max(9, len(b) + 3)
    head = f"  {'observation':<{width}}{'4-way':>7}{'kappa4':>7}{'pres.':>7}{'kappa2':>7}{f'+{a}':>{wa}}{f'+{b}':>{wb}}"
    lines += [head, "  " + "-" * (len(head) - 2)]
    for obs, r in result["per_observation"].items():
        lines.append(
            f"  {obs:<{width}}{_f(r['agreement_4way']):>7}{_f(r['kappa_4way']):>7}{_f(r['agreement_present']):>7}"
            f"{_f(r['kappa_present']):>7}{r['present'][a]:>{wa}}{r['present'][b]:>{wb}}"
        )
    lines.append("  " + "-" * (len(head) - 2))
    for name in ("macro", "micro"):
        r = result[name]
        lines.append(
            f"  {name:<{width}}{_f(r['agreement_4way']):>7}{_f(r['kappa_4way']):>7}{_f(r['agreement_present']):>7}"
            f"{_f(r['kappa_present']):>7}"
        )
    lines.append(
        "  4-way: share of reports with the same code (positive/negative/uncertain/blank); pres.: the same after "
        "positive+uncertain = present; kappa: Cohen's; +X: reports X calls present"
    )
    return "\n".join(lines)


def plot_agreement(result: dict[str, Any], path: str, *, title: str | None = None) -> str:
    """PNG: a heatmap of the four agreement measures per observation, then each observation's 4 x 4
    confusion counts (row-normalised) in a grid."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    a, b = result["labelers"]
    per = result["per_observation"]
    keys = ("agreement_4way", "kappa_4way", "agreement_present", "kappa_present")
    grid = np.array([[per[o][k] for k in keys] for o in OBSERVATIONS], dtype=np.float64)
    fig = plt.figure(figsize=(14, 7.5), dpi=100)
    ax = fig.add_axes((0.17, 0.08, 0.22, 0.84))
    im = ax.imshow(grid, vmin=0.0, vmax=1.0, cmap="viridis", aspect="auto")
    ax.set_yticks(range(len(OBSERVATIONS)), OBSERVATIONS, fontsize=8)
    ax.set_xticks(range(len(keys)), ["4-way", "kappa 4", "present", "kappa 2"], fontsize=8, rotation=30)
    for i in range(grid.shape[0]):
        for j in range(grid.shape[1]):
            v = grid[i, j]
            ax.text(j, i, "nan" if v != v else f"{v:.2f}", ha="center", va="center", fontsize=7, color="white")
    fig.colorbar(im, ax=ax, fraction=0.05)
    ax.set_title(title or f"{a} vs {b}, n = {result['n']}", fontsize=9)
    short = ("+", "0", "?", "_")
    for k, obs in enumerate(OBSERVATIONS):
        row, col = divmod(k, 5)
        sub = fig.add_axes((0.47 + col * 0.105, 0.70 - row * 0.30, 0.08, 0.2))
        counts = np.asarray(per[obs]["confusion"]["counts"], dtype=np.float64)
        norm = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
        sub.imshow(norm, vmin=0, vmax=1, cmap="Blues")
        for i in range(4):
            for j in range(4):
                if counts[i, j]:
                    sub.text(j, i, str(int(counts[i, j])), ha="center", va="center", fontsize=6)
        sub.set_xticks(range(4), short, fontsize=6)
        sub.set_yticks(range(4), short, fontsize=6)
        sub.set_title(obs, fontsize=7)
        if col == 0:
            sub.set_ylabel(a, fontsize=6)
        sub.set_xlabel(b, fontsize=6)
    import os

    tmp = f"{path}.tmp-{os.getpid()}"
    fig.savefig(tmp, format="png")
    plt.close(fig)
    os.replace(tmp, path)
    return path
