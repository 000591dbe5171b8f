"""One rank of the tiny GRPO stage under a distributed engine, recording step 1 (run by the tests).

``python engine_worker.py OUT_DIR MODEL ANNOTATION`` under ``accelerate launch``: runs
``mrgfast.train.run.run`` (tiny preset, GRPO stage, fused loss on, 1 optimizer step) and writes
``rank<R>.json`` (distributed type, world size, the step-1 loss of this rank, a hash of the trainable
weights after the step) and ``rank<R>.safetensors``: ``grad/<name>``, the step-1 gradients of the
trainable LoRA weights as full tensors as the optimizer sees them (after DDP's all-reduce, or
gathered from DeepSpeed's partitions with ``deepspeed.utils.safe_get_full_grad`` just before
``engine.step``), and ``weight/<name>``, the weights after the step (gathered under ZeRO-3).

The tiny model is random, so every completion scores 0 and GRPO advantages would be 0; the MCCS
reward gets a term of the completion's token ids, as in tests/test_multiprocess.py.
"""

import contextlib
import hashlib
import json
import os
import sys

import torch

import mrgfast.train.run as R
from mrgfast.train import shared_prefix
from mrgfast.train.config import build_config
from mrgfast.train.trainers import MrgGRPOTrainer

out_dir, model_path, annotation = sys.argv[1:4]
rank = int(os.environ.get("RANK", "0"))
record = {"rank": rank, "losses": []}
grads: dict[str, torch.Tensor] = {}


class IdsReward:
    def __init__(self, inner):
        self.inner = inner
        self.__name__ = "mccs_plus_ids"

    def __call__(self, prompts=None, completions=None, completion_ids=None, **columns):
        base = self.inner(prompts=prompts, completions=completions, completion_ids=completion_ids, **columns)
        return [b + (sum(ids) % 7) / 7.0 for b, ids in zip(base, completion_ids)]


orig_rewards = R.build_rewards
R.build_rewards = lambda cfg: [IdsReward(f) if i == 0 else f for i, f in enumerate(orig_rewards(cfg))]

orig_fused = MrgGRPOTrainer._fused_compute_loss


def fused_compute_loss(self, model, inputs):
    loss = orig_fused(self, model, inputs)
    if self.model.training:
        record["losses"].append(float(loss.detach()))
    record["fused_calls"] = record.get("fused_calls", 0) + 1
    return loss


MrgGRPOTrainer._fused_compute_loss = fused_compute_loss

orig_share = shared_prefix.share


def share(*args, **kwargs):
    """Counts the passes that ran with shared prompts (share_prompt_prefix, on by default)."""
    out = orig_share(*args, **kwargs)
    record["shared_prompt_layouts"] = record.get("shared_prompt_layouts", 0) + (out is not None)
    return out


shared_prefix.share = share


def trainable(model):
    return [(n, p) for n, p in sorted(model.named_parameters()) if p.requires_grad]


try:  # DeepSpeed: gradients live in the engine's partitions until engine.step
    import deepspeed
    from deepspeed.runtime.engine import DeepSpeedEngine

    orig_step = DeepSpeedEngine.step

    def step(self, *args, **kwargs):
        if not grads and self.is_gradient_accumulation_boundary():
            record["deepspeed"] = {
                "zero_stage": self.zero_optimization_stage(),
                "train_batch_size": self.train_batch_size(),
                "micro_batch": self.train_micro_batch_size_per_gpu(),
                "grad_accum": self.gradient_accumulation_steps(),
            }
            for n, p in trainable(self.module):
                g = deepspeed.utils.safe_get_full_grad(p)
                grads[n] = g.detach().float().clone()
        return orig_step(self, *args, **kwargs)

    DeepSpeedEngine.step = step
except ImportError:  # pragma: no cover - DDP runs need no DeepSpeed
    deepspeed = None

from transformers import TrainerCallback


class StepOneGrads(TrainerCallback):
    """DDP: the all-reduced gradients, just before the first optimizer step."""

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        if not grads and model is not None:
            for n, p in trainable(model):
                if p.grad is not None:
                    grads[n] = p.grad.detach().float().clone()


orig_callbacks = R._callbacks
R._callbacks = lambda cfg, stage: [*orig_callbacks(cfg, stage), StepOneGrads()]

orig_grpo = R.run_grpo


def run_grpo(cfg, model_path, studies, instruction, ckpt):
    import torch.distributed as dist
    from accelerate import PartialState
    from safetensors.torch import save_file

    res = orig_grpo(cfg, model_path, studies, instruction, ckpt)
    model = res[0]
    params = trainable(model)
    h = hashlib.sha256()
    weights = {}
    zero3 = deepspeed is not None and any(hasattr(p, "ds_id") for _, p in params)
    ctx = deepspeed.zero.GatheredParameters([p for _, p in params]) if zero3 else contextlib.nullcontext()
    with ctx:
        for n, p in params:
            weights[n] = p.detach().float().clone()
            h.update(n.encode() + weights[n].contiguous().numpy().tobytes())
    record.update(
        distributed_type=PartialState().distributed_type.name,
        world=dist.get_world_size() if dist.is_initialized() else 1,
        hash=h.hexdigest(),
        trainable=len(params),
        grad_names=sorted(grads),
    )
    tensors = {f"grad/{k}": v.contiguous() for k, v in grads.items()}
    tensors.update({f"weight/{k}": v.contiguous() for k, v in weights.items()})
    save_file(tensors, os.path.join(out_dir, f"rank{rank}.safetensors"))
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as fh:
        json.dump(record, fh)
    return res


R.run_grpo = run_grpo

overrides = {
    "output_dir": os.path.join(out_dir, "run"),
    "stages": "grpo",
    "model_name_or_path": model_path,
    "annotation": annotation,
    "synth_if_missing": "false",
    "tiny_if_missing": "false",
    "evaluate": "false",
    "plot": "false",
    "max_train_samples": "8",
    "lora_r": "4",
    "lora_alpha": "8",
    "use_fused_loss": "true",
    "grpo": {
        "max_steps": "1",
        "per_device_train_batch_size": "2",
        "num_generations": "2",
        "max_completion_length": "6",
        "learning_rate": "0.05",
        "beta": "0.0",
        "save_strategy": "no",
        "logging_steps": "1",
        "seed": "0",
    },
}
sys.exit(R.run(build_config("tiny", None, overrides)))
