"""Agreement measures on hand-computed examples."""

from __future__ import annotations

import math

import numpy as np
import pytest

import mrgfast
from mrgfast.labelers.agreement import agreement, cohen_kappa, confusion

B = mrgfast.BLANK


def test_cohen_kappa_textbook():
    # po = 0.7, pe = (25*30 + 25*20) / 50^2 = 0.5 -> kappa 0.4
    assert cohen_kappa(np.array([[20, 5], [10, 15]])) == pytest.approx(0.4)
    assert cohen_kappa(np.array([[10, 0], [0, 10]])) == 1.0
    assert cohen_kappa(np.array([[0, 10], [10, 0]])) == pytest.approx(-1.0)
    assert cohen_kappa(np.array([[7, 0], [0, 0]])) == 1.0  # one class used by both: full agreement
    assert math.isnan(cohen_kappa(np.zeros((2, 2))))


def test_confusion_and_present_absent():
    a = np.full((4, 14), B, dtype=np.int8)
    b = a.copy()
    col = mrgfast.OBSERVATIONS.index("Edema")
    a[:, col] = [1, -1, 0, B]
    b[:, col] = [1, 1, B, 0]
    assert confusion(a[:, col], b[:, col]).tolist() == [[1, 0, 0, 0], [0, 0, 0, 1], [1, 0, 0, 0], [0, 1, 0, 0]]
    r = agreement(a, b, names=("x", "y"))["per_observation"]["Edema"]
    assert r["agreement_4way"] == 0.25  # only the first report has the same code
    assert r["agreement_present"] == 1.0  # present, present, absent, absent on both sides
    assert r["kappa_present"] == 1.0
    assert r["present"] == {"x": 2, "y": 2}


def test_shapes_checked():
    with pytest.raises(ValueError, match="rows"):
        agreement(np.zeros((2, 14), np.int8), np.zeros((3, 14), np.int8))
