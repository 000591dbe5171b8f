"""`mrgfast train` under `accelerate launch` with 2 CPU processes (gloo): the tiny preset's GRPO stage.

Both ranks run the real pipeline (``mrgfast.train.run.run`` with the ``tiny`` preset, GRPO stage
only, at the smallest sizes) on different prompts; each writes a hash of its trainable (LoRA)
parameters after training, and the test checks that the hashes are equal (DDP kept the replicas in
sync), that training moved the weights, and that the ranks did see different studies (so equality
is not an accident of identical inputs).

The tiny model is random, so its completions all score 0 under MCCS and format and every GRPO
advantage would be 0 (no gradient at all). The worker therefore adds a small term that depends on
each completion's token ids to the MCCS reward, giving non-zero advantages; it also records the
study ids each rank scored.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "accelerate" / "cpu_2proc_gloo.yaml"

WORKER = r'''
import hashlib, json, os, sys
out_dir, model, annotation = sys.argv[1:4]
import mrgfast.train.run as R
from mrgfast.train.config import build_config

rank = int(os.environ.get("RANK", "0"))
seen = []

class CountingReward:
    """MCCS + a term of the completion's token ids (non-zero advantages for a random model)."""
    def __init__(self, inner):
        self.inner = inner
        self.__name__ = "mccs_plus_ids"
    def __call__(self, prompts=None, completions=None, completion_ids=None, **columns):
        seen.extend(str(i) for i in columns["id"])
        base = self.inner(prompts=prompts, completions=completions, completion_ids=completion_ids, **columns)
        return [b + (sum(ids) % 7) / 7.0 for b, ids in zip(base, completion_ids)]

orig_rewards = R.build_rewards
R.build_rewards = lambda cfg: [CountingReward(f) if i == 0 else f for i, f in enumerate(orig_rewards(cfg))]

orig_grpo = R.run_grpo
def run_grpo(cfg, model_path, studies, instruction, ckpt):
    import torch
    res = orig_grpo(cfg, model_path, studies, instruction, ckpt)
    m = res[0]
    h = hashlib.sha256()
    n = 0
    b_norm = 0.0
    for name, p in sorted(m.named_parameters()):
        if p.requires_grad:
            h.update(name.encode())
            h.update(p.detach().to(torch.float32).cpu().contiguous().numpy().tobytes())
            n += p.numel()
            if "lora_B" in name:
                b_norm += float(p.detach().abs().sum())
    import torch.distributed as dist
    world = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
    backend = dist.get_backend() if world > 1 else None
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as fh:
        json.dump({"rank": rank, "world": world, "backend": backend, "hash": h.hexdigest(), "trainable": n,
                   "lora_B_abs_sum": b_norm, "seen": seen}, fh)
    return res
R.run_grpo = run_grpo

overrides = {
    "output_dir": os.path.join(out_dir, "run"), "stages": "grpo", "model_name_or_path": model,
    "annotation": annotation, "synth_if_missing": "false", "tiny_if_missing": "false", "evaluate": "false",
    "plot": "false", "max_train_samples": "8", "lora_r": "4", "lora_alpha": "8",
    "grpo": {"max_steps": "2", "per_device_train_batch_size": "2", "num_generations": "2",
             "max_completion_length": "6", "learning_rate": "0.05", "beta": "0.0", "save_strategy": "no",
             "logging_steps": "1", "seed": "0"},
}
cfg = build_config("tiny", None, overrides)
sys.exit(R.run(cfg))
'''


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_cpu_processes_end_with_identical_lora_weights(launch_assets, tmp_path):
    accelerate = shutil.which("accelerate", path=os.path.dirname(sys.executable)) or shutil.which("accelerate")
    if accelerate is None:
        pytest.skip("accelerate's launcher is not installed")
    model, annotation = launch_assets
    worker = tmp_path / "worker.py"
    worker.write_text(WORKER)
    env = dict(
        os.environ,
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        OMP_NUM_THREADS="1",
        TOKENIZERS_PARALLELISM="false",
        CUDA_VISIBLE_DEVICES="",
        ACCELERATE_USE_CPU="true",
    )
    cmd = [
        accelerate,
        "launch",
        "--config_file",
        str(CONFIG),
        "--main_process_port",
        str(_free_port()),
        str(worker),
        str(tmp_path),
        model,
        annotation,
    ]
    t0 = time.time()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    took = time.time() - t0
    assert proc.returncode == 0, (
        f"accelerate launch failed ({took:.0f}s):\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    )
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world"] for r in ranks] == [2, 2]
    assert ranks[0]["backend"] == "gloo"
    assert ranks[0]["trainable"] > 0
    # the replicas trained on different studies ...
    assert ranks[0]["seen"] and ranks[1]["seen"]
    assert set(ranks[0]["seen"]) != set(ranks[1]["seen"])
    # ... yet end with the very same adapter weights, which moved away from LoRA's zero-initialised B
    assert ranks[0]["hash"] == ranks[1]["hash"]
    assert ranks[0]["lora_B_abs_sum"] > 0
    # the run itself completed like a single-process one
    state = json.loads((tmp_path / "run" / "state.json").read_text())
    assert state["completed"] == ["grpo"]
    assert (tmp_path / "run" / "grpo" / "final" / "adapter_config.json").is_file()
    steps = [json.loads(ln) for ln in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [s["step"] for s in steps if "loss" in s] == [1, 2]


@pytest.mark.parametrize(
    "name, kind, extra",
    [
        ("cpu_2proc_gloo.yaml", "MULTI_GPU", {"num_processes": 2, "use_cpu": True}),
        ("multi_gpu_ddp.yaml", "MULTI_GPU", {}),
        ("zero2.yaml", "DEEPSPEED", {"zero_stage": 2}),
        ("zero3.yaml", "DEEPSPEED", {"zero_stage": 3}),
        ("fsdp.yaml", "FSDP", {"fsdp_version": 2}),
        ("multinode_zero3.yaml", "DEEPSPEED", {"zero_stage": 3, "num_machines": 2}),
    ],
)
def test_shipped_accelerate_configs_load(name, kind, extra):
    """Every config is accepted by accelerate's own loader (it rejects unknown keys) and says what it claims."""
    pytest.importorskip("accelerate")
    from accelerate.commands.config.config_args import load_config_from_file

    cfg = load_config_from_file(str(ROOT / "configs" / "accelerate" / name))
    assert str(cfg.distributed_type).endswith(kind)
    for key, value in extra.items():
        if key == "zero_stage":
            assert cfg.deepspeed_config["zero_stage"] == value
        elif key == "fsdp_version":
            assert cfg.fsdp_config["fsdp_version"] == value
        else:
            assert getattr(cfg, key) == value
    if cfg.fsdp_config:
        import transformers.models.qwen2_5_vl.modeling_qwen2_5_vl as qwen

        for cls in cfg.fsdp_config["fsdp_transformer_layer_cls_to_wrap"].split(","):
            assert hasattr(qwen, cls.strip()), f"{name}: no layer class {cls} in Qwen2.5-VL"
