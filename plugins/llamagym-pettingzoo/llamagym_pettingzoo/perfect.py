"""A perfect tic-tac-toe player: exhaustive minimax (negamax) over the board, so it never loses; among equally good
moves it wins sooner (loses later), then prefers the centre, a corner, an edge. Deterministic, so demonstrations
from it are consistent."""

from __future__ import annotations

import random
from functools import lru_cache
from typing import Any

from llamagym.multiagent import SeatObservation

from .opponents import TICTACTOE_LINES, _tictactoe_marks

PREFERENCE = (4, 0, 2, 6, 8, 1, 3, 5, 7)  # centre, corners, edges (PettingZoo action ids)


def has_line(marks: frozenset[int]) -> bool:
    return any(all(cell in marks for cell in line) for line in TICTACTOE_LINES)


@lru_cache(maxsize=None)
def negamax(mover: frozenset[int], other: frozenset[int]) -> int:
    """The value of the position for the player to move: > 0 a forced win (larger: sooner), 0 a draw, < 0 a loss."""
    empty = 9 - len(mover) - len(other)
    if has_line(other):
        return -(1 + empty)
    if empty == 0:
        return 0
    return max(-negamax(other, mover | {cell}) for cell in range(9) if cell not in mover and cell not in other)


def move_values(mine: frozenset[int], theirs: frozenset[int], legal: tuple[int, ...]) -> dict[int, int]:
    """Each legal move's value for the player to move."""
    return {cell: -negamax(theirs, mine | {cell}) for cell in legal}


def perfect_move(observation: SeatObservation, rng: random.Random | None = None) -> Any:
    """The best legal move for the seat to move (`rng` is unused: the player is deterministic)."""
    legal = tuple(observation.legal_actions or ())
    if not legal:
        raise ValueError(f"seat {observation.agent_id!r} has no legal move")
    mine, theirs = frozenset(_tictactoe_marks(observation, 0)), frozenset(_tictactoe_marks(observation, 1))
    values = move_values(mine, theirs, legal)
    return max(legal, key=lambda cell: (values[cell], -PREFERENCE.index(cell)))
