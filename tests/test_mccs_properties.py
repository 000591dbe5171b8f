"""MCCS as docs/ARCHITECTURE.md defines it: range, symmetry, identity, polarity flips, edge cases."""

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import mrgfast
import mrgfast.contracts

CODES = st.sampled_from([1, 0, -1, mrgfast.BLANK])
ROWS = arrays(np.int8, (14,), elements=CODES)


def python_mccs(g, r, margin, uncertain):
    """Straight from the formula, for cross-checking the engine."""

    def vec(row):
        return [{1: 1.0, 0: -1.0, -1: uncertain}.get(int(c), 0.0) for c in row[1:]]

    a, b = vec(g), vec(r)
    na, nb = math.sqrt(sum(x * x for x in a)), math.sqrt(sum(x * x for x in b))
    if na == 0 and nb == 0:
        ccs = 1.0
    elif na == 0 or nb == 0:
        ccs = 0.0
    else:
        ccs = sum(x * y for x, y in zip(a, b)) / (na * nb)
    return max((ccs - margin) / (1 - margin), 0.0)


def one(g, r, **kw):
    return float(mrgfast.mccs_from_labels(g[None, :], r[None, :], **kw)[0])


@settings(max_examples=300, deadline=None)
@given(ROWS, ROWS, st.floats(0, 0.95), st.floats(-1, 1))
def test_matches_formula_range_symmetry(g, r, margin, uncertain):
    s = one(g, r, margin=margin, uncertain=uncertain)
    assert 0.0 <= s <= 1.0
    assert abs(s - one(r, g, margin=margin, uncertain=uncertain)) < 1e-12
    assert abs(s - python_mccs(g, r, margin, uncertain)) < 1e-9


@settings(max_examples=200, deadline=None)
@given(ROWS, st.floats(0, 0.95))
def test_identical_is_one_and_flipped_is_zero(g, margin):
    assert one(g, g, margin=margin) == 1.0
    flipped = g.copy()
    flipped[(g == 1) | (g == -1)] = 0
    flipped[g == 0] = 1
    mentioned = (g[1:] != mrgfast.BLANK).any()
    # Every mentioned finding with the opposite sign: cosine -1, so MCCS 0.
    if mentioned:
        assert one(g, flipped, margin=margin) == 0.0


def test_edge_cases():
    blank = np.full(14, mrgfast.BLANK, np.int8)
    card = blank.copy()
    card[2] = 1
    assert one(blank, blank) == 1.0, "nothing mentioned on either side: agreement"
    assert one(blank, card) == 0.0 and one(card, blank) == 0.0
    no_finding_only = blank.copy()
    no_finding_only[0] = 1
    assert one(no_finding_only, blank) == 1.0, "No Finding is not part of the vector"
    # Uncertain value is configurable: with u = -1 an uncertain finding reads as a negative.
    unc = blank.copy()
    unc[2] = -1
    neg = blank.copy()
    neg[2] = 0
    assert one(unc, neg, uncertain=-1.0) == 1.0
    assert one(unc, neg, uncertain=1.0) == 0.0


def test_margin_rescales():
    blank = np.full(14, mrgfast.BLANK, np.int8)
    g, r = blank.copy(), blank.copy()
    g[2], g[10] = 1, 0
    r[2] = 1
    c = 1 / math.sqrt(2)
    assert abs(one(g, r, margin=0.0) - c) < 1e-12
    assert abs(one(g, r, margin=0.5) - (c - 0.5) / 0.5) < 1e-12
    assert one(g, r, margin=0.75) == 0.0


def test_text_level_pairs_and_groups_agree():
    refs = ["Moderate cardiomegaly. Small left pleural effusion.", "The lungs are clear. No pneumothorax."]
    gens = ["Cardiomegaly with a small left effusion.", "Large right pneumothorax."]
    pairs = mrgfast.mccs(gens, refs)
    for i in range(2):
        assert mrgfast.mccs_group([gens[i]], refs[i])[0] == pairs[i]
        lab = mrgfast.label([gens[i], refs[i]])
        assert mrgfast.mccs_from_labels(lab[:1], lab[1:])[0] == pairs[i]
    group = mrgfast.mccs_group(gens + refs, refs[0])
    assert group.shape == (4,) and group[2] == 1.0


# ---------------------------------------------------------------------------------------------- MCCS+
SIDES = st.sampled_from([0, 1, 2, 3])
SIDE_ROWS = arrays(np.int8, (14,), elements=SIDES)
SIDED = [mrgfast.OBSERVATIONS.index(o) for o in mrgfast.contracts.SIDED_OBSERVATIONS]
UNSIDED = [i for i in range(14) if i not in SIDED]


def plus(g, gs, r, rs, **kw):
    return float(
        mrgfast.mccs_from_labels(
            mrgfast.Labelled(g[None, :], gs[None, :], np.zeros((1, 14), np.int8)),
            mrgfast.Labelled(r[None, :], rs[None, :], np.zeros((1, 14), np.int8)),
            sides=True,
            **kw,
        )[0]
    )


def python_plus(g, gs, r, rs, margin, uncertain, beta):
    """MCCS+ straight from docs/ARCHITECTURE.md, for cross-checking the engine."""
    a, b = math.sqrt(1 - beta), math.sqrt(beta)

    def vec(row, sides):
        base = [{1: 1.0, 0: -1.0, -1: uncertain}.get(int(c), 0.0) for c in row[1:]]
        extra = []
        for k in SIDED:
            s = base[k - 1]
            lr = {1: (b, 0.0), 2: (0.0, b), 3: (b / math.sqrt(2), b / math.sqrt(2))}.get(int(sides[k]), (0.0, 0.0))
            if int(row[k]) in (1, -1) and lr != (0.0, 0.0):
                base[k - 1] = s * a
                extra += [s * lr[0], s * lr[1]]
            else:
                extra += [0.0, 0.0]
        return base + extra

    x, y = vec(g, gs), vec(r, rs)
    nx, ny = math.sqrt(sum(v * v for v in x)), math.sqrt(sum(v * v for v in y))
    if nx == 0 and ny == 0:
        c = 1.0
    elif nx == 0 or ny == 0:
        c = 0.0
    else:
        c = sum(p * q for p, q in zip(x, y)) / (nx * ny)
    return max((c - margin) / (1 - margin), 0.0)


@settings(max_examples=300, deadline=None)
@given(ROWS, ROWS, SIDE_ROWS, SIDE_ROWS, st.floats(0, 0.95), st.floats(-1, 1), st.floats(0.01, 0.99))
def test_plus_matches_formula_range_symmetry(g, r, gs, rs, margin, uncertain, beta):
    kw = dict(margin=margin, uncertain=uncertain, side_weight=beta)
    s = plus(g, gs, r, rs, **kw)
    assert 0.0 <= s <= 1.0
    assert abs(s - plus(r, rs, g, gs, **kw)) < 1e-12
    assert abs(s - python_plus(g, gs, r, rs, margin, uncertain, beta)) < 1e-9
    if (g[1:] != mrgfast.BLANK).any() and not (uncertain == 0 and np.isin(g[1:], [1, 0]).sum() == 0):
        assert abs(plus(g, gs, g, gs, **kw) - 1.0) < 1e-12, "a report agrees with itself, sides included"


@settings(max_examples=300, deadline=None)
@given(ROWS, ROWS, SIDE_ROWS, SIDE_ROWS, st.floats(0, 0.95), st.floats(-1, 1))
def test_plus_is_mccs_exactly_when_no_report_states_a_side(g, r, gs, rs, margin, uncertain):
    """No side stated (or sides only where nothing is present, or on observations without a side):
    MCCS+ is the paper's MCCS bit for bit."""
    kw = dict(margin=margin, uncertain=uncertain)
    want = one(g, r, **kw)
    zeros = np.zeros(14, np.int8)
    assert plus(g, zeros, r, zeros, **kw) == want
    # sides on absent findings and on Cardiomegaly / ECM / No Finding are never read
    gs, rs = gs.copy(), rs.copy()
    gs[np.isin(g, [1, -1]) & np.isin(np.arange(14), SIDED)] = 0
    rs[np.isin(r, [1, -1]) & np.isin(np.arange(14), SIDED)] = 0
    assert plus(g, gs, r, rs, **kw) == want


@settings(max_examples=300, deadline=None)
@given(
    ROWS, SIDE_ROWS, st.sampled_from(SIDED), st.sampled_from([1, 2]), st.sampled_from([1, -1]), st.floats(0.01, 0.99)
)
def test_wrong_side_scores_below_unstated_below_same_side(g, gs, k, side, code, beta):
    """One finding present in both reports, everything else identical. On that finding the same side
    agrees 1, bilateral against one side 1 - β + β/√2, one report without a side √(1 - β), the wrong side
    1 - β: at the cosine (margin 0) the order is strict; with a margin it holds, clipped at 0."""
    g = g.copy()
    g[k] = code
    r = g.copy()
    ref_sides = gs.copy()
    ref_sides[k] = side
    other = 3 - side
    kw = dict(margin=0.0, uncertain=1.0, side_weight=beta)

    def with_side(s):
        x = gs.copy()
        x[k] = s
        return plus(g, x, r, ref_sides, **kw)

    same, unstated, both, wrong = with_side(side), with_side(0), with_side(3), with_side(other)
    assert same == 1.0 or abs(same - 1.0) < 1e-12
    assert same > both > wrong
    assert same > unstated > wrong
    for m in (0.5, 0.8):  # with a margin the order holds, clipped at 0
        kw_m = dict(kw, margin=m)
        scores = [
            plus(g, np.where(np.arange(14) == k, s, gs).astype(np.int8), r, ref_sides, **kw_m) for s in (side, 0, other)
        ]
        assert scores[0] >= scores[1] >= scores[2]


def test_plus_on_texts():
    """The issue's examples, through the text API (labelled with details by the rule engine)."""
    ref = ["Small left pleural effusion."]
    gens = [
        "Small left pleural effusion.",
        "Pleural effusion.",
        "Large right pleural effusion.",
        "Bilateral effusions.",
    ]
    plain = mrgfast.mccs(gens, ref * 4)
    sided = mrgfast.mccs(gens, ref * 4, sides=True)
    assert plain.tolist() == [1.0, 1.0, 1.0, 1.0], "MCCS cannot see sides"
    assert sided[0] == 1.0 and sided[0] > sided[3] > sided[1] > sided[2]
    assert sided[2] == 0.0, "a single finding on the wrong side: cosine 1 - β = 0.5, at the margin"
    np.testing.assert_array_equal(mrgfast.mccs_group(gens, ref[0], sides=True), sided)
    # no side in any report: MCCS+ == MCCS
    gens, refs = ["Cardiomegaly. No effusion.", "Pneumonia."], ["Mild cardiomegaly.", "Possible pneumonia."]
    np.testing.assert_array_equal(mrgfast.mccs(gens, refs, sides=True), mrgfast.mccs(gens, refs))


def test_plus_errors():
    import pytest

    lab = mrgfast.label(["Left effusion."], details=True)
    with pytest.raises(TypeError, match="Labelled"):
        mrgfast.mccs_from_labels(lab.codes, lab.codes, sides=True)
    for w in (0.0, 1.0, float("nan"), -0.5):
        with pytest.raises(ValueError, match="side_weight"):
            mrgfast.mccs(["a"], ["b"], sides=True, side_weight=w)
    bad = lab._replace(sides=np.full((1, 14), 4, np.int8))
    with pytest.raises(ValueError, match=r"sides\[0, 0\] \(No Finding\) is 4"):
        mrgfast.mccs_from_labels(bad, lab, sides=True)
    with pytest.raises(ValueError, match="rule labeler"):
        mrgfast.mccs(["a"], ["b"], sides=True, labeler=FakeLabeler())


class FakeLabeler:
    name = "fake"

    def label(self, reports, *, threads=None):
        return np.full((len(reports), 14), mrgfast.BLANK, np.int8)
