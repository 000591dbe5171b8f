"""One rank of the fused GRPO loss under torch FSDP2 (``fully_shard``) on a CPU gloo mesh (run by the tests).

``torchrun --nproc_per_node 2 fsdp2_worker.py OUT_DIR MODEL RESHARD`` shards the tiny Qwen2.5-VL
+ LoRA with ``fully_shard`` (each decoder layer and vision block, then the root, which owns the
tied embedding / LM head) with ``reshard_after_forward=RESHARD``, and runs the trainer's own loss
path (``MrgGRPOTrainer._policy_hidden_states`` and ``_fused_compute_loss``, bound to a stand-in
holding the trainer settings they read) on this rank's batch, then backward. An unsharded copy of
the same model computes both ranks' losses; its averaged LoRA gradients are what FSDP2's
reduce-scatter must give. Writes ``rank<R>.json`` (losses) and ``rank<R>.safetensors``
(``sharded/<name>`` and ``reference/<name>`` full gradients).

accelerate's FSDP does not run on the CPU (it turns into MULTI_CPU or NO), hence torch directly.
"""

import copy
import json
import os
import sys
from collections import defaultdict
from contextlib import nullcontext
from types import SimpleNamespace

import torch
import torch.distributed as dist
from safetensors.torch import save_file
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard
from torch.distributed.tensor import DTensor

from mrgfast.models.loading import lora_config
from mrgfast.train import shared_prefix
from mrgfast.train.trainers import MrgGRPOTrainer

out_dir, model_path, reshard = sys.argv[1], sys.argv[2], sys.argv[3] == "true"
dist.init_process_group("gloo")
rank, world = dist.get_rank(), dist.get_world_size()
mesh = init_device_mesh("cpu", (world,))


class LossPath:
    """The trainer's loss methods with the settings they read (a GRPOTrainer needs a dataset and rewards)."""

    _policy_hidden_states = MrgGRPOTrainer._policy_hidden_states
    _fused_compute_loss = MrgGRPOTrainer._fused_compute_loss
    _pack = MrgGRPOTrainer._pack
    _share = MrgGRPOTrainer._share
    _sharing = MrgGRPOTrainer._sharing
    pack_sequences = True  # mrgfast train's default: the planner decides per batch (mrgfast.train.packing)
    share_prompt_prefix = True  # so is this: the two rows of a rank's batch share their prompt (shared_prefix)

    def __init__(self, model):
        self.model = model
        self.accelerator = SimpleNamespace(unwrap_model=lambda m: m, autocast=nullcontext, num_processes=world)
        self.args = SimpleNamespace(steps_per_generation=1, delta=None)
        self.current_gradient_accumulation_steps = 1
        self.loss_type, self.beta, self.temperature = "dapo", 0.0, 1.0
        self.epsilon_low, self.epsilon_high = 0.2, 0.28
        self.importance_sampling_level, self.max_completion_length = "token", 6
        self._metrics = {"train": defaultdict(list), "eval": defaultdict(list)}


def batch(for_rank):
    g = torch.Generator().manual_seed(100 + for_rank)
    B, P, T, V = 2, 5, 6, 300
    completion_mask = torch.ones(B, T, dtype=torch.long)
    completion_mask[1, 4:] = 0
    return {
        "prompt_ids": torch.randint(10, V, (1, P), generator=g).expand(B, P).clone(),  # one prompt, G = 2
        "prompt_mask": torch.ones(B, P, dtype=torch.long),
        "completion_ids": torch.randint(10, V, (B, T), generator=g),
        "completion_mask": completion_mask,
        "advantages": torch.randn(B, generator=g),
        "old_per_token_logps": None,
        # TRL's dapo normaliser: the completion tokens of the whole (global) batch
        "num_items_in_batch": torch.tensor(float(completion_mask.sum() * world)),
    }


def lora_grads(model, full):
    out = {}
    for n, p in model.named_parameters():
        if p.requires_grad:
            g = p.grad
            out[n] = (g.full_tensor() if isinstance(g, DTensor) else g).detach().float().clone() if full else g
    return out


from peft import get_peft_model
from transformers import Qwen2_5_VLForConditionalGeneration

torch.manual_seed(0)
base = Qwen2_5_VLForConditionalGeneration.from_pretrained(model_path, dtype=torch.float32)
peft_cfg = lora_config(4, 8, 0.0, ["q_proj", "k_proj", "v_proj", "o_proj"], False, base)
model = get_peft_model(base, peft_cfg)
for p in model.parameters():  # LoRA B starts at 0 (no gradient into A); make both non-zero
    if p.requires_grad:
        with torch.no_grad():
            p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())) * 0.05)
model.train()
reference = copy.deepcopy(model)

inner = model.get_base_model()
for layer in inner.model.language_model.layers:
    fully_shard(layer, mesh=mesh, reshard_after_forward=reshard)
for block in inner.model.visual.blocks:
    fully_shard(block, mesh=mesh, reshard_after_forward=reshard)
fully_shard(model, mesh=mesh, reshard_after_forward=reshard)

layouts = []  # the shared-prompt layouts the loss path took (sharded model, then the reference)
_share = shared_prefix.share
shared_prefix.share = lambda *a, **k: layouts.append(_share(*a, **k)) or layouts[-1]

path = LossPath(model)
loss = path._fused_compute_loss(model, batch(rank))
head_is_dtensor = isinstance(inner.get_output_embeddings().weight, DTensor)
loss.backward()
sharded = lora_grads(model, full=True)

ref_path = LossPath(reference)
ref_losses = []
first_only = {}
for r in range(world):
    ref_loss = ref_path._fused_compute_loss(reference, batch(r))
    (ref_loss / world).backward()
    ref_losses.append(float(ref_loss.detach()))
    if r == 0:  # rank 0's batch alone: what an unreduced gradient would be
        first_only = {k: v.detach().float() * world for k, v in lora_grads(reference, full=False).items()}
ref_grads = lora_grads(reference, full=False)

tensors = {f"sharded/{k}": v.contiguous() for k, v in sharded.items()}
tensors.update({f"reference/{k}": v.detach().float().contiguous() for k, v in ref_grads.items()})
tensors.update({f"rank0_only/{k}": v.contiguous() for k, v in first_only.items()})
save_file(tensors, os.path.join(out_dir, f"rank{rank}.safetensors"))
with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as fh:
    json.dump(
        {
            "rank": rank,
            "world": world,
            "reshard_after_forward": reshard,
            "loss": float(loss.detach()),
            "reference_losses": ref_losses,
            "head_weight_is_dtensor_after_forward": head_is_dtensor,
            "shared_prompt_layouts": sum(x is not None for x in layouts),
        },
        fh,
    )
dist.destroy_process_group()
