"""Language metrics through pycocoevalcap: identity, ordering, edge cases."""

import shutil

import pytest

from mrgfast.nlg import nlg_metrics, normalize

REFS = [
    "The heart is normal in size. The lungs are clear. No pleural effusion or pneumothorax.",
    "Moderate cardiomegaly. Small bilateral pleural effusions with bibasilar atelectasis.",
    "Right PICC line terminates in the lower SVC. No focal consolidation.",
]


def test_normalize_splits_punctuation():
    assert normalize("No effusion.  XXXX is Normal,") == "no effusion . xxxx is normal ,"


def test_identical_predictions_score_high_and_beat_wrong_ones():
    same = nlg_metrics(REFS, REFS, meteor=False)
    assert same["bleu1"] > 0.99 and same["bleu4"] > 0.99 and same["rouge_l"] > 0.99
    wrong = nlg_metrics(list(reversed(REFS)), REFS, meteor=False)
    for key in ("bleu1", "bleu4", "rouge_l", "cider"):
        assert wrong[key] < same[key], key
    assert same["meteor"] is None and same["meteor_skipped"] == "disabled"


def test_empty_prediction_and_length_mismatch():
    out = nlg_metrics(["", REFS[1]], REFS[:2], meteor=False)
    assert 0 <= out["bleu1"] <= 1
    with pytest.raises(ValueError, match="differ in length"):
        nlg_metrics(["a"], REFS, meteor=False)
    assert nlg_metrics([], [], meteor=False) == {"n": 0}


@pytest.mark.skipif(shutil.which("java") is None, reason="METEOR needs java")
def test_meteor_runs_with_java():
    out = nlg_metrics(REFS, REFS)
    assert out["meteor"] > 0.9
    assert nlg_metrics(list(reversed(REFS)), REFS)["meteor"] < out["meteor"]
