"""The run directory: never overwritten silently, held by one process at a time (a lock the OS drops when its
process dies, SIGKILL included), and removed again when a new run fails before it wrote its first checkpoint."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from llamagym.errors import UsageError

# Every name in a run directory, in one place.
CONFIG_FILE = "config.json"  # the settings, and what each resume changed
LOCK_FILE = ".lock"  # held by the process that runs in the directory
METRICS_FILE = "metrics.jsonl"  # a row per update
EPISODES_FILE = "episodes.jsonl"  # a row per episode (per game)
SUMMARY_FILE = "summary.json"  # written when the run ends
ADAPTER_DIR = "adapter"  # the trained adapter (or model), value head and tokenizer
SFT_METRICS_FILE = "sft_metrics.jsonl"  # `llamagym sft`: a row per logging step
PLOT_FILE = "training.png"  # `llamagym plot`
TENSORBOARD_DIR = "tensorboard"
WANDB_ID_FILE = "wandb-run-id"
MLFLOW_ID_FILE = "mlflow-run-id"
CHECKPOINTS = "checkpoints"  # checkpoints/update-UUUUUU-ep-EEEEEEEEE/, the newest two
LATEST = "latest"  # checkpoints/latest: the newest checkpoint's name
STATE_FILE = "state.json"  # in a checkpoint: the run's counters (written last: its presence marks it complete)
TRAINER_FILE = "trainer.pt"  # in a checkpoint: optimiser, KL controller, RNG states
ENGINE_FILE = "engine.pt"  # games only: the policies besides the main one, the snapshot pool, opponents' RNGs
CHECKSUMS_FILE = "checksums.json"  # in a checkpoint or adapter: the SHA-256 of each of its files
DAMAGED_PREFIX = "damaged-"  # checkpoints/damaged-update-...: a damaged checkpoint a resume set aside
STAGING_PREFIX = ".staging-"  # a checkpoint being written
ADAPTER_WEIGHTS = "adapter_model.safetensors"  # LoRA adapter weights (peft's name)
MODEL_WEIGHTS = "model.safetensors"  # full fine-tuning: the whole model's weights
VALUE_HEAD_FILE = "value_head.safetensors"  # beside the weights: the value head
WEIGHT_FILES = (ADAPTER_WEIGHTS, MODEL_WEIGHTS)

try:
    import fcntl
except ImportError:  # pragma: no cover  (Windows: runs are not locked)
    fcntl = None  # type: ignore[assignment]


def check_output(output: Path, resume: bool, overwrite: bool) -> None:
    """Refuse to silently reuse a run directory; `--resume` continues it, `--overwrite` replaces it. Touches
    nothing, so it can run before the (slow) model load."""
    if resume and overwrite:
        raise UsageError("--resume continues a run and --overwrite replaces it; pass only one of them")
    if resume:
        if not (output / CONFIG_FILE).is_file():
            raise UsageError(f"cannot resume: {str(output)!r} holds no llamagym run ({CONFIG_FILE} missing)")
        if (output / ADAPTER_DIR).is_dir() and not any((output / CHECKPOINTS).glob("update-*")):
            # a `llamagym sft` output (or a run whose checkpoints were deleted): resuming would start from fresh
            # weights and replace the adapter it holds
            raise UsageError(f"cannot resume: {str(output)!r} holds an adapter but no checkpoint to continue from (a "
                             f"`llamagym sft` output?); start a run from it with `llamagym run --init-adapter "
                             f"{output} -o NEW_DIR`")
        check_writable(output, directory=True)
        return
    if output.exists() and not output.is_dir():
        raise UsageError(f"output {str(output)!r} is a file; pass a directory with -o/--output")
    if output.exists() and any(p.name != LOCK_FILE for p in output.iterdir()) and not overwrite:
        raise UsageError(f"output directory {str(output)!r} already holds files; pass --resume to continue "
                         f"that run or --overwrite to replace it")
    check_writable(output, directory=True)


def check_writable(path: Path, directory: bool = False) -> None:
    """Refuse, before any work, an output that cannot be written: the nearest folder above it (the directory itself,
    if it exists) must take a new file. Creates nothing that stays."""
    path = Path(path).absolute()
    place = path if directory else path.parent
    while not place.exists() and place != place.parent:
        place = place.parent
    if not place.is_dir():
        raise UsageError(f"cannot write {str(path)!r}: {str(place)!r} is a file, not a folder; pass an output in a "
                         f"folder")
    try:
        with tempfile.TemporaryFile(dir=place):
            pass
    except OSError as exc:
        raise UsageError(f"cannot write {str(path)!r}: no file can be created in {str(place)!r} "
                         f"({exc.strerror or exc}); pass an output in a writable folder") from None


def default_output(agent: str, env: str) -> Path:
    """`runs/AGENT-ENV-YYYYmmdd-HHMMSS`, with a suffix if a run started in the same second."""
    base = Path("runs") / f"{agent}-{env}-{time.strftime('%Y%m%d-%H%M%S')}"
    path, suffix = base, 1
    while path.exists():
        suffix += 1
        path = base.with_name(f"{base.name}-{suffix}")
    return path


@contextmanager
def claimed(output: Path, resume: bool, overwrite: bool) -> Iterator[Path]:
    """Create (or, with `overwrite`, replace) and lock the run directory for the duration of the run. If the
    run raises and the directory is new and holds no checkpoint, it is removed: nothing half-made stays."""
    existed = output.exists()
    if existed and overwrite and not resume:
        with _locked(output):
            shutil.rmtree(output)
        existed = False
    output.mkdir(parents=True, exist_ok=True)
    with _locked(output):
        if not resume:
            check_output(output, resume=False, overwrite=False)  # another process may have started there
        try:
            yield output
        except BaseException:
            if not resume and not list_checkpoints(output):
                _remove(output, keep_directory=existed)
            raise


@contextmanager
def _locked(output: Path) -> Iterator[None]:
    if fcntl is None:  # pragma: no cover
        yield
        return
    handle: IO[str] = (output / LOCK_FILE).open("a+", encoding="utf-8")
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            owner = handle.read().strip() or "unknown"
            raise UsageError(f"run directory {str(output)!r} is in use by another llamagym process (pid "
                             f"{owner}); wait for it to finish or stop it first") from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        yield
    finally:
        handle.close()


def _remove(output: Path, keep_directory: bool) -> None:
    if not keep_directory:
        shutil.rmtree(output, ignore_errors=True)
        return
    for child in output.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


def is_complete(path: Path) -> bool:
    """Whether `path` holds every file a checkpoint needs (state.json is written last)."""
    return ((path / STATE_FILE).is_file() and (path / TRAINER_FILE).is_file()
            and any((path / name).is_file() for name in WEIGHT_FILES))


def list_checkpoints(run_dir: Path) -> list[Path]:
    """The complete checkpoints of a run, oldest first."""
    root = Path(run_dir) / CHECKPOINTS
    if not root.is_dir():
        return []
    return sorted(p for p in root.glob("update-*") if is_complete(p))


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete checkpoint of a run, or None. Found by name, so a run killed between publishing a
    checkpoint and moving the `latest` pointer still resumes from the newest one."""
    complete = list_checkpoints(run_dir)
    return complete[-1] if complete else None


def find_adapter(path: Path) -> Path:
    """A run directory's adapter, or the given adapter/checkpoint directory itself."""
    if (path / "adapter_config.json").is_file() or (path / WEIGHT_FILES[1]).is_file():
        return path
    if (path / ADAPTER_DIR).is_dir():
        return path / ADAPTER_DIR
    latest = latest_checkpoint(path)
    if latest is not None:
        return latest
    raise UsageError(f"{str(path)!r} holds no adapter: pass a run directory, its adapter/ or a checkpoint")
