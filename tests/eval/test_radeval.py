"""`--radeval`: RadEval runs offline, and a missing package or missing model files give a message
naming what is needed. RadEval (and its medspacy/stanza stack) is not installed here, so the
offline-call test stubs the `radeval.RadEval` class (stub: a class recording the environment it was
built in, raising like RadEval does on an unknown name or a hub lookup)."""

from __future__ import annotations

import os
import sys
import types

import pytest

from mrgfast.eval.radeval_metrics import RadEvalError, check_available, radeval_metrics


def test_not_installed_names_package_and_files(monkeypatch):
    monkeypatch.setitem(sys.modules, "radeval", None)  # import radeval -> ImportError
    with pytest.raises(RadEvalError, match=r"pip install RadEval.*radgraph: StanfordAIMI/RRG_scorers/radgraph-xl"):
        check_available(["radgraph"])
    with pytest.raises(RadEvalError, match="bertscore: the hub model distilbert-base-uncased"):
        radeval_metrics(["a"], ["b"], ["bertscore"])


def test_offline_call_and_missing_files(monkeypatch):
    seen = {}

    class RadEval:
        def __init__(self, metrics, show_progress=True):
            seen["offline"] = os.environ.get("HF_HUB_OFFLINE"), os.environ.get("TRANSFORMERS_OFFLINE")
            (self.name,) = metrics
            if self.name == "nope":
                raise ValueError("Unknown metric 'nope'. Available: ['bleu', 'radgraph']")
            if self.name == "radgraph":
                raise OSError("We have no connection or you passed local_files_only")

        def __call__(self, refs, hyps):
            return {f"{self.name}_score": 0.5}

    monkeypatch.setitem(sys.modules, "radeval", types.SimpleNamespace(RadEval=RadEval))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    assert radeval_metrics(["x"], ["y"], ["bleu"]) == {"bleu_score": 0.5}
    assert seen["offline"] == ("1", "1")
    assert "HF_HUB_OFFLINE" not in os.environ  # restored afterwards
    with pytest.raises(RadEvalError, match="Unknown metric 'nope'"):
        radeval_metrics(["x"], ["y"], ["nope"])
    with pytest.raises(RadEvalError, match=r"radgraph: its model files are not local.*radgraph-xl\.tar\.gz"):
        radeval_metrics(["x"], ["y"], ["radgraph"])
