"""mrgfast: fast, clinically aligned GRPO training for radiology report generation.

The top level is the reward engine's Python API (labelling, MCCS, clinical-efficacy metrics);
`mrgfast.reward` holds drop-in reward functions, `mrgfast.kernels` the fused GRPO loss and
`mrgfast.train` the trainer.
"""

from mrgfast._core import __version__ as __version__  # Cargo.toml is the one source of the version
from mrgfast.engine import (
    BLANK,
    COMPETITION_FIVE,
    DEFAULT_MARGIN,
    DEFAULT_SIDE_WEIGHT,
    DEFAULT_UNCERTAIN,
    MAX_THREADS,
    OBSERVATIONS,
    Labelled,
    ce_metrics,
    label,
    mccs,
    mccs_from_labels,
    mccs_group,
)

__all__ = [
    "BLANK",
    "COMPETITION_FIVE",
    "DEFAULT_MARGIN",
    "DEFAULT_SIDE_WEIGHT",
    "DEFAULT_UNCERTAIN",
    "MAX_THREADS",
    "OBSERVATIONS",
    "Labelled",
    "ce_metrics",
    "label",
    "mccs",
    "mccs_from_labels",
    "mccs_group",
]
