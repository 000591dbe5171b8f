"""MCCS as docs/ARCHITECTURE.md defines it: range, symmetry, identity, polarity flips, edge cases."""

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import mrgfast

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
