"""The contracts every layer shares, in one place: observation order and codes, MCCS defaults and their
check, observation subsets, the predictions-file schema. Everything else imports them from here.

Values the Rust engine owns (order, codes, defaults, the parameter rule) are read from the extension, so
Python can never disagree with what the engine computes.
"""

from __future__ import annotations

from mrgfast import _core

OBSERVATIONS: tuple[str, ...] = tuple(_core.OBSERVATIONS)
"""The 14 CheXpert observations; the column order of every label array (No Finding first)."""

BLANK: int = int(_core.BLANK)
"""Code of an observation the report does not mention in int8 arrays (-128)."""

POSITIVE, NEGATIVE, UNCERTAIN = 1, 0, -1
CODES: tuple[int, ...] = (POSITIVE, NEGATIVE, UNCERTAIN, BLANK)
"""Every valid code of an int8 label array (the CheXpert CSV codes, blank as `BLANK`)."""

SIDE_NAMES: tuple[str, ...] = tuple(_core.SIDE_NAMES)
"""Side codes of the labeler's details, by code: 0 "none" (not stated), 1 "left", 2 "right", 3 "bilateral".
The codes are bits: left | right = bilateral."""
SIDE_NONE, SIDE_LEFT, SIDE_RIGHT, SIDE_BILATERAL = (SIDE_NAMES.index(n) for n in ("none", "left", "right", "bilateral"))

DEGREE_NAMES: tuple[str, ...] = tuple(_core.DEGREE_NAMES)
"""Degree codes of the labeler's details, by code (ordinal): 0 "none" (not stated), 1 "mild" (also minimal,
slight, trace, small, tiny), 2 "moderate", 3 "severe" (also marked, large, extensive, massive)."""
DEGREE_NONE, DEGREE_MILD, DEGREE_MODERATE, DEGREE_SEVERE = (
    DEGREE_NAMES.index(n) for n in ("none", "mild", "moderate", "severe")
)

SIDED_OBSERVATIONS: tuple[str, ...] = tuple(_core.SIDED_OBSERVATIONS)
"""The observations that have a side (lung, pleura, bones, devices): only they report one, and only they get
MCCS+'s side dimensions."""

MAX_THREADS: int = int(_core.MAX_THREADS)
"""Most labelling threads one call may use (`threads=` above it is refused, never a thread bomb)."""

DEFAULT_MARGIN: float = float(_core.DEFAULT_MARGIN)
"""MCCS margin m: only cosine agreement above m is rewarded (docs/ARCHITECTURE.md says why 0.5)."""

DEFAULT_UNCERTAIN: float = float(_core.DEFAULT_UNCERTAIN)
"""Signed-vector value of an uncertain finding (+1: counts as present)."""

DEFAULT_SIDE_WEIGHT: float = float(_core.DEFAULT_SIDE_WEIGHT)
"""MCCS+ side weight β (0.5): the share of a sided finding's unit weight that moves onto its left/right
dimensions when a side is stated (docs/ARCHITECTURE.md, "MCCS+")."""

COMPETITION_FIVE: tuple[str, ...] = ("Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion")
"""The 5-observation CheXpert competition subset used by many report-generation papers."""

SUBSETS: dict[str, tuple[str, ...]] = {"all": OBSERVATIONS, "competition5": COMPETITION_FIVE}
"""Named observation subsets, as the CLI spells them."""


def check_mccs_params(margin: float, uncertain: float) -> None:
    """Raise ValueError unless `margin` lies in [0, 1) and `uncertain` is finite in [-1, 1] (NaN refused)."""
    try:
        m, u = float(margin), float(uncertain)
    except (TypeError, ValueError):
        raise ValueError(f"MCCS margin and uncertain must be numbers, got {margin!r} and {uncertain!r}") from None
    _core.check_mccs_params(m, u)


def check_side_weight(side_weight: float) -> None:
    """Raise ValueError unless the MCCS+ side weight lies strictly between 0 and 1 (NaN refused)."""
    try:
        w = float(side_weight)
    except (TypeError, ValueError):
        raise ValueError(f"side_weight must be a number, got {side_weight!r}") from None
    _core.check_side_weight(w)


def check_threads(threads: object, name: str = "threads") -> int | None:
    """`threads` as the engine takes it: None (every core) or an int in [1, MAX_THREADS]; else ValueError/TypeError."""
    if threads is None:
        return None
    if isinstance(threads, bool):
        raise TypeError("threads must be an int or None, got bool")
    if not isinstance(threads, int):
        try:
            import operator

            threads = operator.index(threads)  # numpy integers
        except TypeError:
            raise TypeError(f"{name} must be an int or None, got {type(threads).__name__}") from None
    if not 1 <= threads <= MAX_THREADS:
        raise ValueError(f"{name} must be between 1 and {MAX_THREADS} (None or omitted: every core), got {threads}")
    return int(threads)


# The predictions file (JSON Lines) that training-time evaluation and `mrgfast eval` both write and that
# `mrgfast score` reads: one object per study.
PREDICTION_FIELDS: tuple[str, ...] = ("id", "generated", "report", "reference")
"""`id` study id, `generated` the raw completion, `report` the text MCCS/CE score (the `<report>` block),
`reference` the ground-truth report."""
