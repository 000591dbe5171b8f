"""Type stubs for the Rust extension `mrgfast._core`.

Arrays cross the boundary as bytes: label rows are n×14 int8 codes (1, 0, -1, BLANK) and scores
are little-endian float64. Use the wrappers in `mrgfast` (NumPy arrays) rather than these.
Every batch function releases the GIL; `threads=None` uses every core, 1 runs on the caller's
thread, more than MAX_THREADS raises ValueError. Pools are per process (safe after fork) and at
most four are cached. On the main thread a pending signal (Ctrl-C) stops a batch between chunks of
4096 items. A non-str item raises TypeError naming its index, a str that is not valid text (a lone
surrogate) ValueError naming its index; mismatched lengths and out-of-range parameters raise
ValueError.
"""

from collections.abc import Sequence

OBSERVATIONS: list[str]
"""The 14 CheXpert observations in column order."""
BLANK: int
"""Code for "not mentioned" in int8 label rows (-128)."""
DEFAULT_MARGIN: float
"""Default MCCS margin m (0.5)."""
DEFAULT_UNCERTAIN: float
"""Default signed-vector value of an uncertain finding (+1.0)."""
DEFAULT_SIDE_WEIGHT: float
"""Default MCCS+ side weight beta (0.5)."""
SIDE_NAMES: list[str]
"""Side codes of the details, by code: "none", "left", "right", "bilateral" (bits: left | right = bilateral)."""
DEGREE_NAMES: list[str]
"""Degree codes of the details, by code (ordinal): "none", "mild", "moderate", "severe"."""
SIDED_OBSERVATIONS: list[str]
"""The observations that have a side (only they report one; MCCS+'s side dimensions)."""
MAX_THREADS: int
"""Most threads one call may use (256)."""
__version__: str
RULES_SHA256: str
"""SHA-256 (hex) of `mrgfast/reference/rules.txt` as compiled in (build.rs validated and hashed it)."""

def check_mccs_params(margin: float, uncertain: float) -> None:
    """Raise ValueError unless margin lies in [0, 1) and uncertain is finite in [-1, 1] (the engine's rule)."""

def check_side_weight(side_weight: float) -> None:
    """Raise ValueError unless 0 < side_weight < 1 (the engine's MCCS+ rule; NaN refused)."""

def label(reports: Sequence[str], threads: int | None = None) -> bytes:
    """Label each report; returns len(reports)×14 int8 codes, row-major, as bytes."""

def label_details(reports: Sequence[str], threads: int | None = None) -> tuple[bytes, bytes, bytes]:
    """Label each report with details: (codes, sides, degrees), each len(reports)×14 int8, row-major. The
    codes equal `label`'s; sides and degrees are 0 unless the code is 1 or -1, sides 0 outside
    SIDED_OBSERVATIONS."""

def mccs_pairs(
    generated: Sequence[str],
    references: Sequence[str],
    margin: float = 0.5,
    uncertain: float = 1.0,
    threads: int | None = None,
    sides: bool = False,
    side_weight: float = 0.5,
) -> bytes:
    """MCCS (sides=True: MCCS+) of generated[i] against references[i]; float64 bytes. Lengths must match."""

def mccs_group(
    generated: Sequence[str],
    reference: str,
    margin: float = 0.5,
    uncertain: float = 1.0,
    threads: int | None = None,
    sides: bool = False,
    side_weight: float = 0.5,
) -> bytes:
    """MCCS (sides=True: MCCS+) of every completion against one reference, labelled once; float64 bytes."""

def mccs_from_labels(
    generated: bytes,
    references: bytes,
    margin: float = 0.5,
    uncertain: float = 1.0,
    generated_sides: bytes | None = None,
    reference_sides: bytes | None = None,
    side_weight: float = 0.5,
) -> bytes:
    """MCCS from int8 label rows (n×14 bytes each); float64 bytes. With both side arrays (n×14 int8 side codes
    0..3 each): MCCS+; one without the other is a ValueError."""

def ce_metrics(
    predicted: bytes,
    references: bytes,
    columns: list[int],
    uncertain_positive: bool = False,
    predicted_sides: bytes | None = None,
    reference_sides: bytes | None = None,
) -> tuple[
    list[tuple[int, int, int, int, int, float, float, float]],
    tuple[float, float, float],
    tuple[float, float, float],
]:
    """CE metrics over the given columns of int8 label rows.

    Returns ([(column, tp, fp, fn, tn, precision, recall, f1), ...], micro (p, r, f1), macro (p, r, f1)).
    An empty denominator scores 0. With both side arrays: side-aware CE (a positive pair whose sides are
    both stated and differ is a false positive and a false negative).
    """
