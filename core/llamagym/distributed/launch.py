"""`llamagym run --num-processes N`: start N processes with torch's elastic launcher (the engine under torchrun and
`accelerate launch`), pass Ctrl-C on to them, and report a failed one in one line. Kept free of torch imports at
module level."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from llamagym import errors
from llamagym.config import RunConfig
from llamagym.distributed.environment import launched_world_size
from llamagym.errors import LlamaGymError, TrainingError, UsageError
from llamagym.logs import configure_logging
from llamagym.run.interrupts import STOP_FILE_ENV, ForcedStop

def launch(num_processes: int, config: RunConfig, output: Path | None, *, resume: bool, overwrite: bool,
           show_progress: bool, verbose: bool = False) -> dict[str, Any]:
    """Run `train` in `num_processes` processes on this machine; returns process 0's summary.

    The first Ctrl-C (or SIGTERM to this process) asks every process to stop after its next update, with a
    checkpoint; a second one stops them at once (`ForcedStop`)."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError  # torch: not for --help
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    if launched_world_size() > 1:
        raise UsageError("--num-processes starts processes itself; under accelerate launch or torchrun leave it "
                         "out (the launcher's --num_processes decides)")
    settings = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=num_processes, run_id=uuid.uuid4().hex,
                            rdzv_backend="c10d", rdzv_endpoint="localhost:0", max_restarts=0,
                            monitor_interval=0.5)
    _quiet_launcher(verbose)
    stop_file = Path(tempfile.mkdtemp(prefix="llamagym-stop-")) / "stop"
    try:
        with _signals_to(stop_file):
            results = elastic_launch(settings, _worker)(config, str(output) if output else None, resume, overwrite,
                                                        show_progress, verbose, str(stop_file))
    except ChildFailedError as exc:
        raise _child_error(exc) from None
    finally:
        shutil.rmtree(stop_file.parent, ignore_errors=True)
    return results[0]


@contextmanager
def _signals_to(stop_file: Path) -> Iterator[None]:
    """While the processes run, the launcher's first SIGINT/SIGTERM writes `stop_file` (the processes stop after
    their next update) instead of killing them; a second one kills them (`ForcedStop`)."""
    from torch.distributed.elastic.multiprocessing import api

    original = api._terminate_process_handler

    def handler(signum: int, frame: Any) -> None:
        if stop_file.exists():
            original(signum, frame)  # raises SignalException: the agent kills the processes
        staging = stop_file.with_name(stop_file.name + ".tmp")  # the processes never read half a file
        staging.write_text(str(signum), encoding="utf-8")
        os.replace(staging, stop_file)

    # installed when the processes start
    api._terminate_process_handler = handler
    try:
        yield
    except api.SignalException as exc:
        raise ForcedStop(exc.sigval) from None
    finally:
        api._terminate_process_handler = original


def _worker(config: RunConfig, output: str | None, resume: bool, overwrite: bool, show_progress: bool,
            verbose: bool, stop_file: str) -> dict[str, Any]:
    """One process of a `--num-processes` run (started by the elastic launcher with its rank in the environment).
    Ctrl-C reaches it through the launcher's stop file, so a terminal's SIGINT to every process counts once."""
    from llamagym.run.training import train  # imports torch: not for --help

    configure_logging(verbose)
    os.environ[STOP_FILE_ENV] = stop_file
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    return train(config, Path(output) if output else None, resume=resume, overwrite=overwrite,
                 show_progress=show_progress)


def _quiet_launcher(verbose: bool) -> None:
    """The launcher logs every worker's failure with its traceback; keep that for `-v`."""
    if not verbose:
        logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)


def _child_error(exc: Any) -> LlamaGymError:
    """One line for the first process that failed: a llamagym error keeps its kind (usage errors exit with 2)."""
    rank, failure = exc.get_first_failure()
    message = failure.message.get("message", "") if isinstance(failure.message, dict) else str(failure.message)
    name, _, text = message.partition(": ")
    kind = getattr(errors, name, None)
    if isinstance(kind, type) and issubclass(kind, UsageError):
        return UsageError(text)
    if isinstance(kind, type) and issubclass(kind, LlamaGymError):
        return TrainingError(f"process {rank}: {text}")
    detail = message or f"exit code {failure.exitcode}"
    return TrainingError(f"process {rank} failed: {detail} (run with -v for its traceback)")


__all__ = ["launch"]
