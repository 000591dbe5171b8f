"""Labeler backends behind one protocol: anything that turns report texts into the (n, 14) int8
array of `mrgfast.label` (columns `mrgfast.OBSERVATIONS`, codes 1 / 0 / -1 / `mrgfast.BLANK`).

- `RustLabeler` (the default, name ``"rust"``): the rule engine in `mrgfast._core`, microseconds per report.
- `CheXbert` (name ``"chexbert"``): the CheXbert BERT labeler from local weights, the labeler MRG-R1
  computed MCCS with and the literature's CE-F1 comes from; paper-exact and slow (a GPU helps).

`mrgfast.label`, `mccs`, `mccs_group`, `ce_metrics`, the reward functions and the CLI take
``labeler=`` as an instance, a name, or ``None`` (the Rust engine); `resolve_labeler` says how.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

LABELER_NAMES: tuple[str, ...] = ("rust", "chexbert")
"""The backends the CLI's ``--labeler`` accepts."""


@runtime_checkable
class Labeler(Protocol):
    """What every backend provides: a `name` and `label(reports)` -> (n, 14) int8 codes."""

    name: str

    def label(self, reports: Sequence[str], *, threads: int | None = None) -> np.ndarray: ...


class RustLabeler:
    """The rule-based engine (`mrgfast._core`) behind the protocol."""

    name = "rust"

    def label(self, reports: Sequence[str], *, threads: int | None = None) -> np.ndarray:
        from mrgfast import engine

        return engine.label(reports, threads=threads)

    def __repr__(self) -> str:
        return "RustLabeler()"


RUST = RustLabeler()


def resolve_labeler(labeler: Labeler | str | None, **chexbert_options: Any) -> Labeler:
    """A labeler from an instance, a name in `LABELER_NAMES`, or ``None`` (the Rust engine).

    ``"chexbert"`` needs ``checkpoint=`` and ``bert_path=`` (and takes `CheXbert`'s other options).
    """
    if labeler is None or labeler == "rust":
        return RUST
    if isinstance(labeler, str):
        if labeler == "chexbert":
            missing = [k for k in ("checkpoint", "bert_path") if not chexbert_options.get(k)]
            if missing:
                flags = ", ".join("--" + k.replace("_", "-") for k in missing)
                raise ValueError(
                    f"the chexbert labeler needs {', '.join(missing)} (CLI: {flags.replace('--checkpoint', '--chexbert-checkpoint')})"
                )
            opts = {k: (os.fspath(v) if k in ("checkpoint", "bert_path") else v) for k, v in chexbert_options.items()}
            return _chexbert(tuple(sorted(opts.items())))
        raise ValueError(f"unknown labeler {labeler!r}; known: {list(LABELER_NAMES)}")
    if isinstance(labeler, Labeler):
        return labeler
    raise TypeError(f"labeler must be a name in {list(LABELER_NAMES)}, a Labeler or None, got {type(labeler).__name__}")


@functools.lru_cache(maxsize=4)
def _chexbert(options: tuple[tuple[str, Any], ...]) -> Labeler:
    # one model per (checkpoint, folder, options) per process: rewards resolve the name on every call
    from mrgfast.labelers.chexbert import CheXbert

    return CheXbert(**dict(options))


def __getattr__(name: str):
    # `mrgfast.labelers.CheXbert` without importing torch at `import mrgfast.labelers`
    if name == "CheXbert":
        from mrgfast.labelers.chexbert import CheXbert

        return CheXbert
    raise AttributeError(f"module 'mrgfast.labelers' has no attribute {name!r}")


__all__ = ["LABELER_NAMES", "RUST", "CheXbert", "Labeler", "RustLabeler", "resolve_labeler"]
