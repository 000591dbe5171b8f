"""``token_logps`` (forward-only per-token log-probs) against TRL's ``ChunkedLogProbFunction`` and fp64 logits.

TRL's values are what its ``add_fused_lm_head`` forward returns for the reference/old-policy passes on a
non-Triton device (every position scored, masked ones set to 0); the Triton backend runs in Triton's
interpreter (tiny sizes).
"""

from __future__ import annotations

import pytest
import torch

from mrgfast.kernels import token_logps
from mrgfast.kernels.grpo_loss import _default_chunk


def _case(B, T, H, V, *, dtype=torch.float32, seed=0, lengths=None, bias=False):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(B, T, H, generator=g, dtype=torch.float64)
    w = torch.randn(V, H, generator=g, dtype=torch.float64) * (H**-0.5) * 2
    b = torch.randn(V, generator=g, dtype=torch.float64) * 0.5 if bias else None
    ids = torch.randint(0, V, (B, T), generator=g)
    mask = torch.ones(B, T, dtype=torch.long)
    for i, n in enumerate(lengths or []):
        mask[i, n:] = 0
    return h.to(dtype), w.to(dtype), None if b is None else b.to(dtype), ids, mask


def _trl_logps(h, w, b, ids, mask, temperature):
    from trl.kernels import ChunkedLogProbFunction

    H = w.shape[1]
    lp = ChunkedLogProbFunction.apply(
        h.reshape(-1, H), w, b, ids.reshape(-1), temperature, 32768, None, 1.0, ("log_probs",)
    )[0]
    return lp.view(ids.shape).masked_fill(mask == 0, 0.0)


def _exact(h, w, b, ids, mask, temperature):
    logits = (h.double() @ w.double().t() + (0 if b is None else b.double())) / temperature
    lp = torch.log_softmax(logits, -1).gather(-1, ids.unsqueeze(-1)).squeeze(-1)
    return lp.masked_fill(mask == 0, 0.0)


@pytest.mark.parametrize("chunk", [None, 1, 3, 64])
@pytest.mark.parametrize("bias,temperature", [(False, 1.0), (True, 0.7)])
def test_chunked_matches_trl_and_exact(chunk, bias, temperature):
    h, w, b, ids, mask = _case(3, 7, 16, 53, seed=1, lengths=[7, 0, 4], bias=bias)
    ids = ids.masked_fill(mask == 0, 10**6)  # masked targets are never read
    out = token_logps(h, w, ids, mask, bias=b, temperature=temperature, chunk_size=chunk, backend="chunked")
    assert out.shape == ids.shape and out.dtype == torch.float32 and not out.requires_grad
    safe = ids.masked_fill(mask == 0, 0)
    torch.testing.assert_close(out, _trl_logps(h, w, b, safe, mask, temperature), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.double(), _exact(h, w, b, safe, mask, temperature), rtol=1e-5, atol=1e-5)
    assert (out[mask == 0] == 0).all()


def test_fp64_is_exact_and_flat_inputs_work():
    h, w, b, ids, mask = _case(2, 5, 8, 31, dtype=torch.float64, seed=2, lengths=[5, 2], bias=True)
    out = token_logps(h.reshape(-1, 8), w, ids.reshape(-1), mask.reshape(-1), bias=b, chunk_size=2)
    assert out.dtype == torch.float64 and out.shape == (10,)
    torch.testing.assert_close(out.view(2, 5), _exact(h, w, b, ids, mask, 1.0), rtol=1e-12, atol=1e-12)


def test_bf16_close_to_trl():
    h, w, b, ids, mask = _case(2, 6, 32, 97, dtype=torch.bfloat16, seed=3, lengths=[6, 3])
    out = token_logps(h, w, ids, mask, chunk_size=4)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, _trl_logps(h, w, b, ids, mask, 1.0), rtol=2e-2, atol=2e-2)


def test_grad_inputs_are_not_tracked_and_all_masked_is_zero():
    h, w, _, ids, mask = _case(2, 3, 8, 11, seed=4)
    h.requires_grad_(True)
    out = token_logps(h, w, ids, mask)
    assert not out.requires_grad
    zero = token_logps(h, w, ids, torch.zeros_like(mask))
    assert zero.shape == ids.shape and (zero == 0).all()


def test_bad_inputs_are_named():
    h, w, _, ids, mask = _case(2, 3, 8, 11, seed=5)
    with pytest.raises(ValueError, match=r"\[0, 11\)"):
        token_logps(h, w, ids + 11, mask)
    with pytest.raises(ValueError, match="does not match"):
        token_logps(h[:, :2], w, ids, mask)
    with pytest.raises(ValueError, match="temperature"):
        token_logps(h, w, ids, mask, temperature=0.0)


def test_triton_backend_in_interpreter():
    tri = pytest.importorskip("mrgfast.kernels.grpo_loss_triton")
    if not tri.available() or not tri.interpreter_active():
        pytest.skip("Triton's interpreter is not active in this session (the Triton test file covers it)")
    h, w, b, ids, mask = _case(2, 4, 8, 37, seed=6, lengths=[4, 1], bias=True)
    out = token_logps(h, w, ids, mask, bias=b, temperature=0.8, chunk_size=3, backend="triton")
    torch.testing.assert_close(out, _trl_logps(h, w, b, ids, mask, 0.8), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("vocab,tokens", [(151936, 1024), (151936, 4096), (32000, 1024), (256000, 1024)])
def test_cpu_tile_stays_in_budget_and_balanced(vocab, tokens):
    from mrgfast.kernels.grpo_loss import CPU_TILE_BUDGET

    rows = _default_chunk(torch.device("cpu"), vocab, 4, tokens)
    assert rows * vocab * 4 <= CPU_TILE_BUDGET
    n_chunks = -(-tokens // rows)
    assert tokens - (n_chunks - 1) * rows >= rows // 2  # no small last chunk
