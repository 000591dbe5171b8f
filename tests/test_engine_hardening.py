"""The engine under hostile use: fork after labelling, thread bombs, many pool sizes, Ctrl-C in a long
batch, text that is not valid Unicode, wrong argument types (issue 10)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

import mrgfast
from mrgfast import _core

REPORTS = ["Small left pleural effusion.", "No acute cardiopulmonary process.", "Mild cardiomegaly."] * 40


def _python(code: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=timeout
    )


def test_child_labels_after_fork():
    """rayon's global pool does not survive fork; the engine's own pools must (this hung before)."""
    r = _python(
        """
        import os, sys, numpy as np, mrgfast
        reports = ["Small left pleural effusion.", "No pneumothorax.", "Mild cardiomegaly."] * 40
        parent = mrgfast.label(reports)            # threads=None: a pool now lives in the parent
        mrgfast.label(reports, threads=2)
        pid = os.fork()
        if pid == 0:
            ok = np.array_equal(mrgfast.label(reports), parent) and np.array_equal(
                mrgfast.label(reports, threads=2), parent)
            os._exit(0 if ok else 3)
        _, status = os.waitpid(pid, 0)
        print("child-exit", os.waitstatus_to_exitcode(status))
        """,
        timeout=30,
    )
    assert r.returncode == 0, r.stderr
    assert "child-exit 0" in r.stdout


def test_multiprocessing_fork_pool_labels():
    r = _python(
        """
        import multiprocessing as mp, numpy as np, mrgfast
        reports = ["Small left pleural effusion.", "No pneumothorax."] * 50
        want = mrgfast.label(reports)
        with mp.get_context("fork").Pool(2) as pool:
            got = pool.map(mrgfast.label, [reports] * 4)
        print(all(np.array_equal(g, want) for g in got))
        """,
        timeout=30,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "True"


@pytest.mark.parametrize("threads", [2**40, 100_000_000_000, mrgfast.MAX_THREADS + 1, 0, -1])
def test_thread_count_out_of_range_is_refused(threads):
    with pytest.raises(ValueError, match=f"between 1 and {mrgfast.MAX_THREADS}"):
        mrgfast.label(["a", "b"], threads=threads)
    with pytest.raises(ValueError, match="threads"):
        mrgfast.mccs(["a", "b"], ["a", "b"], threads=threads)


def test_core_refuses_thread_bomb_itself():
    with pytest.raises(ValueError, match="more than the engine allows"):
        _core.label(["a", "b"], 2**40)
    assert _core.MAX_THREADS == mrgfast.MAX_THREADS == 256


@pytest.mark.parametrize("threads", [True, 2.0, "4"])
def test_thread_count_of_wrong_type(threads):
    with pytest.raises(TypeError, match="threads must be an int or None"):
        mrgfast.label(["a", "b"], threads=threads)


def test_distinct_thread_counts_do_not_pile_up_threads():
    """Each threads= value used to keep its own pool forever (2,057 OS threads after 1000 and 1001)."""
    r = _python(
        """
        import os, time, mrgfast
        reports = ["No effusion."] * 2000
        for n in range(20, 60, 4):
            mrgfast.label(reports, threads=n)
        deadline = time.time() + 10
        while len(os.listdir("/proc/self/task")) > 44 + 48 + 52 + 56 + 16 and time.time() < deadline:
            time.sleep(0.05)  # threads of evicted pools exit asynchronously
        print(len(os.listdir("/proc/self/task")))
        """
    )
    assert r.returncode == 0, r.stderr
    # the 4 most recent pools (44 + 48 + 52 + 56 threads) and the interpreter's own; all 10 sizes would be 380
    assert int(r.stdout) <= 44 + 48 + 52 + 56 + 16


def test_ctrl_c_stops_a_long_batch_promptly():
    r = _python(
        """
        import os, signal, threading, time, mrgfast
        # Python leaves SIGINT ignored when its parent ignored it (a shell's background job): Ctrl-C's handler
        signal.signal(signal.SIGINT, signal.default_int_handler)
        reports = ["There is a small left pleural effusion and mild cardiomegaly."] * 3_000_000
        mrgfast.label(reports[:100])
        sent = []
        def kick():
            time.sleep(0.3)
            sent.append(time.perf_counter())
            os.kill(os.getpid(), signal.SIGINT)
        threading.Thread(target=kick).start()
        try:
            mrgfast.label(reports)
            print("finished")
        except KeyboardInterrupt:
            print("interrupted", time.perf_counter() - sent[0])
        """
    )
    assert r.returncode == 0, r.stderr
    word, *rest = r.stdout.split()
    assert word == "interrupted", r.stdout
    assert float(rest[0]) < 1.0  # ~0.05 s measured on an idle core; generous for a loaded CI box


def test_lone_surrogate_names_the_index():
    with pytest.raises(ValueError, match=r"reports\[1\] is not valid text"):
        mrgfast.label(["ok", "a\ud800b"])
    with pytest.raises(ValueError, match=r"generated\[0\] is not valid text"):
        mrgfast.mccs(["\udcff"], ["x"])
    with pytest.raises(ValueError, match="reference is not valid text"):
        mrgfast.mccs_group(["x"], "\ud800")


@pytest.mark.parametrize("arg", [b"abc", bytearray(b"abc")])
def test_bytes_are_not_taken_for_a_sequence_of_ints(arg):
    with pytest.raises(TypeError, match="decode it to str first"):
        mrgfast.label(arg)


def test_subset_given_as_one_string():
    labels = mrgfast.label(REPORTS)
    one = mrgfast.ce_metrics(labels, labels, subset="Edema")
    assert one["observations"] == ["Edema"]
    five = mrgfast.ce_metrics(labels, labels, subset="competition5")
    assert five["observations"] == list(mrgfast.COMPETITION_FIVE)
    with pytest.raises(ValueError, match="unknown observations"):
        mrgfast.ce_metrics(labels, labels, subset="Edemaa")


def test_to_records_refuses_an_invalid_code_even_as_int8():
    labels = mrgfast.label(REPORTS[:2]).copy()
    labels[1, 3] = 99
    with pytest.raises(ValueError, match=r"labels\[1, 3\].*99"):
        mrgfast.engine.to_records(labels)


def test_results_unchanged_across_thread_counts():
    want = mrgfast.label(REPORTS * 100, threads=1)
    for t in (2, 3, None):
        assert np.array_equal(mrgfast.label(REPORTS * 100, threads=t), want)
