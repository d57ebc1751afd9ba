"""Scripted opponents for the two-player TextArena games."""

from __future__ import annotations

import random
from typing import Any

from llamagym.multiagent import SeatObservation


def random_move(observation: SeatObservation, rng: random.Random) -> Any:
    """A uniformly random move among the ones the game offers now (`info["legal_moves"]`)."""
    moves = list((observation.info or {}).get("legal_moves") or [])
    if not moves:
        raise ValueError(f"seat {observation.agent_id!r}: this TextArena game lists no moves to choose from; "
                         f"play it in self-play or against `base` or a checkpoint")
    return rng.choice(moves)
