"""Held-out evaluation: greedy reports, CE metrics and mean MCCS against the references."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from mrgfast.atomic import write_text
from mrgfast.contracts import DEFAULT_MARGIN, DEFAULT_UNCERTAIN
from mrgfast.eval.predictions import Prediction
from mrgfast.reward.format import extract_report

log = logging.getLogger("mrgfast.eval")


def generate_reports(
    model,
    processor,
    studies,
    *,
    instruction: str,
    batch_size: int = 32,
    max_new_tokens: int = 128,
    progress: bool = True,
) -> list[str]:
    """Greedy completions for every study, in batches (the generation code of ``mrgfast eval``)."""
    from tqdm.auto import tqdm

    from mrgfast.eval.generate import GenerationSettings, generate_batch

    settings = GenerationSettings(max_new_tokens=max_new_tokens)
    model.eval()
    outs: list[str] = []
    for start in tqdm(range(0, len(studies), batch_size), desc="eval", disable=not progress, leave=False):
        outs += generate_batch(model, processor, studies[start : start + batch_size], instruction, settings)
    return outs


def score(
    completions: list[str],
    references: list[str],
    *,
    margin: float = DEFAULT_MARGIN,
    uncertain: float = DEFAULT_UNCERTAIN,
) -> dict:
    """The trainer's summary of :func:`mrgfast.eval.metrics.eval_metrics` (same code as eval and score)."""
    from mrgfast.eval.metrics import eval_metrics

    r = eval_metrics(completions, references, margin=margin, uncertain=uncertain, nlg=False)
    micro, macro = r["ce"]["all"]["micro"], r["ce"]["all"]["macro"]
    return {
        "n": r["n"],
        "ce_f1_micro": micro["f1"],
        "ce_precision_micro": micro["precision"],
        "ce_recall_micro": micro["recall"],
        "ce_f1_macro": macro["f1"],
        "mccs_mean": r["mccs"]["mean"],
        "format_rate": r["format"]["rate"],
        # side-aware, beside them (the rule labeler's sides; docs/ARCHITECTURE.md)
        "mccs_plus_mean": r["mccs_plus"]["mean"],
        "ce_f1_micro_sides": r["ce_sides"]["all"]["micro"]["f1"],
    }


def evaluate(
    model,
    processor,
    studies,
    *,
    instruction: str,
    out_dir: str | Path,
    tag: str,
    batch_size: int = 32,
    max_new_tokens: int = 128,
    margin: float = DEFAULT_MARGIN,
    uncertain: float = DEFAULT_UNCERTAIN,
) -> dict:
    t0 = time.time()
    completions = generate_reports(
        model, processor, studies, instruction=instruction, batch_size=batch_size, max_new_tokens=max_new_tokens
    )
    res = score(completions, [s.report for s in studies], margin=margin, uncertain=uncertain)
    res["tag"] = tag
    res["seconds"] = round(time.time() - t0, 1)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # the predictions schema of `mrgfast eval` (mrgfast.contracts.PREDICTION_FIELDS), readable by `mrgfast score`
    lines = [Prediction(s.id, c, extract_report(c), s.report).to_json() + "\n" for s, c in zip(studies, completions)]
    write_text(out_dir / f"predictions_{tag}.jsonl", "".join(lines))
    write_text(out_dir / f"eval_{tag}.json", json.dumps(res, indent=1))
    log.info(
        "eval %s: CE-F1(micro)=%.4f MCCS=%.4f format=%.3f (n=%d, %.0fs)",
        tag,
        res["ce_f1_micro"],
        res["mccs_mean"],
        res["format_rate"],
        res["n"],
        res["seconds"],
    )
    return res
