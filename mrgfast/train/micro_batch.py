"""Micro-batch sizing from the memory the GPU has (``MrgConfig.auto_micro_batch``).

TRL runs the policy pass ``per_device_train_batch_size`` completions at a time and accumulates gradients over
``gradient_accumulation_steps`` micro-steps; on 2026-12-04 the 3B step used 15 of the H200's 141 GiB with 16
completions per micro-step, and was bound by kernel launches, not by the GPU. Fewer, larger micro-steps launch the
same kernels fewer times over more tokens each.

What changes, and what does not: the micro-batch grows by a factor ``k`` that divides both
``gradient_accumulation_steps`` and ``steps_per_generation``, which shrink by ``k``. The generation batch
(``per_device_train_batch_size × steps_per_generation``), the completions per optimizer step
(``per_device_train_batch_size × gradient_accumulation_steps``), the data order and the number of optimizer steps
stay as configured; the loss is the same for ``grpo``, ``dr_grpo`` and ``dapo`` (their normalisers do not depend on
how a step's completions are split; ``bnpo`` normalises per micro-batch, so it keeps the configured split). Only
the float summation order differs.

The estimate (:func:`activation_bytes_per_token`, per token of a micro-batch, ``b`` bytes per value, ``L``
decoder layers, hidden ``H``, MLP width ``I``): with gradient checkpointing ``b·(L·H + 6·H + 4·I)`` (every layer's
input is kept, one layer is recomputed at a time), without it ``b·L·(10·H + 5·I)`` (the inputs and outputs of the
norms, projections, attention and MLP activations each layer keeps for backward). Rows count at the longest
prompt of the first studies plus ``max_completion_length`` (packing only lowers that). The LM-head loss is the
fused kernel's (or TRL's chunked head): bounded tiles, inside the reserve. Available memory: free device memory
(the smallest over the processes) minus the weights (when not yet on the device), the trainable parameters'
fp32 value, gradient and AdamW moments (16 bytes each), the vision tower's transient per image, and a reserve of
2 GiB + 5 % of the device (CUDA context, cuBLAS workspaces, allocator fragmentation); 90 % of the rest is used.

On the CPU, and under sharding engines (DeepSpeed, FSDP), where a per-device estimate of this kind does not hold,
the configured values are kept (with a log line).
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass, field

import torch

log = logging.getLogger("mrgfast.train")

SPLIT_INVARIANT_LOSSES = ("grpo", "dr_grpo", "dapo")
RESERVE_BYTES = 2 * 2**30
RESERVE_SHARE = 0.05
USE_SHARE = 0.90
ADAM_BYTES_PER_TRAINABLE = 16  # fp32 value + gradient + two moments


@dataclass
class MicroBatchPlan:
    per_device_train_batch_size: int
    gradient_accumulation_steps: int
    steps_per_generation: int
    factor: int  # 1: the configured split
    why: str
    estimate: dict = field(default_factory=dict)


def _text_config(model):
    cfg = model.config
    return cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg


def activation_bytes_per_token(model, *, dtype_bytes: int, gradient_checkpointing: bool) -> int:
    cfg = _text_config(model)
    h = int(cfg.hidden_size)
    inter = int(getattr(cfg, "intermediate_size", 4 * h) or 4 * h)
    layers = int(cfg.num_hidden_layers)
    if gradient_checkpointing:
        return dtype_bytes * (layers * h + 6 * h + 4 * inter)
    return dtype_bytes * layers * (10 * h + 5 * inter)


def vision_bytes_per_image(model, image_tokens: int, *, dtype_bytes: int) -> int:
    """Transient memory of the (frozen) vision tower for one image: patches (4 per merged token) x width x 12."""
    vcfg = getattr(model.config, "vision_config", None)
    width = int(getattr(vcfg, "hidden_size", 0) or 0) if vcfg is not None else 0
    return dtype_bytes * 4 * image_tokens * width * 12


def lora_trainable_params(model, target: str | list | None, r: int) -> int:
    """Parameters LoRA adds for ``target`` (PEFT's regex or ``"all-linear"``): ``r·(in + out)`` per matched Linear."""
    total = 0
    pat = re.compile(target) if isinstance(target, str) and target != "all-linear" else None
    names = set(target) if isinstance(target, (list, set, tuple)) else None
    for name, m in model.named_modules():
        if not isinstance(m, torch.nn.Linear):
            continue
        if pat is not None:
            hit = bool(pat.fullmatch(name))
        elif names is not None:
            hit = name.rsplit(".", 1)[-1] in names
        else:  # all-linear: PEFT leaves the output head (and, in mrgfast's config, the vision tower) out
            hit = not re.search(r"(lm_head|visual|vision_tower|vision_model)", name)
        if hit:
            total += r * (m.in_features + m.out_features)
    return total


def plan(
    *,
    per_device: int,
    grad_accum: int,
    steps_per_generation: int,
    loss_type: str,
    available_bytes: int,
    bytes_per_row: int,
) -> MicroBatchPlan:
    """The largest factor ``k`` of the configured split whose micro-batch fits ``available_bytes``."""
    keep = MicroBatchPlan(per_device, grad_accum, steps_per_generation, 1, "")
    if loss_type not in SPLIT_INVARIANT_LOSSES:
        keep.why = f"loss_type {loss_type!r} normalises per micro-batch (the split changes the loss)"
        return keep
    fits = max(0, available_bytes) // max(1, bytes_per_row)
    if fits < per_device:
        keep.why = (
            f"the configured micro-batch ({per_device} rows) is estimated at {per_device * bytes_per_row / 2**30:.1f} "
            f"GiB, over the {max(0, available_bytes) / 2**30:.1f} GiB available; lower per_device_train_batch_size "
            "if the first step runs out of memory"
        )
        return keep
    best = 1
    for k in range(1, math.gcd(grad_accum, steps_per_generation) + 1):
        if grad_accum % k == 0 and steps_per_generation % k == 0 and per_device * k <= fits:
            best = k
    if best == 1:
        keep.why = "no larger split of the configured step fits"
        if math.gcd(grad_accum, steps_per_generation) == 1:
            keep.why = "gradient_accumulation_steps / steps_per_generation leave nothing to fold"
        return keep
    return MicroBatchPlan(
        per_device * best,
        grad_accum // best,
        steps_per_generation // best,
        best,
        f"{best}x the configured micro-batch fits the estimate",
    )


def device_memory() -> tuple[int, int] | None:
    """(free, total) bytes of this process's GPU, free the smallest over the processes of a distributed run; None
    without CUDA."""
    if not torch.cuda.is_available():
        return None
    from accelerate import PartialState

    device = PartialState().device
    if device.type != "cuda":
        return None
    free, total = torch.cuda.mem_get_info(device)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        t = torch.tensor([free], dtype=torch.int64, device=device)
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MIN)
        free = int(t.item())
    return int(free), int(total)


def prompt_tokens(processor, dataset, n: int = 8) -> tuple[int, int]:
    """(longest prompt in tokens, image tokens of that prompt) over the first ``n`` rows, tokenized as TRL does."""
    from trl.data_utils import prepare_multimodal_messages

    longest, image_tokens = 0, 0
    image_id = getattr(processor, "image_token_id", None)
    for row in dataset.select(range(min(n, len(dataset)))):
        messages = prepare_multimodal_messages(row["prompt"], row.get("images"))
        out = processor.apply_chat_template(
            [messages], add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
        )
        ids = out["input_ids"][0]
        if len(ids) > longest:
            longest = len(ids)
            image_tokens = int((ids == image_id).sum()) if image_id is not None else 0
    return longest, image_tokens


def auto_size(cfg, model, processor, dataset) -> MicroBatchPlan | None:
    """Apply :func:`plan` to ``cfg.grpo`` (in place) before the trainer is built; returns the plan, or None when
    the configured values are kept without an estimate (CPU, sharding engines, switch off)."""
    from mrgfast.train.distributed import configured_distributed_type

    g = cfg.grpo
    if not cfg.mrg.auto_micro_batch:
        return None
    memory = None if getattr(g, "use_cpu", False) else device_memory()
    if memory is None:
        log.info(
            "auto_micro_batch: no GPU; per_device_train_batch_size %d kept (CPU steps gain nothing from it)",
            g.per_device_train_batch_size,
        )
        return None
    engine = configured_distributed_type()
    if engine is not None:
        log.info("auto_micro_batch: %s shards the model; the configured micro-batch is kept", engine)
        return None
    free, total = memory
    dtype_bytes = 2 if (g.bf16 or g.fp16) else next(model.parameters()).element_size()
    seq_prompt, image_tokens = prompt_tokens(processor, dataset)
    seq = seq_prompt + int(g.max_completion_length)
    per_token = activation_bytes_per_token(
        model, dtype_bytes=dtype_bytes, gradient_checkpointing=g.gradient_checkpointing
    )
    images_per_row = max(1, int(cfg.mrg.max_images or 1)) if image_tokens else 0
    per_row = seq * per_token + images_per_row * vision_bytes_per_image(
        model, image_tokens // max(1, images_per_row), dtype_bytes=dtype_bytes
    )
    weights = sum(p.numel() * p.element_size() for p in model.parameters() if p.device.type != "cuda")
    from mrgfast.models.loading import lora_config

    m = cfg.mrg
    if m.grpo_use_lora:
        lc = lora_config(m.lora_r, m.lora_alpha, m.lora_dropout, m.lora_target_modules, m.lora_vision)
        trainable = lora_trainable_params(model, lc.target_modules, m.lora_r)
    else:
        trainable = sum(p.numel() for p in model.parameters())
    if getattr(g, "use_vllm", False) and getattr(g, "vllm_mode", "") == "colocate":
        free -= int(g.vllm_gpu_memory_utilization * total)  # the colocated engine takes its share later
    reserve = RESERVE_BYTES + int(RESERVE_SHARE * total)
    available = int(USE_SHARE * (free - weights - trainable * ADAM_BYTES_PER_TRAINABLE - reserve))
    p = plan(
        per_device=g.per_device_train_batch_size,
        grad_accum=g.gradient_accumulation_steps,
        steps_per_generation=g.steps_per_generation,
        loss_type=g.loss_type,
        available_bytes=available,
        bytes_per_row=per_row,
    )
    p.estimate = {
        "free_gib": free / 2**30,
        "weights_gib": weights / 2**30,
        "optimizer_gib": trainable * ADAM_BYTES_PER_TRAINABLE / 2**30,
        "reserve_gib": reserve / 2**30,
        "available_gib": available / 2**30,
        "row_tokens": seq,
        "row_gib": per_row / 2**30,
    }
    apply(g, p)
    log.info(
        "auto_micro_batch: per_device_train_batch_size %d -> %d, gradient_accumulation_steps %d -> %d, "
        "steps_per_generation %d -> %d (%s; %.1f GiB free, %.2f GiB per row of %d tokens, %.1f GiB available)",
        p.per_device_train_batch_size // p.factor,
        p.per_device_train_batch_size,
        p.gradient_accumulation_steps * p.factor,
        p.gradient_accumulation_steps,
        p.steps_per_generation * p.factor,
        p.steps_per_generation,
        p.why,
        free / 2**30,
        per_row / 2**30,
        seq,
        available / 2**30,
    )
    return p


def apply(g, p: MicroBatchPlan) -> None:
    """Set the plan on a built ``GRPOConfig`` (its derived ``generation_batch_size`` is unchanged by design)."""
    before = (
        g.per_device_train_batch_size * g.steps_per_generation,
        g.per_device_train_batch_size * g.gradient_accumulation_steps,
    )
    g.per_device_train_batch_size = p.per_device_train_batch_size
    g.gradient_accumulation_steps = p.gradient_accumulation_steps
    g.steps_per_generation = p.steps_per_generation
    after = (
        g.per_device_train_batch_size * g.steps_per_generation,
        g.per_device_train_batch_size * g.gradient_accumulation_steps,
    )
    if before != after:  # pragma: no cover - plan() keeps both products by construction
        raise RuntimeError(f"micro-batch plan changed the generation batch or the step: {before} -> {after}")
