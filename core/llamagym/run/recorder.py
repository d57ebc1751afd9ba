"""What a run writes as it goes, kept consistent with its checkpoints. The run *commits* whenever every finished
episode has been trained on (right after each update); a checkpoint always stores the run as of its last commit,
and resuming truncates `metrics.jsonl` and `episodes.jsonl` to the rows that commit had, so a resumed run
continues with no row duplicated and none missing."""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from llamagym.agent.agent import Agent
from llamagym.rollout.engine import EpisodeResult, Learner
from llamagym.run.checkpoint import capture_volatile, save_checkpoint
from llamagym.config import RunConfig, to_dict
from llamagym.run.loggers import open_loggers
from llamagym.run.loop import ProcessGroup
from llamagym.run.metrics import JsonlWriter, read_jsonl, truncate_jsonl
from llamagym.run.rundir import EPISODES_FILE, METRICS_FILE

logger = logging.getLogger(__name__)

def fresh_state() -> dict[str, Any]:
    """The counters of a run that has not started; a checkpoint stores them as `state.json`."""
    return {"episodes": 0, "next_index": 0, "updates": 0, "metrics_rows": 0, "episode_rows": 0, "env_steps": 0,
            "dropped_episodes": 0, "time_s": 0.0}


class RunningStats:
    """Return, win rate and invalid-action rate over the last `window` episodes, for the progress bar."""

    def __init__(self, window: int = 100):
        self.returns: deque[float] = deque(maxlen=window)
        self.invalid: deque[tuple[int, int]] = deque(maxlen=window)

    def add(self, env_return: float, invalid: int, turns: int) -> None:
        self.returns.append(env_return)
        self.invalid.append((invalid, turns))

    def mean_return(self) -> float:
        return sum(self.returns) / max(len(self.returns), 1)

    def postfix(self) -> dict[str, str]:
        n = max(len(self.returns), 1)
        turns = max(sum(t for _, t in self.invalid), 1)
        return {"return": f"{self.mean_return():+.3f}", "win": f"{sum(r > 0 for r in self.returns) / n:.2f}",
                "invalid": f"{sum(i for i, _ in self.invalid) / turns:.2f}"}


class RunRecorder:
    """The run's log (the loop's `RunLog`): episode and update rows, trackers, the progress bar, commits and
    checkpoints. In a run of several processes, each process's episode rows are gathered at every update and
    process 0 alone writes files."""

    def __init__(self, output: Path, agent: Agent, config: RunConfig, state: dict[str, Any], group: ProcessGroup,
                 show_progress: bool = True, engine_state: Callable[[], dict[str, Any]] | None = None):
        self.output, self.agent, self.config, self.state, self.group = output, agent, config, state, group
        self.main = group.rank == 0
        self.engine_state = engine_state  # a game engine's other policies and pool, saved with each checkpoint
        self.pending: list[dict[str, Any]] = []  # episode rows not yet counted (several processes: until a sync)
        self.running = RunningStats()
        self.metrics: Any = None
        self.episodes: JsonlWriter | None = None
        if self.main:
            # metrics.jsonl (always) and the --report-to trackers; a resumed run continues their step count
            self.metrics = open_loggers(config.report_to, output, to_dict(config), state["updates"] or None)
            self.episodes = JsonlWriter(output / EPISODES_FILE)
            for row in read_jsonl(output / EPISODES_FILE)[-100:]:
                if not row.get("error"):
                    self.running.add(row["return"], row["invalid_turns"], row["turns"])
        self.clock_start = time.perf_counter() - state["time_s"]
        self.committed, self.volatile = dict(state), capture_volatile(agent)
        self.committed_engine = engine_state() if engine_state is not None else None
        self.checkpoint_due = False
        self.last_checkpoint: Path | None = None
        processes = f" ({group.size} processes)" if group.size > 1 else ""
        self.bar = tqdm(total=config.episodes, initial=state["episodes"], unit="ep",
                        disable=not (show_progress and self.main), desc=f"{config.agent} on {config.env}{processes}",
                        dynamic_ncols=True)

    def elapsed(self) -> float:
        return time.perf_counter() - self.clock_start

    def episode(self, result: EpisodeResult) -> None:
        """A finished (or dropped) episode: its row (in a run of several processes, with its index in the run)."""
        size, rank = self.group.size, self.group.rank
        row = {"episode": result.index * size + rank, "seed": result.seed, "return": result.env_return,
               "turns": result.turns, "invalid_turns": result.invalid_turns, "error": result.error}
        if size > 1:
            row["process"] = rank
        self.pending.append(row)
        if size == 1:
            self.flush()
        else:  # an estimate until the next sync counts every process's episodes
            self.bar.update(max(0, min(size, self.bar.total - self.bar.n)))

    def flush(self) -> None:
        """Count and write the pending episode rows (of every process, in episode order: a collective call)."""
        rows = self.pending
        if self.group.size > 1:
            rows = sorted((row for part in self.group.gather(self.pending) for row in part),
                          key=lambda r: r["episode"])
        self.pending = []
        state = self.state
        for row in rows:
            state["episodes"] += 1
            state["next_index"] = max(state["next_index"], row["episode"] + 1)
            state["env_steps"] += row["turns"]
            state["dropped_episodes"] += row["error"] is not None
            if self.episodes is not None:
                self.episodes.write(row)
            state["episode_rows"] += 1
            if row["error"] is None:
                self.running.add(row["return"], row["invalid_turns"], row["turns"])
        if self.group.size == 1:
            self.bar.update(len(rows))
        elif rows:
            self.bar.n = state["episodes"]
        self.bar.set_postfix({**self.running.postfix(), "updates": state["updates"]}, refresh=False)

    def update(self, learner: Learner, stats: dict[str, float]) -> None:
        """Log one update (a skipped one too, with a warning); a checkpoint follows at the next commit."""
        if self.group.size > 1:
            self.flush()
        state = self.state
        state["updates"] += 1
        if stats.get("ppo/skipped_update"):
            logger.warning("update %d skipped: NaN or inf in the advantages, loss or gradient (the weights are "
                           "unchanged; %d skipped in a row stop the run)", state["updates"],
                           learner.agent.ppo_config.max_nonfinite_updates)
        # the agent has counted the episode whose end started this update; the run state counts it just after
        episodes = max(state["episodes"], self.agent.counters["episodes"])
        processes = {"processes": self.group.size} if self.group.size > 1 else {}
        if self.metrics is not None:
            self.metrics.log({"update": state["updates"], "episodes": episodes, "time_s": self.elapsed(),
                              "env/dropped_episodes": state["dropped_episodes"], **processes, **stats},
                             step=state["updates"])
        state["metrics_rows"] += 1
        every = self.config.checkpoint_every
        if every and state["updates"] % every == 0:
            self.checkpoint_due = True

    def commit(self) -> None:
        """Every logged episode has been trained on (or dropped): remember this as the point to resume from."""
        if self.group.size > 1:
            self.flush()
        self.state["time_s"] = self.elapsed()
        self.committed, self.volatile = dict(self.state), capture_volatile(self.agent)
        if self.engine_state is not None:  # taken now: closing the engine drops the pool's adapters
            self.committed_engine = self.engine_state()
        if self.checkpoint_due:
            self.checkpoint()

    def checkpoint(self) -> Path | None:
        """Write a checkpoint of the last commit (the weights have not changed since: updates commit); process 0
        writes it while the others wait. Returns its path (None on the other processes)."""
        self.checkpoint_due = False
        if self.main:
            processes = {"processes": self.group.size} if self.group.size > 1 else {}
            state = {**self.committed, "config": to_dict(self.config), **processes}
            assert self.episodes is not None  # process 0 holds the logs
            self.metrics.sync()
            self.episodes.sync()
            self.last_checkpoint = save_checkpoint(self.output, self.agent, state, self.volatile,
                                                   engine_state=self.committed_engine or None)  # engines with state of their own
        self.group.barrier()
        return self.last_checkpoint

    def close(self) -> None:
        """Close the logs, keeping only the rows of the last commit (the rest would be replayed on resume)."""
        self.bar.close()
        if self.episodes is None:  # processes other than 0 write nothing
            return
        self.metrics.close()
        self.episodes.close()
        truncate_jsonl(self.output / METRICS_FILE, self.committed["metrics_rows"])
        truncate_jsonl(self.output / EPISODES_FILE, self.committed["episode_rows"])
