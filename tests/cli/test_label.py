import csv
import io
import json
import subprocess
import sys

import pytest

import mrgfast

REPORTS = [
    "The heart size is normal. No pleural effusion or pneumothorax.",
    "Mild cardiomegaly.\nSmall right pleural effusion, possible atelectasis.",  # multi-line (quoted in CSV)
    "Endotracheal tube terminates 4 cm above the carina. Lungs are clear.",
    'Émphysème? 肺 clear — no edema, "quoted", commas, and an emoji 🫁.',
]


def expected_codes(texts):
    rows = mrgfast.label(texts)
    return [["" if c == mrgfast.BLANK else f"{float(c):.1f}" for c in row] for row in rows.tolist()]


def write_csv(path, rows, header=("id", "report")):
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def read_csv(path):
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.reader(f))


def test_csv_in_chexpert_csv_out(tmp_path, cli):
    src = tmp_path / "in.csv"
    write_csv(src, [(f"r{i}", t) for i, t in enumerate(REPORTS)])
    out = tmp_path / "labels.csv"
    rc, _, err = cli("label", src, "-o", out)
    assert rc == 0, err
    rows = read_csv(out)
    assert rows[0] == ["Reports", *mrgfast.OBSERVATIONS]
    assert [r[0] for r in rows[1:]] == REPORTS  # unicode and newlines survive
    assert [r[1:] for r in rows[1:]] == expected_codes(REPORTS)
    assert "labelled 4 reports" in err


def test_jsonl_in_jsonl_out_keeps_ids_and_lines(tmp_path, cli):
    src = tmp_path / "in.jsonl"
    src.write_text(
        "".join(json.dumps({"id": i, "findings": t}, ensure_ascii=False) + "\n" for i, t in enumerate(REPORTS)),
        encoding="utf-8",
    )
    out = tmp_path / "out.jsonl"
    rc, _, err = cli("label", src, "-o", out, "--field", "findings")
    assert rc == 0, err
    objs = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [o["id"] for o in objs] == ["0", "1", "2", "3"]
    assert [o["line"] for o in objs] == [1, 2, 3, 4]
    assert [o["report"] for o in objs] == REPORTS
    records = mrgfast.label(REPORTS, records=True)
    for o, rec in zip(objs, records):
        assert {k: o[k] for k in mrgfast.OBSERVATIONS} == rec


def test_text_in_stdout_and_chunking(tmp_path, cli):
    src = tmp_path / "in.txt"
    lines = [r.replace("\n", " ") for r in REPORTS] * 5
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    rc, out, err = cli("label", src, "--chunk-size", "3")
    assert rc == 0, err
    rows = list(csv.reader(io.StringIO(out)))
    assert len(rows) == 1 + len(lines)
    assert [r[1:] for r in rows[1:]] == expected_codes(lines)
    _rc2, out2, _ = cli("label", src, "--chunk-size", "100000")
    assert out2 == out


def test_bad_jsonl_row_stops_with_line_number_and_no_output(tmp_path, cli):
    src = tmp_path / "in.jsonl"
    src.write_text(
        '{"report": "No effusion."}\n\n{"report": "ok"}\n{not json}\n{"report": 7}\n["a list"]\n{"text": "x"}\n',
        encoding="utf-8",
    )
    out = tmp_path / "out.csv"
    rc, _, err = cli("label", src, "-o", out)
    assert rc == 1
    assert f"{src}:4: invalid JSON" in err
    assert not out.exists() and not list(tmp_path.glob("out.csv.tmp*"))
    rc, _, err = cli("label", src, "-o", out, "--skip-bad")
    assert rc == 0
    assert f"{src}:5: field 'report' is int, not a string" in err
    assert f"{src}:6: expected a JSON object, got list" in err
    assert f"{src}:7: field 'report' is missing" in err
    assert "skipped 4 bad rows (lines 4, 5, 6, 7)" in err
    assert [r[0] for r in read_csv(out)[1:]] == ["No effusion.", "ok"]


def test_bad_csv_rows_line_numbers_after_multiline_field(tmp_path, cli):
    src = tmp_path / "in.csv"
    src.write_text('id,report\n1,"two\nlines"\n2,too,many\n3,"a"b\n4,fine\n5,"unterminated\n', encoding="utf-8")
    rc, _, err = cli("label", src, "--skip-bad")
    assert rc == 0
    assert f"{src}:4: row has 3 fields, the header has 2" in err
    assert f"{src}:5: malformed CSV row" in err
    assert f"{src}:7: malformed CSV row (unexpected end of data)" in err
    assert "labelled 2 reports" in err


def test_invalid_utf8_and_empty_lines_in_text(tmp_path, cli):
    src = tmp_path / "in.txt"
    src.write_bytes(b"first report\n" + b"bad \xff\xfe bytes\n" + b"\n" + "último — ok\n".encode())
    rc, _, err = cli("label", src)
    assert rc == 1 and f"{src}:2: invalid UTF-8" in err
    rc, out, err = cli("label", src, "--skip-bad")
    assert rc == 0
    assert f"{src}:3: empty line" in err
    assert [r[0] for r in list(csv.reader(io.StringIO(out)))[1:]] == ["first report", "último — ok"]


@pytest.mark.parametrize("name, content", [("e.txt", ""), ("e.jsonl", ""), ("e.csv", ""), ("h.csv", "report\n")])
def test_empty_input(tmp_path, cli, name, content):
    src = tmp_path / name
    src.write_text(content, encoding="utf-8")
    rc, out, err = cli("label", src)
    assert rc == 0
    assert out.splitlines() == [",".join(["Reports", *mrgfast.OBSERVATIONS])]
    assert "labelled 0 reports" in err and "holds no reports" in err


def test_missing_column_names_it(tmp_path, cli):
    src = tmp_path / "in.csv"
    write_csv(src, [("1", "x")], header=("id", "body"))
    rc, _, err = cli("label", src)
    assert rc == 1 and "no report column found among ['id', 'body']" in err
    rc, _, err = cli("label", src, "--field", "impression")
    assert rc == 1 and "column 'impression' not found; available: ['id', 'body']" in err
    rc, _, err = cli("label", tmp_path / "nope.csv")
    assert rc == 1 and "cannot open" in err


def test_stdin_and_forced_progress(tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("No effusion.\nCardiomegaly.\n", encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-m", "mrgfast", "label", "-", "--progress"],
        input=src.read_bytes(),
        capture_output=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.reader(io.StringIO(proc.stdout.decode())))
    assert [r[0] for r in rows[1:]] == ["No effusion.", "Cardiomegaly."]
    assert b"labelled 2 reports" in proc.stderr


def test_help_on_every_command():
    from mrgfast.cli.main import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name in ("label", "score", "demo"):
        assert name in sub.choices
        text = sub.choices[name].format_help()
        assert text.startswith(f"usage: mrgfast {name}")
    proc = subprocess.run([sys.executable, "-m", "mrgfast", "label", "--help"], capture_output=True, timeout=60)
    assert proc.returncode == 0 and b"CheXpert" in proc.stdout


def test_extract_report_option(tmp_path, cli):
    from mrgfast.reward import extract_report

    texts = [
        "<think>heart wide, fluid</think><report>No pleural effusion. Heart size normal.</report>",
        "<think>Cardiomegaly?</think> Lungs are clear.",
    ]
    src = tmp_path / "c.jsonl"
    src.write_text("".join(json.dumps({"completion": t}) + "\n" for t in texts), encoding="utf-8")
    rc, out, err = cli("label", src, "--field", "completion", "--extract-report")
    assert rc == 0, err
    rows = list(csv.reader(io.StringIO(out)))[1:]
    assert [r[0] for r in rows] == texts
    assert [r[1:] for r in rows] == expected_codes([extract_report(t) for t in texts])


def test_details_columns_and_objects(tmp_path, cli):
    """--details: each finding's side and degree, as the API's records form gives them."""
    texts = ["Small left pleural effusion.", "Cardiomegaly. Bibasilar atelectasis.", "No acute disease."]
    src = tmp_path / "in.txt"
    src.write_text("\n".join(texts) + "\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    rc, _, err = cli("label", src, "-o", out, "--details")
    assert rc == 0, err
    objs = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    records = mrgfast.label(texts, details=True, records=True)
    assert [o["details"] for o in objs] == [r["details"] for r in records]
    assert objs[0]["details"] == {"Pleural Effusion": {"side": "left", "degree": "mild"}}
    assert objs[1]["details"]["Atelectasis"] == {"side": "bilateral", "degree": None}
    csv_out = tmp_path / "out.csv"
    rc, _, err = cli("label", src, "-o", csv_out, "--details")
    assert rc == 0, err
    rows = read_csv(csv_out)
    header = rows[0]
    assert header[: 1 + len(mrgfast.OBSERVATIONS)] == ["Reports", *mrgfast.OBSERVATIONS]
    assert [r[1 : 1 + len(mrgfast.OBSERVATIONS)] for r in rows[1:]] == expected_codes(texts)  # codes unchanged
    assert rows[1][header.index("Pleural Effusion side")] == "left"
    assert rows[1][header.index("Pleural Effusion degree")] == "mild"
    assert rows[2][header.index("Atelectasis side")] == "bilateral" and rows[3][header.index("Atelectasis side")] == ""
    rc, _, err = cli(
        "label", src, "--details", "--labeler", "chexbert", "--chexbert-checkpoint", "x", "--bert-path", "y"
    )
    assert rc == 2
