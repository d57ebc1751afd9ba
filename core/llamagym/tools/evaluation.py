"""Evaluate an agent without training: mean return with its standard error, and win / draw / loss rates with
95% Wilson intervals, over seeded episodes that are the same for every policy compared. An episode's win, draw or
loss is its `outcome`: what a plugin (`llamagym_episode_outcome`) or the env's final `info` ("outcome", or
"is_success") says, else the sign of its return (`llamagym.rollout.engine.episode_outcome`)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from llamagym.rollout.engine import Engine, EpisodeResult, sign_outcome

if TYPE_CHECKING:
    from llamagym.agent.agent import Agent


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a binomial proportion."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


@dataclass
class EvalResult:
    """Summary of evaluation episodes."""

    episodes: int
    mean_return: float
    stderr: float
    win_rate: float
    draw_rate: float
    loss_rate: float
    win_ci: tuple[float, float]
    draw_ci: tuple[float, float]
    loss_ci: tuple[float, float]
    invalid_rate: float
    errors: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def line(self) -> str:
        return (f"mean return {self.mean_return:+.4f} ± {self.stderr:.4f} (SE) over {self.episodes} episodes; "
                f"win {self.win_rate:.3f} [{self.win_ci[0]:.3f}, {self.win_ci[1]:.3f}], "
                f"draw {self.draw_rate:.3f}, loss {self.loss_rate:.3f} "
                f"[{self.loss_ci[0]:.3f}, {self.loss_ci[1]:.3f}]; invalid actions {self.invalid_rate:.3f}")


def summarize(returns: list[float], invalid_turns: int = 0, turns: int = 0, errors: int = 0,
              outcomes: list[str | None] | None = None) -> EvalResult:
    """Statistics of a list of episode returns; win / draw / loss from `outcomes` (one per return; a missing one,
    or all without `outcomes`, by the sign of the return: win > 0, draw 0, loss < 0)."""
    n = len(returns)
    mean = sum(returns) / n if n else float("nan")
    var = sum((r - mean) ** 2 for r in returns) / (n - 1) if n > 1 else 0.0
    told = list(outcomes or [])
    told += [None] * (n - len(told))
    kinds = [outcome or sign_outcome(r) for r, outcome in zip(returns, told)]
    wins, draws = kinds.count("win"), kinds.count("draw")
    losses = n - wins - draws
    return EvalResult(n, mean, math.sqrt(var / n) if n else float("nan"), wins / max(n, 1), draws / max(n, 1),
                      losses / max(n, 1), wilson_interval(wins, n), wilson_interval(draws, n),
                      wilson_interval(losses, n), invalid_turns / max(turns, 1), errors)


def evaluate(agent: Agent, engine: Engine, episodes: int, *, greedy: bool = True,
             on_episode: Callable[[EpisodeResult], None] | None = None) -> EvalResult:
    """Play `episodes` evaluation episodes with `engine` (no training); greedy decoding unless told otherwise."""
    previous = agent.generation.do_sample
    agent.generation.do_sample = not greedy
    try:
        results = engine.run(episodes, learn=False, on_episode=on_episode)
    finally:
        agent.generation.do_sample = previous
    finished = [r for r in results if r.error is None]
    return summarize([r.env_return for r in finished], sum(r.invalid_turns for r in finished),
                     sum(r.turns for r in finished), errors=len(results) - len(finished),
                     outcomes=[r.outcome for r in finished])
