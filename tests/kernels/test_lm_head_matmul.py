"""The LM-head products of the chunked CPU path, oneDNN against ``torch.mm``, and the losses on each.

Small ``VOCAB_BLOCK`` values split tiny vocabularies into several blocks (with a short last block), so the
blocked forward product is exercised at test shapes; the oneDNN cases skip with a reason on a torch build
without oneDNN.
"""

from __future__ import annotations

import pytest
import torch

from mrgfast.kernels import grpo_loss, lm_head_matmul, token_logps

needs_onednn = pytest.mark.skipif(not lm_head_matmul.onednn_available(), reason="this torch build has no oneDNN linear")


def _backends(blocks):
    """(CPU backend, vocabulary block) pairs for the ``cpu_backend`` fixture; oneDNN ones skip without it."""
    return [
        pytest.param((backend, block), id=f"{backend}-{block}", marks=needs_onednn if backend == "onednn" else ())
        for backend in ("onednn", "torch")
        for block in blocks
    ]


@pytest.fixture
def cpu_backend(request, monkeypatch):
    backend, block = request.param
    monkeypatch.setattr(lm_head_matmul, "CPU_BACKEND", backend)
    monkeypatch.setattr(lm_head_matmul, "VOCAB_BLOCK", block)
    return backend


@pytest.mark.parametrize("cpu_backend", _backends((8192, 7, 16)), indirect=True)
@pytest.mark.parametrize("rows,vocab,with_bias", [(1, 53, False), (5, 53, True), (9, 20, True), (4, 7, False)])
def test_products_match_torch_mm(cpu_backend, rows, vocab, with_bias):
    g = torch.Generator().manual_seed(rows * vocab)
    h = torch.randn(rows, 24, generator=g)
    w = torch.randn(vocab, 24, generator=g)
    b = torch.randn(vocab, generator=g) if with_bias else None
    tile = torch.full((rows, vocab), float("nan"))
    lm_head_matmul.project_into(tile, h, w, b)
    want = h.double() @ w.double().t() + (0 if b is None else b.double())
    torch.testing.assert_close(tile.double(), want, rtol=1e-5, atol=1e-4)
    grad = torch.randn(rows, vocab, generator=g)
    out = torch.full((rows, 24), float("nan"))
    lm_head_matmul.grad_hidden_into(out, grad, w)
    torch.testing.assert_close(out.double(), grad.double() @ w.double(), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_other_dtypes_take_torch_mm_even_when_onednn_is_asked(monkeypatch, dtype):
    monkeypatch.setattr(lm_head_matmul, "CPU_BACKEND", "onednn")
    monkeypatch.setattr(lm_head_matmul, "onednn_available", lambda: False)  # would raise if it were consulted
    g = torch.Generator().manual_seed(1)
    h, w = torch.randn(3, 8, generator=g).to(dtype), torch.randn(11, 8, generator=g).to(dtype)
    tile = torch.empty(3, 11, dtype=dtype)
    lm_head_matmul.project_into(tile, h, w, None)
    assert torch.equal(tile, torch.mm(h, w.t()))


def test_unknown_or_unusable_backend_is_named(monkeypatch):
    h, w = torch.randn(2, 4), torch.randn(5, 4)
    monkeypatch.setattr(lm_head_matmul, "CPU_BACKEND", "mkl")
    with pytest.raises(ValueError, match="'mkl'"):
        lm_head_matmul.project_into(torch.empty(2, 5), h, w, None)
    monkeypatch.setattr(lm_head_matmul, "CPU_BACKEND", "onednn")
    monkeypatch.setattr(lm_head_matmul, "onednn_available", lambda: False)
    with pytest.raises(RuntimeError, match="oneDNN"):
        lm_head_matmul.project_into(torch.empty(2, 5), h, w, None)
    monkeypatch.setattr(lm_head_matmul, "CPU_BACKEND", "auto")  # auto falls back quietly
    tile = torch.empty(2, 5)
    lm_head_matmul.project_into(tile, h, w, None)
    assert torch.equal(tile, torch.mm(h, w.t()))


@pytest.mark.parametrize("cpu_backend", _backends((16,)), indirect=True)
@pytest.mark.parametrize("loss_type,level", [("dapo", "token"), ("grpo", "sequence"), ("bnpo", "token")])
def test_grpo_loss_on_each_cpu_backend_matches_trl(compare, case, cpu_backend, loss_type, level):
    c = case(3, 7, 10, 53, seed=11, lengths=[7, 4, 0], bias=True, old_offsets=True, beta=0.04)
    opts = dict(loss_type=loss_type, importance_sampling_level=level, beta=0.04, temperature=0.7, chunk_size=4)
    compare("chunked", c, opts)


@pytest.mark.parametrize("cpu_backend", _backends((16,)), indirect=True)
def test_token_logps_on_each_cpu_backend_matches_full_logits(cpu_backend):
    g = torch.Generator().manual_seed(4)
    h, w, b = torch.randn(2, 6, 12, generator=g), torch.randn(53, 12, generator=g) * 0.5, torch.randn(53, generator=g)
    ids = torch.randint(0, 53, (2, 6), generator=g)
    out = token_logps(h, w, ids, bias=b, temperature=0.8, chunk_size=5, backend="chunked")
    logits = (h.double() @ w.double().t() + b.double()) / 0.8
    want = torch.log_softmax(logits, -1).gather(-1, ids.unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(out.double(), want, rtol=1e-5, atol=1e-5)


@needs_onednn
def test_onednn_and_torch_agree_on_a_loss_and_its_gradients(monkeypatch):
    g = torch.Generator().manual_seed(2)
    h0, w0 = torch.randn(2, 9, 16, generator=g), torch.randn(300, 16, generator=g) * 0.3
    ids, adv = torch.randint(0, 300, (2, 9), generator=g), torch.randn(2, generator=g)
    mask = torch.ones(2, 9, dtype=torch.long)
    results = {}
    for backend in ("onednn", "torch"):
        monkeypatch.setattr(lm_head_matmul, "CPU_BACKEND", backend)
        monkeypatch.setattr(lm_head_matmul, "VOCAB_BLOCK", 64)
        h, w = h0.clone().requires_grad_(True), w0.clone().requires_grad_(True)
        out = grpo_loss(h, w, ids, mask, adv, chunk_size=5, backend="chunked")
        out.loss.backward()
        results[backend] = (out.loss.detach(), out.per_token_logps, h.grad, w.grad)
    for a, b in zip(results["onednn"], results["torch"]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@needs_onednn
def test_probe_is_not_decided_by_an_enclosing_autocast():
    lm_head_matmul.onednn_available.cache_clear()
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert lm_head_matmul.onednn_available()
    finally:
        lm_head_matmul.onednn_available.cache_clear()


def test_tensor_subclasses_take_torch(monkeypatch):
    class Tagged(torch.Tensor):  # stands in for a DTensor: the oneDNN op knows no rule for it
        pass

    monkeypatch.setattr(lm_head_matmul, "CPU_BACKEND", "onednn")
    monkeypatch.setattr(lm_head_matmul, "onednn_available", lambda: pytest.fail("oneDNN consulted"))
    x, w = torch.randn(2, 4), torch.randn(5, 4).as_subclass(Tagged)
    assert torch.equal(lm_head_matmul.linear(x, w).as_subclass(torch.Tensor), torch.nn.functional.linear(x, w))


@needs_onednn
def test_the_lm_head_bench_runs_at_small_shapes(tmp_path):
    import json
    import subprocess
    import sys
    from pathlib import Path

    bench = Path(__file__).resolve().parents[2] / "bench" / "bench_lm_head.py"
    out = tmp_path / "lm_head.json"
    cmd = [sys.executable, str(bench), "--tokens", "40", "--chunk", "16", "--hidden", "8", "--vocab", "300"]
    proc = subprocess.run([*cmd, "--reps", "1", "--threads", "1", "--out", str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.read_text())
    assert [r["product"].split(",")[0] for r in result["results"]] == [
        "forward h W^T",
        "d h = g W",
        "one decoding step's head",
    ]
    assert all(r["mkl_s"] > 0 and r["onednn_s"] > 0 for r in result["results"])
