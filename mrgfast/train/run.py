"""The ``mrgfast train`` pipeline: assets → data → SFT → eval → GRPO → eval → plot, resumable.

Run folder layout (``output_dir``)::

    config.yaml            the merged configuration
    state.json             completed stages and evaluation results (what --resume skips)
    metrics.jsonl          every trainer log line, tagged with its stage
    train.log              the log
    .mrgfast.lock          held by the running process (a second run on the folder exits 2)
    sft/checkpoint-N/      SFT checkpoints (written in sft/.staging/, renamed when complete);
                           sft/final/ the SFT model (LoRA merged) + processor
    grpo/checkpoint-N/     GRPO checkpoints (adapter, optimizer, scheduler, RNG, trainer state)
    grpo/final/            the GRPO adapter (or model) + processor
    grpo/data_order.jsonl  the study ids of each GRPO generation batch (the data position)
    eval/                  eval_<stage>.json, predictions_<stage>.jsonl
    grpo_curves.png        reward, MCCS, format reward, KL over steps
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import time
from pathlib import Path

import yaml

from mrgfast.train.checkpoints import STAGING_DIR as STAGING
from mrgfast.train.checkpoints import CheckpointError, check_resumable, checkpoints, resume_point
from mrgfast.train.config import ConfigError, RunConfig, describe, validate_config
from mrgfast.train.distributed import is_zero3_partitioned

log = logging.getLogger("mrgfast.train")


class RunError(RuntimeError):
    pass


def _rank() -> int:
    """This process's global rank under `accelerate launch` / torchrun (0 when run alone)."""
    return int(os.environ.get("RANK", "0"))


def _is_main() -> bool:
    return _rank() == 0


def _setup_logging(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger("mrgfast")
    root.setLevel(logging.INFO)
    fmt = logging.Formatter("%(asctime)s %(name)s: %(message)s", "%H:%M:%S")
    for h in list(root.handlers):
        if getattr(h, "_mrgfast", False):
            root.removeHandler(h)
    # Under several processes only rank 0 writes the log file; the others log warnings to stderr.
    handlers = [logging.StreamHandler(sys.stderr)]
    if _is_main():
        handlers.append(logging.FileHandler(out / "train.log"))
    else:
        root.setLevel(logging.WARNING)
        fmt = logging.Formatter(f"%(asctime)s [rank {_rank()}] %(name)s: %(message)s", "%H:%M:%S")
    for h in handlers:
        h.setFormatter(fmt)
        h._mrgfast = True
        root.addHandler(h)
    root.propagate = False


def _state(out: Path) -> dict:
    p = out / "state.json"
    return json.loads(p.read_text()) if p.is_file() else {"completed": [], "evals": {}}


def _save_state(out: Path, state: dict) -> None:
    if not _is_main():  # one writer: every rank holds the same state
        return
    from mrgfast.atomic import write_json

    write_json(out / "state.json", state)


def prepare_assets(cfg: RunConfig) -> None:
    """Generate the synthetic data / tiny model when the config asks for it and they are absent."""
    m = cfg.mrg
    if m.synth_if_missing and m.annotation and not Path(m.annotation).is_file():
        from mrgfast.data.synth import generate

        log.info("generating the synthetic dataset at %s", Path(m.annotation).parent)
        generate(
            Path(m.annotation).parent,
            n_train=m.synth_train,
            n_val=m.synth_val,
            n_test=m.synth_test,
            image_size=m.synth_image_size,
            views=m.synth_views,
            seed=m.seed,
        )
    if m.tiny_if_missing and m.model_name_or_path and not (Path(m.model_name_or_path) / "config.json").is_file():
        from mrgfast.models.tiny import build_tiny

        log.info("building the tiny Qwen2.5-VL at %s", m.model_name_or_path)
        build_tiny(
            m.model_name_or_path,
            hidden_size=m.tiny_hidden_size,
            num_layers=m.tiny_layers,
            image_size=m.synth_image_size,
            seed=m.seed,
        )


def _main_process_first(fn) -> None:
    """Run `fn` on rank 0 before the other ranks (they then find its files); alone, just run it."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        fn()
        return
    from accelerate import PartialState

    with PartialState().main_process_first():
        fn()


# What a previous run leaves in output_dir; --overwrite removes exactly these.
RUN_FILES = ("sft", "grpo", "eval", "state.json", "metrics.jsonl", "grpo_curves.png", "train.log", "skipped_ids.txt")


def previous_run(out: Path, stages=("sft", "grpo")) -> list[str]:
    """What in `out` shows an earlier (finished or interrupted) run: state, checkpoints, logs."""
    found = [n for n in ("state.json", "metrics.jsonl") if (out / n).is_file()]
    for s in stages:
        found += [f"{s}/{c.name}" for c in checkpoints(out / s)[:1]]
        if (out / s / STAGING).is_dir() and any((out / s / STAGING).iterdir()):
            found.append(f"{s}/{STAGING}")
    return found


def plan_resume(out: Path, stages: list[str], completed: list[str], resume: str | None) -> dict[str, Path]:
    """The checkpoint each unfinished stage resumes from ({} when starting fresh); refuses what cannot be."""
    if not resume:
        return {}
    if resume != "latest":
        ckpt = Path(resume)
        if not ckpt.is_dir():
            raise RunError(f"--resume {resume}: checkpoint folder not found")
        owner = next((s for s in stages if ckpt.resolve().parent == (out / s).resolve()), None)
        if owner is None:
            raise RunError(
                f"--resume {resume} is not a checkpoint of this run: expected a checkpoint-N folder under "
                + " or ".join(str(out / s) for s in stages)
            )
        earlier = [s for s in stages[: stages.index(owner)] if s not in completed]
        if earlier:
            raise RunError(f"--resume {resume} is a {owner} checkpoint, but {', '.join(earlier)} has not completed")
        if owner in completed:
            raise RunError(f"--resume {resume}: stage {owner} has already completed in {out}")
        try:
            check_resumable(ckpt)
        except CheckpointError as e:
            raise RunError(str(e)) from None
        return {owner: ckpt}
    plan: dict[str, Path] = {}
    for s in stages:
        if s in completed:
            continue
        ckpt, skipped = resume_point(out / s)
        for bad, why in skipped:
            log.warning("%s: skipping %s: %s", s, bad, why)
        if ckpt is not None:
            try:
                check_resumable(ckpt)
            except CheckpointError as e:
                raise RunError(str(e)) from None
            plan[s] = ckpt
        elif skipped:
            log.warning("%s: no complete checkpoint; the stage starts from its beginning", s)
        break  # later stages have not started
    if not plan and not completed:
        raise RunError(
            f"--resume: nothing to resume in {out} (no completed stage and no complete checkpoint); "
            "drop --resume to start a new run"
        )
    return plan


def run(cfg: RunConfig, *, resume: str | None = None, overwrite: bool = False) -> int:
    """Run the configured stages in `output_dir`, holding the folder's lock (see the module doc)."""
    from mrgfast.runlock import FolderLocked, folder_lock

    try:
        validate_config(cfg)
    except ConfigError as e:
        raise RunError(f"configuration error: {e}") from None
    out = Path(cfg.mrg.output_dir)
    if not _is_main():
        return _run(cfg, resume=resume, overwrite=overwrite)
    try:
        with folder_lock(out, "train"):
            return _run(cfg, resume=resume, overwrite=overwrite)
    except FolderLocked as e:
        raise RunError(str(e)) from None


def _run(cfg: RunConfig, *, resume: str | None, overwrite: bool) -> int:
    m = cfg.mrg
    out = Path(m.output_dir)
    if resume and overwrite:
        raise RunError("--resume and --overwrite contradict each other; pass one")
    found = previous_run(out, m.stages)
    if found and not resume:
        if not overwrite:
            raise RunError(
                f"{out} holds a previous run ({', '.join(found)}); rerun the same command with --resume to "
                "continue it from its last complete checkpoint, or with --overwrite to delete it and start over"
            )
        if _is_main():
            for sub in RUN_FILES:
                p = out / sub
                shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
    _setup_logging(out)
    t_start = time.time()
    state = _state(out)
    plan = plan_resume(out, list(m.stages), state["completed"], resume)
    if _is_main():
        from mrgfast.atomic import write_text

        write_text(out / "config.yaml", yaml.safe_dump(cfg.raw, sort_keys=False))
    log.info("configuration:\n%s", describe(cfg))
    if resume:
        where = ", ".join(f"{s} from {p}" for s, p in plan.items()) or "no checkpoint (next stage from its start)"
        log.info("resuming: completed stages %s; %s", state["completed"] or "none", where)

    import torch
    from transformers import set_seed

    from mrgfast.data.r2gen import DEFAULT_INSTRUCTION, read_annotation

    _main_process_first(lambda: prepare_assets(cfg))
    if not m.model_name_or_path:
        raise RunError("no model: set model_name_or_path (--model-path DIR)")
    if not m.annotation:
        raise RunError("no dataset: set annotation (--annotation PATH/annotation.json)")
    if m.threads is not None:
        torch.set_num_threads(m.threads)
    elif not os.environ.get("OMP_NUM_THREADS"):  # respect an explicit thread budget (several runs per machine)
        torch.set_num_threads(max(1, os.cpu_count() or 1))
    set_seed(m.seed)
    instruction = m.instruction or DEFAULT_INSTRUCTION
    splits = tuple(dict.fromkeys([m.train_split] + ([m.eval_split] if m.evaluate else [])))
    data = read_annotation(
        m.annotation,
        m.image_root,
        splits=splits,
        kind=m.dataset_kind,
        max_images=m.max_images,
        skip_missing=m.skip_missing_images,
        skipped_file=out / "skipped_ids.txt",
        check=m.image_check,
        max_samples=None,
    )
    train_studies = data[m.train_split]
    if m.max_train_samples:
        log.info("train: using the first %d of %d studies (max_train_samples)", m.max_train_samples, len(train_studies))
        train_studies = train_studies[: m.max_train_samples]
    eval_studies = data.get(m.eval_split, [])
    if m.eval_samples:
        eval_studies = eval_studies[: m.eval_samples]

    model_path = m.model_name_or_path
    interrupted = False
    for stage in m.stages:
        stage_dir = out / stage
        if stage in state["completed"]:
            log.info("%s: already completed, skipping", stage)
            if stage == "sft":
                model_path = str(stage_dir / "final")
            continue
        ckpt = str(plan[stage]) if stage in plan else None
        set_seed(m.seed)
        if stage == "sft":
            model, processor, interrupted = run_sft(cfg, model_path, train_studies, instruction, ckpt)
            if not interrupted:
                model_path = str(stage_dir / "final")
        else:
            model, processor, interrupted = run_grpo(cfg, model_path, train_studies, instruction, ckpt)
        if interrupted:
            log.warning(
                "%s interrupted; checkpoint saved under %s. Continue with: mrgfast train ... --resume", stage, stage_dir
            )
            return 130
        state["completed"].append(stage)
        _save_state(out, state)
        evaluate_now = m.evaluate and eval_studies and _is_main()
        if evaluate_now and any(is_zero3_partitioned(p) for p in model.parameters()):
            # rank 0 alone cannot generate with ZeRO-3 partitioned weights (every forward is a collective)
            log.warning(
                "%s: no evaluation inside a DeepSpeed ZeRO-3 run; evaluate the saved model with: "
                "mrgfast eval --model %s ...",
                stage,
                stage_dir / "final",
            )
            evaluate_now = False
        if evaluate_now:
            from mrgfast.train.evaluate import evaluate

            res = evaluate(
                model,
                processor,
                eval_studies,
                instruction=instruction,
                out_dir=out / "eval",
                tag=stage,
                batch_size=m.eval_batch_size,
                max_new_tokens=m.eval_max_new_tokens,
                margin=m.mccs_margin,
                uncertain=m.mccs_uncertain,
            )
            state["evals"][stage] = res
            _save_state(out, state)
        del model
    if not _is_main():
        return 0
    if m.plot and "grpo" in m.stages:
        from mrgfast.train.plotting import plot_grpo

        png = plot_grpo(out / "metrics.jsonl", out / "grpo_curves.png")
        if png:
            log.info("plot: %s", png)
    _print_summary(state, out, time.time() - t_start)
    return 0


def _print_summary(state: dict, out: Path, seconds: float) -> None:
    evals = state.get("evals", {})
    if evals:
        print("\n== held-out evaluation ==")
        print(f"{'after':<8}{'n':>6}{'CE-F1 micro':>13}{'CE-F1 macro':>13}{'mean MCCS':>11}{'format':>8}")
        for tag in ("base", "sft", "grpo"):
            r = evals.get(tag)
            if r:
                print(
                    f"{tag:<8}{r['n']:>6}{r['ce_f1_micro']:>13.4f}{r['ce_f1_macro']:>13.4f}{r['mccs_mean']:>11.4f}"
                    f"{r['format_rate']:>8.3f}"
                )
    print(f"run folder: {out}  ({seconds:.0f}s this invocation)")


# ----------------------------------------------------------------------------------------------- stages
def _callbacks(cfg: RunConfig, stage: str):
    from mrgfast.train.callbacks import InterruptCallback, MetricsJSONLCallback

    return [MetricsJSONLCallback(Path(cfg.mrg.output_dir) / "metrics.jsonl", stage), InterruptCallback()]


def _peft(cfg: RunConfig, model):
    from mrgfast.models.loading import lora_config

    m = cfg.mrg
    return lora_config(m.lora_r, m.lora_alpha, m.lora_dropout, m.lora_target_modules, m.lora_vision, model)


def _log_trainable(model, stage: str) -> None:
    n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
    n_all = sum(p.numel() for p in model.parameters())
    log.info("%s: trainable parameters %d of %d (%.2f%%)", stage, n_train, n_all, 100 * n_train / max(n_all, 1))


def _load(cfg: RunConfig, model_path: str):
    """The stage's starting model and its processor, with the run's loading options."""
    from mrgfast.models.loading import load_model, load_processor

    m = cfg.mrg
    processor = load_processor(
        model_path, trust_remote_code=m.trust_remote_code, min_pixels=m.min_pixels, max_pixels=m.max_pixels
    )
    model = load_model(
        model_path, attn_implementation=m.attn_implementation, dtype=m.dtype, trust_remote_code=m.trust_remote_code
    )
    if m.vision_packed_attention:
        from mrgfast.models.vision_attention import use_packed_vision_attention

        use_packed_vision_attention(model)
    return model, processor


def run_sft(cfg: RunConfig, model_path: str, studies, instruction: str, ckpt: str | None):
    from mrgfast.data.r2gen import to_dataset
    from mrgfast.train.trainers import MrgSFTTrainer

    m = cfg.mrg
    model, processor = _load(cfg, model_path)
    ds = to_dataset(studies, instruction=instruction, with_completion=True).remove_columns(["id", "report"])
    cbs = _callbacks(cfg, "sft")
    trainer = MrgSFTTrainer(
        model=model,
        args=cfg.sft,
        train_dataset=ds,
        processing_class=processor,
        peft_config=_peft(cfg, model) if m.sft_use_lora else None,
        callbacks=cbs,
    )
    _log_trainable(trainer.model, "sft")
    if ckpt:
        log.info("sft: resuming from %s", ckpt)
    trainer.train(resume_from_checkpoint=ckpt)
    if cbs[1].requested:
        return None, processor, True
    final = Path(cfg.sft.output_dir) / "final"
    model = trainer.model
    if m.sft_use_lora:
        model = model.merge_and_unload()
    model.save_pretrained(final)
    processor.save_pretrained(final)
    return model, processor, False


def build_rewards(cfg: RunConfig):
    from mrgfast.reward import FormatReward, MCCSReward

    m = cfg.mrg
    return [
        MCCSReward(
            reference_column="report",
            margin=m.mccs_margin,
            uncertain=m.mccs_uncertain,
            threads=m.reward_threads,
            sides=m.mccs_sides,
            side_weight=m.mccs_side_weight,
            name="mccs_plus_reward" if m.mccs_sides else "mccs_reward",
        ),
        FormatReward(),
    ]


def run_grpo(cfg: RunConfig, model_path: str, studies, instruction: str, ckpt: str | None):
    from mrgfast.data.r2gen import to_dataset
    from mrgfast.train.trainers import MrgGRPOTrainer

    m = cfg.mrg
    model, processor = _load(cfg, model_path)
    ds = to_dataset(studies, instruction=instruction, with_completion=False)
    if m.auto_micro_batch:  # sized from the GPU's free memory before the trainer reads the batch sizes
        from mrgfast.train.micro_batch import auto_size

        auto_size(cfg, model, processor, ds)
    cbs = _callbacks(cfg, "grpo")
    Path(cfg.grpo.output_dir).mkdir(parents=True, exist_ok=True)
    trainer = MrgGRPOTrainer(
        model=model,
        reward_funcs=build_rewards(cfg),
        args=cfg.grpo,
        train_dataset=ds,
        processing_class=processor,
        peft_config=_peft(cfg, model) if m.grpo_use_lora else None,
        callbacks=cbs,
        use_fused_loss=m.use_fused_loss,
        vision_cache=m.vision_cache,
        data_order_path=str(Path(cfg.grpo.output_dir) / "data_order.jsonl"),
        merge_lora_for_generation=m.merge_lora_for_generation,
        compile_generation=m.compile_generation,
        pack_sequences=m.pack_sequences,
        share_prompt_prefix=m.share_prompt_prefix,
    )
    _log_trainable(trainer.model, "grpo")
    if ckpt:
        log.info("grpo: resuming from %s", ckpt)
    trainer.train(resume_from_checkpoint=ckpt)
    if cbs[1].requested:
        return None, processor, True
    final = Path(cfg.grpo.output_dir) / "final"
    trainer.save_model(str(final))
    processor.save_pretrained(final)
    return trainer.model, processor, False
