"""GPU check + timing of the fused GRPO loss, sized for one device call (< 5 minutes).

1. Puts carried wheels on the path: ``--wheels DIR`` (default ``.whl/``) is pip-installed with
   ``--no-index --no-deps --target /tmp/site``; mrgfast.kernels comes from that wheel, else from the repo tree.
2. Checks mrgfast's Triton path against the full-logits reference at real shapes in bf16
   (hidden 3584, vocabulary 152,064, 8,192 tokens): loss, logps and hidden/weight gradients.
3. Times forward-only per-token log-probs (the reference/old-policy passes): TRL's ChunkedLogProbFunction
   forward vs ``mrgfast.kernels.token_logps``, and checks the latter against full logits.
4. Times forward+backward of full-logits torch, TRL ChunkedLogProbFunction + TRL loss, Liger
   LigerFusedLinearGRPOLoss, Apple's cut-cross-entropy (its Triton ``impl="cce"``) and mrgfast with CUDA events
   (median of >= 20), printing ms, peak GiB (over inputs, weights and their grads) and achieved TFLOP/s
   (6·N·H·V per fwd+bwd), at the main shape and then for each of ``--sweep-vocabs``. A peer that cannot be
   imported is skipped with the reason.

    python bench/gpu_loss.py                 # on the device
    python bench/gpu_loss.py --dry           # anywhere: tiny shapes, Triton interpreter on the CPU
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
import types
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent


def _parse():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dry", action="store_true", help="tiny shapes on the CPU, Triton kernels in the interpreter")
    ap.add_argument("--tokens", type=int, default=8192)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--hidden", type=int, default=3584)
    ap.add_argument("--vocab", type=int, default=152064)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--impls", default="full,trl,liger,cce,mrgfast")
    ap.add_argument(
        "--sweep-vocabs",
        default="32000,128256,256000",
        help="vocabularies timed after the main shape, same tokens and hidden ('' for none)",
    )
    ap.add_argument("--liger-compiled", type=int, default=1, help="LigerFusedLinearGRPOLoss(compiled=...)")
    ap.add_argument("--wheels", default=str(REPO / ".whl"))
    ap.add_argument("--site", default="/tmp/site")
    ap.add_argument("--out", default=None, help="JSON path (default bench/results/loss_gpu[_dry].json)")
    args = ap.parse_args()
    if args.dry:
        args.tokens, args.batch, args.hidden, args.vocab = 48, 4, 32, 1000
        args.iters, args.warmup = 3, 1
        args.sweep_vocabs = "500" if args.sweep_vocabs else ""
    return args


def _setup_imports(args) -> dict:
    """Carried wheels first, then the repo tree for mrgfast.kernels (without needing mrgfast's Rust extension)."""
    from carried_wheels import install_carried_wheels

    notes = install_carried_wheels(args.wheels, args.site)
    try:
        import mrgfast.kernels

        notes["mrgfast.kernels"] = "installed package"
    except Exception as e:  # wheel absent or its extension unusable here: load only the kernels from the tree
        for name in [m for m in sys.modules if m == "mrgfast" or m.startswith("mrgfast.")]:
            del sys.modules[name]
        pkg = types.ModuleType("mrgfast")
        pkg.__path__ = [str(REPO / "mrgfast")]
        sys.modules["mrgfast"] = pkg
        import mrgfast.kernels  # noqa: F401

        notes["mrgfast.kernels"] = f"repo tree ({type(e).__name__}: {str(e)[:120]})"
    try:  # TRL's kernel backward imports trl.trainer.utils (accelerate, datasets...): stub it if that fails
        import trl.trainer.utils
    except Exception as e:
        try:
            import trl.kernels  # noqa: F401

            stub = types.ModuleType("trl.trainer.utils")
            stub.maybe_gather_lm_head_ctx = lambda *a, **k: contextlib.nullcontext()
            stub._CHUNKED_LOGPROB_CHUNK_SIZE = 32768
            sys.modules["trl.trainer.utils"] = stub
            notes["trl.trainer.utils"] = f"stubbed ({type(e).__name__}: {str(e)[:120]})"
        except Exception:
            pass
    return notes


def _timed(args, fn, reset=None):
    """Median/min ms over ``args.iters`` calls (CUDA events; wall clock with --dry) and the extra peak bytes."""
    import torch

    for _ in range(args.warmup):
        if reset:
            reset()
        fn()
    times = []
    if args.dry:
        for _ in range(args.iters):
            if reset:
                reset()
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
        return sorted(times), float("nan")
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    for _ in range(args.iters):
        if reset:
            reset()
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        torch.cuda.synchronize()
        times.append(a.elapsed_time(b))
    return sorted(times), torch.cuda.max_memory_allocated() - base


def time_impls(args, makers, impls, h, w, ids, mask, adv, old, ref) -> list[dict]:
    """Forward+backward of each implementation; peak = over inputs, weights and their grads."""
    import torch

    N, H = h.shape[0] * h.shape[1], h.shape[2]
    V = w.shape[0]
    flops = 6.0 * N * H * V
    grad_bytes = (h.numel() + w.numel()) * h.element_size()
    rows = []
    for name in impls:
        try:
            fn = makers[name]()
        except Exception as e:
            rows.append({"impl": name, "skipped": f"{type(e).__name__}: {str(e)[:200]}"})
            print(f"{name:<8} skipped: {rows[-1]['skipped']}")
            continue
        try:

            def reset():
                h.grad = w.grad = None

            times, peak = _timed(args, lambda fn=fn: fn(h, w, ids, mask, adv, old, ref).backward(), reset)
            peak = peak - grad_bytes if peak == peak else peak
            ms = times[len(times) // 2]
            rows.append(
                {
                    "impl": name,
                    "vocab": V,
                    "median_ms": ms,
                    "min_ms": times[0],
                    "extra_peak_gib": peak / 2**30,
                    "tflops": flops / (ms * 1e-3) / 1e12,
                    "iters": len(times),
                }
            )
            print(f"{name:<8} {ms:9.2f} ms  extra peak {peak / 2**30:7.2f} GiB  {rows[-1]['tflops']:7.1f} TFLOP/s")
        except Exception as e:
            rows.append({"impl": name, "skipped": f"failed: {type(e).__name__}: {str(e)[:200]}"})
            print(f"{name:<8} failed: {rows[-1]['skipped']}")
        finally:
            fn = None
            h.grad = w.grad = None
            if not args.dry:
                torch.cuda.empty_cache()
    return rows


def time_logps(args, h, w, ids) -> list[dict]:
    """Forward-only per-token log-probs (GRPO's reference/old passes): TRL's chunked head vs mrgfast."""
    import torch

    from mrgfast.kernels import token_logps

    H = w.shape[1]
    rows = []
    impls = {"mrgfast": lambda: token_logps(h, w, ids, backend="triton")}
    try:
        from trl.kernels import ChunkedLogProbFunction

        def trl_fwd():
            return ChunkedLogProbFunction.apply(
                h.reshape(-1, H), w, None, ids.reshape(-1), 1.0, 32768, None, 1.0, ("log_probs",)
            )[0]

        impls = {"trl": trl_fwd, **impls}
    except Exception as e:
        rows.append({"impl": "trl", "skipped": f"{type(e).__name__}: {str(e)[:200]}"})
    for name, fn in impls.items():
        with torch.no_grad():
            times, peak = _timed(args, fn)
        ms = times[len(times) // 2]
        rows.append({"impl": name, "median_ms": ms, "min_ms": times[0], "extra_peak_gib": peak / 2**30})
        print(f"logps fwd {name:<8} {ms:9.2f} ms  extra peak {peak / 2**30:7.2f} GiB")
    return rows


def main() -> int:
    args = _parse()
    if args.dry:
        os.environ["TRITON_INTERPRET"] = "1"  # before anything imports triton
    notes = _setup_imports(args)

    import torch

    sys.path.insert(0, str(HERE))
    from loss_impls import IMPLS, make_inputs, make_liger, make_mrgfast

    from mrgfast.kernels import grpo_loss

    device = "cpu" if args.dry else "cuda"
    if not args.dry and not torch.cuda.is_available():
        print("no CUDA device: run with --dry")
        return 2
    dtype = torch.bfloat16
    B, N, H, V = args.batch, args.tokens, args.hidden, args.vocab
    T = N // B
    info = {
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name() if not args.dry else "cpu (dry)",
        "shape": {"tokens": N, "batch": B, "hidden": H, "vocab": V, "dtype": str(dtype)},
        "imports": notes,
    }
    try:
        import triton

        info["triton"] = triton.__version__
    except Exception as e:
        info["triton"] = f"unavailable: {e}"
    print(json.dumps(info, indent=1))

    # ---- 1. correctness at the real shape: Triton path vs full-logits reference -------------------------------
    h, w, ids, mask, adv, old, ref = make_inputs(B, T, H, V, dtype, device, seed=1)
    mask[1, T // 2 :] = 0  # some padding and one empty row exercise the masking
    mask[2] = 0
    kw = dict(old_logps=old, ref_logps=ref, beta=0.04, loss_type="grpo", importance_sampling_level="token")
    outs = {}
    for be in ("triton", "reference"):
        hh, ww = h.detach().clone().requires_grad_(True), w.detach().clone().requires_grad_(True)
        o = grpo_loss(hh, ww, ids, mask, adv, backend=be, **kw)
        o.loss.backward()
        outs[be] = (o.loss.detach().float(), o.per_token_logps.float(), hh.grad.float(), ww.grad.float())
        del hh, ww, o
        if not args.dry:
            torch.cuda.empty_cache()
    (lt, pt, ght, gwt), (lr, pr, ghr, gwr) = outs["triton"], outs["reference"]
    rel = lambda a, b: ((a - b).norm() / b.norm().clamp(min=1e-30)).item()  # noqa: E731
    check = {
        "loss_abs_err": (lt - lr).abs().item(),
        "loss": lr.item(),
        "logp_max_abs_err": (pt - pr).abs().max().item(),
        "grad_hidden_rel_err": rel(ght, ghr),
        "grad_weight_rel_err": rel(gwt, gwr),
    }
    tol = 2e-2  # bf16 logits
    check["pass"] = (
        check["loss_abs_err"] <= tol * (1 + abs(check["loss"]))
        and check["grad_hidden_rel_err"] <= tol
        and check["grad_weight_rel_err"] <= tol
        and check["logp_max_abs_err"] <= 50 * tol
    )
    print("check triton vs reference:", json.dumps(check))
    del outs, lt, pt, ght, gwt, lr, pr, ghr, gwr

    # ---- 2. forward-only log-probs (reference / old-policy passes): token_logps vs TRL's chunked head -----------
    from mrgfast.kernels import token_logps

    with torch.no_grad():
        lp_tri = token_logps(h, w, ids, mask, backend="triton")
        lp_ref = token_logps(h, w, ids, mask, backend="reference")
    check["token_logps_max_abs_err"] = (lp_tri - lp_ref).abs().max().item()
    check["pass"] = check["pass"] and check["token_logps_max_abs_err"] <= 50 * tol
    print("check token_logps triton vs reference:", check["token_logps_max_abs_err"])
    del lp_tri, lp_ref
    mask.fill_(1)
    logps_rows = time_logps(args, h, w, ids)

    # ---- 3. timing: fwd+bwd of every implementation, then the vocabulary sweep ----------------------------------
    makers = dict(IMPLS)
    makers["liger"] = lambda: make_liger(compiled=bool(args.liger_compiled) and not args.dry)
    makers["mrgfast"] = lambda: make_mrgfast("triton")
    impls = args.impls.split(",")
    rows = time_impls(args, makers, impls, h, w, ids, mask, adv, old, ref)
    sweep = []
    for V2 in [int(v) for v in args.sweep_vocabs.split(",") if v.strip()]:
        del h, w
        if not args.dry:
            torch.cuda.empty_cache()
        h, w, ids, mask, adv, old, ref = make_inputs(B, T, H, V2, dtype, device, seed=1)
        print(f"-- sweep: vocabulary {V2}")
        sweep.append({"vocab": V2, "timing": time_impls(args, makers, impls, h, w, ids, mask, adv, old, ref)})

    out = Path(args.out or HERE / "results" / ("loss_gpu_dry.json" if args.dry else "loss_gpu.json"))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {"info": info, "check": check, "timing": rows, "logps_forward": logps_rows, "sweep": sweep}, indent=2
        )
    )
    print(f"wrote {out}")
    mrg = next((r for r in rows if r["impl"] == "mrgfast"), {})
    return 0 if check["pass"] and "skipped" not in mrg else 1


if __name__ == "__main__":
    sys.exit(main())
