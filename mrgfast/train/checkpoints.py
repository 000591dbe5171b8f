"""Checkpoints that are whole or absent, and the choice of the one to resume from.

Transformers' Trainer writes ``checkpoint-N/`` in place, file by file; a ``kill -9`` in the middle
leaves a folder that ``get_last_checkpoint`` still picks, and resuming fails (or silently resumes
without optimizer state). :class:`AtomicCheckpointMixin` makes the Trainer write each checkpoint in
``<stage>/.staging/checkpoint-N``, adds a completion marker, and renames the folder into place only
when every file is written. :func:`resume_point` picks the newest *complete* checkpoint and says why
it skipped the others; :func:`checkpoint_problem` names the file that is missing or corrupt.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import time
import zipfile
from pathlib import Path

log = logging.getLogger("mrgfast.train")

COMPLETE_MARKER = "mrgfast_complete.json"
STAGING_DIR = ".staging"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
WEIGHT_FILES = (
    "adapter_model.safetensors",
    "adapter_model.bin",
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be resumed from; the message names it and the file at fault."""


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def publish(staged: Path, final: Path, step: int) -> None:
    """Mark `staged` complete and rename it to `final` (replacing an older folder of the same name)."""
    (staged / COMPLETE_MARKER).write_text(
        json.dumps({"step": step, "time": round(time.time(), 3), "files": sorted(p.name for p in staged.iterdir())})
    )
    for p in staged.iterdir():
        if p.is_file():
            with contextlib.suppress(OSError), open(p, "rb") as fh:
                os.fsync(fh.fileno())
    _fsync_dir(staged)
    if final.exists():
        old = staged.parent / f"{final.name}.replaced-{os.getpid()}"
        os.rename(final, old)
        os.rename(staged, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(staged, final)
    _fsync_dir(final.parent)


class AtomicCheckpointMixin:
    """Trainer mixin: each checkpoint is written under ``.staging/`` and renamed into place when complete."""

    _mrg_staging: str | None = None

    def _get_output_dir(self, trial):
        return self._mrg_staging or super()._get_output_dir(trial)

    def _save_checkpoint(self, model, trial):
        from transformers.trainer_utils import rotate_checkpoints

        run_dir = Path(super()._get_output_dir(trial))
        name = f"checkpoint-{self.state.global_step}"
        staging = run_dir / STAGING_DIR
        if self.args.should_save:
            shutil.rmtree(staging / name, ignore_errors=True)  # a half-written try from a killed run
            staging.mkdir(parents=True, exist_ok=True)
        self.accelerator.wait_for_everyone()
        self._mrg_staging = str(staging)
        try:
            super()._save_checkpoint(model, trial)
        finally:
            self._mrg_staging = None
        self.accelerator.wait_for_everyone()  # every rank has written its RNG state
        if self.args.should_save:
            publish(staging / name, run_dir / name, self.state.global_step)
            with contextlib.suppress(OSError):
                staging.rmdir()  # only when empty
            log.info("checkpoint %s complete", run_dir / name)
            rotate_checkpoints(
                output_dir=str(run_dir),
                save_total_limit=self.args.save_total_limit,
                best_model_checkpoint=self.state.best_model_checkpoint,
                use_mtime=False,
            )
        self.accelerator.wait_for_everyone()


def checkpoints(stage_dir: Path) -> list[Path]:
    """The ``checkpoint-N`` folders of a stage, newest (highest N) first."""
    if not stage_dir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in stage_dir.iterdir() if p.is_dir() and (m := _CHECKPOINT.match(p.name))]
    return [p for _, p in sorted(found, reverse=True)]


def _zip_problem(path: Path) -> str | None:
    """torch.save files are zip archives: check every member's CRC without unpickling anything."""
    try:
        with zipfile.ZipFile(path) as z:
            bad = z.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        return f"{path.name} is corrupt or truncated ({type(e).__name__}: {e})"
    return f"{path.name} is corrupt (member {bad} fails its CRC)" if bad else None


def _safetensors_problem(path: Path) -> str | None:
    """A safetensors file is an 8-byte header length, a JSON header, then the tensors it lists."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            header = int.from_bytes(fh.read(8), "little")
            if header <= 0 or 8 + header > size:
                return f"{path.name} is truncated or corrupt (header of {header} bytes in a {size}-byte file)"
            meta = json.loads(fh.read(header))
        end = max((v["data_offsets"][1] for k, v in meta.items() if k != "__metadata__"), default=0)
    except (OSError, ValueError, KeyError, TypeError) as e:
        return f"{path.name} is corrupt ({type(e).__name__}: {e})"
    if 8 + header + end > size:
        return f"{path.name} is truncated ({size} bytes, its header lists {8 + header + end})"
    return None


def checkpoint_problem(ckpt: Path) -> str | None:
    """Why `ckpt` cannot be resumed from (naming the file), or None when it is complete and readable."""
    if not ckpt.is_dir():
        return "not a folder"
    if not (ckpt / COMPLETE_MARKER).is_file():
        return (
            f"incomplete: no {COMPLETE_MARKER} (the save was interrupted, or the folder was not written by "
            "mrgfast's atomic save)"
        )
    state = ckpt / "trainer_state.json"
    try:
        json.loads(state.read_text())
    except FileNotFoundError:
        return "trainer_state.json is missing"
    except (OSError, ValueError) as e:
        return f"trainer_state.json is unreadable ({type(e).__name__}: {e})"
    if not any((ckpt / w).is_file() for w in WEIGHT_FILES):
        return f"no model weights (none of {', '.join(WEIGHT_FILES)})"
    for p in sorted(ckpt.iterdir()):
        if p.suffix in (".pt", ".pth", ".bin") and p.is_file():
            problem = _zip_problem(p)
        elif p.suffix == ".safetensors":
            problem = _safetensors_problem(p)
        else:
            continue
        if problem:
            return problem
    return None


def missing_state(ckpt: Path) -> list[str]:
    """Training state a faithful resume needs but `ckpt` lacks (optimizer, scheduler, RNG)."""
    missing = [n for n in ("optimizer.pt", "scheduler.pt") if not (ckpt / n).is_file()]
    if not any(ckpt.glob("rng_state*.pth")):
        missing.append("rng_state.pth")
    return missing


def resume_point(stage_dir: Path) -> tuple[Path | None, list[tuple[Path, str]]]:
    """The newest complete checkpoint of a stage, and the newer ones skipped with their reasons."""
    skipped = []
    for ckpt in checkpoints(stage_dir):
        problem = checkpoint_problem(ckpt)
        if problem is None:
            return ckpt, skipped
        skipped.append((ckpt, problem))
    return None, skipped


def check_resumable(ckpt: Path) -> None:
    """Raise CheckpointError naming `ckpt` when it cannot be resumed; warn loudly when state is missing."""
    problem = checkpoint_problem(ckpt)
    if problem:
        raise CheckpointError(f"cannot resume from {ckpt}: {problem}")
    missing = missing_state(ckpt)
    if missing:
        log.warning(
            "!!! %s lacks %s: the resumed run restarts that state and will NOT match an uninterrupted run "
            "(was it saved with save_only_model?)",
            ckpt,
            ", ".join(missing),
        )
