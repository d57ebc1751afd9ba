"""Driving rollout engines in tests: play and store what would be trained on, or record the updates of a
`train_loop`."""

from __future__ import annotations

from llamagym.rollout.engine import Engine, EpisodeResult, Finished, Learner, Trajectory
from llamagym.run.loop import NoLog


def play_and_store(engine: Engine, episodes: int, *, start_index: int = 0) -> list[EpisodeResult]:
    """Play training episodes, storing each learning policy's finished episodes in its agent's `buffer` as the
    run loop does, but never training; returns the results."""
    results = []
    for event in engine.play(episodes, start_index=start_index):
        if isinstance(event, Trajectory):
            event.learner.agent.buffer.append(event.episode)
        elif isinstance(event, Finished):
            results.append(event.result)
    return results


class UpdateLog(NoLog):
    """A run log that keeps the stats of every update (`train_loop(..., log=UpdateLog())`), in order."""

    def __init__(self) -> None:
        self.updates: list[dict[str, float]] = []
        self.learners: list[Learner] = []

    def update(self, learner: Learner, stats: dict[str, float], ending: int = 0) -> None:
        self.updates.append(stats)
        self.learners.append(learner)
