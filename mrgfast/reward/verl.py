"""verl adapter: ``compute_score`` for verl's naive/prime reward managers and
``compute_score_batch`` for its ``batch`` reward manager.

verl loads a custom reward function from a file path, so point its config at this file::

    MRG=$(python -c "import mrgfast.reward.verl as m; print(m.__file__)")
    # verl 0.7 to 0.9 (tested: 0.9.1): the reward loop, one call per sample
    python -m verl.trainer.main_ppo ... \\
        reward.custom_reward_function.path=$MRG reward.custom_reward_function.name=compute_score
    # verl <= 0.6, the legacy reward managers: the same function under custom_reward_function.*,
    # or one call per batch:
        reward_model.reward_manager=batch \\
        custom_reward_function.path=$MRG custom_reward_function.name=compute_score_batch

The dataset's ``reward_model.ground_truth`` is the reference report; ``solution_str`` is the
decoded response. Options go in ``custom_reward_function.reward_kwargs`` (``margin``,
``uncertain``, ``mccs_weight``, ``format_weight``, ``threads``, ``details``; ``sides=true`` for MCCS+,
the side-aware MCCS, with ``side_weight``; ``labeler="chexbert"``
with ``chexbert_checkpoint`` and ``bert_path`` for the paper-exact CheXbert reward, loaded once per worker). With
``details=True`` each score is a dict ``{"score", "mccs", "format", "malformed"}`` and verl logs
the extra keys; ``score[0]`` is the score too, which is what verl's ``prime`` manager reads. A
``None`` or non-text response scores 0.0 (counted in ``malformed``).

This file is loaded by path (outside the package), so it imports only absolute names. verl names
the loaded module ``custom_module_<hash>``, which no other process can import, so the functions
handed out are the package's own (``mrgfast.reward.verl``): they pickle into the process pool of
verl's ``prime`` manager.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from mrgfast import engine
from mrgfast.contracts import check_mccs_params
from mrgfast.labelers import resolve_labeler
from mrgfast.reward._common import check_sides
from mrgfast.reward.clinical import mccs_of_reports
from mrgfast.reward.combined import FORMAT_WEIGHT, MCCS_WEIGHT
from mrgfast.reward.completions import completion_text
from mrgfast.reward.format import parse_completion

logger = logging.getLogger("mrgfast.reward.verl")


class ScoreDetails(dict):
    """A ``details=True`` score: ``{"score", "mccs", "format", "malformed"}``.

    verl's ``prime`` manager takes a non-number result as a sequence whose first item is the
    score (``float(result[0])``); a plain dict would raise there, and prime then scores the
    whole batch 0.0. ``details[0]`` is therefore the score.
    """

    def __getitem__(self, key):
        if key == 0:
            return dict.__getitem__(self, "score")
        return dict.__getitem__(self, key)


Score = float | ScoreDetails


def _reference(value: Any, where: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, dict):  # some datasets nest it: {"ground_truth": ...} / {"report": ...}
        for key in ("ground_truth", "report"):
            if isinstance(value.get(key), str):
                return value[key]
    raise TypeError(
        f"mrgfast verl reward: {where} must be the reference report (a string), got {type(value).__name__}; "
        "put the reference report in the dataset's reward_model.ground_truth"
    )


def _score_all(
    solution_strs: Sequence[Any],
    ground_truths: Sequence[Any],
    *,
    margin: float,
    uncertain: float,
    mccs_weight: float,
    format_weight: float,
    threads: int | None,
    details: bool,
    what: str,
    labeler: dict[str, Any],
    sides: bool = False,
    side_weight: float = engine.DEFAULT_SIDE_WEIGHT,
) -> list[Score]:
    check_mccs_params(margin, uncertain)
    backend = _labeler(**labeler)
    try:
        check_sides(sides, side_weight, backend)
    except (TypeError, ValueError) as e:
        raise type(e)(f"mrgfast verl reward: reward_kwargs: {e}") from None
    n = len(solution_strs)
    if len(ground_truths) != n:
        raise ValueError(f"mrgfast verl reward: {n} solution_strs but {len(ground_truths)} ground_truths")
    refs = [_reference(g, f"{what}[{i}]" if what.endswith("s") else what) for i, g in enumerate(ground_truths)]
    texts = [completion_text(s) for s in solution_strs]
    bad = [i for i, t in enumerate(texts) if t is None]
    if bad:
        logger.warning("mrgfast verl reward: %d of %d responses are malformed; they score 0.0", len(bad), n)
    parsed = [None if t is None else parse_completion(t) for t in texts]
    f = np.array([0.0 if p is None else p[1] for p in parsed], dtype=np.float64)
    m = mccs_of_reports(
        [None if p is None else p[0] for p in parsed],
        refs,
        margin=margin,
        uncertain=uncertain,
        threads=threads,
        labeler=backend,
        sides=sides,
        side_weight=side_weight,
    )
    total = float(mccs_weight) * m + float(format_weight) * f
    if not details:
        return total.tolist()
    return [
        ScoreDetails(score=float(total[i]), mccs=float(m[i]), format=float(f[i]), malformed=float(texts[i] is None))
        for i in range(n)
    ]


def _labeler(labeler: str | None = None, chexbert_checkpoint: str | None = None, bert_path: str | None = None):
    if labeler in (None, "rust"):
        return resolve_labeler(None)
    return resolve_labeler(labeler, checkpoint=chexbert_checkpoint, bert_path=bert_path)


def compute_score(
    data_source: Any = None,
    solution_str: Any = None,
    ground_truth: Any = None,
    extra_info: dict | None = None,
    *,
    margin: float = engine.DEFAULT_MARGIN,
    uncertain: float = engine.DEFAULT_UNCERTAIN,
    mccs_weight: float = MCCS_WEIGHT,
    format_weight: float = FORMAT_WEIGHT,
    threads: int | None = 1,
    details: bool = False,
    labeler: str | None = None,
    chexbert_checkpoint: str | None = None,
    bert_path: str | None = None,
    sides: bool = False,
    side_weight: float = engine.DEFAULT_SIDE_WEIGHT,
    **kwargs: Any,
) -> Score:
    """verl's single-sample reward: ``mccs_weight · MCCS + format_weight · format`` in [0, 1]
    (``sides=True``: MCCS+ in place of MCCS).

    ``threads`` defaults to 1: verl calls this once per sample (often from a process pool), so
    spreading one report over threads only adds overhead.
    """
    return _score_all(
        [solution_str],
        [ground_truth],
        margin=margin,
        uncertain=uncertain,
        mccs_weight=mccs_weight,
        format_weight=format_weight,
        threads=threads,
        details=details,
        what="ground_truth",
        labeler={"labeler": labeler, "chexbert_checkpoint": chexbert_checkpoint, "bert_path": bert_path},
        sides=sides,
        side_weight=side_weight,
    )[0]


def compute_score_batch(
    data_sources: Sequence[Any] = (),
    solution_strs: Sequence[Any] = (),
    ground_truths: Sequence[Any] = (),
    extra_infos: Sequence[Any] | None = None,
    *,
    margin: float = engine.DEFAULT_MARGIN,
    uncertain: float = engine.DEFAULT_UNCERTAIN,
    mccs_weight: float = MCCS_WEIGHT,
    format_weight: float = FORMAT_WEIGHT,
    threads: int | None = None,
    details: bool = False,
    labeler: str | None = None,
    chexbert_checkpoint: str | None = None,
    bert_path: str | None = None,
    sides: bool = False,
    side_weight: float = engine.DEFAULT_SIDE_WEIGHT,
    **kwargs: Any,
) -> list[Score]:
    """verl's batched reward (``reward_model.reward_manager=batch``): one score per response.

    The references shared by a group of responses are labelled once; the whole batch is labelled
    in one multithreaded call.
    """
    solution_strs = list(solution_strs)
    ground_truths = list(ground_truths)
    if len(data_sources) and len(data_sources) != len(solution_strs):
        raise ValueError(
            f"mrgfast verl reward: {len(data_sources)} data_sources but {len(solution_strs)} solution_strs"
        )
    return _score_all(
        solution_strs,
        ground_truths,
        margin=margin,
        uncertain=uncertain,
        mccs_weight=mccs_weight,
        format_weight=format_weight,
        threads=threads,
        details=details,
        what="ground_truths",
        labeler={"labeler": labeler, "chexbert_checkpoint": chexbert_checkpoint, "bert_path": bert_path},
        sides=sides,
        side_weight=side_weight,
    )


# verl's docs call the batched function by either name
compute_scores = compute_score_batch

if __name__ != "mrgfast.reward.verl":
    # Loaded by path (verl's custom_reward_function.path) under a name no other process can
    # import: hand out the package's functions, which pickle by reference (prime's process pool).
    import mrgfast.reward.verl as package_module

    ScoreDetails = package_module.ScoreDetails  # type: ignore[misc]
    compute_score = package_module.compute_score
    compute_score_batch = package_module.compute_score_batch
    compute_scores = package_module.compute_scores
