"""Chunked CPU path (and the reference) against TRL's own GRPOTrainer loss, plus options, NaN and gradcheck."""

from __future__ import annotations

import importlib
import itertools

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mrgfast.kernels import UNSUPPORTED_TRL_OPTIONS, grpo_loss
from mrgfast.kernels.grpo_loss import SUPPORTED_LOSS_TYPES, UNSUPPORTED_LOSS_TYPES

LOSS_TYPES = list(SUPPORTED_LOSS_TYPES)


@pytest.mark.parametrize("backend", ["chunked", "reference"])
@pytest.mark.parametrize("loss_type", LOSS_TYPES)
@pytest.mark.parametrize("level", ["token", "sequence"])
@pytest.mark.parametrize("with_old,beta", [(False, 0.0), (True, 0.0), (False, 0.05), (True, 0.05)])
def test_matches_trl_every_option(compare, case, backend, loss_type, level, with_old, beta):
    c = case(
        3,
        7,
        10,
        53,
        seed=hash((loss_type, level, with_old, beta)) % 1000,
        lengths=[7, 4, 0],
        bias=True,
        old_offsets=with_old,
        beta=beta,
    )
    for delta, temperature in [(None, 1.0), (1.5, 0.7)]:
        opts = dict(
            loss_type=loss_type,
            importance_sampling_level=level,
            beta=beta,
            delta=delta,
            temperature=temperature,
            epsilon_low=0.2,
            epsilon_high=0.28,
            chunk_size=4,
        )
        compare(backend, c, opts, against_reference=backend != "reference")


@pytest.mark.parametrize("loss_type", LOSS_TYPES)
def test_num_items_and_max_completion_length(compare, case, loss_type):
    c = case(2, 5, 8, 31, seed=3, lengths=[5, 2], old_offsets=True)
    compare("chunked", c, dict(loss_type=loss_type, num_items_in_batch=11, max_completion_length=9, chunk_size=3))


def test_advantages_per_token_and_flat_hidden(case):
    c = case(2, 4, 6, 19, seed=5, old_offsets=True)
    adv_bt = c["adv"].unsqueeze(1).expand(2, 4).contiguous()
    a = grpo_loss(c["hidden"], c["weight"], c["ids"], c["mask"], c["adv"], old_logps=c["old"], backend="chunked")
    b = grpo_loss(
        c["hidden"].reshape(8, 6), c["weight"], c["ids"], c["mask"], adv_bt, old_logps=c["old"], backend="chunked"
    )
    assert torch.equal(a.loss, b.loss)


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    B=st.integers(1, 4),
    T=st.integers(1, 9),
    H=st.integers(1, 12),
    V=st.integers(2, 70),
    chunk=st.integers(1, 11),
    loss_type=st.sampled_from(LOSS_TYPES),
    level=st.sampled_from(["token", "sequence"]),
    with_old=st.booleans(),
    beta=st.sampled_from([0.0, 0.04]),
    bias=st.booleans(),
    dtype=st.sampled_from([torch.float32, torch.bfloat16]),
    seed=st.integers(0, 10_000),
    data=st.data(),
)
def test_hypothesis_shapes(compare, case, B, T, H, V, chunk, loss_type, level, with_old, beta, bias, dtype, seed, data):
    lengths = data.draw(st.lists(st.integers(0, T), min_size=B, max_size=B))
    with_old = with_old and dtype == torch.float32  # bf16 rounding could flip a clip decision
    c = case(B, T, H, V, dtype=dtype, seed=seed, lengths=lengths, bias=bias, old_offsets=with_old, beta=beta)
    tol = 2e-5 if dtype == torch.float32 else 3e-2
    compare(
        "chunked", c, dict(loss_type=loss_type, importance_sampling_level=level, beta=beta, chunk_size=chunk), tol=tol
    )


def test_bf16_grads_dtype_and_against_fp32_reference(case):
    c = case(3, 6, 16, 40, dtype=torch.bfloat16, seed=2, lengths=[6, 3, 5], bias=True, beta=0.05)
    h, w, b = (t.clone().requires_grad_(True) for t in (c["hidden"], c["weight"], c["bias"]))
    out = grpo_loss(
        h, w, c["ids"], c["mask"], c["adv"], bias=b, ref_logps=c["ref"], beta=0.05, backend="chunked", chunk_size=5
    )
    out.loss.backward()
    assert h.grad.dtype == w.grad.dtype == b.grad.dtype == torch.bfloat16
    h32, w32, b32 = (t.detach().float().requires_grad_(True) for t in (c["hidden"], c["weight"], c["bias"]))
    ref = grpo_loss(
        h32, w32, c["ids"], c["mask"], c["adv"], bias=b32, ref_logps=c["ref"], beta=0.05, backend="reference"
    )
    ref.loss.backward()
    assert abs(out.loss.item() - ref.loss.item()) < 3e-2 * (1 + abs(ref.loss.item()))
    for g, rg in ((h.grad, h32.grad), (w.grad, w32.grad), (b.grad, b32.grad)):
        assert (g.float() - rg).abs().max() < 5e-2 * (1 + rg.abs().max())


LEVELS = ["token", "sequence"]


@pytest.fixture
def keep_grads(monkeypatch):
    """gradcheck back-propagates one graph twice: keep the stored grads instead of consuming them in place."""
    mod = importlib.import_module("mrgfast.kernels.grpo_loss")  # the module (the package exports the function)
    monkeypatch.setattr(mod, "CONSUME_GRADS_IN_BACKWARD", False)


@pytest.mark.parametrize("loss_type,level", list(itertools.product(LOSS_TYPES, LEVELS)))
def test_gradcheck_float64(case, keep_grads, loss_type, level):
    c = case(2, 3, 4, 7, dtype=torch.float64, seed=11, lengths=[3, 2], bias=True, old_offsets=True, beta=0.1)

    def f(h, w, b):
        return grpo_loss(
            h,
            w,
            c["ids"],
            c["mask"],
            c["adv"],
            bias=b,
            old_logps=c["old"],
            ref_logps=c["ref"],
            beta=0.1,
            delta=1.5,
            temperature=0.8,
            loss_type=loss_type,
            importance_sampling_level=level,
            backend="chunked",
            chunk_size=2,
        ).loss

    args = tuple(t.clone().requires_grad_(True) for t in (c["hidden"], c["weight"], c["bias"]))
    assert torch.autograd.gradcheck(f, args, eps=1e-6, atol=1e-7, rtol=1e-5)


@pytest.mark.parametrize("loss_type", UNSUPPORTED_LOSS_TYPES)
def test_unsupported_loss_type_named(case, loss_type):
    c = case(1, 2, 3, 5)
    with pytest.raises(NotImplementedError, match=loss_type):
        grpo_loss(c["hidden"], c["weight"], c["ids"], c["mask"], c["adv"], loss_type=loss_type)


@pytest.mark.parametrize("name", sorted(UNSUPPORTED_TRL_OPTIONS))
def test_unsupported_option_named(case, name):
    c = case(1, 2, 3, 5)
    off = UNSUPPORTED_TRL_OPTIONS[name]
    grpo_loss(c["hidden"], c["weight"], c["ids"], c["mask"], c["adv"], **{name: off})  # "off" is accepted
    on = (not off) if isinstance(off, bool) else {None: 0.5, 1.0: 0.5, 0.0: 0.1}[off]
    with pytest.raises(NotImplementedError, match=name):
        grpo_loss(c["hidden"], c["weight"], c["ids"], c["mask"], c["adv"], **{name: on})


def test_bad_arguments(case):
    c = case(1, 2, 3, 5)
    args = (c["hidden"], c["weight"], c["ids"], c["mask"], c["adv"])
    with pytest.raises(TypeError, match="not_an_option"):
        grpo_loss(*args, not_an_option=1)
    with pytest.raises(ValueError, match="ref_logps"):
        grpo_loss(*args, beta=0.1)
    with pytest.raises(ValueError, match="importance_sampling_level"):
        grpo_loss(*args, importance_sampling_level="batch")
    with pytest.raises(ValueError, match="completion_ids"):
        grpo_loss(c["hidden"], c["weight"], c["ids"] + 100, c["mask"], c["adv"])


@pytest.mark.parametrize("backend", ["chunked", "reference"])
@pytest.mark.parametrize("where", ["hidden", "weight", "adv", "old", "hidden_inf"])
def test_nan_inf_propagate(case, backend, where):
    c = case(2, 4, 6, 13, seed=1, old_offsets=True)
    h, w, adv, old = c["hidden"].clone(), c["weight"].clone(), c["adv"].clone(), c["old"].clone()
    if where == "hidden":
        h[0, 1, 2] = float("nan")
    elif where == "hidden_inf":
        h[1, 0, 0] = float("inf")
    elif where == "weight":
        w[3, 1] = float("nan")
    elif where == "adv":
        adv[1] = float("nan")
    else:
        old[0, 0] = float("nan")
    h.requires_grad_(True)
    w.requires_grad_(True)
    out = grpo_loss(h, w, c["ids"], c["mask"], adv, old_logps=old, backend=backend, chunk_size=3)
    assert not torch.isfinite(out.loss)
    out.loss.backward()
    assert not torch.isfinite(h.grad).all() or not torch.isfinite(w.grad).all()


def test_all_masked_gives_zero_loss_and_zero_grads(case):
    c = case(2, 3, 4, 9, empty_rows=(0, 1))
    h, w = c["hidden"].clone().requires_grad_(True), c["weight"].clone().requires_grad_(True)
    out = grpo_loss(h, w, c["ids"], c["mask"], c["adv"], loss_type="grpo", backend="chunked")
    out.loss.backward()
    assert out.loss.item() == 0.0 and (h.grad == 0).all() and (w.grad == 0).all()


def test_no_grad_and_frozen_weight(case):
    c = case(2, 5, 6, 21, seed=4, old_offsets=True)
    with torch.no_grad():
        a = grpo_loss(c["hidden"], c["weight"], c["ids"], c["mask"], c["adv"], old_logps=c["old"])
    h = c["hidden"].clone().requires_grad_(True)  # LoRA: frozen LM head, grads only for the hidden states
    b = grpo_loss(h, c["weight"], c["ids"], c["mask"], c["adv"], old_logps=c["old"], chunk_size=3)
    b.loss.backward()
    r = grpo_loss(
        c["hidden"].clone().requires_grad_(True),
        c["weight"],
        c["ids"],
        c["mask"],
        c["adv"],
        old_logps=c["old"],
        backend="reference",
    )
    assert torch.allclose(a.loss, b.loss) and torch.allclose(a.loss, r.loss.detach(), rtol=1e-5)
    assert h.grad is not None and c["weight"].grad is None


def test_nothing_vocab_sized_is_saved_for_backward(case):
    """The fused path keeps no [N, V] tensor for backward (only hidden/weight-sized gradients)."""
    c = case(4, 16, 8, 300, seed=9, old_offsets=True)
    N, V = 64, 300
    saved = []

    def pack(t):
        saved.append(t.numel())
        return t

    h, w = c["hidden"].clone().requires_grad_(True), c["weight"].clone().requires_grad_(True)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = grpo_loss(h, w, c["ids"], c["mask"], c["adv"], old_logps=c["old"], backend="chunked", chunk_size=8)
    assert max(saved, default=0) < N * V
    out.loss.backward()
    saved.clear()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        grpo_loss(h, w, c["ids"], c["mask"], c["adv"], old_logps=c["old"], backend="reference")
    assert max(saved) >= N * V  # the hook does see the reference's full logits


def test_backward_twice_is_a_clear_error(case):
    c = case(1, 3, 4, 7, seed=2)
    h = c["hidden"].clone().requires_grad_(True)
    out = grpo_loss(h, c["weight"], c["ids"], c["mask"], c["adv"], backend="chunked")
    out.loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="retain_graph"):
        out.loss.backward()


@pytest.mark.parametrize("loss_type", LOSS_TYPES)
def test_frozen_head_sequence_level_matches_trl(frozen_vs_trl, loss_type):
    """LoRA case: only the hidden states need grads; sequence-level IS with old log-probs (the one-pass path)."""
    frozen_vs_trl("chunked", loss_type)
