"""The one-call device scripts run end to end at tiny shapes on the CPU (``--dry``), so they cannot rot between
GPU sessions: the same code path as on the device, model build, every variant, tables and result file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _run(script: str, tmp_path: Path, *extra: str) -> dict:
    out = tmp_path / f"{script}.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    cmd = [
        sys.executable,
        str(BENCH / script),
        "--dry",
        "--wheels",
        str(tmp_path / "no-wheels"),  # nothing to install: the test runs the repository's own code
        "--site",
        str(tmp_path / "site"),
        "--out",
        str(out),
        *extra,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1500)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return json.loads(out.read_text())


def test_gpu_trainer_dry_runs_the_whole_ablation(tmp_path):
    from mrgfast.train.config import SPEED_LEVERS

    res = _run("gpu_trainer.py", tmp_path, "--work", str(tmp_path / "work"))
    assert res["dry"] is True and not res["skipped"]
    acc, abl = res["summary"]["acceptance"], res["summary"]["ablation"]
    assert set(acc) == {"trl+py-reward", "mrgfast", "mrgfast-no:auto_micro_batch"}  # memory at TRL's micro-batch
    assert "peak_memory_ratio_at_trl_micro_batch" not in res["checks"]  # no GPU memory on the CPU
    assert set(abl) == {"mrgfast", *(f"mrgfast-no:{lever}" for lever in SPEED_LEVERS)}
    assert set(res["lever_gains"]) == set(SPEED_LEVERS)
    for lever in SPEED_LEVERS:  # each variant really ran with its lever off and the others on
        levers = abl[f"mrgfast-no:{lever}"]["levers"]
        assert levers == {name: name != lever for name in SPEED_LEVERS}
    on = acc["mrgfast"]
    assert all(on["levers"].values())
    assert on["vision_share"] > 0 and on["vision_calls_per_step"] > 0
    check = on["same_batch_check"]  # fp32 on the CPU: mrgfast scores plain TRL's first batch as TRL does
    assert check["tokens"] > 0 and check["logps_max_abs_diff_vs_trl_ref"] < 1e-4
    assert abs(check["loss"] - check["trl_loss"]) < 1e-5
    assert res["checks"]["same_batch_loss_within_bf16"] is True
    assert res["raw"]["ablation"]["mrgfast"]["vision_attention_calls"].get("sdpa", 0) > 0  # the packed path ran
    assert not res["raw"]["ablation"]["mrgfast-no:vision_packed_attention"]["vision_attention_calls"]


def test_gpu_loss_dry(tmp_path):
    res = _run("gpu_loss.py", tmp_path)
    assert res["info"]["device"] == "cpu (dry)"
    assert res["check"]["pass"] is True  # the Triton path (interpreter) against full logits
    timed = {t["impl"] for t in res["timing"] if "median_ms" in t}
    assert {"full", "mrgfast"} <= timed
