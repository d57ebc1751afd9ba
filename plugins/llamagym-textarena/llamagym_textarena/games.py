"""Which TextArena games llamagym offers, which it refuses and why, and the moves each game lists. No TextArena
import here: `llamagym list` reads these tables."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from llamagym.errors import UsageError

PREFIX = "TextArena-"


@dataclass(frozen=True)
class Game:
    """A TextArena game id, its number of players (1: a Gymnasium env, 2: a PettingZoo AEC game) and a line on it."""

    game: str
    players: int
    description: str

    @property
    def env_id(self) -> str:
        return PREFIX + self.game


# The curated set: each runs offline, resets in milliseconds, and passes Gymnasium's or PettingZoo's checker.
GAMES = {game.env_id: game for game in [
    Game("GuessTheNumber-v0", 1, "guess a number from 1 to 20 in 10 tries, told higher or lower"),
    Game("Mastermind-v0", 1, "find a 4-digit code from the hits and near-misses of each guess"),
    Game("Minesweeper-v0-small", 1, "reveal every safe cell of a 5x5 board with 5 mines"),
    Game("TowerOfHanoi-v0", 1, "move the tower of disks from peg A to peg C"),
    Game("FrozenLake-v0", 1, "walk across a frozen lake to the goal without falling into a hole"),
    Game("LightsOut-v0", 1, "switch every light off; each press toggles a cell and its neighbours"),
    Game("TicTacToe-v0", 2, "tic-tac-toe on cells 0-8"),
    Game("ConnectFour-v0", 2, "connect four on a 6x7 board"),
    Game("Nim-v0", 2, "take objects from piles; whoever takes the last wins"),
    Game("KuhnPoker-v0", 2, "three-card poker: check, bet, call or fold"),
    Game("IteratedRockPaperScissors-v0", 2, "rock paper scissors over several rounds"),
]}

_NLTK = "NLTK's 'words' corpus, which TextArena downloads at first use"
_OPENROUTER = "an OpenRouter API key and network access (an LLM plays a part of the game)"
_PY312 = "Python 3.12 (its source does not parse on older Pythons)"
# Games TextArena registers that cannot run offline here (checked with textarena 0.7.4), and why.
NEEDS = {
    **{game: _NLTK for game in ("Codenames", "DontSayIt", "Hangman", "LetterAuction", "SpellingBee", "WordChains",
                                "WordLadder", "WordSearch", "Wordle")},
    **{game: _OPENROUTER for game in ("Debate", "GuessWho", "ScenarioPlanning", "TwentyQuestions")},
    **{game: _PY312 for game in ("Checkers", "Chess", "IteratedStagHunt", "Klondike", "ReverseTicTacToe",
                                 "UltimateTexasHoldem")},
    "ScorableGames": "game description files its wheel does not ship",
    "UsedCarNegotiation": "an instructions file its wheel does not ship",
    "BabyAiText": "the old `gym` package and BabyAI",
}
MAX_PLAYERS = 2


def base_name(game: str) -> str:
    """"Wordle-v0-hardcore" -> "Wordle"."""
    return game.split("-v", 1)[0]


def refusal(game: str) -> str | None:
    """Why `game` is left out (a one-line reason), or None if it may run."""
    need = NEEDS.get(base_name(game))
    if need is None:
        return None
    return (f"TextArena's {game} needs {need}, so llamagym-textarena leaves it out; offline games: "
            f"{', '.join(sorted(GAMES))}")


def check_offline(game: str) -> None:
    reason = refusal(game)
    if reason is not None:
        raise UsageError(reason)


# ---- the moves a game offers, where it lists them or they can be read off its state -----------------------------

_LISTING = re.compile(r"(?:available|valid|legal) (?:moves|actions)[^:\n]*:([^\n]*)", re.IGNORECASE)
_BRACKETED = re.compile(r"\[[^\[\]\n]{1,40}\]")
FIXED = {
    "GuessTheNumber": [f"[{n}]" for n in range(1, 21)],
    "TowerOfHanoi": [f"[{a} {b}]" for a in "ABC" for b in "ABC" if a != b],
    "IteratedRockPaperScissors": ["[rock]", "[paper]", "[scissors]"],
    "LightsOut": [f"[{r} {c}]" for r in range(5) for c in range(5)],
}
MAX_CHOICES = 64


def listed_moves(text: str) -> list[str]:
    """The bracketed moves on the last "Available moves: ..." line of `text` (TicTacToe, KuhnPoker, ...)."""
    lines = _LISTING.findall(text)
    if not lines:
        return []
    return list(dict.fromkeys(_BRACKETED.findall(lines[-1])))


def legal_moves(game: str, text: str, state: Any = None) -> list[str]:
    """The moves of `game` now: listed in the text, fixed by its rules, or read off its state (`game_state`)."""
    listed = listed_moves(text)
    if listed:
        return listed[:MAX_CHOICES]
    name = base_name(game)
    if name in FIXED:
        return FIXED[name]
    board = getattr(state, "game_state", None) or {}
    if name == "ConnectFour" and "board" in board:
        return [f"[col {c}]" for c in range(len(board["board"][0])) if board["board"][0][c] == "."]
    if name == "Nim" and "piles" in board:
        moves = [f"[{pile} {take}]" for pile, size in enumerate(board["piles"]) for take in range(1, size + 1)]
        return moves[:MAX_CHOICES]
    return []
