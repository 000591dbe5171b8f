"""Public ``grpo_loss``: option checks, backend dispatch and the fused autograd function.

Design (why it is both fast and lean): tokens are processed in chunks of ``c`` rows. For each chunk the
``[c, V]`` logits tile is projected once, folded into per-token log-sum-exp / target logit / entropy, and —
because the gradient of TRL's loss w.r.t. a token's log-prob only depends on that token whenever importance
sampling is per token or there are no old log-probs — immediately turned *in place* into the gradient of the
loss w.r.t. the logits. The hidden/weight/bias gradients are then accumulated in the same pass (three GEMMs in
total, like full logits, instead of four for recompute-in-backward). Backward only scales the stored gradients
by the incoming scalar. The one non-local case (sequence-level importance sampling *with* old log-probs) needs
every token of a sequence before any gradient is known: with a frozen LM head (LoRA) it stores d logp / d h per
token and scales it afterwards (still one pass); with a trainable head it does a log-prob pass, then a gradient pass.

The per-token loss itself (clipping, KL, normalisers, metrics) is evaluated by ``_trl_policy_loss`` on the small
``[B, T]`` log-prob tensor with torch autograd, op for op as TRL writes it, so tie-breaking of ``min``/``clamp``
gradients is TRL's.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch

from .lm_head_matmul import grad_hidden_into, project_into

SUPPORTED_LOSS_TYPES = ("grpo", "bnpo", "dr_grpo", "dapo")
# TRL loss types that exist upstream but are not implemented here
UNSUPPORTED_LOSS_TYPES = ("cispo", "sapo", "vespo", "luspo")
# TRL options this kernel does not implement, with the value that means "off" (accepted silently)
UNSUPPORTED_TRL_OPTIONS: dict[str, Any] = {
    "top_entropy_quantile": 1.0,
    "off_policy_mask_threshold": None,
    "use_bias_correction_kl": False,
    "vllm_importance_sampling_correction": False,
    "importance_sampling_ratio": None,
    "tool_mask": None,
    "entropy_coef": 0.0,
    "final_logit_softcapping": None,
    "logit_scale": 1.0,
}
BACKENDS = ("auto", "triton", "chunked", "reference")


class GRPOLossOutput(NamedTuple):
    """``loss`` (0-dim, differentiable), detached ``per_token_logps`` [B, T] (0 where masked, as TRL),
    ``metrics`` (0-dim tensors named as TRL logs them) and detached ``entropy`` [B, T] when asked."""

    loss: torch.Tensor
    per_token_logps: torch.Tensor
    metrics: dict[str, torch.Tensor]
    entropy: torch.Tensor | None


class _Cfg(NamedTuple):
    beta: float
    epsilon_low: float
    epsilon_high: float
    delta: float | None
    temperature: float
    loss_type: str
    level: str
    num_items: torch.Tensor | float | None
    max_completion_length: int


# --------------------------------------------------------------------------------------------------------------
# TRL's loss on per-token log-probs (small [B, T] graph)
# --------------------------------------------------------------------------------------------------------------
def _trl_policy_loss(logp, mask, adv, old, ref, cfg: _Cfg):
    """TRL ``GRPOTrainer._compute_loss`` from ``per_token_logps`` on, for the supported options.

    Returns ``(loss, coef_1, per_token_kl)`` with ``coef_1`` after the ``delta`` clamp (TRL's metrics use that)."""
    old = logp.detach() if old is None else old
    log_ratio = logp - old
    if cfg.level == "token":
        log_iw = log_ratio
    else:
        log_iw = ((log_ratio * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)).unsqueeze(-1)
    coef_1 = torch.exp(log_iw)
    kl = None
    if cfg.beta != 0.0:
        kl = torch.exp(ref - logp) - (ref - logp) - 1
    coef_2 = torch.clamp(coef_1, 1 - cfg.epsilon_low, 1 + cfg.epsilon_high)
    if cfg.delta is not None:
        coef_1 = torch.clamp(coef_1, max=cfg.delta)
    per_token_loss = -torch.min(coef_1 * adv, coef_2 * adv)
    if kl is not None:
        per_token_loss = per_token_loss + cfg.beta * kl
    if cfg.loss_type == "grpo":
        loss = ((per_token_loss * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)).mean()
    elif cfg.loss_type == "bnpo":
        loss = (per_token_loss * mask).sum() / mask.sum().clamp(min=1.0)
    elif cfg.loss_type == "dr_grpo":
        loss = (per_token_loss * mask).sum() / (per_token_loss.size(0) * cfg.max_completion_length)
    else:  # dapo
        loss = (per_token_loss * mask).sum() / cfg.num_items
    return loss, coef_1, kl


def _nan_reduce(x, fn):
    keep = x[~torch.isnan(x)]
    return torch.full((), float("nan"), dtype=x.dtype, device=x.device) if keep.numel() == 0 else fn(keep)


def _trl_metrics(coef_1, kl, entropy, mask, adv, cfg: _Cfg) -> dict[str, torch.Tensor]:
    """The metrics TRL logs for these loss types (single process: reduce/gather are identities)."""

    def global_masked_mean(x):
        if x.shape[1] == 1:
            return x.sum() / max(float(x.shape[0]), 1.0)
        return (x * mask).sum() / mask.sum().clamp(min=1.0)

    def masked_seq_mean(x):
        if x.shape[1] == 1:
            return x.squeeze(1)
        return (x * mask).sum(-1) / mask.sum(-1)

    out = {}
    if kl is not None:
        out["kl"] = global_masked_mean(kl)
    if entropy is not None:
        out["entropy"] = global_masked_mean(entropy)
    low = ((coef_1 < 1 - cfg.epsilon_low) & (adv < 0)).to(mask.dtype)
    high = ((coef_1 > 1 + cfg.epsilon_high) & (adv > 0)).to(mask.dtype)
    region = ((low > 0) | (high > 0)).to(mask.dtype)
    out["clip_ratio/low_mean"] = global_masked_mean(low)
    out["clip_ratio/high_mean"] = global_masked_mean(high)
    out["clip_ratio/region_mean"] = global_masked_mean(region)
    out["clip_ratio/low_min"] = _nan_reduce(masked_seq_mean(low), torch.min)
    out["clip_ratio/high_max"] = _nan_reduce(masked_seq_mean(high), torch.max)
    return {k: v.detach() for k, v in out.items()}


# --------------------------------------------------------------------------------------------------------------
# chunked driver shared by the Triton and the torch-CPU backends
# --------------------------------------------------------------------------------------------------------------
# Bytes one [c, V] logits tile may take. CPU: the tile is all the extra memory the fused loss needs, and 112 MiB
# keeps it under a tenth of full logits' extra at 1,024 tokens of a 152k vocabulary (~193 rows); fewer, larger
# chunks are a little faster (each chunk streams the weight twice and read-modify-writes the fp32 grad-weight
# once: 6 chunks cost ~5 % more than 4 at that shape, 1 thread). CUDA: ~1 GiB (2,048 bf16 tokens at V=152k).
CPU_TILE_BUDGET = 112 << 20
CUDA_TILE_BUDGET = 1 << 30


def _default_chunk(device: torch.device, vocab: int, elem_size: int = 4, tokens: int | None = None) -> int:
    """Rows per tile: as many as the budget allows, then balanced over the chunks ``tokens`` needs (no small
    last chunk), in a multiple of 16 (GEMM-friendly) where that keeps the chunks even."""
    cuda = device.type == "cuda"
    budget = CUDA_TILE_BUDGET if cuda else CPU_TILE_BUDGET
    rows = max(16, budget // max(1, vocab * (elem_size if cuda else 4)))
    if tokens is None or tokens <= 0:
        return rows
    n_chunks = -(-tokens // rows)
    balanced = -(-tokens // n_chunks)
    even = -(-balanced // 16) * 16
    if even <= rows and tokens - (n_chunks - 1) * even >= even // 2:
        return even
    return balanced


def _addmm_into(acc: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> None:
    """``acc += a @ b`` with ``acc`` in fp32/fp64 without first rounding the product to a 16-bit dtype."""
    if a.dtype == acc.dtype:
        acc.addmm_(a, b)
    elif acc.device.type == "cuda":
        torch.addmm(acc, a, b, out_dtype=acc.dtype, out=acc)
    else:  # CPU 16-bit: the GEMM accumulates in fp32 internally, one rounding per chunk
        acc.add_(torch.mm(a, b))


def _fused_run(
    ops, hidden, weight, bias, ids, mask, adv, old, ref, cfg, *, need_h, need_w, need_b, chunk, want_entropy
):
    """Everything in one call: per-token log-probs, loss, metrics and (if asked) the gradients for ``loss``."""
    B, T = mask.shape
    N, H = hidden.shape
    V = weight.shape[0]
    acc = torch.float64 if hidden.dtype == torch.float64 else torch.float32
    dev = hidden.device
    maskf = mask.to(acc)
    valid = mask.reshape(-1) != 0
    M = int(valid.sum())
    all_valid = M == N
    idx = None if all_valid else valid.nonzero().squeeze(1)
    hv = hidden if all_valid else hidden.index_select(0, idx)
    tv = ids if all_valid else ids.index_select(0, idx)
    need_grad = need_h or need_w or need_b
    local = cfg.level == "token" or old is None
    c = max(1, min(chunk or _default_chunk(dev, V, hidden.element_size(), M), max(M, 1)))

    logp_v = torch.zeros(M, dtype=acc, device=dev)
    ent_v = torch.zeros(M, dtype=acc, device=dev) if want_entropy else None
    gh_v = torch.empty(M, H, dtype=hidden.dtype, device=dev) if need_h else None
    # same-dtype grad-weight: the first chunk's GEMM writes it (no zero fill of a weight-sized buffer)
    gw_fresh = need_w and M > 0 and hidden.dtype == acc
    gw = (torch.empty if gw_fresh else torch.zeros)(V, H, dtype=acc, device=dev) if need_w else None
    gb = torch.zeros(V, dtype=acc, device=dev) if need_b else None
    tile_buf = torch.empty(min(c, M), V, dtype=hidden.dtype, device=dev) if M else None

    def full(values):  # [M] -> [B, T] with zeros at masked positions
        if all_valid:
            return values.view(B, T)
        return torch.zeros(N, dtype=values.dtype, device=dev).index_copy_(0, idx, values).view(B, T)

    def dloss_dlogp():
        with torch.enable_grad():
            x = full(logp_v).detach().requires_grad_(True)
            loss, _, _ = _trl_policy_loss(x, maskf, adv, old, ref, cfg)
            (g,) = torch.autograd.grad(loss, x)
        g = g.reshape(-1)
        return g if all_valid else g.index_select(0, idx)

    def project(s, e):
        tile = tile_buf[: e - s]
        project_into(tile, hv[s:e], weight, bias)
        return tile

    def stats(s, e, tile):
        lp, ent, state = ops.stats(tile, tv[s:e], 1.0 / cfg.temperature, want_entropy, acc)
        logp_v[s:e] = lp
        if want_entropy:
            ent_v[s:e] = ent
        return state

    def grads(s, e, tile, state, g):
        gt = ops.grad_logits(tile, tv[s:e], state, g, 1.0 / cfg.temperature)
        if gt.dtype != weight.dtype:
            gt = gt.to(weight.dtype)
        if need_h:
            grad_hidden_into(gh_v[s:e], gt, weight)
        if need_w:
            if gw_fresh and s == 0:
                torch.mm(gt.t(), hv[s:e], out=gw)
            else:
                _addmm_into(gw, gt.t(), hv[s:e])
        if need_b:
            gb.add_(gt.sum(0, dtype=acc))

    chunks = [(s, min(s + c, M)) for s in range(0, M, c)]
    if need_grad and local:
        for s, e in chunks:
            tile = project(s, e)
            state = stats(s, e, tile)
            grads(s, e, tile, state, dloss_dlogp()[s:e])
    elif need_h and not (need_w or need_b):
        # Non-local g but only hidden needs a gradient (LoRA: frozen LM head): d logp_t / d h_t does not depend
        # on g, so store it per token in one pass and scale by g afterwards (no second projection).
        ones = torch.ones(c, dtype=acc, device=dev)
        for s, e in chunks:
            tile = project(s, e)
            state = stats(s, e, tile)
            grads(s, e, tile, state, ones[: e - s])
        gh_v.mul_(dloss_dlogp().unsqueeze(1).to(gh_v.dtype))
    else:
        for s, e in chunks:
            stats(s, e, project(s, e))
        if need_grad:
            g = dloss_dlogp()
            for s, e in chunks:
                tile = project(s, e)
                state = stats(s, e, tile)
                grads(s, e, tile, state, g[s:e])
    tile_buf = None  # free the tile before the epilogue; the closures above are done with it

    logp = full(logp_v)
    entropy = full(ent_v) if want_entropy else None
    with torch.no_grad():
        loss, coef_1, kl = _trl_policy_loss(logp, maskf, adv, old, ref, cfg)
        metrics = _trl_metrics(coef_1, kl, entropy, maskf, adv, cfg)
    grad_h = None
    if need_h:
        grad_h = gh_v if all_valid else torch.zeros(N, H, dtype=hidden.dtype, device=dev).index_copy_(0, idx, gh_v)
    return loss, logp, entropy, metrics, (grad_h, gw, gb)


# Backward hands the stored gradients to autograd in place (no second weight-sized buffer); that allows one
# backward per forward. Set False to keep them (costs a copy) when the graph is back-propagated twice, as
# torch.autograd.gradcheck does.
CONSUME_GRADS_IN_BACKWARD = True


class _FusedGRPOLoss(torch.autograd.Function):
    """Gradients are computed in forward (one pass over the logits); backward scales them by grad_output."""

    @staticmethod
    def forward(ctx, hidden, weight, bias, run):
        need_h, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        need_b = bias is not None and ctx.needs_input_grad[2]
        loss, logp, entropy, metrics, (gh, gw, gb) = run(need_h, need_w, need_b)
        ctx.grads = [gh, gw, gb]
        ctx.dtypes = (hidden.dtype, weight.dtype, None if bias is None else bias.dtype)
        run.results = (logp, entropy, metrics)
        return loss

    @staticmethod
    def backward(ctx, grad_loss):
        if ctx.grads is None:
            raise RuntimeError("mrgfast.kernels.grpo_loss: backward ran twice (retain_graph is not supported)")
        consume = CONSUME_GRADS_IN_BACKWARD
        grads = ctx.grads
        if consume:
            ctx.grads = None
        out = []
        for g, dt in zip(grads, ctx.dtypes):
            if g is None:
                out.append(None)
                continue
            # in place, and ctx lets go of it: autograd can adopt it as .grad without a weight-sized copy
            g = g.mul_(grad_loss.to(g.dtype)) if consume else g * grad_loss.to(g.dtype)
            out.append(g if g.dtype == dt else g.to(dt))
        del grads
        return out[0], out[1], out[2], None


class _Runner:
    """Closure passed through autograd.Function (non-tensor argument)."""

    def __init__(self, fn):
        self.fn = fn
        self.results = None

    def __call__(self, need_h, need_w, need_b):
        return self.fn(need_h, need_w, need_b)


def _check_options(loss_type, importance_sampling_level, beta, ref_logps, kwargs):
    for name, value in kwargs.items():
        if name not in UNSUPPORTED_TRL_OPTIONS:
            raise TypeError(f"grpo_loss() got an unexpected keyword argument {name!r}")
        off = UNSUPPORTED_TRL_OPTIONS[name]
        if not (value is off or value == off):
            raise NotImplementedError(
                f"mrgfast.kernels.grpo_loss does not support TRL option {name}={value!r} (only {off!r})"
            )
    if loss_type in UNSUPPORTED_LOSS_TYPES:
        raise NotImplementedError(
            f"mrgfast.kernels.grpo_loss does not support loss_type={loss_type!r}; supported: {SUPPORTED_LOSS_TYPES}"
        )
    if loss_type not in SUPPORTED_LOSS_TYPES:
        raise ValueError(f"Unknown loss_type {loss_type!r}; supported: {SUPPORTED_LOSS_TYPES}")
    if importance_sampling_level not in ("token", "sequence"):
        raise ValueError(
            f"Unknown importance_sampling_level {importance_sampling_level!r}; possible values: 'token', 'sequence'"
        )
    if beta != 0.0 and ref_logps is None:
        raise ValueError("beta != 0 needs ref_logps (the reference model's per-token log-probs)")


def _resolve_backend(backend: str, device: torch.device) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"Unknown backend {backend!r}; one of {BACKENDS}")
    if backend != "auto":
        return backend
    if device.type == "cuda":
        from . import grpo_loss_triton

        if grpo_loss_triton.available():
            return "triton"
    return "chunked"


def grpo_loss(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    completion_ids: torch.Tensor,
    completion_mask: torch.Tensor,
    advantages: torch.Tensor,
    *,
    bias: torch.Tensor | None = None,
    old_logps: torch.Tensor | None = None,
    ref_logps: torch.Tensor | None = None,
    beta: float = 0.0,
    epsilon_low: float = 0.2,
    epsilon_high: float | None = 0.2,
    delta: float | None = None,
    temperature: float = 1.0,
    loss_type: str = "dapo",
    importance_sampling_level: str = "token",
    num_items_in_batch: torch.Tensor | float | None = None,
    max_completion_length: int | None = None,
    compute_entropy: bool = False,
    backend: str = "auto",
    chunk_size: int | None = None,
    **trl_options: Any,
) -> GRPOLossOutput:
    """TRL ``GRPOTrainer`` loss through the LM head without keeping ``[N, V]`` logits.

    ``hidden`` [B, T, H] or [B*T, H] are the states that predict ``completion_ids`` [B, T] (already shifted);
    ``weight`` [V, H] (+ ``bias`` [V]) is the LM head; ``advantages`` [B] or [B, T]. The loss is TRL's before
    its division by gradient-accumulation steps. Defaults where TRL reads trainer state: ``num_items_in_batch``
    (dapo) = unmasked tokens, ``max_completion_length`` (dr_grpo) = T. ``epsilon_high=None`` means
    ``epsilon_low``. Masked positions are not read (log-prob 0, as TRL).
    """
    _check_options(loss_type, importance_sampling_level, beta, ref_logps, trl_options)
    if completion_ids.dim() != 2 or completion_mask.shape != completion_ids.shape:
        raise ValueError("completion_ids and completion_mask must both be [B, T]")
    B, T = completion_ids.shape
    if weight.dim() != 2:
        raise ValueError("weight must be [V, H]")
    V, H = weight.shape
    if hidden.shape[-1] != H or hidden.numel() != B * T * H:
        raise ValueError(f"hidden {tuple(hidden.shape)} does not match [B={B}, T={T}, H={H}]")
    if temperature <= 0:
        raise ValueError("temperature must be > 0")
    if not hidden.is_floating_point() or hidden.dtype not in (
        torch.float16,
        torch.bfloat16,
        torch.float32,
        torch.float64,
    ):
        raise TypeError(f"unsupported hidden dtype {hidden.dtype}")
    if weight.dtype != hidden.dtype:
        weight = weight.to(hidden.dtype)
    if bias is not None and bias.dtype != hidden.dtype:
        bias = bias.to(hidden.dtype)
    epsilon_high = epsilon_low if epsilon_high is None else epsilon_high

    dev = hidden.device
    acc = torch.float64 if hidden.dtype == torch.float64 else torch.float32
    mask_bool = completion_mask != 0
    ids = completion_ids.masked_fill(~mask_bool, 0).reshape(-1).to(torch.long)
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= V):
        raise ValueError(f"completion_ids at unmasked positions must lie in [0, {V})")
    adv = advantages.to(device=dev, dtype=acc)
    if adv.dim() == 1:
        adv = adv.unsqueeze(1)
    old = None if old_logps is None else old_logps.to(device=dev, dtype=acc).detach()
    ref = None if ref_logps is None else ref_logps.to(device=dev, dtype=acc).detach()
    if num_items_in_batch is None:
        num_items = mask_bool.sum().to(acc).clamp(min=1.0)
    elif isinstance(num_items_in_batch, torch.Tensor):
        num_items = num_items_in_batch.to(device=dev, dtype=acc).clamp(min=1.0)
    else:
        num_items = max(float(num_items_in_batch), 1.0)
    cfg = _Cfg(
        float(beta),
        float(epsilon_low),
        float(epsilon_high),
        delta,
        float(temperature),
        loss_type,
        importance_sampling_level,
        num_items,
        int(max_completion_length or T),
    )

    which = _resolve_backend(backend, dev)
    if which == "reference":
        from .grpo_loss_reference import grpo_loss_reference

        return GRPOLossOutput(
            *grpo_loss_reference(
                hidden.reshape(B, T, H), weight, bias, completion_ids, mask_bool, adv, old, ref, cfg, compute_entropy
            )
        )
    if which == "triton":
        from . import grpo_loss_triton as ops
    else:
        from . import grpo_loss_chunked as ops

    h2d = hidden.reshape(B * T, H)
    if not h2d.is_contiguous():
        h2d = h2d.contiguous()
    w = weight if weight.is_contiguous() else weight.contiguous()

    def fn(need_h, need_w, need_b):
        return _fused_run(
            ops,
            h2d,
            w,
            bias,
            ids,
            mask_bool,
            adv,
            old,
            ref,
            cfg,
            need_h=need_h,
            need_w=need_w,
            need_b=need_b,
            chunk=chunk_size,
            want_entropy=compute_entropy,
        )

    tracked = torch.is_grad_enabled() and (
        hidden.requires_grad or weight.requires_grad or (bias is not None and bias.requires_grad)
    )
    if not tracked:
        loss, logp, entropy, metrics, _ = fn(False, False, False)
        return GRPOLossOutput(loss, logp, metrics, entropy)
    runner = _Runner(fn)
    # The differentiable inputs are views of the caller's tensors, so autograd routes the grads back to them
    loss = _FusedGRPOLoss.apply(hidden.reshape(B * T, H), weight, bias, runner)
    logp, entropy, metrics = runner.results
    return GRPOLossOutput(loss, logp, metrics, entropy)
