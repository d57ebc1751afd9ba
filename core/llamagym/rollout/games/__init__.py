"""Multi-agent PPO on PettingZoo games: many tables at once, every seat an Agent slot `(table, seat)` with its
own episode, self-play with a pool of past snapshots, one LoRA adapter per seat, or a fixed opponent.

Importing this package is cheap; the engine and the game agent load torch on first use.
"""

from __future__ import annotations

from llamagym.lazy import lazy_exports
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

__getattr__ = lazy_exports(__name__, _LAZY)
