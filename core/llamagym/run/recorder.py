"""What a run writes as it goes, kept consistent with its checkpoints. The run *commits* whenever every finished
episode has been trained on (right after each update); a checkpoint always stores the run as of its last commit,
and resuming truncates `metrics.jsonl` and `episodes.jsonl` to the rows that commit had, so a resumed run
continues with no row duplicated and none missing."""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from llamagym.agent.agent import Agent
from llamagym.rollout.engine import EpisodeResult, Learner, sign_outcome
from llamagym.run.checkpoint import capture_volatile, save_checkpoint
from llamagym.config import RunConfig, to_dict
from llamagym.run.loggers import open_loggers
from llamagym.run.loop import ProcessGroup
from llamagym.run.metrics import JsonlWriter, read_jsonl, truncate_jsonl
from llamagym.run.rundir import EPISODES_FILE, METRICS_FILE
from llamagym.run.memory import release_freed_memory
from llamagym.run.threads import ThreadBalancer

logger = logging.getLogger(__name__)

OUTCOME = "_outcome"  # an episode row's outcome while it waits to be counted; episodes.jsonl does not hold it


def fresh_state() -> dict[str, Any]:
    """The counters of a run that has not started; a checkpoint stores them as `state.json`."""
    return {"episodes": 0, "next_index": 0, "updates": 0, "metrics_rows": 0, "episode_rows": 0, "env_steps": 0,
            "dropped_episodes": 0, "time_s": 0.0}


def records_conversation(index: int, share: float) -> bool:
    """Whether episode `index` of a run that records `share` (0..1) of its conversations records its own: evenly
    spread over the indices, episode 0 first (0.5: every other one, 0.1: one in ten), so reruns and resumed runs
    pick the same episodes."""
    if share >= 1:
        return True
    if share <= 0:
        return False
    return math.floor(index * share) != math.floor((index - 1) * share)


def no_conversation(messages: Any) -> Any:
    """What `messages` is in a row that records none, of the same shape: an empty list, or a game's seats each
    mapped to one (a column keeps one type however many rows record a conversation)."""
    if isinstance(messages, dict):
        return {seat: [] for seat in messages}
    return []


class RunningStats:
    """Return, win rate and invalid-action rate over the last `window` episodes, for the progress bar."""

    def __init__(self, window: int = 100):
        self.returns: deque[float] = deque(maxlen=window)
        self.wins: deque[bool] = deque(maxlen=window)
        self.invalid: deque[tuple[int, int]] = deque(maxlen=window)

    def add(self, env_return: float, invalid: int, turns: int, outcome: str | None = None) -> None:
        """One episode; a win is its `outcome`'s (as evaluation counts it), else the sign of its return."""
        self.returns.append(env_return)
        self.wins.append((outcome or sign_outcome(env_return)) == "win")
        self.invalid.append((invalid, turns))

    def mean_return(self) -> float:
        return sum(self.returns) / max(len(self.returns), 1)

    def postfix(self) -> dict[str, str]:
        n = max(len(self.returns), 1)
        turns = max(sum(t for _, t in self.invalid), 1)
        return {"return": f"{self.mean_return():+.3f}", "win": f"{sum(self.wins) / n:.2f}",
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
        self.threads = ThreadBalancer()
        self.metrics: Any = None
        self.episodes: JsonlWriter | None = None
        if self.main:
            # metrics.jsonl (always) and the --report-to trackers; a resumed run continues their step count
            self.metrics = open_loggers(config.report_to, output, to_dict(config), state["updates"] or None)
            self.episodes = JsonlWriter(output / EPISODES_FILE)
            for row in read_jsonl(output / EPISODES_FILE)[-100:]:
                if not row.get("error") and isinstance(row.get("return"), (int, float)):  # NaN is written as null
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
        """A finished (or dropped) episode: its row (in a run of several processes, with its index in the run),
        with its conversation if the run records this episode's (`record_conversations`)."""
        size, rank = self.group.size, self.group.rank
        index = result.index * size + rank
        row: dict[str, Any] = {"episode": index, "seed": result.seed, "return": result.env_return,
                               "turns": result.turns, "invalid_turns": result.invalid_turns, "error": result.error}
        if size > 1:
            row["process"] = rank
        messages = result.messages if result.messages is not None else []
        recorded = records_conversation(index, self.config.record_conversations)
        row["messages"] = messages if recorded else no_conversation(messages)
        row[OUTCOME] = result.outcome  # for the bar, not the file (taken off before the row is written)
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
            outcome = row.pop(OUTCOME, None)
            if self.episodes is not None:
                self.episodes.write(row)
            state["episode_rows"] += 1
            if row["error"] is None:
                self.running.add(row["return"], row["invalid_turns"], row["turns"], outcome)
        if self.group.size == 1:
            self.bar.update(len(rows))
        elif rows:
            self.bar.n = state["episodes"]
        self.show(refresh=False)

    def show(self, phase: str | None = None, refresh: bool = True) -> None:
        """The bar's postfix: the last 100 episodes, the updates so far, and the phase (an update) if any."""
        postfix = {**self.running.postfix(), "updates": self.state["updates"]}
        text = ", ".join(f"{key}={value}" for key, value in postfix.items())
        self.bar.set_postfix_str(f"{text}, {phase}" if phase else text, refresh=refresh)

    @contextmanager
    def updating(self, learner: Learner) -> Iterator[None]:
        """An update runs: the bar says so ("updating", then "updating (epoch k/n)" as the trainer reports its
        epochs), and its time is kept out of the bar's per-episode rate, so the ETA does not jump while it runs
        and after (the elapsed time stays wall-clock time)."""
        trainer = learner.agent.trainer
        previous = trainer.on_progress

        def progress(phase: str) -> None:
            self.show(f"updating ({phase})")

        self.threads.rebalance()  # the cores other processes left free since the last update
        started = self._bar_clock()
        self.show("updating")
        trainer.on_progress = progress
        try:
            yield
        finally:
            trainer.on_progress = previous
            release_freed_memory()  # the update's activations, so that resident memory does not creep up
            if not self.bar.disable:  # the next episodes' rate is measured from where they began to play
                self.bar.last_print_t += max(0.0, self._bar_clock() - started)
            self.show()

    def _bar_clock(self) -> float:
        """Seconds on the bar's own clock (its elapsed time)."""
        return 0.0 if self.bar.disable else float(self.bar.format_dict["elapsed"])

    def update(self, learner: Learner, stats: dict[str, float], ending: int = 0) -> None:
        """Log one update (a skipped one too, with a warning); a checkpoint follows at the next commit. Its
        `episodes` counts what the run counts (`--episodes`, summary.json): episodes, or games in a PettingZoo run,
        not seats; those ended so far, the `ending` one whose end filled the batch included."""
        if self.group.size > 1:
            self.flush()
        state = self.state
        state["updates"] += 1
        if stats.get("ppo/skipped_update"):
            logger.warning("update %d skipped: NaN or inf in the advantages, loss or gradient (the weights are "
                           "unchanged; %d skipped in a row stop the run)", state["updates"],
                           learner.agent.ppo_config.max_nonfinite_updates)
        episodes = state["episodes"] + ending  # every logged row is counted (several processes: flushed above)
        processes = {"processes": self.group.size} if self.group.size > 1 else {}
        if self.metrics is not None:
            self.metrics.log({"update": state["updates"], "episodes": episodes, "time_s": self.elapsed(),
                              "env/dropped_episodes": state["dropped_episodes"], **processes, **stats},
                             step=state["updates"])
        state["metrics_rows"] += 1
        self.show()  # the bar counts this update now, the last one too
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
        writes it while the others wait. Returns its path, on every process."""
        self.checkpoint_due = False
        if self.main:
            processes = {"processes": self.group.size} if self.group.size > 1 else {}
            state = {**self.committed, "config": to_dict(self.config), **processes}
            assert self.episodes is not None  # process 0 holds the logs
            self.metrics.sync()
            self.episodes.sync()
            self.last_checkpoint = save_checkpoint(self.output, self.agent, state, self.volatile,
                                                   engine_state=self.committed_engine or None)  # engines with state of their own
        self.last_checkpoint = self.group.broadcast(self.last_checkpoint)  # the others wait for it here
        return self.last_checkpoint

    def close(self) -> None:
        """Close the logs, keeping only the rows of the last commit (the rest would be replayed on resume)."""
        self.show(refresh=False)
        self.bar.close()
        if self.episodes is None:  # processes other than 0 write nothing
            return
        self.metrics.close()
        self.episodes.close()
        truncate_jsonl(self.output / METRICS_FILE, self.committed["metrics_rows"])
        truncate_jsonl(self.output / EPISODES_FILE, self.committed["episode_rows"])
