"""What the README's demo claims on any machine (issue 18): the full `mrgfast train --preset tiny`, assets built
from scratch, raises held-out mean MCCS over the SFT model by a margin and keeps the format rate at its floor.

The exact figures hold on one machine and lock only (tests/train/test_demo_determinism.py); across machines,
seeds and thread counts they move within the band the README states, so this test checks the direction with a
margin well inside that band, not the figures.
"""

from __future__ import annotations

import json

from mrgfast.train.config import build_config
from mrgfast.train.run import run

# GRPO minus SFT held-out mean MCCS. Measured 2026-12-04 (README, "Tiny demo"): seed 0 +0.128 here and +0.166 on
# another machine; over seeds 0-3 and --threads 1/2 the smallest gain was +0.037 (seed 2), so the margin sits below
# the whole band, not only seed 0's.
MIN_MCCS_GAIN = 0.03
MIN_FORMAT_RATE = 0.95  # held-out share of completions with the <think>/<report> format, after each stage


def test_full_demo_raises_held_out_mccs_and_keeps_the_format(tmp_path):
    cfg = build_config(
        "tiny",
        None,
        {
            "output_dir": str(tmp_path / "run"),
            "model_name_or_path": str(tmp_path / "model"),
            "annotation": str(tmp_path / "synth" / "annotation.json"),
            "plot": "false",
        },
    )
    assert run(cfg) == 0
    evals = json.loads((tmp_path / "run" / "state.json").read_text())["evals"]
    sft, grpo = evals["sft"], evals["grpo"]
    assert sft["n"] == grpo["n"] == 150
    assert grpo["mccs_mean"] >= sft["mccs_mean"] + MIN_MCCS_GAIN, (sft, grpo)
    assert sft["format_rate"] >= MIN_FORMAT_RATE and grpo["format_rate"] >= MIN_FORMAT_RATE, (sft, grpo)
