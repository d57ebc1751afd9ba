"""What every rollout engine is: it plays episodes and yields what happens, and the run loop
(`llamagym.run.loop.train_loop`) decides what to do with it. An engine never trains.

    for event in engine.play(episodes):
        Trajectory(learner, episode)   a learning policy's episode ended: store it for its next update
        Finished(result)               an episode (a game) ended or was dropped: what the logs record
        Drained()                      grouped batches (GRPO): every episode started so far has ended, and the
                                       next ones start once the stored batch has trained
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, Union, runtime_checkable

from llamagym.errors import TrainingError

if TYPE_CHECKING:
    from llamagym.agent.agent import Agent
    from llamagym.agent.episode import Episode

logger = logging.getLogger(__name__)

EVAL_SEED_OFFSET = 1_000_000_007  # evaluation episodes never share seeds with training episodes


def episode_seed(seed: int, index: int, evaluation: bool = False) -> int:
    """The reset seed of episode `index`: fixed per index, so runs are reproducible whatever the scheduling."""
    return (seed * 7_919 + index + (EVAL_SEED_OFFSET if evaluation else 0)) % 2**31


@dataclass
class EpisodeResult:
    """What one finished (or failed) episode amounted to."""

    index: int
    seed: int
    env_return: float
    turns: int
    invalid_turns: int
    error: str | None = None


@runtime_checkable
class Learner(Protocol):
    """A policy that trains: its agent (trainer, batch buffer) and the adapter it trains with."""

    name: str

    @property
    def agent(self) -> Agent: ...

    def training(self) -> Any:
        """A context in which the learner's adapter is the active one (its update runs inside it)."""


@dataclass
class Trajectory:
    """A learning policy's episode ended: the loop stores it for that policy's next update."""

    learner: Learner
    episode: Episode


@dataclass
class Finished:
    """An episode (a game) ended, or was dropped after an environment error (`result.error`)."""

    result: EpisodeResult


@dataclass
class Drained:
    """Grouped batches: every episode started so far has ended; the next start after the loop's update."""


Event = Union[Trajectory, Finished, Drained]


@runtime_checkable
class Engine(Protocol):
    """Plays episodes on several environment copies at once and yields what happens (see the module's doc)."""

    num_envs: int
    env_steps: int
    max_env_errors: int

    def play(self, episodes: int, *, learn: bool = True, start_index: int = 0) -> Iterator[Event]:
        """Play episodes `start_index .. start_index + episodes - 1` (with `learn`, training episodes)."""

    def learners(self) -> list[Learner]:
        """The policies that learn, in the order the run's last updates take them: the main policy last."""

    def after_update(self, learner: Learner, stats: dict[str, Any]) -> dict[str, Any]:
        """Told that `learner` made an update with `stats`; returns the stats to log for it."""

    def run(self, episodes: int, *, learn: bool = False, start_index: int = 0,
            on_episode: Callable[[EpisodeResult], None] | None = None) -> list[EpisodeResult]:
        """Play episodes without training (evaluation, collection): `play_through`."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


def play_through(engine: Engine, episodes: int, *, learn: bool = False, start_index: int = 0,
                 on_episode: Callable[[EpisodeResult], None] | None = None) -> list[EpisodeResult]:
    """Play episodes without training (evaluation, collection): nothing stores the episodes that end. Environment
    errors count against the engine's `max_env_errors` as in a run."""
    budget, results = ErrorBudget(engine.max_env_errors), []
    for event in engine.play(episodes, learn=learn, start_index=start_index):
        if isinstance(event, Finished):
            results.append(event.result)
            if on_episode is not None:
                on_episode(event.result)
            budget.count(event.result)
    return results


@dataclass
class ErrorBudget:
    """Environment errors in a row (in reset or step) before the run stops; each drops its episode. 0: never."""

    limit: int
    in_a_row: int = 0
    total: int = field(default=0)

    def count(self, result: EpisodeResult) -> None:
        if result.error is None:
            self.in_a_row = 0
            return
        self.total += 1
        self.in_a_row += 1
        logger.warning("environment error (%d so far): %s; the episode is dropped", self.total, result.error)
        if self.limit and self.in_a_row >= self.limit:
            raise TrainingError(f"{self.in_a_row} environment errors in a row (limit {self.limit}, set with "
                                f"--max-env-errors); the last: {result.error}")
