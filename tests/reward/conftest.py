import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from fakelabel import fake_label_rows

import mrgfast
from mrgfast import engine


@pytest.fixture
def fake_labeler(monkeypatch):
    """Replace the engine's labeler with `fake_label_rows`, recording every call's inputs."""
    calls = []

    def label(reports, *, threads=None, records=False, labeler=None):
        assert labeler is None or labeler.name == "rust", "the fake stands in for the default labeler only"
        for i, r in enumerate(reports):
            if not isinstance(r, str):
                raise TypeError(f"reports[{i}] is not a str")
        calls.append(list(reports))
        rows = fake_label_rows(reports)
        return engine.to_records(rows) if records else rows

    monkeypatch.setattr(engine, "label", label)
    monkeypatch.setattr(mrgfast, "label", label)
    return calls
