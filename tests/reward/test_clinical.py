import logging

import numpy as np
import pytest
from fakelabel import fake_label_rows

import mrgfast
import mrgfast.reward
from mrgfast import engine
from mrgfast.reward import (
    MCCSReward,
    MRGReward,
    extract_report,
    format_reward,
    format_score,
    mccs_reward,
    mccs_scores,
    mrg_reward,
)

REFS = [
    "Mild cardiomegaly. No effusion. No pneumothorax.",
    "There is a right pleural effusion. No cardiomegaly.",
    "Possible edema. Endotracheal tube in place.",
]
GENS = [
    "<think>wide heart</think><report>Mild cardiomegaly. No effusion.</report>",
    "<think>fluid</think><report>No effusion. No cardiomegaly.</report>",
    "<think>..</think><report>Edema. Tube in place.</report>",
    "The lungs are clear.",
    "<think>t</think> no pneumothorax",
    "",
]


def expected_mccs(gens, refs, **kw):
    """Reference implementation: label each pair independently, MCCS from labels."""
    g = fake_label_rows([extract_report(x) for x in gens])
    r = fake_label_rows(refs)
    return engine.mccs_from_labels(g, r, **kw)


def grpo_batch(n_prompts=3, g=4):
    """TRL's layout: each prompt's G completions are consecutive and share its reference."""
    completions, refs = [], []
    for p in range(n_prompts):
        for k in range(g):
            completions.append(GENS[(p * g + k) % len(GENS)])
            refs.append(REFS[p % len(REFS)])
    return completions, refs


def test_group_labels_each_reference_once(fake_labeler):
    completions, refs = grpo_batch(3, 4)
    got = mccs_reward(prompts=["p"] * 12, completions=completions, report=refs)
    assert np.allclose(got, expected_mccs(completions, refs))
    # one labelling call: 3 distinct references + 12 completions
    assert len(fake_labeler) == 1
    assert len(fake_labeler[0]) == 3 + 12
    assert sorted(fake_labeler[0][:3]) == sorted(REFS)


def test_non_consecutive_and_unique_references(fake_labeler):
    completions = GENS * 2
    refs = [REFS[i % 3] for i in range(len(completions))]  # interleaved, not in runs
    got = MCCSReward().score(completions, refs)
    assert np.allclose(got, expected_mccs(completions, refs))
    assert len(fake_labeler[0]) == 3 + len(completions)


def test_margin_and_uncertain_are_passed(fake_labeler):
    completions, refs = grpo_batch(3, 2)
    for margin, unc in [(0.0, 1.0), (0.3, 0.5), (0.9, -1.0)]:
        r = MCCSReward(margin=margin, uncertain=unc)
        assert np.allclose(r.score(completions, refs), expected_mccs(completions, refs, margin=margin, uncertain=unc))


def test_scores_in_unit_interval_and_differ(fake_labeler):
    completions, refs = grpo_batch(3, 4)
    got = np.array(mccs_reward(prompts=None, completions=completions, report=refs))
    assert ((got >= 0) & (got <= 1)).all()
    assert len(set(got.round(6))) > 1  # the fake labeler separates good from bad reports


def test_chat_messages_equal_strings(fake_labeler):
    completions, refs = grpo_batch(2, 3)
    as_msgs = [[{"role": "assistant", "content": c}] for c in completions]
    as_parts = [[{"role": "assistant", "content": [{"type": "text", "text": c}]}] for c in completions]
    a = mrg_reward(prompts=None, completions=completions, report=refs)
    assert mrg_reward(prompts=None, completions=as_msgs, report=refs) == a
    assert mrg_reward(prompts=None, completions=as_parts, report=refs) == a


def test_malformed_scores_zero_and_is_logged(fake_labeler, caplog):
    completions, refs = grpo_batch(2, 3)
    completions[1] = None
    completions[4] = [{"role": "assistant", "content": [{"type": "text", "text": None}]}]
    logged = []
    reward = MCCSReward(name="clin")
    with caplog.at_level(logging.WARNING, logger="mrgfast.reward"):
        out = reward(
            prompts=["p"] * 6, completions=completions, report=refs, log_metric=lambda k, v: logged.append((k, v))
        )
    assert out[1] == 0.0 and out[4] == 0.0
    ok = [i for i in range(6) if i not in (1, 4)]
    assert np.allclose(np.array(out)[ok], expected_mccs([completions[i] for i in ok], [refs[i] for i in ok]))
    assert logged == [("clin/malformed", 2.0)]
    assert reward.malformed_total == 2
    assert "2 of 6 completions are malformed" in caplog.text
    # the malformed ones were never sent to the labeler
    assert None not in fake_labeler[0]


def test_all_malformed_does_not_call_labeler(fake_labeler):
    assert mccs_reward(prompts=None, completions=[None, 5], report=["a", "b"]) == [0.0, 0.0]
    assert fake_labeler == []


def test_empty_batch():
    assert mccs_reward(prompts=[], completions=[], report=[]) == []
    assert mrg_reward(prompts=[], completions=[], report=[]) == []


def test_mrg_reward_is_weighted_sum(fake_labeler):
    completions, refs = grpo_batch(3, 4)
    m = np.array(mccs_reward(prompts=None, completions=completions, report=refs))
    f = np.array(format_reward(prompts=None, completions=completions))
    got = np.array(mrg_reward(prompts=None, completions=completions, report=refs))
    assert np.allclose(got, 0.75 * m + 0.25 * f)
    custom = MRGReward(mccs_weight=2.0, format_weight=-1.0, name="custom")
    assert np.allclose(custom.score(completions, refs), 2.0 * m - 1.0 * f)
    logged = {}
    custom(prompts=None, completions=completions, report=refs, log_metric=lambda k, v: logged.__setitem__(k, v))
    assert logged == pytest.approx({"custom/mccs": m.mean(), "custom/format": f.mean(), "custom/malformed": 0.0})


def test_reference_column_configurable(fake_labeler):
    completions, refs = grpo_batch(1, 2)
    r = MCCSReward(reference_column="findings")
    assert np.allclose(r(prompts=None, completions=completions, findings=refs), expected_mccs(completions, refs))


def test_missing_reference_column_names_it():
    with pytest.raises(KeyError, match=r"reference column 'report' is missing.*\['solution'\]"):
        mccs_reward(prompts=["p"], completions=["x"], solution=["y"], trainer_state=None, log_metric=print)
    with pytest.raises(KeyError, match="'findings'"):
        MRGReward(reference_column="findings")(prompts=["p"], completions=["x"], report=["y"])


def test_length_mismatch_names_column():
    with pytest.raises(ValueError, match=r"column 'report' has 1 values but there are 2 completions"):
        mccs_reward(prompts=["a", "b"], completions=["x", "y"], report=["r"])
    with pytest.raises(TypeError, match=r"column 'report' value 1 is NoneType"):
        mccs_reward(prompts=None, completions=["x", "y"], report=["r", None])
    with pytest.raises(TypeError, match="column 'report' must hold one reference per completion"):
        mccs_reward(prompts=None, completions=["x"], report="r")


def test_bad_parameters():
    with pytest.raises(ValueError, match="margin"):
        MCCSReward(margin=1.0)
    with pytest.raises(ValueError, match="uncertain"):
        MCCSReward(uncertain=2.0)
    with pytest.raises(ValueError, match="reference_column"):
        MCCSReward(reference_column="")
    with pytest.raises(ValueError, match="mccs_weight"):
        MRGReward(mccs_weight=float("nan"))


def test_instances_carry_name_for_trl():
    from trl.trainer.utils import get_callable_name

    assert get_callable_name(MCCSReward()) == "mccs_reward"
    assert get_callable_name(MCCSReward(name="clinical")) == "clinical"
    assert get_callable_name(MRGReward()) == "mrg_reward"
    assert get_callable_name(mccs_reward) == "mccs_reward"
    assert get_callable_name(mrg_reward) == "mrg_reward"


# -- against the real Rust engine (whatever labeler is built in) ---------------------------------------------


def test_real_engine_matches_pairwise_mccs():
    completions, refs = grpo_batch(3, 4)
    for margin, unc in [(0.5, 1.0), (0.0, 0.0), (0.25, -0.5)]:
        got = MCCSReward(margin=margin, uncertain=unc).score(completions, refs)
        want = mrgfast.mccs([extract_report(c) for c in completions], refs, margin=margin, uncertain=unc)
        assert np.allclose(got, want)
        # and per group, as mccs_group would label it
        for p in range(3):
            sl = slice(p * 4, (p + 1) * 4)
            grp = mrgfast.mccs_group(
                [extract_report(c) for c in completions[sl]], refs[p * 4], margin=margin, uncertain=unc
            )
            assert np.allclose(got[sl], grp)


def test_real_engine_mrg_reward_matches_direct():
    completions, refs = grpo_batch(3, 4)
    direct = 0.75 * mrgfast.mccs([extract_report(c) for c in completions], refs) + 0.25 * np.array(
        [format_score(c) for c in completions]
    )
    assert np.allclose(mrg_reward(prompts=None, completions=completions, report=refs), direct)


def test_mccs_scores_threads_and_no_extract():
    completions, refs = grpo_batch(2, 2)
    a = mccs_scores(completions, refs, threads=1)
    b = mccs_scores(completions, refs, threads=2)
    assert np.array_equal(a, b)
    raw = mccs_scores(completions, refs, extract=False)
    assert np.allclose(raw, mrgfast.mccs(completions, refs))
    with pytest.raises(ValueError, match="2 completions but 1 references"):
        mccs_scores(["a", "b"], ["r"])


def test_reward_objects_pickle_and_deepcopy():
    import copy
    import pickle

    completions, refs = grpo_batch(2, 2)
    for obj in (MCCSReward(margin=0.3, name="m"), MRGReward(format_weight=0.5), mrgfast.reward.FormatReward()):
        for clone in (pickle.loads(pickle.dumps(obj)), copy.deepcopy(obj)):
            assert clone.__name__ == obj.__name__
            assert clone(prompts=None, completions=completions, report=refs) == obj(
                prompts=None, completions=completions, report=refs
            )
    # the plain functions pickle by reference
    assert pickle.loads(pickle.dumps(mccs_reward)) is mccs_reward


# ----------------------------------------------------------------------------------------- MCCS+ (sides)
SIDED_REFS = ["Small left pleural effusion.", "Right lower lobe pneumonia.", "Cardiomegaly."]
SIDED_COMPLETIONS = [
    "<think>fluid</think><report>Small right pleural effusion.</report>",  # wrong side
    "<think>x</think><report>Pneumonia in the right lower lobe.</report>",  # same side
    "<think>x</think><report>Cardiomegaly.</report>",  # nothing sided
    "<think>x</think><report>Pleural effusion.</report>",  # side not stated
]


def test_sides_switch_scores_mccs_plus():
    """MCCSReward / MRGReward / the _plus functions with sides=True equal mrgfast.mccs(..., sides=True) on the
    extracted reports; each distinct reference is still labelled once (with details)."""
    from mrgfast.reward import MRGReward, mccs_plus_reward, mrg_plus_reward

    refs = [SIDED_REFS[0], SIDED_REFS[1], SIDED_REFS[2], SIDED_REFS[0]]
    reports = [mrgfast.reward.extract_report(c) for c in SIDED_COMPLETIONS]
    want = mrgfast.mccs(reports, refs, sides=True, side_weight=0.3)
    got = MCCSReward(sides=True, side_weight=0.3)(completions=SIDED_COMPLETIONS, report=refs)
    np.testing.assert_array_equal(got, want)
    assert got[0] < got[3] < got[1] == 1.0 and got[2] == 1.0
    np.testing.assert_array_equal(
        mccs_plus_reward(completions=SIDED_COMPLETIONS, report=refs), mrgfast.mccs(reports, refs, sides=True)
    )
    np.testing.assert_allclose(
        mrg_plus_reward(completions=SIDED_COMPLETIONS, report=refs),
        0.75 * mrgfast.mccs(reports, refs, sides=True) + 0.25,
        rtol=0,
        atol=1e-12,
    )
    np.testing.assert_array_equal(
        MRGReward(sides=True).parts(SIDED_COMPLETIONS, refs)[0], mrgfast.mccs(reports, refs, sides=True)
    )
    # the default is the paper's MCCS, blind to sides
    assert MCCSReward()(completions=SIDED_COMPLETIONS, report=refs) == [1.0, 1.0, 1.0, 1.0]


def test_sides_switch_is_checked_at_construction():
    with pytest.raises(TypeError, match="sides must be True or False"):
        MCCSReward(sides="yes")
    with pytest.raises(ValueError, match="side_weight"):
        MCCSReward(sides=True, side_weight=0.0)

    class Other:
        name = "chexbert"

        def label(self, reports, *, threads=None):
            return np.zeros((len(reports), 14), np.int8)

    with pytest.raises(ValueError, match="needs the rule labeler's sides"):
        MCCSReward(sides=True, labeler=Other())
    assert "sides=True" in repr(MCCSReward(sides=True))
