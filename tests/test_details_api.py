"""`mrgfast.label(..., details=True)` and the side-aware API: the contracts of docs/ARCHITECTURE.md ("Details per
finding", "MCCS+", side-aware CE), precise errors, threads and the GIL like `label`."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

import mrgfast
from mrgfast import contracts

REPORTS = [
    "Small left pleural effusion.",
    "Opacity at the right base. Mild cardiomegaly.",
    "Bilateral effusions, left greater than right.",
    "No acute cardiopulmonary process.",
    "",
]


def test_contract_codes_come_from_the_engine():
    assert contracts.SIDE_NAMES == ("none", "left", "right", "bilateral")
    assert contracts.DEGREE_NAMES == ("none", "mild", "moderate", "severe")
    assert contracts.SIDE_LEFT | contracts.SIDE_RIGHT == contracts.SIDE_BILATERAL
    assert tuple(mrgfast._core.SIDED_OBSERVATIONS) == contracts.SIDED_OBSERVATIONS
    assert "Cardiomegaly" not in contracts.SIDED_OBSERVATIONS and "Pleural Effusion" in contracts.SIDED_OBSERVATIONS
    assert mrgfast.DEFAULT_SIDE_WEIGHT == 0.5


def test_labelled_arrays_and_records():
    out = mrgfast.label(REPORTS, details=True)
    assert isinstance(out, mrgfast.Labelled)
    codes, sides, degrees = out  # unpacks as a tuple
    for a in out:
        assert a.dtype == np.int8 and a.shape == (len(REPORTS), 14)
    np.testing.assert_array_equal(codes, mrgfast.label(REPORTS))
    eff, card, opa = (mrgfast.OBSERVATIONS.index(o) for o in ("Pleural Effusion", "Cardiomegaly", "Lung Opacity"))
    assert (sides[0, eff], degrees[0, eff]) == (contracts.SIDE_LEFT, contracts.DEGREE_MILD)
    assert (sides[1, opa], sides[1, card], degrees[1, card]) == (contracts.SIDE_RIGHT, 0, contracts.DEGREE_MILD)
    assert sides[2, eff] == contracts.SIDE_BILATERAL
    assert not sides[3:].any() and not degrees[3:].any()
    records = mrgfast.label(REPORTS, details=True, records=True)
    assert records[0]["details"] == {"Pleural Effusion": {"side": "left", "degree": "mild"}}
    assert records[1]["details"]["Cardiomegaly"] == {"side": None, "degree": "mild"}
    assert records[3]["details"] == {} and records[4]["details"] == {}
    assert {k: v for k, v in records[0].items() if k != "details"} == mrgfast.label(REPORTS[:1], records=True)[0]
    assert mrgfast.label([], details=True).codes.shape == (0, 14)


def test_precise_errors():
    with pytest.raises(TypeError, match=r"reports\[1\] must be str, got int"):
        mrgfast.label(["ok", 3], details=True)
    with pytest.raises(ValueError, match=r"reports\[1\] is not valid text"):
        mrgfast.label(["ok", "a\ud800b"], details=True)
    with pytest.raises(TypeError, match="single str"):
        mrgfast.label("Left effusion.", details=True)
    with pytest.raises(ValueError, match="threads"):
        mrgfast.label(REPORTS, details=True, threads=0)

    class Other:
        name = "other"

        def label(self, reports, *, threads=None):
            return np.zeros((len(reports), 14), np.int8)

    with pytest.raises(ValueError, match="details=True needs the rule labeler"):
        mrgfast.label(REPORTS, details=True, labeler=Other())
    lab = mrgfast.label(REPORTS, details=True)
    with pytest.raises(ValueError, match=r"sides=True \(side-aware CE\) needs the rule labeler"):
        mrgfast.ce_metrics(REPORTS, REPORTS, sides=True, labeler=Other())
    with pytest.raises(ValueError, match=r"predicted.sides must have shape \(5, 14\)"):
        mrgfast.ce_metrics(lab._replace(sides=lab.sides[:2]), lab, sides=True)
    with pytest.raises(TypeError, match="sides must be True or False"):
        mrgfast.mccs(REPORTS, REPORTS, sides=1)


def test_threads_do_not_change_details():
    texts = REPORTS * 500
    want = mrgfast.label(texts, details=True, threads=1)
    for t in (2, None):
        got = mrgfast.label(texts, details=True, threads=t)
        for a, b in zip(got, want):
            np.testing.assert_array_equal(a, b)


def test_details_release_the_gil():
    """A Python thread keeps running while details are computed on a long batch."""
    texts = ["Small left pleural effusion with adjacent atelectasis at the left base."] * 200_000
    ticks = []
    stop = threading.Event()

    def tick():
        while not stop.is_set():
            ticks.append(time.perf_counter())
            time.sleep(0.001)

    t = threading.Thread(target=tick)
    t.start()
    try:
        start = time.perf_counter()
        mrgfast.label(texts, details=True, threads=1)
        end = time.perf_counter()
    finally:
        stop.set()
        t.join()
    during = [x for x in ticks if start < x < end]
    assert end - start > 0.05, "the batch is too short to tell"
    assert len(during) >= 5, f"the other thread ran {len(during)} times in {end - start:.2f} s"


def test_side_aware_ce_counts():
    pred = ["Small right pleural effusion.", "Left effusion.", "Effusion.", "Cardiomegaly."]
    ref = ["Small left pleural effusion.", "Left effusion.", "Right effusion.", "Cardiomegaly."]
    plain = mrgfast.ce_metrics(pred, ref)["per_observation"]["Pleural Effusion"]
    sided = mrgfast.ce_metrics(pred, ref, sides=True)
    eff = sided["per_observation"]["Pleural Effusion"]
    assert (plain["tp"], plain["fp"], plain["fn"]) == (3, 0, 0)
    assert (eff["tp"], eff["fp"], eff["fn"]) == (2, 1, 1)  # wrong side: a false alarm and a miss
    assert sided["per_observation"]["Cardiomegaly"] == mrgfast.ce_metrics(pred, ref)["per_observation"]["Cardiomegaly"]
    assert sided["sides"] is True
    lp, lr = mrgfast.label(pred, details=True), mrgfast.label(ref, details=True)
    assert mrgfast.ce_metrics(lp, lr, sides=True) == sided
    assert mrgfast.ce_metrics(lp, lr) == mrgfast.ce_metrics(pred, ref)  # a Labelled without sides=True: plain CE
