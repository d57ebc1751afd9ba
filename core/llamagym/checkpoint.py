"""Atomic checkpoints of a training run: adapter and value head, optimiser, KL controller, RNG states and
counters. Each is written to a staging directory and renamed into place, so a kill never leaves a half one."""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

CHECKPOINTS = "checkpoints"
LATEST = "latest"
STATE_FILE = "state.json"
TRAINER_FILE = "trainer.pt"


def rng_state() -> dict[str, Any]:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


def atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def save_model_dir(agent: Any, directory: Path) -> None:
    """Write the adapter (or full model), value head and tokenizer into `directory` atomically."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}-", dir=directory.parent))
    try:
        agent.model.save_pretrained(staging)
        agent.tokenizer.save_pretrained(staging)
        _replace_dir(staging, directory)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def save_checkpoint(run_dir: Path, agent: Any, state: dict[str, Any], keep: int = 2) -> Path:
    """Write `checkpoints/update-NNNNNN` and point `checkpoints/latest` at it; keep the newest `keep`."""
    root = Path(run_dir) / CHECKPOINTS
    root.mkdir(parents=True, exist_ok=True)
    name = f"update-{state['updates']:06d}"
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=root))
    try:
        agent.model.save_pretrained(staging)
        trainer_state = {"trainer": agent.trainer.state_dict(), "rng": rng_state(),
                         "agent_rng": agent._rng.getstate(), "counters": dict(agent.counters)}
        torch.save(trainer_state, staging / TRAINER_FILE)
        (staging / STATE_FILE).write_text(json.dumps(state, indent=2), encoding="utf-8")
        _replace_dir(staging, root / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    atomic_write_text(root / LATEST, name + "\n")
    _prune(root, keep, name)
    return root / name


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete checkpoint of a run, or None."""
    root = Path(run_dir) / CHECKPOINTS
    pointer = root / LATEST
    if pointer.is_file():
        candidate = root / pointer.read_text(encoding="utf-8").strip()
        if (candidate / STATE_FILE).is_file():
            return candidate
    complete = sorted(p for p in root.glob("update-*") if (p / STATE_FILE).is_file()) if root.is_dir() else []
    return complete[-1] if complete else None


def load_checkpoint(path: Path, agent: Any) -> dict[str, Any]:
    """Restore weights, optimiser, KL controller, RNG states and counters; return the run state."""
    load_weights(agent.model, path)
    trainer_state = torch.load(path / TRAINER_FILE, map_location="cpu", weights_only=False)
    agent.trainer.load_state_dict(trainer_state["trainer"])
    set_rng_state(trainer_state["rng"])
    agent._rng.setstate(trainer_state["agent_rng"])
    agent.counters.update(trainer_state["counters"])
    return json.loads((path / STATE_FILE).read_text(encoding="utf-8"))


def load_weights(model: Any, directory: Path) -> None:
    """Load saved adapter (or full-model) weights and the value head into an existing model in place."""
    from safetensors.torch import load_file

    directory = Path(directory)
    adapter = directory / "adapter_model.safetensors"
    if model.is_peft_model and adapter.is_file():
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(model.pretrained_model, load_file(str(adapter)))
    elif (directory / "model.safetensors").is_file():
        model.base_model.load_state_dict(load_file(str(directory / "model.safetensors")), strict=False)
    model.load_value_head(directory)


def _replace_dir(staging: Path, target: Path) -> None:
    if target.exists():
        old = target.with_name(f".{target.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(target, old)
        os.replace(staging, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staging, target)


def _prune(root: Path, keep: int, newest: str) -> None:
    complete = sorted(p for p in root.glob("update-*") if p.name != newest)
    for old in complete[:max(0, len(complete) - (keep - 1))]:
        shutil.rmtree(old, ignore_errors=True)
