"""Connect four for a small model: the board row by row (top first) under numbered columns, the open columns
listed; the model answers one column number."""

from __future__ import annotations

from typing import Any

from llamagym.multiagent import GameAgent, SeatObservation

from .text import first_number, has_digit, listing

MARKS = ("X", "O")
ROWS, COLUMNS = 6, 7


def board_rows(observation: SeatObservation) -> list[str]:
    """The column numbers, then six rows of X, O and "." (empty), top row first."""
    planes = observation.observation  # [row, column, plane]: row 0 is the top; plane 0 = this seat's pieces
    mine, theirs = MARKS[observation.seat_index % 2], MARKS[1 - observation.seat_index % 2]
    rows = [" ".join(str(c + 1) for c in range(COLUMNS))]
    for row in range(ROWS):
        rows.append(" ".join(mine if planes[row][c][0] else theirs if planes[row][c][1] else "."
                             for c in range(COLUMNS)))
    return rows


class ConnectFourAgent(GameAgent):
    """Plays connect_four_v3: reads the board, answers the number of an open column."""

    response_prefix = "My move: column"

    def get_system_prompt(self) -> str:
        return ("You play connect four. Columns are numbered 1 to 7 and a piece falls to the lowest empty row. "
                "Four of your pieces in a line (across, down or diagonal) win. Answer with a column number.")

    def format_observation(self, observation: SeatObservation) -> str:
        board = "\n".join(board_rows(observation))
        open_columns = [str(a + 1) for a in observation.legal_actions or ()]
        return (f"You are {MARKS[observation.seat_index % 2]}.\n{board}\n"
                f"Open columns: {listing(open_columns)}. Your move?")

    def parse_move(self, response: str, observation: SeatObservation) -> Any:
        return first_number(response, 1, COLUMNS) - 1

    def response_complete(self, response: str) -> bool:
        return has_digit(response)
