"""What a launcher (`accelerate launch`, torchrun, mpirun, `llamagym run --num-processes`) put in a process's
environment: how many processes run, which one this is, and settings llamagym refuses. Imports nothing heavy."""

from __future__ import annotations

import os

from llamagym.errors import UsageError

WORLD_SIZE_VARIABLES = ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")
RANK_VARIABLES = ("RANK", "PMI_RANK", "OMPI_COMM_WORLD_RANK", "MV2_COMM_WORLD_RANK")
SHARDING_VARIABLES = {"ACCELERATE_USE_FSDP": "FSDP", "ACCELERATE_USE_DEEPSPEED": "DeepSpeed"}


def _first_int(names: tuple[str, ...], default: int) -> int:
    for name in names:
        value = os.environ.get(name)
        if value:
            return int(value)
    return default


def launched_world_size() -> int:
    """How many processes the launcher started (1 when llamagym was started directly)."""
    return _first_int(WORLD_SIZE_VARIABLES, 1)


def is_main_process() -> bool:
    """Whether this is process 0 (the one that prints and writes files); true outside multi-process runs."""
    return _first_int(RANK_VARIABLES, 0) == 0


def check_launch_settings() -> None:
    """Refuse accelerate configs that shard the model (FSDP, DeepSpeed ZeRO): llamagym replicates the frozen base
    model and sums adapter gradients itself, so running on under such a config would silently ignore it."""
    for variable, name in SHARDING_VARIABLES.items():
        if os.environ.get(variable, "false").lower() == "true":
            raise UsageError(f"the accelerate config asks for {name}, which llamagym does not support yet: "
                             f"data-parallel runs replicate the model on every process; use a multi-GPU "
                             f"config without {name} (see docs/guides/scaling.md)")


__all__ = ["launched_world_size", "is_main_process", "check_launch_settings"]
