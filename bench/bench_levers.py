"""The generation and policy-pass levers of ``mrgfast train`` (issue 19, items 3-4) on the CPU, side by side.

Two parts, each in one run with the variants interleaved (A B C A B C), on a model the bench builds (random
weights, no download) where generation and the decoder dominate the step: hidden 512, 6 decoder layers, 8 heads,
the tokenizer's vocabulary, a 4-block vision tower of width 256, two 112-pixel views per study.

* ``--part generate``: TRL's generation alone (``generate`` on 2 prompts x 8 samples x 48 new tokens, LoRA r=64
  on every linear layer of the language model, model in training mode as TRL leaves it): LoRA unmerged (TRL),
  merged (``merge_lora_for_generation``), merged + static cache, merged + static cache + compiled decode
  (``compile_generation on``; the first call, which compiles, is reported apart). CPU seconds and wall seconds per
  call; the greedy tokens of every variant are checked against the plain path's.
* ``--part policy``: the fused policy pass (forward + backward) and a no-grad log-prob pass of one micro-batch
  of 16 rows, padded vs packed (``pack_sequences``), its completions cut to lengths drawn from 25-100 % of the
  maximum (random weights rarely sample EOS; a real run's reports vary in length).
  With ``share_prompt_prefix`` a third layout: the rows of one prompt as one sequence (``mrgfast train``'s
  default, packing on).
* ``--part prefill``: at ``bench/bench_trainer.py``'s ``qwen2.5-vl-vision`` shape (what its step's generation is
  made of): one ``generate`` of 2 prompts x 4 samples x 64 tokens (LoRA-free, frozen tower, the vision cache on, as
  ``mrgfast train`` generates) against the prefill of those 8 rows alone and the prefill of the 2 distinct prompts
  - what sharing the prompt's prefill across the G samples could take off generation (not a lever yet).
* ``--part trainer``: GRPO steps through ``bench/bench_trainer.py``'s workers (fresh process each): plain TRL
  (``trl+py-reward``), ``mrgfast train`` with every lever of this file on, and with each lever off in turn
  (``--mrg LEVER=off``). Steps/s and CPU s/step, the generation and loss shares.

    python bench/bench_levers.py --part generate
    python bench/bench_levers.py --part policy
    python bench/bench_levers.py --part trainer --rounds 2
    python bench/bench_levers.py --part prefill --generations 4 --new-tokens 64 --rounds 5

Writes ``bench/results/levers_<part>.json`` (with the machine and its load average).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

SHAPE = dict(hidden=512, layers=6, heads=8, vision_hidden=256, vision_depth=4, image_size=112)
LEVERS = ("merge_lora_for_generation", "compile_generation", "pack_sequences", "auto_micro_batch")


def build_assets(root: Path, n_train: int = 64) -> tuple[Path, Path]:
    from mrgfast.data.synth import generate
    from mrgfast.models.tiny import build_tiny

    s = SHAPE
    model = root / f"model_h{s['hidden']}_l{s['layers']}_v{s['vision_hidden']}x{s['vision_depth']}_i{s['image_size']}"
    data = root / f"data_i{s['image_size']}"
    if not (model / "config.json").is_file():
        build_tiny(
            model,
            hidden_size=s["hidden"],
            num_layers=s["layers"],
            num_heads=s["heads"],
            vision_hidden=s["vision_hidden"],
            vision_depth=s["vision_depth"],
            image_size=s["image_size"],
            seed=0,
        )
    if not (data / "annotation.json").is_file():
        generate(data, n_train=n_train, n_val=0, n_test=1, image_size=s["image_size"], views=2, seed=0)
    return model, data / "annotation.json"


def machine() -> dict:
    from bench_trainer import machine as m

    return m()


# ------------------------------------------------------------------------------------------- generate
def part_generate(args, model_dir: Path, annotation: Path) -> dict:
    import torch
    from peft import get_peft_model
    from transformers import GenerationConfig

    from mrgfast.data.r2gen import DEFAULT_INSTRUCTION, read_annotation, to_dataset
    from mrgfast.models.loading import load_model, load_processor, lora_config
    from mrgfast.train import generation_speed as gs

    torch.set_num_threads(args.threads)
    processor = load_processor(model_dir)
    model = load_model(model_dir, attn_implementation="sdpa")
    pm = get_peft_model(model, lora_config(64, 128, 0.0, list(LEVER_TARGETS), False, model))
    with torch.no_grad():
        for name, p in pm.named_parameters():
            if "lora_B" in name:
                p.normal_(0.0, 0.02, generator=torch.Generator().manual_seed(len(name)))
    pm.train()
    from trl.data_utils import prepare_multimodal_messages

    studies = read_annotation(annotation, splits=("train",), kind="synthetic")["train"][: args.prompts]
    ds = to_dataset(studies, instruction=DEFAULT_INSTRUCTION, with_completion=False)
    g = args.generations  # G samples per prompt, each row its own copy, as TRL repeats them
    msgs = [prepare_multimodal_messages(r["prompt"], r["images"]) for r in ds for _ in range(g)]
    rep = processor.apply_chat_template(
        msgs, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt", padding=True
    )
    rep = {k: v for k, v in rep.items() if torch.is_tensor(v)}
    merger = gs.LoraMergeForGeneration()
    compile_cfg = GenerationConfig()
    gs.configure_compiled_decode(compile_cfg, device="cpu")

    def gen(static: bool, compiled: bool):
        kw = dict(
            max_new_tokens=args.new_tokens,
            do_sample=False,
            pad_token_id=processor.tokenizer.pad_token_id,
            eos_token_id=None,
            disable_compile=not compiled,
        )
        if static:
            kw["cache_implementation"] = "static"
        if compiled:
            kw["compile_config"] = compile_cfg.compile_config
        cfg = GenerationConfig(**kw)
        t0, c0 = time.perf_counter(), time.process_time()
        with torch.no_grad():
            out = pm.generate(**rep, generation_config=cfg)
        return out[:, rep["input_ids"].shape[1] :], time.perf_counter() - t0, time.process_time() - c0

    variants = {
        "unmerged (TRL)": (False, False, False),
        "merged": (True, False, False),
        "merged + static cache": (True, True, False),
        "merged + static + compiled": (True, True, True),
    }
    results = {v: {"wall": [], "cpu": []} for v in variants}
    want = None
    first_compile = None
    for rnd in range(args.rounds + 1):  # round 0 warms every variant up (the compiled one compiles there)
        for name, (merge, static, compiled) in variants.items():
            ctx = merger.merged(pm) if merge else _null()
            with ctx:
                ids, wall, cpu = gen(static, compiled)
            if want is None:
                want = ids
            same = bool(torch.equal(ids, want))
            if rnd == 0:
                if compiled:
                    first_compile = {"wall": wall, "cpu": cpu}
                results[name]["same_tokens_as_unmerged"] = same
                continue
            results[name]["wall"].append(wall)
            results[name]["cpu"].append(cpu)
            results[name]["same_tokens_as_unmerged"] = results[name]["same_tokens_as_unmerged"] and same
            print(f"  round {rnd} {name:<28} wall {wall:6.2f} s  cpu {cpu:6.2f} s  same tokens: {same}", flush=True)
    base = statistics.median(results["unmerged (TRL)"]["cpu"])
    base_wall = statistics.median(results["unmerged (TRL)"]["wall"])
    print(f"\n{'variant':<30}{'cpu s (median)':>16}{'vs TRL':>9}{'wall s (median)':>17}{'vs TRL':>9}")
    for name, r in results.items():
        c, w = statistics.median(r["cpu"]), statistics.median(r["wall"])
        r.update(cpu_median=c, wall_median=w, cpu_ratio=c / base, wall_ratio=w / base_wall)
        print(f"{name:<30}{c:>16.3f}{c / base:>8.3f}x{w:>17.3f}{w / base_wall:>8.3f}x")
    print(f"first compiled call (compiles): wall {first_compile['wall']:.1f} s, cpu {first_compile['cpu']:.1f} s")
    return {"variants": results, "first_compiled_call": first_compile, "batch": int(rep["input_ids"].shape[0])}


LEVER_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


class _null:
    def __enter__(self):
        return None

    def __exit__(self, *a):
        return False


# ------------------------------------------------------------------------------------------- policy
def part_policy(args, model_dir: Path, annotation: Path) -> dict:
    """The fused policy pass (forward + backward) and a no-grad log-prob pass, packed vs padded, on one
    generation batch whose completions are cut to lengths drawn uniformly from 25-100 % of the maximum (random
    weights rarely sample EOS, so the completions of a real run's report lengths are drawn instead)."""
    import torch

    from mrgfast.data.r2gen import DEFAULT_INSTRUCTION, read_annotation, to_dataset
    from mrgfast.models.loading import load_model, load_processor
    from mrgfast.train.config import build_config
    from mrgfast.train.run import _peft, build_rewards
    from mrgfast.train.trainers import MrgGRPOTrainer

    torch.set_num_threads(args.threads)
    out_dir = tempfile.mkdtemp(prefix="bench_levers_policy_")
    g = {
        "max_steps": "1",
        "per_device_train_batch_size": "16",
        "num_generations": str(args.generations),
        "max_completion_length": str(args.new_tokens),
        "beta": "0.04",
        "save_strategy": "no",
    }
    over = {"output_dir": out_dir, "model_name_or_path": str(model_dir), "annotation": str(annotation), "grpo": g}
    over.update({"lora_r": "64", "lora_alpha": "128", "lora_dropout": "0.0", "stages": "grpo"})
    cfg = build_config("tiny", None, over)
    studies = read_annotation(annotation, splits=("train",), kind="synthetic")["train"]
    model = load_model(model_dir, attn_implementation="sdpa")
    trainer = MrgGRPOTrainer(
        model=model,
        reward_funcs=build_rewards(cfg),
        args=cfg.grpo,
        train_dataset=to_dataset(studies, instruction=DEFAULT_INSTRUCTION, with_completion=False),
        processing_class=load_processor(model_dir),
        peft_config=_peft(cfg, model),
        use_fused_loss=True,
    )
    trainer.current_gradient_accumulation_steps = 1
    trainer.model.train()
    inputs = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
    cm = inputs["completion_mask"].clone()
    c = cm.size(1)
    gen = torch.Generator().manual_seed(0)
    lengths = torch.randint(max(1, c // 4), c + 1, (cm.size(0),), generator=gen)
    cm = (torch.arange(c).unsqueeze(0) < lengths.unsqueeze(1)).to(cm.dtype)
    inputs["completion_mask"] = cm
    inputs["completion_ids"] = inputs["completion_ids"].masked_fill(
        cm == 0, trainer.processing_class.tokenizer.pad_token_id
    )
    ids = torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], 1)
    mask = torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], 1)
    real_tokens, slots = int(mask.sum()), mask.numel()
    print(
        f"micro-batch {mask.size(0)} rows x {mask.size(1)} slots, {real_tokens} real tokens ({100 * real_tokens / slots:.0f} %)"
    )

    def policy():
        loss = trainer._fused_compute_loss(trainer.model, inputs)
        loss.backward()

    def logps():
        with torch.no_grad():
            trainer._get_per_token_logps_and_entropies(
                trainer.model,
                ids,
                mask,
                c,
                batch_size=16,
                pixel_values=inputs["pixel_values"],
                image_grid_thw=inputs["image_grid_thw"],
                num_images=inputs["num_images"],
                mm_token_type_ids=inputs.get("mm_token_type_ids"),
            )

    layouts = {"padded": (False, False), "packed": (True, False), "shared": (True, True)}  # (pack, share)
    res = {}
    for name, fn in (("policy fwd+bwd", policy), ("no-grad log-probs", logps)):
        times = {layout: [] for layout in layouts}
        for rnd in range(args.rounds + 1):
            for layout, (pack, share) in layouts.items():
                trainer.pack_sequences, trainer.share_prompt_prefix = pack, share
                trainer.model.zero_grad()
                t0, c0 = time.perf_counter(), time.process_time()
                fn()
                wall, cpu = time.perf_counter() - t0, time.process_time() - c0
                if rnd:
                    times[layout].append((wall, cpu))
        res[name] = {}
        for layout in layouts:
            res[name][f"{layout}_cpu"] = statistics.median(t[1] for t in times[layout])
            res[name][f"{layout}_wall"] = statistics.median(t[0] for t in times[layout])
        r = res[name]
        print(
            f"{name:<20} padded cpu {r['padded_cpu']:.3f} s, packed {r['packed_cpu']:.3f} s "
            f"({r['packed_cpu'] / r['padded_cpu']:.3f}x), shared prompts {r['shared_cpu']:.3f} s "
            f"({r['shared_cpu'] / r['padded_cpu']:.3f}x); wall {r['padded_wall']:.3f} / {r['packed_wall']:.3f} / "
            f"{r['shared_wall']:.3f} s"
        )
    trainer.pack_sequences, trainer.share_prompt_prefix = True, False
    from mrgfast.train import packing, shared_prefix

    kw = {
        "input_ids": ids,
        "attention_mask": mask,
        "pixel_values": inputs["pixel_values"],
        "image_grid_thw": inputs["image_grid_thw"],
        "mm_token_type_ids": inputs.get("mm_token_type_ids"),
    }
    p = packing.pack(trainer.model.get_base_model(), kw)
    layout = None if p is None else {"rows": p.rows, "length": p.length, "tokens": p.tokens}
    print(f"packed layout: {layout}")
    sh = shared_prefix.share(trainer.model.get_base_model(), kw, inputs["prompt_ids"].size(1), pack=True)
    shared = (
        None if sh is None else {"rows": sh.rows, "length": sh.length, "sequences": sh.sequences, "tokens": sh.tokens}
    )
    print(f"shared-prompt layout: {shared}")
    return {
        "timings": res,
        "rows": mask.size(0),
        "slots": slots,
        "real_tokens": real_tokens,
        "layout": layout,
        "shared_layout": shared,
    }


# ------------------------------------------------------------------------------------------- prefill
def part_prefill(args, model_dir: Path, annotation: Path) -> dict:
    """``generate`` vs the prefill of its rows vs the prefill of the distinct prompts (CPU seconds, medians)."""
    import bench_trainer as bt
    import torch
    from trl.data_utils import prepare_multimodal_messages

    from mrgfast.data.r2gen import DEFAULT_INSTRUCTION, read_annotation, to_dataset
    from mrgfast.models.loading import load_model, load_processor
    from mrgfast.train.vision_cache import VisionCache

    torch.set_num_threads(args.threads)
    shape = bt.SHAPES["qwen2.5-vl-vision"]
    model_dir, annotation = bt.prepare_assets(
        Path(model_dir).parent,
        hidden=shape["hidden"],
        layers=shape["layers"],
        heads=shape["heads"],
        image_size=shape["image_size"],
        n_train=16,
        vision=shape["vision"],
    )
    processor = load_processor(model_dir)
    model = load_model(model_dir, attn_implementation="sdpa").requires_grad_(False)  # a frozen tower: the cache
    studies = read_annotation(Path(annotation), splits=("train",), kind="synthetic")["train"][: args.prompts]
    ds = to_dataset(studies, instruction=DEFAULT_INSTRUCTION, with_completion=False)

    def rows(g):
        msgs = [prepare_multimodal_messages(r["prompt"], r["images"]) for r in ds for _ in range(g)]
        out = processor.apply_chat_template(
            msgs, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt", padding=True
        )
        return {k: v for k, v in out.items() if torch.is_tensor(v)}

    g = args.generations
    every, distinct = rows(g), rows(1)
    cache = VisionCache()

    def timed(fn, n):
        cpu = []
        for _ in range(n):
            cache.clear()  # a new generation batch: each distinct image encoded once, as in mrgfast train
            with cache.active(model), torch.no_grad():
                c0 = time.process_time()
                fn()
                cpu.append(time.process_time() - c0)
        return statistics.median(cpu)

    def generate():
        model.generate(**every, max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens, do_sample=True, top_k=0)

    parts = {
        "generate": generate,
        "prefill, every row": lambda: model(**every, use_cache=True),
        "prefill, distinct prompts": lambda: model(**distinct, use_cache=True),
    }
    for fn in parts.values():  # warm-up
        timed(fn, 1)
    res = {name: timed(fn, args.rounds) for name, fn in parts.items()}
    gen, full, uniq = res["generate"], res["prefill, every row"], res["prefill, distinct prompts"]
    print(
        f"{every['input_ids'].shape[0]} rows x {every['input_ids'].shape[1]} prompt tokens, {args.new_tokens} new: "
        f"generate {gen:.3f} CPU s; prefill of every row {full:.3f} s ({100 * full / gen:.1f} %); of the "
        f"{distinct['input_ids'].shape[0]} distinct prompts {uniq:.3f} s; sharing the prefill would save "
        f"{full - uniq:.3f} s ({100 * (full - uniq) / gen:.1f} % of generation)"
    )
    return {"cpu_s": res, "rows": every["input_ids"].shape[0], "prompt_tokens": every["input_ids"].shape[1]}


# ------------------------------------------------------------------------------------------- trainer
def part_trainer(args, model_dir: Path, annotation: Path) -> dict:
    from bench_trainer import aggregate

    grpo = [
        "per_device_train_batch_size=16",
        f"num_generations={args.generations}",
        f"max_completion_length={args.new_tokens}",
        "beta=0.04",
    ] + (args.grpo or [])
    mrg = ["lora_r=64", "lora_alpha=128", "lora_dropout=0.0"] + (args.mrg or [])
    variants = {"trl+py-reward": ("trl+py-reward", []), "mrgfast (levers on)": ("mrgfast", [])}
    for lever in LEVERS:
        variants[f"mrgfast, {lever} off"] = ("mrgfast", [f"{lever}=off"])
    variants["mrgfast, all four off"] = ("mrgfast", [f"{lv}=off" for lv in LEVERS])
    if args.variants:
        keep = [v.strip() for v in args.variants.split(";")]
        variants = {k: v for k, v in variants.items() if k in keep}
    raw = {v: [] for v in variants}
    for rnd in range(args.rounds):
        for name, (worker, extra) in variants.items():
            with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as tf:
                out = tf.name
            cmd = [sys.executable, str(HERE / "bench_trainer.py"), "--worker", worker, "--model", str(model_dir)]
            cmd += ["--annotation", str(annotation), "--out", out, "--preset", "tiny", "--steps", str(args.steps)]
            cmd += ["--warmup", str(args.warmup), "--threads", str(args.threads)]
            for kv in grpo:
                cmd += ["--grpo", kv]
            for kv in mrg + extra:
                cmd += ["--mrg", kv]
            t0 = time.time()
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                print(proc.stdout[-3000:], proc.stderr[-6000:], file=sys.stderr)
                raise SystemExit(f"variant {name} failed (exit {proc.returncode})")
            res = json.loads(Path(out).read_text())
            os.unlink(out)
            raw[name].append(res)
            med = statistics.median(r["seconds"] for r in res["rows"])
            cpu = statistics.median(r["cpu_seconds"] for r in res["rows"])
            print(
                f"  round {rnd + 1} {name:<40} median step {med:.2f} s, cpu {cpu:.2f} s ({time.time() - t0:.0f} s)",
                flush=True,
            )
    summary = {v: aggregate(raw[v]) for v in variants}
    base = summary.get("trl+py-reward")
    on = summary.get("mrgfast (levers on)")
    print(
        f"\n{'variant':<42}{'steps/s':>9}{'vs TRL':>8}{'CPU s/step':>12}{'gen s/step':>12}{'loss f+b s':>12}"
        f"{'on/this':>9}"
    )
    for name, s in summary.items():
        vs = s["steps_per_s"] / base["steps_per_s"] if base else float("nan")
        gain = on["steps_per_s"] / s["steps_per_s"] if on else float("nan")
        s["steps_per_s_vs_trl"], s["levers_on_speedup_over_this"] = vs, gain
        print(
            f"{name:<42}{s['steps_per_s']:>9.4f}{vs:>7.3f}x{s['cpu_s_per_step']:>12.2f}"
            f"{s['generate_s_per_step']:>12.2f}{s['loss_fwd_bwd_s_per_step']:>12.2f}{gain:>8.3f}x"
        )
    return {"summary": summary, "raw": raw, "grpo": grpo, "mrg": mrg}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--part", choices=("generate", "policy", "trainer", "prefill"), required=True)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--steps", type=int, default=2, help="timed steps per trainer variant and round")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--prompts", type=int, default=2)
    ap.add_argument("--generations", type=int, default=8)
    ap.add_argument("--new-tokens", type=int, default=48)
    ap.add_argument("--grpo", action="append", metavar="FIELD=VALUE")
    ap.add_argument("--mrg", action="append", metavar="FIELD=VALUE")
    ap.add_argument("--variants", default=None, help="';'-separated subset of the trainer variants' names")
    ap.add_argument("--assets", default=None, help="folder for the model and data (default: a temp folder)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
        os.environ.setdefault(k, "1")
    assets = Path(args.assets) if args.assets else Path(tempfile.mkdtemp(prefix="bench_levers_"))
    assets.mkdir(parents=True, exist_ok=True)
    info = machine()
    t0 = time.time()
    model_dir, annotation = build_assets(assets)
    print(
        f"shape {SHAPE}; {args.prompts} prompts x {args.generations} completions x {args.new_tokens} tokens", flush=True
    )
    parts = {"generate": part_generate, "policy": part_policy, "trainer": part_trainer, "prefill": part_prefill}
    result = parts[args.part](args, model_dir, annotation)
    info["loadavg_at_end"] = os.getloadavg()
    out = {
        "suite": f"levers_{args.part}",
        "machine": info,
        "shape": SHAPE,
        "args": {k: v for k, v in vars(args).items() if k != "json"},
        "result": result,
        "seconds": round(time.time() - t0, 1),
        "date": time.strftime("%Y-%m-%d"),
    }
    path = Path(args.json or HERE / "results" / f"levers_{args.part}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1, default=str))
    print(f"load average at start {info.get('loadavg_at_start')}, at end {info['loadavg_at_end']}; wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
