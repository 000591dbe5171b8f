"""OpenRLHF reward-function file: ``reward_func(queries, prompts, labels)``.

OpenRLHF loads a custom reward from a Python file given as ``--remote_rm_url``; the dataset field
named by ``--label_key`` (the reference report) arrives as ``labels``::

    python -m openrlhf.cli.train_ppo_ray ... \\
        --remote_rm_url $(python -c "import mrgfast.reward.openrlhf as m; print(m.__file__)") \\
        --label_key report

``queries`` are prompt + response texts; the response is what follows the prompt. Each score is
``0.75 · MCCS + 0.25 · format`` in [0, 1]. OpenRLHF passes no options to the function, so they
come from environment variables: ``MRGFAST_MARGIN``, ``MRGFAST_UNCERTAIN``,
``MRGFAST_MCCS_WEIGHT``, ``MRGFAST_FORMAT_WEIGHT``, ``MRGFAST_THREADS``; ``MRGFAST_LABELER=chexbert`` with
``MRGFAST_CHEXBERT_CHECKPOINT`` and ``MRGFAST_BERT_PATH`` for the paper-exact CheXbert reward.

Returns ``{"rewards", "scores", "extra_logs"}`` (float32 tensors; ``extra_logs`` holds the per-sample
``mccs``, ``format`` and ``malformed`` values, which OpenRLHF logs). A ``None`` or non-text query
scores 0.0 and is counted in ``malformed``.

This file is loaded by path (outside the package), so it imports only absolute names, and torch
lazily.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from mrgfast import engine
from mrgfast.contracts import check_mccs_params
from mrgfast.labelers import resolve_labeler
from mrgfast.reward.clinical import mccs_of_reports
from mrgfast.reward.combined import FORMAT_WEIGHT, MCCS_WEIGHT
from mrgfast.reward.completions import completion_text
from mrgfast.reward.format import parse_completion

logger = logging.getLogger("mrgfast.reward.openrlhf")

# End-of-sequence markers that decoding may leave at the end of a response.
_EOS_TEXTS = ("<|im_end|>", "<|endoftext|>", "</s>", "<|eot_id|>", "<|end_of_text|>")


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"environment variable {name}={raw!r} is not a number") from None


def _env_threads() -> int | None:
    raw = os.environ.get("MRGFAST_THREADS")
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"environment variable MRGFAST_THREADS={raw!r} is not an integer") from None
    if value < 1:
        raise ValueError(f"environment variable MRGFAST_THREADS must be >= 1, got {value}")
    return value


def _env_labeler():
    name = os.environ.get("MRGFAST_LABELER") or None
    if name in (None, "rust"):
        return resolve_labeler(None)
    return resolve_labeler(
        name,
        checkpoint=os.environ.get("MRGFAST_CHEXBERT_CHECKPOINT"),
        bert_path=os.environ.get("MRGFAST_BERT_PATH"),
    )


def response_of(query: str, prompt: Any) -> str:
    """The response part of ``query`` (= prompt + response), without trailing EOS markers."""
    response = query
    if isinstance(prompt, str) and prompt:
        if query.startswith(prompt):
            response = query[len(prompt) :]
        else:
            # decoding may change whitespace at the seam; find the prompt's tail instead
            tail = prompt.strip()[-200:]
            at = query.rfind(tail) if tail else -1
            if at >= 0:
                response = query[at + len(tail) :]
    response = response.rstrip()
    stripped = True
    while stripped:
        stripped = False
        for eos in _EOS_TEXTS:
            if response.endswith(eos):
                response = response[: -len(eos)].rstrip()
                stripped = True
    return response


def score_queries(queries: Sequence[Any], prompts: Sequence[Any], labels: Sequence[Any]) -> dict[str, np.ndarray]:
    """The reward parts as NumPy arrays: ``total``, ``mccs``, ``format``, ``malformed``."""
    n = len(queries)
    if prompts is not None and len(prompts) != n:
        raise ValueError(f"mrgfast OpenRLHF reward: {n} queries but {len(prompts)} prompts")
    if labels is None:
        raise ValueError(
            "mrgfast OpenRLHF reward: labels is None; pass --label_key <field holding the reference report>"
        )
    if len(labels) != n:
        raise ValueError(f"mrgfast OpenRLHF reward: {n} queries but {len(labels)} labels (--label_key field)")
    refs: list[str] = []
    for i, label in enumerate(labels):
        if not isinstance(label, str):
            raise TypeError(
                f"mrgfast OpenRLHF reward: labels[{i}] is {type(label).__name__}, not the reference report; "
                "set --label_key to the dataset field holding the reference report"
            )
        refs.append(label)
    margin = _env_float("MRGFAST_MARGIN", engine.DEFAULT_MARGIN)
    uncertain = _env_float("MRGFAST_UNCERTAIN", engine.DEFAULT_UNCERTAIN)
    check_mccs_params(margin, uncertain)
    w_m = _env_float("MRGFAST_MCCS_WEIGHT", MCCS_WEIGHT)
    w_f = _env_float("MRGFAST_FORMAT_WEIGHT", FORMAT_WEIGHT)
    texts: list[str | None] = []
    for i, q in enumerate(queries):
        t = completion_text(q)
        texts.append(None if t is None else response_of(t, prompts[i] if prompts is not None else None))
    bad = [i for i, t in enumerate(texts) if t is None]
    if bad:
        logger.warning("mrgfast OpenRLHF reward: %d of %d queries are malformed; they score 0.0", len(bad), n)
    parsed = [None if t is None else parse_completion(t) for t in texts]
    f = np.array([0.0 if p is None else p[1] for p in parsed], dtype=np.float64)
    m = mccs_of_reports(
        [None if p is None else p[0] for p in parsed],
        refs,
        margin=margin,
        uncertain=uncertain,
        threads=_env_threads(),
        labeler=_env_labeler(),
    )
    malformed = np.array([t is None for t in texts], dtype=np.float64)
    return {"total": w_m * m + w_f * f, "mccs": m, "format": f, "malformed": malformed}


def reward_func(queries, prompts, labels, **kwargs: Any) -> dict[str, Any]:
    """OpenRLHF's custom reward function: ``{"rewards", "scores", "extra_logs"}`` as tensors."""
    import torch

    parts = score_queries(list(queries), None if prompts is None else list(prompts), labels)
    rewards = torch.from_numpy(parts["total"].astype(np.float32))
    return {
        "rewards": rewards,
        "scores": rewards.clone(),
        "extra_logs": {
            "mccs": torch.from_numpy(parts["mccs"].astype(np.float32)),
            "format": torch.from_numpy(parts["format"].astype(np.float32)),
            "malformed": torch.from_numpy(parts["malformed"].astype(np.float32)),
        },
    }
