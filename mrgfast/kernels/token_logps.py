"""Per-token log-probs through the LM head, forward only, without keeping ``[N, V]`` logits.

What GRPO's no-grad passes need (reference model, old policy): ``log softmax(h W^T + b)[target] / T`` for the
scored tokens only. Same tiles and tile ops as ``grpo_loss`` (one ``[c, V]`` buffer reused by every chunk, the
GEMM in the input dtype, the row statistics in fp32/fp64), and no entropy, gradient or graph.
"""

from __future__ import annotations

import torch

from .grpo_loss import _default_chunk, _resolve_backend
from .lm_head_matmul import project_into


def token_logps(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    bias: torch.Tensor | None = None,
    temperature: float = 1.0,
    chunk_size: int | None = None,
    backend: str = "auto",
) -> torch.Tensor:
    """Log-prob of ``targets`` [...] under ``softmax((hidden [..., H] @ weight.T + bias) / temperature)``.

    Returns fp32 (fp64 for fp64 inputs) log-probs shaped like ``targets``, 0 where ``mask`` is 0 (those positions
    are not projected and their targets are not read). Backends as ``grpo_loss``: ``auto``, ``triton``,
    ``chunked``; ``reference`` = full logits (for tests)."""
    if weight.dim() != 2:
        raise ValueError("weight must be [V, H]")
    V, H = weight.shape
    shape = targets.shape
    if hidden.shape[-1] != H or hidden.numel() != targets.numel() * H:
        raise ValueError(f"hidden {tuple(hidden.shape)} does not match targets {tuple(shape)} x H={H}")
    if temperature <= 0:
        raise ValueError("temperature must be > 0")
    if hidden.dtype not in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
        raise TypeError(f"unsupported hidden dtype {hidden.dtype}")
    acc = torch.float64 if hidden.dtype == torch.float64 else torch.float32
    dev = hidden.device
    with torch.no_grad():
        w = weight.detach().to(hidden.dtype)
        b = None if bias is None else bias.detach().to(hidden.dtype)
        h = hidden.detach().reshape(-1, H)
        t = targets.reshape(-1).to(device=dev, dtype=torch.long)
        keep = None if mask is None else (mask.reshape(-1).to(dev) != 0)
        if keep is not None and not bool(keep.all()):
            idx = keep.nonzero().squeeze(1)
            h, t = h.index_select(0, idx), t.index_select(0, idx)
        else:
            idx = None
        if t.numel() and (int(t.min()) < 0 or int(t.max()) >= V):
            raise ValueError(f"targets at unmasked positions must lie in [0, {V})")
        out = torch.zeros(h.shape[0], dtype=acc, device=dev)
        which = _resolve_backend(backend, dev)
        if which == "reference":
            logits = (h.to(acc) @ w.to(acc).t() + (0 if b is None else b.to(acc))) / temperature
            out = torch.log_softmax(logits, -1).gather(1, t.unsqueeze(1)).squeeze(1)
        elif h.shape[0]:
            if which == "triton":
                from . import grpo_loss_triton as ops
            else:
                from . import grpo_loss_chunked as ops
            h = h if h.is_contiguous() else h.contiguous()
            w = w if w.is_contiguous() else w.contiguous()
            M = h.shape[0]
            c = max(1, min(chunk_size or _default_chunk(dev, V, h.element_size(), M), M))
            tile_buf = torch.empty(c, V, dtype=h.dtype, device=dev)
            for s in range(0, M, c):
                e = min(s + c, M)
                tile = tile_buf[: e - s]
                project_into(tile, h[s:e], w, b)
                out[s:e] = ops.stats(tile, t[s:e], 1.0 / temperature, False, acc)[0]
        if idx is None:
            return out.view(shape)
        return torch.zeros(targets.numel(), dtype=acc, device=dev).index_copy_(0, idx, out).view(shape)
