"""Experiment trackers for `--report-to`: one small class per backend behind `log(row, step)` and `close()`.

`metrics.jsonl` in the run directory is always written (resuming and `llamagym plot` read it); TensorBoard,
Weights & Biases and MLflow are optional extras, imported only when asked for.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import time
import uuid
from pathlib import Path
from typing import Any, Protocol

from llamagym.errors import UnknownNameError, UsageError
from llamagym.run.metrics import JsonlWriter
from llamagym.run.rundir import METRICS_FILE
from llamagym.run.rundir import TENSORBOARD_DIR, WANDB_ID_FILE, MLFLOW_ID_FILE

PROJECT = "llamagym"

# tracker name -> (module that must be importable, pip extra that installs it)
TRACKERS = {"jsonl": (None, None), "tensorboard": ("tensorboard", "tensorboard"), "wandb": ("wandb", "wandb"),
            "mlflow": ("mlflow", "mlflow")}


class MetricsLogger(Protocol):
    """What the runner needs from a tracker."""

    def log(self, row: dict[str, Any], step: int) -> None: ...

    def close(self) -> None: ...


def tracker_names(report_to: str) -> list[str]:
    """The trackers named in a comma-separated `report_to` ("none" for no extra one), jsonl always first.

    Raises a one-line UsageError for an unknown name or a backend that is not installed.
    """
    names = [name.strip().lower() for name in report_to.split(",") if name.strip()]
    chosen = ["jsonl"]
    for name in names:
        if name == "none":
            continue
        if name not in TRACKERS:
            raise UnknownNameError("tracker", name, [*TRACKERS, "none"],
                                   "Pass a comma-separated list to --report-to", label="choose from")
        module, extra = TRACKERS[name]
        if module is not None and importlib.util.find_spec(module) is None:
            raise UsageError(f"--report-to {name} needs the {module} package: pip install 'llamagym[{extra}]'")
        if name not in chosen:
            chosen.append(name)
    return chosen


def numeric(row: dict[str, Any]) -> dict[str, float]:
    """The finite numbers of a metrics row (what the trackers plot)."""
    return {key: float(value) for key, value in row.items()
            if isinstance(value, (int, float)) and math.isfinite(value)}


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """`{"ppo": {"kl_coef": 0.05}}` as `{"ppo.kl_coef": 0.05}`, for trackers whose parameters are flat."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _run_id(run_dir: Path, file_name: str, new_id: Any) -> str:
    """The tracker's run id stored in the run directory, so `--resume` continues the same tracked run."""
    path = run_dir / file_name
    if path.is_file():
        return path.read_text().strip()
    run_id = str(new_id())
    path.write_text(run_id)
    return run_id


class JsonlLogger:
    """`metrics.jsonl`: one JSON row per PPO update, flushed as it is written."""

    def __init__(self, run_dir: Path):
        self.writer = JsonlWriter(run_dir / METRICS_FILE)

    def log(self, row: dict[str, Any], step: int) -> None:
        self.writer.write(row)

    def sync(self) -> None:
        """Force the rows to disk (before a checkpoint records how many there are)."""
        self.writer.sync()

    def close(self) -> None:
        self.writer.close()


class TensorBoardLogger:
    """TensorBoard event files under `RUN_DIR/tensorboard`; a resumed run purges the steps it redoes."""

    setup_hint = "check that the run directory is writable"

    def __init__(self, run_dir: Path, config: dict[str, Any], resume_step: int | None):
        from torch.utils.tensorboard import SummaryWriter

        purge = resume_step + 1 if resume_step is not None else None
        self.writer = SummaryWriter(log_dir=str(run_dir / TENSORBOARD_DIR), purge_step=purge)
        if resume_step is None:
            self.writer.add_text("config", f"```\n{json.dumps(config, indent=2)}\n```", 0)

    def log(self, row: dict[str, Any], step: int) -> None:
        for key, value in numeric(row).items():
            self.writer.add_scalar(key, value, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class WandbLogger:
    """A Weights & Biases run (project `$WANDB_PROJECT`, else "llamagym"); `WANDB_MODE=offline` works too."""

    setup_hint = "run `wandb login`, or set WANDB_MODE=offline to log to the run directory only"

    def __init__(self, run_dir: Path, config: dict[str, Any], resume_step: int | None):
        import wandb

        run_id = _run_id(run_dir, WANDB_ID_FILE, lambda: uuid.uuid4().hex[:12])
        self.run = wandb.init(project=os.environ.get("WANDB_PROJECT", PROJECT), name=run_dir.name,
                              dir=str(run_dir), config=config, id=run_id, resume="allow")

    def log(self, row: dict[str, Any], step: int) -> None:
        self.run.log(numeric(row), step=step)

    def close(self) -> None:
        self.run.finish()


class MlflowLogger:
    """An MLflow run in experiment `$MLFLOW_EXPERIMENT_NAME` (else "llamagym") of `$MLFLOW_TRACKING_URI`."""

    setup_hint = "set MLFLOW_TRACKING_URI to a tracking store it can use"

    def __init__(self, run_dir: Path, config: dict[str, Any], resume_step: int | None):
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient()
        name = os.environ.get("MLFLOW_EXPERIMENT_NAME", PROJECT)
        experiment = self.client.get_experiment_by_name(name)
        experiment_id = experiment.experiment_id if experiment else self.client.create_experiment(name)
        self.run_id = _run_id(run_dir, MLFLOW_ID_FILE, lambda: self.client.create_run(
            experiment_id, run_name=run_dir.name).info.run_id)
        if resume_step is None:
            params = [Param(key, str(value)[:6000]) for key, value in flatten(config).items()]
            self.client.log_batch(self.run_id, params=params)

    def log(self, row: dict[str, Any], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(key, value, now, step) for key, value in numeric(row).items()]
        self.client.log_batch(self.run_id, metrics=metrics)

    def close(self) -> None:
        self.client.set_terminated(self.run_id)


class Loggers:
    """Every chosen tracker, fed the same rows."""

    def __init__(self, loggers: list[MetricsLogger]):
        self.loggers = loggers

    def log(self, row: dict[str, Any], step: int) -> None:
        for logger in self.loggers:
            logger.log(row, step)

    def sync(self) -> None:
        for logger in self.loggers:
            if hasattr(logger, "sync"):
                logger.sync()

    def close(self) -> None:
        for logger in self.loggers:
            logger.close()


def open_loggers(report_to: str, run_dir: str | Path, config: dict[str, Any], resume_step: int | None = None
                 ) -> Loggers:
    """Open the trackers named in `report_to`; `resume_step` is the last update a resumed run kept."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    backends = {"tensorboard": TensorBoardLogger, "wandb": WandbLogger, "mlflow": MlflowLogger}
    opened: list[MetricsLogger] = [JsonlLogger(run_dir)]
    try:
        for name in tracker_names(report_to)[1:]:
            opened.append(_start(name, backends[name], run_dir, config, resume_step))
    except BaseException:
        Loggers(opened).close()
        raise
    return Loggers(opened)


def _start(name: str, backend: Any, run_dir: Path, config: dict[str, Any], resume_step: int | None
           ) -> MetricsLogger:
    """Open one tracker; its failure (no login, an unusable store) becomes one line saying what to do."""
    try:
        return backend(run_dir, config, resume_step)
    except Exception as exc:
        lines = str(exc).strip().splitlines()
        reason = lines[0][:300] if lines else type(exc).__name__
        again = "--resume" if resume_step is not None else "--overwrite"
        raise UsageError(f"--report-to {name} could not start ({reason}): {backend.setup_hint}, then run again "
                         f"with {again}") from None
