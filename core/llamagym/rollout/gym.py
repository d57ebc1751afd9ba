"""The Gymnasium rollout engine: N copies of an environment stepped together, every waiting copy answered by one
batched generation; finished episodes are reset and refilled. It yields each finished episode to the run loop
(`llamagym.run.loop.train_loop`), which decides when to train."""

from __future__ import annotations

import numbers
from collections.abc import Callable, Generator, Iterator
from contextlib import nullcontext
from typing import Any, cast

from llamagym.agent.agent import Agent
from llamagym.errors import PluginError
from llamagym.rollout.engine import (Drained, EpisodeResult, Event, Finished, Learner, Trajectory,
                                     episode_outcome, episode_seed, play_through)


class AgentLearner:
    """The agent of a Gymnasium run as a learner: one policy, on whatever adapter is active."""

    name = "policy"

    def __init__(self, agent: Agent):
        self._agent = agent

    @property
    def agent(self) -> Agent:
        return self._agent

    def training(self) -> Any:
        return nullcontext()


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

    def __init__(self, agent: Agent, make_env: Callable[[], Any], num_envs: int = 16, seed: int = 0,
                 max_env_errors: int = 10, process_index: int = 0, num_processes: int = 1, group_size: int = 1):
        self.agent, self.num_envs, self.seed, self.group_size = agent, num_envs, seed, group_size
        self.process_index, self.num_processes = process_index, num_processes
        self.envs = [make_env() for _ in range(num_envs)]
        self.max_env_errors = max_env_errors  # errors in a row before the run stops (0: never)
        if getattr(agent, "action_space", None) is None:
            agent.action_space = self.envs[0].action_space
        self.learner = AgentLearner(agent)
        self.env_steps = 0
        self._infos: dict[int, Any] = {}  # env slot -> the info of its episode's last step

    def learners(self) -> list[Learner]:
        return [self.learner]

    def after_update(self, learner: Learner, stats: dict[str, float]) -> dict[str, float]:
        return stats

    def run(self, episodes: int, *, learn: bool = False, start_index: int = 0,
            on_episode: Callable[[EpisodeResult], None] | None = None) -> list[EpisodeResult]:
        """Play episodes without training (evaluation, collection)."""
        return play_through(self, episodes, learn=learn, start_index=start_index, on_episode=on_episode)

    def play(self, episodes: int, *, learn: bool = True, start_index: int = 0) -> Iterator[Event]:
        """Play episodes `start_index .. start_index + episodes - 1`, yielding each as it ends."""
        self.agent.reset_conversations()
        next_index, end = start_index, start_index + episodes
        slots: dict[int, tuple[int, Any]] = {}  # env slot -> (episode index, current observation)
        returns: dict[int, float] = {}
        self._infos.clear()
        limit = self._batch_end(next_index, end, learn)
        for slot in range(self.num_envs):
            next_index = yield from self._start(slot, next_index, limit, slots, returns, learn)
        while slots:
            actions = self.agent.act_batch({slot: obs for slot, (_, obs) in slots.items()})
            for key, action in actions.items():
                slot = cast(int, key)  # the slots are this engine's env numbers
                index = slots[slot][0]
                done, truncated, error = self._step(slot, action, slots, returns)
                if not done:
                    continue
                yield from self._finish(slot, index, returns.pop(slot), error, learn,
                                        slots[slot][1] if truncated else None, self._infos.pop(slot, None))
                del slots[slot]
                next_index = yield from self._start(slot, next_index, limit, slots, returns, learn)
            if not slots and next_index < end:  # grouped: this batch is played; it trains, then the next starts
                yield Drained()
                limit = self._batch_end(next_index, end, learn)
                for slot in range(self.num_envs):
                    next_index = yield from self._start(slot, next_index, limit, slots, returns, learn)

    def _batch_end(self, index: int, end: int, learn: bool) -> int:
        """Where the episodes that may start now end: with groups, at the end of the batch that `index` opens."""
        if self.group_size == 1 or not learn:
            return end
        return min(end, index + self.agent.ppo_config.batch_size)

    def _start(self, slot: int, index: int, end: int, slots: dict[int, tuple[int, Any]],
               returns: dict[int, float], learn: bool) -> Generator[Event, None, int]:
        """Reset env `slot` for the next episode before `end`; one whose reset raises is yielded as dropped.
        Returns the index of the episode after the one started."""
        while index < end:
            seed = self.episode_seed(index, learn)
            try:
                observation, _ = self.envs[slot].reset(seed=seed)
            except Exception as exc:
                message = f"reset of episode {index} raised {type(exc).__name__}: {exc}"
                yield Finished(EpisodeResult(index, seed, 0.0, 0, 0, message, messages=[]))
                index += 1
                continue
            slots[slot] = (index, observation)
            returns[slot] = 0.0
            return index + 1
        return index

    def _step(self, slot: int, action: Any, slots: dict[int, tuple[int, Any]], returns: dict[int, float]
              ) -> tuple[bool, bool, str | None]:
        """Step env `slot`: (the episode is over, it was truncated rather than terminated, the error if any)."""
        index = slots[slot][0]
        try:
            observation, reward, terminated, truncated, info = self.envs[slot].step(action)
        except Exception as exc:
            return True, False, f"step of episode {index} raised {type(exc).__name__}: {exc}"
        self._infos[slot] = info
        self.env_steps += 1
        check_reward(self.envs[slot], reward, index)
        self.agent.assign_reward(float(reward), slot=slot)
        returns[slot] += float(reward)
        slots[slot] = (index, observation)
        return bool(terminated or truncated), bool(truncated and not terminated), None

    def _finish(self, slot: int, index: int, env_return: float, error: str | None, learn: bool,
                truncated_observation: Any = None, info: Any = None) -> Iterator[Event]:
        """End the slot's episode: a training one is yielded for the loop to store (with the observation a truncated
        one was cut at, for PPO to bootstrap from); an evaluation one, or one an error ended, is dropped. Its
        result carries its outcome (from the final step's `info`, see `episode_outcome`) and its conversation,
        taken before the episode ends."""
        episode = self.agent.current_episode(slot)
        messages = self.agent.messages(slot) or []  # taken before the episode ends
        if episode is not None:
            episode.group = self.episode_seed(index, learn)
        if error is None and learn and truncated_observation is not None:
            self.agent.record_bootstrap(slot, truncated_observation)
        ended = self.agent.end_episode(slot)
        if error is None and learn and ended is not None and ended.turns:
            yield Trajectory(self.learner, ended)
        turns = len(episode.turns) if episode is not None else 0
        invalid = episode.invalid_turns if episode is not None else 0
        outcome = episode_outcome(self.agent, env_return, info) if error is None else None
        yield Finished(EpisodeResult(index, self.episode_seed(index, learn), env_return, turns, invalid, error,
                                     outcome=outcome, messages=messages))

    def episode_seed(self, index: int, learn: bool = True) -> int:
        """The reset seed of this engine's episode `index` (its index in the whole run picks it; training episodes
        of one group share their group's)."""
        if learn:
            index //= self.group_size
        return episode_seed(self.seed, index * self.num_processes + self.process_index, not learn)

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

    def close(self) -> None:
        for env in self.envs:
            env.close()


def check_reward(env: Any, reward: Any, index: int) -> None:
    """A step's reward must be a real number: anything else breaks the env's contract (a PluginError naming it)."""
    if isinstance(reward, numbers.Real) or (getattr(reward, "shape", None) == ()
                                            and getattr(getattr(reward, "dtype", None), "kind", "?") in "biuf"):
        return  # a Python or numpy number, or a 0-d numeric array
    raise PluginError(f"env {env} returned the reward {reward!r} (a {type(reward).__name__}) from step in episode "
                      f"{index}: a reward must be a number (int or float)")


__all__ = ["RolloutEngine", "AgentLearner", "EpisodeResult", "episode_seed"]
