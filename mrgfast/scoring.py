"""Scoring generated reports against references: MCCS and clinical-efficacy (CE) metrics.

:func:`score_pairs` labels each side once and derives everything from the labels: MCCS summary
(mean, median, ...), CE precision/recall/F1 per observation with micro and macro averages over all
14 observations, and the same over the 5-observation competition subset. :func:`format_table`
renders the result as text, :func:`plot_f1` as a per-observation F1 bar chart. ``mrgfast score``,
``mrgfast demo`` and ``mrgfast eval`` share them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mrgfast import engine
from mrgfast.contracts import SIDED_OBSERVATIONS, check_side_weight
from mrgfast.labelers import RUST, Labeler, resolve_labeler
from mrgfast.reward.format import extract_report

Texts = Sequence[str] | np.ndarray


def _labels(
    x: Texts, name: str, threads: int | None, extract: bool, labeler: Labeler | None = None, details: bool = False
) -> np.ndarray | engine.Labelled:
    if isinstance(x, engine.Labelled):
        return x if details else engine.as_labels(x.codes, name)
    if isinstance(x, np.ndarray):
        return engine.as_labels(x, name)
    texts = list(x)
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(f"{name}[{i}] is {type(t).__name__}, not a report string")
        try:
            t.encode("utf-8")
        except UnicodeEncodeError as e:
            raise ValueError(f"{name}[{i}] is not valid text ({e})") from None
    if extract:
        texts = [extract_report(t) for t in texts]
    if details:
        return engine.label(texts, threads=threads, details=True)
    return engine.label(texts, threads=threads, labeler=labeler)


def _summary(scores: np.ndarray) -> dict[str, float]:
    return {
        "mean": float(scores.mean()),
        "median": float(np.median(scores)),
        "std": float(scores.std()),
        "min": float(scores.min()),
        "max": float(scores.max()),
    }


def score_pairs(
    preds: Texts,
    refs: Texts,
    *,
    ids: Sequence[str] | None = None,
    margin: float = engine.DEFAULT_MARGIN,
    uncertain: float = engine.DEFAULT_UNCERTAIN,
    uncertain_positive: bool = False,
    threads: int | None = None,
    extract: bool = True,
    per_sample: bool = True,
    labelers: Sequence[Labeler | str | None] | None = None,
    side_weight: float = engine.DEFAULT_SIDE_WEIGHT,
) -> dict[str, Any]:
    """MCCS and CE metrics of ``preds[i]`` against ``refs[i]``.

    ``preds`` / ``refs`` are report texts, (n, 14) int8 label arrays or `mrgfast.Labelled`.
    ``extract=True`` scores the ``<report>`` block of generated texts (:func:`mrgfast.reward.extract_report`;
    plain reports are unchanged); references are used as they are. Returns a JSON-ready dict::

        {"n", "params": {...}, "mccs": {"mean", "median", "std", "min", "max"},
         "ce": {"all": ce_metrics(...), "five": ce_metrics(..., subset=COMPETITION_FIVE)},
         "mccs_plus": {...} | None, "ce_sides": {"all", "five"} | None,
         "per_sample": [{"id", "mccs", "mccs_plus"}, ...], "labeler": NAME}

    When the primary labeler is the rule engine and both sides are texts (or `Labelled`), the labels
    carry each finding's side, and ``mccs_plus`` (MCCS+ with ``side_weight``) and ``ce_sides`` (side-aware
    CE: a positive pair counts only when the sides agree or either is not stated) come beside the usual
    metrics, which they leave unchanged; otherwise both are ``None`` (``sides_note`` says why).

    ``labelers``: the backends that label texts (default: the Rust engine); the first is the primary
    (the keys above). With more than one, ``by_labeler`` holds each one's MCCS summary and CE, and
    ``agreement`` each other one's per-observation agreement with the primary (both sides' labels).
    """
    backends = [resolve_labeler(x) for x in (labelers or [None])]
    if not isinstance(preds, np.ndarray) and not isinstance(refs, np.ndarray) and len(preds) != len(refs):
        raise ValueError(f"{len(preds)} predictions but {len(refs)} references")
    check_side_weight(side_weight)
    plain_arrays = any(isinstance(x, np.ndarray) for x in (preds, refs))
    details = backends[0] is RUST and not plain_arrays
    pd = _labels(preds, "preds", threads, extract, backends[0], details)
    rd = _labels(refs, "refs", threads, False, backends[0], details)
    p, r = (pd.codes, rd.codes) if details else (pd, rd)
    if p.shape[0] != r.shape[0]:
        raise ValueError(f"{p.shape[0]} predictions but {r.shape[0]} references")
    n = int(p.shape[0])
    if n == 0:
        raise ValueError("nothing to score: no report pairs")
    if ids is not None and len(ids) != n:
        raise ValueError(f"{len(ids)} ids for {n} report pairs")
    scores = engine.mccs_from_labels(p, r, margin=margin, uncertain=uncertain)
    ce_all = engine.ce_metrics(p, r, uncertain_positive=uncertain_positive)
    ce_five = engine.ce_metrics(p, r, uncertain_positive=uncertain_positive, subset=engine.COMPETITION_FIVE)
    result: dict[str, Any] = {
        "n": n,
        "params": {
            "margin": float(margin),
            "uncertain": float(uncertain),
            "uncertain_positive": bool(uncertain_positive),
            "extract_report": bool(extract),
            "side_weight": float(side_weight),
        },
        "mccs": _summary(scores),
        "ce": {"all": ce_all, "five": ce_five},
        "mccs_plus": None,
        "ce_sides": None,
    }
    plus = None
    if details:
        plus = engine.mccs_from_labels(pd, rd, margin=margin, uncertain=uncertain, sides=True, side_weight=side_weight)
        result["mccs_plus"] = _summary(plus)
        kw = dict(uncertain_positive=uncertain_positive, sides=True)
        result["ce_sides"] = {
            "all": engine.ce_metrics(pd, rd, **kw),
            "five": engine.ce_metrics(pd, rd, subset=engine.COMPETITION_FIVE, **kw),
        }
    else:
        result["sides_note"] = "side-aware CE and MCCS+ need the rule labeler's sides: " + (
            "the inputs are label arrays" if plain_arrays else f"the primary labeler is {backends[0].name}"
        )
    if per_sample:
        keys = list(ids) if ids is not None else list(range(n))
        result["per_sample"] = [{"id": k, "mccs": float(s)} for k, s in zip(keys, scores.tolist())]
        if plus is not None:
            for row, s in zip(result["per_sample"], plus.tolist()):
                row["mccs_plus"] = float(s)
    result["labeler"] = backends[0].name
    if len(backends) > 1:
        from mrgfast.labelers.agreement import agreement

        by: dict[str, Any] = {}
        agree: dict[str, Any] = {}
        for b in backends:
            if b is backends[0]:
                pb, rb, sb = p, r, scores
            else:
                pb = _labels(preds, "preds", threads, extract, b)
                rb = _labels(refs, "refs", threads, False, b)
                sb = engine.mccs_from_labels(pb, rb, margin=margin, uncertain=uncertain)
                names = (backends[0].name, b.name)
                agree[f"{names[0]} vs {names[1]}"] = agreement(
                    np.concatenate([p, r]), np.concatenate([pb, rb]), names=names
                )
            by[b.name] = {
                "mccs": {"mean": float(sb.mean()), "median": float(np.median(sb))},
                "ce": {
                    "all": engine.ce_metrics(pb, rb, uncertain_positive=uncertain_positive),
                    "five": engine.ce_metrics(
                        pb, rb, uncertain_positive=uncertain_positive, subset=engine.COMPETITION_FIVE
                    ),
                },
            }
        result["by_labeler"] = by
        result["agreement"] = agree
    return result


def _f(x: float) -> str:
    return "  nan" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"


def format_table(result: dict[str, Any], *, title: str | None = None) -> str:
    """The result of :func:`score_pairs` as a text table (MCCS summary, then the CE table)."""
    lines: list[str] = []
    if title:
        lines.append(title)
    m = result["mccs"]
    params = result["params"]
    lines.append(
        f"pairs: {result['n']}   MCCS mean {m['mean']:.4f}   median {m['median']:.4f}   "
        f"(margin {params['margin']}, uncertain {params['uncertain']})"
    )
    binar = "positive or uncertain = 1" if params["uncertain_positive"] else "positive = 1, else 0"
    lines.append(f"clinical efficacy ({binar}):")
    ce = result["ce"]["all"]
    width = max(len(o) for o in engine.OBSERVATIONS) + 2
    header = f"  {'observation':<{width}}{'P':>7}{'R':>7}{'F1':>7}{'support':>9}{'pred+':>7}"
    rule = "  " + "-" * (len(header) - 2)
    lines += [header, rule]
    for obs, row in ce["per_observation"].items():
        mark = "*" if obs in engine.COMPETITION_FIVE else " "
        lines.append(
            f"  {obs + mark:<{width}}{_f(row['precision']):>7}{_f(row['recall']):>7}{_f(row['f1']):>7}"
            f"{row['support']:>9}{row['tp'] + row['fp']:>7}"
        )
    lines.append(rule)
    for label, key in (("micro (14)", "all"), ("macro (14)", "all"), ("micro (5*)", "five"), ("macro (5*)", "five")):
        avg = result["ce"][key]["micro" if label.startswith("micro") else "macro"]
        lines.append(f"  {label:<{width}}{_f(avg['precision']):>7}{_f(avg['recall']):>7}{_f(avg['f1']):>7}")
    lines.append("  * the 5-observation competition subset (" + ", ".join(engine.COMPETITION_FIVE) + ")")
    lines.append(format_sides(result))
    if result.get("by_labeler"):
        lines.append(format_by_labeler(result))
    return "\n".join(lines)


def format_sides(result: dict[str, Any]) -> str:
    """MCCS+ and side-aware CE beside the usual numbers: per observation F1 and side-aware F1, and the
    positive pairs whose sides disagree (counted as a miss and a false alarm by side-aware CE)."""
    sided = result.get("ce_sides")
    if not sided:
        return f"side-aware CE: not computed ({result.get('sides_note', 'no sides')})"
    m = result["mccs_plus"]
    lines = [
        f"MCCS+ (side-aware, side weight {result['params']['side_weight']}): mean {m['mean']:.4f}   "
        f"median {m['median']:.4f}",
        "side-aware CE (a positive pair counts when both reports state the same side or either states none):",
    ]
    width = max(len(o) for o in engine.OBSERVATIONS) + 2
    header = f"  {'observation':<{width}}{'F1':>7}{'F1 side':>9}{'wrong side':>12}"
    rule = "  " + "-" * (len(header) - 2)
    lines += [header, rule]
    plain, side = result["ce"]["all"], sided["all"]
    for obs in side["per_observation"]:
        a, b = plain["per_observation"][obs], side["per_observation"][obs]
        mark = " " if obs in SIDED_OBSERVATIONS else "-"
        lines.append(f"  {obs + mark:<{width}}{_f(a['f1']):>7}{_f(b['f1']):>9}{a['tp'] - b['tp']:>12}")
    lines.append(rule)
    for label, key, avg in (
        ("micro (14)", "all", "micro"),
        ("macro (14)", "all", "macro"),
        ("micro (5*)", "five", "micro"),
        ("macro (5*)", "five", "macro"),
    ):
        lines.append(f"  {label:<{width}}{_f(result['ce'][key][avg]['f1']):>7}{_f(sided[key][avg]['f1']):>9}")
    lines.append("  - no side (the same as CE)")
    return "\n".join(lines)


def format_by_labeler(result: dict[str, Any]) -> str:
    """CE F1 per observation under each labeler side by side, with each other labeler's present/absent
    kappa against the primary (over generated and reference labels together)."""
    by = result["by_labeler"]
    names = list(by)
    agree = list(result.get("agreement", {}).values())
    width = max(len(o) for o in engine.OBSERVATIONS) + 2
    col = max(9, *(len(n) + 2 for n in names))
    head = f"  {'F1':<{width}}" + "".join(f"{n:>{col}}" for n in names)
    head += "".join(f"{'kappa ' + a['labelers'][1]:>{col + 6}}" for a in agree)
    lines = [f"clinical efficacy by labeler (primary: {names[0]}):", head, "  " + "-" * (len(head) - 2)]
    for obs in engine.OBSERVATIONS:
        row = f"  {obs:<{width}}" + "".join(
            f"{_f(by[n]['ce']['all']['per_observation'][obs]['f1']):>{col}}" for n in names
        )
        row += "".join(f"{_f(a['per_observation'][obs]['kappa_present']):>{col + 6}}" for a in agree)
        lines.append(row)
    lines.append("  " + "-" * (len(head) - 2))
    for label, key, avg in (
        ("micro (14)", "all", "micro"),
        ("macro (14)", "all", "macro"),
        ("micro (5*)", "five", "micro"),
        ("macro (5*)", "five", "macro"),
    ):
        lines.append(f"  {label:<{width}}" + "".join(f"{_f(by[n]['ce'][key][avg]['f1']):>{col}}" for n in names))
    lines.append(f"  {'MCCS mean':<{width}}" + "".join(f"{_f(by[n]['mccs']['mean']):>{col}}" for n in names))
    return "\n".join(lines)


def plot_f1(result: dict[str, Any], path: str, *, title: str | None = None) -> str:
    """A per-observation F1 bar chart (PNG) with the micro/macro F1 as reference lines."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    ce = result["ce"]["all"]
    names = list(ce["per_observation"])
    f1 = [ce["per_observation"][o]["f1"] for o in names]
    colors = ["#c0392b" if o in engine.COMPETITION_FIVE else "#2e86c1" for o in names]
    fig, ax = plt.subplots(figsize=(9, 4.8), dpi=110)
    y = np.arange(len(names))
    ax.barh(y, f1, color=colors)
    ax.set_yticks(y, names)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("F1")
    ax.axvline(ce["micro"]["f1"], color="black", ls="--", lw=1, label=f"micro F1 {ce['micro']['f1']:.3f}")
    ax.axvline(ce["macro"]["f1"], color="gray", ls=":", lw=1.2, label=f"macro F1 {ce['macro']['f1']:.3f}")
    for yi, v in zip(y, f1):
        ax.text(min(v + 0.01, 0.93), yi, f"{v:.2f}", va="center", fontsize=8)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(title or f"CE F1 per observation (n = {result['n']}; red: 5-observation subset)", fontsize=10)
    fig.tight_layout()
    from mrgfast.atomic import replacing

    try:
        with replacing(path) as tmp:
            fig.savefig(tmp, format=Path(path).suffix.lstrip(".") or "png")
    finally:
        plt.close(fig)
    return path
