"""Fused GRPO loss through the LM head (imported as ``mrgfast.kernels``, never as top-level ``kernels``).

``grpo_loss`` projects hidden states through the LM head chunk by chunk, so the ``[N, V]`` logits are never
kept; its value and gradients match TRL's ``GRPOTrainer`` loss. ``token_logps`` is its forward-only sibling
(per-token log-probs for the reference/old-policy passes). Backends: Triton on CUDA (also under
``TRITON_INTERPRET=1`` on CPU tensors), a chunked torch path on the CPU, and a full-logits reference for tests.
"""

from .grpo_loss import SUPPORTED_LOSS_TYPES, UNSUPPORTED_TRL_OPTIONS, GRPOLossOutput, grpo_loss
from .token_logps import token_logps

__all__ = ["SUPPORTED_LOSS_TYPES", "UNSUPPORTED_TRL_OPTIONS", "GRPOLossOutput", "grpo_loss", "token_logps"]
