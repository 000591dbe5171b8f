"""The labeler protocol through a real `trl.GRPOTrainer`: the MCCS reward labelled by the CheXbert
backend (tiny random weights in CheXbert's checkpoint format), its logged rewards equal to
`mrgfast.mccs(..., labeler=backend)` on the completions TRL generated. The policy, tokenizer and
recorder are those of tests/reward/test_trl_integration.py (a tiny Qwen2, nothing downloaded)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("trl")
datasets = pytest.importorskip("datasets")

sys.path.insert(0, str(Path(__file__).parents[1] / "reward"))
import test_trl_integration as policy

import mrgfast
from mrgfast.labelers import CheXbert
from mrgfast.reward import MCCSReward, extract_report, format_reward


def test_grpo_trainer_with_chexbert_reward(tmp_path, tiny_chexbert):
    from trl import GRPOTrainer

    ckpt, bert_path = tiny_chexbert
    backend = CheXbert(ckpt, bert_path, device="cpu")
    calls = []
    label = backend.label
    backend.label = lambda reports, threads=None: calls.append(len(reports)) or label(reports)
    tokenizer = policy.build_tokenizer()
    model = policy.build_model(tokenizer)
    dataset = datasets.Dataset.from_dict({"prompt": policy.PROMPTS, "report": policy.REFERENCES})
    ref_of = dict(zip(policy.PROMPTS, policy.REFERENCES))
    clinical = MCCSReward(reference_column="report", labeler=backend, name="mccs_chexbert")
    args = policy.grpo_args(tmp_path)
    recorder = policy.Recorder()
    trainer = GRPOTrainer(
        model=model,
        processing_class=tokenizer,
        reward_funcs=[clinical, format_reward],
        args=args,
        train_dataset=dataset,
        callbacks=[recorder],
    )
    recorder.trainer = trainer
    trainer.train()
    assert trainer.state.global_step == 2 and len(recorder.steps) == 2
    assert len(calls) == 2, "the reward labels each GRPO batch in one CheXbert call"
    for step in recorder.steps:
        texts = [policy._text(c) for c in step["completion"]]
        refs = [ref_of[policy._text(p)] for p in step["prompt"]]
        want = mrgfast.mccs([extract_report(c) for c in texts], refs, labeler=backend)
        assert np.allclose(step["rewards"]["mccs_chexbert"], want)
