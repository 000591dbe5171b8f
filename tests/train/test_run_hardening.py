"""Run folders under kills, reruns and concurrent runs (issue 10): atomic checkpoints, resume from the last
complete one, refusals that name what is wrong, one process per folder, every setting checked before any
stage (the `--dry-run` path and the real run share `validate_config`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from mrgfast.train.checkpoints import COMPLETE_MARKER, STAGING_DIR
from mrgfast.train.config import MrgConfig, build_config
from mrgfast.train.run import RunError, run

SFT_ONLY = dict(stages="sft", evaluate="false", plot="false", sft={"max_steps": "4", "save_steps": "2"})

KILL_IN_SECOND_SAVE = """
import json, os, signal, sys
import transformers
from mrgfast.train.config import build_config
from mrgfast.train.run import run

orig = transformers.Trainer._save_optimizer_and_scheduler
def dying(self, output_dir):
    orig(self, output_dir)
    if self.state.global_step == 4:          # the second save: weights and optimizer written, not the rest
        os.kill(os.getpid(), signal.SIGKILL)
transformers.Trainer._save_optimizer_and_scheduler = dying
from mrgfast.cli.main import main
sys.exit(main(sys.argv[1:]))  # `mrgfast train --preset tiny --FIELD VALUE ...`
"""


def _flags(overrides: dict) -> list[str]:
    out = []
    for k, v in overrides.items():
        if isinstance(v, dict):
            for kk, vv in v.items():
                out += [f"--{k}.{kk}", str(vv)]
        else:
            out += [f"--{k}", str(v)]
    return out


def _sft_dir(tmp_path):
    return tmp_path / "run" / "sft"


def test_kill_9_during_checkpoint_save_resumes_from_last_complete(tmp_path, synth_dir, tiny_model_dir, small, cli_main):
    overrides = small(tmp_path, synth_dir, tiny_model_dir, **SFT_ONLY)
    argv = ["train", "--preset", "tiny", *_flags(overrides)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", KILL_IN_SECOND_SAVE, *argv], env=env, capture_output=True, text=True)
    assert proc.returncode == -9, proc.stderr[-2000:]
    sft = _sft_dir(tmp_path)
    assert [p.name for p in sft.glob("checkpoint-*")] == ["checkpoint-2"]  # the half-written one is not there
    assert (sft / STAGING_DIR / "checkpoint-4").is_dir()
    assert not (sft / STAGING_DIR / "checkpoint-4" / COMPLETE_MARKER).exists()
    rc, _, err = cli_main(*argv)
    assert rc == 2 and "holds a previous run" in err and "--resume" in err and "--overwrite" in err
    rc, _, err = cli_main(*argv, "--resume")
    assert rc == 0, err
    assert f"sft from {sft / 'checkpoint-2'}" in (tmp_path / "run" / "train.log").read_text()
    state = json.loads((sft / "checkpoint-4" / "trainer_state.json").read_text())
    assert state["global_step"] == 4 and (sft / "checkpoint-4" / COMPLETE_MARKER).is_file()


def _crash_after_first_save(tmp_path, synth_dir, tiny_model_dir, small, monkeypatch):
    """A run stopped (like kill -9) after checkpoint-2, returning its config."""
    from transformers import TrainerCallback

    import mrgfast.train.run as runmod

    class Stop(Exception):
        pass

    class CrashAt3(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            if state.global_step == 3:
                raise Stop

    cfg = build_config("tiny", None, small(tmp_path, synth_dir, tiny_model_dir, **SFT_ONLY))
    orig = runmod._callbacks
    monkeypatch.setattr(runmod, "_callbacks", lambda c, s: [*orig(c, s), CrashAt3()])
    with pytest.raises(Stop):
        run(cfg)
    monkeypatch.setattr(runmod, "_callbacks", orig)
    return cfg


def test_resume_refusals_name_the_checkpoint(tmp_path, synth_dir, tiny_model_dir, small, monkeypatch):
    cfg = _crash_after_first_save(tmp_path, synth_dir, tiny_model_dir, small, monkeypatch)
    sft = _sft_dir(tmp_path)
    good = sft / "checkpoint-2"
    # an incomplete newer folder (e.g. left by a version without atomic saves): skipped, named
    partial = sft / "checkpoint-3"
    partial.mkdir()
    (partial / "adapter_model.safetensors").write_bytes(b"\x00" * 10)
    with pytest.raises(RunError, match=f"cannot resume from {partial}: incomplete"):
        run(cfg, resume=str(partial))
    # a checkpoint of another run
    other = tmp_path / "other" / "sft" / "checkpoint-2"
    other.mkdir(parents=True)
    with pytest.raises(RunError, match="is not a checkpoint of this run"):
        run(cfg, resume=str(other))
    # corrupt optimizer state: the file is named, no raw traceback
    opt = good / "optimizer.pt"
    saved = opt.read_bytes()
    opt.write_bytes(saved[: len(saved) // 2])
    with pytest.raises(RunError, match=r"checkpoint-2: optimizer.pt is corrupt or truncated"):
        run(cfg, resume=str(good))
    opt.write_bytes(saved)
    # missing optimizer / scheduler state: resumes, but says loudly that it will diverge
    os.remove(good / "scheduler.pt")
    assert run(cfg, resume="latest") == 0
    log = (tmp_path / "run" / "train.log").read_text()  # the mrgfast logger writes here, not to caplog
    assert f"skipping {partial}: incomplete" in log
    assert "lacks scheduler.pt" in log and "will NOT match" in log


def test_resume_in_an_empty_folder_is_refused(tmp_path, synth_dir, tiny_model_dir, small):
    cfg = build_config("tiny", None, small(tmp_path, synth_dir, tiny_model_dir, **SFT_ONLY))
    with pytest.raises(RunError, match="nothing to resume"):
        run(cfg, resume="latest")


HOLD_LOCK = """
import sys, time
from mrgfast.runlock import folder_lock
with folder_lock(sys.argv[1], "train"):
    print("locked", flush=True)
    time.sleep(60)
"""


@pytest.fixture
def held_folder(tmp_path):
    folder = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(folder)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    yield folder, proc.pid
    proc.kill()
    proc.wait()


def test_second_train_on_a_folder_exits_2_naming_the_holder(held_folder, cli_main):
    folder, pid = held_folder
    rc, _, err = cli_main("train", "--preset", "tiny", "--output_dir", folder, "--tiny_if_missing", "false")
    assert rc == 2
    assert f"is in use by another mrgfast train (PID {pid}" in err


def test_second_eval_on_a_folder_exits_2_naming_the_holder(held_folder, cli_main, tmp_path):
    folder, pid = held_folder
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text("{}")
    rc, _, err = cli_main("eval", "--model", tmp_path / "m", "--data", tmp_path / "a.json", "--out", folder)
    assert rc == 2 and f"(PID {pid}" in err


def test_lock_is_released_when_its_holder_is_killed(tmp_path):
    from mrgfast.runlock import folder_lock

    folder = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(folder)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    proc.kill()
    proc.wait()
    with folder_lock(folder, "train"):
        pass


@pytest.fixture
def cli_main(capsys):
    from mrgfast.cli.main import main

    def go(*argv):
        capsys.readouterr()
        rc = main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return rc, out, err

    return go


# ------------------------------------------------------------------------------------------ configuration
@pytest.mark.parametrize(
    "flag, value, words",
    [
        ("mccs_weight", "nan", "mccs_weight must be a finite number"),
        ("format_weight", "inf", "format_weight must be a finite number"),
        ("mccs_uncertain", "7", "uncertain must be a finite value in [-1, 1]"),
        ("mccs_margin", "nan", "margin"),
        ("reward_threads", "0", "reward_threads must be between 1 and 256"),
        ("reward_threads", "100000000000", "reward_threads must be between 1 and 256"),
        ("threads", "0", "threads must be between 1 and 256"),
        ("seed", "-1", "seed must be an integer in [0, 2**32)"),
        ("lora_dropout", "1.5", "lora_dropout must be in [0, 1)"),
        ("lora_r", "0", "lora_r must be at least 1"),
        ("eval_batch_size", "0", "eval_batch_size must be at least 1"),
        ("image_check", "maybe", "image_check must be one of decode, open, exists, none"),
        ("dtype", "fp8", "dtype must be one of"),
        ("stages", "grpo,sft", "out of order"),
        ("grpo.num_generations", "1", "at least 2 generations"),
        ("grpo.save_only_model", "true", "save_only_model is true"),
    ],
)
def test_dry_run_catches_every_bad_setting(cli_main, flag, value, words):
    rc, _, err = cli_main("train", "--preset", "tiny", "--dry-run", f"--{flag}", value)
    assert rc == 2, err
    assert words in err


@pytest.mark.parametrize(
    "yaml_text, words",
    [
        ("grpo: 5\n", "section 'grpo' must be a mapping"),
        ("sft: [1]\n", "section 'sft' must be a mapping"),
        ("lora_r: [1, 2]\n", "lora_r: expected int, got list"),
    ],
)
def test_wrong_type_yaml_is_named(tmp_path, cli_main, yaml_text, words):
    cfg = tmp_path / "run.yaml"
    cfg.write_text(yaml_text)
    rc, _, err = cli_main("train", "--preset", "tiny", "--config", cfg, "--dry-run")
    assert rc == 2 and words in err and "Traceback" not in err


def test_every_field_is_documented_and_listed(cli_main):
    import dataclasses

    fields = dataclasses.fields(MrgConfig)
    assert all(f.metadata.get("help") for f in fields), [f.name for f in fields if not f.metadata.get("help")]
    assert MrgConfig.__doc__ and "validate_config" in MrgConfig.__doc__
    rc, out, _ = cli_main("train", "--list-fields")
    assert rc == 0
    for f in fields:
        assert f"--{f.name} " in out
    assert "float" in out and "int or null" in out and "list[str]" in out


def test_help_points_to_the_field_list(capsys):
    from mrgfast.cli.main import main

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    assert "--list-fields" in capsys.readouterr().out


def test_real_run_validates_before_any_stage(tmp_path):
    cfg = build_config("tiny", None, {"output_dir": str(tmp_path / "r")})
    cfg.mrg.mccs_weight = float("nan")  # set after building: the run itself re-checks
    t0 = time.perf_counter()
    with pytest.raises(RunError, match="mccs_weight must be a finite number"):
        run(cfg)
    assert time.perf_counter() - t0 < 5
    assert not (tmp_path / "r").exists()
