"""The policy's LM head through ``mrgfast.kernels.lm_head_matmul.linear`` while TRL generates.

Why: every decoding step projects one row per sequence through the whole ``[V, H]`` head, and on the CPU
``F.linear`` (MKL) repacks that weight on every call: at 16 sequences, H 896 and V 151,936 a step's head
costs 98-105 ms there and 43-46 ms through oneDNN (``python bench/bench_lm_head.py``). Only the head module's own ``forward`` is swapped, for the time
of the ``with`` block; a call that needs a gradient, or any input ``linear`` does not route to oneDNN
(CUDA, 16-bit, a small head), runs the original ``forward`` unchanged. A head that is not a plain
``nn.Linear`` (a LoRA-wrapped head, a sharded one) is left alone.
"""

from __future__ import annotations

import contextlib

import torch


def _head(model):
    from mrgfast.train.fused_logps import base_model

    base = base_model(model)
    head = base.get_output_embeddings() if hasattr(base, "get_output_embeddings") else None
    return head if type(head) is torch.nn.Linear else None


@contextlib.contextmanager
def onednn_generation_head(model):
    """Inside the block, calls of ``model``'s LM head without a gradient go through ``linear``."""
    from mrgfast.kernels.lm_head_matmul import linear

    head = _head(model)
    if head is None or "forward" in vars(head):  # nothing to swap, or already swapped (re-entrant use)
        yield None
        return

    def forward(x):
        return linear(x, head.weight, head.bias)

    head.forward = forward
    try:
        yield head
    finally:
        del head.forward  # the class's forward again
