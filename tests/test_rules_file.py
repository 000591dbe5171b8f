"""The rule file is what the extension compiled: build.rs hashed the bytes it validated, and the
extension exports that hash, so an edited rules.txt without a rebuild is caught here."""

from __future__ import annotations

import hashlib

from mrgfast import _core
from mrgfast.reference.labeler import RULES_PATH


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
