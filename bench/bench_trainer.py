"""Trainer benchmark: a GRPO configuration through plain ``trl.GRPOTrainer`` and through ``mrgfast train``,
side by side in one run (CPU), on a model the bench builds (random weights, no download).

``--shape tiny`` (default) is the tiny preset's model, where the LM head costs nothing. ``--shape
qwen2.5-vl-vocab`` is Qwen2.5-VL's LM head on a small model (hidden 896, 14 heads, 2 decoder layers, the real
151,936-row vocabulary, tiny vision tower; ``--untied-head`` for the 7B's own head weight), where the LM head,
the loss and the reference log-probs dominate the step: GRPO with LoRA, beta 0.04, 4 prompts x 4 completions x
32 tokens, plain TRL (its default chunked head) vs ``mrgfast train``, checked against the floors
(>= 2.0x steps/s, <= 0.70x peak RSS). ``--shape qwen2.5-vl-vision`` is a step spent, like the GPU's 3B step,
in the vision tower, generation and the decoder rather than the LM head: Qwen2.5-VL-3B's vision tower at half
width (8 heads of 80, MLP ratio 2.67) cut to 2 blocks (one windowed, one full attention), 2 views of 168 px
per prompt, a 4-layer decoder of width 512, 2 prompts x 4 completions x 64 tokens, LoRA r 16, beta 0.04,
gradient checkpointing, 1 thread; it runs plain TRL, ``mrgfast train`` with every speed lever on, and with each
lever off in turn (floor: >= 2.0x plain TRL's steps/s).

Variants, each in a fresh process (so peak RSS is its own), on the same model, data, LoRA and
``GRPOConfig`` (the ``tiny`` preset's GRPO stage, built by :func:`mrgfast.train.config.build_config`):

* ``trl+py-reward`` — what a TRL user has today: ``trl.GRPOTrainer`` with two plain-Python reward
  functions of the same output as mrgfast's (MCCS through the pure-Python reference labeler
  :mod:`mrgfast.reference`, the format check), ``reward_weights=[0.75, 0.25]``;
* ``trl+mrgfast-reward`` — ``trl.GRPOTrainer`` with the drop-in :mod:`mrgfast.reward` functions;
* ``mrgfast`` — ``mrgfast train`` itself (:func:`mrgfast.train.run.run`, GRPO stage): its
  ``MrgGRPOTrainer``, its rewards, its loaders, every speed lever on;
* ``mrgfast-no:LEVER`` — the same with one lever of :data:`mrgfast.train.config.SPEED_LEVERS` off
  (``--variants ablation``: each in turn); the table's "lever gain" is all-on steps/s over lever-off steps/s.

Measured per optimizer step (after ``--warmup`` steps): wall and process CPU time (a ``TrainerCallback``),
generation time (TRL's ``transformers.generate`` profiling span), reward time (TRL's
``_calculate_rewards`` span: every reward function plus the gather), and tokens processed (TRL's
``num_tokens`` log: prompt + completion tokens). Reported: steps/s, tokens/s, completion tokens/s,
peak RSS, and the step-time split: generation, reference/old log-probs (TRL's no-grad
``_get_per_token_logps_and_entropies`` passes), loss forward (TRL's ``compute_loss`` span) + backward
(``Accelerator.backward``), optimizer (``optimizer.step``), rewards, other, and inside those the vision tower's
forward calls (vision encoding). Every ``mrgfast`` variant also scores plain TRL's first micro-batch before its
own first step (loss, and per-token log-probs against TRL's reference log-probs: same weights at step 1).
``--rounds N`` repeats the variants interleaved (A B C A B C) and pools the steps, which evens out a noisy machine.

    python bench/bench_trainer.py                       # tiny preset shapes, 2 rounds x 4 timed steps per variant
    python bench/bench_trainer.py --steps 3 --rounds 1  # quicker
    python bench/bench_trainer.py --shape qwen2.5-vl-vocab   # real vocabulary -> trainer_cpu_real_vocab.json
    python bench/bench_trainer.py --shape qwen2.5-vl-vision  # vision-heavy step, lever ablation -> trainer_cpu_vision.json

Writes ``bench/results/trainer_cpu.json`` (``--shape tiny``; with the machine and its load) and prints the
table and the acceptance check (``mrgfast`` steps/s >= ``trl+py-reward``'s; rewards < 1 % of its step time).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
VARIANTS = ("trl+py-reward", "trl+mrgfast-reward", "mrgfast")
LEVER_OFF = "mrgfast-no:"  # + a name of mrgfast.train.config.SPEED_LEVERS: `mrgfast train` with that lever off


def speed_levers() -> tuple[str, ...]:
    from mrgfast.train.config import SPEED_LEVERS

    return SPEED_LEVERS


def lever_is_on(value) -> bool:
    from mrgfast.train.config import lever_is_on

    return lever_is_on(value)


def ablation_variants() -> list[str]:
    """``mrgfast`` with each speed lever off in turn (the levers are read from ``SPEED_LEVERS``)."""
    return [LEVER_OFF + name for name in speed_levers()]


def is_mrgfast(variant: str) -> bool:
    return variant == "mrgfast" or variant.startswith(LEVER_OFF)


def vision_attention_calls() -> dict:
    """Calls of the packed vision attention per backend in this process ({} when it never ran)."""
    from mrgfast.models.vision_attention import calls

    return dict(calls)


def check_variant(name: str) -> str | None:
    """None when ``name`` is a variant this bench runs, else why not."""
    if name in VARIANTS:
        return None
    if name.startswith(LEVER_OFF):
        lever = name[len(LEVER_OFF) :]
        return None if lever in speed_levers() else f"{lever!r} is not in SPEED_LEVERS {speed_levers()}"
    return f"choose from {VARIANTS} or {LEVER_OFF}<lever>"


# --shape: the model the bench builds and the run's defaults (any flag given explicitly wins)
SHAPES = {
    "tiny": dict(hidden=128, layers=2, heads=4, vocab=None, image_size=112, steps=4, warmup=1, rounds=2, threads=1),
    # Qwen2.5-VL's LM head on a small model: hidden 896 and 14 heads (Qwen2.5-0.5B's text width), the real
    # 151,936-row vocabulary, 2 decoder layers, the tiny vision tower; where the LM head and the loss dominate
    "qwen2.5-vl-vocab": dict(
        hidden=896,
        layers=2,
        heads=14,
        vocab=151936,
        image_size=56,
        steps=2,
        warmup=1,
        rounds=1,
        threads=2,
        variants="trl+py-reward,mrgfast",
        grpo=["per_device_train_batch_size=16", "num_generations=4", "max_completion_length=32"],
        json="trainer_cpu_real_vocab.json",
        floors={"steps_per_s_ratio": 2.0, "peak_rss_ratio": 0.70},
    ),
    # A step spent, like the GPU's 3B step, in the vision tower, generation and the decoder, not in the LM head:
    # Qwen2.5-VL-3B's vision tower at half width (640 = 8 heads of 80, MLP ratio 2.67) cut to 2 blocks (one
    # windowed, one full attention), 2 views of 168 px per prompt (144 patches, 4 windows of unequal sizes each),
    # a 4-layer 512-wide decoder, the tokenizer's small vocabulary; 2 prompts x 4 completions x 64 tokens, LoRA r 16
    # on the language model, gradient checkpointing and beta 0.04 as in bench/gpu_trainer.py. Plain TRL vs
    # `mrgfast train` with every lever on and with each lever off in turn.
    "qwen2.5-vl-vision": dict(
        hidden=512,
        layers=4,
        heads=8,
        vocab=None,
        image_size=168,
        vision=dict(hidden=640, depth=2, heads=8, intermediate=1710, fullatt=[1]),
        steps=2,
        warmup=1,
        rounds=1,
        threads=1,
        variants="trl+py-reward,mrgfast,ablation",
        grpo=[
            "per_device_train_batch_size=8",
            "num_generations=4",
            "max_completion_length=64",
            "gradient_checkpointing=true",
            "beta=0.04",
        ],
        mrg=["lora_r=16", "lora_alpha=32", "lora_dropout=0.0"],
        json="trainer_cpu_vision.json",
        floors={"steps_per_s_ratio": 2.0},
    ),
}


# ------------------------------------------------------------------------------------------- instrumentation
class Probe:
    """Per-step wall time plus TRL's profiling spans attributed to the step they ran in."""

    def __init__(self):
        self.step = 0
        self.t_begin = None
        self.steps: list[dict] = []
        self.spans = defaultdict(lambda: defaultdict(float))  # step -> span name -> seconds
        self.num_tokens = {}  # step -> cumulative tokens (TRL's num_tokens log)
        self.peak_after = {}  # "step:span" -> peak RSS (MiB) when the span ended: where the peak is reached
        self.completion_len = {}
        self.losses = {}

    def note_peak(self, name: str) -> None:
        key = f"{self.step}:{name}"
        self.peak_after[key] = max(self.peak_after.get(key, 0.0), peak_rss_mb())

    def callback(self):
        from transformers import TrainerCallback

        probe = self

        class _Timer(TrainerCallback):
            def on_step_begin(self, args, state, control, **kw):
                probe.step = state.global_step + 1
                probe.t_begin = time.perf_counter()
                probe.cpu_begin = time.process_time()

            def on_pre_optimizer_step(self, args, state, control, **kw):
                probe.t_opt = time.perf_counter()

            def on_optimizer_step(self, args, state, control, **kw):
                probe.spans[probe.step]["optimizer"] += time.perf_counter() - probe.t_opt

            def on_step_end(self, args, state, control, **kw):
                probe.steps.append(
                    {
                        "step": state.global_step,
                        "seconds": time.perf_counter() - probe.t_begin,
                        "cpu_seconds": time.process_time() - probe.cpu_begin,
                    }
                )

            def on_log(self, args, state, control, logs=None, **kw):
                if logs and "loss" in logs:
                    probe.losses.setdefault(state.global_step, float(logs["loss"]))
                if logs and "num_tokens" in logs:
                    probe.num_tokens[state.global_step] = float(logs["num_tokens"])
                if logs and "completions/mean_length" in logs:
                    probe.completion_len[state.global_step] = float(logs["completions/mean_length"])

        return _Timer()

    def summary(self, warmup: int, completions_per_step: int) -> dict:
        timed = [s for s in self.steps if s["step"] > warmup]
        if not timed:
            raise RuntimeError(f"no step after the {warmup} warm-up step(s) was timed")
        rows = []
        for s in timed:
            sp = self.spans.get(s["step"], {})
            tok_prev = self.num_tokens.get(s["step"] - 1)
            tok = self.num_tokens.get(s["step"])
            rows.append(
                {
                    "step": s["step"],
                    "seconds": s["seconds"],
                    "cpu_seconds": s["cpu_seconds"],
                    "generate": sp.get("transformers.generate", 0.0),
                    "rewards": sp.get("_calculate_rewards", 0.0),
                    "prepare_inputs": sp.get("_prepare_inputs", 0.0),
                    "ref_logps": sp.get(NO_GRAD_LOGPS, 0.0),
                    "loss_forward": sp.get("compute_loss", 0.0),
                    "backward": sp.get("backward", 0.0),
                    "optimizer": sp.get("optimizer", 0.0),
                    "vision": sp.get(VISION, 0.0),
                    "vision_calls": int(sp.get(VISION + ".calls", 0)),
                    "reward_funcs": {k: v for k, v in sp.items() if k not in SPAN_NAMES},
                    "tokens": (tok - tok_prev) if tok is not None and tok_prev is not None else None,
                    "completion_tokens": self.completion_len.get(s["step"], 0.0) * completions_per_step,
                }
            )
        return rows


NO_GRAD_LOGPS = "_get_per_token_logps_and_entropies[no_grad]"
VISION = "vision_tower.forward"
SPAN_NAMES = {
    NO_GRAD_LOGPS,
    VISION,
    VISION + ".calls",
    "backward",
    "optimizer",
    "transformers.generate",
    "transformers.generate_batch",
    "_calculate_rewards",
    "_prepare_inputs",
    "compute_loss",
    "_get_per_token_logps_and_entropies",
    "sync_weights",
    "vLLM.generate",
}


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


# ------------------------------------------------------------------------------------------- assets / config
def prepare_assets(
    root: Path,
    *,
    hidden: int,
    layers: int,
    image_size: int,
    n_train: int,
    heads: int = 4,
    vocab: int | None = None,
    untied: bool = False,
    vision: dict | None = None,
) -> tuple[str, str]:
    """The model (built here, random weights) and synthetic data; a model folder is named by its shape, so
    ``--assets`` reuses one only for the same shape. ``vision``: the vision tower's hidden, depth, heads,
    intermediate and full-attention blocks (default: the tiny builder's)."""
    from mrgfast.data.synth import generate
    from mrgfast.models.tiny import build_tiny

    name = f"model_h{hidden}_l{layers}_a{heads}_v{vocab or 'tok'}_{'untied' if untied else 'tied'}_i{image_size}"
    vision_kw = {}
    if vision:
        vision_kw = dict(
            vision_hidden=vision["hidden"],
            vision_depth=vision["depth"],
            vision_heads=vision["heads"],
            vision_intermediate=vision["intermediate"],
            vision_fullatt_blocks=vision["fullatt"],
        )
        name += f"_vis{vision['hidden']}x{vision['depth']}a{vision['heads']}m{vision['intermediate']}"
        name += "f" + "-".join(map(str, vision["fullatt"]))
    model, data = root / name, root / f"data_i{image_size}"
    if not (model / "config.json").is_file():
        build_tiny(
            model,
            hidden_size=hidden,
            num_layers=layers,
            num_heads=heads,
            image_size=image_size,
            seed=0,
            model_vocab_size=vocab,
            tie_word_embeddings=not untied,
            **vision_kw,
        )
    if not (data / "annotation.json").is_file():
        generate(data, n_train=n_train, n_val=0, n_test=1, image_size=image_size, views=2, seed=0)
    return str(model), str(data / "annotation.json")


def build_cfg(args, model: str, annotation: str, out_dir: str, variant: str = ""):
    from mrgfast.train.config import build_config

    grpo = {"max_steps": str(args.warmup + args.steps), "save_strategy": "no", "logging_steps": "1", "seed": "0"}
    for kv in args.grpo or []:
        k, v = kv.split("=", 1)
        grpo[k] = v
    overrides = {
        "output_dir": out_dir,
        "stages": "grpo",
        "model_name_or_path": model,
        "annotation": annotation,
        "synth_if_missing": "false",
        "tiny_if_missing": "false",
        "evaluate": "false",
        "plot": "false",
        "grpo": grpo,
    }
    for kv in getattr(args, "mrg", None) or []:
        k, v = kv.split("=", 1)
        overrides[k] = v
    if args.trl_loss:
        overrides["use_fused_loss"] = "false"
    if variant.startswith(LEVER_OFF):
        from mrgfast.train.config import LEVER_OFF as OFF

        overrides[variant[len(LEVER_OFF) :]] = OFF
    return build_config(args.preset, None, overrides)


# ------------------------------------------------------------------------------------------- python reward
def python_rewards(reference_column: str = "report", margin: float = 0.5, uncertain: float = 1.0):
    """Plain-Python reward functions with the same outputs as mrgfast's MCCS and format rewards."""
    from mrgfast import reference
    from mrgfast.reward.format import extract_report, format_score

    def _text(c):
        return c if isinstance(c, str) else c[-1]["content"]

    def mccs_py(prompts, completions, completion_ids=None, **kw):
        refs = kw[reference_column]
        return [
            float(x)
            for x in reference.mccs(
                [extract_report(_text(c)) for c in completions], list(refs), margin=margin, uncertain=uncertain
            )
        ]

    def format_py(prompts, completions, completion_ids=None, **kw):
        return [format_score(_text(c)) for c in completions]

    return [mccs_py, format_py]


# ------------------------------------------------------------------------------------------- instrumentation
# Installed once per process (the variants of bench/gpu_trainer.py run one after another in one process); each
# hook reports to the probe of the variant running now.
_STATE: dict = {
    "probe": None,  # the running variant's Probe
    "installed": False,
    "model_factory": None,  # callable -> a fresh model, instead of loading one from disk (bench/gpu_trainer.py)
    "save_first_batch": None,  # file stem: plain TRL keeps its first micro-batch there
    "check_first_batch": None,  # file stem: mrgfast scores plain TRL's first micro-batch from there
    "same_batch": None,  # the record of that check
}


def install_instrumentation() -> None:
    """Patch, once: TRL's profiling spans, ``Accelerator.backward``, the model loader (vision-tower hooks; a
    preloaded model's copy when a factory is set), TRL's ``compute_loss`` (first micro-batch kept) and
    ``MrgGRPOTrainer.training_step`` (that batch scored before the first step), and ``mrgfast train``'s callbacks."""
    if _STATE["installed"]:
        return
    _STATE["installed"] = True
    import accelerate
    import torch
    from trl import GRPOTrainer
    from trl.extras import profiling

    import mrgfast.models.loading as loading
    import mrgfast.train.run as R
    from mrgfast.train.trainers import MrgGRPOTrainer

    # TRL's profiling_context spans (reward functions, generate, log-prob passes, compute_loss, ...) by name
    log_metrics = profiling.ProfilingContext._log_metrics

    def _log_metrics(ctx, duration):
        probe = _STATE["probe"]
        if probe is not None:
            name = ctx.name.split(".", 1)[1] if "." in ctx.name else ctx.name
            if name == "_get_per_token_logps_and_entropies" and not torch.is_grad_enabled():
                name = NO_GRAD_LOGPS  # the reference / old-policy passes (the loss's own pass runs with grad)
            probe.spans[probe.step][name] += duration
            probe.note_peak(name)
        return log_metrics(ctx, duration)

    profiling.ProfilingContext._log_metrics = _log_metrics

    # the loss backward of Trainer.training_step
    backward = accelerate.Accelerator.backward

    def _backward(acc, loss, **kw):
        t0 = time.perf_counter()
        try:
            return backward(acc, loss, **kw)
        finally:
            probe = _STATE["probe"]
            if probe is not None:
                probe.spans[probe.step]["backward"] += time.perf_counter() - t0
                probe.note_peak("backward")

    accelerate.Accelerator.backward = _backward

    # the model both variants load: its vision tower timed (VISION span), CUDA-synchronised so the span is the
    # tower's device time. The hooks fire around a cached forward too (the span is what encoding the step's images
    # cost, cache or not); the backward through the tower (plain path, gradient checkpointing) stays in backward.
    load_model = loading.load_model

    def _load_model(*args, **kwargs):
        from mrgfast.train.vision_cache import vision_tower

        factory = _STATE["model_factory"]
        model = factory() if factory is not None else load_model(*args, **kwargs)
        tower = vision_tower(model)
        if tower is None:
            return model
        cuda = torch.cuda.is_available()

        def pre(module, args):
            if cuda:
                torch.cuda.synchronize()
            module._bench_t0 = time.perf_counter()

        def post(module, args, output):
            if cuda:
                torch.cuda.synchronize()
            probe = _STATE["probe"]
            if probe is not None:
                probe.spans[probe.step][VISION] += time.perf_counter() - module._bench_t0
                probe.spans[probe.step][VISION + ".calls"] += 1

        tower.register_forward_pre_hook(pre)
        tower.register_forward_hook(post)
        return model

    loading.load_model = _load_model

    # plain TRL: keep the first micro-batch compute_loss sees, and its loss (<stem>.safetensors + <stem>.json)
    compute_loss = GRPOTrainer.compute_loss

    def _compute_loss(self, model, inputs, *a, **kw):
        loss = compute_loss(self, model, inputs, *a, **kw)
        stem = _STATE["save_first_batch"]
        if stem and not isinstance(self, MrgGRPOTrainer) and not Path(stem + ".json").is_file():
            from safetensors.torch import save_file

            tensors = {k: v.detach().cpu().contiguous() for k, v in inputs.items() if hasattr(v, "detach")}
            other = {k: v for k, v in inputs.items() if not hasattr(v, "detach") and _jsonable(v)}
            save_file(tensors, stem + ".safetensors")
            Path(stem + ".json").write_text(json.dumps({"loss": float(loss.detach()), "other": other}))
        return loss

    GRPOTrainer.compute_loss = _compute_loss

    # mrgfast: before its first step, score that batch (see score_first_batch)
    training_step = MrgGRPOTrainer.training_step

    def _training_step(self, model, inputs, *a, **kw):
        record, stem = _STATE["same_batch"], _STATE["check_first_batch"]
        if record is not None and not record and stem and Path(stem + ".json").is_file():
            try:
                score_first_batch(self, model, stem, record)
            except Exception as e:  # the check must not cost the variant its timing
                record.clear()
                record["error"] = f"{type(e).__name__}: {e}"[:500]
        return training_step(self, model, inputs, *a, **kw)

    MrgGRPOTrainer.training_step = _training_step

    # mrgfast train: the running probe's callback joins the stage's callbacks
    callbacks = R._callbacks

    def _callbacks(cfg, stage):
        probe = _STATE["probe"]
        return [*callbacks(cfg, stage), *([probe.callback()] if probe is not None else [])]

    R._callbacks = _callbacks


# what TRL's _compute_loss hands its log-prob pass besides the tokens
MULTIMODAL_KEYS = (
    "pixel_values",
    "image_grid_thw",
    "num_images",
    "pixel_attention_mask",
    "spatial_shapes",
    "num_tiles",
    "image_sizes",
    "token_type_ids",
    "mm_token_type_ids",
    "image_position_ids",
)


def _jsonable(value) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def score_first_batch(trainer, model, stem: str, record: dict) -> None:
    """Score plain TRL's first micro-batch with this ``mrgfast train`` trainer and its levers, before its first
    step (same weights: LoRA starts at B = 0, so policy, old policy and reference are the base model): the loss,
    and the policy's per-token log-probs against TRL's reference log-probs of that batch. (With every completion
    at full length and group-normalised advantages, the dapo loss of step 1 is 0 up to rounding: the log-probs are
    the informative comparison.)"""
    import torch
    from safetensors.torch import load_file

    meta = json.loads(Path(stem + ".json").read_text())
    batch = {k: v.to(trainer.accelerator.device) for k, v in load_file(stem + ".safetensors").items()}
    batch.update(meta["other"])
    ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], dim=1)
    mask = torch.cat([batch["prompt_mask"], batch["completion_mask"]], dim=1)
    with trainer._vision_cached(model), torch.no_grad():
        loss = float(trainer.compute_loss(model, batch))
        logps = trainer._get_per_token_logps_and_entropies(
            model,
            ids,
            mask,
            batch["completion_ids"].size(1),
            batch_size=trainer.args.per_device_train_batch_size,
            **{k: batch.get(k) for k in MULTIMODAL_KEYS},
        )[0]
    if trainer.vision_cache is not None:
        trainer.vision_cache.clear()
    for values in trainer._metrics["train"].values():  # the check's metrics stay out of the run's logs
        values.clear()
    record["trl_loss"] = meta["loss"]
    record["loss"] = loss
    ref = batch.get("ref_per_token_logps")
    if ref is not None:
        m = batch["completion_mask"].bool()
        diff = (logps.float() - ref.float()).abs()[m]
        record["logps_max_abs_diff_vs_trl_ref"] = float(diff.max())
        record["logps_mean_abs_diff_vs_trl_ref"] = float(diff.mean())
        record["tokens"] = int(m.sum())


# ------------------------------------------------------------------------------------------- worker
def run_variant(args, variant: str) -> dict:
    """One variant's warm-up and timed steps, in this process; returns its result record."""
    import logging

    import torch

    install_instrumentation()
    probe = Probe()
    same_batch: dict = {}
    _STATE.update(
        probe=probe,
        same_batch=same_batch if is_mrgfast(variant) else None,
        save_first_batch=args.loss_check if variant == "trl+py-reward" else None,
        check_first_batch=args.loss_check if is_mrgfast(variant) else None,
    )
    out_dir = tempfile.mkdtemp(prefix="bench_trainer_")
    cfg = build_cfg(args, args.model, args.annotation, out_dir, variant=variant)
    g = cfg.grpo
    completions_per_step = g.per_device_train_batch_size * g.gradient_accumulation_steps  # per optimizer step
    loss_impl = []

    class _LossImpl(logging.Handler):
        def emit(self, record):
            msg = record.getMessage()
            if msg.startswith("GRPO loss:"):
                loss_impl.append(msg.split(":", 1)[1].strip())

    handler = _LossImpl()
    logging.getLogger("mrgfast.train").addHandler(handler)
    from mrgfast.models import vision_attention

    vision_attention.calls.clear()
    at_start = None
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
        at_start = torch.cuda.memory_allocated() / 2**30  # what earlier variants of this process left (0 expected)
    t0 = time.perf_counter()
    try:
        if is_mrgfast(variant):
            import mrgfast.train.run as R

            rc = R.run(cfg)
            if rc != 0:
                raise RuntimeError(f"mrgfast train returned {rc}")
        else:
            run_trl(cfg, variant, probe)
    finally:
        logging.getLogger("mrgfast.train").removeHandler(handler)
        _STATE.update(probe=None, same_batch=None, save_first_batch=None, check_first_batch=None)
    rows = probe.summary(args.warmup, completions_per_step)
    result = {
        "variant": variant,
        "rows": rows,
        "peak_rss_mb": peak_rss_mb(),
        "peak_rss_mb_after_span": probe.peak_after,
        "wall_s": time.perf_counter() - t0,
        "completions_per_step": completions_per_step,
        "max_completion_length": g.max_completion_length,
        "threads": torch.get_num_threads(),
        "loss": loss_impl[-1] if loss_impl else "TRL (trl.GRPOTrainer)",
        "levers": {k: lever_is_on(getattr(cfg.mrg, k)) for k in speed_levers()} if is_mrgfast(variant) else {},
        "vision_attention_calls": vision_attention_calls(),
        "losses": probe.losses,  # optimizer step -> the loss TRL logged for it
        "same_batch_check": same_batch,  # mrgfast on plain TRL's first micro-batch (see score_first_batch)
    }
    if torch.cuda.is_available():
        result["peak_gpu_gib"] = torch.cuda.max_memory_allocated() / 2**30
        result["peak_gpu_reserved_gib"] = torch.cuda.max_memory_reserved() / 2**30
        result["gpu_allocated_at_start_gib"] = at_start
        result["gpu"] = torch.cuda.get_device_name()
    return result


def run_trl(cfg, variant: str, probe) -> None:
    """Plain ``trl.GRPOTrainer`` on the same model, data, LoRA and GRPOConfig (rewards: plain Python, or
    mrgfast's drop-in functions for ``trl+mrgfast-reward``)."""
    import torch
    from transformers import set_seed
    from trl import GRPOTrainer

    from mrgfast.data.r2gen import DEFAULT_INSTRUCTION, read_annotation, to_dataset
    from mrgfast.models.loading import load_model, load_processor, lora_config

    m = cfg.mrg
    torch.set_num_threads(max(1, os.cpu_count() or 1))  # as mrgfast train does (pinned by --threads)
    set_seed(m.seed)
    studies = read_annotation(m.annotation, splits=("train",), kind=m.dataset_kind)["train"]
    processor = load_processor(m.model_name_or_path)
    model = load_model(m.model_name_or_path, attn_implementation=m.attn_implementation, dtype=m.dtype)
    ds = to_dataset(studies, instruction=DEFAULT_INSTRUCTION, with_completion=False)
    if variant == "trl+py-reward":
        rewards = python_rewards(margin=m.mccs_margin, uncertain=m.mccs_uncertain)
    else:
        from mrgfast.reward import FormatReward, MCCSReward

        rewards = [
            MCCSReward(reference_column="report", margin=m.mccs_margin, uncertain=m.mccs_uncertain),
            FormatReward(),
        ]
    peft = (
        lora_config(m.lora_r, m.lora_alpha, m.lora_dropout, m.lora_target_modules, m.lora_vision, model)
        if m.grpo_use_lora
        else None
    )
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=rewards,
        args=cfg.grpo,
        train_dataset=ds,
        processing_class=processor,
        peft_config=peft,
        callbacks=[probe.callback()],
    )
    trainer.train()


def pin_threads(threads: int) -> None:
    """The same intra-op thread count for every variant; `mrgfast train` sets every core itself, so the setter is
    pinned for the benchmark (oversubscribed OpenMP threads on a shared machine spin-wait and make step times swing
    several-fold)."""
    import torch

    if threads and not getattr(torch.set_num_threads, "_pinned", False):
        torch.set_num_threads(threads)

        def pinned(n):
            return None

        pinned._pinned = True
        torch.set_num_threads = pinned


def worker(args) -> int:
    pin_threads(args.threads)
    result = run_variant(args, args.worker)
    Path(args.out).write_text(json.dumps(result))
    return 0


# ------------------------------------------------------------------------------------------- driver
def machine() -> dict:
    import torch

    info = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": platform.processor() or None,
        "cores": os.cpu_count(),
        "torch": torch.__version__,
    }
    try:
        import transformers
        import trl

        info.update(transformers=transformers.__version__, trl=trl.__version__)
    except ImportError:
        pass
    try:
        with open("/proc/cpuinfo") as f:
            info["cpu"] = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), info["cpu"])
        info["loadavg_at_start"] = os.getloadavg()
    except OSError:
        pass
    return info


def aggregate(results: list[dict]) -> dict:
    rows = [r for res in results for r in res["rows"]]
    secs = [r["seconds"] for r in rows]
    total = sum(secs)
    tokens = [r["tokens"] for r in rows if r["tokens"] is not None]
    med = statistics.median(secs)
    gen = sum(r["generate"] for r in rows)
    rew = sum(r["rewards"] for r in rows)
    funcs = defaultdict(float)
    for r in rows:
        for k, v in r["reward_funcs"].items():
            funcs[k] += v
    cpu_total = sum(r["cpu_seconds"] for r in rows)
    split = {
        k: sum(r.get(k, 0.0) for r in rows) for k in ("ref_logps", "loss_forward", "backward", "optimizer", "vision")
    }
    loss_fb = split["loss_forward"] + split["backward"]
    first_losses = [res.get("losses", {}).get("1", res.get("losses", {}).get(1)) for res in results]
    return {
        "steps_timed": len(rows),
        "cpu_s_per_step": cpu_total / len(rows),
        "steps_per_cpu_s": len(rows) / cpu_total,
        "step_s_median": med,
        "step_s_mean": total / len(rows),
        "steps_per_s": len(rows) / total,
        "tokens_per_s": (sum(tokens) / sum(r["seconds"] for r in rows if r["tokens"] is not None)) if tokens else None,
        "completion_tokens_per_s": sum(r["completion_tokens"] for r in rows) / total,
        "generate_share": gen / total,
        "reward_share": rew / total,
        "rest_share": max(0.0, 1 - gen / total - rew / total),
        # step-time split: generation / reference+old log-probs / loss forward+backward / optimizer / rewards
        "ref_logps_share": split["ref_logps"] / total,
        "loss_fwd_bwd_share": loss_fb / total,
        "optimizer_share": split["optimizer"] / total,
        "other_share": max(0.0, 1 - (gen + rew + split["ref_logps"] + loss_fb + split["optimizer"]) / total),
        "generate_s_per_step": gen / len(rows),
        "ref_logps_s_per_step": split["ref_logps"] / len(rows),
        "loss_fwd_bwd_s_per_step": loss_fb / len(rows),
        "optimizer_s_per_step": split["optimizer"] / len(rows),
        "reward_ms_per_step": 1000 * rew / len(rows),
        "reward_funcs_ms_per_step": {k: 1000 * v / len(rows) for k, v in funcs.items()},
        "peak_rss_mb": max(res["peak_rss_mb"] for res in results),
        # the vision tower's forward calls, inside generation / log-probs / loss forward (not an extra slice)
        "vision_share": split["vision"] / total,
        "vision_s_per_step": split["vision"] / len(rows),
        "vision_calls_per_step": sum(r.get("vision_calls", 0) for r in rows) / len(rows),
        "first_step_loss": next((x for x in first_losses if x is not None), None),
        "levers": results[0].get("levers", {}),
        "same_batch_check": results[0].get("same_batch_check") or {},
        "vision_attention_calls": results[0].get("vision_attention_calls", {}),
    }


def _same_batch(s: dict, key: str) -> str:
    value = (s.get("same_batch_check") or {}).get(key)
    return "n/a" if value is None else f"{value:.3e}"


def _mean_sd(xs: list) -> str:
    if not xs:
        return "n/a"
    if len(xs) == 1:
        return f"{xs[0]:.3f}"
    return f"{statistics.mean(xs):.3f}±{statistics.stdev(xs):.3f}"


def lever_gains(summary: dict) -> dict:
    """Per lever whose off-variant ran: all-on steps/s over lever-off steps/s (the lever's gain) and the share of
    the lever-off step time it saves."""
    on = summary.get("mrgfast")
    out = {}
    for name, s in summary.items():
        if on is None or not name.startswith(LEVER_OFF):
            continue
        out[name[len(LEVER_OFF) :]] = {
            "gain": on["steps_per_s"] / s["steps_per_s"],
            "cpu_time_gain": s["cpu_s_per_step"] / on["cpu_s_per_step"],  # steadier on a shared machine
            "share_of_lever_off_step": 1 - s["steps_per_s"] / on["steps_per_s"],
            "step_s_off": s["step_s_mean"],
            "step_s_on": on["step_s_mean"],
        }
    return out


def table(summary: dict) -> str:
    cols = list(summary)
    width = max([22] + [len(c) + 2 for c in cols])
    lines = [f"{'':<28}" + "".join(f"{c:>{width}}" for c in cols)]

    def row(label, fn):
        lines.append(f"{label:<28}" + "".join(f"{fn(summary[c]):>{width}}" for c in cols))

    row("steps/s", lambda s: f"{s['steps_per_s']:.4f}")
    row("step time, median (s)", lambda s: f"{s['step_s_median']:.3f}")
    row("CPU time / step (s)", lambda s: f"{s['cpu_s_per_step']:.3f}")
    row("tokens/s (prompt+compl.)", lambda s: f"{s['tokens_per_s']:.0f}" if s["tokens_per_s"] else "n/a")
    row("completion tokens/s", lambda s: f"{s['completion_tokens_per_s']:.1f}")
    row("peak RSS (MiB)", lambda s: f"{s['peak_rss_mb']:.0f}")
    row("generation share", lambda s: f"{100 * s['generate_share']:.1f} %")
    row("reward share", lambda s: f"{100 * s['reward_share']:.3f} %")
    row("reward ms / step", lambda s: f"{s['reward_ms_per_step']:.2f}")
    row("rest (logps, loss, bwd, opt)", lambda s: f"{100 * s['rest_share']:.1f} %")
    row("split: generation (s)", lambda s: f"{s['generate_s_per_step']:.2f} ({100 * s['generate_share']:.0f} %)")
    row("split: ref/old logps (s)", lambda s: f"{s['ref_logps_s_per_step']:.2f} ({100 * s['ref_logps_share']:.0f} %)")
    row(
        "split: loss fwd+bwd (s)",
        lambda s: f"{s['loss_fwd_bwd_s_per_step']:.2f} ({100 * s['loss_fwd_bwd_share']:.0f} %)",
    )
    row("split: optimizer (s)", lambda s: f"{s['optimizer_s_per_step']:.2f} ({100 * s['optimizer_share']:.1f} %)")
    row("split: other", lambda s: f"{100 * s['other_share']:.1f} %")
    row(
        "of which vision encoding (s)",
        lambda s: f"{s.get('vision_s_per_step', 0.0):.2f} ({100 * s.get('vision_share', 0.0):.0f} %)",
    )
    row("vision tower calls / step", lambda s: f"{s.get('vision_calls_per_step', 0.0):.0f}")
    row("first-step loss", lambda s: "n/a" if s.get("first_step_loss") is None else f"{s['first_step_loss']:.3e}")
    row("loss on TRL's 1st batch", lambda s: _same_batch(s, "loss"))
    row("  TRL's own loss there", lambda s: _same_batch(s, "trl_loss"))
    row("  |logp - TRL ref| max", lambda s: _same_batch(s, "logps_max_abs_diff_vs_trl_ref"))
    base = summary.get("trl+py-reward")
    if base:
        row("steps/s vs trl+py-reward", lambda s: f"{s['steps_per_s'] / base['steps_per_s']:.3f}x")
        row("CPU time vs trl+py-reward", lambda s: f"{s['cpu_s_per_step'] / base['cpu_s_per_step']:.3f}x")
        row("peak RSS vs trl+py-reward", lambda s: f"{s['peak_rss_mb'] / base['peak_rss_mb']:.3f}x")
        row("ratio by round, mean±sd", lambda s: _mean_sd(s.get("steps_per_s_ratio_by_round") or []))
    on = summary.get("mrgfast")
    if on and any(c.startswith(LEVER_OFF) for c in cols):
        row(
            "lever gain (on / off)",
            lambda s: f"{on['steps_per_s'] / s['steps_per_s']:.3f}x" if s is not on and s.get("levers") else "",
        )
        row(
            "lever gain in CPU time",
            lambda s: f"{s['cpu_s_per_step'] / on['cpu_s_per_step']:.3f}x" if s is not on and s.get("levers") else "",
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--preset", default="tiny", help="preset whose GRPO stage is benchmarked (default tiny)")
    ap.add_argument("--steps", type=int, default=None, help="timed optimizer steps per variant and round (tiny: 4)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed first steps (default 1)")
    ap.add_argument("--rounds", type=int, default=None, help="interleaved repetitions of all variants (tiny: 2)")
    ap.add_argument(
        "--variants",
        default=None,
        help=f"comma-separated: {', '.join(VARIANTS)}, {LEVER_OFF}LEVER (mrgfast with that lever of SPEED_LEVERS off), "
        "or 'ablation' (every lever off in turn) (tiny: the three; qwen2.5-vl-vision: trl+py-reward,mrgfast,ablation)",
    )
    ap.add_argument(
        "--grpo",
        action="append",
        metavar="FIELD=VALUE",
        help="override a GRPOConfig field for every variant (repeatable), e.g. --grpo max_completion_length=40",
    )
    ap.add_argument(
        "--mrg",
        action="append",
        metavar="FIELD=VALUE",
        help="override an mrgfast config field for every variant (repeatable), e.g. --mrg lora_r=64",
    )
    ap.add_argument(
        "--trl-loss",
        action="store_true",
        help="use_fused_loss off: the mrgfast variant computes TRL's own loss instead of mrgfast.kernels",
    )
    ap.add_argument(
        "--shape",
        choices=sorted(SHAPES),
        default="tiny",
        help="model the bench builds, with its run defaults: tiny (the tiny preset's model); qwen2.5-vl-vocab "
        "(hidden 896, 14 heads, 2 layers, Qwen2.5-VL's 151,936-token vocabulary, tiny vision tower; 16 completions "
        "x 32 tokens per step, 1 warm-up + 2 timed steps, 2 threads, plain TRL vs mrgfast); qwen2.5-vl-vision "
        "(the 3B's vision tower at half width cut to 2 blocks, 2 views of 168 px, a 4-layer 512-wide decoder; "
        "2 prompts x 4 completions x 64 tokens, gradient checkpointing, 1 thread; plain TRL, mrgfast, each lever off)",
    )
    ap.add_argument("--hidden", type=int, default=None, help="model hidden size (default: the shape's)")
    ap.add_argument("--layers", type=int, default=None, help="decoder layers (default: the shape's)")
    ap.add_argument("--heads", type=int, default=None, help="attention heads (default: the shape's)")
    ap.add_argument(
        "--vocab", type=int, default=None, help="embedding/LM-head rows (default: the shape's; tiny: the tokenizer's)"
    )
    ap.add_argument("--untied-head", action="store_true", help="LM head with its own weight (default: tied)")
    ap.add_argument("--image-size", type=int, default=None)
    ap.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads per variant (tiny: 1, steadiest on a shared machine; 0: as each trainer sets)",
    )
    ap.add_argument("--assets", default=None, help="folder for the tiny model and data (default: a temp folder)")
    ap.add_argument("--json", default=None, help="result file (default bench/results/trainer_cpu.json, or the shape's)")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    ap.add_argument("--annotation", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    ap.add_argument("--loss-check", help=argparse.SUPPRESS)  # file stem of plain TRL's first micro-batch
    args = ap.parse_args(argv)
    shape = SHAPES[args.shape]
    for k in ("hidden", "layers", "heads", "vocab", "image_size", "steps", "warmup", "rounds", "threads"):
        if getattr(args, k) is None:
            setattr(args, k, shape[k])
    args.variants = args.variants or shape.get("variants", ",".join(VARIANTS))
    args.json = args.json or str(HERE / "results" / shape.get("json", "trainer_cpu.json"))
    args.vision = shape.get("vision")
    if not args.worker:
        args.grpo = list(shape.get("grpo", [])) + (args.grpo or [])  # explicit --grpo wins (applied later)
        args.mrg = list(shape.get("mrg", [])) + (args.mrg or [])
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    if args.worker:
        if check_variant(args.worker):
            ap.error(f"--worker {args.worker}: {check_variant(args.worker)}")
        return worker(args)

    variants = []
    for v in (v.strip() for v in args.variants.split(",") if v.strip()):
        variants += ablation_variants() if v == "ablation" else [v]
    bad = {v: check_variant(v) for v in variants if check_variant(v)}
    if bad:
        ap.error("unknown variant(s): " + "; ".join(f"{v}: {why}" for v, why in bad.items()))
    t_start = time.time()
    info = machine()
    assets = Path(args.assets) if args.assets else Path(tempfile.mkdtemp(prefix="bench_trainer_assets_"))
    assets.mkdir(parents=True, exist_ok=True)
    # enough studies that no variant reuses a prompt within the run
    probe_cfg = build_cfg(args, "unused", "unused", str(assets / "probe"))
    g = probe_cfg.grpo
    prompts = g.per_device_train_batch_size * g.gradient_accumulation_steps // g.num_generations
    n_train = max(64, (args.warmup + args.steps) * prompts + 8)
    t_build = time.time()
    model, annotation = prepare_assets(
        assets,
        hidden=args.hidden,
        layers=args.layers,
        heads=args.heads,
        vocab=args.vocab,
        untied=args.untied_head,
        image_size=args.image_size,
        n_train=n_train,
        vision=args.vision,
    )
    tiny_meta = json.loads((Path(model) / "TINY.json").read_text())
    print(
        f"model ({args.shape}): hidden {args.hidden}, {args.layers} layers, {args.heads} heads, vocabulary "
        f"{tiny_meta.get('model_vocab_size', tiny_meta['vocab_size'])} ({tiny_meta['vocab_size']} tokenizer tokens), "
        f"{'untied' if args.untied_head else 'tied'} head, vision tower {tiny_meta['vision_hidden']} x "
        f"{tiny_meta['vision_depth']} blocks, {tiny_meta['parameters'] / 1e6:.1f} M parameters "
        f"({time.time() - t_build:.0f} s to build or find)",
        flush=True,
    )
    print(
        f"GRPO config ({args.preset} preset): {prompts} prompts x "
        f"{g.num_generations} completions x max {g.max_completion_length} tokens per step, loss {g.loss_type}, "
        f"beta {g.beta}; LoRA r={probe_cfg.mrg.lora_r}; {args.warmup} warm-up + {args.steps} timed steps x "
        f"{args.rounds} round(s)",
        flush=True,
    )
    results = defaultdict(list)
    run_dir = tempfile.mkdtemp(prefix="bench_trainer_run_")  # plain TRL's first micro-batch per round
    for rnd in range(args.rounds):
        for v in variants:
            with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as tf:
                out = tf.name
            cmd = [
                sys.executable,
                str(Path(__file__).resolve()),
                "--worker",
                v,
                "--model",
                model,
                "--annotation",
                annotation,
                "--out",
                out,
                "--preset",
                args.preset,
                "--steps",
                str(args.steps),
                "--warmup",
                str(args.warmup),
                "--threads",
                str(args.threads),
            ] + (["--trl-loss"] if args.trl_loss else [])
            cmd += ["--loss-check", str(Path(run_dir) / f"first_batch_round{rnd}")]
            for kv in args.grpo or []:
                cmd += ["--grpo", kv]
            for kv in args.mrg or []:
                cmd += ["--mrg", kv]
            t0 = time.time()
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                print(proc.stdout[-3000:], proc.stderr[-6000:], file=sys.stderr)
                raise SystemExit(f"variant {v} failed (exit {proc.returncode})")
            res = json.loads(Path(out).read_text())
            os.unlink(out)
            results[v].append(res)
            med = statistics.median(r["seconds"] for r in res["rows"])
            print(
                f"  round {rnd + 1} {v:<36} median step {med:.3f} s  ({time.time() - t0:.0f} s with start-up)",
                flush=True,
            )
    summary = {v: aggregate(results[v]) for v in variants}
    # paired by round (variants of one round ran back to back): how steady is the ratio?
    base_v = "trl+py-reward" if "trl+py-reward" in variants else variants[0]
    for v in variants:
        ratios = [
            sum(r["seconds"] for r in b["rows"]) / sum(r["seconds"] for r in a["rows"])
            for a, b in zip(results[v], results[base_v])
        ]
        summary[v]["steps_per_s_ratio_by_round"] = ratios
        summary[v]["steps_per_s_ratio_round_sd"] = statistics.stdev(ratios) if len(ratios) > 1 else None
    print()
    print(table(summary))
    checks = {}
    if "mrgfast" in summary and "trl+py-reward" in summary:
        a, b = summary["mrgfast"], summary["trl+py-reward"]
        checks["mrgfast_steps_per_s_ge_trl"] = a["steps_per_s"] >= b["steps_per_s"]
        checks["mrgfast_reward_share_lt_1pct"] = a["reward_share"] < 0.01
        checks["mrgfast_cpu_per_step_le_trl"] = a["cpu_s_per_step"] <= b["cpu_s_per_step"]
        print(
            f"\nacceptance: mrgfast steps/s {a['steps_per_s']:.4f} >= plain TRL {b['steps_per_s']:.4f}: "
            f"{'yes' if checks['mrgfast_steps_per_s_ge_trl'] else 'NO'}; mrgfast rewards "
            f"{100 * a['reward_share']:.3f} % of step time (< 1 %): {'yes' if checks['mrgfast_reward_share_lt_1pct'] else 'NO'}; "
            f"CPU s/step {a['cpu_s_per_step']:.3f} <= {b['cpu_s_per_step']:.3f}: "
            f"{'yes' if checks['mrgfast_cpu_per_step_le_trl'] else 'NO'} (the CPU-time figure is the steadier one on a "
            f"shared machine)"
        )
        floors = shape.get("floors") or {}
        verdicts = []
        if "steps_per_s_ratio" in floors:
            speed, floor = a["steps_per_s"] / b["steps_per_s"], floors["steps_per_s_ratio"]
            checks[f"mrgfast_steps_per_s_ge_{floor}x_trl"] = speed >= floor
            verdicts.append(
                f"mrgfast steps/s {speed:.3f}x plain TRL (>= {floor}x): {'PASS' if speed >= floor else 'FAIL'}"
            )
        if "peak_rss_ratio" in floors:
            rss, floor = a["peak_rss_mb"] / b["peak_rss_mb"], floors["peak_rss_ratio"]
            checks[f"mrgfast_peak_rss_le_{floor}x_trl"] = rss <= floor
            verdicts.append(f"peak RSS {rss:.3f}x (<= {floor}x): {'PASS' if rss <= floor else 'FAIL'}")
        if verdicts:
            print(f"floors ({args.shape}): " + "; ".join(verdicts))
    gains = lever_gains(summary)
    if gains:
        print("\nlevers (mrgfast with every lever on vs with this one off; gain = on / off steps/s):")
        for name, gd in gains.items():
            print(
                f"  {name:<28} gain {gd['gain']:.3f}x  (step {gd['step_s_off']:.2f} s off -> {gd['step_s_on']:.2f} s on, "
                f"{100 * gd['share_of_lever_off_step']:.0f} % of the lever-off step; CPU time {gd['cpu_time_gain']:.3f}x)"
            )
    if hasattr(os, "getloadavg"):
        info["loadavg_at_end"] = os.getloadavg()
    out = {
        "suite": "trainer_cpu",
        "machine": info,
        "config": {
            "preset": args.preset,
            "prompts_per_step": prompts,
            "num_generations": g.num_generations,
            "max_completion_length": g.max_completion_length,
            "loss_type": g.loss_type,
            "beta": g.beta,
            "lora_r": probe_cfg.mrg.lora_r,
            "fused_loss": probe_cfg.mrg.use_fused_loss,
            "warmup": args.warmup,
            "steps": args.steps,
            "rounds": args.rounds,
            "shape": args.shape,
            "model_hidden": args.hidden,
            "model_layers": args.layers,
            "model_heads": args.heads,
            "model_vocab": tiny_meta.get("model_vocab_size", tiny_meta["vocab_size"]),
            "tokenizer_vocab": tiny_meta["vocab_size"],
            "untied_head": args.untied_head,
            "model_parameters": tiny_meta["parameters"],
            "image_size": args.image_size,
            "views": 2,
            "vision": {
                k: tiny_meta.get(k)
                for k in (
                    "vision_hidden",
                    "vision_depth",
                    "vision_heads",
                    "vision_intermediate",
                    "vision_fullatt_blocks",
                )
            },
            "speed_levers": list(speed_levers()),
            "variants": variants,
            "grpo_overrides": args.grpo or [],
            "mrg_overrides": args.mrg or [],
            "threads": args.threads,
        },
        "summary": summary,
        "lever_gains": gains,
        "checks": checks,
        "raw": results,
        "seconds": round(time.time() - t_start, 1),
    }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(out, indent=1))
    print(f"wrote {args.json} ({out['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
