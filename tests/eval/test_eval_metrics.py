"""eval_metrics: the shared score_pairs numbers plus format compliance and NLG metrics."""

import math

import pytest

from mrgfast.eval.metrics import eval_metrics, format_eval_table
from mrgfast.scoring import score_pairs

GEN = [
    "<think>heart looks big</think><report>The heart is enlarged. No pleural effusion.</report>",
    "<think>clear</think><report>The lungs are clear. No pneumothorax.</report>",
    "Small left pleural effusion. Possible atelectasis.",  # no tags: scored whole, not compliant
    "<think>x</think><report>Cardiomegaly with mild edema.</report> trailing",  # text after: not compliant
]
REF = [
    "Cardiomegaly. No effusion.",
    "No acute cardiopulmonary process. The lungs are clear.",
    "Left pleural effusion with adjacent atelectasis.",
    "Heart size is normal. Mild pulmonary edema.",
]


def test_ce_and_mccs_are_score_pairs_on_the_generated_texts():
    ids = ["a", "b", "c", "d"]
    got = eval_metrics(GEN, REF, ids=ids, nlg=False)
    ref = score_pairs(GEN, REF, ids=ids, extract=True)
    assert got["ce"] == ref["ce"]
    assert got["mccs"] == ref["mccs"]
    assert got["per_sample"] == ref["per_sample"]
    assert got["n"] == 4
    # a clinically meaningful value, not a constant: the first pair agrees on cardiomegaly
    assert got["ce"]["all"]["per_observation"]["Cardiomegaly"]["tp"] >= 1
    # side-aware CE and MCCS+ beside them, from the same labelling
    assert got["ce_sides"] == ref["ce_sides"] and got["mccs_plus"] == ref["mccs_plus"]
    assert "side-aware CE" in format_eval_table(got)


def test_format_compliance_counts_exact_think_report_completions():
    got = eval_metrics(GEN, REF, nlg=False)
    assert got["format"] == {"rate": 0.5, "compliant": 2}
    assert got["nlg"] is None


def test_language_metrics_come_from_pycocoevalcap_on_extracted_reports():
    pytest.importorskip("pycocoevalcap")
    got = eval_metrics(GEN, REF, meteor=False)
    nlg = got["nlg"]
    for k in ("bleu1", "bleu2", "bleu3", "bleu4", "rouge_l", "cider"):
        assert isinstance(nlg[k], float) and math.isfinite(nlg[k])
    assert 0 < nlg["bleu1"] <= 1
    assert nlg["meteor"] is None and nlg["meteor_skipped"] == "disabled"
    # identical texts score the maximum BLEU-1
    same = eval_metrics(REF, REF, meteor=False)["nlg"]
    assert same["bleu1"] == pytest.approx(1.0, abs=1e-6)
    table = format_eval_table(got, title="T")
    assert "format compliance" in table and "BLEU-4" in table and "CIDEr" in table
    assert "(METEOR skipped: disabled)" in table


def test_length_mismatch_is_an_error():
    with pytest.raises(ValueError, match="3 generated texts but 4 references"):
        eval_metrics(GEN[:3], REF, nlg=False)
