"""`mrgfast label --explain`: the trail names the mention, the deciding trigger and its rules.txt line,
and its codes are the engine's on every hand-coded case."""

from __future__ import annotations

from pathlib import Path

import yaml

from mrgfast.cli.main import main
from mrgfast.labelers.explain import explain
from mrgfast.reference.labeler import RULES_PATH

CASES = yaml.safe_load((Path(__file__).parents[1] / "cases" / "labeler_cases.yaml").read_text(encoding="utf-8"))[
    "cases"
]
RULE_LINES = Path(RULES_PATH).read_text(encoding="utf-8").splitlines()


def test_explain_names_trigger_and_rule_line():
    r = explain("No pleural effusion. Possible left basilar atelectasis.")
    eff = r["observations"]["Pleural Effusion"]
    assert eff["code"] == 0
    call = eff["calls"][0]
    assert call["decided_by"].startswith('neg_pre "no" (rules.txt:')
    line = int(call["decided_by"].split("rules.txt:")[1].split()[0])
    assert RULE_LINES[line - 1].strip() == "no"  # the cited line is the trigger phrase itself
    atel = r["observations"]["Atelectasis"]["calls"][0]
    assert atel["code"] == -1 and atel["decided_by"].startswith('unc_pre "possible"')
    mline = int(atel["rule"].split("rules.txt:")[1].split()[0])
    assert RULE_LINES[mline - 1].strip().rstrip("*") in "atelectasis"
    assert "blank: positive or uncertain Atelectasis" in r["observations"]["No Finding"]["why"]


def test_explain_shows_flag_h_and_near_negation():
    r = explain("Mild left basal opacity, atelectasis or infiltrate. Atelectasis or infiltrate at the right base.")
    calls = r["observations"]["Consolidation"]["calls"]
    assert [c["code"] for c in calls] == [None, -1]  # the first differential follows a named opacity
    assert calls[0]["note"].startswith("flag h:") and calls[1]["note"].startswith("flag u:")
    assert r["observations"]["Consolidation"]["code"] == -1
    r = explain("Cardiomegaly and retrocardiac density due to hiatal hernia.")
    density = r["observations"]["Lung Opacity"]["calls"][0]
    assert density["code"] == 0 and density["decided_by"].startswith('neg_near_post "due to hiatal hernia"')
    assert r["observations"]["Cardiomegaly"]["code"] == 1


def test_explain_agrees_with_engine_on_every_case():
    for case in CASES:
        r = explain(case["text"])
        assert r["engine_equals_reference"], case["id"]
        for obs, entry in r["observations"].items():
            if obs == "No Finding":
                continue
            counted = [c["code"] for c in entry["calls"] if c["code"] is not None]
            if entry["code"] == -128:
                assert not counted, (case["id"], obs)
            else:  # the report-level code is the highest-priority call
                assert entry["code"] in counted, (case["id"], obs, entry)


def test_cli_explain(capsys):
    assert main(["label", "--explain", "Heart size is normal. ET tube in place."]) == 0
    out = capsys.readouterr().out
    assert "Cardiomegaly: 0 (negative)" in out and "normal modifier" in out
    assert "Support Devices: 1 (positive)" in out and "No Finding: 1" in out


def test_explain_shows_each_details_trigger(capsys):
    """Each side and degree with the words that state them and their rules.txt lines; a side taken from
    the finding before it is named as such."""
    r = explain("Small left pleural effusion. Mild right basilar opacity, likely atelectasis.")
    eff = r["observations"]["Pleural Effusion"]
    assert (eff["side"], eff["degree"]) == ("left", "mild")
    call = eff["calls"][0]
    assert [w["text"] for w in call["side_words"]] == ["left"] and [w["text"] for w in call["degree_words"]] == [
        "small"
    ]
    for w in call["side_words"] + call["degree_words"]:
        line = int(w["rule"].split("rules.txt:")[1].split()[0])
        assert RULE_LINES[line - 1].strip() == w["phrase"], w  # the cited line is the detail word itself
    atel = r["observations"]["Atelectasis"]["calls"][0]
    assert atel["side"] == "right" and atel["side_from"] == {"text": "opacity", "value": "right"}
    assert main(["label", "--explain", "Small left pleural effusion."]) == 0
    out = capsys.readouterr().out
    assert "Pleural Effusion: 1 (positive), side left, degree mild" in out
    assert 'side: left ("left" rules.txt:' in out and 'degree: mild ("small" rules.txt:' in out


def test_explain_details_agree_with_engine_on_every_case():
    """The engine's side and degree per observation are those of the calls with the report-level code."""
    for case in CASES:
        r = explain(case["text"])
        for obs, entry in r["observations"].items():
            if obs == "No Finding" or entry["code"] not in (1, -1):
                assert entry["side"] is None and entry["degree"] is None, (case["id"], obs)
                continue
            decisive = [c for c in entry["calls"] if c["code"] == entry["code"]]
            sides = {c["side"] for c in decisive} - {None}
            degrees = {c["degree"] for c in decisive} - {None}
            want_side = None if not sides else ("bilateral" if len(sides) > 1 or "bilateral" in sides else sides.pop())
            order = [None, "mild", "moderate", "severe"]
            want_degree = max(degrees, key=order.index) if degrees else None
            assert (entry["side"], entry["degree"]) == (want_side, want_degree), (case["id"], obs, entry)
