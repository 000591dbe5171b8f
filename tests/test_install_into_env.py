"""scripts/install_into_env.sh (mrgfast into an existing CUDA torch environment) keeps that torch: a dry run of its
commands in this environment, offline, and its refusals."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "install_into_env.sh"


def _run(*args, python=sys.executable, **env):
    return subprocess.run(
        ["bash", str(SCRIPT), *args],
        env={**os.environ, "PYTHON": str(python), "PIP_NO_INDEX": "1", **env},  # offline: the index is never asked
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_dry_run_from_source_installs_only_mrgfast_and_keeps_torch():
    from importlib.metadata import version

    proc = _run("--dry-run")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"torch=={version('torch')}" in proc.stdout  # the constraint it installs under
    would = [line for line in proc.stdout.splitlines() if line.startswith("would install:")]
    assert len(would) == 1 and would[0].startswith("would install: mrgfast "), proc.stdout
    assert "torch" not in would[0]
    assert "torch untouched" in proc.stdout


def test_refuses_an_environment_without_torch(tmp_path):
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "env")], check=True)
    proc = _run("--dry-run", python=tmp_path / "env" / "bin" / "python")
    assert proc.returncode == 2
    assert "has no torch" in proc.stderr


def test_refuses_a_missing_wheel(tmp_path):
    proc = _run("--dry-run", "--wheel", str(tmp_path / "mrgfast-0.1.0-cp311-abi3-linux_x86_64.whl"))
    assert proc.returncode == 2 and "no such file" in proc.stderr
