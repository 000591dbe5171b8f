"""`mrgfast label` / `score` outputs under errors, kills and odd paths (issue 10): whole or absent,
never mixed with the input, temporary files cleaned; text that is not valid Unicode named by line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from mrgfast import atomic

SURROGATE_LINE = '{"id": "b", "report": "a\\ud800b"}\n'


def _jsonl(path, n=3, bad_at=None):
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n):
            if i == bad_at:
                f.write(SURROGATE_LINE.replace('"b"', f'"r{i}"'))
            else:
                f.write(json.dumps({"id": f"r{i}", "report": f"Small left pleural effusion {i}."}) + "\n")


def test_lone_surrogate_is_a_named_bad_row(tmp_path, cli):
    src = tmp_path / "in.jsonl"
    _jsonl(src, 3, bad_at=1)
    rc, out, err = cli("label", src)
    assert rc == 1
    assert f"{src}:2: field 'report' is not valid text" in err
    assert out == ""  # nothing reached stdout
    rc, out, err = cli("label", src, "--skip-bad")
    assert rc == 0
    assert f"skipped {src}:2" in err
    assert len(out.strip().splitlines()) == 1 + 2  # header + the two good rows


def test_score_skips_surrogate_with_skip_bad(tmp_path, cli):
    src = tmp_path / "p.jsonl"
    _jsonl(src, 3, bad_at=2)
    ref = tmp_path / "r.jsonl"
    _jsonl(ref, 3)
    rc, _, err = cli("score", "--pred", src, "--ref", ref, "--json", tmp_path / "s.json", "--no-plot")
    assert rc == 1 and f"{src}:3: field 'report' is not valid text" in err
    rc, _, err = cli("score", "--pred", src, "--ref", ref, "--json", tmp_path / "s.json", "--no-plot", "--skip-bad")
    assert rc == 0, err
    assert json.loads((tmp_path / "s.json").read_text())["n"] == 2


def test_no_partial_stdout_when_a_late_row_is_bad(tmp_path, cli):
    src = tmp_path / "in.jsonl"
    _jsonl(src, 50, bad_at=45)
    rc, out, err = cli("label", src, "--chunk-size", "10")
    assert rc == 1
    assert out == ""
    assert "45 good rows read before it" in err


def test_output_folder_refused_before_any_work(tmp_path, cli):
    src = tmp_path / "in.jsonl"
    _jsonl(src)
    (tmp_path / "dir").mkdir()
    rc, _, err = cli("label", src, "-o", tmp_path / "dir")
    assert rc == 1 and "is a folder" in err
    rc, _, err = cli("label", src, "-o", tmp_path / "nope" / "x.csv")
    assert rc == 1 and "does not exist" in err
    rc, _, err = cli("score", "--pred", src, "--ref", src, "--json", tmp_path / "dir", "--no-plot")
    assert rc == 2 and "is a folder" in err


def test_output_equal_to_input_refused(tmp_path, cli):
    src = tmp_path / "in.jsonl"
    _jsonl(src)
    before = src.read_bytes()
    rc, _, err = cli("label", src, "-o", src)
    assert rc == 1 and "is also an input" in err
    os.symlink(src, tmp_path / "alias.jsonl")
    rc, _, err = cli("label", src, "-o", tmp_path / "alias.jsonl")
    assert rc == 1 and "is also an input" in err
    rc, _, err = cli("score", "--pred", src, "--ref", src, "--json", src, "--no-plot")
    assert rc == 2 and "is also an input" in err
    assert src.read_bytes() == before


def test_stale_temporary_files_of_dead_processes_are_removed(tmp_path, cli):
    src = tmp_path / "in.jsonl"
    _jsonl(src)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f"out.tmp-{int(dead.stdout)}.csv"
    stale.write_text("half a file")
    mine_alive = tmp_path / f"out.tmp-{os.getppid()}.csv"  # a live process's: left alone
    mine_alive.write_text("in progress")
    rc, _, err = cli("label", src, "-o", tmp_path / "out.csv")
    assert rc == 0, err
    assert not stale.exists() and mine_alive.exists()
    assert sorted(p.name for p in tmp_path.iterdir() if ".tmp-" in p.name) == [mine_alive.name]


def test_score_json_keeps_the_old_file_when_writing_fails(tmp_path, monkeypatch):
    target = tmp_path / "score.json"
    target.write_text('{"old": true}\n')

    class Boom(Exception):
        pass

    def exploding_dumps(*a, **k):
        raise Boom

    monkeypatch.setattr(atomic.json, "dumps", exploding_dumps)
    with pytest.raises(Boom):
        atomic.write_json(target, {"new": 1})
    assert json.loads(target.read_text()) == {"old": True}
    assert [p.name for p in tmp_path.iterdir()] == ["score.json"]


def test_sigterm_during_label_leaves_no_temporary_file(tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("Small left pleural effusion and mild cardiomegaly.\n" * 400_000)
    out = tmp_path / "out.csv"
    proc = subprocess.Popen(
        [sys.executable, "-m", "mrgfast", "label", str(src), "-o", str(out), "--no-progress", "--chunk-size", "1000"],
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 30
    while time.time() < deadline and not any(".tmp-" in p.name for p in tmp_path.iterdir()):
        time.sleep(0.02)
    assert any(".tmp-" in p.name for p in tmp_path.iterdir()), "label never started writing"
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)
    assert proc.returncode != 0
    assert not out.exists()
    assert not [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name]


@pytest.mark.parametrize("threads", ["100000000000", "0", "-1", "257"])
def test_thread_bomb_flags_refused(tmp_path, cli, threads):
    src = tmp_path / "in.jsonl"
    _jsonl(src)
    rc, _, err = cli("label", src, "--threads", threads)
    assert rc == 2 and "--threads must be between 1 and 256" in err
    rc, _, err = cli("score", "--pred", src, "--ref", src, "--threads", threads, "--json", tmp_path / "s.json")
    assert rc == 2 and "--threads must be" in err
