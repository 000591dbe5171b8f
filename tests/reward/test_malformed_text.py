"""Completions that are not valid Unicode (a lone surrogate) score 0.0 and are counted as malformed in
every reward entry point; they used to raise UnicodeEncodeError (issue 10)."""

from __future__ import annotations

import pytest

from mrgfast.reward import FormatReward, MCCSReward, MRGReward, completion_text, mccs_of_reports
from mrgfast.reward import verl as verl_reward

GOOD = "<think>look</think><report>Small left pleural effusion.</report>"
BAD = "<think>look</think><report>Small left \ud800 effusion.</report>"
REF = "Small left pleural effusion."


@pytest.mark.parametrize(
    "completion",
    [BAD, {"role": "assistant", "content": BAD}, [{"role": "assistant", "content": [{"type": "text", "text": BAD}]}]],
)
def test_surrogate_completion_is_malformed(completion):
    assert completion_text(completion) is None


@pytest.mark.parametrize("cls", [MCCSReward, FormatReward, MRGReward])
def test_trl_rewards_score_zero_and_count(cls):
    reward = cls()
    logged = {}
    out = reward(
        prompts=["p", "p"], completions=[GOOD, BAD], report=[REF, REF], log_metric=lambda k, v: logged.update({k: v})
    )
    assert out[1] == 0.0 and out[0] > 0.0
    assert reward.malformed_total == 1
    assert logged[f"{reward.__name__}/malformed"] == 1.0


def test_mccs_of_reports_never_raises_on_bad_text():
    assert mccs_of_reports(["Small left pleural effusion.", "a\udcffb"], [REF, REF]).tolist()[1] == 0.0


def test_verl_scores_zero():
    assert verl_reward.compute_score("iu_xray", BAD, REF) == 0.0
    details = verl_reward.compute_score_batch(
        data_sources=["x", "x"], solution_strs=[GOOD, BAD], ground_truths=[REF, REF], extra_infos=[None, None]
    )
    assert [float(d["score"]) if isinstance(d, dict) else float(d) for d in details][1] == 0.0


def test_bad_reference_is_a_named_dataset_error():
    with pytest.raises(ValueError, match="column 'report' value 1 is not valid text"):
        MCCSReward()(completions=[GOOD, GOOD], report=[REF, "x\ud800"])


@pytest.mark.parametrize("cls", [MCCSReward, MRGReward])
def test_reward_thread_count_checked_at_construction(cls):
    with pytest.raises(ValueError, match="threads must be between 1 and 256"):
        cls(threads=0)
    with pytest.raises(ValueError, match="threads must be between 1 and 256"):
        cls(threads=10**12)
