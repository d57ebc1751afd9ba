"""A training run from start to finish, as `llamagym run` does it, in one process or in each of N: claim the run
directory, build the agent and its engine, resume from the latest checkpoint, run `train_loop` with the recorder,
then the final checkpoint, the adapter and `summary.json`."""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from llamagym.agent.agent import Agent
from llamagym.algo.advantages import check_data_parallel
from llamagym.config import RunConfig, build, to_dict
from llamagym.distributed.environment import check_launch_settings, launched_world_size
from llamagym.errors import DamagedFileError, LlamaGymError, TrainingError, UsageError
from llamagym.rollout.engine import Engine
from llamagym.run.checkpoint import (atomic_write_text, newest_intact_checkpoint, remove_staging,
                                     restore_checkpoint, save_model_dir, set_aside)
from llamagym.run.integrity import valid_rows
from llamagym.run.interrupts import StopRequest, stop_requests
from llamagym.run.loggers import tracker_names
from llamagym.run.scoring import score_policy
from llamagym.run.loop import OneProcess, ProcessGroup, train_loop
from llamagym.run.metrics import truncate_jsonl
from llamagym.run.recorder import RunRecorder, fresh_state
from llamagym.run.rundir import (ADAPTER_DIR, CONFIG_FILE, DAMAGED_PREFIX, EPISODES_FILE, METRICS_FILE, SUMMARY_FILE,
                                 check_output, claimed, default_output)
from llamagym.run.setup import (build_agent, check_resumable, config_changes, config_from_run, finished_run,
                                make_engine, planned_updates, run_env)

logger = logging.getLogger(__name__)


def train(config: RunConfig, output: Path | None = None, *, resume: bool = False, overwrite: bool = False,
          show_progress: bool = True) -> dict[str, Any]:
    """Run training as `llamagym run` does; returns the summary also written to `summary.json`.

    Started by a launcher (`--num-processes`, `accelerate launch`, torchrun), each process runs this with its
    share of the episodes; process 0 writes the files. The first SIGINT/SIGTERM stops at the next episode
    boundary (after the next update, with several processes) with a final checkpoint (the summary's
    `interrupted` names the signal); a second raises `ForcedStop` at once. Past `config.max_minutes` of training
    the run stops at its next commit, right after an update (`time_limit_reached` in the summary). A
    `TrainingError` (repeated NaNs, repeated environment errors) is raised after a checkpoint of the last good
    state is written.

    Resuming a run that already has its `config.episodes` episodes (or has trained its `config.max_minutes`)
    loads nothing and returns its summary with `already_complete` set; fewer episodes than it has is a UsageError
    (see `setup.finished_run`)."""
    group = process_group(config)
    try:
        output = Path(group.broadcast(str(output or default_output(config.agent, config.env))))
        on_main(group, lambda: check_output(output, resume, overwrite))
        tracker_names(config.report_to)  # an unknown or missing tracker fails before anything is written
        if resume:
            check_resumable(config_from_run(output) or config, config)
            finished = finished_run(output, config)
            if finished is not None:  # nothing to train: nothing is loaded, and nothing rewritten
                return {**finished, "already_complete": True}
        env_spec = run_env(config)
        updates = planned_updates(env_spec, config, group.size)
        agent = build_agent(_process_config(config, group))
        agent.trainer.planned_updates = updates
        engine = make_engine(agent, env_spec, config)
        group.place(engine, config.env)
        try:
            with _claimed(group, output, resume, overwrite):
                return _train_in(output, agent, engine, config, resume, show_progress, group)
        finally:
            engine.close()
    finally:
        group.close()


def process_group(config: RunConfig) -> ProcessGroup:
    """`OneProcess`, or the data-parallel `Replicas` when a launcher started several processes."""
    if launched_world_size() == 1:
        return OneProcess()
    # single-process runs never import the process group (see llamagym.distributed.group)
    from llamagym.distributed.group import init_data_parallel
    from llamagym.distributed.replicas import Replicas

    check_launch_settings()
    check_data_parallel(config.ppo)
    return Replicas(init_data_parallel(config.device))


def _process_config(config: RunConfig, group: ProcessGroup) -> RunConfig:
    """The config of this process: its own device in a run of several."""
    device = group.device(config.device)
    return config if device == config.device else dataclasses.replace(config, device=device)


def on_main(group: ProcessGroup, action: Callable[[], object]) -> None:
    """Run `action` on process 0 only; an error of llamagym's it raises is raised on every process (a usage error
    as one, any other as a LlamaGymError)."""
    if group.size == 1:
        action()
        return
    message = None
    if group.rank == 0:
        try:
            action()
        except LlamaGymError as exc:
            message = (isinstance(exc, UsageError), str(exc))
    message = group.broadcast(message)
    if message is not None:
        raise (UsageError if message[0] else LlamaGymError)(message[1])


class _claimed:
    """The run directory, created and locked by process 0 for the run; the others wait until it is ready."""

    def __init__(self, group: ProcessGroup, output: Path, resume: bool, overwrite: bool):
        self.group, self.context = group, claimed(output, resume, overwrite) if group.rank == 0 else None

    def __enter__(self) -> None:
        message = None
        if self.context is not None:
            try:
                self.context.__enter__()
            except UsageError as exc:  # in use by another run: every process says so
                message = str(exc)
        message = self.group.broadcast(message)
        if message is not None:
            raise UsageError(message)

    def __exit__(self, *exc: Any) -> None:
        if self.context is not None:
            self.context.__exit__(*exc)  # removes a new run directory that holds no checkpoint; never swallows


def _train_in(output: Path, agent: Agent, engine: Engine, config: RunConfig, resume: bool, show_progress: bool,
              group: ProcessGroup) -> dict[str, Any]:
    state = fresh_state()
    if resume:
        if group.rank == 0:
            remove_staging(output)
        group.barrier()
        contents, damaged = newest_intact_checkpoint(output)
        if contents is not None:
            if contents.engine is not None:
                engine.load_state_dict(contents.engine)  # first: refilling the pool draws from the RNGs restored next
            state.update({k: v for k, v in restore_checkpoint(contents, agent).items()
                          if k not in ("config", "processes")})
        checkpoint = contents.path if contents else None
        on_main(group, lambda: _check_rows(output, state, checkpoint, damaged))  # after every process read it
    group.prepare(agent, config.seed + state["updates"])  # N processes: replicas of process 0's weights
    scoring = config.score_policy and group.size == 1  # N processes: the others would wait at the first barrier
    if scoring and not resume:  # before the clock starts: not training time
        state["policy_score_before"] = score_policy(agent, config.env)
    if group.rank == 0:
        _write_config(output, config, state, resume)
        truncate_jsonl(output / METRICS_FILE, state["metrics_rows"])
        truncate_jsonl(output / EPISODES_FILE, state["episode_rows"])
    group.barrier()
    with stop_requests() as stop:
        recorder = RunRecorder(output, agent, config, state, group, show_progress,
                               engine_state=engine.state_dict)
        if config.max_minutes:
            stop.set_time_limit(config.max_minutes * 60, recorder.elapsed)
        try:
            # in-flight episodes of a stopped run are dropped; a resumed run goes on from the committed index
            train_loop(engine, group.share(config.episodes - state["episodes"]),
                       start_index=group.local_index(state["next_index"]), log=recorder, group=group, stop=stop)
        except TrainingError as exc:
            path = recorder.checkpoint()
            raise TrainingError(f"{exc}. The run stopped; its last good state is in {path}: continue with "
                                f"`llamagym run --resume {output}` (flags given with --resume change settings)"
                                ) from None
        finally:
            recorder.close()
        engine.close()  # a game engine drops its frozen opponents' adapters: only learners are saved
        checkpoint = recorder.checkpoint()  # a signal from here on is already being answered
        if group.rank == 0:
            save_model_dir(agent, output / ADAPTER_DIR)
    if group.rank != 0:
        return group.broadcast(None)
    after = score_policy(agent, config.env) if scoring and not stop.name else None
    return group.broadcast(_summary(output, recorder, stop, checkpoint, group, after))


def _check_rows(output: Path, state: dict[str, Any], checkpoint: Path | None,
                damaged: list[DamagedFileError]) -> None:
    """The run's rows that the resumed checkpoint counts are all there and readable (the rest are truncated next);
    checkpoints newer than it that are damaged are named in one line and set aside."""
    if checkpoint is None:
        return
    valid_rows(output / METRICS_FILE, state["metrics_rows"], checkpoint)
    valid_rows(output / EPISODES_FILE, state["episode_rows"], checkpoint)
    if damaged:
        logger.warning("%s; resuming from the older checkpoint %s (the damaged one is set aside as %s%s)",
                       "; ".join(map(str, damaged)), checkpoint.name, DAMAGED_PREFIX, "update-...")
        set_aside(damaged)


def _summary(output: Path, recorder: RunRecorder, stop: StopRequest, checkpoint: Path | None,
             group: ProcessGroup, score_after: dict[str, Any] | None = None) -> dict[str, Any]:
    committed = recorder.committed
    summary = {"output": str(output), "episodes": committed["episodes"], "updates": committed["updates"],
               "dropped_episodes": committed["dropped_episodes"], "interrupted": stop.name or None,
               "exit_code": stop.exit_code, "time_limit_reached": stop.timed_out and not stop.signal,
               "wall_time_s": committed["time_s"],
               "last_100_return": recorder.running.mean_return(), "checkpoint": str(checkpoint),
               "adapter": str(output / ADAPTER_DIR)}
    if group.size > 1:
        summary["processes"] = group.size
    if score_after is not None:
        summary["policy_score"] = {"before": committed.get("policy_score_before"), "after": score_after}
    atomic_write_text(output / SUMMARY_FILE, json.dumps(summary, indent=2))
    return summary


def _write_config(output: Path, config: RunConfig, state: dict[str, Any], resume: bool) -> None:
    """`config.json`: the settings, and for a resumed run that changed some, when and what changed."""
    path = output / CONFIG_FILE
    record: dict[str, Any] = {"config": to_dict(config)}
    if resume:
        record = json.loads(path.read_text(encoding="utf-8"))
        changes = config_changes(build(RunConfig, record["config"]), config)
        if not changes:
            return
        record["config"] = to_dict(config)
        record.setdefault("changes", []).append({"update": state["updates"], "episode": state["episodes"],
                                                 "settings": changes})
    atomic_write_text(path, json.dumps(record, indent=2))


__all__ = ["train", "process_group"]
