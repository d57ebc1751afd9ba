"""The `textarena` agent: it plays any TextArena game llamagym offers, one player or two. It reads the game's own
text (its rules, its last messages, the board), answers one bracketed move ("[4]", "[col 3]", "[rock]"), and where
the game lists its moves (or they follow from its rules) it chooses among exactly those."""

from __future__ import annotations

import re
from typing import Any

from llamagym import ActionParseError
from llamagym.multiagent import GameAgent, SeatObservation

MOVE = re.compile(r"\[[^\[\]\n]+\]")


def _parts(observation: Any) -> tuple[str, dict]:
    """(text, info) of a Gymnasium observation (text, with the legal moves in `info`) or a seat's view."""
    if isinstance(observation, SeatObservation):
        return str(observation.observation), dict(observation.info or {})
    return str(observation), {}


class TextArenaAgent(GameAgent):
    """Answers with one move in square brackets; constrained to the listed moves where there are any."""

    response_prefix = "My move:"

    def get_system_prompt(self) -> str:
        return ("You play a text game. Read the rules and the board, then answer with exactly one move in square "
                "brackets, for example [4].")

    def format_observation(self, observation: Any) -> str:
        text, _ = _parts(observation)
        return f"{text}\n\nYour move?"

    def legal_moves(self, observation: Any) -> list[str]:
        """The moves the game offers now, as its text lists them ("Available moves: ..."; the envs add that line
        where TextArena does not list them itself but the rules or the state tell)."""
        from .games import listed_moves

        text, info = _parts(observation)
        return list(info.get("legal_moves") or listed_moves(text))

    def parse_move(self, response: str, observation: Any) -> str:
        from .env import CHARSET, MAX_ACTION

        move = MOVE.search("".join(c for c in response if c in CHARSET))  # what the env's Text space holds
        if move is None or len(move.group()) > MAX_ACTION:
            raise ActionParseError(f"no [move] of at most {MAX_ACTION} characters in {response!r}")
        return move.group()

    def extract_action(self, response: str, observation: Any = None) -> Any:  # type: ignore[override]
        return self.parse_move(response, observation)

    def response_complete(self, response: str) -> bool:
        try:
            self.parse_move(response, None)
        except ActionParseError:
            return False
        return True

    def action_choices(self, observation: Any) -> list[str] | None:
        moves = self.legal_moves(observation)
        return [f" {move}" for move in moves] or None

    def fallback_action(self, observation: Any) -> str:
        """A random one of the listed moves, else an empty move (TextArena then tells the player it was invalid)."""
        moves = self.legal_moves(observation)
        return self.rng.choice(moves) if moves else "[]"

    def format_action(self, action: Any) -> str:
        return f" {action}"
