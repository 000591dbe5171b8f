"""`mrgfast eval` end to end on a tiny random Qwen2.5-VL: predictions, resume after an interruption
(in-process and a SIGKILLed process), metrics equal to `mrgfast score`, adapters, settings checks."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

BASE = ["--dataset-kind", "synthetic", "--no-meteor", "--no-progress"]


def _ids(path):
    return [json.loads(line)["id"] for line in Path(path).read_text().splitlines() if line.strip()]


def _opts(assets, out, **kw):
    from mrgfast.eval.generate import GenerationSettings
    from mrgfast.eval.run import EvalOptions

    gen = GenerationSettings(max_new_tokens=kw.pop("max_new_tokens", 6))
    return EvalOptions(
        model=assets["model"],
        data=assets["annotation"],
        dataset_kind="synthetic",
        out=str(out),
        generation=gen,
        meteor=False,
        progress=False,
        **kw,
    )


class Stop(Exception):
    pass


def test_interrupted_run_resumes_and_matches_an_uninterrupted_one(tiny_assets, tmp_path):
    from mrgfast.eval.run import run_eval

    full = run_eval(_opts(tiny_assets, tmp_path / "full", batch_size=4))
    assert full["n"] == 12 and full["generated_now"] == 12 and full["resumed"] == 0

    def stop_after_first(done, total):
        raise Stop

    with pytest.raises(Stop):
        run_eval(_opts(tiny_assets, tmp_path / "cut", batch_size=4), on_batch=stop_after_first)
    pred = tmp_path / "cut" / "predictions.jsonl"
    assert len(_ids(pred)) == 4  # the first batch is on disk, nothing else
    assert not (tmp_path / "cut" / "metrics.json").exists()

    again = run_eval(_opts(tiny_assets, tmp_path / "cut", batch_size=4))
    assert again["resumed"] == 4 and again["generated_now"] == 8 and again["n"] == 12
    assert sorted(_ids(pred)) == sorted(_ids(tmp_path / "full" / "predictions.jsonl"))
    assert len(set(_ids(pred))) == 12

    # greedy decoding: the resumed file holds the same texts as the uninterrupted one
    def by_id(p):
        return {json.loads(ln)["id"]: json.loads(ln) for ln in Path(p).read_text().splitlines()}

    assert by_id(pred) == by_id(tmp_path / "full" / "predictions.jsonl")
    assert again["ce"] == full["ce"] and again["mccs"] == full["mccs"]

    # a finished run only recomputes the metrics
    third = run_eval(_opts(tiny_assets, tmp_path / "cut", batch_size=4))
    assert third["resumed"] == 12 and third["generated_now"] == 0 and third["timing_s"]["model_load"] == 0


def test_killed_process_resumes_and_ce_equals_mrgfast_score(tiny_assets, tmp_path, cli):
    out = tmp_path / "ev"
    pred = out / "predictions.jsonl"
    argv = [
        "eval",
        "--model",
        tiny_assets["model"],
        "--data",
        tiny_assets["annotation"],
        *BASE,
        "--batch-size",
        "1",
        "--max-new-tokens",
        "96",
        "--out",
        str(out),
    ]
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "mrgfast.cli.main", *argv], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.time() + 240
    try:
        while time.time() < deadline and proc.poll() is None:
            if pred.exists() and len(pred.read_text().splitlines()) >= 2:
                break
            time.sleep(0.02)
        assert proc.poll() is None, (
            "eval finished (or failed) before it could be killed: " + proc.stderr.read().decode()[-2000:]
        )
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
    written = _ids(pred)
    assert 2 <= len(written) < 12
    assert not (out / "metrics.json").exists()

    rc, stdout, err = cli(*argv)
    assert rc == 0, err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["resumed"] == len(written) and metrics["generated_now"] == 12 - len(written)
    assert _ids(pred)[: len(written)] == written and len(set(_ids(pred))) == 12
    assert "format compliance" in stdout and "BLEU-4" in stdout and "micro (14)" in stdout
    assert "side-aware CE" in stdout and "MCCS+" in stdout  # beside the usual table
    for key in ("bleu1", "bleu4", "rouge_l", "cider"):
        assert isinstance(metrics["nlg"][key], float)
    assert set(metrics["format"]) == {"rate", "compliant"}

    rc, _, err = cli(
        "score",
        "--pred",
        pred,
        "--pred-field",
        "generated",
        "--ref",
        pred,
        "--ref-field",
        "reference",
        "--no-plot",
        "--json",
        tmp_path / "score.json",
    )
    assert rc == 0, err
    score = json.loads((tmp_path / "score.json").read_text())
    assert score["ce"] == metrics["ce"]
    assert score["mccs"] == metrics["mccs"]
    assert score["per_sample"] == metrics["per_sample"]
    assert score["ce_sides"] == metrics["ce_sides"] and score["mccs_plus"] == metrics["mccs_plus"]


def test_resume_with_other_settings_is_refused_with_the_differences(tiny_assets, tmp_path, cli):
    from mrgfast.eval.run import run_eval

    run_eval(_opts(tiny_assets, tmp_path / "ev", batch_size=6, limit=6, nlg=False))
    argv = [
        "eval",
        "--model",
        tiny_assets["model"],
        "--data",
        tiny_assets["annotation"],
        *BASE,
        "--no-nlg",
        "--limit",
        "6",
        "--out",
        tmp_path / "ev",
    ]
    rc, _, err = cli(*argv, "--max-new-tokens", "9")
    assert rc == 1
    assert "written with other settings" in err and "'max_new_tokens': 6" in err and "'max_new_tokens': 9" in err
    rc, _out, err = cli(*argv, "--max-new-tokens", "9", "--overwrite", "--batch-size", "6")
    assert rc == 0, err
    assert json.loads((tmp_path / "ev" / "metrics.json").read_text())["generation"]["max_new_tokens"] == 9


def test_lora_adapter_folder_as_model_finds_its_base(tiny_assets, tmp_path):
    import torch
    from peft import LoraConfig, get_peft_model

    from mrgfast.eval.run import run_eval
    from mrgfast.models.loading import load_model

    base = load_model(tiny_assets["model"])
    peft_model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    with torch.no_grad():  # a non-zero adapter, so it changes the outputs
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    peft_model.save_pretrained(tmp_path / "adapter")
    res = run_eval(_opts({**tiny_assets, "model": str(tmp_path / "adapter")}, tmp_path / "ev", limit=2, nlg=False))
    assert res["adapter"] == str((tmp_path / "adapter").resolve())
    assert res["model"] == str(Path(tiny_assets["model"]).resolve())
    assert res["n"] == 2


def test_bad_inputs_give_clear_errors(tiny_assets, tmp_path, cli):
    common = ["--data", tiny_assets["annotation"], *BASE, "--out", tmp_path / "ev"]
    rc, _, err = cli("eval", "--model", tmp_path / "nope", *common)
    assert rc == 1 and "folder not found" in err
    rc, _, err = cli("eval", "--model", tiny_assets["model"], *common, "--split", "nosuch")
    assert rc == 1 and "split 'nosuch' not present" in err
    rc, _, err = cli("eval", "--model", tiny_assets["model"], *common, "--adapter", tmp_path)
    assert rc == 1 and "no adapter_config.json" in err
    rc, _, err = cli("eval", "--model", tiny_assets["model"], *common, "--do-sample", "--temperature", "0")
    assert rc == 1 and "--temperature must be > 0" in err
    # a corrupt line inside an existing predictions file is named, nothing is overwritten
    (tmp_path / "ev").mkdir(exist_ok=True)  # the run lock of the failed runs above created it
    pred = tmp_path / "ev" / "predictions.jsonl"
    pred.write_text('{"id": "SYN00003", "generated": "g", "report": "g"}\n{"id": "x"}\n')
    rc, _, err = cli("eval", "--model", tiny_assets["model"], *common)
    assert rc == 1 and f"{pred}:1: field 'reference' is missing" in err
    assert pred.read_text().startswith('{"id": "SYN00003"')


def test_vllm_flag_without_vllm_or_gpu_says_why(tiny_assets, tmp_path, cli):
    from mrgfast.eval.generate import vllm_available

    why = vllm_available()
    if why is None:
        pytest.skip("vLLM and a GPU are present here")
    rc, _, err = cli(
        "eval",
        "--model",
        tiny_assets["model"],
        "--data",
        tiny_assets["annotation"],
        *BASE,
        "--vllm",
        "--out",
        tmp_path / "ev",
    )
    assert rc == 1 and "--vllm:" in err and why in err
