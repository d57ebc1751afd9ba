"""Multi-agent PPO on PettingZoo games: many tables at once, every seat an Agent slot `(table, seat)` with its
own episode, self-play with a pool of past snapshots, one LoRA adapter per seat, or a fixed opponent.

Importing this package is cheap; the engine and the game agent load torch on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from .observation import SeatObservation

_LAZY = {
    "GameAgent": "llamagym.multiagent.game_agent",
    "GameEngine": "llamagym.multiagent.engine",
    "GameResult": "llamagym.multiagent.engine",
    "PolicyPlayer": "llamagym.multiagent.players",
    "ScriptedPlayer": "llamagym.multiagent.players",
    "SelfPlay": "llamagym.multiagent.lineups",
    "PerSeat": "llamagym.multiagent.lineups",
    "VersusOpponent": "llamagym.multiagent.lineups",
    "build_game_engine": "llamagym.multiagent.build",
}

__all__ = ["SeatObservation", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'llamagym.multiagent' has no attribute {name!r}")
