"""Torch tile ops for the CPU chunked path (the driver is ``grpo_loss._fused_run``).

Every op works in place on the ``[c, V]`` logits tile, so one chunk costs one tile of memory (two with
entropy): scale, shift by the row max, exponentiate, sum; the gradient then rescales the same buffer.
"""

from __future__ import annotations

import torch


def stats(tile: torch.Tensor, targets: torch.Tensor, inv_t: float, want_entropy: bool, acc: torch.dtype):
    """Per-row log-prob of ``targets`` (and entropy) of ``softmax(tile * inv_t)``.

    Returns ``(logp, entropy | None, state)``; ``state`` = (exp(z - max), sum) for ``grad_logits``."""
    z = tile if tile.dtype == acc else tile.to(acc)
    if inv_t != 1.0:
        z.mul_(inv_t)
    m = z.amax(dim=1, keepdim=True)  # NaN propagates (amax is NaN-aware)
    tz = z.gather(1, targets.unsqueeze(1)).squeeze(1)
    z.sub_(m)
    ent = None
    if want_entropy:
        e = torch.exp(z)
        s = e.sum(1)
        ez = torch.bmm(e.unsqueeze(1), z.unsqueeze(2)).view(-1)  # sum_j e_j z_j without a [c, V] product
        ent = torch.log(s) - ez / s
    else:
        e = z.exp_()
        s = e.sum(1)
    logp = tz - m.squeeze(1) - torch.log(s)
    return logp, ent, (e, s)


def grad_logits(tile: torch.Tensor, targets: torch.Tensor, state, g: torch.Tensor, inv_t: float) -> torch.Tensor:
    """d loss / d logits = g * (onehot - p) * inv_t, written into the exp buffer of ``stats``."""
    e, s = state
    g = g.to(e.dtype)
    e.mul_((-g * inv_t / s).unsqueeze(1))
    rows = torch.arange(e.shape[0], device=e.device)
    e[rows, targets] += g * inv_t
    return e
