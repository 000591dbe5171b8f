"""The rule file is what the extension compiled: build.rs hashed the bytes it validated, and the
extension exports that hash, so an edited rules.txt without a rebuild is caught here; and a bad line stops
the build itself."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from mrgfast import _core
from mrgfast.reference.labeler import RULES_PATH

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "mrgfast" / "reference" / "rules.txt"


def test_rules_hash_matches_the_file():
    with open(RULES_PATH, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    assert digest == _core.RULES_SHA256, (
        f"{RULES_PATH} changed since the extension was built: rebuild (pip install -e .)"
    )


def test_rules_file_starts_with_its_legend():
    with open(RULES_PATH, encoding="utf-8") as f:
        head = f.read(6000)
    for section in ("@mention", "@desc", "@mod", "@trigger", "@term", "@clause", "@pseudo", "@ignore", "@header"):
        assert section in head, f"the legend at the top of rules.txt does not explain {section}"


BAD_LINES = [("@nosuchsection", "unknown section @nosuchsection"), ("pleural Effusion", "bad token")]


def _with_bad_line(bad_line: str) -> tuple[str, int]:
    """The rules text with ``bad_line`` inside its first ``@mention`` section, and that line's number."""
    lines = RULES.read_text(encoding="utf-8").split("\n")
    at = next(i for i, line in enumerate(lines) if line.startswith("@mention"))
    lines.insert(at + 2, bad_line)
    return "\n".join(lines), at + 3


@pytest.mark.parametrize("bad_line", [b for b, _ in BAD_LINES])
def test_the_python_reference_names_the_same_line(bad_line):
    from mrgfast.reference.labeler import Rules

    text, lineno = _with_bad_line(bad_line)
    with pytest.raises(ValueError, match=f"rules.txt:{lineno}: "):
        Rules(text)


@pytest.mark.skipif(shutil.which("cargo") is None, reason="cargo is not on PATH")
@pytest.mark.parametrize("bad_line,message", BAD_LINES)
def test_a_bad_rule_line_fails_the_build_naming_file_and_line(tmp_path, bad_line, message):
    """build.rs on a copy of the crate whose rules file gains one bad line: the build stops there.

    The copy builds into the checkout's own ``target/`` so the dependencies `cargo test` already compiled are
    reused; the build script fails before the crate itself is compiled."""
    for name in ("Cargo.toml", "Cargo.lock", "build.rs"):
        shutil.copy2(ROOT / name, tmp_path / name)
    shutil.copytree(ROOT / "rust", tmp_path / "rust")
    rules = tmp_path / RULES.relative_to(ROOT)
    rules.parent.mkdir(parents=True)
    text, lineno = _with_bad_line(bad_line)
    rules.write_text(text, encoding="utf-8")
    env = dict(os.environ, CARGO_TARGET_DIR=str(ROOT / "target"))
    proc = subprocess.run(
        ["cargo", "build", "--offline", "--quiet"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode != 0
    assert f"mrgfast/reference/rules.txt:{lineno}: error: {message}" in proc.stderr, proc.stderr[-2000:]
