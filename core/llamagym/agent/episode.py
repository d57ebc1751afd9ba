"""What an agent records while it plays: turns (prompt ids, sampled response ids, reward) grouped in episodes."""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Turn:
    """One action: the exact prompt and response token ids, and the reward that followed it."""

    query_ids: list[int]
    response_ids: list[int]
    response: str
    observation: Any
    action: Any
    valid: bool = True
    env_reward: float = 0.0
    reward: float = 0.0  # env_reward plus shaping terms and the invalid-action penalty
    shaping: dict[str, float] = field(default_factory=dict)
    allowed: list[list[int]] | None = None  # constrained decoding: the tokens allowed at each response position
    # the sampler's own log-prob of each response token and value before it (`generation.Response`); None when
    # the response was not sampled from the training distribution, and PPO scores it itself
    logprobs: list[float] | None = None
    values: list[float] | None = None


@dataclass
class Episode:
    """The turns of one episode of one agent (one seat, in a multi-player game)."""

    turns: list[Turn] = field(default_factory=list)
    group: Hashable | None = None  # episodes of one group start alike (same reset seed): GRPO compares their returns
    # truncated (a time limit, not the end of the game): the prompt `act` would have shown next, whose value
    # PPO bootstraps from; None when the episode ended
    bootstrap_query: list[int] | None = None

    @property
    def env_return(self) -> float:
        return sum(t.env_reward for t in self.turns)

    @property
    def total_return(self) -> float:
        return sum(t.reward for t in self.turns)

    @property
    def invalid_turns(self) -> int:
        return sum(not t.valid for t in self.turns)


def episode_stats(episodes: list[Episode]) -> dict[str, float]:
    """Return, win rate and invalid-action rate of a batch of episodes."""
    returns = [e.env_return for e in episodes]
    turns = sum(len(e.turns) for e in episodes)
    shaping: dict[str, float] = {}  # each plugin's shaping terms, summed per episode
    for turn in (t for e in episodes for t in e.turns):
        for plugin, term in turn.shaping.items():
            shaping[f"shaping/{plugin}"] = shaping.get(f"shaping/{plugin}", 0.0) + term / len(episodes)
    return {"env/return_mean": sum(returns) / len(returns),
            "env/win_rate": sum(r > 0 for r in returns) / len(returns),
            "env/invalid_rate": sum(e.invalid_turns for e in episodes) / max(turns, 1),
            "env/turns_per_episode": turns / len(episodes), "env/episodes": len(episodes), **shaping}
