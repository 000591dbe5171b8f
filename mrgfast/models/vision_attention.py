"""Qwen2.5-VL's windowed vision attention in one packed call per layer, through transformers' AttentionInterface.

Why: transformers runs the vision tower's attention as one SDPA call per window (and per image in the
full-attention blocks) unless the vision config's attention implementation is a flash one; only then does the
attention function get the packed ``q, k, v`` with ``cu_seq_lens_q/k``. A 336-px view has 9 windows, so a
3B step of 64 completions × 2 views makes about 1,150 attention calls per windowed block and pass — a
launch-bound loop on a GPU.

How: :func:`register` adds :data:`PACKED_VISION_ATTENTION` to transformers' ``AttentionInterface`` (its name
contains ``flash``: that is the test transformers' vision attention makes before passing ``cu_seqlens``), and
:func:`use_packed_vision_attention` sets it on the vision sub-config only; the language model keeps its own
implementation. The function (:func:`packed_attention`) takes, in this order:

1. flash-attn's ``flash_attn_varlen_func`` when flash-attn is installed (CUDA, 16-bit);
2. torch's own ``torch.nn.attention.varlen.varlen_attn`` where the installed torch has it (CUDA, 16-bit);
3. SDPA over all segments at once: segments of equal length are stacked into one ``[segments, heads, length,
   dim]`` call, which needs no mask — one call per distinct length (one to three in practice) instead of one
   per window, and no ``[S, S]`` block-diagonal mask (73k vision tokens in a 3B step would make it 5 GiB).

A backend that raises is logged once and skipped for the rest of the process. The sub-config is set through its
``_attn_implementation`` setter (what ``set_attn_implementation`` writes after its checks) because those checks
would try to load a Hub kernel for any name containing ``flash``; the name is not saved with the model
(transformers never serialises the implementation), so a saved model loads anywhere.
"""

from __future__ import annotations

import importlib.util
import inspect
import logging
from collections import Counter

import torch
import torch.nn.functional as F

log = logging.getLogger("mrgfast.models")

PACKED_VISION_ATTENTION = "mrgfast_packed_vision_flash_varlen"
# model types whose vision attention passes cu_seqlens to a flash implementation (transformers >= 5)
SUPPORTED_MODEL_TYPES = ("qwen2_vl", "qwen2_5_vl", "qwen3_vl")
BACKENDS = ("flash_attn", "torch_varlen", "sdpa")

calls: Counter = Counter()  # backend -> calls in this process (read by tests and benches)
_failed: set[str] = set()
FORCE_BACKEND: str | None = None  # tests and benches: one of BACKENDS, or None for the order above


# ------------------------------------------------------------------------------------------ backends
def _flash_attn_varlen(q, k, v, cu, max_len, scaling, dropout, causal):
    from flash_attn import flash_attn_varlen_func

    return flash_attn_varlen_func(
        q, k, v, cu, cu, max_len, max_len, dropout_p=dropout, softmax_scale=scaling, causal=causal
    )


def _torch_varlen(q, k, v, cu, max_len, scaling, dropout, causal):
    from torch.nn.attention.varlen import varlen_attn

    params = inspect.signature(varlen_attn).parameters
    kw = {}
    if causal:
        if "is_causal" in params:
            kw["is_causal"] = True
        elif "window_size" in params:
            kw["window_size"] = (-1, 0)
        else:
            raise NotImplementedError("this torch's varlen_attn has no causal mode")
    if dropout:
        raise NotImplementedError("varlen_attn has no dropout")
    if "scale" in params:
        kw["scale"] = scaling
    elif scaling is not None and abs(scaling - q.size(-1) ** -0.5) > 1e-12:
        q = q * (scaling * q.size(-1) ** 0.5)  # varlen_attn scales by 1/sqrt(dim)
    return varlen_attn(q, k, v, cu, cu, max_len, max_len, **kw)


def _grouped_sdpa(q, k, v, cu, scaling, dropout, causal):
    """``q, k, v``: [heads, S, dim] -> [heads, S, dim]; each segment attends only to itself."""
    lengths = (cu[1:] - cu[:-1]).tolist()
    heads, total, dim = q.shape
    kw = dict(dropout_p=dropout, is_causal=causal, scale=scaling)
    if k.size(0) != heads:
        kw["enable_gqa"] = True
    if len(set(lengths)) == 1:  # every segment as long: a reshape, no gather
        n, length = len(lengths), lengths[0]

        def stack(t):
            return t.reshape(t.size(0), n, length, dim).transpose(0, 1)

        out = F.scaled_dot_product_attention(stack(q), stack(k), stack(v), **kw)  # [n, heads, length, dim]
        return out.transpose(0, 1).reshape(heads, total, dim)
    starts = cu[:-1].tolist()
    by_length: dict[int, list[int]] = {}
    for start, length in zip(starts, lengths):
        if length:
            by_length.setdefault(length, []).append(start)
    pieces, order = [], []
    for length, group_starts in by_length.items():
        idx = (
            torch.tensor(group_starts, device=q.device)[:, None] + torch.arange(length, device=q.device)[None, :]
        )  # [segments, length]
        flat = idx.reshape(-1)

        def gather(t, idx=idx, flat=flat):
            return t.index_select(1, flat).reshape(t.size(0), *idx.shape, dim).transpose(0, 1)

        out = F.scaled_dot_product_attention(gather(q), gather(k), gather(v), **kw)  # [segments, heads, length, dim]
        pieces.append(out.transpose(0, 1).reshape(heads, -1, dim))
        order.append(flat)
    order = torch.cat(order)
    packed = torch.cat(pieces, dim=1)
    return packed.new_zeros(heads, total, dim).index_copy(1, order, packed)


def _varlen_ok(q) -> bool:
    return q.is_cuda and q.dtype in (torch.float16, torch.bfloat16)


def _torch_has_varlen() -> bool:
    try:
        from torch.nn.attention.varlen import varlen_attn  # noqa: F401
    except Exception:
        return False
    return True


def pick_backend(query) -> str:
    """The first backend of :data:`BACKENDS` that can run ``query`` (``FORCE_BACKEND`` wins)."""
    if FORCE_BACKEND is not None:
        return FORCE_BACKEND
    if _varlen_ok(query):
        if "flash_attn" not in _failed and importlib.util.find_spec("flash_attn") is not None:
            return "flash_attn"
        if "torch_varlen" not in _failed and _torch_has_varlen():
            return "torch_varlen"
    return "sdpa"


# ------------------------------------------------------------------------------------------ attention function
def packed_attention(
    module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    is_causal: bool | None = None,
    cu_seq_lens_q: torch.Tensor | None = None,
    cu_seq_lens_k: torch.Tensor | None = None,
    max_length_q: int | None = None,
    max_length_k: int | None = None,
    **kwargs,
):
    """transformers' attention-function contract: ``query/key/value`` [1, heads, S, dim] with the segments given by
    ``cu_seq_lens_q`` (= ``cu_seq_lens_k``); returns ([1, S, heads, dim], None)."""
    causal = bool(is_causal) if is_causal is not None else bool(getattr(module, "is_causal", False))
    if (
        cu_seq_lens_q is None
        or query.size(0) != 1
        or attention_mask is not None
        or (
            cu_seq_lens_k is not None
            and cu_seq_lens_k is not cu_seq_lens_q
            and not torch.equal(cu_seq_lens_q, cu_seq_lens_k)
        )
    ):
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        calls["sdpa_unpacked"] += 1
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, is_causal=is_causal, **kwargs
        )
    cu = cu_seq_lens_q
    q, k, v = query[0], key[0], value[0]  # [heads, S, dim]
    backend = pick_backend(query)
    if backend in ("flash_attn", "torch_varlen"):
        max_len = int(max_length_q) if max_length_q is not None else int((cu[1:] - cu[:-1]).max())
        fn = _flash_attn_varlen if backend == "flash_attn" else _torch_varlen
        try:
            out = fn(
                q.transpose(0, 1).contiguous(),
                k.transpose(0, 1).contiguous(),
                v.transpose(0, 1).contiguous(),
                cu.to(torch.int32),
                max_len,
                scaling,
                dropout,
                causal,
            )  # [S, heads, dim]
            calls[backend] += 1
            return out.unsqueeze(0), None
        except Exception as e:  # a kernel that does not take these inputs: the next backend, from now on
            if FORCE_BACKEND is not None:
                raise
            _failed.add(backend)
            log.warning(
                "packed vision attention: %s failed (%s: %s); using the next backend", backend, type(e).__name__, e
            )
            backend = pick_backend(query)
            if backend != "sdpa":
                return packed_attention(
                    module, query, key, value, attention_mask, dropout, scaling, is_causal, cu_seq_lens_q,
                    cu_seq_lens_k, max_length_q, max_length_k, **kwargs,
                )  # fmt: skip
    out = _grouped_sdpa(q, k, v, cu, scaling, dropout, causal)
    calls["sdpa"] += 1
    return out.transpose(0, 1).unsqueeze(0), None


# ------------------------------------------------------------------------------------------ registration
def register() -> str:
    """Add :func:`packed_attention` to transformers' attention functions (idempotent); returns its name."""
    from transformers import AttentionInterface

    AttentionInterface.register(PACKED_VISION_ATTENTION, packed_attention)
    return PACKED_VISION_ATTENTION


def use_packed_vision_attention(model) -> str | None:
    """Give ``model``'s vision tower the packed attention; returns what it did, or None when it does not apply
    (not a supported model type, or the vision tower already runs a flash implementation)."""
    config = getattr(model, "config", None)
    vision = getattr(config, "vision_config", None)
    if vision is None or getattr(config, "model_type", None) not in SUPPORTED_MODEL_TYPES:
        log.info("packed vision attention: not applied (%s has no supported vision tower)", type(model).__name__)
        return None
    current = vision._attn_implementation
    if current == PACKED_VISION_ATTENTION:
        return current
    if current and "flash" in current:
        log.info("packed vision attention: not needed (the vision tower runs %s, already packed)", current)
        return None
    register()
    config._attn_implementation = {"vision_config": PACKED_VISION_ATTENTION}  # the vision sub-config only
    towers = [m for m in model.modules() if getattr(m, "config", None) is vision]
    if not towers:
        raise RuntimeError(f"{type(model).__name__}: no module holds the vision config; cannot set its attention")
    log.info(
        "packed vision attention: vision tower %s -> %s (was %s; backend order %s)",
        type(towers[0]).__name__,
        PACKED_VISION_ATTENTION,
        current,
        ", ".join(BACKENDS),
    )
    return PACKED_VISION_ATTENTION
