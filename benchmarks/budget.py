"""Training within a time budget, as the learning benchmarks do it: `llamagym run`'s own loop with its own time
limit (`max_minutes`), and the learning curve its metrics hold."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from llamagym.config import RunConfig, build
from llamagym.tools.evaluation import wilson_interval


def train_for(config: RunConfig, run_dir: Path, minutes: float,
              trainer: Callable[..., dict[str, Any]] | None = None, show_progress: bool = True) -> dict[str, Any]:
    """Train with the library's own loop (`llamagym.run.training.train`, what `llamagym run` does) until
    `config.episodes` or `minutes`, whichever comes first: the run's own time limit (`max_minutes`) stops it at
    its first commit past the budget, right after an update, with its checkpoint and adapter. `trainer` stands in
    for `train` (tests)."""
    def train(config: RunConfig, run_dir: Path, overwrite: bool) -> dict[str, Any]:
        from llamagym.run.training import train as run_training

        return run_training(config, run_dir, overwrite=overwrite, show_progress=show_progress)

    run = trainer or train
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    summary = dict(run(build(RunConfig, {"max_minutes": max(minutes, 1e-6)}, base=config), run_dir, overwrite=True))
    summary["stopped_by_budget"] = bool(summary.get("time_limit_reached"))
    summary["budget_minutes"] = minutes
    summary["minutes"] = (time.perf_counter() - started) / 60
    return summary


def learning_curve(run_dir: Path, rate_key: str, count_key: str) -> list[dict[str, Any]]:
    """Per PPO update: the episodes trained so far and the success rate of that update's training episodes
    (`rate_key` of its metrics row, over `count_key` episodes: `env/win_rate` and `env/episodes` for a Gymnasium
    env, `game/win_rate` and `game/games` for a game), with its Wilson interval."""
    from llamagym.run.metrics import read_jsonl

    curve = []
    for row in read_jsonl(run_dir / "metrics.jsonl"):
        rate, n = row.get(rate_key), int(row.get(count_key) or 0)
        if isinstance(rate, (int, float)) and n:
            curve.append({"update": row.get("update"), "episodes": row.get("episodes"), "success_rate": rate,
                          "success_ci": list(wilson_interval(round(rate * n), n)), "batch": n,
                          "turns_per_episode": row.get("env/turns_per_episode"), "kl": row.get("ppo/kl"),
                          "time_s": row.get("time_s")})
    return curve
