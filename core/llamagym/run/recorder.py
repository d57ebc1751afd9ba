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

from llamagym.run.checkpoint import capture_volatile, save_checkpoint
from llamagym.config import RunConfig, to_dict
from llamagym.run.interrupts import StopRequest
from llamagym.run.loggers import open_loggers
from llamagym.run.metrics import EPISODES_FILE, METRICS_FILE, JsonlWriter, read_jsonl, truncate_jsonl

logger = logging.getLogger(__name__)

def fresh_state() -> dict[str, Any]:
    """The counters of a run that has not started; a checkpoint stores them as `state.json`."""
    return {"episodes": 0, "next_index": 0, "updates": 0, "metrics_rows": 0, "episode_rows": 0, "env_steps": 0,
            "dropped_episodes": 0, "time_s": 0.0}


class StopRun(Exception):
    """Raised from the rollout callbacks to end a run at an episode boundary (a stop signal arrived)."""


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
    """Rollout callbacks that log episodes and updates, commit the run, and write checkpoints."""

    def __init__(self, output: Path, agent: Any, config: RunConfig, state: dict[str, Any], stop: StopRequest,
                 show_progress: bool = True, engine_state: Callable[[], dict[str, Any]] | None = None):
        from tqdm.auto import tqdm

        self.output, self.agent, self.config, self.state, self.stop = output, agent, config, state, stop
        self.engine_state = engine_state  # a game engine's other policies and pool, saved with each checkpoint
        # metrics.jsonl (always) and the --report-to trackers; a resumed run continues their step count
        self.metrics = open_loggers(config.report_to, output, to_dict(config), state["updates"] or None)
        self.episodes = JsonlWriter(output / EPISODES_FILE)
        self.running = RunningStats()
        for row in read_jsonl(output / EPISODES_FILE)[-100:]:
            if not row.get("error"):
                self.running.add(row["return"], row["invalid_turns"], row["turns"])
        self.clock_start = time.perf_counter() - state["time_s"]
        self.committed, self.volatile = dict(state), capture_volatile(agent)
        self.committed_engine = engine_state() if engine_state is not None else None
        self.checkpoint_due = False
        self.last_checkpoint: Path | None = None
        self.bar = tqdm(total=config.episodes, initial=state["episodes"], unit="ep", disable=not show_progress,
                        desc=f"{config.agent} on {config.env}", dynamic_ncols=True)

    def elapsed(self) -> float:
        return time.perf_counter() - self.clock_start

    def on_episode(self, result: Any) -> None:
        """Log a finished (or dropped) episode; commit if nothing waits untrained; stop if asked to."""
        state = self.state
        state["episodes"] += 1
        state["next_index"] = max(state["next_index"], result.index + 1)
        state["env_steps"] += result.turns
        state["dropped_episodes"] += result.error is not None
        self.episodes.write({"episode": result.index, "seed": result.seed, "return": result.env_return,
                             "turns": result.turns, "invalid_turns": result.invalid_turns, "error": result.error})
        state["episode_rows"] += 1
        if result.error is None:
            self.running.add(result.env_return, result.invalid_turns, result.turns)
        self.bar.update(1)
        self.bar.set_postfix({**self.running.postfix(), "updates": state["updates"]}, refresh=False)
        if not self.agent.buffer:
            self.commit()
        if self.stop.requested:
            raise StopRun

    def on_update(self, stats: dict[str, float]) -> None:
        """Log one PPO update (a skipped one too, with a warning); a checkpoint follows at the next commit."""
        state = self.state
        state["updates"] += 1
        if stats.get("ppo/skipped_update"):
            logger.warning("update %d skipped: NaN or inf in the advantages, loss or gradient (the weights are "
                           "unchanged; %d skipped in a row stop the run)", state["updates"],
                           self.agent.ppo_config.max_nonfinite_updates)
        # the agent has counted the episode whose end started this update; the run state counts it just after
        episodes = max(state["episodes"], self.agent.counters["episodes"])
        self.metrics.log({"update": state["updates"], "episodes": episodes, "time_s": self.elapsed(),
                          "env/dropped_episodes": state["dropped_episodes"], **stats}, step=state["updates"])
        state["metrics_rows"] += 1
        every = self.config.checkpoint_every
        if every and state["updates"] % every == 0:
            self.checkpoint_due = True

    def commit(self) -> None:
        """Every logged episode has been trained on (or dropped): remember this as the point to resume from."""
        self.state["time_s"] = self.elapsed()
        self.committed, self.volatile = dict(self.state), capture_volatile(self.agent)
        if self.engine_state is not None:  # taken now: closing the engine drops the pool's adapters
            self.committed_engine = self.engine_state()
        if self.checkpoint_due:
            self.checkpoint()

    def checkpoint(self) -> Path:
        """Write a checkpoint of the last commit (the weights have not changed since: updates commit)."""
        state = {**self.committed, "config": to_dict(self.config)}
        self.metrics.sync()
        self.episodes.sync()
        self.last_checkpoint = save_checkpoint(self.output, self.agent, state, self.volatile,
                                               engine_state=self.committed_engine)
        self.checkpoint_due = False
        return self.last_checkpoint

    def close(self) -> None:
        """Close the logs, keeping only the rows of the last commit (the rest would be replayed on resume)."""
        self.bar.close()
        self.metrics.close()
        self.episodes.close()
        truncate_jsonl(self.output / METRICS_FILE, self.committed["metrics_rows"])
        truncate_jsonl(self.output / EPISODES_FILE, self.committed["episode_rows"])
