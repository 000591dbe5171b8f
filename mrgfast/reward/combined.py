"""MRG-R1's reward: ``mccs_weight · MCCS + format_weight · format`` (0.75 / 0.25 by default).

Use it as one TRL reward function, or pass the two parts separately with
``reward_weights=[0.75, 0.25]`` (TRL then logs each part under its own name); both give the same
total.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mrgfast import engine
from mrgfast.labelers import Labeler, resolve_labeler
from mrgfast.reward._common import RewardFunction, check_length, check_reward_settings, check_sides, reference_column
from mrgfast.reward.clinical import mccs_of_reports
from mrgfast.reward.format import parse_completion

MCCS_WEIGHT = 0.75
FORMAT_WEIGHT = 0.25


class MRGReward(RewardFunction):
    """TRL reward function: ``mccs_weight · MCCS + format_weight · format`` per completion.

    Parameters are those of :class:`~mrgfast.reward.MCCSReward` (``sides=True``: MCCS+) plus the two
    weights. Besides the
    malformed count, each call logs the batch means of its parts as ``<name>/mccs`` and
    ``<name>/format`` through TRL's ``log_metric``.
    """

    def __init__(
        self,
        reference_column: str = "report",
        margin: float = engine.DEFAULT_MARGIN,
        uncertain: float = engine.DEFAULT_UNCERTAIN,
        threads: int | None = None,
        *,
        mccs_weight: float = MCCS_WEIGHT,
        format_weight: float = FORMAT_WEIGHT,
        extract: bool = True,
        labeler: Labeler | str | None = None,
        sides: bool = False,
        side_weight: float = engine.DEFAULT_SIDE_WEIGHT,
        name: str = "mrg_reward",
    ):
        super().__init__(name)
        check_reward_settings(reference_column, margin, uncertain, threads, sides, side_weight)
        self.labeler = resolve_labeler(labeler)
        check_sides(sides, side_weight, self.labeler)
        self.sides = sides
        self.side_weight = float(side_weight)
        for wname, w in (("mccs_weight", mccs_weight), ("format_weight", format_weight)):
            if not np.isfinite(float(w)):
                raise ValueError(f"{wname} must be finite, got {w!r}")
        self.reference_column = reference_column
        self.margin = float(margin)
        self.uncertain = float(uncertain)
        self.threads = threads
        self.mccs_weight = float(mccs_weight)
        self.format_weight = float(format_weight)
        self.extract = extract

    def parts(self, texts: list[str | None], references: list[str]):
        """(mccs, format) arrays for normalised texts (``None`` = malformed, scores 0 in both)."""
        parsed = [None if t is None else parse_completion(t) for t in texts]
        f = np.fromiter((0.0 if p is None else p[1] for p in parsed), dtype=np.float64, count=len(texts))
        reports = [None if p is None else p[0] for p in parsed] if self.extract else texts
        m = mccs_of_reports(
            reports,
            references,
            margin=self.margin,
            uncertain=self.uncertain,
            threads=self.threads,
            labeler=self.labeler,
            sides=self.sides,
            side_weight=self.side_weight,
        )
        return m, f

    def __call__(self, prompts=None, completions=None, completion_ids=None, **columns: Any) -> list[float]:
        texts, bad = self._texts(completions)
        check_length("prompts", prompts, len(texts), self.__name__)
        refs = reference_column(columns, self.reference_column, len(texts), self.__name__)
        m, f = self.parts(texts, refs)
        total = self.mccs_weight * m + self.format_weight * f
        if texts:
            self._log_metrics(columns, {"mccs": float(m.mean()), "format": float(f.mean()), "malformed": len(bad)})
        return total.tolist()

    def score(self, completions, references) -> list[float]:
        """Score completions against references directly (no TRL keyword plumbing)."""
        return self(completions=completions, **{self.reference_column: references})

    def __repr__(self) -> str:
        return (
            f"MRGReward(reference_column={self.reference_column!r}, margin={self.margin}, "
            f"uncertain={self.uncertain}, mccs_weight={self.mccs_weight}, format_weight={self.format_weight}, "
            f"threads={self.threads}, sides={self.sides}, side_weight={self.side_weight}, name={self.__name__!r})"
        )
