"""Standard report-generation metrics through RadEval (RadGraph-F1, BERTScore, F1-CheXbert, ...), offline.

RadEval (``pip install RadEval``; not a dependency of mrgfast) fetches its models from the Hugging Face
hub on first use. mrgfast never downloads: it runs RadEval with the hub switched off
(``HF_HUB_OFFLINE=1``, ``TRANSFORMERS_OFFLINE=1``), so each metric works only when its files are
already local, and a metric whose files are missing fails with a message naming them (`NEEDS`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from contextlib import contextmanager
from typing import Any

# What each RadEval (2.2.1) metric loads, as RadEval names it in its source.
NEEDS: dict[str, str] = {
    "bleu": "nothing (pure Python)",
    "rouge": "nothing (rouge_score)",
    "bertscore": "the hub model distilbert-base-uncased in the Hugging Face cache (HF_HOME)",
    "radeval_bertscore": "the hub model IAMJB/RadEvalModernBERT in the Hugging Face cache",
    "f1chexbert": "StanfordAIMI/RRG_scorers/chexbert.pth and bert-base-uncased in the Hugging Face cache "
    "(or use mrgfast's own --labeler chexbert with local paths)",
    "radgraph": "StanfordAIMI/RRG_scorers/radgraph-xl.tar.gz, extracted by RadEval under its radgraph cache "
    "(appdirs user_cache_dir('radgraph')/<version>/radgraph-xl)",
    "radgraph_radcliq": "StanfordAIMI/RRG_scorers/radgraph.tar.gz in RadEval's radgraph cache",
    "ratescore": "RaTEScore's NER and embedding models in the Hugging Face cache",
    "srrbert": "the SRR-BERT checkpoint RadEval fetches, in the Hugging Face cache",
    "radcliq": "RadCliQ-v1's models (BERTScore, RadGraph, CheXbert) in the caches above",
}


class RadEvalError(RuntimeError):
    """RadEval missing, a metric it does not know, or a metric whose files are not local."""


@contextmanager
def _offline():
    keys = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE")
    old = {k: os.environ.get(k) for k in keys}
    os.environ.update(dict.fromkeys(keys, "1"))
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def check_available(metrics: Sequence[str]) -> None:
    """Raise RadEvalError now (before hours of generation) when RadEval is not installed."""
    try:
        import radeval  # noqa: F401
    except ImportError as e:
        raise RadEvalError(
            f"--radeval needs the RadEval package (pip install RadEval), which is not installed ({e}); "
            "its metrics also need their model files local: " + "; ".join(f"{m}: {NEEDS.get(m, '?')}" for m in metrics)
        ) from None


def radeval_metrics(hyps: Sequence[str], refs: Sequence[str], metrics: Sequence[str]) -> dict[str, Any]:
    """RadEval's scores for each metric name (RadEval's own keys), computed offline."""
    check_available(metrics)
    from radeval import RadEval

    if len(hyps) != len(refs):
        raise ValueError(f"{len(hyps)} generated reports but {len(refs)} references")
    out: dict[str, Any] = {}
    with _offline():
        for name in metrics:
            try:
                scorer = RadEval(metrics=[name], show_progress=False)
            except ValueError as e:  # RadEval's own "Unknown metric" message lists the available names
                raise RadEvalError(f"--radeval {name}: {e}") from None
            except Exception as e:  # hub lookups fail offline: name what must be local
                raise RadEvalError(
                    f"--radeval {name}: its model files are not local (mrgfast runs RadEval offline). "
                    f"It needs {NEEDS.get(name, 'the files RadEval downloads for it')}. RadEval said: {e}"
                ) from None
            out.update(scorer(refs=list(refs), hyps=list(hyps)))
    return {k: (float(v) if isinstance(v, int | float) else v) for k, v in out.items()}
