"""`llamagym run` in several processes (data-parallel PPO). Each process plays its own share of the episodes on its
own rollout engine, with its own environment seeds and sampling seed; each PPO update is one collective step over
the episodes of all processes, so the adapters stay identical everywhere; process 0 alone writes the metrics,
episodes, checkpoints and adapter, while the others wait for it at a barrier.

Updates are started by the run loop, not by the agent: every process trains after each `batch_size` episodes it
finishes, then catches up at the end, so all processes make the same number of updates even when environment
errors leave one of them with fewer episodes (PPO copes with uneven or empty shares).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from llamagym.algo.advantages import check_data_parallel
from llamagym.config import RunConfig, build, to_dict
from llamagym.distributed.group import init_data_parallel, process_device
from llamagym.errors import UsageError
from llamagym.plugins.registry import get_registry
from llamagym.run.recorder import RunningStats
from llamagym.run.rundir import check_output, default_output
from llamagym.run.setup import ADAPTER_DIR, CONFIG_FILE, EPISODES_FILE, METRICS_FILE, SUMMARY_FILE, build_agent, make_engine, planned_updates, seed_everything

PROCESS_SEED_STRIDE = 1_000_003


def process_seed(seed: int, rank: int) -> int:
    """The sampling seed of process `rank` (process 0 keeps the run's seed)."""
    return (seed + PROCESS_SEED_STRIDE * rank) % 2**31


def prepare_agent(agent: Any, dp: Any, seed: int) -> None:
    """Make `agent` one replica of a data-parallel policy: process 0's starting weights, PPO updates over every
    process's samples started by the run loop, and a sampling seed of its own."""
    from llamagym.distributed.global_batch import GlobalBatch

    dp.broadcast_tensors(agent.model.trainable_parameters())
    agent.trainer.sync = GlobalBatch(dp)
    agent.train_when_batch_full = False
    seed_everything(process_seed(seed, dp.rank))
    agent._rng.seed(process_seed(seed, dp.rank))


def train_step(agent: Any, dp: Any) -> dict[str, float]:
    """One PPO update over the episodes every process has stored (a process may have none); all must call it."""
    episodes, agent.buffer = agent.buffer, []
    stats = agent.trainer.step(episodes)
    if stats:
        stats.update(global_episode_stats(dp, episodes))
    return stats


def global_episode_stats(dp: Any, episodes: list) -> dict[str, float]:
    """`agent.episode_stats` over the episodes of every process."""
    parts = dp.gather([(e.env_return, len(e.turns), e.invalid_turns) for e in episodes])
    rows = [row for part in parts for row in part]
    if not rows:
        return {}
    turns = sum(t for _, t, _ in rows)
    return {"env/return_mean": sum(r for r, _, _ in rows) / len(rows),
            "env/win_rate": sum(r > 0 for r, _, _ in rows) / len(rows),
            "env/invalid_rate": sum(i for _, _, i in rows) / max(turns, 1),
            "env/turns_per_episode": turns / len(rows), "env/episodes": len(rows)}


def on_main(dp: Any, action: Callable[[], Any]) -> None:
    """Run `action` on process 0 only; a usage error it raises is raised on every process."""
    message = None
    if dp.is_main:
        try:
            action()
        except UsageError as exc:
            message = str(exc)
    message = dp.broadcast_object(message)
    if message is not None:
        raise UsageError(message)


def train_parallel(config: RunConfig, output: Path | None = None, *, resume: bool = False, overwrite: bool = False,
                   show_progress: bool = True) -> dict[str, Any]:
    """`runner.train` for a process of a multi-process run; returns the run's summary on every process."""
    from llamagym.distributed.launch import check_launch_settings

    check_launch_settings()
    check_data_parallel(config.ppo)
    dp = init_data_parallel(config.device)
    try:
        output = Path(dp.broadcast_object(str(output or default_output(config.agent, config.env))))
        on_main(dp, lambda: _prepare_output(output, resume, overwrite))
        if resume:
            config = build(RunConfig, json.loads((output / CONFIG_FILE).read_text())["config"])
        return ParallelRun(config, output, dp, resume, show_progress).run()
    finally:
        dp.close()


def _prepare_output(output: Path, resume: bool, overwrite: bool) -> None:
    """Refuse to reuse a run directory silently; `--overwrite` replaces it."""
    import shutil

    check_output(output, resume, overwrite)
    if overwrite and not resume and output.exists():
        shutil.rmtree(output)


class ParallelRun:
    """The run loop of one process; the collectives (updates, syncs, barriers) happen in the same order on all."""

    def __init__(self, config: RunConfig, output: Path, dp: Any, resume: bool, show_progress: bool):
        self.config, self.output, self.dp, self.resume = config, output, dp, resume
        self.show_progress = show_progress and dp.is_main
        self.state = {"episodes": 0, "next_index": 0, "updates": 0, "metrics_rows": 0, "episode_rows": 0,
                      "env_steps": 0}
        self.running = RunningStats()
        self.pending: list[dict[str, Any]] = []  # this process's episode rows since the last sync
        self.finished = self.updates_here = 0
        self.metrics = self.episodes_log = self.bar = None
        self.started = time.perf_counter()  # reset once the model is loaded, as in a single-process run

    def run(self) -> dict[str, Any]:
        from llamagym.run.checkpoint import latest_checkpoint, load_checkpoint

        config, dp = self.config, self.dp
        env_spec = get_registry().env(config.env)
        updates = planned_updates(env_spec, config, dp.world_size)
        agent = build_agent(dataclasses.replace(config, device=process_device(config.device, dp.local_rank)))
        agent.trainer.planned_updates = updates
        checkpoint = latest_checkpoint(self.output) if self.resume else None
        if checkpoint is not None:
            self.state.update(load_checkpoint(checkpoint, agent))
        prepare_agent(agent, dp, config.seed + self.state["updates"])
        self.agent = agent
        self._open_logs()
        engine = make_engine(agent, env_spec, config)
        if not hasattr(engine, "num_processes"):
            raise UsageError(f"env {config.env!r}: several processes are supported for Gymnasium envs only")
        engine.process_index, engine.num_processes = dp.rank, dp.world_size
        self.started = time.perf_counter()
        per_process = math.ceil(max(config.episodes - self.state["episodes"], 0) / dp.world_size)
        batch = agent.ppo_config.batch_size
        try:
            engine.run(per_process, start_index=math.ceil(self.state["next_index"] / dp.world_size),
                       on_episode=self._on_episode)
            while self.updates_here < per_process // batch:  # episodes lost to failed resets
                self._update()
            if per_process % batch:
                self._update()
            self._sync({})
        finally:
            engine.close()
            self._close_logs()
        return self._finish()

    def _on_episode(self, result: Any) -> None:
        dp = self.dp
        self.finished += 1
        self.pending.append({"episode": result.index * dp.world_size + dp.rank, "seed": result.seed,
                             "return": result.env_return, "turns": result.turns,
                             "invalid_turns": result.invalid_turns, "error": result.error, "process": dp.rank})
        if self.bar is not None:  # an estimate until the next sync counts every process's episodes
            self.bar.update(max(0, min(dp.world_size, self.bar.total - self.bar.n)))
        if self.finished // self.agent.ppo_config.batch_size > self.updates_here:
            self._update()

    def _update(self) -> None:
        self.updates_here += 1
        self._sync(train_step(self.agent, self.dp))

    def _sync(self, stats: dict[str, float]) -> None:
        """Collect every process's new episode rows on process 0 and log the update (all processes call it)."""
        rows = sorted((row for part in self.dp.gather(self.pending) for row in part), key=lambda r: r["episode"])
        self.pending = []
        state = self.state
        state["episodes"] += len(rows)
        state["env_steps"] += sum(row["turns"] for row in rows)
        state["next_index"] = max([state["next_index"]] + [row["episode"] + 1 for row in rows])
        if self.dp.is_main:
            for row in rows:
                self.episodes_log.write(row)
                self.running.add(row["return"], row["invalid_turns"], row["turns"])
            state["episode_rows"] += len(rows)
        if not stats:
            return
        state["updates"] += 1
        if self.dp.is_main:
            self.metrics.log({"update": state["updates"], "episodes": state["episodes"],
                              "time_s": time.perf_counter() - self.started, "processes": self.dp.world_size,
                              **stats}, step=state["updates"])
            state["metrics_rows"] += 1
            if self.bar is not None:
                self.bar.n = state["episodes"]
                self.bar.set_postfix({**self.running.postfix(), "updates": state["updates"]}, refresh=True)
        if self.config.checkpoint_every and state["updates"] % self.config.checkpoint_every == 0:
            self._checkpoint()

    def _checkpoint(self) -> Path | None:
        from llamagym.run.checkpoint import save_checkpoint

        path = None
        if self.dp.is_main:
            path = save_checkpoint(self.output, self.agent, {**self.state, "config": to_dict(self.config),
                                                             "processes": self.dp.world_size})
        self.dp.barrier()
        return path

    def _open_logs(self) -> None:
        from tqdm.auto import tqdm

        from llamagym.run.loggers import open_loggers
        from llamagym.run.metrics import JsonlWriter, read_jsonl, truncate_jsonl

        output, config = self.output, self.config
        if self.dp.is_main:
            output.mkdir(parents=True, exist_ok=True)
            if not self.resume:
                (output / CONFIG_FILE).write_text(json.dumps({"config": to_dict(config)}, indent=2))
            truncate_jsonl(output / METRICS_FILE, self.state["metrics_rows"])
            truncate_jsonl(output / EPISODES_FILE, self.state["episode_rows"])
            self.metrics = open_loggers(config.report_to, output, to_dict(config), self.state["updates"] or None)
            self.episodes_log = JsonlWriter(output / EPISODES_FILE)
            for row in read_jsonl(output / EPISODES_FILE)[-100:]:
                self.running.add(row["return"], row["invalid_turns"], row["turns"])
            if self.show_progress:
                self.bar = tqdm(total=config.episodes, initial=self.state["episodes"], unit="ep",
                                desc=f"{config.agent} on {config.env} ({self.dp.world_size} processes)",
                                dynamic_ncols=True)
        self.dp.barrier()

    def _close_logs(self) -> None:
        for handle in (self.bar, self.metrics, self.episodes_log):
            if handle is not None:
                handle.close()

    def _finish(self) -> dict[str, Any]:
        from llamagym.run.checkpoint import save_model_dir

        checkpoint = self._checkpoint()
        summary = None
        if self.dp.is_main:
            save_model_dir(self.agent, self.output / ADAPTER_DIR)
            summary = {"output": str(self.output), "episodes": self.state["episodes"],
                       "updates": self.state["updates"], "interrupted": None, "exit_code": 0,
                       "dropped_episodes": 0, "checkpoint": str(checkpoint), "processes": self.dp.world_size,
                       "wall_time_s": time.perf_counter() - self.started,
                       "last_100_return": float(self.running.postfix()["return"]),
                       "adapter": str(self.output / ADAPTER_DIR)}
            (self.output / SUMMARY_FILE).write_text(json.dumps(summary, indent=2))
        return self.dp.broadcast_object(summary)


__all__ = ["train_parallel", "prepare_agent", "train_step", "process_seed"]
