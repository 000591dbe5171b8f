"""``mrgfast eval``: generate reports for a split, write them as they come, score them.

Outputs (under ``--out``, default ``eval/``)::

    predictions.jsonl            one line per study: id, generated, report (extracted), reference
    predictions.jsonl.meta.json  the settings the predictions were generated with (resume check)
    metrics.json                 CE (14 and 5 observations), MCCS, format compliance, BLEU-1..4,
                                 METEOR, ROUGE-L, CIDEr, timings, settings

A rerun with the same settings skips every study already in ``predictions.jsonl`` (an interrupted
run continues where it stopped; a finished one only recomputes the metrics).
"""

from __future__ import annotations

import logging
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mrgfast.eval.generate import GenerationError, GenerationSettings, resolve_model
from mrgfast.eval.predictions import (
    Prediction,
    PredictionsError,
    PredictionsWriter,
    check_against_studies,
    check_meta,
    load_existing,
    meta_path,
    write_meta,
)

log = logging.getLogger("mrgfast.eval")


class EvalError(RuntimeError):
    pass


@dataclass
class EvalOptions:
    model: str
    data: str
    adapter: str | None = None
    image_root: str | None = None
    dataset_kind: str = "iu_xray"
    max_images: int | None = None
    split: str = "test"
    limit: int | None = None
    out: str = "eval"
    predictions: str | None = None
    metrics: str | None = None
    batch_size: int = 16
    generation: GenerationSettings = field(default_factory=GenerationSettings)
    instruction: str | None = None
    use_vllm: bool = False
    vllm_gpu_memory_utilization: float = 0.85
    attn_implementation: str = "auto"
    dtype: str = "auto"
    device: str | None = None
    trust_remote_code: bool = False
    image_check: str = "exists"
    overwrite: bool = False
    meteor: bool | None = None
    nlg: bool = True
    margin: float = 0.5
    uncertain: float = 1.0
    uncertain_positive: bool = False
    side_weight: float = 0.5
    """MCCS+ side weight for the side-aware numbers reported beside MCCS and CE."""
    threads: int | None = None
    progress: bool | None = None
    labelers: list[Any] | None = None
    """`mrgfast.labelers` backends for CE/MCCS (default: the Rust engine); the first is the primary."""
    radeval: list[str] | None = None
    """RadEval metric names to add (offline; see mrgfast.eval.radeval_metrics)."""

    @property
    def predictions_path(self) -> Path:
        return Path(self.predictions) if self.predictions else Path(self.out) / "predictions.jsonl"

    @property
    def metrics_path(self) -> Path:
        return Path(self.metrics) if self.metrics else Path(self.out) / "metrics.json"


def _abs(p: str | None) -> str | None:
    return None if p is None else str(Path(p).resolve())


def generation_settings(opts: EvalOptions, model: str, adapter: str | None, instruction: str) -> dict[str, Any]:
    """What determines the predictions (a resume must match all of it)."""
    return {
        "model": _abs(model),
        "adapter": _abs(adapter),
        "data": _abs(opts.data),
        "image_root": _abs(opts.image_root),
        "dataset_kind": opts.dataset_kind,
        "max_images": opts.max_images,
        "split": opts.split,
        "limit": opts.limit,
        "instruction": instruction,
        "engine": "vllm" if opts.use_vllm else "transformers",
        "generation": opts.generation.as_dict(),
    }


def score_command(pred_path: Path, opts: EvalOptions) -> str:
    """The `mrgfast score` command that reproduces the MCCS/CE numbers from the predictions file."""
    p = shlex.quote(str(pred_path))
    cmd = (
        f"mrgfast score --pred {p} --pred-field generated --ref {p} --ref-field reference "
        f"--margin {opts.margin} --uncertain {opts.uncertain}"
    )
    if opts.side_weight != 0.5:
        cmd += f" --side-weight {opts.side_weight}"
    if opts.uncertain_positive:
        cmd += " --uncertain-positive"
    names = [lab.name for lab in opts.labelers or []]
    if names and names != ["rust"]:
        cmd += f" --labeler {','.join(names)}"
        chex = next((lab for lab in opts.labelers if lab.name == "chexbert"), None)
        if chex is not None:
            cmd += f" --chexbert-checkpoint {shlex.quote(chex.checkpoint)} --bert-path {shlex.quote(chex.bert_path)}"
    return cmd


def run_eval(opts: EvalOptions, *, on_batch: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Generate what is missing from the predictions file, then compute and write the metrics.

    ``on_batch(done, total)`` is called after each batch is on disk (progress hooks, tests).
    Returns the metrics dict (also written to ``opts.metrics_path``). The folder of the predictions
    file is locked for the whole call: a second eval on it raises
    :class:`mrgfast.runlock.FolderLocked` naming the holder's PID instead of writing duplicate ids.
    """
    from mrgfast.runlock import folder_lock

    with folder_lock(opts.predictions_path.parent, "eval"):
        return _run_eval(opts, on_batch)


def _run_eval(opts: EvalOptions, on_batch: Callable[[int, int], None] | None) -> dict[str, Any]:
    from mrgfast.data.r2gen import DEFAULT_INSTRUCTION, DataError, read_annotation

    t0 = time.perf_counter()
    opts.generation.validate()
    if opts.batch_size < 1:
        raise EvalError(f"--batch-size must be >= 1, got {opts.batch_size}")
    if opts.limit is not None and opts.limit < 1:
        raise EvalError(f"--limit must be >= 1, got {opts.limit}")
    model, adapter = resolve_model(opts.model, opts.adapter)
    instruction = opts.instruction or DEFAULT_INSTRUCTION
    try:
        data = read_annotation(
            opts.data,
            opts.image_root,
            splits=(opts.split,),
            kind=opts.dataset_kind,
            max_images=opts.max_images,
            check=opts.image_check,
            max_samples=opts.limit,
        )
    except DataError as e:
        raise EvalError(str(e)) from None
    studies = data[opts.split]
    if not studies:
        raise EvalError(f"{opts.data}: split {opts.split!r} holds no studies")
    ids = [s.id for s in studies]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise EvalError(f"{opts.data}: split {opts.split!r} repeats id {dup!r}; ids must be unique to resume by id")

    pred_path = opts.predictions_path
    settings = generation_settings(opts, model, adapter, instruction)
    if opts.overwrite:
        for p in (pred_path, meta_path(pred_path)):
            if p.exists():
                p.unlink()
    try:
        existing = load_existing(pred_path)
        why = check_meta(pred_path, settings, have_records=bool(existing.records))
        if why:
            raise EvalError(
                f"{why}. Rerun with the same settings to resume, or pass --overwrite to start over (or --out elsewhere)"
            )
        check_against_studies(pred_path, existing.records, studies)
    except PredictionsError as e:
        raise EvalError(str(e)) from None
    if existing.truncated_bytes:
        log.warning(
            "%s: cut off a partial last line (%d bytes, an interrupted write); that study is generated again",
            pred_path,
            existing.truncated_bytes,
        )
    done = {r.id: r for r in existing.records}
    todo = [s for s in studies if s.id not in done]
    resumed = len(done)
    if resumed:
        log.info(
            "resuming: %d of %d studies already in %s, %d to generate", resumed, len(studies), pred_path, len(todo)
        )

    t_gen = 0.0
    t_load = 0.0
    if todo:
        t1 = time.perf_counter()
        gen = _generator(opts, model, adapter)
        t_load = time.perf_counter() - t1
        pred_path.parent.mkdir(parents=True, exist_ok=True)
        write_meta(pred_path, settings)
        position = {s.id: i for i, s in enumerate(studies)}
        from mrgfast.reward.format import extract_report

        bar = _bar(len(studies), resumed, opts.progress)
        t2 = time.perf_counter()
        try:
            with PredictionsWriter(pred_path) as writer:
                for start in range(0, len(todo), opts.batch_size):
                    batch = todo[start : start + opts.batch_size]
                    # per-batch seed from the split position of its first study: a resumed run samples alike
                    texts = gen.generate(
                        batch, instruction, opts.generation, opts.generation.seed + position[batch[0].id]
                    )
                    if len(texts) != len(batch):
                        raise EvalError(f"the generator returned {len(texts)} texts for {len(batch)} studies")
                    recs = [Prediction(s.id, t, extract_report(t), s.report) for s, t in zip(batch, texts)]
                    writer.write_batch(recs)
                    for r in recs:
                        done[r.id] = r
                    if bar is not None:
                        bar.update(len(recs))
                    if on_batch is not None:
                        on_batch(len(done), len(studies))
        finally:
            if bar is not None:
                bar.close()
        t_gen = time.perf_counter() - t2
    elif not meta_path(pred_path).is_file():
        write_meta(pred_path, settings)

    records: list[Prediction] = [done[s.id] for s in studies]
    from mrgfast.eval.metrics import eval_metrics

    result = eval_metrics(
        [r.generated for r in records],
        [r.reference for r in records],
        ids=ids,
        margin=opts.margin,
        uncertain=opts.uncertain,
        uncertain_positive=opts.uncertain_positive,
        side_weight=opts.side_weight,
        threads=opts.threads,
        meteor=opts.meteor,
        nlg=opts.nlg,
        labelers=opts.labelers,
        radeval=opts.radeval,
    )
    metrics_path = opts.metrics_path
    generated_now = len(todo)
    timing = dict(result.pop("timing_s"))
    timing.update(
        model_load=round(t_load, 3),
        generate=round(t_gen, 3),
        generate_per_study=round(t_gen / generated_now, 4) if generated_now else None,
        total=round(time.perf_counter() - t0, 3),
    )
    result = {
        "n": result["n"],
        "model": settings["model"],
        "adapter": settings["adapter"],
        "data": settings["data"],
        "split": opts.split,
        "engine": settings["engine"],
        "generation": settings["generation"],
        "batch_size": opts.batch_size,
        "predictions": str(pred_path),
        "resumed": resumed,
        "generated_now": generated_now,
        "score_command": score_command(pred_path, opts),
        **{k: v for k, v in result.items() if k != "n"},
        "timing_s": timing,
    }
    metrics_path.parent.mkdir(parents=True, exist_ok=True)
    from mrgfast.atomic import write_json

    write_json(metrics_path, result)
    return result


def _generator(opts: EvalOptions, model: str, adapter: str | None):
    from mrgfast.models.loading import ModelError

    try:
        if opts.use_vllm:
            from mrgfast.data.r2gen import KINDS
            from mrgfast.eval.generate import VLLMGenerator

            return VLLMGenerator(
                model,
                adapter,
                max_images=opts.max_images or KINDS[opts.dataset_kind],
                dtype=opts.dtype,
                gpu_memory_utilization=opts.vllm_gpu_memory_utilization,
                trust_remote_code=opts.trust_remote_code,
                seed=opts.generation.seed,
            )
        from mrgfast.eval.generate import HFGenerator

        return HFGenerator(
            model,
            adapter,
            attn_implementation=opts.attn_implementation,
            dtype=opts.dtype,
            device=opts.device,
            trust_remote_code=opts.trust_remote_code,
        )
    except ModelError as e:
        raise EvalError(str(e)) from None


def _bar(total: int, initial: int, enabled: bool | None):
    if enabled is False:
        return None
    import sys

    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover
        return None
    return tqdm(
        total=total,
        initial=initial,
        desc="eval",
        unit="study",
        file=sys.stderr,
        disable=None if enabled is None else False,
        leave=False,
    )


__all__ = ["EvalError", "EvalOptions", "GenerationError", "GenerationSettings", "run_eval"]
