"""The demo's held-out numbers are a function of the seed (issue 10): a shortened `--preset tiny` run, assets
built from scratch each time, gives the same evaluation twice on one machine."""

from __future__ import annotations

import json

from mrgfast.train.config import build_config
from mrgfast.train.run import run


def _short_demo(root):
    return {
        "output_dir": str(root / "run"),
        "model_name_or_path": str(root / "model"),
        "annotation": str(root / "synth" / "annotation.json"),
        "synth_train": "16",
        "synth_val": "2",
        "synth_test": "6",
        "synth_image_size": "56",
        "synth_views": "1",
        "tiny_hidden_size": "64",
        "tiny_layers": "1",
        "eval_batch_size": "6",
        "eval_max_new_tokens": "12",
        "plot": "false",
        "sft": {"num_train_epochs": "1", "max_steps": "2", "per_device_train_batch_size": "8", "save_steps": "2"},
        "grpo": {
            "max_steps": "2",
            "per_device_train_batch_size": "8",
            "num_generations": "4",
            "max_completion_length": "12",
            "save_steps": "2",
        },
    }


def test_short_demo_twice_gives_identical_held_out_numbers(tmp_path):
    results = []
    for name in ("first", "second"):
        cfg = build_config("tiny", None, _short_demo(tmp_path / name))
        assert run(cfg) == 0
        out = tmp_path / name / "run"
        evals = json.loads((out / "state.json").read_text())["evals"]
        for e in evals.values():
            e.pop("seconds")  # wall time, the one field that may differ
        preds = (out / "eval" / "predictions_grpo.jsonl").read_text()
        results.append((evals, preds))
    (evals_a, preds_a), (evals_b, preds_b) = results
    assert set(evals_a) == {"sft", "grpo"}
    assert evals_a == evals_b
    assert preds_a == preds_b  # the generated reports themselves, not only their scores
