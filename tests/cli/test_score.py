import csv
import json
import random
import subprocess
import sys
import time

import numpy as np
import pytest

import mrgfast
from mrgfast.reward import extract_report
from mrgfast.scoring import format_table, score_pairs

REFS = {
    "a": "Mild cardiomegaly. Small right pleural effusion.",
    "b": "The heart size is normal. No pleural effusion. No pneumothorax.",
    "c": "Endotracheal tube in place. Possible left lower lobe atelectasis.",
    "d": "Pulmonary edema. Bilateral effusions.",
    "e": "Lungs are clear — no acute disease. Ünïcode ✓",
}
PREDS = {
    "a": "<think>wide heart</think><report>Cardiomegaly. No effusion.</report>",
    "b": "No acute cardiopulmonary process — ünïcode ✓, 肺.",
    "c": "<think>tube</think><report>ET tube present. Atelectasis at the left base.</report>",
    "d": "Edema. Right pleural effusion.",
    "x": "an id with no reference",
}


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def write_csv(path, header, rows):
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


@pytest.fixture
def files(tmp_path):
    pred = tmp_path / "pred.jsonl"
    write_jsonl(pred, [{"id": k, "generated": v} for k, v in PREDS.items()])
    ref = tmp_path / "ref.csv"
    write_csv(ref, ["id", "report"], list(REFS.items()))
    return pred, ref


def test_score_by_id_matches_python_api(tmp_path, files, cli):
    pred, ref = files
    out_json, out_png = tmp_path / "s.json", tmp_path / "f1.png"
    rc, out, err = cli("score", "--pred", pred, "--ref", ref, "--json", out_json, "--plot", out_png)
    assert rc == 0, err
    res = json.loads(out_json.read_text(encoding="utf-8"))
    common = ["a", "b", "c", "d"]
    g = [extract_report(PREDS[k]) for k in common]
    r = [REFS[k] for k in common]
    assert res["n"] == 4 and res["inputs"]["paired_by"] == "id"
    assert res["unpaired"] == {"pred_only": ["x"], "ref_only": ["e"]}
    assert res["mccs"]["mean"] == pytest.approx(float(np.mean(mrgfast.mccs(g, r))))
    assert res["mccs"]["median"] == pytest.approx(float(np.median(mrgfast.mccs(g, r))))
    assert [s["id"] for s in res["per_sample"]] == common
    assert res["ce"]["all"] == json.loads(json.dumps(mrgfast.ce_metrics(g, r)))
    assert res["ce"]["five"] == json.loads(json.dumps(mrgfast.ce_metrics(g, r, subset=mrgfast.COMPETITION_FIVE)))
    # the printed table and listing
    assert "MCCS mean" in out and "micro (14)" in out and "macro (5*)" in out
    for obs in mrgfast.OBSERVATIONS:
        assert obs in out
    assert "ids only in --pred (1, not scored): x" in out
    assert "ids only in --ref (1, not scored): e" in out
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_score_reports_side_aware_ce_beside_the_usual_table(tmp_path, files, cli):
    """The usual CE and MCCS are unchanged; side-aware CE and MCCS+ come beside them (rule labeler): pair d
    has its effusion on the right against a bilateral reference, so side-aware CE counts it as a false
    positive and a false negative."""
    pred, ref = files
    out_json = tmp_path / "s.json"
    rc, out, err = cli("score", "--pred", pred, "--ref", ref, "--json", out_json, "--no-plot", "--side-weight", "0.4")
    assert rc == 0, err
    res = json.loads(out_json.read_text(encoding="utf-8"))
    common = ["a", "b", "c", "d"]
    g = [extract_report(PREDS[k]) for k in common]
    r = [REFS[k] for k in common]
    assert res["ce"]["all"] == json.loads(json.dumps(mrgfast.ce_metrics(g, r)))
    assert res["mccs"]["mean"] == pytest.approx(float(np.mean(mrgfast.mccs(g, r))))
    sided = mrgfast.ce_metrics(g, r, sides=True)
    assert res["ce_sides"]["all"] == json.loads(json.dumps(sided))
    assert res["ce_sides"]["five"] == json.loads(
        json.dumps(mrgfast.ce_metrics(g, r, sides=True, subset="competition5"))
    )
    eff_plain, eff_side = (
        res["ce"]["all"]["per_observation"]["Pleural Effusion"],
        sided["per_observation"]["Pleural Effusion"],
    )
    assert eff_plain["tp"] == 1 and (eff_side["tp"], eff_side["fp"], eff_side["fn"]) == (
        0,
        eff_plain["fp"] + 1,
        eff_plain["fn"] + 1,
    )
    plus = mrgfast.mccs(g, r, sides=True, side_weight=0.4)
    assert res["mccs_plus"]["mean"] == pytest.approx(float(plus.mean()))
    assert [s["mccs_plus"] for s in res["per_sample"]] == pytest.approx(plus.tolist())
    assert res["params"]["side_weight"] == 0.4
    assert "side-aware CE" in out and "MCCS+ (side-aware, side weight 0.4)" in out and "wrong side" in out
    rc, _, err = cli("score", "--pred", pred, "--ref", ref, "--no-plot", "--side-weight", "1")
    assert rc == 2 and "--side-weight" in err


def test_side_aware_ce_needs_sides():
    labels = mrgfast.label(["Left effusion."])
    res = score_pairs(labels, labels)
    assert res["ce_sides"] is None and res["mccs_plus"] is None and "label arrays" in res["sides_note"]
    assert "side-aware CE: not computed" in format_table(res)
    with pytest.raises(TypeError, match="holds no sides"):
        mrgfast.ce_metrics(labels, labels, sides=True)


def test_score_by_order_text_files_and_options(tmp_path, cli):
    keys = ["a", "b", "c", "d"]
    pred, ref = tmp_path / "p.txt", tmp_path / "r.txt"
    pred.write_text("\n".join(PREDS[k] for k in keys) + "\n", encoding="utf-8")
    ref.write_text("\n".join(REFS[k] for k in keys) + "\n", encoding="utf-8")
    out_json = tmp_path / "s.json"
    rc, _out, err = cli(
        "score",
        "--pred",
        pred,
        "--ref",
        ref,
        "--json",
        out_json,
        "--no-plot",
        "--margin",
        "0.2",
        "--uncertain",
        "0",
        "--uncertain-positive",
        "--no-extract",
    )
    assert rc == 0, err
    res = json.loads(out_json.read_text())
    assert res["inputs"]["paired_by"] == "order" and res["unpaired"] == {"pred_only": [], "ref_only": []}
    g = [PREDS[k] for k in keys]
    r = [REFS[k] for k in keys]
    assert res["mccs"]["mean"] == pytest.approx(float(np.mean(mrgfast.mccs(g, r, margin=0.2, uncertain=0.0))))
    assert res["ce"]["all"] == json.loads(json.dumps(mrgfast.ce_metrics(g, r, uncertain_positive=True)))
    assert res["params"] == {
        "margin": 0.2,
        "uncertain": 0.0,
        "uncertain_positive": True,
        "extract_report": False,
        "side_weight": 0.5,
    }
    assert not (tmp_path / "mrgfast_score_f1.png").exists()


def test_pairing_errors(tmp_path, files, cli):
    pred, _ref = files
    txt = tmp_path / "r.txt"
    txt.write_text("one\ntwo\n", encoding="utf-8")
    rc, _, err = cli("score", "--pred", pred, "--ref", txt, "--json", tmp_path / "j.json", "--no-plot")
    assert rc == 1 and f"{pred} has ids but {txt} has none" in err
    txt3 = tmp_path / "p.txt"
    txt3.write_text("one\ntwo\nthree\n", encoding="utf-8")
    rc, _, err = cli("score", "--pred", txt3, "--ref", txt, "--json", tmp_path / "j.json", "--no-plot")
    assert rc == 1 and "has 3 reports but" in err and "paired by order" in err
    dup = tmp_path / "dup.jsonl"
    write_jsonl(dup, [{"id": "a", "report": "x"}, {"id": "b", "report": "y"}, {"id": "a", "report": "z"}])
    rc, _, err = cli("score", "--pred", pred, "--ref", dup, "--json", tmp_path / "j.json", "--no-plot")
    assert rc == 1 and f"{dup}:3: duplicate id 'a' (first on line 1)" in err
    other = tmp_path / "other.jsonl"
    write_jsonl(other, [{"id": "zz", "report": "x"}])
    rc, _, err = cli("score", "--pred", pred, "--ref", other, "--json", tmp_path / "j.json", "--no-plot")
    assert rc == 1 and "no id is present in both" in err
    assert not (tmp_path / "j.json").exists()


def test_bad_rows_and_skip_bad(tmp_path, files, cli):
    _pred, ref = files
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        '{"id": "a", "generated": "Cardiomegaly."}\n{"id": "b", "generated": null}\n{"id": "c"\n'
        '{"generated": "no id"}\n',
        encoding="utf-8",
    )
    out_json = tmp_path / "s.json"
    rc, _, err = cli("score", "--pred", bad, "--ref", ref, "--json", out_json, "--no-plot")
    assert rc == 1 and f"{bad}:2: field 'generated' is NoneType, not a string" in err
    assert "nothing scored" in err and not out_json.exists()
    rc, out, err = cli("score", "--pred", bad, "--ref", ref, "--json", out_json, "--no-plot", "--skip-bad")
    assert rc == 0, err
    res = json.loads(out_json.read_text())
    assert res["n"] == 1
    assert [(s["line"], s["reason"].split(" (")[0]) for s in res["skipped_rows"]] == [
        (2, "field 'generated' is NoneType, not a string"),
        (3, "invalid JSON"),
        (4, "id field 'id' is missing or not a string/number"),
    ]
    assert "skipped bad rows: 3 in --pred, 0 in --ref" in out
    assert sorted(res["unpaired"]["ref_only"]) == ["b", "c", "d", "e"]


def test_empty_input_is_an_error(tmp_path, files, cli):
    _pred, ref = files
    empty = tmp_path / "empty.jsonl"
    empty.write_text("", encoding="utf-8")
    rc, _, err = cli("score", "--pred", empty, "--ref", ref, "--json", tmp_path / "j.json", "--no-plot")
    assert rc == 1 and f"{empty} holds no reports" in err


def test_bad_arguments(tmp_path, files, cli):
    pred, ref = files
    rc, _, err = cli("score", "--pred", pred, "--ref", ref, "--margin", "1.5")
    assert rc == 2 and "--margin" in err
    rc, _, err = cli("score", "--pred", pred)
    assert rc == 2 and "--ref" in err


def test_score_pairs_api_and_table():
    g = [PREDS[k] for k in "abcd"]
    r = [REFS[k] for k in "abcd"]
    res = score_pairs(g, r, ids=list("abcd"))
    labels_g = mrgfast.label([extract_report(x) for x in g])
    labels_r = mrgfast.label(r)
    assert score_pairs(labels_g, labels_r)["ce"] == res["ce"]  # labels in, same numbers
    table = format_table(res, title="T")
    assert table.splitlines()[0] == "T" and "Support Devices" in table
    with pytest.raises(ValueError, match="2 predictions but 1 references"):
        score_pairs(["a", "b"], ["c"])
    with pytest.raises(ValueError, match="no report pairs"):
        score_pairs([], [])
    with pytest.raises(TypeError, match=r"preds\[1\] is NoneType"):
        score_pairs(["a", None], ["b", "c"])


def test_demo_runs(cli, tmp_path):
    rc, out, err = cli("demo", "--show", "2", "--json", tmp_path / "d.json")
    assert rc == 0, err
    assert "60 bundled sample pairs" in out and "micro (14)" in out
    res = json.loads((tmp_path / "d.json").read_text())
    assert res["n"] == 60


def test_score_10k_reports_under_5s(tmp_path):
    """Acceptance: `mrgfast score` on two 10,000-report files in under 5 s, CE equal to the Python API."""
    from mrgfast.data.synth import sample_findings, write_report, write_think

    rng = random.Random(7)
    preds, refs = [], []
    for i in range(10_000):
        f = sample_findings(rng)
        g = f if rng.random() < 0.6 else sample_findings(rng)
        preds.append(
            {"id": f"s{i}", "generated": f"<think>{write_think(g)}</think><report>{write_report(g, rng)}</report>"}
        )
        refs.append((f"s{i}", write_report(f, rng)))
    rng.shuffle(preds)  # pairing by id, not by order
    pred, ref = tmp_path / "pred.jsonl", tmp_path / "ref.csv"
    write_jsonl(pred, preds)
    write_csv(ref, ["id", "report"], refs)
    out_json = tmp_path / "s.json"
    t0 = time.perf_counter()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mrgfast",
            "score",
            "--pred",
            str(pred),
            "--ref",
            str(ref),
            "--json",
            str(out_json),
            "--plot",
            str(tmp_path / "f1.png"),
        ],
        capture_output=True,
        timeout=120,
    )
    wall = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stderr.decode()
    assert wall < 5.0, f"mrgfast score took {wall:.2f} s on 2 x 10,000 reports"
    res = json.loads(out_json.read_text())
    ref_of = dict(refs)
    g = [extract_report(p["generated"]) for p in preds]
    r = [ref_of[p["id"]] for p in preds]
    assert res["n"] == 10_000
    assert res["ce"]["all"] == json.loads(json.dumps(mrgfast.ce_metrics(g, r)))
    assert res["ce"]["five"] == json.loads(json.dumps(mrgfast.ce_metrics(g, r, subset=mrgfast.COMPETITION_FIVE)))
    assert res["mccs"]["mean"] == pytest.approx(float(mrgfast.mccs(g, r).mean()))
    print(f"mrgfast score, 2 x 10,000 reports: {wall:.2f} s wall (including interpreter start)")


def test_one_file_with_both_columns_reads_the_right_one(tmp_path, cli):
    both = tmp_path / "pairs.jsonl"
    write_jsonl(both, [{"id": k, "generated": PREDS[k], "reference": REFS[k]} for k in "abcd"])
    out_json = tmp_path / "s.json"
    rc, _, err = cli("score", "--pred", both, "--ref", both, "--json", out_json, "--no-plot")
    assert rc == 0, err
    res = json.loads(out_json.read_text())
    assert res["inputs"]["pred"]["field"] == "generated" and res["inputs"]["ref"]["field"] == "reference"
    g = [extract_report(PREDS[k]) for k in "abcd"]
    assert res["mccs"]["mean"] == pytest.approx(float(mrgfast.mccs(g, [REFS[k] for k in "abcd"]).mean()))
