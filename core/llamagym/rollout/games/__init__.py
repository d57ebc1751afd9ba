"""Multi-agent PPO on PettingZoo games: many tables at once, every seat an Agent slot `(table, seat)` with its
own episode, self-play with a pool of past snapshots, one LoRA adapter per seat, or a fixed opponent.

Importing this package is cheap; the engine and the game agent load torch on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from llamagym.rollout.games.observation import SeatObservation

_LAZY = {
    "GameAgent": "llamagym.rollout.games.game_agent",
    "GameEngine": "llamagym.rollout.games.engine",
    "GameResult": "llamagym.rollout.games.engine",
    "PolicyPlayer": "llamagym.rollout.games.players",
    "ScriptedPlayer": "llamagym.rollout.games.players",
    "SelfPlay": "llamagym.rollout.games.lineups",
    "PerSeat": "llamagym.rollout.games.lineups",
    "VersusOpponent": "llamagym.rollout.games.lineups",
    "build_game_engine": "llamagym.rollout.games.build",
}

__all__ = ["SeatObservation", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'llamagym.rollout.games' has no attribute {name!r}")
