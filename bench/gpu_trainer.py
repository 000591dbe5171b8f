"""GPU trainer ablation: plain ``trl.GRPOTrainer`` vs ``mrgfast train`` with every speed lever on, and with each
lever off in turn, on a randomly initialised Qwen2.5-VL-3B-shaped model (LoRA, bf16), in one device call
(``--budget-s``, 430 s by default, for the variants after the model is built: about 8 minutes in all).

1. Puts carried wheels on the path: ``--wheels DIR`` (default ``.whl/``) is pip-installed with
   ``--no-index --no-deps --target /tmp/site`` (mrgfast with its Rust extension, trl, peft, flash-attn, ...).
2. Builds the model once: Qwen2.5-VL-3B's shapes (text: hidden 2048, 36 layers, 16 heads / 2 KV heads, MLP 11008,
   vocabulary 151,936; vision: 32 blocks of 1280, 16 heads, patch 14, 112-px windows, 2x2 merge), random bf16
   weights built on the GPU and kept on the host; every variant gets a fresh copy on the GPU (nothing is saved
   or loaded from disk but the configuration and mrgfast's tiny processor; nothing is downloaded; a random model
   never emits EOS, so every completion runs the full length).
3. Runs the variants one after another in this process through ``bench/bench_trainer.py``'s instrumentation
   (``run_variant``: TRL's profiling spans, the vision tower's forward calls, ``Accelerator.backward``), each with
   ``--warmup`` untimed + ``--steps`` timed optimizer steps, GPU memory peak reset per variant:

   * the acceptance pair at the issue's step (8 prompts x 8 completions x ``--new-tokens`` 256, 2 views of 336 px,
     micro-batches of 16, gradient checkpointing, LoRA r=64, beta 0.04): ``trl+py-reward`` (plain TRL,
     plain-Python rewards of the same output) and ``mrgfast`` (``mrgfast train``'s GRPO stage, every lever of
     ``mrgfast.train.config.SPEED_LEVERS`` on), and ``mrgfast-no:auto_micro_batch`` (the same at TRL's own
     micro-batch: auto micro-batch spends free memory on purpose, so the memory criterion, peak <= plain TRL's
     + 10 %, is checked on this one, the speed criterion on all levers on);
   * the lever ablation at ``--ablation-new-tokens`` (64 by default, so the whole ablation fits one call):
     ``mrgfast`` again and ``mrgfast-no:<lever>`` for each lever (``--levers``), while the time budget lasts; a
     variant that would not fit is recorded as skipped, with the command that runs it.

   Before its first step every ``mrgfast`` variant also scores plain TRL's first micro-batch (same weights: LoRA
   starts at B = 0): its loss next to TRL's, and its per-token log-probs against TRL's reference log-probs.
4. Prints and records, per variant: step time, steps/s and the ratio to plain TRL, the step split (generation,
   reference/old log-probs, loss forward + backward, optimizer, and the vision tower's share inside them), peak
   GPU memory, the first-step loss and the same-batch check; per lever its gain (all-on steps/s over lever-off
   steps/s). Writes ``bench/results/trainer_gpu.json`` and replaces the trainer section of ``bench/RESULTS.md``.

    python bench/gpu_trainer.py            # on the device (one call, <= 8 minutes)
    python bench/gpu_trainer.py --dry      # anywhere: tiny shapes on the CPU, same code path, no RESULTS.md
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

REPO = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
MARK_BEGIN = "<!-- gpu_trainer:begin -->"
MARK_END = "<!-- gpu_trainer:end -->"

# Qwen2.5-VL-3B-Instruct's config.json (shapes only)
QWEN25_VL_3B = dict(
    text=dict(
        hidden_size=2048,
        intermediate_size=11008,
        num_hidden_layers=36,
        num_attention_heads=16,
        num_key_value_heads=2,
        vocab_size=151936,
        max_position_embeddings=128000,
        rms_norm_eps=1e-6,
        rope_theta=1000000.0,
        mrope_section=[16, 24, 24],
        tie_word_embeddings=True,
    ),
    vision=dict(
        depth=32,
        hidden_size=1280,
        intermediate_size=3420,
        num_heads=16,
        out_hidden_size=2048,
        patch_size=14,
        spatial_merge_size=2,
        temporal_patch_size=2,
        window_size=112,
        fullatt_block_indexes=[7, 15, 23, 31],
    ),
)
DRY = dict(
    text=dict(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=4096,
        max_position_embeddings=4096,
        rms_norm_eps=1e-6,
        rope_theta=10000.0,
        mrope_section=[2, 3, 3],
        tie_word_embeddings=True,
    ),
    vision=dict(
        depth=2,
        hidden_size=32,
        intermediate_size=64,
        num_heads=2,
        out_hidden_size=64,
        patch_size=14,
        spatial_merge_size=2,
        temporal_patch_size=2,
        window_size=112,
        fullatt_block_indexes=[1],
    ),
)


def parse(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dry", action="store_true", help="tiny shapes on the CPU (checks the script, not the GPU)")
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--generations", type=int, default=8)
    ap.add_argument("--new-tokens", type=int, default=256, help="completion length of the acceptance pair")
    ap.add_argument(
        "--ablation-new-tokens",
        type=int,
        default=64,
        help="completion length of the lever ablation (default 64, so that it fits one call; "
        "equal to --new-tokens: the ablation reuses the acceptance pair's mrgfast run)",
    )
    ap.add_argument("--micro-batch", type=int, default=16, help="completions per forward/backward (default 16)")
    ap.add_argument("--image-size", type=int, default=336, help="pixels per side of each of the 2 views")
    ap.add_argument("--lora-r", type=int, default=64)
    ap.add_argument("--steps", type=int, default=1, help="timed optimizer steps per variant (default 1)")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--levers", default=None, help="comma-separated levers to ablate (default: all of SPEED_LEVERS)")
    ap.add_argument("--no-ablation", action="store_true", help="only the acceptance pair")
    ap.add_argument(
        "--budget-s",
        type=float,
        default=430.0,
        help="seconds the variants may take after the model is built; a variant that would not fit is skipped",
    )
    ap.add_argument("--wheels", default=str(REPO / ".whl"))
    ap.add_argument("--site", default="/tmp/site")
    ap.add_argument("--work", default=None, help="folder for the configuration and data (default: a temp folder)")
    ap.add_argument("--out", default=None, help="JSON path (default bench/results/trainer_gpu[_dry].json)")
    ap.add_argument(
        "--results-md",
        default=None,
        help="markdown file whose trainer section is replaced (default bench/RESULTS.md on a GPU; none with --dry)",
    )
    args = ap.parse_args(argv)
    if args.dry:
        args.prompts, args.generations, args.new_tokens, args.micro_batch = 2, 2, 8, 2
        args.ablation_new_tokens = 4
        args.image_size, args.lora_r, args.steps, args.warmup = 56, 4, 1, 1
        args.budget_s = max(args.budget_s, 1200.0)
    if (args.prompts * args.generations) % args.micro_batch:
        ap.error("--micro-batch must divide prompts x generations")
    return args


def setup_wheels(args) -> dict:
    from carried_wheels import install_carried_wheels

    return install_carried_wheels(args.wheels, args.site)


def build_model(args, folder: Path, attn: str):
    """The random 3B-shaped (or --dry tiny) Qwen2.5-VL, kept on the host; ``folder`` gets its configuration and
    mrgfast's tiny processor (what the loaders read). Returns (model on the host, info)."""
    import torch
    from transformers import AutoProcessor, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    from mrgfast.models.tiny import build_tiny

    shapes = DRY if args.dry else QWEN25_VL_3B
    proc_dir = folder / "processor_src"
    if not (proc_dir / "config.json").is_file():  # tiny model only for its tokenizer + processor
        build_tiny(
            proc_dir,
            hidden_size=32,
            num_layers=1,
            num_heads=4,
            vision_hidden=32,
            vision_depth=1,
            image_size=args.image_size,
            seed=0,
        )
    processor = AutoProcessor.from_pretrained(str(proc_dir), local_files_only=True)
    tok = processor.tokenizer
    ids = {
        t: tok.convert_tokens_to_ids(t)
        for t in ("<|endoftext|>", "<|im_end|>", "<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>")
    }
    t = dict(shapes["text"])
    mrope = t.pop("mrope_section")
    theta = t.pop("rope_theta")
    t.update(
        rope_parameters={"rope_type": "default", "rope_theta": theta, "mrope_section": mrope},
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=ids["<|im_end|>"],
        pad_token_id=ids["<|endoftext|>"],
    )
    config = Qwen2_5_VLConfig(
        text_config=t,
        vision_config=dict(shapes["vision"]),
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=True,
    )
    dtype = torch.float32 if args.dry else torch.bfloat16
    device = "cpu" if args.dry or not torch.cuda.is_available() else "cuda"
    t0 = time.time()
    torch.manual_seed(0)
    with torch.device(device):
        model = Qwen2_5_VLForConditionalGeneration._from_config(config, dtype=dtype, attn_implementation=attn)
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    n_params = sum(p.numel() for p in model.parameters())
    model = model.to("cpu")
    model_dir = folder / "model"
    model.config.save_pretrained(model_dir)
    model.generation_config.save_pretrained(model_dir)
    processor.save_pretrained(model_dir)
    if device == "cuda":
        torch.cuda.empty_cache()
    info = {
        "parameters": n_params,
        "dtype": str(dtype).replace("torch.", ""),
        "build_s": round(time.time() - t0, 1),
        "text": shapes["text"],
        "vision": shapes["vision"],
    }
    return model, info


def model_factory(host_model, device: str):
    """Each call: a fresh copy of the built model on ``device`` (a variant's LoRA, merges and casts never reach
    the next one)."""

    def make():
        return copy.deepcopy(host_model).to(device)

    return make


def release() -> None:
    """What a finished variant leaves behind: its tensors, cached blocks and compiled graphs."""
    import torch

    gc.collect()
    if hasattr(torch, "_dynamo"):
        torch._dynamo.reset()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# ------------------------------------------------------------------------------------------ tables
def _fmt(x, spec, missing="n/a"):
    return missing if x is None else format(x, spec)


def variant_table(summary: dict, base: str | None) -> str:
    cols = list(summary)
    lines = ["| | " + " | ".join(cols) + " |", "|---|" + "---:|" * len(cols)]

    def row(label, fn):
        lines.append(f"| {label} | " + " | ".join(fn(summary[c]) for c in cols) + " |")

    row("step time (s)", lambda s: f"{s['step_s_mean']:.2f}")
    row("steps/s", lambda s: f"{s['steps_per_s']:.4f}")
    if base in summary:
        b = summary[base]
        row(f"steps/s vs {base}", lambda s: f"{s['steps_per_s'] / b['steps_per_s']:.3f}x")
    row("tokens/s (prompt + completion)", lambda s: _fmt(s.get("tokens_per_s"), ".0f"))
    row("generation", lambda s: f"{s['generate_s_per_step']:.2f} s ({100 * s['generate_share']:.0f} %)")
    row("reference/old log-probs", lambda s: f"{s['ref_logps_s_per_step']:.2f} s ({100 * s['ref_logps_share']:.0f} %)")
    row(
        "loss forward + backward",
        lambda s: f"{s['loss_fwd_bwd_s_per_step']:.2f} s ({100 * s['loss_fwd_bwd_share']:.0f} %)",
    )
    row("optimizer", lambda s: f"{s['optimizer_s_per_step']:.3f} s")
    row("rewards", lambda s: f"{s['reward_ms_per_step']:.1f} ms")
    row(
        "vision encoding (inside the above)",
        lambda s: f"{s['vision_s_per_step']:.2f} s ({100 * s['vision_share']:.0f} %)",
    )
    row("peak GPU memory allocated (GiB)", lambda s: _fmt(s.get("peak_gpu_gib"), ".1f"))
    if base in summary and summary[base].get("peak_gpu_gib"):
        b = summary[base]
        row(
            f"peak memory vs {base}",
            lambda s: f"{s['peak_gpu_gib'] / b['peak_gpu_gib']:.3f}x" if s.get("peak_gpu_gib") else "n/a",
        )
    row("first-step loss (own batch)", lambda s: _fmt(s.get("first_step_loss"), ".3e"))
    row("loss on plain TRL's 1st batch", lambda s: _fmt(s["same_batch_check"].get("loss"), ".3e"))
    row("plain TRL's loss there", lambda s: _fmt(s["same_batch_check"].get("trl_loss"), ".3e"))
    row(
        "log-probs vs TRL's reference: max / mean abs diff",
        lambda s: (
            "n/a"
            if "logps_max_abs_diff_vs_trl_ref" not in s["same_batch_check"]
            else f"{s['same_batch_check']['logps_max_abs_diff_vs_trl_ref']:.3g} / "
            f"{s['same_batch_check']['logps_mean_abs_diff_vs_trl_ref']:.3g}"
        ),
    )
    return "\n".join(lines)


def gains_table(gains: dict, skipped: dict) -> str:
    lines = ["| lever off | step time (s) | all-on step (s) | gain of the lever |", "|---|---:|---:|---:|"]
    for name, g in gains.items():
        lines.append(f"| `{name}` | {g['step_s_off']:.2f} | {g['step_s_on']:.2f} | {g['gain']:.3f}x |")
    for name, why in skipped.items():
        lines.append(f"| `{name}` | {why} | | |")
    return "\n".join(lines)


def update_results_md(path: Path, section: str) -> None:
    block = f"{MARK_BEGIN}\n{section.rstrip()}\n{MARK_END}\n"
    text = path.read_text() if path.is_file() else "# Benchmark results\n\n"
    if MARK_BEGIN in text and MARK_END in text:
        head, rest = text.split(MARK_BEGIN, 1)
        tail = rest.split(MARK_END, 1)[1].lstrip("\n")
        text = head + block + ("\n" + tail if tail else "")
    else:
        text = text.rstrip("\n") + "\n\n" + block
    path.write_text(text)


# ------------------------------------------------------------------------------------------ main
def main(argv=None) -> int:
    args = parse(argv)
    t_start = time.time()
    os.environ.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1", PYTHONUNBUFFERED="1")
    if args.dry:
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    notes = setup_wheels(args)
    import torch

    sys.path.insert(0, str(HERE))
    import bench_trainer as BT

    on_gpu = torch.cuda.is_available() and not args.dry
    if not args.dry and not on_gpu:
        raise SystemExit("no CUDA device: run with --dry to check the script on the CPU")
    levers = list(BT.speed_levers()) if args.levers is None else [x.strip() for x in args.levers.split(",") if x]
    bad = [x for x in levers if x not in BT.speed_levers()]
    if bad:
        raise SystemExit(f"--levers {bad}: not in SPEED_LEVERS {BT.speed_levers()}")
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="gpu_trainer_"))
    work.mkdir(parents=True, exist_ok=True)
    from mrgfast.models.loading import pick_attention

    attn = pick_attention("auto") if on_gpu else "sdpa"
    host_model, model_info = build_model(args, work, attn)
    print(
        f"model: {model_info['parameters'] / 1e9:.3f} B parameters ({model_info['dtype']}, attention {attn}), built "
        f"in {model_info['build_s']} s",
        flush=True,
    )
    from mrgfast.data.synth import generate

    n_train = (args.warmup + args.steps) * args.prompts + 8
    annotation = generate(
        work / "data", n_train=n_train, n_val=0, n_test=1, image_size=args.image_size, views=2, seed=0
    )
    BT.pin_threads(0)
    BT.install_instrumentation()
    BT._STATE["model_factory"] = model_factory(host_model, "cuda" if on_gpu else "cpu")
    total = args.prompts * args.generations

    def grpo(new_tokens: int) -> list[str]:
        return [
            f"per_device_train_batch_size={args.micro_batch}",
            f"gradient_accumulation_steps={total // args.micro_batch}",
            f"num_generations={args.generations}",
            f"max_completion_length={new_tokens}",
            f"gradient_checkpointing={'false' if args.dry else 'true'}",
            "beta=0.04",
            "loss_type=dapo",
            "learning_rate=1e-5",
            "temperature=1.0",
            f"bf16={'true' if on_gpu else 'false'}",
        ]

    mrg = [
        f"lora_r={args.lora_r}",
        f"lora_alpha={2 * args.lora_r}",
        "lora_dropout=0.0",
        "grpo_use_lora=true",
        f"attn_implementation={attn}",
        "dataset_kind=synthetic",
    ]
    stem = str(work / "first_batch")

    def spec(new_tokens: int) -> SimpleNamespace:
        return SimpleNamespace(
            warmup=args.warmup,
            steps=args.steps,
            grpo=grpo(new_tokens),
            mrg=mrg,
            trl_loss=False,
            preset="tiny",
            model=str(work / "model"),
            annotation=str(annotation),
            loss_check=stem,
        )

    # auto_micro_batch spends free GPU memory on larger micro-batches by design; the memory criterion (<= plain TRL's
    # + 10 %) is therefore checked on mrgfast at TRL's own micro-batch (that lever off), the speed one on all levers on
    same_mb = BT.LEVER_OFF + "auto_micro_batch"
    phases = [("acceptance", args.new_tokens, ["trl+py-reward", "mrgfast", same_mb])]
    if not args.no_ablation and levers:
        ablation = [BT.LEVER_OFF + x for x in levers]
        if args.ablation_new_tokens != args.new_tokens:
            ablation = ["mrgfast", *ablation]
        phases.append(("ablation", args.ablation_new_tokens, ablation))
    t_run = time.time()
    results: dict = {name: {} for name, _, _ in phases}
    skipped: dict = {}
    failed: dict = {}  # "phase:variant" -> traceback
    for phase, new_tokens, variants in phases:
        for v in variants:
            elapsed = time.time() - t_run
            done = [r["wall_s"] for r in results[phase].values()]
            estimate = 2.0 * max(done) if done else 0.0  # a lever off is slower than all on (and than what ran)
            if elapsed + estimate > args.budget_s:
                skipped[v] = (
                    f"skipped: {elapsed:.0f} s used, about {estimate:.0f} s more would pass the {args.budget_s:.0f} s "
                    f"budget (run it alone: python bench/gpu_trainer.py --no-ablation or --levers "
                    f"{v.removeprefix(BT.LEVER_OFF)})"
                )
                print(f"  {phase:<10} {v:<36} {skipped[v]}", flush=True)
                continue
            t0 = time.time()
            try:
                res = BT.run_variant(spec(new_tokens), v)
            except Exception as e:  # one variant's failure must not cost the others their measurements
                import traceback

                failed[f"{phase}:{v}"] = "".join(traceback.format_exception(e))[-3000:]
                print(f"  {phase:<10} {v:<36} FAILED: {type(e).__name__}: {e}", flush=True)
                continue
            finally:
                release()
            res["new_tokens"] = new_tokens
            results[phase][v] = res
            print(
                f"  {phase:<10} {v:<36} step {res['rows'][-1]['seconds']:.2f} s, peak GPU "
                f"{res.get('peak_gpu_gib', 0.0):.1f} GiB ({time.time() - t0:.0f} s with start-up)",
                flush=True,
            )
    summaries = {}
    for phase, res_by_variant in results.items():
        summaries[phase] = {}
        for v, res in res_by_variant.items():
            s = BT.aggregate([res])
            s["peak_gpu_gib"] = res.get("peak_gpu_gib")
            s["peak_gpu_reserved_gib"] = res.get("peak_gpu_reserved_gib")
            summaries[phase][v] = s
    gains = BT.lever_gains(summaries.get("ablation", {})) if "ablation" in summaries else {}
    if "ablation" in summaries and "mrgfast" not in summaries["ablation"] and "mrgfast" in summaries["acceptance"]:
        gains = BT.lever_gains({**summaries["ablation"], "mrgfast": summaries["acceptance"]["mrgfast"]})
    checks = {}
    for key in failed:
        phase, v = key.split(":", 1)
        skipped.setdefault(v, f"failed in the {phase} phase (traceback in the JSON file)")
    acc = summaries["acceptance"]
    if "trl+py-reward" in acc and "mrgfast" in acc:
        a, b = acc["mrgfast"], acc["trl+py-reward"]
        speed = a["steps_per_s"] / b["steps_per_s"]
        checks["steps_per_s_ratio"] = speed
        checks["steps_per_s_ge_2x"] = speed >= 2.0
        if a.get("peak_gpu_gib") and b.get("peak_gpu_gib"):
            checks["peak_memory_ratio"] = a["peak_gpu_gib"] / b["peak_gpu_gib"]  # all levers, auto micro-batch included
        c = acc.get(same_mb, {})
        if c.get("peak_gpu_gib") and b.get("peak_gpu_gib"):
            checks["peak_memory_ratio_at_trl_micro_batch"] = c["peak_gpu_gib"] / b["peak_gpu_gib"]
            checks["peak_memory_le_1.10x"] = checks["peak_memory_ratio_at_trl_micro_batch"] <= 1.10
        sb = a["same_batch_check"]
        if "loss" in sb:
            # bf16: a loss of order one carries ~3 significant digits; the step-1 dapo loss is ~0, hence the floor
            checks["same_batch_loss_abs_diff"] = abs(sb["loss"] - sb["trl_loss"])
            checks["same_batch_loss_within_bf16"] = checks["same_batch_loss_abs_diff"] <= 1e-2 * max(
                1.0, abs(sb["trl_loss"])
            )
    machine = BT.machine()
    if on_gpu:
        machine["gpu"] = torch.cuda.get_device_name()
    if hasattr(os, "getloadavg"):
        machine["loadavg_at_end"] = os.getloadavg()
    tables = {
        phase: variant_table(s, "trl+py-reward" if phase == "acceptance" else "mrgfast")
        for phase, s in summaries.items()
        if s
    }
    print()
    for phase, tbl in tables.items():
        print(f"{phase}:\n{tbl}\n")
    if gains or skipped:
        print(gains_table(gains, skipped) + "\n")
    if checks:
        print(
            "acceptance: "
            + ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in checks.items())
        )
    cfg = {
        "prompts": args.prompts,
        "generations": args.generations,
        "new_tokens": args.new_tokens,
        "ablation_new_tokens": args.ablation_new_tokens,
        "micro_batch": args.micro_batch,
        "image_size": args.image_size,
        "views": 2,
        "lora_r": args.lora_r,
        "attention": attn,
        "levers": levers,
        "steps": args.steps,
        "warmup": args.warmup,
        "budget_s": args.budget_s,
        "grpo": grpo(args.new_tokens),
        "mrg": mrg,
    }
    out_path = (
        Path(args.out) if args.out else HERE / "results" / ("trainer_gpu_dry.json" if args.dry else "trainer_gpu.json")
    )
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(
        json.dumps(
            {
                "suite": "trainer_gpu",
                "dry": args.dry,
                "machine": machine,
                "model": model_info,
                "config": cfg,
                "notes": notes,
                "summary": summaries,
                "lever_gains": gains,
                "skipped": skipped,
                "failed": failed,
                "checks": checks,
                "raw": results,
                "seconds": round(time.time() - t_start, 1),
            },
            indent=1,
        )
    )
    md = Path(args.results_md) if args.results_md else (None if args.dry else HERE / "RESULTS.md")
    if md is not None:
        section = (
            f"## Trainer on a GPU: plain TRL vs `mrgfast train`, and each speed lever (`bench/gpu_trainer.py`)\n\n"
            f"{machine.get('gpu', 'CPU (dry run)')}, {time.strftime('%Y-%m-%d')}; random Qwen2.5-VL-3B-shaped model "
            f"({model_info['parameters'] / 1e9:.2f} B parameters, {model_info['dtype']}), LoRA r={args.lora_r}, "
            f"attention {attn}, {args.prompts} prompts x {args.generations} completions per step, 2 views of "
            f"{args.image_size} px per prompt, micro-batch {args.micro_batch}, gradient checkpointing, beta 0.04; "
            f"{args.steps} timed step(s) after {args.warmup} warm-up per variant. Command: `python "
            f"bench/gpu_trainer.py`. Plain TRL uses plain-Python rewards of the same output; vision encoding is the "
            f"vision tower's forward time inside the other columns.\n\n"
            f"Acceptance step ({args.new_tokens} new tokens):\n\n{tables.get('acceptance', '(no variant ran)')}\n"
        )
        if "ablation" in tables:
            section += (
                f"\nLever ablation ({args.ablation_new_tokens} new tokens; gain = all-on steps/s over lever-off "
                f"steps/s):\n\n{tables['ablation']}\n\n{gains_table(gains, skipped)}\n"
            )
        update_results_md(md, section)
        print(f"updated {md}")
    print(f"wrote {out_path} ({time.time() - t_start:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
