"""DeepSpeed ZeRO-2 / ZeRO-3 under ``accelerate launch`` on 2 CPU processes, fused loss on, against DDP.

Each engine runs the tiny preset's GRPO stage for one optimizer step with the same seed, data and
settings (tests/distributed/engine_worker.py). DDP (configs/accelerate/cpu_2proc_gloo.yaml) is the
reference: the step-1 loss of every rank and the step-1 LoRA gradients (full tensors, after
reduction) must equal DDP's within float tolerance, DeepSpeed's batch sizes must be the ones the
config implies, and the LoRA weights after the step must be identical on both ranks. DeepSpeed
runs on its CPU accelerator (``DS_ACCELERATOR=cpu``) over gloo; it JIT-builds its shared-memory
op with ninja on the first run (cached under ~/.cache/torch_extensions).

No stubs: the real trainer, the real engines; the reward adds a term of the completion's token
ids so the random tiny model gets non-zero advantages.
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

ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("engine_worker.py")
CONFIGS = ROOT / "configs" / "accelerate"
# The README's `accelerate launch` lines for these runs: config file + environment.
ENGINES = {
    "ddp": ("cpu_2proc_gloo.yaml", {"ACCELERATE_USE_CPU": "true"}),
    "zero2": ("cpu_2proc_zero2.yaml", {"DS_ACCELERATOR": "cpu"}),
    "zero3": ("cpu_2proc_zero3.yaml", {"DS_ACCELERATOR": "cpu"}),
}
WALL: dict[str, float] = {}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(config: str, extra_env: dict, out: Path, model: str, annotation: str, script: Path = WORKER):
    accelerate = shutil.which("accelerate", path=os.path.dirname(sys.executable)) or shutil.which("accelerate")
    if accelerate is None:
        pytest.skip("accelerate's launcher is not installed")
    out.mkdir(parents=True, exist_ok=True)
    env = dict(
        os.environ,
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        OMP_NUM_THREADS="1",
        TOKENIZERS_PARALLELISM="false",
        CUDA_VISIBLE_DEVICES="",
        # ninja (DeepSpeed's JIT build) is installed in this environment's bin folder
        PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""),
        **extra_env,
    )
    for key in ("ACCELERATE_USE_CPU", "DS_ACCELERATOR"):
        if key not in extra_env:
            env.pop(key, None)
    cmd = [accelerate, "launch", "--config_file", str(CONFIGS / config), "--main_process_port", str(_free_port())]
    t0 = time.time()
    proc = subprocess.run(
        [*cmd, str(script), str(out), model, annotation], env=env, capture_output=True, text=True, timeout=900
    )
    return proc, time.time() - t0


@pytest.fixture(scope="module")
def runs(launch_assets, tmp_path_factory):
    """Each engine's two rank records and tensors, run once per module."""
    from safetensors.torch import load_file

    model, annotation = launch_assets
    results = {}

    def get(name):
        if name not in results:
            config, env = ENGINES[name]
            out = tmp_path_factory.mktemp(name)
            proc, took = launch(config, env, out, model, annotation)
            WALL[name] = took
            assert proc.returncode == 0, f"{name} failed ({took:.0f}s):\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
            results[name] = [
                (json.loads((out / f"rank{r}.json").read_text()), load_file(out / f"rank{r}.safetensors"))
                for r in (0, 1)
            ]
            print(f"\n{name}: 2 processes, {took:.1f} s wall")
        return results[name]

    return get


def _split(tensors, kind):
    return {k.split("/", 1)[1]: v for k, v in tensors.items() if k.startswith(kind + "/")}


@pytest.mark.parametrize("engine, stage", [("zero2", 2), ("zero3", 3)])
def test_deepspeed_step_one_equals_ddp(runs, engine, stage):
    import torch

    ddp, ds = runs("ddp"), runs(engine)
    for rank in (0, 1):
        (rec_ref, ten_ref), (rec, ten) = ddp[rank], ds[rank]
        assert rec_ref["distributed_type"] == "MULTI_CPU" and rec_ref["world"] == 2
        assert rec["distributed_type"] == "DEEPSPEED" and rec["world"] == 2
        # batch settings: per_device 2 x accumulation 1 x 2 processes
        assert rec["deepspeed"] == {"zero_stage": stage, "train_batch_size": 4, "micro_batch": 2, "grad_accum": 1}
        assert rec["fused_calls"] >= 1 and len(rec["losses"]) == 1
        # each rank's 2 rows are one prompt's 2 completions: the policy pass shared it, under DDP and under ZeRO
        assert rec_ref.get("shared_prompt_layouts", 0) >= 1 and rec.get("shared_prompt_layouts", 0) >= 1
        assert rec["losses"] == pytest.approx(rec_ref["losses"], abs=1e-6)
        g_ref, g = _split(ten_ref, "grad"), _split(ten, "grad")
        assert set(g) == set(g_ref) and len(g) == rec["trainable"] > 0
        scale = max(float(v.abs().max()) for v in g_ref.values())
        assert scale > 0  # the step had a gradient to compare
        diff = max(float((g[k] - g_ref[k]).abs().max()) for k in g)
        assert diff <= 1e-5 * scale, f"{engine} rank {rank}: step-1 gradient differs from DDP by {diff:.3g}"
        # after the step: where the gradient is clearly non-zero, the update is DDP's
        w_ref, w = _split(ten_ref, "weight"), _split(ten, "weight")
        for k, gr in g_ref.items():
            sure = gr.abs() > 1e-4 * scale
            torch.testing.assert_close(w[k][sure], w_ref[k][sure], atol=1e-5, rtol=1e-5)
    # LoRA weights identical on both ranks
    assert ds[0][0]["hash"] == ds[1][0]["hash"]
    loss_diff = max(abs(a - b) for r in (0, 1) for a, b in zip(ds[r][0]["losses"], ddp[r][0]["losses"]))
    print(
        f"{engine} vs DDP: step-1 loss max |diff| {loss_diff:.3g}, LoRA grad max |diff| {diff:.3g} "
        f"(max |grad| {scale:.3g}); wall {WALL}"
    )


WRONG_TYPE_WORKER = r"""
import sys
from accelerate import Accelerator
from mrgfast.train.distributed import check_distributed_type
acc = Accelerator()
try:
    check_distributed_type(acc.distributed_type)
except Exception as e:
    print("REFUSED", type(e).__name__, e, flush=True)
    sys.exit(3)
print("ACCEPTED", acc.distributed_type, flush=True)
"""


@pytest.mark.parametrize(
    "config, env, runs_as",
    [
        ("fsdp.yaml", {"ACCELERATE_USE_CPU": "true"}, "MULTI_CPU"),
        ("fsdp.yaml", {}, "NO"),
    ],
)
def test_a_config_that_degrades_is_refused(launch_assets, tmp_path, config, env, runs_as):
    """An FSDP / DeepSpeed config that accelerate silently runs as MULTI_CPU or NO stops the run."""
    script = tmp_path / "check.py"
    script.write_text(WRONG_TYPE_WORKER)
    overrides = ["--num_processes", "2", "--mixed_precision", "no"]
    accelerate = shutil.which("accelerate", path=os.path.dirname(sys.executable)) or shutil.which("accelerate")
    full_env = dict(os.environ, CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS="1", **env)
    full_env.pop("DS_ACCELERATOR", None)
    if "ACCELERATE_USE_CPU" not in env:
        full_env.pop("ACCELERATE_USE_CPU", None)
    cmd = [
        accelerate,
        "launch",
        "--config_file",
        str(CONFIGS / config),
        *overrides,
        "--main_process_port",
        str(_free_port()),
        str(script),
    ]
    proc = subprocess.run(cmd, env=full_env, capture_output=True, text=True, timeout=300)
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0, text[-3000:]
    assert "REFUSED DistributedSetupError" in text, text[-3000:]
    assert runs_as in text


def test_readme_launches_these_engines():
    readme = (ROOT / "README.md").read_text()
    for name, (config, env) in ENGINES.items():
        line = (
            " ".join(f"{k}={v}" for k, v in env.items())
            + f" accelerate launch --config_file configs/accelerate/{config}"
        )
        assert line in readme, f"README lacks the {name} launch line: {line}"
