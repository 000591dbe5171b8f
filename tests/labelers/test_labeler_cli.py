"""The labeler options of the CLI end to end with the tiny CheXbert: `mrgfast label --labeler chexbert`,
`mrgfast score --labeler rust,chexbert` (CE side by side) and `mrgfast agree` (table, JSON, PNG)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

pytest.importorskip("torch")

from tiny_chexbert import report_corpus

import mrgfast
from mrgfast.cli.main import main
from mrgfast.labelers import CheXbert, RustLabeler
from mrgfast.labelers.agreement import agreement

REPORTS = [r for r in report_corpus(200, seed=3) if r.strip() and "\n" not in r][:80]


def chex_flags(tiny):
    ckpt, bert = tiny
    return ["--chexbert-checkpoint", str(ckpt), "--bert-path", str(bert), "--chexbert-device", "cpu"]


def test_label_with_chexbert(tmp_path, tiny_chexbert):
    src = tmp_path / "r.txt"
    src.write_text("\n".join(REPORTS) + "\n", encoding="utf-8")
    out = tmp_path / "o.csv"
    assert main(["label", str(src), "-o", str(out), "--labeler", "chexbert", *chex_flags(tiny_chexbert)]) == 0
    with out.open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    want = CheXbert(*tiny_chexbert, device="cpu").label(REPORTS)
    got = np.array(
        [[mrgfast.BLANK if row[o] == "" else int(float(row[o])) for o in mrgfast.OBSERVATIONS] for row in rows],
        dtype=np.int8,
    )
    assert np.array_equal(got, want)


def test_label_chexbert_needs_its_files(tmp_path, capsys):
    src = tmp_path / "r.txt"
    src.write_text("No effusion.\n")
    assert main(["label", str(src), "--labeler", "chexbert"]) == 2
    assert "--chexbert-checkpoint" in capsys.readouterr().err
    assert main(["label", str(src), "--labeler", "chexbert", "--chexbert-checkpoint", "x.pth", "--bert-path", "y"]) == 2
    assert "x.pth" in capsys.readouterr().err


def test_score_side_by_side(tmp_path, tiny_chexbert, capsys):
    pred, ref = tmp_path / "p.txt", tmp_path / "r.txt"
    pred.write_text("\n".join(REPORTS[:30]) + "\n", encoding="utf-8")
    ref.write_text("\n".join(REPORTS[30:60]) + "\n", encoding="utf-8")
    js = tmp_path / "s.json"
    argv = ["score", "--pred", str(pred), "--ref", str(ref), "--json", str(js), "--no-plot"]
    assert main([*argv, "--labeler", "rust,chexbert", *chex_flags(tiny_chexbert)]) == 0
    out = capsys.readouterr().out
    assert "clinical efficacy by labeler (primary: rust)" in out and "kappa chexbert" in out
    result = json.loads(js.read_text())
    assert result["labeler"] == "rust" and list(result["by_labeler"]) == ["rust", "chexbert"]
    backend = CheXbert(*tiny_chexbert, device="cpu")
    want = mrgfast.ce_metrics(REPORTS[:30], REPORTS[30:60], labeler=backend)
    assert result["by_labeler"]["chexbert"]["ce"]["all"]["micro"] == pytest.approx(want["micro"])
    assert result["by_labeler"]["rust"]["ce"]["all"]["micro"] == pytest.approx(result["ce"]["all"]["micro"])
    # chexbert as the primary: the main table is CheXbert's
    assert main([*argv, "--labeler", "chexbert", *chex_flags(tiny_chexbert)]) == 0
    assert json.loads(js.read_text())["ce"]["all"]["micro"] == pytest.approx(want["micro"])


def test_agree_command(tmp_path, tiny_chexbert, capsys):
    src = tmp_path / "r.jsonl"
    src.write_text("".join(json.dumps({"report": r}) + "\n" for r in REPORTS), encoding="utf-8")
    js, png = tmp_path / "a.json", tmp_path / "a.png"
    assert main(["agree", str(src), "--json", str(js), "--plot", str(png), *chex_flags(tiny_chexbert)]) == 0
    out = capsys.readouterr().out
    assert "rust (rows) vs chexbert (columns)" in out and "kappa2" in out
    result = json.loads(js.read_text())
    want = agreement(
        RustLabeler().label(REPORTS), CheXbert(*tiny_chexbert, device="cpu").label(REPORTS), names=("rust", "chexbert")
    )
    assert result["per_observation"] == json.loads(json.dumps(want["per_observation"]))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["agree", str(src), "--labeler", "rust"]) == 2


def test_eval_metrics_by_labeler(tiny_chexbert):
    from mrgfast.eval.metrics import eval_metrics
    from mrgfast.labelers import RUST

    backend = CheXbert(*tiny_chexbert, device="cpu")
    gen = [f"<think>x</think><report>{r}</report>" for r in REPORTS[:20]]
    result = eval_metrics(gen, REPORTS[20:40], labelers=[RUST, backend], nlg=False)
    assert result["labeler"] == "rust" and set(result["by_labeler"]) == {"rust", "chexbert"}
    want = mrgfast.ce_metrics(REPORTS[:20], REPORTS[20:40], labeler=backend)
    assert result["by_labeler"]["chexbert"]["ce"]["all"]["macro"] == pytest.approx(want["macro"])
    assert "rust vs chexbert" in result["agreement"]


def test_verl_and_openrlhf_with_chexbert(tiny_chexbert, monkeypatch):
    from mrgfast.reward import openrlhf, verl

    ckpt, bert = tiny_chexbert
    backend = CheXbert(ckpt, bert, device="cpu")
    gen = [f"<think>t</think><report>{r}</report>" for r in REPORTS[:8]]
    refs = REPORTS[8:16]
    want_mccs = mrgfast.mccs(REPORTS[:8], refs, labeler=backend)
    got = verl.compute_score_batch(
        ["iu"] * 8, gen, refs, labeler="chexbert", chexbert_checkpoint=str(ckpt), bert_path=str(bert), details=True
    )
    assert np.allclose([g["mccs"] for g in got], want_mccs)
    monkeypatch.setenv("MRGFAST_LABELER", "chexbert")
    monkeypatch.setenv("MRGFAST_CHEXBERT_CHECKPOINT", str(ckpt))
    monkeypatch.setenv("MRGFAST_BERT_PATH", str(bert))
    parts = openrlhf.score_queries(gen, [""] * 8, refs)
    assert np.allclose(parts["mccs"], want_mccs)
    monkeypatch.delenv("MRGFAST_CHEXBERT_CHECKPOINT")
    with pytest.raises(ValueError, match="needs checkpoint"):
        openrlhf.score_queries(gen, [""] * 8, refs)
