"""Advantage estimators, chosen with `ppo.advantage`: GAE with the value head (the default), a group-relative
baseline (GRPO-style: an episode's return minus the mean return of the `group_size` episodes played from its reset
seed), or REINFORCE with a running baseline. The last two need no value head: its loss is left out.

Every estimator reads the same per-token rewards (−kl_coef × KL on every response token, the turn's reward added on
its last token, `ppo.gamma` between turns). GRPO and REINFORCE give every token of an episode the same advantage,
its discounted return minus the baseline; the batch whitening (`ppo.whiten_advantages`) then scales them, rather
than a per-group standard deviation, which over-weights groups whose returns nearly agree.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import torch

from llamagym.algo import ppo
from llamagym.config import PPOConfig
from llamagym.errors import ConfigError

Estimate = tuple[torch.Tensor, torch.Tensor]  # per-token advantages and returns of one episode


@dataclass
class EpisodeSteps:
    """One episode's response tokens in order, across its turns."""

    rewards: torch.Tensor
    values: torch.Tensor
    discounts: torch.Tensor  # multiplies the next step's value: 1 within a turn, gamma between turns, 0 at the end
    group: Hashable | None = None
    bootstrap: float = 0.0  # truncated episodes: V(s_T), the value after the end (their last discount is gamma)


def discounted_return(steps: EpisodeSteps) -> float:
    """The episode's return from its first token: rewards summed with the discounts between them (no bootstrap
    value: the estimators that read it have no value head)."""
    total = 0.0
    for reward, discount in zip(reversed(steps.rewards.tolist()), reversed(steps.discounts.tolist())):
        total = reward + discount * total
    return total


def constant(steps: EpisodeSteps, advantage: float, value: float) -> Estimate:
    return torch.full_like(steps.rewards, advantage), torch.full_like(steps.rewards, value)


class Estimator:
    """Per-token advantages and returns for a batch of episodes; `uses_values`: whether the value head is trained,
    `data_parallel`: whether it gives every process of a data-parallel run the same answer."""

    name, uses_values, data_parallel = "", True, True

    def __init__(self, config: PPOConfig):
        self.config = config

    def estimate(self, episodes: Sequence[EpisodeSteps]) -> list[Estimate]:
        raise NotImplementedError

    def state_dict(self) -> dict:
        """What a checkpoint keeps (a running baseline)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class GAE(Estimator):
    """Generalised advantage estimation over all the tokens of an episode, against the value head; a truncated
    episode bootstraps from the value of the state it was cut at."""

    name = "gae"

    def estimate(self, episodes: Sequence[EpisodeSteps]) -> list[Estimate]:
        return [ppo.gae(e.rewards, e.values, e.discounts, self.config.lam, e.bootstrap) for e in episodes]


class GroupBaseline(Estimator):
    """GRPO-style: each episode's return minus the mean return of its group (episodes from one reset seed).
    A truncated episode's bootstrap value is ignored: there is no value head to trust, so its return is what it
    collected."""

    name, uses_values, data_parallel = "grpo", False, False

    def estimate(self, episodes: Sequence[EpisodeSteps]) -> list[Estimate]:
        if any(e.group is None for e in episodes):
            raise ConfigError("ppo.advantage = grpo compares episodes played from the same start, but an episode has "
                              "no group: the rollout engine sets them (Gymnasium envs); in your own loop set "
                              "agent.current_episode(slot).group = its reset seed before terminate_episode")
        returns = [discounted_return(e) for e in episodes]
        members: dict[Hashable, list[float]] = {}
        for episode, value in zip(episodes, returns):
            members.setdefault(episode.group, []).append(value)
        means = {group: sum(values) / len(values) for group, values in members.items()}
        return [constant(e, value - means[e.group], value) for e, value in zip(episodes, returns)]


class RunningBaseline(Estimator):
    """REINFORCE: each episode's return minus a running mean of past batches' mean returns (the first batch uses
    its own mean); the baseline moves by `baseline_rate` × (batch mean − baseline) after each batch. A truncated
    episode's bootstrap value is ignored, as with GRPO: its return is what it collected."""

    name, uses_values, data_parallel = "reinforce", False, False

    def __init__(self, config: PPOConfig):
        super().__init__(config)
        self.rate = config.baseline_rate
        self.baseline: float | None = None

    def estimate(self, episodes: Sequence[EpisodeSteps]) -> list[Estimate]:
        returns = [discounted_return(e) for e in episodes]
        mean = sum(returns) / len(returns)
        baseline = mean if self.baseline is None else self.baseline
        self.baseline = baseline + self.rate * (mean - baseline)
        return [constant(e, value - baseline, value) for e, value in zip(episodes, returns)]

    def state_dict(self) -> dict:
        return {"baseline": self.baseline}

    def load_state_dict(self, state: dict) -> None:
        self.baseline = state.get("baseline")


ESTIMATORS = {cls.name: cls for cls in (GAE, GroupBaseline, RunningBaseline)}


def make_estimator(config: PPOConfig) -> Estimator:
    """The estimator `ppo.advantage` names, its settings checked."""
    if config.advantage == "grpo" and config.batch_size % config.group_size:
        raise ConfigError(f"ppo.batch_size ({config.batch_size}) must be a multiple of ppo.group_size "
                          f"({config.group_size}) with advantage = grpo, so that every update holds whole groups")
    return ESTIMATORS[config.advantage](config)


def seed_group_size(config: PPOConfig) -> int:
    """How many training episodes the rollout engine plays from each reset seed."""
    return config.group_size if config.advantage == "grpo" else 1


def check_data_parallel(config: PPOConfig) -> None:
    """Refuse an estimator whose baseline is not computed over every process's episodes yet."""
    if not ESTIMATORS[config.advantage].data_parallel:
        raise ConfigError(f"ppo.advantage = {config.advantage} is not supported in data-parallel runs yet (its "
                          f"baseline would differ between processes); use advantage = gae, or one process")


__all__ = ["EpisodeSteps", "Estimator", "GAE", "GroupBaseline", "RunningBaseline", "make_estimator", "seed_group_size",
           "check_data_parallel", "discounted_return"]
