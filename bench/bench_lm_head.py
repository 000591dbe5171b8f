"""The LM-head products on the CPU, MKL (``torch.mm`` / ``F.linear``) beside oneDNN (``lm_head_matmul``), one run.

The numbers behind ``mrgfast/kernels/lm_head_matmul.py``'s choice: the chunked path's forward product and
hidden-state gradient over ``--tokens`` rows in ``--chunk``-row chunks (and, for scale, the same products in one
call), and one decoding step's head at ``--decode-rows`` sequences. Best of ``--reps`` after a warm-up; prints
a table of seconds and oneDNN / MKL ratios and writes bench/results/lm_head_cpu.json.

    python bench/bench_lm_head.py                     # N 1,024 in 176-row chunks, H 896, V 151,936, 2 threads
    python bench/bench_lm_head.py --vocab 32000 --reps 2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from mrgfast.kernels import lm_head_matmul  # noqa: E402


def best_of(fn, reps: int) -> float:
    fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def on_backend(backend: str, fn):
    def run():
        old = lm_head_matmul.CPU_BACKEND
        lm_head_matmul.CPU_BACKEND = backend
        try:
            fn()
        finally:
            lm_head_matmul.CPU_BACKEND = old

    return run


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int, default=1024)
    ap.add_argument("--chunk", type=int, default=176)
    ap.add_argument("--hidden", type=int, default=896)
    ap.add_argument("--vocab", type=int, default=151936)
    ap.add_argument("--decode-rows", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--out", default=str(HERE / "results" / "lm_head_cpu.json"))
    args = ap.parse_args()
    if not lm_head_matmul.onednn_available():
        print("oneDNN's linear is not usable with this torch build: nothing to compare")
        return 1
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    N, H, V, c = args.tokens, args.hidden, args.vocab, args.chunk
    h = torch.randn(N, H, generator=g)
    w = torch.randn(V, H, generator=g) * H**-0.5
    grad = torch.randn(c, V, generator=g) * 1e-3
    tile = torch.empty(c, V)
    gh = torch.empty(N, H)
    chunks = [(s, min(s + c, N)) for s in range(0, N, c)]
    x = torch.randn(args.decode_rows, H, generator=g)

    def forward_chunks():
        for s, e in chunks:
            lm_head_matmul.project_into(tile[: e - s], h[s:e], w, None)

    def grad_hidden_chunks():
        for s, e in chunks:
            lm_head_matmul.grad_hidden_into(gh[s:e], grad[: e - s], w)

    def decode_step():
        with torch.no_grad():
            lm_head_matmul.linear(x, w)

    rows = []
    for name, fn in (
        (f"forward h W^T, {len(chunks)} chunks of <= {c} rows", forward_chunks),
        (f"d h = g W, {len(chunks)} chunks of <= {c} rows", grad_hidden_chunks),
        (f"one decoding step's head, {args.decode_rows} rows", decode_step),
    ):
        mkl = best_of(on_backend("torch", fn), args.reps)
        onednn = best_of(on_backend("onednn", fn), args.reps)
        rows.append({"product": name, "mkl_s": mkl, "onednn_s": onednn, "ratio": onednn / mkl})
    full_fwd = best_of(lambda: torch.mm(h, w.t()), args.reps)
    full_gh = best_of(lambda: torch.mm(torch.cat([grad] * (-(-N // c)))[:N], w), args.reps)

    print(f"LM-head products, CPU {args.threads} threads, fp32, N={N} H={H} V={V} (best of {args.reps})")
    print(f"{'product':<46} {'MKL s':>9} {'oneDNN s':>9} {'oneDNN/MKL':>11}")
    for r in rows:
        print(f"{r['product']:<46} {r['mkl_s']:9.4f} {r['onednn_s']:9.4f} {r['ratio']:11.3f}")
    print(f"for scale, MKL in one call of {N} rows: forward {full_fwd:.4f} s, d h {full_gh:.4f} s")
    out = {
        "suite": "lm_head_cpu",
        "shape": {"tokens": N, "chunk": c, "hidden": H, "vocab": V, "decode_rows": args.decode_rows},
        "threads": args.threads,
        "reps": args.reps,
        "vocab_block": lm_head_matmul.VOCAB_BLOCK,
        "results": rows,
        "mkl_one_call_s": {"forward": full_fwd, "grad_hidden": full_gh},
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "loadavg": os.getloadavg(),
            "torch": torch.__version__,
        },
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(out, indent=2))
    tmp.replace(path)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
