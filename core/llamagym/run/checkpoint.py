"""Atomic checkpoints of a training run: adapter and value head, optimiser, KL controller, RNG states and
counters. Each is written to a staging directory, flushed to disk and renamed into place under a name no other
checkpoint has, so a kill at any moment leaves every `update-*` directory complete."""

from __future__ import annotations

import json
import os
import random
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from llamagym.agent.agent import Agent
from llamagym.policy.models import quiet_loading
from llamagym.policy.value_head import AutoModelForCausalLMWithValueHead
from llamagym.agent import episode as episode_module
from llamagym.errors import DamagedFileError
from llamagym.run import integrity
from llamagym.run.integrity import check_checksums, read_state, read_torch, read_weights, write_checksums
from llamagym.run.rundir import (ADAPTER_WEIGHTS, CHECKPOINTS, DAMAGED_PREFIX, ENGINE_FILE, LATEST, MODEL_WEIGHTS,
                                 STAGING_PREFIX, STATE_FILE, TRAINER_FILE, VALUE_HEAD_FILE, WEIGHT_FILES, is_complete)


def rng_state() -> dict[str, Any]:
    """Every global random generator a run draws from (CUDA's too, once it is in use)."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def capture_volatile(agent: Agent) -> dict[str, Any]:
    """What changes between updates without changing the weights: RNG states and the agent's counters. Taken
    when a run commits, so a later checkpoint restores the run exactly as it stood then."""
    agent_state = agent.state_dict()
    return {"rng": rng_state(), "agent_rng": agent_state["rng"], "counters": agent_state["counters"]}


def atomic_write_text(path: Path, text: str) -> None:
    """Replace `path` with `text` in one step (a reader sees the old file or the new one, never half of one)."""
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def checkpoint_name(state: dict[str, Any]) -> str:
    """`update-UUUUUU-ep-EEEEEEEEE`: sorts by update, then episode, and is never reused within a run."""
    return f"update-{state['updates']:06d}-ep-{state['episodes']:09d}"


def save_model_dir(agent: Agent, directory: Path) -> None:
    """Write the adapter (or full model), value head and tokenizer into `directory` atomically."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}-", dir=directory.parent))
    try:
        with quiet_loading():
            agent.model.save_pretrained(staging)
            agent.tokenizer.save_pretrained(staging)
        write_checksums(staging)
        _fsync_tree(staging)
        _replace_dir(staging, directory)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def save_checkpoint(run_dir: Path, agent: Agent, state: dict[str, Any], volatile: dict[str, Any] | None = None,
                    keep: int = 2, engine_state: dict[str, Any] | None = None) -> Path:
    """Write `checkpoints/<checkpoint_name(state)>`, point `checkpoints/latest` at it, keep the newest `keep`.

    `volatile` (from `capture_volatile`) defaults to now; `engine_state`, where given, goes to `engine.pt`. A
    checkpoint of the same name already on disk holds the same state and is kept as it is."""
    root = Path(run_dir) / CHECKPOINTS
    root.mkdir(parents=True, exist_ok=True)
    target = root / checkpoint_name(state)
    if not is_complete(target):
        staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=root))
        try:
            with quiet_loading():
                agent.model.save_pretrained(staging)
            _write_trainer_state(staging, agent, volatile or capture_volatile(agent))
            if engine_state is not None:
                torch.save(engine_state, staging / ENGINE_FILE)
            (staging / STATE_FILE).write_text(json.dumps(state, indent=2), encoding="utf-8")
            write_checksums(staging)
            _fsync_tree(staging)
            shutil.rmtree(target, ignore_errors=True)  # an incomplete one (copied by hand) is replaced
            os.replace(staging, target)
            _fsync_dir(root)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    _point_latest(root, target.name)
    _prune(root, keep)
    return target


def _write_trainer_state(staging: Path, agent: Agent, volatile: dict[str, Any]) -> None:
    torch.save({"trainer": agent.trainer.state_dict(), **volatile}, staging / TRAINER_FILE)


def _point_latest(root: Path, name: str) -> None:
    atomic_write_text(root / LATEST, name + "\n")


def remove_staging(run_dir: Path) -> None:
    """Delete what a killed run left half-written: staging directories of checkpoints and of the adapter."""
    run_dir = Path(run_dir)
    for leftover in [*run_dir.glob(".*-*"), *run_dir.glob(".*.old"),
                     *(run_dir / CHECKPOINTS).glob(f"{STAGING_PREFIX}*"), *(run_dir / CHECKPOINTS).glob(".*.old")]:
        if leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)


@dataclass
class CheckpointContents:
    """Everything a checkpoint holds, read and verified (see `read_checkpoint`), not yet applied to an agent."""

    path: Path
    state: dict[str, Any]
    trainer: dict[str, Any]
    weights_name: str  # adapter_model.safetensors (LoRA) or model.safetensors (full fine-tuning)
    weights: dict[str, Any]
    value_head: dict[str, Any] | None
    engine: dict[str, Any] | None


def read_checkpoint(path: Path) -> CheckpointContents:
    """Read every file of checkpoint `path` and verify it (checksums, readable weights and trainer state, counters
    that match the name); a DamagedFileError names the first file that is not as written. Nothing is applied."""
    path = Path(path)
    for name in (STATE_FILE, TRAINER_FILE):
        if not (path / name).is_file():
            raise integrity.damaged(path / name, "is missing")
    check_checksums(path)
    state = read_state(path)
    trainer = read_torch(path / TRAINER_FILE)
    if not isinstance(trainer, dict) or not {"trainer", "rng", "agent_rng", "counters"} <= set(trainer):
        raise integrity.damaged(path / TRAINER_FILE, "does not hold a trainer state")
    weights_file = next((path / name for name in WEIGHT_FILES if (path / name).is_file()), None)
    if weights_file is None:
        raise integrity.damaged(path, f"holds no weights ({' or '.join(WEIGHT_FILES)})")
    value_head = read_weights(path / VALUE_HEAD_FILE) if (path / VALUE_HEAD_FILE).is_file() else None
    return CheckpointContents(path, state, trainer, weights_file.name, read_weights(weights_file), value_head,
                              _read_engine(path))


def _read_engine(path: Path) -> dict[str, Any] | None:
    if not (path / ENGINE_FILE).is_file():
        return None
    # checkpoints written before the package's reorganisation pickle their untrained episodes as
    # llamagym.episode.Episode: that module is now llamagym.agent.episode
    sys.modules.setdefault("llamagym.episode", episode_module)
    return read_torch(path / ENGINE_FILE)


def restore_checkpoint(contents: CheckpointContents, agent: Agent) -> dict[str, Any]:
    """Restore weights, optimiser, KL controller, RNG states and counters; return the run state. The learning
    rate and weight decay stay as the agent was configured, so a resumed run may change them (the adaptive
    schedule keeps the rate it had reached, within the new rate's range)."""
    _apply_weights(agent.model, contents.weights_name, contents.weights, contents.value_head)
    trainer_state = contents.trainer
    agent.trainer.restore(trainer_state["trainer"])
    set_rng_state(trainer_state["rng"])
    agent.load_state_dict({"rng": trainer_state["agent_rng"], "counters": trainer_state["counters"]})
    return contents.state


def load_checkpoint(path: Path, agent: Agent) -> dict[str, Any]:
    """`restore_checkpoint(read_checkpoint(path), agent)`: verify, then restore; returns the run state."""
    return restore_checkpoint(read_checkpoint(path), agent)


def load_engine_state(path: Path) -> dict[str, Any] | None:
    """The engine's own state saved with a checkpoint (other seats' policies, the self-play pool), if any."""
    return _read_engine(Path(path))


def newest_intact_checkpoint(run_dir: Path) -> tuple[CheckpointContents | None, list[DamagedFileError]]:
    """The newest checkpoint of a run that reads back as written, and what was wrong with each newer one. Raises
    DamagedFileError naming every checkpoint's damage when there are checkpoints and none is intact."""
    root = Path(run_dir) / CHECKPOINTS
    candidates = sorted((p for p in root.glob("update-*") if p.is_dir()), reverse=True) if root.is_dir() else []
    problems: list[DamagedFileError] = []
    for path in candidates:
        try:
            return read_checkpoint(path), problems
        except DamagedFileError as exc:
            problems.append(exc)
    if problems:
        raise DamagedFileError(f"cannot resume {str(run_dir)!r}: no checkpoint is intact ("
                               + "; ".join(map(str, problems)) + "); restore one from a copy, or start a new run "
                               f"from its adapter with `llamagym run --init-adapter {run_dir} -o NEW_DIR`", run_dir)
    return None, problems


def set_aside(problems: list[DamagedFileError]) -> None:
    """Rename damaged checkpoints to `damaged-update-...`, so the resumed run writes fresh ones in their place."""
    for problem in problems:
        path = Path(str(problem.path))
        checkpoint = path if path.name.startswith("update-") else path.parent
        if checkpoint.name.startswith("update-") and checkpoint.is_dir():
            target = checkpoint.with_name(DAMAGED_PREFIX + checkpoint.name)
            shutil.rmtree(target, ignore_errors=True)
            os.replace(checkpoint, target)


def load_weights(model: AutoModelForCausalLMWithValueHead, directory: Path) -> None:
    """Load saved adapter (or full-model) weights and the value head into an existing model in place."""
    directory = Path(directory)
    weights_file = next((directory / name for name in WEIGHT_FILES if (directory / name).is_file()), None)
    value_head = directory / VALUE_HEAD_FILE
    _apply_weights(model, weights_file.name if weights_file else "", read_weights(weights_file) if weights_file
                   else {}, read_weights(value_head) if value_head.is_file() else None)


def _apply_weights(model: AutoModelForCausalLMWithValueHead, name: str, weights: dict[str, Any],
                   value_head: dict[str, Any] | None) -> None:
    if name == ADAPTER_WEIGHTS and model.is_peft_model:
        from peft import set_peft_model_state_dict  # peft: seconds to import; only a LoRA model needs it

        set_peft_model_state_dict(model.pretrained_model, weights)
    elif name == MODEL_WEIGHTS:
        model.base_model.load_state_dict(weights, strict=False)
    if value_head is not None:
        model.v_head.load_state_dict(value_head)


def _fsync_tree(directory: Path) -> None:
    """Flush every file under `directory` to disk, so a rename publishes data that survives a power cut."""
    for path in directory.rglob("*"):
        if path.is_file():
            with path.open("rb") as handle:
                os.fsync(handle.fileno())
    _fsync_dir(directory)


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # platforms that cannot open a directory
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _replace_dir(staging: Path, target: Path) -> None:
    if target.exists():
        old = target.with_name(f".{target.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(target, old)
        os.replace(staging, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staging, target)


def _prune(root: Path, keep: int) -> None:
    complete = sorted(p for p in root.glob("update-*") if p.is_dir())
    for old in complete[:max(0, len(complete) - keep)]:
        shutil.rmtree(old, ignore_errors=True)
