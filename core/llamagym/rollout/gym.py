"""The batched rollout engine: N copies of a Gymnasium environment stepped together, every waiting copy answered
by one batched generation; finished episodes are reset and refilled, and PPO runs when a batch is full."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)

EVAL_SEED_OFFSET = 1_000_000_007  # evaluation episodes never share seeds with training episodes


@dataclass
class EpisodeResult:
    """What one finished (or failed) episode amounted to."""

    index: int
    seed: int
    env_return: float
    turns: int
    invalid_turns: int
    error: str | None = None


def episode_seed(seed: int, index: int, evaluation: bool = False) -> int:
    """The reset seed of episode `index`: fixed per index, so runs are reproducible whatever the scheduling."""
    return (seed * 7_919 + index + (EVAL_SEED_OFFSET if evaluation else 0)) % 2**31


class RolloutEngine:
    """Runs `agent` on `num_envs` environment copies made by `make_env`.

    In process `process_index` of `num_processes` (data-parallel runs), this engine's episode i is episode
    i × num_processes + process_index of the whole run and has that episode's seed, so no two processes share one.

    With `group_size` g > 1, training episodes come in groups of g consecutive indices played from one reset seed
    (GRPO's groups), each episode's `group` names its seed, and an update holds whole groups: the episodes of the
    next batch start once this batch has trained.

    An episode that ends by truncation (a time limit) and not termination hands the agent the observation it was
    cut at, so that PPO bootstraps from that state's value instead of treating the cut as the game's end.
    """

    def __init__(self, agent: Any, make_env: Callable[[], Any], num_envs: int = 16, seed: int = 0,
                 max_env_errors: int = 10, process_index: int = 0, num_processes: int = 1, group_size: int = 1):
        self.agent, self.num_envs, self.seed, self.group_size = agent, num_envs, seed, group_size
        self.process_index, self.num_processes = process_index, num_processes
        self.envs = [make_env() for _ in range(num_envs)]
        self.max_env_errors = max_env_errors  # errors in a row before the run stops (0: never)
        if getattr(agent, "action_space", None) is None:
            agent.action_space = self.envs[0].action_space
        self.env_steps = 0
        self.env_errors = 0
        self.env_errors_in_a_row = 0

    def run(self, episodes: int, *, learn: bool = True, start_index: int = 0,
            on_episode: Callable[[EpisodeResult], None] | None = None,
            on_update: Callable[[dict[str, float]], None] | None = None) -> list[EpisodeResult]:
        """Play episodes `start_index .. start_index + episodes - 1`; with `learn`, train as batches fill."""
        self.agent.reset_conversations()
        results: list[EpisodeResult] = []
        next_index, end = start_index, start_index + episodes
        slots: dict[int, tuple[int, Any]] = {}  # env slot -> (episode index, current observation)
        returns: dict[int, float] = {}

        def report(result: EpisodeResult) -> None:
            results.append(result)
            if on_episode is not None:
                on_episode(result)

        limit = self._batch_end(next_index, end, learn)
        for slot in range(self.num_envs):
            next_index = self._start(slot, next_index, limit, slots, returns, learn, report)
        while slots:
            actions = self.agent.act_batch({slot: obs for slot, (_, obs) in slots.items()})
            for slot, action in actions.items():
                index = slots[slot][0]
                done, truncated, error = self._step(slot, action, slots, returns)
                if not done:
                    continue
                result = self._finish(slot, index, returns.pop(slot), error, learn, on_update,
                                      slots[slot][1] if truncated else None)
                del slots[slot]
                report(result)
                if error is not None:
                    self._env_error(error)  # after the dropped episode is reported: it may stop the run
                next_index = self._start(slot, next_index, limit, slots, returns, learn, report)
            if not slots and next_index < end:  # grouped: this batch is played; train on it, start the next
                self._train_rest(on_update)
                limit = self._batch_end(next_index, end, learn)
                for slot in range(self.num_envs):
                    next_index = self._start(slot, next_index, limit, slots, returns, learn, report)
        return results

    def _batch_end(self, index: int, end: int, learn: bool) -> int:
        """Where the episodes that may start now end: with groups, at the end of the batch that `index` opens."""
        if self.group_size == 1 or not learn:
            return end
        return min(end, index + self.agent.ppo_config.batch_size)

    def _train_rest(self, on_update: Callable | None) -> None:
        """Train on a grouped batch that dropped episodes left short of `batch_size` (none: nothing to do)."""
        if self.agent.buffer and self.agent.train_when_batch_full:
            stats = self.agent.train()
            if stats and on_update is not None:
                on_update(stats)

    def _start(self, slot: int, index: int, end: int, slots: dict, returns: dict, learn: bool,
               report: Callable[[EpisodeResult], None]) -> int:
        """Reset env `slot` for the next episode before `end`; one whose reset raises is reported as dropped."""
        while index < end:
            seed = self.episode_seed(index, learn)
            try:
                observation, _ = self.envs[slot].reset(seed=seed)
            except Exception as exc:
                message = f"reset of episode {index} raised {type(exc).__name__}: {exc}"
                report(EpisodeResult(index, seed, 0.0, 0, 0, message))
                self._env_error(message)
                index += 1
                continue
            slots[slot] = (index, observation)
            returns[slot] = 0.0
            return index + 1
        return index

    def _step(self, slot: int, action: Any, slots: dict, returns: dict) -> tuple[bool, bool, str | None]:
        """Step env `slot`: (the episode is over, it was truncated rather than terminated, the error if any)."""
        index = slots[slot][0]
        try:
            observation, reward, terminated, truncated, _ = self.envs[slot].step(action)
        except Exception as exc:
            return True, False, f"step of episode {index} raised {type(exc).__name__}: {exc}"
        self.env_steps += 1
        self.agent.assign_reward(float(reward), slot=slot)
        returns[slot] += float(reward)
        slots[slot] = (index, observation)
        return bool(terminated or truncated), bool(truncated and not terminated), None

    def _finish(self, slot: int, index: int, env_return: float, error: str | None, learn: bool,
                on_update: Callable | None, truncated_observation: Any = None) -> EpisodeResult:
        """Hand the ended episode to the agent: stored for training (with the observation a truncated one was cut
        at, for PPO to bootstrap from), or dropped when evaluating or after an error."""
        episode = self.agent.current_episode(slot)
        if episode is not None:
            episode.group = self.episode_seed(index, learn)
        if error is None:
            self.env_errors_in_a_row = 0
        if error is not None or not learn:
            self.agent.end_episode(slot)
        else:
            cut = {} if truncated_observation is None else {"truncated_observation": truncated_observation}
            stats = self.agent.terminate_episode(slot, **cut)  # agents that never see a truncation need no kwarg
            if stats and on_update is not None:
                on_update(stats)
        turns = len(episode.turns) if episode is not None else 0
        invalid = episode.invalid_turns if episode is not None else 0
        return EpisodeResult(index, self.episode_seed(index, learn), env_return, turns, invalid, error)

    def episode_seed(self, index: int, learn: bool = True) -> int:
        """The reset seed of this engine's episode `index` (its index in the whole run picks it; training episodes
        of one group share their group's)."""
        if learn:
            index //= self.group_size
        return episode_seed(self.seed, index * self.num_processes + self.process_index, not learn)

    def _env_error(self, message: str) -> None:
        self.env_errors += 1
        self.env_errors_in_a_row += 1
        logger.warning("environment error (%d so far): %s; the episode is dropped", self.env_errors, message)
        if self.max_env_errors and self.env_errors_in_a_row >= self.max_env_errors:
            from llamagym.errors import TrainingError

            raise TrainingError(f"{self.env_errors_in_a_row} environment errors in a row (limit "
                                f"{self.max_env_errors}, set with --max-env-errors); the last: {message}")

    def close(self) -> None:
        for env in self.envs:
            env.close()
