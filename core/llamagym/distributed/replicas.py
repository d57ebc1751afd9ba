"""Data-parallel PPO as the run loop's process group: each process plays its own share of the episodes, with its
own environment seeds and sampling seed; every update is one collective step over the episodes of all processes,
so the adapters stay identical everywhere.

A process's batch is full once it has *finished* `batch_size` episodes (kept or dropped), so all processes update
after the same number of episodes and catch up at the end: environment errors that leave one of them with fewer
stored episodes only make its share of an update smaller (PPO copes with uneven or empty shares)."""

from __future__ import annotations

from typing import Any

from llamagym.agent.agent import Agent
from llamagym.agent.episode import Episode, Turn, episode_stats
from llamagym.distributed.global_batch import GlobalBatch
from llamagym.distributed.group import DataParallel, process_device
from llamagym.errors import UsageError
from llamagym.rollout.engine import Engine, Learner
from llamagym.rollout.gym import RolloutEngine
from llamagym.run.interrupts import StopRequest
from llamagym.run.setup import seed_everything

PROCESS_SEED_STRIDE = 1_000_003


def process_seed(seed: int, rank: int) -> int:
    """The sampling seed of process `rank` (process 0 keeps the run's seed)."""
    return (seed + PROCESS_SEED_STRIDE * rank) % 2**31


class Replicas:
    """The processes of a data-parallel run (the loop's `ProcessGroup`)."""

    def __init__(self, dp: DataParallel):
        self.dp = dp
        self.size, self.rank = dp.world_size, dp.rank
        self.updates_here = 0

    # ---- set-up ------------------------------------------------------------------------------------------

    def prepare(self, agent: Agent, seed: int) -> None:
        """Make `agent` one replica of the policy: process 0's weights, updates over every process's samples,
        and a sampling seed of its own."""
        self.dp.broadcast_tensors(agent.model.trainable_parameters())
        agent.trainer.sync = GlobalBatch(self.dp)
        seed_everything(process_seed(seed, self.rank))
        agent.rng.seed(process_seed(seed, self.rank))

    def place(self, engine: Engine, env_id: str) -> None:
        """Give the engine this process's share of the episode indices (and so of the seeds)."""
        if not isinstance(engine, RolloutEngine):
            raise UsageError(f"env {env_id!r}: several processes are supported for Gymnasium envs only")
        engine.process_index, engine.num_processes = self.rank, self.size

    def share(self, episodes: int) -> int:
        """This process's share of `episodes` more episodes."""
        return -(-max(episodes, 0) // self.size)

    def local_index(self, index: int) -> int:
        """The first episode index of this process's engine for a run that has started `index` episodes."""
        return -(-index // self.size)

    # ---- the loop's seam ---------------------------------------------------------------------------------

    def batch_full(self, learner: Learner, finished: int) -> bool:
        return finished // learner.agent.ppo_config.batch_size > self.updates_here

    def train(self, agent: Agent) -> dict[str, float]:
        """One PPO update over the episodes every process has stored (a process may have none); all call it."""
        self.updates_here += 1
        episodes, agent.buffer = agent.buffer, []
        stats = agent.trainer.step(episodes)
        if stats:
            stats.update(self.episode_stats(episodes))
        return stats

    def remaining_updates(self, learner: Learner, episodes: int) -> int:
        batch = learner.agent.ppo_config.batch_size
        return max(0, episodes // batch - self.updates_here) + (1 if episodes % batch else 0)

    def agree(self, stop: StopRequest | None, failure: str | None) -> tuple[bool, str | None]:
        """Every process's stop signal, time limit and environment failure, so that all stop (or fail) after the
        same update; a signal another process got, or its clock's time limit, becomes this one's too (process 0
        writes the summary).

        The answer comes from the gathered values only: a signal that arrives (or a stop file that appears) after
        the gather counts at the next agreement, in every process at once. Reading it again here would let one
        process stop while another goes on to the next update's collectives and waits for it forever."""
        signal = stop.signal if stop is not None and stop.signalled else None
        timed_out = stop is not None and stop.timed_out
        seen = self.dp.gather((signal, timed_out, failure))
        failures = [f"process {rank}: {text}" for rank, (_, _, text) in enumerate(seen) if text is not None]
        signals = [number for number, _, _ in seen if number is not None]
        late = any(limit for _, limit, _ in seen)
        if stop is not None and stop.signal is None and signals:
            stop.signal = signals[0]
        if stop is not None and late:
            stop.timed_out = True
        return bool(signals) or late, failures[0] if failures else None

    def episode_stats(self, episodes: list[Episode]) -> dict[str, float]:
        """`agent.episode_stats` over the episodes of every process."""
        parts = self.dp.gather(episodes_summary(episodes))
        rows = [row for part in parts for row in part]
        return episode_stats(rows) if rows else {}

    # ---- collectives the recorder uses ---------------------------------------------------------------------

    def gather(self, value: Any) -> list[Any]:
        return self.dp.gather(value)

    def broadcast(self, value: Any) -> Any:
        return self.dp.broadcast_object(value)

    def barrier(self) -> None:
        self.dp.barrier()

    def device(self, requested: str) -> str:
        return process_device(requested, self.dp.local_rank)

    def close(self) -> None:
        self.dp.close()


def episodes_summary(episodes: list[Episode]) -> list[Episode]:
    """What `episode_stats` reads of each episode, small enough to gather."""
    summary = []
    for episode in episodes:
        turns = [Turn([], [], "", None, None, turn.valid, reward=0.0, env_reward=turn.env_reward,
                      shaping=dict(turn.shaping)) for turn in episode.turns]
        summary.append(Episode(turns))
    return summary
