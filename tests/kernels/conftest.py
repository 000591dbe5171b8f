"""Shared fixtures for the fused GRPO loss tests: TRL's own loss driven on identical inputs, input builders.

TRITON_INTERPRET=1 is set here, before anything in this folder imports triton, so the Triton kernels run on CPU
tensors in Triton's interpreter (the Triton test module falls back to a subprocess if triton was imported
earlier in the session without it).
"""

from __future__ import annotations

import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import types
from collections import defaultdict

import pytest
import torch


def trl_grpo_loss(
    hidden,
    weight,
    bias,
    ids,
    mask,
    adv,
    old=None,
    ref=None,
    *,
    beta=0.0,
    epsilon_low=0.2,
    epsilon_high=0.2,
    delta=None,
    temperature=1.0,
    loss_type="dapo",
    level="token",
    num_items_in_batch=None,
    max_completion_length=None,
):
    """Run ``trl.GRPOTrainer._compute_loss`` on a minimal trainer stub (single process, no accumulation).

    The per-token log-probs/entropies come from TRL's ``ChunkedLogProbFunction`` exactly as TRL's
    ``add_fused_lm_head`` forward produces them on a non-Triton device (masked positions -> 0). Returns
    ``(loss, metrics)`` with ``loss`` differentiable w.r.t. hidden/weight/bias."""
    from trl.kernels import ChunkedLogProbFunction
    from trl.trainer.grpo_trainer import GRPOTrainer

    B, T = ids.shape
    H = weight.shape[1]
    mbool = mask != 0
    labels = ids.masked_fill(~mbool, -100)

    def per_token_logps_and_entropies(model, input_ids, attention_mask, logits_to_keep, **kw):
        assert logits_to_keep == T
        lp, ent = ChunkedLogProbFunction.apply(
            hidden.reshape(-1, H),
            weight,
            bias,
            labels.clamp(min=0).reshape(-1),
            temperature,
            32768,
            None,
            1.0,
            ("log_probs", "entropy"),
        )[:2]
        return lp.view(B, T).masked_fill(~mbool, 0), ent.view(B, T).masked_fill(~mbool, 0), None

    acc = types.SimpleNamespace(
        num_processes=1,
        sync_gradients=True,
        reduce=lambda t, reduction="sum": t,
        gather=lambda t: t,
        gather_for_metrics=lambda t: t,
    )
    stub = types.SimpleNamespace(
        _get_per_token_logps_and_entropies=per_token_logps_and_entropies,
        aux_loss_enabled=False,
        top_entropy_quantile=1.0,
        off_policy_mask_threshold=None,
        importance_sampling_level=level,
        beta=beta,
        loss_type=loss_type,
        epsilon_low=epsilon_low,
        epsilon_high=epsilon_high,
        use_vllm=False,
        vllm_importance_sampling_correction=False,
        model=types.SimpleNamespace(training=True),
        current_gradient_accumulation_steps=1,
        max_completion_length=T if max_completion_length is None else max_completion_length,
        accelerator=acc,
        _entropy_bonus_enabled=False,
        _metrics={"train": defaultdict(list), "eval": defaultdict(list)},
        args=types.SimpleNamespace(delta=delta, use_bias_correction_kl=False, steps_per_generation=1),
    )
    n_items = mbool.sum() if num_items_in_batch is None else torch.as_tensor(num_items_in_batch)
    inputs = {
        "prompt_ids": torch.zeros(B, 0, dtype=torch.long),
        "prompt_mask": torch.zeros(B, 0, dtype=torch.long),
        "completion_ids": ids,
        "completion_mask": mask.long(),
        "advantages": adv,
        "num_items_in_batch": n_items.float(),
    }
    if old is not None:
        inputs["old_per_token_logps"] = old
    if beta != 0.0:
        inputs["ref_per_token_logps"] = ref
    loss = GRPOTrainer._compute_loss(stub, None, inputs)
    metrics = {k: v[-1] for k, v in stub._metrics["train"].items()}
    return loss, metrics


@pytest.fixture
def trl_loss():
    return trl_grpo_loss


def make_case(
    B, T, H, V, *, dtype=torch.float32, seed=0, empty_rows=(), lengths=None, bias=False, old_offsets=False, beta=0.0
):
    """Random inputs; ``old`` sits safely away from the clip boundaries so tiny rounding cannot flip a clip."""
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(B, T, H, generator=g, dtype=torch.float64)
    w = torch.randn(V, H, generator=g, dtype=torch.float64) * (H**-0.5) * 2
    b = torch.randn(V, generator=g, dtype=torch.float64) * 0.5 if bias else None
    ids = torch.randint(0, V, (B, T), generator=g)
    mask = torch.ones(B, T, dtype=torch.long)
    if lengths is not None:
        for i, n in enumerate(lengths):
            mask[i, n:] = 0
    for r in empty_rows:
        mask[r] = 0
    adv = torch.randn(B, generator=g, dtype=torch.float64)
    # true log-probs (fp64) to place old/ref relative to them
    logits = h @ w.t() + (b if b is not None else 0)
    lp = torch.log_softmax(logits, -1).gather(-1, ids.unsqueeze(-1)).squeeze(-1)
    old = None
    if old_offsets:
        # log-ratio offsets in bands away from log(0.8), log(1.2), log(1.5) and 0 (so min() has no ties)
        bands = torch.tensor([-0.6, -0.4, -0.12, 0.07, 0.3, 0.55], dtype=torch.float64)
        pick = bands[torch.randint(0, len(bands), (B, T), generator=g)]
        old = (lp - pick - 0.02 * torch.rand(B, T, generator=g, dtype=torch.float64)).masked_fill(mask == 0, 0.0)
    ref = (lp + 0.3 * torch.randn(B, T, generator=g, dtype=torch.float64)).masked_fill(mask == 0, 0.0)
    cast = lambda t: None if t is None else t.to(dtype)  # noqa: E731
    f32 = lambda t: None if t is None else t.float() if dtype != torch.float64 else t  # noqa: E731
    return dict(
        hidden=cast(h),
        weight=cast(w),
        bias=cast(b),
        ids=ids,
        mask=mask,
        adv=f32(adv),
        old=f32(old),
        ref=f32(ref) if beta else None,
    )


@pytest.fixture
def case():
    return make_case


def _leaf(t):
    return None if t is None else t.detach().clone().requires_grad_(True)


def _close(a, b, tol, what):
    a, b = a.double(), b.double()
    scale = 1.0 + b.abs().max().item() if b.numel() else 1.0
    err = (a - b).abs().max().item() if b.numel() else 0.0
    assert err <= tol * scale, f"{what}: max abs err {err:.3e} > {tol:.1e} * {scale:.3g}"


def compare_with_trl(backend, c, opts, *, tol=2e-5, against_reference=True, entropy=True):
    """grpo_loss(backend) vs TRL's _compute_loss (and the full-logits reference): loss, grads, logps, metrics."""
    from mrgfast.kernels import grpo_loss

    opts = dict(opts)
    level = opts.pop("importance_sampling_level", "token")
    trl_kw = dict(opts)
    trl_kw.pop("chunk_size", None)

    def ours(which):
        h, w, b = _leaf(c["hidden"]), _leaf(c["weight"]), _leaf(c["bias"])
        out = grpo_loss(
            h,
            w,
            c["ids"],
            c["mask"],
            c["adv"],
            bias=b,
            old_logps=c["old"],
            ref_logps=c["ref"],
            importance_sampling_level=level,
            backend=which,
            compute_entropy=entropy,
            **opts,
        )
        out.loss.backward()
        return out, (h.grad, w.grad, None if b is None else b.grad)

    out, grads = ours(backend)
    h, w, b = _leaf(c["hidden"]), _leaf(c["weight"]), _leaf(c["bias"])
    tloss, tmetrics = trl_grpo_loss(h, w, b, c["ids"], c["mask"], c["adv"], c["old"], c["ref"], level=level, **trl_kw)
    tloss.backward()
    _close(out.loss.detach(), tloss.detach(), tol, "loss vs TRL")
    for name, g, tg in zip(("hidden", "weight", "bias"), grads, (h.grad, w.grad, None if b is None else b.grad)):
        if tg is not None:
            assert g is not None and g.dtype == tg.dtype and g.shape == tg.shape, name
            _close(g, tg, tol, f"grad {name} vs TRL")
    for k, v in tmetrics.items():
        if k == "entropy" and not entropy:
            continue
        assert k in out.metrics, f"metric {k} missing"
        mine = out.metrics[k].item()
        if v != v:  # NaN in TRL -> NaN here
            assert mine != mine, k
        else:
            assert abs(mine - v) <= tol * (1 + abs(v)) * 10, f"metric {k}: {mine} vs TRL {v}"
    assert set(out.metrics) == set(tmetrics) - ({"entropy"} if not entropy else set())
    if against_reference:
        ref_out, ref_grads = ours("reference")
        _close(out.loss.detach(), ref_out.loss.detach(), tol, "loss vs reference")
        _close(out.per_token_logps, ref_out.per_token_logps, tol, "logps vs reference")
        if entropy:
            _close(out.entropy, ref_out.entropy, tol, "entropy vs reference")
        for name, g, rg in zip(("hidden", "weight", "bias"), grads, ref_grads):
            if rg is not None:
                _close(g, rg, tol, f"grad {name} vs reference")
    assert out.per_token_logps.requires_grad is False
    assert (out.per_token_logps[c["mask"] == 0] == 0).all()
    return out


@pytest.fixture
def compare():
    return compare_with_trl


def frozen_head_sequence_level_vs_trl(backend, loss_type):
    from mrgfast.kernels import grpo_loss

    c = make_case(3, 6, 8, 29, seed=21, lengths=[6, 2, 0], bias=True, old_offsets=True, beta=0.05)
    kw = dict(beta=0.05, loss_type=loss_type)
    h = c["hidden"].clone().requires_grad_(True)
    out = grpo_loss(
        h,
        c["weight"],
        c["ids"],
        c["mask"],
        c["adv"],
        bias=c["bias"],
        old_logps=c["old"],
        ref_logps=c["ref"],
        importance_sampling_level="sequence",
        backend=backend,
        chunk_size=4,
        **kw,
    )
    out.loss.backward()
    th = c["hidden"].clone().requires_grad_(True)
    tloss, _ = trl_grpo_loss(
        th, c["weight"], c["bias"], c["ids"], c["mask"], c["adv"], c["old"], c["ref"], level="sequence", **kw
    )
    tloss.backward()
    assert torch.allclose(out.loss, tloss, rtol=1e-5, atol=1e-6)
    assert torch.allclose(h.grad, th.grad, rtol=1e-4, atol=1e-6)


@pytest.fixture
def frozen_vs_trl():
    return frozen_head_sequence_level_vs_trl
