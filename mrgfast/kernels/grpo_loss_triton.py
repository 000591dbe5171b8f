"""Triton tile kernels for the fused GRPO loss (driver: ``grpo_loss._fused_run``; GEMMs stay in cuBLAS).

Per token chunk, ``_stats_kernel`` folds each ``[V]`` logits row into an online log-sum-exp (fp32, or fp64
for fp64 inputs), the target logit and the entropy, reading the tile once in ``BLOCK_V`` vocabulary blocks;
``_grad_kernel`` then overwrites the tile with ``g * (onehot - p) / T`` on a (token, vocab-block) grid, ready for
the two gradient GEMMs. No ``[N, V]`` tensor exists; the tile is one ``[c, V]`` buffer reused by every chunk.

Kernels are jitted lazily, on first launch. With ``TRITON_INTERPRET=1`` set before triton is first imported, the
same kernel source runs in Triton's interpreter on CPU tensors (how the tests run it without a GPU).
"""

from __future__ import annotations

import contextlib
import os

import torch

try:
    import triton
    import triton.language as tl

    _HAVE_TRITON = True
except Exception:  # pragma: no cover - triton missing (e.g. macOS)
    triton = tl = None
    _HAVE_TRITON = False

BLOCK_V_STATS = 4096
BLOCK_V_GRAD = 2048
_INTERP_BLOCK = 128  # the interpreter runs numpy per program: small blocks keep tests quick


def available() -> bool:
    return _HAVE_TRITON


def _stats_kernel(
    tile_ptr,
    stride,
    tgt_ptr,
    lse_ptr,
    tz_ptr,
    ent_ptr,
    n_cols,
    inv_t_ptr,
    HAS_ENTROPY: tl.constexpr,
    ACC_F64: tl.constexpr,
    BLOCK_V: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    base = tile_ptr + row * stride
    if ACC_F64:
        acc_ty = tl.float64
    else:
        acc_ty = tl.float32
    scale = tl.load(inv_t_ptr).to(acc_ty)  # a pointer: Python floats would arrive as fp32
    m = tl.max(tl.full([BLOCK_V], float("-inf"), acc_ty), axis=0)
    s = tl.sum(tl.zeros([BLOCK_V], acc_ty), axis=0)
    xs = tl.sum(tl.zeros([BLOCK_V], acc_ty), axis=0)
    for start in range(0, n_cols, BLOCK_V):
        offs = start + tl.arange(0, BLOCK_V)
        inb = offs < n_cols
        z = tl.load(base + offs, mask=inb, other=0.0).to(acc_ty) * scale
        zm = tl.where(inb, z, float("-inf"))
        new_m = tl.maximum(m, tl.max(zm, axis=0))
        rescale = tl.exp(m - new_m)
        e = tl.where(inb, tl.exp(z - new_m), 0.0)
        s = s * rescale + tl.sum(e, axis=0)
        if HAS_ENTROPY:
            # sum_j e_j z_j with e relative to the running max (TRL's fold): entropy = lse - xs / s
            xs = xs * rescale + tl.sum(e * tl.where(inb, z, 0.0), axis=0)
        m = new_m
    lse = m + tl.log(s)
    tgt = tl.load(tgt_ptr + row)
    tz = tl.load(base + tgt).to(acc_ty) * scale
    tl.store(lse_ptr + row, lse)
    tl.store(tz_ptr + row, tz)
    if HAS_ENTROPY:
        tl.store(ent_ptr + row, lse - xs / s)


def _grad_kernel(
    tile_ptr, stride, tgt_ptr, lse_ptr, g_ptr, n_cols, inv_t_ptr, ACC_F64: tl.constexpr, BLOCK_V: tl.constexpr
):
    row = tl.program_id(0).to(tl.int64)
    offs = tl.program_id(1) * BLOCK_V + tl.arange(0, BLOCK_V)
    inb = offs < n_cols
    ptrs = tile_ptr + row * stride + offs
    if ACC_F64:
        acc_ty = tl.float64
    else:
        acc_ty = tl.float32
    scale = tl.load(inv_t_ptr).to(acc_ty)  # a pointer: Python floats would arrive as fp32
    z = tl.load(ptrs, mask=inb, other=0.0).to(acc_ty) * scale
    p = tl.exp(z - tl.load(lse_ptr + row))
    g = tl.load(g_ptr + row)
    onehot = tl.where(offs == tl.load(tgt_ptr + row), 1.0, 0.0).to(acc_ty)
    grad = g * (onehot - p) * scale
    tl.store(ptrs, grad.to(tile_ptr.dtype.element_ty), mask=inb)


_CACHE: dict = {}


@contextlib.contextmanager
def _interpret_env(on: bool):
    old = os.environ.get("TRITON_INTERPRET")
    os.environ["TRITON_INTERPRET"] = "1" if on else "0"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("TRITON_INTERPRET", None)
        else:
            os.environ["TRITON_INTERPRET"] = old


def _kernel(fn, interpret: bool):
    key = (fn.__name__, interpret)
    if key not in _CACHE:
        with _interpret_env(interpret):  # triton.jit reads TRITON_INTERPRET when it wraps the function
            _CACHE[key] = triton.jit(fn)
    return _CACHE[key]


def interpreter_active() -> bool:
    """True when triton was imported with TRITON_INTERPRET=1 (needed to run the kernels on CPU tensors)."""
    return _HAVE_TRITON and type(tl.max).__name__ == "InterpretedFunction"


def _launch(fn, grid, *args, **meta):
    if not _HAVE_TRITON:
        raise RuntimeError("backend='triton' needs the triton package")
    interpret = interpreter_active()
    if args[0].device.type == "cpu" and not interpret:
        raise RuntimeError(
            "backend='triton' on CPU tensors runs Triton's interpreter: set TRITON_INTERPRET=1 before triton is "
            "first imported (or use backend='chunked')"
        )
    _kernel(fn, interpret)[grid](*args, **meta)


def _scalar(x: float, dtype: torch.dtype, device) -> torch.Tensor:
    return torch.full((1,), x, dtype=dtype, device=device)


def stats(tile: torch.Tensor, targets: torch.Tensor, inv_t: float, want_entropy: bool, acc: torch.dtype):
    """Row log-sum-exp, target log-prob and entropy of ``tile * inv_t``; the tile is left untouched."""
    n, V = tile.shape
    lse = torch.empty(n, dtype=acc, device=tile.device)
    tz = torch.empty(n, dtype=acc, device=tile.device)
    ent = torch.empty(n, dtype=acc, device=tile.device) if want_entropy else lse
    if n:
        block = min(BLOCK_V_STATS if tile.is_cuda else _INTERP_BLOCK, triton.next_power_of_2(V))
        _launch(
            _stats_kernel,
            (n,),
            tile,
            tile.stride(0),
            targets,
            lse,
            tz,
            ent,
            V,
            _scalar(inv_t, acc, tile.device),
            HAS_ENTROPY=want_entropy,
            ACC_F64=acc == torch.float64,
            BLOCK_V=block,
            **({"num_warps": 8} if tile.is_cuda else {}),
        )
    return tz - lse, (ent if want_entropy else None), lse


def grad_logits(tile: torch.Tensor, targets: torch.Tensor, state, g: torch.Tensor, inv_t: float) -> torch.Tensor:
    """Overwrite ``tile`` (logits) with ``g * (onehot - softmax) * inv_t`` and return it."""
    lse = state
    n, V = tile.shape
    if n:
        block = min(BLOCK_V_GRAD if tile.is_cuda else _INTERP_BLOCK, triton.next_power_of_2(V))
        _launch(
            _grad_kernel,
            (n, triton.cdiv(V, block)),
            tile,
            tile.stride(0),
            targets,
            lse,
            g.to(lse.dtype).contiguous(),
            V,
            _scalar(inv_t, lse.dtype, tile.device),
            ACC_F64=lse.dtype == torch.float64,
            BLOCK_V=block,
            **({"num_warps": 4} if tile.is_cuda else {}),
        )
    return tile
