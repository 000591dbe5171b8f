"""The Python API over the Rust engine: shapes, records, bad input, threads."""

import numpy as np
import pytest

import mrgfast
from mrgfast.engine import to_float, to_records


def test_observations_and_blank():
    assert len(mrgfast.OBSERVATIONS) == 14
    assert mrgfast.OBSERVATIONS[0] == "No Finding"
    assert mrgfast.OBSERVATIONS[-1] == "Support Devices"
    assert mrgfast.BLANK not in (1, 0, -1)


def test_label_shape_dtype_and_empty():
    out = mrgfast.label(["", "   ", "\n"])
    assert out.shape == (3, 14) and out.dtype == np.int8
    assert (out == mrgfast.BLANK).all(), "an empty report is all blank"
    assert mrgfast.label([]).shape == (0, 14)


def test_label_accepts_any_sequence_of_str():
    a = mrgfast.label(("Cardiomegaly.", "No effusion."))
    b = mrgfast.label(["Cardiomegaly.", "No effusion."])
    c = mrgfast.label(iter(["Cardiomegaly.", "No effusion."]))
    assert (a == b).all() and (b == c).all()


@pytest.mark.parametrize("bad,index", [(["ok", None], 1), ([3, "ok"], 0), (["a", "b", b"bytes"], 2)])
def test_non_string_names_index(bad, index):
    with pytest.raises(TypeError, match=rf"reports\[{index}\]"):
        mrgfast.label(bad)


def test_single_string_is_rejected():
    with pytest.raises(TypeError, match="single str"):
        mrgfast.label("Cardiomegaly.")


def test_length_mismatch_and_bad_params():
    with pytest.raises(ValueError, match="differ in length"):
        mrgfast.mccs(["a"], ["a", "b"])
    with pytest.raises(ValueError, match="margin"):
        mrgfast.mccs(["a"], ["a"], margin=1.0)
    with pytest.raises(ValueError, match="uncertain"):
        mrgfast.mccs(["a"], ["a"], uncertain=float("nan"))
    with pytest.raises(TypeError, match=r"generated\[0\]"):
        mrgfast.mccs([None], ["a"])
    with pytest.raises(TypeError, match="reference must be str"):
        mrgfast.mccs_group(["a"], None)
    with pytest.raises(ValueError, match="threads"):
        mrgfast.label(["a", "b"], threads=0)


def test_threads_do_not_change_results():
    reports = ["Mild cardiomegaly. No pleural effusion.", "Lungs are clear.", "ET tube in place."] * 50
    one = mrgfast.label(reports, threads=1)
    two = mrgfast.label(reports, threads=2)
    every = mrgfast.label(reports)
    assert (one == two).all() and (one == every).all()


def test_records_round_trip():
    rows = np.full((2, 14), mrgfast.BLANK, dtype=np.int8)
    rows[0, 2] = 1
    rows[1, 10] = -1
    rec = to_records(rows)
    assert rec[0]["Cardiomegaly"] == 1.0 and rec[0]["Pleural Effusion"] is None
    assert rec[1]["Pleural Effusion"] == -1.0
    f = to_float(rows)
    assert np.isnan(f[0, 0]) and f[0, 2] == 1.0
    assert mrgfast.label(["x"], records=True)[0].keys() == set(mrgfast.OBSERVATIONS)


def test_label_arrays_are_validated():
    with pytest.raises(ValueError, match="shape"):
        mrgfast.mccs_from_labels(np.zeros((2, 13), np.int8), np.zeros((2, 13), np.int8))
    bad = np.zeros((1, 14), np.int64)
    bad[0, 5] = 7
    with pytest.raises(ValueError, match=r"\[0, 5\] \(Edema\)"):
        mrgfast.ce_metrics(bad, np.zeros((1, 14), np.int64))
    with pytest.raises(ValueError, match="unknown observations"):
        mrgfast.ce_metrics(np.zeros((1, 14), np.int8), np.zeros((1, 14), np.int8), subset=["Heart"])
