"""What is verified before a saved file is trusted: a checkpoint's or adapter's checksums (`checksums.json`, written
with it), that each of its weight, trainer and state files reads back, that its counters agree with its name, and
that a run's JSON-lines files hold the rows a checkpoint counts. Each problem is a `DamagedFileError` naming the file
(and line)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from llamagym.errors import DamagedFileError
from llamagym.run.rundir import (ADAPTER_WEIGHTS, CHECKSUMS_FILE, ENGINE_FILE, MODEL_WEIGHTS, STATE_FILE,
                                 TRAINER_FILE, VALUE_HEAD_FILE, WEIGHT_FILES)

COUNTERS = ("episodes", "next_index", "updates", "metrics_rows", "episode_rows")  # a checkpoint's state.json
SMALL_WEIGHTS = (ADAPTER_WEIGHTS, VALUE_HEAD_FILE)  # read in full (and checked finite); a full model's header only
TRAINING_STATE = (TRAINER_FILE, STATE_FILE, ENGINE_FILE)  # what only a resume reads of a checkpoint


def damaged(path: Path, reason: str) -> DamagedFileError:
    return DamagedFileError(f"{path} {reason}", path)


def digest(path: Path) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()


def write_checksums(directory: Path) -> None:
    """`checksums.json`: the SHA-256 of every file in `directory` (written before the directory is published)."""
    files = sorted(p for p in directory.iterdir() if p.is_file() and p.name != CHECKSUMS_FILE)
    (directory / CHECKSUMS_FILE).write_text(json.dumps({p.name: digest(p) for p in files}, indent=1),
                                            encoding="utf-8")


def check_checksums(directory: Path, skip: tuple[str, ...] = ()) -> None:
    """Every file `checksums.json` lists (but those in `skip`) is there and unchanged (a directory saved without
    one is not checked)."""
    path = directory / CHECKSUMS_FILE
    if not path.is_file():
        return
    sums = read_json_object(path)
    for name, expected in sums.items():
        if name in skip:
            continue
        file = directory / str(name)
        if not file.is_file():
            raise damaged(file, "is missing (it was written with the checkpoint)")
        if digest(file) != expected:
            raise damaged(file, "does not match the checksum it was written with (damaged on disk?)")


def read_json_object(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise damaged(path, "is missing") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise damaged(path, f"is not readable JSON ({_first_line(exc)})") from None
    if not isinstance(value, dict):
        raise damaged(path, f"holds a {type(value).__name__}, not a JSON object")
    return value


def read_state(directory: Path) -> dict[str, Any]:
    """A checkpoint's `state.json`, its counters checked against each other and against the checkpoint's name."""
    path = directory / STATE_FILE
    state = read_json_object(path)
    for key in COUNTERS:
        value = state.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise damaged(path, f"has {key} = {value!r}, not a count")
    if state["metrics_rows"] != state["updates"] or state["episode_rows"] != state["episodes"]:
        raise damaged(path, "has row counts that disagree with its update and episode counts")
    name = f"update-{state['updates']:06d}-ep-{state['episodes']:09d}"
    if directory.name.startswith("update-") and directory.name != name:
        raise damaged(path, f"counts {state['updates']} updates and {state['episodes']} episodes, which do not "
                            f"match the checkpoint's name")
    return state


def read_torch(path: Path) -> Any:
    import torch  # torch: loaded when a checkpoint is read

    if not path.is_file():
        raise damaged(path, "is missing")
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # a truncated zip, a flipped byte in the pickle: whatever torch raises
        raise damaged(path, f"cannot be read ({type(exc).__name__}: {_first_line(exc)})") from None


def read_weights(path: Path) -> dict[str, Any]:
    """Every tensor of a safetensors file, checked finite."""
    import torch
    from safetensors.torch import load_file

    try:
        tensors = load_file(str(path))
    except Exception as exc:  # SafetensorError: a header cut short or garbled
        raise damaged(path, f"is not a readable safetensors file ({_first_line(exc)})") from None
    if not all(bool(torch.isfinite(t).all()) for t in tensors.values() if t.is_floating_point()):
        raise damaged(path, "holds NaN or inf weights")
    return tensors


def check_weights_header(path: Path) -> None:
    """A large safetensors file: its header reads and its tensors cover the file (what truncation breaks)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), "pt") as handle:
            list(handle.keys())
    except Exception as exc:
        raise damaged(path, f"is not a readable safetensors file ({_first_line(exc)})") from None


def check_adapter(directory: Path) -> None:
    """An adapter (or full model) directory, a run's `adapter/` or a checkpoint: checksums, config and weights read
    back. Raises DamagedFileError naming the bad file. A checkpoint's training state (trainer.pt, state.json,
    engine.pt) is not checked: loading its adapter does not read it."""
    directory = Path(directory)
    check_checksums(directory, skip=TRAINING_STATE)
    if (directory / "adapter_config.json").is_file():
        read_json_object(directory / "adapter_config.json")
    if not any((directory / name).is_file() for name in WEIGHT_FILES):
        raise damaged(directory, f"holds no weights ({' or '.join(WEIGHT_FILES)})")
    for name in SMALL_WEIGHTS:
        if (directory / name).is_file():
            read_weights(directory / name)
    if (directory / MODEL_WEIGHTS).is_file():
        check_weights_header(directory / MODEL_WEIGHTS)


def valid_rows(path: Path, needed: int, checkpoint: Path) -> None:
    """The first `needed` lines of a JSON-lines file are JSON objects (a checkpoint counts that many)."""
    if needed == 0:
        return
    if not path.is_file():
        raise damaged(path, f"is missing, and checkpoint {checkpoint.name} counts {needed} rows of it; restore it "
                            f"from a copy")
    lines = path.read_bytes().split(b"\n")[:-1]  # the rows a newline ended (after the last: a half-written one)
    for number, line in enumerate(lines[:needed], start=1):
        check_row(path, number, line)
    complete = len(lines)
    if complete < needed:
        raise damaged(path, f"holds {complete} rows, and checkpoint {checkpoint.name} counts {needed}; restore it "
                            f"from a copy")


def check_row(path: Path, number: int, line: bytes) -> dict[str, Any]:
    """Line `number` of a JSON-lines file as an object, or an error naming the file and line."""
    try:
        row = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise DamagedFileError(f"{path}:{number} is not a JSON row ({_first_line(exc)}); each line of "
                               f"{path.name} is one JSON object as llamagym writes them", path) from None
    if not isinstance(row, dict):
        raise DamagedFileError(f"{path}:{number} holds a {type(row).__name__}, not a JSON object; each line of "
                               f"{path.name} is one JSON object as llamagym writes them", path)
    return row


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
