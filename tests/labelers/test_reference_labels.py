"""Scoring a labeler against reference labels in a CSV (`mrgfast agree --reference-labels`): the numbers on
small hand-made files, computed by hand; the disagreements and their traces; errors naming file, line, column."""

from __future__ import annotations

import csv
import io
import json

import pytest

import mrgfast
from mrgfast.cli.main import main
from mrgfast.labelers.reference_labels import (
    ReferenceError,
    disagreements,
    read_reference_csv,
    score_against_reference,
)

OBS = list(mrgfast.OBSERVATIONS)
HEADER = ["id", "scheme", "text", "findings", *OBS]


def write_csv(path, rows, header=HEADER):
    """rows: (id, scheme, text, {observation: cell}); unlisted observations get `default`."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    for rid, scheme, text, cells, default in rows:
        full = {"id": rid, "scheme": scheme, "text": text, "findings": "ignored"}
        full.update({o: cells.get(o, default) for o in OBS})
        w.writerow([full.get(h, "") for h in header])
    path.write_text(buf.getvalue(), encoding="utf-8")
    return path


# Binary: 1 = present (positive or uncertain), No Finding 1 when nothing is present. The labeler's codes
# (Rust and the reference alike): r1 Cardiomegaly 1, PE 0; r2 Cardiomegaly 0, PE 1; r3 PE -1; r4 Lung Opacity 0,
# No Finding 1. The reference says r3 has no effusion (No Finding 1) and r4 cardiomegaly.
BINARY = [
    ("r1", "binary", "Cardiomegaly. No pleural effusion.", {"Cardiomegaly": "1"}, "0"),
    ("r2", "binary", "The heart is normal in size. Small left pleural effusion.", {"Pleural Effusion": "1"}, "0"),
    ("r3", "binary", "Possible small left pleural effusion.", {"No Finding": "1"}, "0"),
    ("r4", "binary", "Lungs are clear.", {"Cardiomegaly": "1"}, "0"),
]


def test_binary_scores_by_hand(tmp_path):
    ref = read_reference_csv(str(write_csv(tmp_path / "b.csv", BINARY)))
    assert ref.scheme == "binary" and ref.ids == ["r1", "r2", "r3", "r4"] and ref.lines == [2, 3, 4, 5]
    result = score_against_reference(mrgfast.label(ref.texts), ref, labeler="rust")
    per = result["per_observation"]
    # Cardiomegaly: present [1,0,0,0] vs [1,0,0,1]: tp 1, fn 1, tn 2; po 3/4, pe 1/4*2/4 + 3/4*2/4 = 1/2
    cm = per["Cardiomegaly"]
    assert (cm["tp"], cm["fp"], cm["fn"], cm["tn"], cm["support"], cm["predicted"]) == (1, 0, 1, 2, 2, 1)
    assert (cm["precision"], cm["recall"]) == (1.0, 0.5)
    assert cm["f1"] == pytest.approx(2 / 3) and cm["kappa"] == pytest.approx(0.5)
    # Pleural Effusion: the labeler's -1 counts as present: [0,1,1,0] vs [0,1,0,0]
    pe = per["Pleural Effusion"]
    assert (pe["tp"], pe["fp"], pe["fn"]) == (1, 1, 0)
    assert pe["f1"] == pytest.approx(2 / 3) and pe["kappa"] == pytest.approx(0.5)
    # No Finding: [0,0,0,1] vs [0,0,1,0]: po 1/2, pe 1/16 + 9/16 -> kappa -1/3
    nf = per["No Finding"]
    assert (nf["tp"], nf["fp"], nf["fn"], nf["f1"]) == (0, 1, 1, 0.0)
    assert nf["kappa"] == pytest.approx(-1 / 3)
    # never present on either side: F1 0 (the CE contract), kappa 1 (full agreement on one class)
    assert per["Edema"]["f1"] == 0.0 and per["Edema"]["kappa"] == 1.0
    assert result["micro"]["precision"] == result["micro"]["recall"] == result["micro"]["f1"] == 0.5
    po, pe_ = 52 / 56, (4 / 56) ** 2 + (52 / 56) ** 2
    assert result["micro"]["kappa"] == pytest.approx((po - pe_) / (1 - pe_))
    assert result["macro"]["f1"] == pytest.approx((2 / 3 + 2 / 3) / 14)
    assert "agreement_4way" not in cm


def test_binary_disagreements(tmp_path):
    ref = read_reference_csv(str(write_csv(tmp_path / "b.csv", BINARY)))
    pred = mrgfast.label(ref.texts)
    items = disagreements(pred, ref)
    assert [i["id"] for i in items] == ["r3", "r4"]
    assert items[0]["observations"] == {
        "No Finding": {"labeler": "blank", "reference": "1", "kind": "false negative"},
        "Pleural Effusion": {"labeler": "-1", "reference": "0", "kind": "false positive"},
    }
    assert items[1]["line"] == 5 and set(items[1]["observations"]) == {"No Finding", "Cardiomegaly"}
    only = disagreements(pred, ref, observations=["Cardiomegaly"])
    assert [i["id"] for i in only] == ["r4"] and list(only[0]["observations"]) == ["Cardiomegaly"]


def test_4way_scores_codes(tmp_path):
    rows = [
        ("a", "4way", "Cardiomegaly.", {"Cardiomegaly": "1"}, ""),
        ("b", "4way", "No pneumothorax.", {"Pneumothorax": "0", "No Finding": "1"}, ""),
        ("c", "4way", "Possible pneumothorax.", {"Pneumothorax": "1.0"}, ""),
    ]
    ref = read_reference_csv(str(write_csv(tmp_path / "f.csv", rows)))
    assert ref.scheme == "4way"
    assert ref.labels[1, OBS.index("Pneumothorax")] == 0 and ref.labels[0, OBS.index("Edema")] == mrgfast.BLANK
    pred = mrgfast.label(ref.texts)
    ptx = score_against_reference(pred, ref)["per_observation"]["Pneumothorax"]
    # present/absent agree (-1 and 1 are both present); the codes differ on c
    assert ptx["f1"] == 1.0 and ptx["kappa"] == 1.0
    assert ptx["agreement_4way"] == pytest.approx(2 / 3)
    # rows: labeler (positive, negative, uncertain, blank); columns: reference
    assert ptx["confusion"]["counts"] == [[0, 0, 0, 0], [0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1]]
    assert ptx["f1_by_code"]["negative"] == 1.0 and ptx["f1_by_code"]["positive"] == 0.0
    items = disagreements(pred, ref)
    assert [i["id"] for i in items] == ["c"]
    assert items[0]["observations"] == {"Pneumothorax": {"labeler": "-1", "reference": "1", "kind": "code"}}


def test_scheme_option_and_no_scheme_column(tmp_path):
    header = ["text", *OBS]
    rows = [("x", "", "No effusion.", {"No Finding": "1"}, "0")]
    path = str(write_csv(tmp_path / "n.csv", rows, header=header))
    with pytest.raises(ReferenceError, match=r"n\.csv:1: no 'scheme' column"):
        read_reference_csv(path)
    ref = read_reference_csv(path, scheme="binary")
    assert ref.ids == ["1"] and ref.scheme == "binary"
    with pytest.raises(ReferenceError, match="unknown scheme"):
        read_reference_csv(path, scheme="trinary")


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([("a", "binary", "Effusion.", {"Edema": "-1"}, "0")], r"b\.csv:2: column 'Edema' is '-1'; the binary scheme"),
        ([("a", "binary", "Effusion.", {"Edema": ""}, "0")], r"b\.csv:2: column 'Edema' is ''"),
        ([("a", "4way", "Effusion.", {"Fracture": "2"}, "")], r"b\.csv:2: column 'Fracture' is '2'; the 4way"),
        ([("a", "ternary", "Effusion.", {}, "0")], r"b\.csv:2: column 'scheme' is 'ternary'"),
        (
            [("a", "binary", "Effusion.", {}, "0"), ("b", "4way", "Edema.", {}, "")],
            r"b\.csv:3: column 'scheme' is 4way but line 2 is binary",
        ),
        ([("a", "binary", "  ", {}, "0")], r"b\.csv:2: column 'text' is empty"),
        ([("a", "binary", "x.", {}, "0"), ("a", "binary", "y.", {}, "0")], r"b\.csv:3: id 'a' repeats line 2"),
    ],
)
def test_bad_rows_name_file_line_and_column(tmp_path, rows, message):
    path = str(write_csv(tmp_path / "b.csv", rows))
    with pytest.raises(ReferenceError, match=message):
        read_reference_csv(path)


def test_bad_files(tmp_path):
    short = tmp_path / "short.csv"
    short.write_text("id,scheme,text,Edema\na,binary,x,1\n", encoding="utf-8")
    with pytest.raises(ReferenceError, match=r"short\.csv:1: reference labels need the 14 observation columns"):
        read_reference_csv(str(short))
    ragged = write_csv(tmp_path / "ragged.csv", BINARY)
    ragged.write_text(ragged.read_text() + "r5,binary,Edema.,1\n", encoding="utf-8")
    with pytest.raises(ReferenceError, match=r"ragged\.csv:6: row has 4 fields, the header has 18"):
        read_reference_csv(str(ragged))
    with pytest.raises(ReferenceError, match="column 'report' not found"):
        read_reference_csv(str(ragged), text_field="report")
    with pytest.raises(ReferenceError, match=r"holds no reference rows"):
        read_reference_csv(str(write_csv(tmp_path / "empty.csv", [])))


def test_multiline_text_keeps_line_numbers(tmp_path):
    rows = [
        ("a", "binary", "Heart is enlarged.\nNo effusion.", {"Cardiomegaly": "1"}, "0"),
        ("b", "binary", "Edema.", {"Edema": "7"}, "0"),
    ]
    with pytest.raises(ReferenceError, match=r"m\.csv:4: column 'Edema' is '7'"):
        read_reference_csv(str(write_csv(tmp_path / "m.csv", rows)))


def test_label_count_checked(tmp_path):
    ref = read_reference_csv(str(write_csv(tmp_path / "b.csv", BINARY)))
    with pytest.raises(ValueError, match="labelled 3 reports but the reference has 4"):
        score_against_reference(mrgfast.label(ref.texts[:3]), ref)


# ------------------------------------------------------------------------------------------------ CLI
def test_agree_reference_labels_cli(tmp_path, capsys):
    src = write_csv(tmp_path / "b.csv", BINARY)
    js, dis, png = tmp_path / "s.json", tmp_path / "d.jsonl", tmp_path / "s.png"
    argv = ["agree", str(src), "--reference-labels", "--json", str(js), "--disagreements", str(dis)]
    assert main([*argv, "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    assert "scheme: binary   labeler: rust vs the reference labels" in out
    assert "disagreements: 2 of 4 reports" in out
    # the trace of a disagreement names the trigger and its rule line
    assert "-- r3 (line 4): " in out and 'decided by: unc_pre "possible" (rules.txt:' in out
    result = json.loads(js.read_text())
    ref = read_reference_csv(str(src))
    want = score_against_reference(mrgfast.label(ref.texts), ref, labeler="rust")
    assert result["per_observation"] == json.loads(json.dumps(want["per_observation"]))
    assert result["disagreements"]["count"] == 2
    items = [json.loads(line) for line in dis.read_text().splitlines()]
    assert [i["id"] for i in items] == ["r3", "r4"]
    assert "Pleural Effusion: -1 (uncertain)" in items[0]["explain"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # one observation, nothing shown but the count
    assert main([*argv, "--no-plot", "--observation", "Cardiomegaly", "--show", "0"]) == 0
    out = capsys.readouterr().out
    assert "disagreements on Cardiomegaly: 1 of 4 reports" in out and "-- r4" not in out
    assert [json.loads(line)["id"] for line in dis.read_text().splitlines()] == ["r4"]


def test_agree_reference_labels_cli_errors(tmp_path, capsys):
    bad = write_csv(tmp_path / "bad.csv", [("a", "binary", "Effusion.", {"Edema": "x"}, "0")])
    js = tmp_path / "s.json"
    base = ["agree", str(bad), "--reference-labels", "--json", str(js), "--no-plot"]
    assert main([*base, "--disagreements", str(tmp_path / "d.jsonl")]) == 1
    assert f"{bad}:2: column 'Edema' is 'x'" in capsys.readouterr().err
    assert not js.exists()
    good = write_csv(tmp_path / "good.csv", BINARY)
    argv = ["agree", str(good), "--reference-labels", "--no-plot", "--json", str(js)]
    assert main([*argv, "--labeler", "rust,chexbert"]) == 2
    assert "scores one labeler" in capsys.readouterr().err
    assert main([*argv, "--observation", "Heart"]) == 2
    assert "--observation: unknown ['Heart']" in capsys.readouterr().err
    assert main([*argv, "--disagreements", str(good)]) == 2  # would overwrite the input
    assert "is also an input" in capsys.readouterr().err
    assert main([*argv, "--scheme", "trinary"]) == 2
    assert "--scheme: unknown 'trinary'" in capsys.readouterr().err
    assert main([*argv, "--skip-bad"]) == 2
    assert "--skip-bad does not go with --reference-labels" in capsys.readouterr().err
    assert main(["agree", str(good), "--scheme", "binary", "--labeler", "rust,rust"]) == 2
    assert "go with --reference-labels" in capsys.readouterr().err


def test_rows_feed_the_python_api():
    """`reference_from_rows` takes rows from any reader (here csv.DictReader), same checks."""
    from mrgfast.labelers.reference_labels import reference_from_rows

    text = "text,scheme," + ",".join(OBS) + "\nEdema.,binary," + ",".join("1" if o == "Edema" else "0" for o in OBS)
    reader = csv.DictReader(io.StringIO(text))
    ref = reference_from_rows("mem.csv", reader.fieldnames, ((i + 2, r) for i, r in enumerate(reader)))
    assert ref.labels.shape == (1, 14) and ref.labels[0, OBS.index("Edema")] == 1
    assert disagreements(mrgfast.label(ref.texts), ref) == []
