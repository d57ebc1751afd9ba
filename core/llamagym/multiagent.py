"""The public import path of the multi-agent names plugins use (`from llamagym.multiagent import GameAgent,
SeatObservation`); they live in `llamagym.rollout.games`, where the game engine is."""

from __future__ import annotations

from typing import Any

from llamagym.rollout.games import SeatObservation

__all__ = ["SeatObservation", "GameAgent", "IllegalMoveError"]


def __getattr__(name: str) -> Any:
    if name in ("GameAgent", "IllegalMoveError"):  # torch-backed: loaded on first use
        from llamagym.rollout.games import game_agent

        return getattr(game_agent, name)
    raise AttributeError(f"module 'llamagym.multiagent' has no attribute {name!r}")
