"""The clinical reward: MCCS of each completion's report against its reference report.

A GRPO batch holds G completions per prompt, all sharing the prompt's reference. The batch is
scored with one labelling pass: the distinct references (each labelled once, however many
completions share it, consecutive or not) and the extracted reports of the well-formed
completions go through ``mrgfast.label`` together, then ``mrgfast.mccs_from_labels`` compares
each completion's row with its reference's row. This is exactly ``mrgfast.mccs`` pairwise (the
tests check it) at a fraction of the labelling work.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from mrgfast import engine
from mrgfast.labelers import Labeler, resolve_labeler
from mrgfast.reward._common import RewardFunction, check_length, check_reward_settings, check_sides, reference_column
from mrgfast.reward.completions import completion_text
from mrgfast.reward.format import parse_completion


def mccs_scores(
    texts: Sequence[str | None],
    references: Sequence[str],
    *,
    margin: float = engine.DEFAULT_MARGIN,
    uncertain: float = engine.DEFAULT_UNCERTAIN,
    threads: int | None = None,
    extract: bool = True,
    labeler: Labeler | str | None = None,
    sides: bool = False,
    side_weight: float = engine.DEFAULT_SIDE_WEIGHT,
) -> np.ndarray:
    """MCCS (``sides=True``: MCCS+) of ``texts[i]`` against ``references[i]``; ``None`` texts score 0.0.

    ``extract=True`` scores :func:`~mrgfast.reward.extract_report` of each text (the report block of a
    ``<think>…</think><report>…</report>`` completion). Each distinct reference is labelled once.
    """
    if len(references) != len(texts):
        raise ValueError(f"{len(texts)} completions but {len(references)} references")
    if extract:
        texts = [None if t is None else parse_completion(t)[0] for t in texts]
    return mccs_of_reports(
        texts,
        references,
        margin=margin,
        uncertain=uncertain,
        threads=threads,
        labeler=labeler,
        sides=sides,
        side_weight=side_weight,
    )


def mccs_of_reports(
    reports: Sequence[str | None],
    references: Sequence[str],
    *,
    margin: float = engine.DEFAULT_MARGIN,
    uncertain: float = engine.DEFAULT_UNCERTAIN,
    threads: int | None = None,
    labeler: Labeler | str | None = None,
    sides: bool = False,
    side_weight: float = engine.DEFAULT_SIDE_WEIGHT,
) -> np.ndarray:
    """MCCS (``sides=True``: MCCS+, from the rule labeler's details) of report texts (already extracted)
    against references; ``None`` scores 0.0, and so does a report that is not valid text (a lone
    surrogate): a malformed completion never raises.

    One ``mrgfast.label`` call labels each distinct reference once and every report, then
    ``mrgfast.mccs_from_labels`` pairs the rows.
    """
    backend = resolve_labeler(labeler)
    check_sides(sides, side_weight, backend)
    n = len(reports)
    if len(references) != n:
        raise ValueError(f"{n} completions but {len(references)} references")
    out = np.zeros(n, dtype=np.float64)
    valid = [i for i, t in enumerate(reports) if completion_text(t) is not None]
    if not valid:
        return out
    ref_index: dict[str, int] = {}
    ref_of = np.empty(len(valid), dtype=np.intp)
    for k, i in enumerate(valid):
        r = references[i]
        j = ref_index.get(r)
        if j is None:
            j = ref_index[r] = len(ref_index)
        ref_of[k] = j
    unique_refs = list(ref_index)
    texts = unique_refs + [reports[i] for i in valid]
    k = len(unique_refs)
    if sides:
        lab = engine.label(texts, threads=threads, details=True)
        ref_labels = engine.Labelled(*(x[:k][ref_of] for x in lab))
        gen_labels = engine.Labelled(*(x[k:] for x in lab))
    else:
        labels = engine.label(texts, threads=threads, labeler=backend)
        ref_labels, gen_labels = labels[:k][ref_of], labels[k:]
    scores = engine.mccs_from_labels(
        gen_labels, ref_labels, margin=margin, uncertain=uncertain, sides=sides, side_weight=side_weight
    )
    out[np.asarray(valid, dtype=np.intp)] = scores
    return out


class MCCSReward(RewardFunction):
    """TRL reward function: the MCCS of each completion against the reference in a dataset column.

    Parameters
    ----------
    reference_column:
        Dataset column holding the reference report (default ``"report"``, R2Gen's field name).
    margin, uncertain:
        MCCS margin ``m`` and the signed value of an uncertain finding (see ``mrgfast.mccs``).
    threads:
        Labelling threads (``None``: every core).
    extract:
        Score the ``<report>`` block of each completion (default) rather than the whole text.
    labeler:
        ``None`` / ``"rust"`` (the rule engine) or a `mrgfast.labelers` backend such as
        ``CheXbert(checkpoint, bert_path)``: the paper-exact reward (slow, a GPU helps).
    sides:
        ``True``: MCCS+, the side-aware MCCS (docs/ARCHITECTURE.md): a finding on the wrong side scores
        below the right side; equal to MCCS when no report states a side. Needs the rule labeler.
        Default ``False``: the paper's MCCS.
    side_weight:
        MCCS+'s β, in (0, 1) (default 0.5).
    name:
        ``__name__`` of the instance; TRL logs the reward as ``rewards/<name>/mean``.

    Call it as TRL does: ``reward(prompts=..., completions=..., completion_ids=..., report=[...])``.
    Malformed completions (``None``, non-text) score 0.0 and are counted in ``<name>/malformed``.
    """

    def __init__(
        self,
        reference_column: str = "report",
        margin: float = engine.DEFAULT_MARGIN,
        uncertain: float = engine.DEFAULT_UNCERTAIN,
        threads: int | None = None,
        *,
        extract: bool = True,
        labeler: Labeler | str | None = None,
        sides: bool = False,
        side_weight: float = engine.DEFAULT_SIDE_WEIGHT,
        name: str = "mccs_reward",
    ):
        super().__init__(name)
        check_reward_settings(reference_column, margin, uncertain, threads, sides, side_weight)
        self.labeler = resolve_labeler(labeler)
        check_sides(sides, side_weight, self.labeler)
        self.reference_column = reference_column
        self.margin = float(margin)
        self.uncertain = float(uncertain)
        self.threads = threads
        self.extract = extract
        self.sides = sides
        self.side_weight = float(side_weight)

    def __call__(self, prompts=None, completions=None, completion_ids=None, **columns: Any) -> list[float]:
        texts, bad = self._texts(completions)
        check_length("prompts", prompts, len(texts), self.__name__)
        refs = reference_column(columns, self.reference_column, len(texts), self.__name__)
        scores = mccs_scores(
            texts,
            refs,
            margin=self.margin,
            uncertain=self.uncertain,
            threads=self.threads,
            extract=self.extract,
            labeler=self.labeler,
            sides=self.sides,
            side_weight=self.side_weight,
        )
        self._log_metrics(columns, {"malformed": len(bad)})
        return scores.tolist()

    def score(self, completions: Sequence[Any], references: Sequence[str]) -> list[float]:
        """Score completions against references directly (no TRL keyword plumbing)."""
        return self(completions=completions, **{self.reference_column: references})

    def __repr__(self) -> str:
        return (
            f"MCCSReward(reference_column={self.reference_column!r}, margin={self.margin}, "
            f"uncertain={self.uncertain}, threads={self.threads}, labeler={self.labeler.name!r}, sides={self.sides}, "
            f"side_weight={self.side_weight}, name={self.__name__!r})"
        )
