"""Plain full-logits torch reference (tests and the bench baseline only: it materialises [N, V] twice).

Written independently of the fused path: logits, log_softmax, gather, then TRL's loss formula and metrics inline.
It imports nothing from the implementation (a few lines repeat on purpose), so a bug there cannot hide here.
``cfg`` is any object with the fields of ``grpo_loss._Cfg``.
"""

from __future__ import annotations

import torch


def grpo_loss_reference(hidden, weight, bias, completion_ids, mask, adv, old, ref, cfg, compute_entropy):
    """Returns ``(loss, per_token_logps, metrics, entropy)``, the fields of ``GRPOLossOutput`` in order."""
    acc = torch.float64 if hidden.dtype == torch.float64 else torch.float32
    logits = hidden @ weight.t()
    if bias is not None:
        logits = logits + bias
    logits = logits.to(acc) / cfg.temperature
    logprobs_all = torch.log_softmax(logits, dim=-1)
    ids = completion_ids.masked_fill(~mask, 0).to(torch.long)
    logp = logprobs_all.gather(-1, ids.unsqueeze(-1)).squeeze(-1).masked_fill(~mask, 0.0)
    entropy = None
    if compute_entropy:
        with torch.no_grad():
            entropy = (-(logprobs_all.exp() * logprobs_all).sum(-1)).masked_fill(~mask, 0.0)

    maskf = mask.to(acc)
    old_ = logp.detach() if old is None else old
    log_ratio = logp - old_
    if cfg.level == "token":
        log_iw = log_ratio
    else:
        log_iw = ((log_ratio * maskf).sum(-1) / maskf.sum(-1).clamp(min=1.0)).unsqueeze(-1)
    coef_1 = torch.exp(log_iw)
    coef_2 = torch.clamp(coef_1, 1 - cfg.epsilon_low, 1 + cfg.epsilon_high)
    if cfg.delta is not None:
        coef_1 = torch.clamp(coef_1, max=cfg.delta)
    per_token_loss = -torch.min(coef_1 * adv, coef_2 * adv)
    kl = None
    if cfg.beta != 0.0:
        kl = torch.exp(ref - logp) - (ref - logp) - 1
        per_token_loss = per_token_loss + cfg.beta * kl
    masked = per_token_loss * maskf
    if cfg.loss_type == "grpo":
        loss = (masked.sum(-1) / maskf.sum(-1).clamp(min=1.0)).mean()
    elif cfg.loss_type == "bnpo":
        loss = masked.sum() / maskf.sum().clamp(min=1.0)
    elif cfg.loss_type == "dr_grpo":
        loss = masked.sum() / (per_token_loss.size(0) * cfg.max_completion_length)
    else:
        loss = masked.sum() / cfg.num_items
    with torch.no_grad():
        metrics = _metrics(coef_1, kl, entropy, maskf, adv, cfg)
    return loss, logp.detach(), metrics, entropy


def _metrics(coef_1, kl, entropy, maskf, adv, cfg) -> dict[str, torch.Tensor]:
    """TRL's logged metrics in one process: masked means, clip ratios, and the per-sequence min/max clip."""

    def mean(x):  # a [B, 1] tensor (sequence-level ratio) averages over sequences
        return (
            x.sum() / max(float(x.shape[0]), 1.0) if x.shape[1] == 1 else (x * maskf).sum() / maskf.sum().clamp(min=1.0)
        )

    def per_seq(x):
        return x.squeeze(1) if x.shape[1] == 1 else (x * maskf).sum(-1) / maskf.sum(-1)

    def nan_reduce(x, fn):
        keep = x[~torch.isnan(x)]
        return torch.full((), float("nan"), dtype=x.dtype, device=x.device) if keep.numel() == 0 else fn(keep)

    low = ((coef_1 < 1 - cfg.epsilon_low) & (adv < 0)).to(maskf.dtype)
    high = ((coef_1 > 1 + cfg.epsilon_high) & (adv > 0)).to(maskf.dtype)
    out = {}
    if kl is not None:
        out["kl"] = mean(kl)
    if entropy is not None:
        out["entropy"] = mean(entropy)
    out["clip_ratio/low_mean"] = mean(low)
    out["clip_ratio/high_mean"] = mean(high)
    out["clip_ratio/region_mean"] = mean(((low > 0) | (high > 0)).to(maskf.dtype))
    out["clip_ratio/low_min"] = nan_reduce(per_seq(low), torch.min)
    out["clip_ratio/high_max"] = nan_reduce(per_seq(high), torch.max)
    return {k: v.detach() for k, v in out.items()}
