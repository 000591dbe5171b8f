"""The lock (requirements/lock.txt): still a resolution of pyproject's ranges, and the environment is exactly it.

The checks live in scripts/lockcheck.py, which scripts/setup.sh also runs after installing; here they run on this
checkout and this interpreter, and on deliberately stale locks to show that they fail.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("lockcheck", ROOT / "scripts" / "lockcheck.py")
lockcheck = importlib.util.module_from_spec(_spec)
sys.modules["lockcheck"] = lockcheck  # dataclasses look the module up by name
_spec.loader.exec_module(lockcheck)

LOCK_TEXT = lockcheck.LOCK.read_text()


def _pins(text=LOCK_TEXT):
    return lockcheck.parse_lock(text)


def _version(name, text=LOCK_TEXT):
    return next(str(p.version) for p in _pins(text) if p.name == canonicalize_name(name))


def _repin(text, name, version):
    """The lock with ``name`` pinned to ``version`` (hashes left as they are: only the checks read it)."""
    new, n = re.subn(rf"(?m)^{re.escape(name)}==[^ ;\\\n]+", f"{name}=={version}", text)
    assert n, name
    return new


def _drop(text, name):
    """The lock without ``name``'s entry (its hash and comment lines go with it)."""
    lines, out, skipping = text.splitlines(), [], False
    for line in lines:
        if re.match(rf"^{re.escape(name)}==", line):
            skipping = True
            continue
        if skipping and line.startswith(" "):
            continue
        skipping = False
        out.append(line)
    return "\n".join(out) + "\n"


# ------------------------------------------------------------------------------------------- the lock itself
def test_lock_satisfies_every_range_setup_installs_from():
    problems = lockcheck.lock_problems(_pins(), lockcheck.needed())
    assert not problems, "the lock is stale; run `bash scripts/lock.sh`:\n" + "\n".join(problems)


def test_lock_names_each_package_setup_installs():
    names = {p.name for p in _pins()}
    for want in lockcheck.needed():
        assert canonicalize_name(want.requirement.name) in names, want.source
    # the frameworks are locked at the versions the README names, without their dependencies
    assert _version("verl") == "0.9.1" and _version("openrlhf") == "0.11.2"
    assert "vllm" not in names and "flash-attn" not in names


def test_every_lock_line_is_pinned_and_hashed():
    entries = [chunk for chunk in re.split(r"\n(?=[A-Za-z0-9])", LOCK_TEXT) if re.match(r"[A-Za-z0-9]", chunk)]
    assert len(entries) == len(_pins()) > 100
    for chunk in entries:
        assert "--hash=sha256:" in chunk, chunk.splitlines()[0]


def test_stale_lock_fails_the_range_check():
    """A lock older than a tightened range, or missing a new requirement, is reported by name and line."""
    wants = lockcheck.needed()
    old_torch = _repin(LOCK_TEXT, "torch", "2.5.1")  # below the train extra's torch>=2.6
    problems = lockcheck.lock_problems(_pins(old_torch), wants)
    assert any("torch==2.5.1" in p and "torch>=2.6" in p for p in problems), problems
    no_peft = _drop(LOCK_TEXT, "peft")
    problems = lockcheck.lock_problems(_pins(no_peft), wants)
    assert any(p.startswith("peft (pyproject.toml [train]") for p in problems), problems
    too_new = _repin(LOCK_TEXT, "transformers", "6.0.0")  # past the known-breaking major
    assert any("transformers==6.0.0" in p for p in lockcheck.lock_problems(_pins(too_new), wants))


def test_lock_parser_refuses_a_loose_line():
    with pytest.raises(ValueError, match=r"lock:2: torch is not pinned"):
        lockcheck.parse_lock("numpy==2.0.0\ntorch>=2.6\n")
    with pytest.raises(ValueError, match=r"lock:1: not a requirement"):
        lockcheck.parse_lock("torch==\n")


# ------------------------------------------------------------------------------------------- the environment
def _setup_record():
    record = Path(sys.prefix) / "mrgfast-setup.json"
    if not record.is_file():
        pytest.skip(f"this environment was not made by scripts/setup.sh ({record} is missing)")
    return json.loads(record.read_text())


def test_environment_is_the_lock_setup_installed():
    """Nothing installed that the lock does not name, every version the lock's (the project itself aside)."""
    record = _setup_record()
    lock = ROOT / record["lock"]
    if record["mode"] == "lock":
        import hashlib

        assert record["lock_sha256"] == hashlib.sha256(LOCK_TEXT.encode()).hexdigest(), (
            "requirements/lock.txt changed since .venv/ was set up: run `bash scripts/setup.sh` again"
        )
    problems = lockcheck.freeze_problems(lockcheck.parse_lock(lock.read_text()), lockcheck.installed(), exact=True)
    assert not problems, "\n".join(problems)


def test_stale_lock_fails_the_freeze_check():
    """An environment holding a package the lock does not name, or another version, is reported by name."""
    have = {p.name: str(p.version) for p in _pins() if p.applies()}  # an environment installed from the lock
    assert {"torch", "numpy", "verl"} <= set(have)
    assert not lockcheck.freeze_problems(_pins(), have, exact=True)
    problems = lockcheck.freeze_problems(_pins(_drop(LOCK_TEXT, "numpy")), have, exact=False)
    assert problems == [f"numpy=={have['numpy']} is installed but the lock does not name it"]
    stale = _pins(_repin(LOCK_TEXT, "torch", "2.6.0"))
    problems = lockcheck.freeze_problems(stale, have, exact=True)
    assert problems == [f"torch=={have['torch']} is installed but the lock pins torch==2.6.0 (line {_line('torch')})"]
    assert not lockcheck.freeze_problems(stale, have, exact=False)  # names only: what differs is a version


def _line(name):
    return next(p.line for p in _pins() if p.name == name)


def test_lockcheck_cli_reports_a_stale_lock(tmp_path):
    stale = tmp_path / "lock.txt"
    stale.write_text(_repin(LOCK_TEXT, "trl", "0.19.0"))
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "lockcheck.py"), "--lock", str(stale)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1
    assert "trl==0.19.0" in proc.stderr and "trl<2,>=1.0" in proc.stderr
