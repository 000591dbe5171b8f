"""A labeler scored against reference labels read from a file (a development set labelled by CheXbert,
by radiologists, ...): per observation precision, recall, F1 and Cohen's kappa, micro and macro, and the
reports where the two disagree.

A reference file is a table with the report text, an optional `scheme` column and the 14 observation
columns spelled as `mrgfast.OBSERVATIONS` (any other column is ignored). Two schemes:

- ``binary``: every cell 0 or 1 (``0.0`` / ``1.0`` too); 1 = present, i.e. positive *or* uncertain, as
  the CheXbert labels published for IU X-Ray are stored. A labeler's 1 and -1 both count as present.
- ``4way``: CheXpert's codes 1, 0, -1 and an empty cell for blank (``1.0`` / ``-1.0`` too). Scored
  present/absent as above, and besides on the four codes (agreement, kappa, per-code F1).

Present/absent counts go through `mrgfast.ce_metrics` (``uncertain_positive=True``), so the CE contract
(micro pools TP/FP/FN, macro averages per observation, no positives on either side = 0) holds here too.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mrgfast.contracts import BLANK, NEGATIVE, OBSERVATIONS, POSITIVE, UNCERTAIN
from mrgfast.engine import as_labels, ce_metrics
from mrgfast.labelers.agreement import CLASS_NAMES, cohen_kappa, confusion

SCHEMES: tuple[str, ...] = ("binary", "4way")
"""The label schemes a reference file may use (its `scheme` column, or ``--scheme``)."""

_SCHEME_ALIASES = {"binary": "binary", "4way": "4way", "4-way": "4way", "chexpert": "4way"}
_CELL_CODES = {
    "binary": {"1": POSITIVE, "1.0": POSITIVE, "0": NEGATIVE, "0.0": NEGATIVE},
    "4way": {
        "1": POSITIVE,
        "1.0": POSITIVE,
        "0": NEGATIVE,
        "0.0": NEGATIVE,
        "-1": UNCERTAIN,
        "-1.0": UNCERTAIN,
        "": BLANK,
    },
}
_CELL_HELP = {"binary": "0 or 1", "4way": "1, 0, -1 or empty (blank)"}
CODE_TEXT = {POSITIVE: "1", NEGATIVE: "0", UNCERTAIN: "-1", BLANK: "blank"}


class ReferenceError(ValueError):
    """A reference-label file that cannot be used; the message names the file, row and field."""


@dataclass
class ReferenceLabels:
    """Reference labels of n reports: `labels` is (n, 14) int8 in `OBSERVATIONS` order (binary: 1 / 0)."""

    path: str
    scheme: str
    ids: list[str]
    lines: list[int]
    texts: list[str]
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.texts)


def normalise_scheme(value: str) -> str | None:
    """The scheme a cell or option names (``binary``, ``4way``; ``4-way`` and ``chexpert`` = 4way), else None."""
    return _SCHEME_ALIASES.get(value.strip().lower())


def reference_from_rows(
    path: str,
    header: Sequence[str],
    rows: Iterable[tuple[int, Mapping[str, str]]],
    *,
    text_field: str = "text",
    id_field: str | None = None,
    scheme: str | None = None,
) -> ReferenceLabels:
    """Validate parsed rows (``(line, {column: cell})``) of `path` into `ReferenceLabels`.

    `id_field` names the id column (default ``id`` when there is one, else row numbers);
    `scheme` (``binary`` / ``4way``) is required when there is no `scheme` column and must equal it when
    there is one. Raises `ReferenceError` naming ``path:line`` and the column for a missing column, an
    empty text or id, a mixed or unknown scheme, a cell that is not a code of the scheme, a duplicate id.
    """
    if scheme is not None and normalise_scheme(scheme) is None:
        raise ReferenceError(f"unknown scheme {scheme!r}; choose one of {', '.join(SCHEMES)}")
    option_scheme = normalise_scheme(scheme) if scheme is not None else None
    header = [h.strip() for h in header]
    missing = [o for o in OBSERVATIONS if o not in header]
    if missing:
        raise ReferenceError(
            f"{path}:1: reference labels need the 14 observation columns; missing {missing} (have {header})"
        )
    if text_field not in header:
        raise ReferenceError(f"{path}:1: text column {text_field!r} not found; available: {header}")
    if id_field is not None and id_field not in header:
        raise ReferenceError(f"{path}:1: id column {id_field!r} not found; available: {header}")
    id_col = id_field if id_field is not None else ("id" if "id" in header else None)
    has_scheme = "scheme" in header
    if not has_scheme and option_scheme is None:
        raise ReferenceError(f"{path}:1: no 'scheme' column; say which scheme the labels use (--scheme binary|4way)")
    ids: list[str] = []
    lines: list[int] = []
    texts: list[str] = []
    out: list[list[int]] = []
    seen: dict[str, int] = {}
    file_scheme: tuple[str, int] | None = None
    for line, row in rows:
        where = f"{path}:{line}"
        if has_scheme:
            raw = (row.get("scheme") or "").strip()
            s = normalise_scheme(raw)
            if s is None:
                raise ReferenceError(f"{where}: column 'scheme' is {raw!r}; expected one of {', '.join(SCHEMES)}")
            if option_scheme is not None and s != option_scheme:
                raise ReferenceError(f"{where}: column 'scheme' is {raw!r} but --scheme says {option_scheme}")
            if file_scheme is None:
                file_scheme = (s, line)
            elif s != file_scheme[0]:
                raise ReferenceError(
                    f"{where}: column 'scheme' is {s} but line {file_scheme[1]} is {file_scheme[0]}; "
                    "one file holds one scheme"
                )
        else:
            s = option_scheme  # type: ignore[assignment]
        text = row.get(text_field) or ""
        if not text.strip():
            raise ReferenceError(f"{where}: column {text_field!r} is empty (a reference row needs its report)")
        rid = str(len(texts) + 1)
        if id_col is not None:
            rid = (row.get(id_col) or "").strip()
            if not rid:
                raise ReferenceError(f"{where}: column {id_col!r} is empty")
            if rid in seen:
                raise ReferenceError(f"{where}: id {rid!r} repeats line {seen[rid]}")
            seen[rid] = line
        codes = []
        for obs in OBSERVATIONS:
            cell = (row.get(obs) or "").strip()
            code = _CELL_CODES[s].get(cell)
            if code is None:
                raise ReferenceError(f"{where}: column {obs!r} is {cell!r}; the {s} scheme takes {_CELL_HELP[s]}")
            codes.append(code)
        ids.append(rid)
        lines.append(line)
        texts.append(text)
        out.append(codes)
    if not texts:
        raise ReferenceError(f"{path}: holds no reference rows")
    final = file_scheme[0] if file_scheme is not None else option_scheme
    labels = np.array(out, dtype=np.int8).reshape(len(texts), len(OBSERVATIONS))
    return ReferenceLabels(path, final, ids, lines, texts, labels)  # type: ignore[arg-type]


def read_reference_csv(
    path: str, *, text_field: str = "text", id_field: str | None = None, scheme: str | None = None
) -> ReferenceLabels:
    """`ReferenceLabels` of a CSV file (see the module doc); errors name the file, line and column."""
    from mrgfast.cli._io import BadRowError, InputError, collect, read_rows

    stream = read_rows(path, fmt="csv", text_field=text_field, id_field=id_field, progress=False, keep_fields=True)
    try:
        rows, _ = collect(stream, skip_bad=False)
    except (InputError, BadRowError) as e:
        raise ReferenceError(str(e)) from None
    header = stream.header or []
    if not header:
        raise ReferenceError(f"{path}: empty file (no header row)")
    return reference_from_rows(
        path,
        header,
        ((r.line, r.fields or {}) for r in rows),
        text_field=text_field,
        id_field=id_field,
        scheme=scheme,
    )


# ------------------------------------------------------------------------------------------- scoring
def _kappa2(tp: int, fp: int, fn: int, tn: int) -> float:
    return cohen_kappa(np.array([[tp, fp], [fn, tn]], dtype=np.int64))


def _prf(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def score_against_reference(predicted: np.ndarray, reference: ReferenceLabels, *, labeler: str = "labeler") -> dict:
    """How `predicted` ((n, 14) codes of the reference's reports) agrees with the reference (JSON-ready).

    Per observation: ``precision``, ``recall``, ``f1``, ``kappa`` (present = 1 or -1 on both sides),
    the counts and ``support`` (reference positives); ``micro`` (pooled counts) and ``macro`` (means).
    4way adds per observation ``agreement_4way``, ``kappa_4way``, ``f1_by_code`` and the 4 x 4 confusion.
    """
    pred = as_labels(predicted, labeler)
    ref = reference.labels
    if pred.shape != ref.shape:
        raise ValueError(f"{labeler} labelled {pred.shape[0]} reports but the reference has {ref.shape[0]}")
    ce = ce_metrics(pred, ref, uncertain_positive=True)
    per: dict[str, Any] = {}
    pooled4 = np.zeros((4, 4), dtype=np.int64)
    for j, obs in enumerate(OBSERVATIONS):
        c = ce["per_observation"][obs]
        entry = {
            "precision": c["precision"],
            "recall": c["recall"],
            "f1": c["f1"],
            "kappa": _kappa2(c["tp"], c["fp"], c["fn"], c["tn"]),
            "support": c["support"],
            "predicted": c["tp"] + c["fp"],
            "tp": c["tp"],
            "fp": c["fp"],
            "fn": c["fn"],
            "tn": c["tn"],
        }
        if reference.scheme == "4way":
            c4 = confusion(pred[:, j], ref[:, j])
            pooled4 += c4
            entry["agreement_4way"] = float(np.trace(c4) / c4.sum())
            entry["kappa_4way"] = cohen_kappa(c4)
            entry["f1_by_code"] = {
                CLASS_NAMES[k]: _prf(int(c4[k, k]), int(c4[k].sum() - c4[k, k]), int(c4[:, k].sum() - c4[k, k]))[2]
                for k in range(len(CLASS_NAMES))
            }
            entry["confusion"] = {"rows": labeler, "columns": "reference", "classes": list(CLASS_NAMES)}
            entry["confusion"]["counts"] = c4.tolist()
        per[obs] = entry
    tot = {k: sum(per[o][k] for o in OBSERVATIONS) for k in ("tp", "fp", "fn", "tn")}
    micro = dict(ce["micro"], kappa=_kappa2(tot["tp"], tot["fp"], tot["fn"], tot["tn"]))
    macro = dict(ce["macro"], kappa=float(np.nanmean([per[o]["kappa"] for o in OBSERVATIONS])))
    if reference.scheme == "4way":
        micro["agreement_4way"] = float(np.trace(pooled4) / pooled4.sum())
        micro["kappa_4way"] = cohen_kappa(pooled4)
        macro["agreement_4way"] = float(np.mean([per[o]["agreement_4way"] for o in OBSERVATIONS]))
        macro["kappa_4way"] = float(np.nanmean([per[o]["kappa_4way"] for o in OBSERVATIONS]))
    return {
        "n": len(reference),
        "scheme": reference.scheme,
        "labeler": labeler,
        "reference": reference.path,
        "per_observation": per,
        "micro": micro,
        "macro": macro,
    }


def disagreements(
    predicted: np.ndarray, reference: ReferenceLabels, *, observations: Sequence[str] | None = None
) -> list[dict[str, Any]]:
    """The reports where `predicted` and the reference disagree, in file order: binary scheme, on
    present/absent; 4way, on the code. Each: ``index``, ``id``, ``line``, ``text`` and per differing
    observation ``{"labeler": code, "reference": code, "kind": "false positive" | "false negative" |
    "code"}`` (codes as text: 1, 0, -1, blank). `observations` keeps only those columns."""
    pred = as_labels(predicted, "predicted")
    ref = reference.labels
    names = list(observations) if observations is not None else list(OBSERVATIONS)
    unknown = [o for o in names if o not in OBSERVATIONS]
    if unknown:
        raise ValueError(f"unknown observations {unknown}; known: {list(OBSERVATIONS)}")
    cols = [OBSERVATIONS.index(o) for o in names]
    p_present = np.isin(pred, (POSITIVE, UNCERTAIN))
    r_present = np.isin(ref, (POSITIVE, UNCERTAIN))
    differs = p_present != r_present if reference.scheme == "binary" else pred != ref
    out = []
    for i in np.flatnonzero(differs[:, cols].any(axis=1)):
        obs_diff = {}
        for j in cols:
            if not differs[i, j]:
                continue
            if p_present[i, j] and not r_present[i, j]:
                kind = "false positive"
            elif r_present[i, j] and not p_present[i, j]:
                kind = "false negative"
            else:
                kind = "code"
            obs_diff[OBSERVATIONS[j]] = {
                "labeler": CODE_TEXT[int(pred[i, j])],
                "reference": CODE_TEXT[int(ref[i, j])] if reference.scheme == "4way" else str(int(r_present[i, j])),
                "kind": kind,
            }
        out.append(
            {
                "index": int(i),
                "id": reference.ids[i],
                "line": reference.lines[i],
                "text": reference.texts[i],
                "observations": obs_diff,
            }
        )
    return out


def _f(x: float) -> str:
    return "  nan" if x != x else f"{x:5.3f}"


def format_reference_score(result: dict[str, Any], *, title: str | None = None) -> str:
    """The score as a text table: per observation support, predicted, P, R, F1, kappa; micro, macro."""
    four = result["scheme"] == "4way"
    lines = [title] if title else []
    lines.append(
        f"reports: {result['n']}   scheme: {result['scheme']}   labeler: {result['labeler']} vs the reference labels"
    )
    width = max(len(o) for o in OBSERVATIONS) + 2
    head = f"  {'observation':<{width}}{'ref+':>6}{'lab+':>6}{'P':>7}{'R':>7}{'F1':>7}{'kappa':>7}"
    if four:
        head += f"{'4-way':>7}{'kappa4':>7}"
    lines += [head, "  " + "-" * (len(head) - 2)]

    def row(name: str, r: dict[str, Any], support: str, predicted: str) -> str:
        s = f"  {name:<{width}}{support:>6}{predicted:>6}"
        s += "".join(f"{_f(r[k]):>7}" for k in ("precision", "recall", "f1", "kappa"))
        if four:
            s += "".join(f"{_f(r[k]):>7}" for k in ("agreement_4way", "kappa_4way"))
        return s

    per = result["per_observation"]
    for obs, r in per.items():
        lines.append(row(obs, r, str(r["support"]), str(r["predicted"])))
    lines.append("  " + "-" * (len(head) - 2))
    lines.append(row("micro", result["micro"], str(sum(r["support"] for r in per.values())), ""))
    lines.append(row("macro", result["macro"], "", ""))
    lines.append(
        "  ref+ / lab+: reports the reference / the labeler calls present (positive or uncertain); P, R, F1, kappa "
        "on present vs absent" + ("; 4-way: same code (1/0/-1/blank), kappa4 on the four codes" if four else "")
    )
    return "\n".join(lines)


def format_disagreement(item: dict[str, Any], trace: str | None = None) -> str:
    """One disagreeing report: its id, line, what differs, the text and (rust) the --explain trace."""
    diffs = "; ".join(
        f"{o}: labeler {d['labeler']}, reference {d['reference']} ({d['kind']})"
        for o, d in item["observations"].items()
    )
    lines = [f"-- {item['id']} (line {item['line']}): {diffs}"]
    if trace is not None:
        lines += ["   " + t for t in trace.splitlines()]
    else:
        lines.append(f"   text: {item['text']!r}")
    return "\n".join(lines)


def plot_reference_score(result: dict[str, Any], path: str, *, title: str | None = None) -> str:
    """PNG: precision, recall and F1 per observation as grouped bars, micro/macro F1 as lines."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from mrgfast.atomic import replacing

    per = result["per_observation"]
    names = list(per)
    y = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(9, 6), dpi=110)
    for k, (key, color) in enumerate((("precision", "#2e86c1"), ("recall", "#27ae60"), ("f1", "#c0392b"))):
        ax.barh(y + (k - 1) * 0.27, [per[o][key] for o in names], height=0.27, color=color, label=key)
    for key, style in (("micro", "--"), ("macro", ":")):
        ax.axvline(
            result[key]["f1"], color="k", linestyle=style, linewidth=1, label=f"{key} F1 {result[key]['f1']:.3f}"
        )
    ax.set_yticks(y, [f"{o} ({per[o]['support']})" for o in names], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.06), ncol=5)
    ax.set_title(
        title or f"{result['labeler']} vs reference labels, n = {result['n']} ({result['scheme']})", fontsize=9
    )
    fig.tight_layout()
    with replacing(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path
