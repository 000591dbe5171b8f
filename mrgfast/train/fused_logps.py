"""Reference and old-policy log-probs through ``mrgfast.kernels.token_logps`` (forward only).

TRL scores its no-grad passes (reference model, old policy) with its own chunked head
(``add_fused_lm_head``), which on the policy also computes the entropy nobody reads there. Here TRL's
``_get_per_token_logps_and_entropies`` keeps its loop (micro-batches, image rows, adapter switching) and is
handed :class:`TokenLogpsModel` instead of the model: the real forward runs (through every wrapper, with the
LM head on one position only), a hook keeps the backbone's last hidden states, and the kernel projects the
scored positions chunk by chunk. Anything this does not cover (entropy, MoE aux loss, grad, softcapped or
scaled logits, a sharded or dtype-cast head, a model without ``logits_to_keep``) goes to TRL unchanged.
"""

from __future__ import annotations

import inspect
from types import SimpleNamespace

import torch

# text-config fields that change the logits TRL scores; any of them set -> TRL's path
_LOGIT_TRANSFORMS = (
    "final_logit_softcapping",
    "logit_scale",
    "output_multiplier",
    "lm_head_multiplier",
    "logits_scaling",
)


def _kernel():
    """``mrgfast.kernels.token_logps`` as an attribute (not ``from ... import``, which would hand back the
    submodule of that name when the package is replaced by a stand-in without the function), or None."""
    try:
        import mrgfast.kernels as kernels
    except Exception:
        return None
    fn = getattr(kernels, "token_logps", None)
    return fn if callable(fn) else None


def available() -> bool:
    return _kernel() is not None


def base_model(model):
    """The transformers model inside DDP-style ``.module`` wrappers and a PEFT model (whose head it owns)."""
    m = model
    while hasattr(m, "module") and isinstance(m.module, torch.nn.Module):  # DDP and similar wrappers
        m = m.module
    return m.get_base_model() if hasattr(m, "get_base_model") else m


def _sharded(param) -> bool:
    """A ZeRO-3 partitioned or FSDP2 ``DTensor`` parameter: TRL's path gathers those (see ``lm_head.py``)."""
    from mrgfast.train.distributed import is_zero3_partitioned

    if param is None:
        return False
    try:
        from torch.distributed.tensor import DTensor
    except ImportError:  # pragma: no cover - torch without DTensor
        DTensor = ()
    return is_zero3_partitioned(param) or isinstance(param, DTensor) or param.numel() == 0


def supported(model, *, cast_lm_head_to_fp32: bool = False) -> bool:
    """Whether :class:`TokenLogpsModel` computes exactly what TRL's fused head would for ``model``."""
    base = base_model(model)
    head = base.get_output_embeddings() if hasattr(base, "get_output_embeddings") else None
    if head is None or getattr(head, "weight", None) is None or cast_lm_head_to_fp32:
        return False
    w = head.weight
    if _sharded(w) or _sharded(getattr(head, "bias", None)):
        return False
    cfg = base.config.get_text_config() if hasattr(base.config, "get_text_config") else base.config
    if any(getattr(cfg, k, None) is not None for k in _LOGIT_TRANSFORMS):
        return False
    if getattr(base, "base_model", None) is None or base.base_model is base:
        return False
    return "logits_to_keep" in inspect.signature(type(base).forward).parameters


class TokenLogpsModel:
    """Stands in for ``model`` inside TRL's ``_get_per_token_logps_and_entropies`` (no-grad passes only)."""

    def __init__(
        self, model, temperature: float, *, pack: bool = False, share_prompts: bool = False, prompt_width=None
    ):
        self.model = model
        self.base = base_model(model)
        self.temperature = float(temperature)
        self.pack = pack  # rows packed without padding (mrgfast.train.packing) where that pays
        # rows of one prompt as one sequence (mrgfast.train.shared_prefix): needs the prompt's width in the rows
        self.share_prompts = bool(share_prompts and prompt_width)
        self.prompt_width = prompt_width

    def __call__(self, *, labels, fused_lm_head=True, **kwargs):
        token_logps = _kernel()
        if token_logps is None:
            raise RuntimeError("mrgfast.kernels.token_logps is not available")
        if torch.is_grad_enabled():
            raise RuntimeError("TokenLogpsModel is for no-grad log-prob passes")
        captured = {}

        def keep_hidden(_module, _args, output):
            captured["hidden"] = output.last_hidden_state if hasattr(output, "last_hidden_state") else output[0]

        kwargs["use_cache"] = False
        packed = None
        if self.share_prompts:
            from mrgfast.train import shared_prefix

            packed = shared_prefix.share(self.base, kwargs, self.prompt_width, pack=self.pack)
        if self.pack and packed is None:
            from mrgfast.train import packing

            packed = packing.pack(self.base, kwargs)
        handle = self.base.base_model.register_forward_hook(keep_hidden)
        try:
            self.model(**(packed.kwargs if packed else kwargs), logits_to_keep=1)
        finally:
            handle.remove()
        # TRL's fused forward: position t predicts labels[t + 1]; -100 = not scored
        targets = labels[:, 1:]
        mask = targets != -100
        cols = mask.any(0).nonzero()
        out = torch.zeros(targets.shape, dtype=torch.float32, device=targets.device)
        if cols.numel():
            start = int(cols[0])  # TRL scores the last `logits_to_keep` positions: project from the first one on
            head = self.base.get_output_embeddings()
            weight = head.weight
            if packed is not None:  # the packed / shared states at the padded positions start .. T-2
                from mrgfast.train.packing import gather

                h = gather(captured["hidden"], packed.index[:, start:-1]).to(weight.device)
            else:
                h = captured["hidden"][:, :-1][:, start:].to(weight.device)
            if h.dtype != weight.dtype:
                h = h.to(weight.dtype)
            with torch.autocast(h.device.type, enabled=False):
                lp = token_logps(
                    h,
                    weight,
                    targets[:, start:].clamp(min=0),
                    mask[:, start:],
                    bias=head.bias,
                    temperature=self.temperature,
                )
            out[:, start:] = lp.to(out.dtype)
        return SimpleNamespace(log_probs=out, entropy=None, aux_loss=None)
