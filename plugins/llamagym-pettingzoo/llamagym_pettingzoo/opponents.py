"""Scripted opponents: `policy(observation, rng) -> move` for a `SeatObservation`. Each is a fixed, simple rule,
to train against or to measure an agent by."""

from __future__ import annotations

import random
from typing import Any

from llamagym.multiagent import SeatObservation

TICTACTOE_LINES = [(0, 1, 2), (3, 4, 5), (6, 7, 8), (0, 3, 6), (1, 4, 7), (2, 5, 8), (0, 4, 8), (2, 4, 6)]
TICTACTOE_CENTRE, TICTACTOE_CORNERS = 4, (0, 2, 6, 8)  # PettingZoo's action ids (the grid is symmetric)


def _tictactoe_marks(observation: SeatObservation, plane: int) -> set[int]:
    planes = observation.observation  # [column, row, plane]; action id = column * 3 + row
    return {c * 3 + r for c in range(3) for r in range(3) if planes[c][r][plane]}


def _completing(lines: list[tuple[int, ...]], marks: set[int], legal: tuple[int, ...]) -> int | None:
    for line in lines:
        empty = [cell for cell in line if cell not in marks]
        if len(empty) == 1 and empty[0] in legal:
            return empty[0]
    return None


def tictactoe_heuristic(observation: SeatObservation, rng: random.Random) -> Any:
    """Win if one move wins, else block the opponent's win, else centre, else a random corner, else any cell."""
    legal = observation.legal_actions or ()
    mine, theirs = _tictactoe_marks(observation, 0), _tictactoe_marks(observation, 1)
    for marks in (mine, theirs):
        move = _completing(TICTACTOE_LINES, marks, legal)
        if move is not None:
            return move
    if TICTACTOE_CENTRE in legal:
        return TICTACTOE_CENTRE
    corners = [c for c in TICTACTOE_CORNERS if c in legal]
    return rng.choice(corners or list(legal))


def _connect_four_drop(planes: Any, column: int) -> int | None:
    """The row a piece dropped in `column` lands on (None if the column is full)."""
    for row in range(5, -1, -1):
        if not planes[row][column][0] and not planes[row][column][1]:
            return row
    return None


def _connect_four_wins(planes: Any, plane: int, row: int, column: int) -> bool:
    """Whether a piece of `plane` at (row, column) makes four in a line."""
    for dr, dc in ((0, 1), (1, 0), (1, 1), (1, -1)):
        count = 1
        for sign in (1, -1):
            r, c = row + sign * dr, column + sign * dc
            while 0 <= r < 6 and 0 <= c < 7 and planes[r][c][plane]:
                count += 1
                r, c = r + sign * dr, c + sign * dc
        if count >= 4:
            return True
    return False


def connect_four_heuristic(observation: SeatObservation, rng: random.Random) -> Any:
    """Win if one drop wins, else block the opponent's winning drop, else the most central open column."""
    planes, legal = observation.observation, observation.legal_actions or ()
    for plane in (0, 1):
        for column in legal:
            row = _connect_four_drop(planes, column)
            if row is not None and _connect_four_wins(planes, plane, row, column):
                return column
    best = min(abs(column - 3) for column in legal)
    return rng.choice([column for column in legal if abs(column - 3) == best])


def always_rock(observation: SeatObservation, rng: random.Random) -> Any:
    """Rock, every round."""
    return 0


def calling_station(observation: SeatObservation, rng: random.Random) -> Any:
    """Call when a bet is owed, else check; never raise or fold."""
    call, check = 0, 3
    legal = observation.legal_actions or (call,)
    return call if call in legal else check if check in legal else legal[0]
