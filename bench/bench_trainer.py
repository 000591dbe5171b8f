"""Trainer benchmark: a GRPO configuration through plain ``trl.GRPOTrainer`` and through ``mrgfast train``,
side by side in one run (CPU), on a model the bench builds (random weights, no download).

``--shape tiny`` (default) is the tiny preset's model, where the LM head costs nothing. ``--shape
qwen2.5-vl-vocab`` is Qwen2.5-VL's LM head on a small model (hidden 896, 14 heads, 2 decoder layers, the real
151,936-row vocabulary, tiny vision tower; ``--untied-head`` for the 7B's own head weight), where the LM head,
the loss and the reference log-probs dominate the step: GRPO with LoRA, beta 0.04, 4 prompts x 4 completions x
32 tokens, plain TRL (its default chunked head) vs ``mrgfast train``, checked against the floors
(>= 2.0x steps/s, <= 0.70x peak RSS).

Variants, each in a fresh process (so peak RSS is its own), on the same model, data, LoRA and
``GRPOConfig`` (the ``tiny`` preset's GRPO stage, built by :func:`mrgfast.train.config.build_config`):

* ``trl+py-reward`` — what a TRL user has today: ``trl.GRPOTrainer`` with two plain-Python reward
  functions of the same output as mrgfast's (MCCS through the pure-Python reference labeler
  :mod:`mrgfast.reference`, the format check), ``reward_weights=[0.75, 0.25]``;
* ``trl+mrgfast-reward`` — ``trl.GRPOTrainer`` with the drop-in :mod:`mrgfast.reward` functions;
* ``mrgfast`` — ``mrgfast train`` itself (:func:`mrgfast.train.run.run`, GRPO stage): its
  ``MrgGRPOTrainer``, its rewards, its loaders.

Measured per optimizer step (after ``--warmup`` steps): wall and process CPU time (a ``TrainerCallback``),
generation time (TRL's ``transformers.generate`` profiling span), reward time (TRL's
``_calculate_rewards`` span: every reward function plus the gather), and tokens processed (TRL's
``num_tokens`` log: prompt + completion tokens). Reported: steps/s, tokens/s, completion tokens/s,
peak RSS, and the step-time split: generation, reference/old log-probs (TRL's no-grad
``_get_per_token_logps_and_entropies`` passes), loss forward (TRL's ``compute_loss`` span) + backward
(``Accelerator.backward``), optimizer (``optimizer.step``), rewards, other. ``--rounds N`` repeats the variants
interleaved (A B C A B C) and pools the steps, which evens out a noisy machine.

    python bench/bench_trainer.py                       # tiny preset shapes, 2 rounds x 4 timed steps per variant
    python bench/bench_trainer.py --steps 3 --rounds 1  # quicker
    python bench/bench_trainer.py --shape qwen2.5-vl-vocab   # real vocabulary -> trainer_cpu_real_vocab.json

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

    def install_profiling_hook(self) -> None:
        """Record every TRL ``profiling_context`` span (reward functions, generate, ...) by name."""
        from trl.extras import profiling

        probe = self
        orig = profiling.ProfilingContext._log_metrics

        def _log_metrics(ctx, duration):
            import torch

            name = ctx.name.split(".", 1)[1] if "." in ctx.name else ctx.name
            if name == "_get_per_token_logps_and_entropies" and not torch.is_grad_enabled():
                name = NO_GRAD_LOGPS  # the reference / old-policy passes (the loss's own pass runs with grad)
            probe.spans[probe.step][name] += duration
            probe.note_peak(name)
            return orig(ctx, duration)

        profiling.ProfilingContext._log_metrics = _log_metrics

    def note_peak(self, name: str) -> None:
        key = f"{self.step}:{name}"
        self.peak_after[key] = max(self.peak_after.get(key, 0.0), peak_rss_mb())

    def install_backward_hook(self) -> None:
        """Time ``Accelerator.backward`` (the loss backward of ``Trainer.training_step``) per step."""
        import accelerate

        probe = self
        orig = accelerate.Accelerator.backward

        def backward(acc, loss, **kw):
            t0 = time.perf_counter()
            try:
                return orig(acc, loss, **kw)
            finally:
                probe.spans[probe.step]["backward"] += time.perf_counter() - t0
                probe.note_peak("backward")

        accelerate.Accelerator.backward = backward

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
                    "reward_funcs": {k: v for k, v in sp.items() if k not in SPAN_NAMES},
                    "tokens": (tok - tok_prev) if tok is not None and tok_prev is not None else None,
                    "completion_tokens": self.completion_len.get(s["step"], 0.0) * completions_per_step,
                }
            )
        return rows


NO_GRAD_LOGPS = "_get_per_token_logps_and_entropies[no_grad]"
SPAN_NAMES = {
    NO_GRAD_LOGPS,
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
) -> tuple[str, str]:
    """The model (built here, random weights) and synthetic data; a model folder is named by its shape, so
    ``--assets`` reuses one only for the same shape."""
    from mrgfast.data.synth import generate
    from mrgfast.models.tiny import build_tiny

    name = f"model_h{hidden}_l{layers}_a{heads}_v{vocab or 'tok'}_{'untied' if untied else 'tied'}_i{image_size}"
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
        )
    if not (data / "annotation.json").is_file():
        generate(data, n_train=n_train, n_val=0, n_test=1, image_size=image_size, views=2, seed=0)
    return str(model), str(data / "annotation.json")


def build_cfg(args, model: str, annotation: str, out_dir: str):
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


# ------------------------------------------------------------------------------------------- worker
def worker(args) -> int:
    import torch

    if args.threads:
        # The same intra-op thread count for every variant; `mrgfast train` sets every core itself, so the
        # setter is pinned for the benchmark (oversubscribed OpenMP threads on a shared machine spin-wait and
        # make step times swing several-fold).
        torch.set_num_threads(args.threads)
        torch.set_num_threads = lambda n: None

    probe = Probe()
    probe.install_profiling_hook()
    probe.install_backward_hook()
    out_dir = tempfile.mkdtemp(prefix="bench_trainer_")
    cfg = build_cfg(args, args.model, args.annotation, out_dir)
    g = cfg.grpo
    completions_per_step = g.per_device_train_batch_size * g.gradient_accumulation_steps  # per optimizer step
    import logging

    loss_impl = []

    class _LossImpl(logging.Handler):
        def emit(self, record):
            msg = record.getMessage()
            if msg.startswith("GRPO loss:"):
                loss_impl.append(msg.split(":", 1)[1].strip())

    logging.getLogger("mrgfast.train").addHandler(_LossImpl())
    t0 = time.perf_counter()
    if args.worker == "mrgfast":
        import mrgfast.train.run as R

        orig = R._callbacks
        R._callbacks = lambda c, stage: [*orig(c, stage), probe.callback()]
        rc = R.run(cfg)
        if rc != 0:
            raise RuntimeError(f"mrgfast train returned {rc}")
    else:
        from trl import GRPOTrainer

        from mrgfast.data.r2gen import DEFAULT_INSTRUCTION, read_annotation, to_dataset
        from mrgfast.models.loading import load_model, load_processor, lora_config

        m = cfg.mrg
        torch.set_num_threads(max(1, os.cpu_count() or 1))  # as mrgfast train does (pinned by --threads)
        from transformers import set_seed

        set_seed(m.seed)
        studies = read_annotation(m.annotation, splits=("train",), kind=m.dataset_kind)["train"]
        processor = load_processor(m.model_name_or_path)
        model = load_model(m.model_name_or_path, attn_implementation=m.attn_implementation, dtype=m.dtype)
        ds = to_dataset(studies, instruction=DEFAULT_INSTRUCTION, with_completion=False)
        if args.worker == "trl+py-reward":
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
            args=g,
            train_dataset=ds,
            processing_class=processor,
            peft_config=peft,
            callbacks=[probe.callback()],
        )
        trainer.train()
    rows = probe.summary(args.warmup, completions_per_step)
    result = {
        "variant": args.worker,
        "rows": rows,
        "peak_rss_mb": peak_rss_mb(),
        "peak_rss_mb_after_span": probe.peak_after,
        "wall_s": time.perf_counter() - t0,
        "completions_per_step": completions_per_step,
        "threads": torch.get_num_threads(),
        "loss": loss_impl[-1] if loss_impl else "TRL (trl.GRPOTrainer)",
    }
    if torch.cuda.is_available():
        result["peak_gpu_gib"] = torch.cuda.max_memory_allocated() / 2**30
        result["peak_gpu_reserved_gib"] = torch.cuda.max_memory_reserved() / 2**30
        result["gpu"] = torch.cuda.get_device_name()
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
    split = {k: sum(r.get(k, 0.0) for r in rows) for k in ("ref_logps", "loss_forward", "backward", "optimizer")}
    loss_fb = split["loss_forward"] + split["backward"]
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
    }


def _mean_sd(xs: list) -> str:
    if not xs:
        return "n/a"
    if len(xs) == 1:
        return f"{xs[0]:.3f}"
    return f"{statistics.mean(xs):.3f}±{statistics.stdev(xs):.3f}"


def table(summary: dict) -> str:
    cols = list(summary)
    lines = [f"{'':<26}" + "".join(f"{c:>22}" for c in cols)]

    def row(label, fn):
        lines.append(f"{label:<26}" + "".join(f"{fn(summary[c]):>22}" for c in cols))

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
    base = summary.get("trl+py-reward")
    if base:
        row("steps/s vs trl+py-reward", lambda s: f"{s['steps_per_s'] / base['steps_per_s']:.3f}x")
        row("CPU time vs trl+py-reward", lambda s: f"{s['cpu_s_per_step'] / base['cpu_s_per_step']:.3f}x")
        row("peak RSS vs trl+py-reward", lambda s: f"{s['peak_rss_mb'] / base['peak_rss_mb']:.3f}x")
        row("ratio by round, mean±sd", lambda s: _mean_sd(s.get("steps_per_s_ratio_by_round") or []))
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--preset", default="tiny", help="preset whose GRPO stage is benchmarked (default tiny)")
    ap.add_argument("--steps", type=int, default=None, help="timed optimizer steps per variant and round (tiny: 4)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed first steps (default 1)")
    ap.add_argument("--rounds", type=int, default=None, help="interleaved repetitions of all variants (tiny: 2)")
    ap.add_argument("--variants", default=None, help=f"comma-separated subset of {', '.join(VARIANTS)} (tiny: all)")
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
        help="model the bench builds, with its run defaults: tiny (the tiny preset's model) or qwen2.5-vl-vocab "
        "(hidden 896, 14 heads, 2 layers, Qwen2.5-VL's 151,936-token vocabulary, tiny vision tower; 16 completions "
        "x 32 tokens per step, 1 warm-up + 2 timed steps, 2 threads, plain TRL vs mrgfast)",
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
    ap.add_argument("--worker", choices=VARIANTS, help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    ap.add_argument("--annotation", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    shape = SHAPES[args.shape]
    for k in ("hidden", "layers", "heads", "vocab", "image_size", "steps", "warmup", "rounds", "threads"):
        if getattr(args, k) is None:
            setattr(args, k, shape[k])
    args.variants = args.variants or shape.get("variants", ",".join(VARIANTS))
    args.json = args.json or str(HERE / "results" / shape.get("json", "trainer_cpu.json"))
    if not args.worker:
        args.grpo = list(shape.get("grpo", [])) + (args.grpo or [])  # explicit --grpo wins (applied later)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    if args.worker:
        return worker(args)

    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    bad = [v for v in variants if v not in VARIANTS]
    if bad:
        ap.error(f"unknown variant(s) {bad}; choose from {VARIANTS}")
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
    )
    tiny_meta = json.loads((Path(model) / "TINY.json").read_text())
    print(
        f"model ({args.shape}): hidden {args.hidden}, {args.layers} layers, {args.heads} heads, vocabulary "
        f"{tiny_meta.get('model_vocab_size', tiny_meta['vocab_size'])} ({tiny_meta['vocab_size']} tokenizer tokens), "
        f"{'untied' if args.untied_head else 'tied'} head, {tiny_meta['parameters'] / 1e6:.1f} M parameters "
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
                f"  round {rnd + 1} {v:<20} median step {med:.3f} s  ({time.time() - t0:.0f} s with start-up)",
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
        floors = shape.get("floors")
        if floors:
            speed = a["steps_per_s"] / b["steps_per_s"]
            rss = a["peak_rss_mb"] / b["peak_rss_mb"]
            checks[f"mrgfast_steps_per_s_ge_{floors['steps_per_s_ratio']}x_trl"] = speed >= floors["steps_per_s_ratio"]
            checks[f"mrgfast_peak_rss_le_{floors['peak_rss_ratio']}x_trl"] = rss <= floors["peak_rss_ratio"]
            print(
                f"floors ({args.shape}): mrgfast steps/s {speed:.3f}x plain TRL (>= {floors['steps_per_s_ratio']}x): "
                f"{'PASS' if speed >= floors['steps_per_s_ratio'] else 'FAIL'}; peak RSS {rss:.3f}x "
                f"(<= {floors['peak_rss_ratio']}x): {'PASS' if rss <= floors['peak_rss_ratio'] else 'FAIL'}"
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
            "grpo_overrides": args.grpo or [],
            "mrg_overrides": args.mrg or [],
            "threads": args.threads,
        },
        "summary": summary,
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
