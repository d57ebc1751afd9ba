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
import numbers
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, Union, runtime_checkable

from llamagym.errors import PluginError, TrainingError
from llamagym.plugins.calling import call_hook

if TYPE_CHECKING:
    from llamagym.agent.agent import Agent
    from llamagym.agent.episode import Episode

logger = logging.getLogger(__name__)

EVAL_SEED_OFFSET = 1_000_000_007  # evaluation episodes never share seeds with training episodes
OUTCOMES = ("win", "draw", "loss")

Messages = list[dict[str, str]]  # a conversation: {"role", "content"} messages, the system prompt first


def episode_seed(seed: int, index: int, evaluation: bool = False) -> int:
    """The reset seed of episode `index`: fixed per index, so runs are reproducible whatever the scheduling."""
    return (seed * 7_919 + index + (EVAL_SEED_OFFSET if evaluation else 0)) % 2**31


def episode_outcome(agent: Agent, env_return: float, info: Mapping[str, Any] | None) -> str:
    """Whether an episode was a win, a draw or a loss: the first of

    1. a plugin's (or the agent's) answer to `llamagym_episode_outcome(agent, env_return, info)`;
    2. the env's word in the final step's `info`: `info["outcome"]` ("win", "draw" or "loss"), else
       `info["is_success"]` (a bool, Gymnasium's convention: True a win, False a loss);
    3. the sign of the return (> 0 a win, 0 a draw, < 0 a loss).
    """
    info = dict(info or {})
    answer = call_hook(agent, "llamagym_episode_outcome", env_return=env_return, info=info)
    if answer is not None:
        if answer not in OUTCOMES:
            raise PluginError(f"llamagym_episode_outcome returned {answer!r}; it must return one of "
                              f"{', '.join(OUTCOMES)} or None")
        return str(answer)
    told = info.get("outcome")
    if isinstance(told, str) and told in OUTCOMES:
        return told
    success = info.get("is_success")
    if isinstance(success, (bool, numbers.Number)) or type(success).__name__ == "bool_":  # numpy's bool too
        return "win" if bool(success) else "loss"
    return sign_outcome(env_return)


def sign_outcome(env_return: float) -> str:
    """The outcome by the sign of the return: what counts when neither the env nor a plugin says."""
    return "win" if env_return > 0 else "loss" if env_return < 0 else "draw"


@dataclass
class EpisodeResult:
    """What one finished (or failed) episode amounted to. `outcome` is "win", "draw" or "loss" (see
    `episode_outcome`; None for a dropped episode); `messages` is the conversation of the episode (a game: the main
    policy's, for each seat), as `episodes.jsonl` records it."""

    index: int
    seed: int
    env_return: float
    turns: int
    invalid_turns: int
    error: str | None = None
    outcome: str | None = None
    messages: Messages | dict[str, Messages] | None = None


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
            failure = budget.count(event.result)
            if failure is not None:
                raise TrainingError(failure)
    return results


@dataclass
class ErrorBudget:
    """Environment errors in a row (in reset or step) before the run stops; each drops its episode. 0: never."""

    limit: int
    in_a_row: int = 0
    total: int = field(default=0)

    def count(self, result: EpisodeResult) -> str | None:
        """Count `result`; once the limit is reached, the reason the run stops (else None)."""
        if result.error is None:
            self.in_a_row = 0
            return None
        self.total += 1
        self.in_a_row += 1
        logger.warning("environment error (%d so far): %s; the episode is dropped", self.total, result.error)
        if self.limit and self.in_a_row >= self.limit:
            return (f"{self.in_a_row} environment errors in a row (limit {self.limit}, set with --max-env-errors); "
                    f"the last: {result.error}")
        return None
