"""Machinery shared by the reward callables: names, malformed-completion accounting, columns."""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from mrgfast.contracts import check_mccs_params, check_side_weight, check_threads
from mrgfast.reward.completions import normalize_completions

logger = logging.getLogger("mrgfast.reward")

# Keyword arguments TRL passes to every reward function besides the dataset columns.
TRL_EXTRA_KWARGS = ("trainer_state", "log_extra", "log_metric", "environments")


class RewardFunction:
    """Base of the TRL-style reward callables.

    ``__call__(prompts=None, completions=None, completion_ids=None, **columns) -> list[float]``
    is TRL's reward-function signature. Instances carry ``__name__`` (TRL names the logged reward
    after it) and count malformed completions: ``malformed_total`` over the object's life, plus one
    ``<name>/malformed`` metric per call through TRL's ``log_metric`` when the trainer passes it.
    """

    __name__: str = "reward"

    def __init__(self, name: str):
        if not isinstance(name, str) or not name:
            raise ValueError(f"name must be a non-empty string, got {name!r}")
        self.__name__ = name
        self.__qualname__ = name
        self.malformed_total = 0
        self.completions_total = 0
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.__name__!r})"

    # picklable (Ray, multiprocessing, deepcopy): the lock is per process
    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state.pop("_lock", None)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    # -- helpers -----------------------------------------------------------------------------
    def _texts(self, completions: Any) -> tuple[list[str | None], list[int]]:
        if completions is None:
            raise TypeError(f"{self.__name__}: completions is required (a list of strings or chat messages)")
        texts, bad = normalize_completions(completions)
        with self._lock:
            self.completions_total += len(texts)
            self.malformed_total += len(bad)
        if bad:
            shown = ", ".join(str(i) for i in bad[:8]) + (", ..." if len(bad) > 8 else "")
            logger.warning(
                "%s: %d of %d completions are malformed (None or not text); they score 0.0 (indices %s)",
                self.__name__,
                len(bad),
                len(texts),
                shown,
            )
        return texts, bad

    def _log_metrics(self, columns: Mapping[str, Any], metrics: dict[str, float]) -> None:
        log_metric = columns.get("log_metric")
        if callable(log_metric):
            for key, value in metrics.items():
                log_metric(f"{self.__name__}/{key}", float(value))


def reference_column(columns: Mapping[str, Any], column: str, n: int, who: str) -> list[str]:
    """The reference texts of a batch, checked: present, one per completion, all strings."""
    if column not in columns:
        available = sorted(k for k in columns if k not in TRL_EXTRA_KWARGS)
        raise KeyError(
            f"{who}: the reference column {column!r} is missing; the reward function received the "
            f"columns {available}. Add a {column!r} column to the dataset or pass "
            f"reference_column=<name> to the reward's constructor."
        )
    refs = columns[column]
    if isinstance(refs, str) or not hasattr(refs, "__len__"):
        raise TypeError(
            f"{who}: column {column!r} must hold one reference per completion (a list), got {type(refs).__name__}"
        )
    if len(refs) != n:
        raise ValueError(
            f"{who}: column {column!r} has {len(refs)} values but there are {n} completions; "
            "pass one reference per completion"
        )
    refs = list(refs)
    for i, r in enumerate(refs):
        if not isinstance(r, str):
            raise TypeError(
                f"{who}: column {column!r} value {i} is {type(r).__name__}, not a string (the reference report)"
            )
        try:
            r.encode("utf-8")
        except UnicodeEncodeError as e:
            raise ValueError(f"{who}: column {column!r} value {i} is not valid text ({e}); fix the dataset") from None
    return refs


def check_length(name: str, values: Sequence[Any], n: int, who: str) -> None:
    if values is not None and len(values) != n:
        raise ValueError(f"{who}: {name} has {len(values)} items but there are {n} completions")


def check_reward_settings(
    reference_column: str,
    margin: float,
    uncertain: float,
    threads: int | None = None,
    sides: bool = False,
    side_weight: float | None = None,
) -> None:
    """Constructor checks shared by the reward classes (a bad value fails here, not at the first batch)."""
    if not isinstance(reference_column, str) or not reference_column:
        raise ValueError(f"reference_column must be a non-empty string, got {reference_column!r}")
    check_mccs_params(margin, uncertain)
    check_threads(threads)
    check_sides(sides, side_weight)


def check_sides(sides: object, side_weight: object, labeler: object = None) -> None:
    """The MCCS+ switch: `sides` a bool, `side_weight` in (0, 1), and a labeler that gives sides (the rules)."""
    if not isinstance(sides, bool):
        raise TypeError(f"sides must be True or False (MCCS+ on or off), got {sides!r}")
    if side_weight is not None:
        check_side_weight(side_weight)
    if sides and labeler is not None and getattr(labeler, "name", None) != "rust":
        raise ValueError(
            f"sides=True (MCCS+) needs the rule labeler's sides; the {getattr(labeler, 'name', labeler)!r} labeler gives none"
        )
