"""The GRPO-loss implementations the loss benches compare, behind one signature (shared by bench_loss and gpu_loss).

Peers: full logits (torch), TRL's ``ChunkedLogProbFunction`` (what ``GRPOTrainer`` runs), Liger's
``LigerFusedLinearGRPOLoss``, Apple's cut-cross-entropy (log-probs only: TRL's loss on top), mrgfast. A peer that
is not installed raises ImportError, and the benches report it skipped with that reason.

Each factory returns ``fn(hidden [B,T,H], weight [V,H], ids, mask, adv, old, ref) -> loss`` for dapo, token-level
importance sampling, k3 KL with ``beta`` (TRL's defaults for these settings), or raises ImportError with a reason.
"""

from __future__ import annotations

import torch

BETA = 0.04
EPS = 0.2


def trl_style_loss(logp, mask, adv, old, ref, beta=BETA):
    """TRL ``_compute_loss`` (dapo, token level) on per-token log-probs, as in trl/trainer/grpo_trainer.py."""
    mask = mask.to(logp.dtype)
    coef_1 = torch.exp(logp - old)
    coef_2 = torch.clamp(coef_1, 1 - EPS, 1 + EPS)
    per_token_loss = -torch.min(coef_1 * adv.unsqueeze(1), coef_2 * adv.unsqueeze(1))
    kl = torch.exp(ref - logp) - (ref - logp) - 1
    per_token_loss = per_token_loss + beta * kl
    return (per_token_loss * mask).sum() / mask.sum().clamp(min=1.0)


def make_full():
    def fn(h, w, ids, mask, adv, old, ref):
        logits = (h @ w.t()).float()
        logp = torch.log_softmax(logits, -1).gather(-1, ids.unsqueeze(-1)).squeeze(-1)
        return trl_style_loss(logp.masked_fill(mask == 0, 0.0), mask, adv, old, ref)

    return fn


def make_trl():
    from trl.kernels import ChunkedLogProbFunction
    from trl.trainer.utils import _CHUNKED_LOGPROB_CHUNK_SIZE

    def fn(h, w, ids, mask, adv, old, ref):
        B, T, H = h.shape
        lp = ChunkedLogProbFunction.apply(
            h.reshape(-1, H), w, None, ids.reshape(-1), 1.0, _CHUNKED_LOGPROB_CHUNK_SIZE, None, 1.0, ("log_probs",)
        )[0]
        return trl_style_loss(lp.view(B, T).masked_fill(mask == 0, 0.0), mask, adv, old, ref)

    return fn


def make_liger(compiled: bool = False):
    from liger_kernel.chunked_loss import LigerFusedLinearGRPOLoss

    mod = LigerFusedLinearGRPOLoss(
        beta=BETA,
        compiled=compiled,
        use_ref_model=True,
        chunk_size=1,
        epsilon_low=EPS,
        epsilon_high=EPS,
        loss_type="dapo",
        temperature=1.0,
    )

    def fn(h, w, ids, mask, adv, old, ref):
        out = mod(h, w, ids, mask, adv, ref_per_token_logps=ref, old_per_token_logps=old)
        return out[0] if isinstance(out, tuple) else out

    return fn


def make_cce():
    """Apple's cut-cross-entropy: per-token NLL (``reduction="none"``) -> log-probs -> TRL's loss. Its Triton
    kernel (``impl="cce"``, default gradient filtering) on CUDA; ``impl="torch_compile"`` elsewhere (the CPU)."""
    from cut_cross_entropy import linear_cross_entropy

    def fn(h, w, ids, mask, adv, old, ref):
        impl = "cce" if h.is_cuda else "torch_compile"
        nll = linear_cross_entropy(h, w, ids, reduction="none", impl=impl)
        logp = -nll.float()
        return trl_style_loss(logp.masked_fill(mask == 0, 0.0), mask, adv, old, ref)

    return fn


def make_mrgfast(backend: str = "auto"):
    from mrgfast.kernels import grpo_loss

    def fn(h, w, ids, mask, adv, old, ref):
        return grpo_loss(
            h,
            w,
            ids,
            mask,
            adv,
            old_logps=old,
            ref_logps=ref,
            beta=BETA,
            epsilon_low=EPS,
            epsilon_high=EPS,
            loss_type="dapo",
            backend=backend,
        ).loss

    return fn


IMPLS = {"full": make_full, "trl": make_trl, "liger": make_liger, "cce": make_cce, "mrgfast": make_mrgfast}


def make_inputs(B, T, H, V, dtype, device, seed=0):
    g = torch.Generator(device="cpu").manual_seed(seed)
    h = (torch.randn(B, T, H, generator=g)).to(device=device, dtype=dtype).requires_grad_(True)
    w = (torch.randn(V, H, generator=g) * H**-0.5).to(device=device, dtype=dtype).requires_grad_(True)
    ids = torch.randint(0, V, (B, T), generator=g).to(device)
    mask = torch.ones(B, T, dtype=torch.long, device=device)
    adv = torch.randn(B, generator=g).to(device)
    old = (-torch.rand(B, T, generator=g) * 2 - 11).to(device)
    ref = (-torch.rand(B, T, generator=g) * 2 - 11).to(device)
    return h, w, ids, mask, adv, old, ref
