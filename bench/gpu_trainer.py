"""GPU trainer benchmark: plain ``trl.GRPOTrainer`` vs ``mrgfast train`` on a randomly initialised
Qwen2.5-VL-3B-shaped model, LoRA, bf16, flash-attention (SDPA without flash-attn), sized for one
device call (< 8 minutes).

1. Puts carried wheels on the path: ``--wheels DIR`` (default ``.whl/``) is pip-installed with
   ``--no-index --no-deps --target /tmp/site`` (mrgfast with its Rust extension, flash-attn, ...).
2. Builds the model: Qwen2.5-VL-3B's shapes (text: hidden 2048, 36 layers, 16 heads / 2 KV heads,
   MLP 11008, vocabulary 151,936; vision: 32 blocks of 1280, patch 14, 2x2 merge), random bf16
   weights on the GPU, saved once to a local folder; the tokenizer/processor are mrgfast's tiny ones
   (nothing is downloaded; a random model never emits EOS, so every completion runs the full length).
3. Runs each variant in its own process through ``bench/bench_trainer.py``'s worker (same
   instrumentation as the CPU suite): 8 prompts x 8 completions x 256 new tokens per optimizer step
   (generation batch 64, trained in micro-batches of ``--micro-batch``), LoRA r=64 on the language
   model, gradient checkpointing, ``--warmup`` untimed + ``--steps`` timed steps:
   ``trl+py-reward`` (plain TRL, plain-Python rewards of the same output) and ``mrgfast``
   (``mrgfast train``'s GRPO stage, fused loss on).
4. Records step time, the shares of generation / rewards / training (log-probs, loss, backward,
   optimizer) with the split of ``bench_trainer.py`` (reference/old log-probs, loss forward+backward,
   optimizer; spans are host-timed, and the mrgfast variant's reference passes go through
   ``mrgfast.kernels.token_logps``), tokens/s and peak GPU memory; prints a table, writes
   ``bench/results/trainer_gpu.json`` and replaces the trainer section of ``bench/RESULTS.md``.

    python bench/gpu_trainer.py            # on the device (one call, about 4-5 minutes)
    python bench/gpu_trainer.py --dry      # anywhere: tiny shapes on the CPU, same code path, no RESULTS.md
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

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
    ap.add_argument("--new-tokens", type=int, default=256)
    ap.add_argument("--micro-batch", type=int, default=16, help="completions per forward/backward (default 16)")
    ap.add_argument("--image-size", type=int, default=336, help="pixels per side of each of the 2 views")
    ap.add_argument("--lora-r", type=int, default=64)
    ap.add_argument("--steps", type=int, default=2, help="timed optimizer steps per variant (default 2)")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--variants", default="trl+py-reward,mrgfast")
    ap.add_argument("--no-fused", action="store_true", help="mrgfast variant with TRL's loss instead of the fused one")
    ap.add_argument("--wheels", default=str(REPO / ".whl"))
    ap.add_argument("--site", default="/tmp/site")
    ap.add_argument("--work", default=None, help="folder for the model and data (default: a temp folder)")
    ap.add_argument("--out", default=None, help="JSON path (default bench/results/trainer_gpu[_dry].json)")
    ap.add_argument(
        "--results-md",
        default=None,
        help="markdown file whose trainer section is replaced (default bench/RESULTS.md on a GPU; none with --dry)",
    )
    args = ap.parse_args(argv)
    if args.dry:
        args.prompts, args.generations, args.new_tokens, args.micro_batch = 2, 2, 8, 2
        args.image_size, args.lora_r, args.steps, args.warmup = 56, 4, 1, 1
    if (args.prompts * args.generations) % args.micro_batch:
        ap.error("--micro-batch must divide prompts x generations")
    return args


def setup_wheels(args) -> dict:
    from carried_wheels import install_carried_wheels

    return install_carried_wheels(args.wheels, args.site)


def build_model(args, folder: Path) -> dict:
    """The random 3B-shaped (or --dry tiny) Qwen2.5-VL with mrgfast's tiny processor, saved to ``folder``."""
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
    model_dir = folder / "model"
    t0 = time.time()
    torch.manual_seed(0)
    with torch.device(device):
        model = Qwen2_5_VLForConditionalGeneration._from_config(config, dtype=dtype)
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    n_params = sum(p.numel() for p in model.parameters())
    model.save_pretrained(model_dir)
    processor.save_pretrained(model_dir)
    del model
    if device == "cuda":
        torch.cuda.empty_cache()
    return {
        "parameters": n_params,
        "dtype": str(dtype).replace("torch.", ""),
        "build_and_save_s": round(time.time() - t0, 1),
        "text": shapes["text"],
        "vision": shapes["vision"],
    }


def shares_table(summary: dict) -> str:
    cols = list(summary)
    lines = ["| | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]

    def row(label, fn):
        lines.append(f"| {label} | " + " | ".join(fn(summary[c]) for c in cols) + " |")

    row("step time, median (s)", lambda s: f"{s['step_s_median']:.2f}")
    row("steps/s", lambda s: f"{s['steps_per_s']:.4f}")
    row("tokens/s (prompt + completion)", lambda s: f"{s['tokens_per_s']:.0f}" if s.get("tokens_per_s") else "n/a")
    row("completion tokens/s", lambda s: f"{s['completion_tokens_per_s']:.0f}")
    row("generation share", lambda s: f"{100 * s['generate_share']:.1f} %")
    row("reward share", lambda s: f"{100 * s['reward_share']:.3f} %")
    row("training share (log-probs, loss, backward, optimizer)", lambda s: f"{100 * s['rest_share']:.1f} %")
    row("split: reference/old log-probs", lambda s: f"{100 * s['ref_logps_share']:.1f} %")
    row("split: loss forward + backward", lambda s: f"{100 * s['loss_fwd_bwd_share']:.1f} %")
    row("split: optimizer", lambda s: f"{100 * s['optimizer_share']:.1f} %")
    row("peak GPU memory allocated (GiB)", lambda s: f"{s['peak_gpu_gib']:.1f}" if s.get("peak_gpu_gib") else "n/a")
    base = summary.get("trl+py-reward")
    if base:
        row("steps/s vs plain TRL", lambda s: f"{s['steps_per_s'] / base['steps_per_s']:.3f}x")
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


def main(argv=None) -> int:
    args = parse(argv)
    t_start = time.time()
    os.environ.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1", PYTHONUNBUFFERED="1")
    notes = setup_wheels(args)
    import torch

    sys.path.insert(0, str(HERE))
    import bench_trainer as BT

    on_gpu = torch.cuda.is_available() and not args.dry
    if not args.dry and not on_gpu:
        raise SystemExit("no CUDA device: run with --dry to check the script on the CPU")
    if args.dry:
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="gpu_trainer_"))
    work.mkdir(parents=True, exist_ok=True)
    model_info = build_model(args, work)
    print(
        f"model: {model_info['parameters'] / 1e9:.3f} B parameters ({model_info['dtype']}), built and saved in "
        f"{model_info['build_and_save_s']} s",
        flush=True,
    )
    from mrgfast.data.synth import generate

    n_train = (args.warmup + args.steps) * args.prompts + 8
    annotation = generate(
        work / "data", n_train=n_train, n_val=0, n_test=1, image_size=args.image_size, views=2, seed=0
    )
    from mrgfast.models.loading import pick_attention

    attn = pick_attention("auto") if on_gpu else "sdpa"
    total = args.prompts * args.generations
    grpo = [
        f"per_device_train_batch_size={args.micro_batch}",
        f"gradient_accumulation_steps={total // args.micro_batch}",
        f"num_generations={args.generations}",
        f"max_completion_length={args.new_tokens}",
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
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    results = {}
    for v in variants:
        out = work / f"{v}.json"
        cmd = [
            sys.executable,
            str(HERE / "bench_trainer.py"),
            "--worker",
            v,
            "--model",
            str(work / "model"),
            "--annotation",
            str(annotation),
            "--out",
            str(out),
            "--preset",
            "tiny",
            "--steps",
            str(args.steps),
            "--warmup",
            str(args.warmup),
            "--threads",
            "0",
        ]
        if v == "mrgfast" and args.no_fused:
            cmd.append("--trl-loss")
        for kv in grpo:
            cmd += ["--grpo", kv]
        for kv in mrg:
            cmd += ["--mrg", kv]
        t0 = time.time()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            print(proc.stdout[-3000:], proc.stderr[-8000:], file=sys.stderr)
            raise SystemExit(f"variant {v} failed (exit {proc.returncode})")
        res = json.loads(out.read_text())
        results[v] = res
        print(
            f"  {v:<16} median step {sorted(r['seconds'] for r in res['rows'])[len(res['rows']) // 2]:.2f} s "
            f"({time.time() - t0:.0f} s with start-up and model load)",
            flush=True,
        )
    summary = {}
    for v, res in results.items():
        s = BT.aggregate([res])
        s["peak_gpu_gib"] = res.get("peak_gpu_gib")
        s["peak_gpu_reserved_gib"] = res.get("peak_gpu_reserved_gib")
        summary[v] = s
    machine = BT.machine()
    if on_gpu:
        machine["gpu"] = torch.cuda.get_device_name()
    cfg = {
        "prompts": args.prompts,
        "generations": args.generations,
        "new_tokens": args.new_tokens,
        "micro_batch": args.micro_batch,
        "image_size": args.image_size,
        "views": 2,
        "lora_r": args.lora_r,
        "attention": attn,
        "fused_loss_in_mrgfast": not args.no_fused,
        "steps": args.steps,
        "warmup": args.warmup,
        "grpo": grpo,
        "mrg": mrg,
    }
    table = shares_table(summary)
    print()
    print(table)
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
                "summary": summary,
                "raw": results,
                "seconds": round(time.time() - t_start, 1),
            },
            indent=1,
        )
    )
    md = Path(args.results_md) if args.results_md else (None if args.dry else HERE / "RESULTS.md")
    if md is not None:
        section = (
            f"## Trainer: plain TRL vs `mrgfast train` on a GPU (`bench/gpu_trainer.py`)\n\n"
            f"{machine.get('gpu', 'CPU (dry run)')}; random Qwen2.5-VL-3B-shaped model "
            f"({model_info['parameters'] / 1e9:.2f} B parameters, {model_info['dtype']}), LoRA r={args.lora_r}, "
            f"attention {attn}, {args.prompts} prompts x {args.generations} completions x {args.new_tokens} new tokens "
            f"per step (2 views of {args.image_size} px per prompt), micro-batch {args.micro_batch}, gradient "
            f"checkpointing; median of {args.steps} steps after {args.warmup} warm-up. `mrgfast` = `mrgfast train`'s "
            f"GRPO stage{' with the fused loss' if not args.no_fused else ''}; plain TRL uses plain-Python rewards of "
            f"the same output. Training share = step time outside generation and rewards.\n\n{table}\n"
        )
        update_results_md(md, section)
        print(f"updated {md}")
    print(f"wrote {out_path} ({time.time() - t_start:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
