"""Tic-tac-toe for a small model: the cells are numbered 1-9 in reading order, free cells show their number,
and the free cells are listed again; the model answers one number."""

from __future__ import annotations

from typing import Any

from llamagym.multiagent import GameAgent, SeatObservation

from .text import first_number, has_digit, listing

MARKS = ("X", "O")


def cell_to_action(cell: int) -> int:
    """Cell 1-9 (reading order) to PettingZoo's action, which numbers the cells column by column."""
    row, column = divmod(cell - 1, 3)
    return column * 3 + row


def action_to_cell(action: int) -> int:
    column, row = divmod(int(action), 3)
    return row * 3 + column + 1


def board_rows(observation: SeatObservation) -> list[str]:
    """Three rows like "X|2|O": the seat's own mark, the other mark, or the free cell's number."""
    planes = observation.observation  # [column, row, plane]: plane 0 = this seat's marks, 1 = the opponent's
    mine, theirs = MARKS[observation.seat_index % 2], MARKS[1 - observation.seat_index % 2]
    rows = []
    for row in range(3):
        cells = []
        for column in range(3):
            if planes[column][row][0]:
                cells.append(mine)
            elif planes[column][row][1]:
                cells.append(theirs)
            else:
                cells.append(str(row * 3 + column + 1))
        rows.append("|".join(cells))
    return rows


def completing_cells(observation: SeatObservation, plane: int) -> list[int]:
    """The free cells (1-9) that would complete a line for the marks in `plane` (0: this seat, 1: the other)."""
    from .opponents import TICTACTOE_LINES, _tictactoe_marks

    marks, legal = _tictactoe_marks(observation, plane), set(observation.legal_actions or ())
    return sorted({action_to_cell(empty[0]) for line in TICTACTOE_LINES
                   if len(empty := [c for c in line if c not in marks]) == 1 and empty[0] in legal})


def threats(observation: SeatObservation) -> str:
    """A line each for the cells that win now and those the opponent would win with next (nothing when none):
    a small model reads them far more reliably than it finds three in a row on the board."""
    lines = []
    wins, blocks = completing_cells(observation, 0), completing_cells(observation, 1)
    if wins:
        lines.append(f"You win at: {listing([str(c) for c in wins])}.\n")
    if blocks:
        lines.append(f"{MARKS[1 - observation.seat_index % 2]} wins next at: {listing([str(c) for c in blocks])}.\n")
    return "".join(lines)


class TicTacToeAgent(GameAgent):
    """Plays tictactoe_v3: reads a numbered board, answers the number of a free cell."""

    response_prefix = "My move: cell"

    def get_system_prompt(self) -> str:
        # short prompts train faster; this one was also answered in format more often (91% vs 78% of 64
        # sampled positions) than a longer one spelling out the numbering
        return "Tic-tac-toe: three of your marks in a row, column or diagonal win. Answer with a free cell number."

    def format_observation(self, observation: SeatObservation) -> str:
        free = sorted(action_to_cell(a) for a in observation.legal_actions or ())
        board = "\n".join(board_rows(observation))
        return (f"You are {MARKS[observation.seat_index % 2]}.\n{board}\n{threats(observation)}"
                f"Free cells: {listing([str(c) for c in free])}. Your move?")

    def parse_move(self, response: str, observation: SeatObservation) -> Any:
        return cell_to_action(first_number(response, 1, 9))

    def response_complete(self, response: str) -> bool:
        return has_digit(response)

    def action_choices(self, observation: SeatObservation) -> list[str] | None:
        """The free cells: sampling picks among them only (`--no-constrained` lets the model name any text)."""
        return [self.format_action(action) for action in observation.legal_actions or ()] or None

    def expert_action(self, observation: SeatObservation) -> int:
        """The perfect player's move (exhaustive minimax): it never loses."""
        from .perfect import perfect_move

        return perfect_move(observation)

    def format_action(self, action: int) -> str:
        return f" {action_to_cell(action)}"
