"""Hand-written expected-label suite for the report labeler (Rust engine and Python reference).

The cases live in `tests/cases/labeler_cases.yaml`; their expected codes were written by reading
each text as a CheXpert-trained annotator would, never by running a labeler. Each case is run
through `mrgfast.label([text])` and `mrgfast.reference.label([text])`, which must return the
same (1, 14) int8 row: 1 / 0 / -1 where the case lists the observation, `mrgfast.BLANK` where
it does not. The YAML itself is validated first (size, ids, names, codes, coverage, tags, and
the No Finding contract), so a broken edit of the file fails loudly and independently of the
labelers.
"""

from __future__ import annotations

import collections
import importlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import yaml

CASES_PATH = Path(__file__).parent / "cases" / "labeler_cases.yaml"

# docs/ARCHITECTURE.md, "Observations and codes": the column order of every label array.
OBSERVATIONS = (
    "No Finding",
    "Enlarged Cardiomediastinum",
    "Cardiomegaly",
    "Lung Opacity",
    "Lung Lesion",
    "Edema",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Pleural Other",
    "Fracture",
    "Support Devices",
)
FINDINGS = tuple(o for o in OBSERVATIONS if o not in ("No Finding", "Support Devices"))
CODES = (1, 0, -1)
MIN_CASES = 450
MIN_PER_CODE = 2
REQUIRED_TAGS = {
    "mention-synonym",
    "negation-pre",
    "negation-post",
    "uncertainty",
    "pseudo-negation",
    "normal-statement",
    "aggregation",
    "no-finding",
    "support-devices",
    "xxxx-token",
    "sentence-split",
    "contrast-scope",
    "clause-scope",
    "mixed-case",
    "british-spelling",
    "unmention",
    "full-report",
    "empty",
    # issue 12: the categories where the rules were furthest from CheXbert
    "gap-ecm",
    "gap-pleural-other",
    "gap-consolidation",
    "gap-support-devices",
    "gap-pneumothorax",
    "gap-lesion-vs-opacity",
    # issue 21: the side and degree of each finding
    "details",
}
CASE_KEYS = {"id", "text", "expect", "why", "tags", "details"}
SIDE_WORDS = ("none", "left", "right", "bilateral")  # side codes 0..3 (docs/ARCHITECTURE.md)
DEGREE_WORDS = ("none", "mild", "moderate", "severe")  # degree codes 0..3
MIN_DETAIL_CASES = 30
CODE_NAMES = {1: "1 (positive)", 0: "0 (negative)", -1: "-1 (uncertain)", None: "blank"}


def _load_cases() -> list[dict]:
    with CASES_PATH.open(encoding="utf-8") as f:
        doc = yaml.safe_load(f)
    cases = doc["cases"]
    for case in cases:
        if case.get("expect") is None:
            case["expect"] = {}
    return cases


CASES = _load_cases()


# --------------------------------------------------------------------------- the YAML itself
def test_cases_file_is_well_formed():
    assert len(CASES) >= MIN_CASES, f"{len(CASES)} cases, need at least {MIN_CASES}"
    ids = [c.get("id") for c in CASES]
    dup = sorted(i for i, n in collections.Counter(ids).items() if n > 1)
    assert not dup, f"duplicate case ids: {dup}"
    for case in CASES:
        cid = case.get("id")
        assert isinstance(cid, str) and cid, f"case without an id: {case!r}"
        extra = set(case) - CASE_KEYS
        assert not extra, f"{cid}: unknown keys {sorted(extra)}"
        assert isinstance(case.get("text"), str), f"{cid}: text must be a string"
        assert isinstance(case["expect"], dict), f"{cid}: expect must be a mapping"
        if "why" in case:
            assert isinstance(case["why"], str) and case["why"].strip(), f"{cid}: empty why"
        tags = case.get("tags")
        assert isinstance(tags, list) and tags and all(isinstance(t, str) for t in tags), (
            f"{cid}: tags must be a non-empty list of strings"
        )
        for obs, code in case["expect"].items():
            assert obs in OBSERVATIONS, f"{cid}: unknown observation {obs!r}"
            assert type(code) is int and code in CODES, f"{cid}: {obs} has code {code!r}"
        for obs, det in (case.get("details") or {}).items():
            assert case["expect"].get(obs) in (1, -1), f"{cid}: details for {obs}, which is not expected 1 or -1"
            assert isinstance(det, dict) and set(det) == {"side", "degree"}, f"{cid}: {obs} details need side, degree"
            assert det["side"] in SIDE_WORDS and det["degree"] in DEGREE_WORDS, f"{cid}: {obs} details {det!r}"
    assert sum(1 for c in CASES if c.get("details")) >= MIN_DETAIL_CASES


def test_cases_cover_every_observation_and_code():
    counts: dict[str, collections.Counter] = {o: collections.Counter() for o in OBSERVATIONS}
    for case in CASES:
        for obs, code in case["expect"].items():
            counts[obs][code] += 1
    missing = [
        f"{obs}={code} ({counts[obs][code]}x)"
        for obs in OBSERVATIONS
        if obs != "No Finding"
        for code in CODES
        if counts[obs][code] < MIN_PER_CODE
    ]
    assert not missing, f"each observation needs each code at least {MIN_PER_CODE}x: {missing}"
    # No Finding is either 1 or blank (CheXpert convention).
    assert counts["No Finding"][1] >= MIN_PER_CODE
    assert counts["No Finding"][0] == 0 and counts["No Finding"][-1] == 0


def test_cases_use_every_tag():
    used = {t for case in CASES for t in case["tags"]}
    assert used >= REQUIRED_TAGS, f"tags never used: {sorted(REQUIRED_TAGS - used)}"


def test_cases_follow_the_no_finding_contract():
    """No Finding = 1 iff the text is non-empty and no finding other than Support Devices is
    positive or uncertain; an empty report is blank everywhere."""
    wrong = []
    for case in CASES:
        exp = case["expect"]
        empty = not case["text"].strip()
        if empty:
            if exp:
                wrong.append(f"{case['id']}: empty report must be all blank")
            continue
        should = not any(exp.get(o) in (1, -1) for o in FINDINGS)
        if should != (exp.get("No Finding") == 1):
            wrong.append(f"{case['id']}: No Finding should be {'1' if should else 'blank'}")
    assert not wrong, "\n".join(wrong)


# --------------------------------------------------------------------------- the labelers
def _labeler(module_name: str) -> Callable:
    return importlib.import_module(module_name).label


def _expected_row(case: dict, blank: int) -> np.ndarray:
    row = np.full(len(OBSERVATIONS), blank, dtype=np.int8)
    for obs, code in case["expect"].items():
        row[OBSERVATIONS.index(obs)] = code
    return row


def _describe(case: dict, expected: np.ndarray, got: np.ndarray, blank: int) -> str:
    def name(code):
        return CODE_NAMES[None if int(code) == blank else int(code)]

    lines = [f"case {case['id']!r}", f"text: {case['text']!r}"]
    if case.get("why"):
        lines.append(f"why: {case['why']}")
    lines.append(f"{'observation':28s} {'expected':16s} got")
    for i, obs in enumerate(OBSERVATIONS):
        mark = "  " if expected[i] == got[i] else "<<"
        if expected[i] != blank or got[i] != blank:
            lines.append(f"{obs:28s} {name(expected[i]):16s} {name(got[i])} {mark}")
    diff = [obs for i, obs in enumerate(OBSERVATIONS) if expected[i] != got[i]]
    lines.append(f"differs in: {', '.join(diff)}")
    return "\n".join(lines)


LABELERS = {"engine": "mrgfast", "reference": "mrgfast.reference"}


@pytest.fixture(scope="module", params=sorted(LABELERS), ids=sorted(LABELERS))
def labeler(request):
    label = _labeler(LABELERS[request.param])
    mrgfast = importlib.import_module("mrgfast")
    assert tuple(mrgfast.OBSERVATIONS) == OBSERVATIONS, "column order differs from docs/ARCHITECTURE.md"
    return label, int(mrgfast.BLANK)


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_labeler_case(labeler, case):
    label, blank = labeler
    out = np.asarray(label([case["text"]]))
    assert out.dtype == np.int8, f"dtype {out.dtype}, expected int8"
    assert out.shape == (1, len(OBSERVATIONS)), f"shape {out.shape}"
    expected = _expected_row(case, blank)
    got = out[0]
    assert np.array_equal(got, expected), _describe(case, expected, got, blank)


DETAIL_CASES = [c for c in CASES if c.get("details")]
DETAILERS = {
    "engine": lambda texts: tuple(importlib.import_module("mrgfast").label(texts, details=True)),
    "reference": lambda texts: importlib.import_module("mrgfast.reference").label_details(texts),
}


@pytest.mark.parametrize("which", sorted(DETAILERS))
@pytest.mark.parametrize("case", DETAIL_CASES, ids=[c["id"] for c in DETAIL_CASES])
def test_labeler_details_case(which, case):
    """The side and degree of each listed observation, from the Rust engine and the Python reference."""
    codes, sides, degrees = (np.asarray(x)[0] for x in DETAILERS[which]([case["text"]]))
    wrong = []
    for obs, det in case["details"].items():
        i = OBSERVATIONS.index(obs)
        got = {"side": SIDE_WORDS[sides[i]], "degree": DEGREE_WORDS[degrees[i]]}
        if got != det or codes[i] != case["expect"][obs]:
            wrong.append(f"{obs}: expected {case['expect'][obs]} {det}, got {codes[i]} {got}")
    assert not wrong, f"case {case['id']!r}: {case['text']!r}\n" + "\n".join(wrong)


def test_labeler_batch_matches_single(labeler):
    """Labelling all case texts in one call gives the same rows as one call per text."""
    label, _ = labeler
    texts = [c["text"] for c in CASES]
    batch = np.asarray(label(texts))
    assert batch.shape == (len(texts), len(OBSERVATIONS))
    single = np.concatenate([np.asarray(label([t])) for t in texts])
    bad = [CASES[i]["id"] for i in range(len(texts)) if not np.array_equal(batch[i], single[i])]
    assert not bad, f"batch and single-report labels differ for: {bad}"
