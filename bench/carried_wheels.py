"""Install the wheels carried to a device machine (`.whl/`) into a private site folder.

The device's Python has torch/triton/transformers but not trl, liger-kernel or mrgfast: the GPU
scripts carry them as wheels and install them with no index and no dependencies.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def install_carried_wheels(wheels_dir: str, site: str) -> dict:
    """pip-install every wheel of `wheels_dir` into `site` and put `site` first on the import path
    (and on PYTHONPATH, for subprocesses). Returns notes for the results file."""
    notes: dict = {}
    whl = Path(wheels_dir)
    wheels = sorted(whl.glob("*.whl")) if whl.is_dir() else []
    if wheels:
        r = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "-q",
                "--no-index",
                "--no-deps",
                "--target",
                site,
                *map(str, wheels),
            ],
            capture_output=True,
            text=True,
        )
        notes["wheels"] = [w.name for w in wheels] if r.returncode == 0 else f"pip failed: {r.stderr[-400:]}"
    if Path(site).is_dir():
        sys.path.insert(0, site)
        old = os.environ.get("PYTHONPATH")
        os.environ["PYTHONPATH"] = site + (os.pathsep + old if old else "")
    return notes
