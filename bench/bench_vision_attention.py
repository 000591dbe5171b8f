"""Qwen2.5-VL's vision tower with transformers' per-window attention loop vs mrgfast's packed attention, side by side.

The tower is built from a config (random weights, no download) with Qwen2.5-VL-3B's vision shape by default cut to
``--depth`` blocks (the last in full attention, the others in 112-px windows); ``--views`` images of ``--size`` px.
Two copies with the same weights: ``sdpa`` (transformers' loop: one SDPA call per window) and the same after
``mrgfast.models.vision_attention.use_packed_vision_attention``. Timed, interleaved over ``--reps``: the forward
without gradients (generation, the no-grad log-prob passes, the vision cache's fill) and forward + backward with the
input requiring grad (the policy pass of the plain path, where PEFT + gradient checkpointing put the frozen tower in
the graph). The outputs are checked equal first (rtol 1e-5 in fp32).

    python bench/bench_vision_attention.py                                  # 3B widths, 2 blocks, 16 views of 168 px, CPU
    python bench/bench_vision_attention.py --hidden 640 --heads 8 --intermediate 1710   # the CPU trainer bench's tower
    python bench/bench_vision_attention.py --device cuda --dtype bfloat16 --depth 32 --views 128 --size 336   # 3B step
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def build(args, packed: bool):
    import torch
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    from mrgfast.models.vision_attention import use_packed_vision_attention

    torch.manual_seed(0)
    cfg = Qwen2_5_VLConfig(
        text_config=dict(
            vocab_size=128,
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=1,
            num_attention_heads=4,
            num_key_value_heads=2,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]},
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=0,
        ),
        vision_config=dict(
            depth=args.depth,
            hidden_size=args.hidden,
            intermediate_size=args.intermediate,
            num_heads=args.heads,
            out_hidden_size=64,
            patch_size=14,
            spatial_merge_size=2,
            temporal_patch_size=2,
            window_size=112,
            fullatt_block_indexes=[args.depth - 1],
        ),
        attn_implementation="sdpa",
    )
    dtype = getattr(torch, args.dtype)
    with torch.device(args.device):
        model = Qwen2_5_VLForConditionalGeneration._from_config(cfg, dtype=dtype)
    model.requires_grad_(False)
    if packed:
        use_packed_vision_attention(model)
    return model.model.visual


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hidden", type=int, default=1280)
    ap.add_argument("--heads", type=int, default=16)
    ap.add_argument("--intermediate", type=int, default=3420)
    ap.add_argument("--depth", type=int, default=2)
    ap.add_argument("--views", type=int, default=16)
    ap.add_argument("--size", type=int, default=168, help="pixels per side (a multiple of 28)")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--json", default=None, help="result file (default bench/results/vision_attention_<device>.json)")
    args = ap.parse_args(argv)
    import torch

    from mrgfast.models import vision_attention as VA

    if args.threads:
        torch.set_num_threads(args.threads)
    side = args.size // 14
    grid = torch.tensor([[1, side, side]] * args.views, device=args.device)
    pixels = torch.randn(
        int(grid.prod(-1).sum()), 3 * 2 * 14 * 14, device=args.device, dtype=getattr(torch, args.dtype)
    )
    loop = build(args, packed=False)
    packed = build(args, packed=True)
    packed.load_state_dict(loop.state_dict())  # the same weights
    cuda = args.device.startswith("cuda")

    def sync():
        if cuda:
            torch.cuda.synchronize()

    with torch.no_grad():
        a, b = loop(pixels, grid_thw=grid).pooler_output, packed(pixels, grid_thw=grid).pooler_output
    tol = dict(rtol=1e-5, atol=1e-5) if args.dtype == "float32" else dict(rtol=2e-2, atol=2e-2)
    torch.testing.assert_close(b, a, **tol)

    def forward(tower):
        sync()
        t0 = time.perf_counter()
        with torch.no_grad():
            tower(pixels, grid_thw=grid)
        sync()
        return time.perf_counter() - t0

    def forward_backward(tower):
        x = pixels.clone().requires_grad_(True)
        sync()
        t0 = time.perf_counter()
        tower(x, grid_thw=grid).pooler_output.float().sum().backward()
        sync()
        return time.perf_counter() - t0

    times = {(k, m): [] for k in ("loop", "packed") for m in ("forward", "forward+backward")}
    VA.calls.clear()
    for _ in range(args.reps):
        for name, tower in (("loop", loop), ("packed", packed)):
            times[(name, "forward")].append(forward(tower))
            times[(name, "forward+backward")].append(forward_backward(tower))
    out = {
        "suite": "vision_attention",
        "config": vars(args),
        "windows_per_view": ((side // 2 + 3) // 4) ** 2,
        "backend_calls": dict(VA.calls),
        "loadavg": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "results": {},
    }
    print(
        f"vision tower: hidden {args.hidden}, {args.heads} heads, MLP {args.intermediate}, {args.depth} blocks; "
        f"{args.views} views of {args.size} px ({out['windows_per_view']} windows each), {args.device} {args.dtype}; "
        f"packed backend calls {dict(VA.calls)}"
    )
    for mode in ("forward", "forward+backward"):
        lo, pa = times[("loop", mode)], times[("packed", mode)]
        r = {
            "loop_median_s": statistics.median(lo),
            "packed_median_s": statistics.median(pa),
            "loop_min_s": min(lo),
            "packed_min_s": min(pa),
            "packed_over_loop_median": statistics.median(pa) / statistics.median(lo),
        }
        out["results"][mode] = r
        print(
            f"  {mode:<17} loop {r['loop_median_s']:.3f} s  packed {r['packed_median_s']:.3f} s  "
            f"(packed / loop {r['packed_over_loop_median']:.3f}, medians of {args.reps})"
        )
    path = Path(args.json) if args.json else HERE / "results" / f"vision_attention_{args.device.split(':')[0]}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
