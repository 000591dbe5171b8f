"""The LM head's weight and bias as full tensors, for the fused loss's direct read after the forward.

The fused GRPO loss never calls the LM head module: it reads ``lm_head.weight`` after the model's
forward. Under the sharding engines that read does not see the full weight:

* DeepSpeed ZeRO-3 partitions every parameter to an empty tensor outside its module's forward;
  the weight is gathered here with ``deepspeed.zero.GatheredParameters`` for the duration of the
  loss (as TRL's ``maybe_gather_lm_head_ctx`` does for its fused paths). The fused loss computes
  its gradients inside the forward, so nothing reads the weight after the context ends; a
  trainable head (full fine-tuning) would need ZeRO-3's gradient hooks armed around that read,
  which they are not here, so it is refused with an error.
* FSDP2 (``fully_shard``) leaves the parameters of a module that reshards after forward as
  ``DTensor`` shards; ``full_tensor()`` all-gathers them (differentiably: the gradient goes back to
  the shard by reduce-scatter).

Everything else (one process, DDP, ZeRO-1/2, FSDP2 without resharding) reads the parameters as
they are.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from mrgfast.train.distributed import is_zero3_partitioned


class ShardedHeadError(RuntimeError):
    pass


def _full(param: torch.Tensor | None) -> torch.Tensor | None:
    if param is None:
        return None
    try:
        from torch.distributed.tensor import DTensor
    except ImportError:  # pragma: no cover - torch without DTensor
        return param
    return param.full_tensor() if isinstance(param, DTensor) else param


@contextmanager
def usable_lm_head(lm_head: torch.nn.Module) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
    """``(weight, bias)`` of ``lm_head`` as full tensors, valid inside the ``with`` block only."""
    weight, bias = lm_head.weight, getattr(lm_head, "bias", None)
    params = [p for p in (weight, bias) if p is not None]
    if any(is_zero3_partitioned(p) for p in params):
        if any(p.requires_grad for p in params):
            raise ShardedHeadError(
                "the fused GRPO loss under DeepSpeed ZeRO-3 needs a frozen LM head (LoRA); with a trainable "
                "head, train with --use_fused_loss false (TRL's loss) or under ZeRO-2 / FSDP2"
            )
        import deepspeed
        from deepspeed.runtime.zero.partition_parameters import ZeroParamStatus

        # already gathered parameters (tied embeddings keep the weight AVAILABLE) are left alone, and
        # a parameter shared twice is gathered once
        to_gather = {id(p): p for p in params if p.ds_status != ZeroParamStatus.AVAILABLE}
        if to_gather:
            with deepspeed.zero.GatheredParameters(list(to_gather.values()), modifier_rank=None):
                yield weight, bias
            return
        yield weight, bias
        return
    yield _full(weight), _full(bias)
