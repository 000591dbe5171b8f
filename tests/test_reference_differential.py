"""Differential tests: the Rust labeler (mrgfast.label) == the pure-Python reference
(mrgfast.reference.label) on random and mutated report text, codes and details (sides and degrees),
and MCCS / MCCS+ Rust == reference.

Strategies are built from the shared rule phrases (mentions, triggers, terminators, headers),
filler words, punctuation, XXXX tokens and mutations of real-looking sentences, so they reach
every branch of both implementations (scopes, windows, descriptors, sections, splitting).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mrgfast
import mrgfast.reference as ref
from mrgfast.reference.labeler import OBSERVATIONS, rules

PHRASES = sorted({" ".join(e.tokens) for e in rules().entries.values()})
FILLER = [
    "the",
    "a",
    "left",
    "right",
    "small",
    "large",
    "is",
    "are",
    "seen",
    "XXXX",
    "xxxx",
    "and",
    "with",
    "in",
    "of",
    "1.5",
    "Dr.",
    "e.g.",
    "vs.",
    "mild",
    "there",
    "has",
    "been",
    "lobe",
    "base",
    "3:15",
    "p.m.",
    "bilateral",
    "bibasilar",
    "basilar",
    "at",
    "on",
    "over",
    "greater",
    "than",
    "moderate",
    "severe",
    "trace",
    "atrium",
    "associated",
]
SEPS = [
    " ",
    " ",
    " ",
    ", ",
    ". ",
    "; ",
    "\n",
    "\n\n",
    ": ",
    "-",
    "/",
    " ? ",
    "\n- ",
    "\n1. ",
    " \u2022 ",
    "\u00e9",
    " (",
    ") ",
    "\r\n",
    "\t",
    "...",
    "\x00",
    "!",
]
SENTENCES = [
    "The heart is normal in size.",
    "The mediastinum is unremarkable.",
    "The lungs are clear.",
    "No pneumothorax or pleural effusion.",
    "Heart size is mildly enlarged.",
    "Possible left lower lobe pneumonia.",
    "Bibasilar opacities likely reflect atelectasis, though pneumonia cannot be excluded.",
    "No change in the small left pleural effusion.",
    "Endotracheal tube terminates 4 cm above the carina.",
    "FINDINGS: No focal consolidation.\nIMPRESSION: Stable cardiomediastinal silhouette.",
    "INDICATION: Evaluate for pneumonia.\n\nFINDINGS: Lungs clear.",
    "No XXXX of pleural effusion.",
    "Blunting of the right costophrenic angle may represent a small effusion or pleural thickening.",
    "No new focal consolidation, effusion, or pneumothorax.",
    "Osseous structures are intact.",
    "There is no pleural effusion and the heart is enlarged.",
    "Right lower zone nodule versus nipple shadow.",
    "Small left basilar opacity, likely atelectasis.",
    "Opacity at the right base with adjacent atelectasis.",
    "Bilateral effusions, left greater than right.",
    "Moderate to large right pleural effusion.",
    "Left-sided pacemaker with leads in the right atrium and right ventricle.",
    "Pneumothorax at the left apex and right chest tube.",
    "Minimal atelectasis or scarring in the left lower lobe.",
    "Mild, patchy bibasilar airspace disease.",
    "The heart is mildly enlarged, left greater than right.",
    "Blunting of both costophrenic angles. Basilar atelectasis.",
    "Healed fracture of the right 6th rib. Left IJ line.",
    "Mild left basal opacity, atelectasis or infiltrate.",
    "Left basilar atelectasis versus infiltrate. Retrocardiac density compatible with hiatal hernia.",
    "Cardiomegaly and retrocardiac density due to the known hiatal hernia.",
]


def _case(word: str) -> st.SearchStrategy:
    return st.sampled_from([word, word.upper(), word.capitalize()])


token = st.one_of(st.sampled_from(PHRASES).flatmap(_case), st.sampled_from(FILLER))
report_from_phrases = st.lists(st.tuples(token, st.sampled_from(SEPS)), max_size=40).map(
    lambda xs: "".join(w + s for w, s in xs)
)


@st.composite
def mutated_report(draw) -> str:
    sents = draw(st.lists(st.sampled_from(SENTENCES), min_size=1, max_size=6))
    text = " ".join(sents)
    for _ in range(draw(st.integers(0, 6))):
        op = draw(st.sampled_from(["insert", "delete", "swap", "replace", "upper"]))
        i = draw(st.integers(0, len(text)))
        if op == "insert":
            text = text[:i] + draw(st.one_of(st.sampled_from(SEPS), token)) + text[i:]
        elif op == "delete":
            j = draw(st.integers(i, min(len(text), i + 12)))
            text = text[:i] + text[j:]
        elif op == "swap" and " " in text:
            words = text.split(" ")
            a, b = draw(st.integers(0, len(words) - 1)), draw(st.integers(0, len(words) - 1))
            words[a], words[b] = words[b], words[a]
            text = " ".join(words)
        elif op == "replace":
            words = text.split(" ")
            words[draw(st.integers(0, len(words) - 1))] = draw(token)
            text = " ".join(words)
        else:
            text = text.upper()
    return text


any_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=200)
reports = st.one_of(report_from_phrases, mutated_report(), any_text)

SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _diff(texts):
    a = mrgfast.label(texts)
    b = ref.label(texts)
    assert a.shape == b.shape == (len(texts), len(OBSERVATIONS))
    for i in np.where((a != b).any(axis=1))[0]:
        pytest.fail(f"Rust != reference on {texts[i]!r}:\n rust {a[i].tolist()}\n  ref {b[i].tolist()}")
    # with details: the same codes, and the same sides and degrees
    d = mrgfast.label(texts, details=True)
    np.testing.assert_array_equal(d.codes, a)
    for name, x, y in zip(("sides", "degrees"), d[1:], ref.label_details(texts)[1:]):
        for i in np.where((x != y).any(axis=1))[0]:
            pytest.fail(f"Rust != reference {name} on {texts[i]!r}:\n rust {x[i].tolist()}\n  ref {y[i].tolist()}")


def test_observations_agree():
    assert tuple(mrgfast.OBSERVATIONS) == OBSERVATIONS
    assert mrgfast.BLANK == ref.BLANK


@SETTINGS
@given(st.lists(reports, min_size=1, max_size=20))
def test_labels_rust_equals_reference(texts):
    _diff(texts)


@SETTINGS
@given(st.lists(st.tuples(reports, reports), min_size=1, max_size=10), st.floats(0.0, 0.95), st.floats(-1.0, 1.0))
def test_mccs_rust_equals_reference(pairs, margin, uncertain):
    g = [p[0] for p in pairs]
    r = [p[1] for p in pairs]
    a = mrgfast.mccs(g, r, margin=margin, uncertain=uncertain)
    b = ref.mccs(g, r, margin=margin, uncertain=uncertain)
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)
    a = mrgfast.mccs_group(g, r[0], margin=margin, uncertain=uncertain)
    b = ref.mccs_group(g, r[0], margin=margin, uncertain=uncertain)
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)


@SETTINGS
@given(
    st.lists(st.tuples(reports, reports), min_size=1, max_size=10),
    st.floats(0.0, 0.95),
    st.floats(-1.0, 1.0),
    st.floats(0.01, 0.99),
)
def test_mccs_plus_rust_equals_reference(pairs, margin, uncertain, side_weight):
    g = [p[0] for p in pairs]
    r = [p[1] for p in pairs]
    kw = dict(margin=margin, uncertain=uncertain, sides=True, side_weight=side_weight)
    a = mrgfast.mccs(g, r, **kw)
    np.testing.assert_allclose(a, ref.mccs(g, r, **kw), rtol=0, atol=1e-12)
    np.testing.assert_allclose(mrgfast.mccs_group(g, r[0], **kw), ref.mccs_group(g, r[0], **kw), rtol=0, atol=1e-12)
    # from labels with details: the same as from texts
    lg, lr = mrgfast.label(g, details=True), mrgfast.label(r, details=True)
    np.testing.assert_array_equal(mrgfast.mccs_from_labels(lg, lr, **kw), a)


def test_bulk_random_phrase_reports():
    """20k reports from a seeded generator in one batch (threads on): no drift."""
    import random

    rng = random.Random(1234)
    texts = []
    for _ in range(20_000):
        parts = []
        for _ in range(rng.randint(0, 30)):
            w = rng.choice(PHRASES) if rng.random() < 0.6 else rng.choice(FILLER)
            if rng.random() < 0.2:
                w = w.upper()
            parts.append(w + rng.choice(SEPS))
        texts.append("".join(parts))
    _diff(texts)


def test_realistic_corpus():
    import os
    import sys

    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "bench"))
    try:
        import corpus
    finally:
        sys.path.pop(0)
    texts = corpus.corpus(3000, seed=7)
    _diff(texts)
    g, r = corpus.pairs(1000, seed=3)
    np.testing.assert_allclose(mrgfast.mccs(g, r), ref.mccs(g, r), rtol=0, atol=1e-12)
    np.testing.assert_allclose(mrgfast.mccs(g, r, sides=True), ref.mccs(g, r, sides=True), rtol=0, atol=1e-12)
