"""Metrics of ``mrgfast eval``: the shared scoring code plus format compliance and language metrics.

* MCCS and clinical efficacy come from :func:`mrgfast.scoring.score_pairs` — the function behind
  ``mrgfast score`` — called on the generated texts with ``extract=True``, so
  ``mrgfast score --pred P --pred-field generated --ref P --ref-field reference`` on the predictions
  file gives the same numbers by construction;
* format compliance is the share of generated texts with :func:`mrgfast.reward.format_score` = 1
  (the GRPO format reward);
* BLEU-1..4, METEOR, ROUGE-L and CIDEr come from :func:`mrgfast.nlg.nlg_metrics`
  (pycocoevalcap) on the extracted reports against the references.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from mrgfast import engine

NLG_KEYS = (
    ("bleu1", "BLEU-1"),
    ("bleu2", "BLEU-2"),
    ("bleu3", "BLEU-3"),
    ("bleu4", "BLEU-4"),
    ("meteor", "METEOR"),
    ("rouge_l", "ROUGE-L"),
    ("cider", "CIDEr"),
)


def eval_metrics(
    generated: Sequence[str],
    references: Sequence[str],
    *,
    ids: Sequence[str] | None = None,
    margin: float = engine.DEFAULT_MARGIN,
    uncertain: float = engine.DEFAULT_UNCERTAIN,
    uncertain_positive: bool = False,
    side_weight: float = engine.DEFAULT_SIDE_WEIGHT,
    threads: int | None = None,
    meteor: bool | None = None,
    nlg: bool = True,
    labelers: Sequence[Any] | None = None,
    radeval: Sequence[str] | None = None,
) -> dict[str, Any]:
    """All metrics of generated texts against references (a JSON-ready dict).

    The keys of :func:`mrgfast.scoring.score_pairs` (``n``, ``params``, ``mccs``, ``ce``, ``mccs_plus``,
    ``ce_sides``, ``per_sample``) plus ``format`` (compliance rate and count) and ``nlg`` (BLEU-1..4, METEOR,
    ROUGE-L, CIDEr; ``None`` with ``nlg=False``) and ``timing_s``.
    """
    from mrgfast.reward.format import extract_report, format_score
    from mrgfast.scoring import score_pairs

    if len(generated) != len(references):
        raise ValueError(f"{len(generated)} generated texts but {len(references)} references")
    t0 = time.perf_counter()
    result = score_pairs(
        list(generated),
        list(references),
        ids=ids,
        margin=margin,
        uncertain=uncertain,
        uncertain_positive=uncertain_positive,
        threads=threads,
        extract=True,
        labelers=labelers,
        side_weight=side_weight,
    )
    t_ce = time.perf_counter() - t0
    fmt = [format_score(g) for g in generated]
    compliant = int(sum(1 for f in fmt if f == 1.0))
    result["format"] = {"rate": compliant / len(fmt), "compliant": compliant}
    t1 = time.perf_counter()
    if nlg:
        from mrgfast.nlg import nlg_metrics

        result["nlg"] = nlg_metrics([extract_report(g) for g in generated], list(references), meteor=meteor)
    else:
        result["nlg"] = None
    t2 = time.perf_counter()
    if radeval:
        from mrgfast.eval.radeval_metrics import radeval_metrics

        result["radeval"] = radeval_metrics([extract_report(g) for g in generated], list(references), radeval)
    result["timing_s"] = {
        "mccs_ce": round(t_ce, 4),
        "nlg": round(t2 - t1, 4),
        "radeval": round(time.perf_counter() - t2, 4),
    }
    return result


def _v(x: Any) -> str:
    return "  n/a" if x is None else f"{x:.4f}"


def format_eval_table(result: dict[str, Any], *, title: str | None = None) -> str:
    """The score table of :func:`mrgfast.scoring.format_table`, then format compliance and NLG."""
    from mrgfast.scoring import format_table

    lines = [format_table(result, title=title)]
    f = result["format"]
    lines.append(
        f"format compliance (<think>…</think><report>…</report>): {f['rate']:.4f} ({f['compliant']} of {result['n']})"
    )
    nlg = result.get("nlg")
    if nlg:
        lines.append("language metrics (extracted report vs reference, pycocoevalcap):")
        lines.append("  " + "".join(f"{name:>9}" for _, name in NLG_KEYS))
        lines.append("  " + "".join(f"{_v(nlg.get(key)):>9}" for key, _ in NLG_KEYS))
        if nlg.get("meteor") is None and nlg.get("meteor_skipped"):
            lines.append(f"  (METEOR skipped: {nlg['meteor_skipped']})")
    radeval = result.get("radeval")
    if radeval:
        lines.append("RadEval metrics (extracted report vs reference):")
        lines += [f"  {k:<28}{_v(v) if isinstance(v, float) else v}" for k, v in radeval.items()]
    return "\n".join(lines)
