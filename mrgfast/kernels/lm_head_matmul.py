"""The LM-head matrix products of the chunked paths: ``tile = h W^T (+ b)`` and ``d h = g W``.

Why not plain ``torch.mm`` on the CPU: for fp32, torch sends it to MKL's sgemm, which repacks the whole
``[V, H]`` weight on every call, so small row counts pay for the whole weight. ``python bench/bench_lm_head.py``
(H 896, V 151,936, 2 threads; two runs): the forward product of 1,024 tokens in six 176-row chunks takes
2.03-2.07 s through MKL (1.67-1.70 s in one call) and 1.46 s through oneDNN's matmul (the one PyTorch's own
inductor calls for linear layers, ``torch.ops.mkldnn._linear_pointwise``), run over vocabulary blocks of
``VOCAB_BLOCK`` rows and copied into the reused tile; the hidden-state gradient ``g W`` 1.65-1.84 s vs
1.56-1.60 s. Each block's output is a few MiB, so the allocator reuses it instead of faulting in a fresh
``[c, V]`` page range for every chunk.

The same holds for the one-row-per-sequence products of generation: at 16 rows a decoding step's LM head takes
98-105 ms through ``F.linear`` and 43-46 ms through oneDNN (``linear``, which the trainer puts under the
policy's head while it generates).

oneDNN is used for fp32 CPU tensors when this torch build has it, a probe product matches ``torch.mm``, and
the weight has at least ``ONEDNN_MIN_WEIGHT`` elements (below that the products cost microseconds either way; a
16-row decoding step's head: oneDNN 1.76x MKL's time at 680 x 64 (0.02-0.03 ms), 0.61x at 4,096 x 896,
``python bench/bench_lm_head.py --vocab 680 --hidden 64 --reps 20`` and ``--vocab 4096 --reps 20``); anything else (CUDA, fp64,
16-bit floats, where torch already picks oneDNN itself, a build without it) takes ``torch.mm``.
``CPU_BACKEND`` selects it explicitly (``"auto"``, ``"onednn"``: any size, ``"torch"``), for the benches and
tests that compare the two.
"""

from __future__ import annotations

import functools

import torch

CPU_BACKENDS = ("auto", "onednn", "torch")
CPU_BACKEND = "auto"
ONEDNN_MIN_WEIGHT = 1 << 20  # elements of the weight (4 MiB in fp32) from which "auto" takes oneDNN
# rows of the weight per oneDNN call in the forward product (4,096-16,384 measured within 3 % of each other)
VOCAB_BLOCK = 8192


@functools.cache
def onednn_available() -> bool:
    """Whether oneDNN's linear runs here and agrees with ``torch.mm`` on a small fp32 product."""
    try:
        op = torch.ops.mkldnn._linear_pointwise.default
        if not torch.backends.mkldnn.is_available():
            return False
        # the answer is cached: keep an enclosing autocast or grad mode from deciding it
        with torch.autocast("cpu", enabled=False), torch.no_grad():
            return _probe(op)
    except Exception:  # no mkldnn build, op missing or refusing the layout: torch.mm it is
        return False


def _probe(op) -> bool:
    g = torch.Generator().manual_seed(0)
    x, w = torch.randn(5, 24, generator=g), torch.randn(40, 24, generator=g)
    b = torch.randn(40, generator=g)
    ok = torch.allclose(op(x, w, b, "none", [], ""), torch.addmm(b, x, w.t()), rtol=1e-4, atol=1e-4)
    y = torch.randn(5, 40, generator=g)
    return ok and torch.allclose(op(y, w.t(), None, "none", [], ""), y @ w, rtol=1e-4, atol=1e-4)


def _plain(t: torch.Tensor) -> bool:
    return type(t) in (torch.Tensor, torch.nn.Parameter)


def _use_onednn(x: torch.Tensor, weight: torch.Tensor) -> bool:
    if CPU_BACKEND not in CPU_BACKENDS:
        raise ValueError(f"lm_head_matmul.CPU_BACKEND must be one of {CPU_BACKENDS}, not {CPU_BACKEND!r}")
    if CPU_BACKEND == "torch" or x.device.type != "cpu" or weight.device.type != "cpu":
        return False
    if not (_plain(x) and _plain(weight)):  # a DTensor or other subclass has no rule for the oneDNN op
        return False
    if x.dtype != torch.float32 or weight.dtype != torch.float32:
        return False
    if CPU_BACKEND == "auto" and weight.numel() < ONEDNN_MIN_WEIGHT:
        return False
    if not onednn_available():
        if CPU_BACKEND == "onednn":
            raise RuntimeError("lm_head_matmul.CPU_BACKEND='onednn' but oneDNN's linear is not usable here")
        return False
    return True


def _onednn_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``x @ weight^T (+ bias)`` as a fresh tensor, through oneDNN (callers have checked ``_use_onednn``)."""
    return torch.ops.mkldnn._linear_pointwise.default(x, weight, bias, "none", [], "")


def project_into(tile: torch.Tensor, hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
    """``tile[c, V] = hidden[c, H] @ weight[V, H]^T (+ bias)``, in place. With oneDNN, over vocabulary blocks of
    ``VOCAB_BLOCK`` rows: each block's output is a few MiB, which the allocator hands back block after block."""
    if not _use_onednn(hidden, weight):
        torch.mm(hidden, weight.t(), out=tile)
        if bias is not None:
            tile.add_(bias)
        return
    V = weight.shape[0]
    for v0 in range(0, V, VOCAB_BLOCK):
        v1 = min(v0 + VOCAB_BLOCK, V)
        b = None if bias is None else bias[v0:v1]
        tile[:, v0:v1].copy_(_onednn_linear(hidden, weight[v0:v1], b))


def grad_hidden_into(out: torch.Tensor, grad_logits: torch.Tensor, weight: torch.Tensor) -> None:
    """``out[c, H] = grad_logits[c, V] @ weight[V, H]``, in place."""
    if not _use_onednn(grad_logits, weight):
        torch.mm(grad_logits, weight, out=out)
        return
    out.copy_(_onednn_linear(grad_logits, weight.t(), None))


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``F.linear(x, weight, bias)`` for inputs of any rank, through oneDNN where it pays; forward only (the
    oneDNN op has no autograd formula, so anything that needs a gradient takes ``F.linear``)."""
    needs_grad = torch.is_grad_enabled() and (
        x.requires_grad or weight.requires_grad or (bias is not None and bias.requires_grad)
    )
    odd_bias = bias is not None and (bias.dtype != torch.float32 or not _plain(bias))
    if needs_grad or odd_bias or weight.dim() != 2 or not _use_onednn(x, weight):
        return torch.nn.functional.linear(x, weight, bias)
    return _onednn_linear(x, weight, bias)
