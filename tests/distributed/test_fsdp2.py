"""The fused GRPO loss under torch FSDP2 (``fully_shard``) on 2 CPU processes over gloo.

accelerate's FSDP cannot run on the CPU (``ACCELERATE_USE_CPU=true`` turns it into MULTI_CPU, without
it NO: tests/distributed/test_engines.py checks the run refuses both), so torch's ``fully_shard``
shards the tiny model directly and the trainer's real loss path runs on it
(tests/distributed/fsdp2_worker.py), with ``reshard_after_forward`` True (the LM head, tied to the
embedding in the root unit, is a DTensor shard when the loss reads it) and False. Each rank's loss
and the reduce-scattered LoRA gradients must equal an unsharded copy's on both ranks' batches.

Stubs: the trainer object itself (its two loss methods run bound to a stand-in holding the GRPO
settings they read; a real GRPOTrainer would wrap the model in DDP under torchrun).
"""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

WORKER = Path(__file__).with_name("fsdp2_worker.py")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    pytest.importorskip("peft")
    from mrgfast.models.tiny import build_tiny

    root = tmp_path_factory.mktemp("fsdp2_model")
    return str(
        build_tiny(
            root / "model", hidden_size=32, num_layers=2, num_heads=4, vision_hidden=32, vision_depth=1, image_size=56
        )
    )


@pytest.mark.parametrize("reshard", [True, False])
def test_fused_loss_under_fully_shard(tiny_model, tmp_path, reshard):
    import torch
    from safetensors.torch import load_file

    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", CUDA_VISIBLE_DEVICES="")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(_free_port())]
    t0 = time.time()
    proc = subprocess.run(
        [*cmd, str(WORKER), str(tmp_path), tiny_model, "true" if reshard else "false"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    took = time.time() - t0
    assert proc.returncode == 0, f"FSDP2 run failed ({took:.0f}s):\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    worst = 0.0
    for rank in (0, 1):
        rec = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert rec["world"] == 2 and rec["reshard_after_forward"] is reshard
        # with resharding the loss reads the head as a DTensor shard: the helper must gather it
        assert rec["head_weight_is_dtensor_after_forward"] is reshard
        # share_prompt_prefix ran under FSDP2 (this rank's policy pass) and on the unsharded copy (both ranks')
        assert rec["shared_prompt_layouts"] == 3
        assert rec["loss"] == pytest.approx(rec["reference_losses"][rank], abs=1e-6)
        t = load_file(tmp_path / f"rank{rank}.safetensors")
        sharded = {k.split("/", 1)[1]: v for k, v in t.items() if k.startswith("sharded/")}
        reference = {k.split("/", 1)[1]: v for k, v in t.items() if k.startswith("reference/")}
        assert sharded and set(sharded) == set(reference)
        scale = max(float(v.abs().max()) for v in reference.values())
        assert scale > 0
        for k in reference:
            torch.testing.assert_close(sharded[k], reference[k], atol=1e-6 * max(1.0, scale), rtol=1e-5)
        worst = max(worst, max(float((sharded[k] - reference[k]).abs().max()) for k in reference))
        # the comparison has teeth: the ranks' batches differ, so an unreduced gradient would not match
        rank0_only = {k.split("/", 1)[1]: v for k, v in t.items() if k.startswith("rank0_only/")}
        assert max(float((rank0_only[k] - reference[k]).abs().max()) for k in reference) > 1e-3 * scale
    print(
        f"\nFSDP2 reshard_after_forward={reshard}: LoRA grad max |diff| {worst:.3g} (max |grad| {scale:.3g}), {took:.1f} s"
    )
