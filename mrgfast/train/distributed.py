"""Refuse a run whose distributed type is not the one ``accelerate launch`` was configured with.

accelerate degrades a configuration it cannot honour without an error: on a machine without GPUs
an FSDP or DeepSpeed config becomes MULTI_CPU (with ``ACCELERATE_USE_CPU=true``) or NO, and with
NO every process trains its own unsynchronised replica and exits 0. The launcher tells the
processes what was configured (``ACCELERATE_USE_FSDP`` / ``ACCELERATE_USE_DEEPSPEED``); the
trainer's accelerator says what runs.
"""

from __future__ import annotations

import os


class DistributedSetupError(RuntimeError):
    pass


def is_zero3_partitioned(param) -> bool:
    """A parameter DeepSpeed ZeRO-3 manages (it carries ``ds_id`` / ``ds_status``)."""
    return param is not None and hasattr(param, "ds_id") and hasattr(param, "ds_status")


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes")


def configured_distributed_type() -> str | None:
    """What ``accelerate launch`` was asked for: ``"FSDP"``, ``"DEEPSPEED"`` or ``None`` (not said)."""
    if _flag("ACCELERATE_USE_DEEPSPEED"):
        return "DEEPSPEED"
    if _flag("ACCELERATE_USE_FSDP"):
        return "FSDP"
    return None


def check_distributed_type(running) -> None:
    """Raise unless ``running`` (an accelerate ``DistributedType``) is what was configured."""
    name = getattr(running, "name", None) or str(running).rsplit(".", 1)[-1]
    wanted = configured_distributed_type()
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if wanted is not None and name != wanted:
        hint = (
            "DeepSpeed on the CPU needs DS_ACCELERATOR=cpu and use_cpu: false in the accelerate config"
            if wanted == "DEEPSPEED"
            else "accelerate runs FSDP on GPUs only; on the CPU use configs/accelerate/cpu_2proc_gloo.yaml (DDP)"
        )
        raise DistributedSetupError(
            f"accelerate launch was configured for {wanted} but this process runs {name}: the run would not "
            f"shard as configured ({hint})"
        )
    if world > 1 and name == "NO":
        raise DistributedSetupError(
            f"WORLD_SIZE={world} but accelerate runs without a distributed setup (NO): every process would "
            "train its own unsynchronised replica. On the CPU set ACCELERATE_USE_CPU=true with "
            "configs/accelerate/cpu_2proc_gloo.yaml"
        )
