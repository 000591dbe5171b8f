"""Drop-in clinical rewards for TRL, verl and OpenRLHF.

TRL::

    from trl import GRPOTrainer
    from mrgfast.reward import mccs_reward, format_reward

    trainer = GRPOTrainer(
        model=..., train_dataset=dataset,          # dataset has a "report" column (the reference)
        reward_funcs=[mccs_reward, format_reward],
        args=GRPOConfig(reward_weights=[0.75, 0.25], ...),
    )

``mccs_reward``, ``format_reward`` and ``mrg_reward`` (the 0.75/0.25 sum) are plain functions with
TRL's signature ``f(prompts, completions, completion_ids=None, **columns) -> list[float]``.
Configure them through the classes :class:`MCCSReward`, :class:`FormatReward` and
:class:`MRGReward` (reference column, margin, uncertain value, weights, threads, ``sides``); their
instances carry a ``__name__``. ``sides=True`` switches MCCS to MCCS+, the side-aware MCCS;
``mccs_plus_reward`` and ``mrg_plus_reward`` are ``mccs_reward`` and ``mrg_reward`` with it on. Completions are strings or chat messages; a ``None`` or malformed completion
scores 0.0 and is counted (``<name>/malformed`` via TRL's ``log_metric``), never raises.

verl: :mod:`mrgfast.reward.verl` (``compute_score``, ``compute_score_batch``).
OpenRLHF: the file of :mod:`mrgfast.reward.openrlhf` is a ``--remote_rm_url`` reward-function file.
"""

from __future__ import annotations

from typing import Any

from mrgfast.reward.clinical import MCCSReward, mccs_of_reports, mccs_scores
from mrgfast.reward.combined import FORMAT_WEIGHT, MCCS_WEIGHT, MRGReward
from mrgfast.reward.completions import completion_text, normalize_completions
from mrgfast.reward.format import FormatReward, extract_report, format_score, parse_completion

_MCCS = MCCSReward(name="mccs_reward")
_FORMAT = FormatReward(name="format_reward")
_MRG = MRGReward(name="mrg_reward")
_MCCS_PLUS = MCCSReward(sides=True, name="mccs_plus_reward")
_MRG_PLUS = MRGReward(sides=True, name="mrg_plus_reward")


def mccs_reward(prompts=None, completions=None, completion_ids=None, **columns: Any) -> list[float]:
    """MCCS of each completion's report against the ``report`` column (margin 0.5, uncertain +1)."""
    return _MCCS(prompts=prompts, completions=completions, completion_ids=completion_ids, **columns)


def format_reward(prompts=None, completions=None, completion_ids=None, **columns: Any) -> list[float]:
    """1.0 when a completion is exactly ``<think>…</think><report>…</report>``, else 0.0."""
    return _FORMAT(prompts=prompts, completions=completions, completion_ids=completion_ids, **columns)


def mrg_reward(prompts=None, completions=None, completion_ids=None, **columns: Any) -> list[float]:
    """MRG-R1's reward, ``0.75 · MCCS + 0.25 · format``, against the ``report`` column."""
    return _MRG(prompts=prompts, completions=completions, completion_ids=completion_ids, **columns)


def mccs_plus_reward(prompts=None, completions=None, completion_ids=None, **columns: Any) -> list[float]:
    """MCCS+ (side-aware MCCS, ``MCCSReward(sides=True)``) of each completion against the ``report`` column."""
    return _MCCS_PLUS(prompts=prompts, completions=completions, completion_ids=completion_ids, **columns)


def mrg_plus_reward(prompts=None, completions=None, completion_ids=None, **columns: Any) -> list[float]:
    """``0.75 · MCCS+ + 0.25 · format`` (``MRGReward(sides=True)``) against the ``report`` column."""
    return _MRG_PLUS(prompts=prompts, completions=completions, completion_ids=completion_ids, **columns)


__all__ = [
    "FORMAT_WEIGHT",
    "MCCS_WEIGHT",
    "FormatReward",
    "MCCSReward",
    "MRGReward",
    "completion_text",
    "extract_report",
    "format_reward",
    "format_score",
    "mccs_of_reports",
    "mccs_plus_reward",
    "mccs_reward",
    "mccs_scores",
    "mrg_plus_reward",
    "mrg_reward",
    "normalize_completions",
    "parse_completion",
]
