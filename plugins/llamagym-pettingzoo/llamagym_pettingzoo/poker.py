"""Leduc and limit Texas hold'em for a small model: the cards in words, the money so far, the legal moves by
name; the model answers one of call, raise, fold or check."""

from __future__ import annotations

from typing import Any

from llamagym.multiagent import GameAgent, SeatObservation
from llamagym.parsing import find_choice, match_choice

from .text import listing

ACTIONS = ("call", "raise", "fold", "check")  # PettingZoo's action ids 0-3
LEDUC_CARDS = ("jack", "queen", "king")
SUITS = ("spades", "hearts", "diamonds", "clubs")
RANKS = ("ace", "2", "3", "4", "5", "6", "7", "8", "9", "10", "jack", "queen", "king")


def legal_names(observation: SeatObservation) -> list[str]:
    return [ACTIONS[a] for a in observation.legal_actions or range(len(ACTIONS))]


def first_set(values: list[int]) -> int | None:
    """The index of the first 1 of a one-hot block, None if it has none."""
    return values.index(1) if 1 in values else None


def leduc_state(vector: Any) -> tuple[str, str | None, int, int]:
    """(your card, public card or None, your chips in the pot, opponent's chips in the pot); a block with no bit
    set (never in a real deal) reads as an unknown card or 0 chips rather than failing."""
    values = [int(v) for v in vector]
    hand, public = first_set(values[0:3]), first_set(values[3:6])
    return (LEDUC_CARDS[hand] if hand is not None else "unknown card",
            LEDUC_CARDS[public] if public is not None else None,
            first_set(values[6:21]) or 0, first_set(values[21:36]) or 0)


def texas_state(vector: Any) -> tuple[list[str], list[int]]:
    """(the cards the seat sees: its two and the board's, raises in each of the four betting rounds)."""
    values = [int(v) for v in vector]
    cards = [f"{RANKS[i % 13]} of {SUITS[i // 13]}" for i in range(52) if values[i]]
    raises = [first_set(values[52 + 5 * r: 57 + 5 * r]) or 0 for r in range(4)]
    return cards, raises


class PokerAgent(GameAgent):
    """Shared by the two hold'em agents: the answer is one legal action word."""

    # The default model answered an action word after "My move:" in 48% of 32 sampled Leduc positions ("I": 8%)
    response_prefix = "My move:"

    def parse_move(self, response: str, observation: SeatObservation) -> Any:
        return match_choice(response, {name: ACTIONS.index(name) for name in ACTIONS})

    def response_complete(self, response: str) -> bool:
        return find_choice(response, {name: name for name in ACTIONS}) is not None


class LeducHoldemAgent(PokerAgent):
    """Plays leduc_holdem_v4: reads its card, the public card and the pot; answers call, raise, fold or check."""

    def get_system_prompt(self) -> str:
        return ("You play Leduc hold'em, a poker game with six cards: two jacks, two queens, two kings. Each "
                "player holds one card and one public card is shown after the first betting round. A pair with "
                "the public card wins, else the higher card. Answer with one word: call, raise, fold or check.")

    def format_observation(self, observation: SeatObservation) -> str:
        hand, public, mine, theirs = leduc_state(observation.observation)
        board = f"The public card is a {public}." if public else "No public card yet."
        return (f"Your card is a {hand}. {board} You have put {mine} chips in the pot, your opponent {theirs}. "
                f"Legal moves: {listing(legal_names(observation))}. Your move?")


class TexasHoldemAgent(PokerAgent):
    """Plays texas_holdem_v4 (limit): reads the cards it sees and the raises; answers call, raise, fold or check."""

    response_prefix = "I choose to"  # 62% of 32 sampled positions answered an action word ("My move:": 35%)

    def get_system_prompt(self) -> str:
        return ("You play limit Texas hold'em. You hold two cards; up to five shared cards are dealt on the "
                "board. The best five-card hand wins. Answer with one word: call, raise, fold or check.")

    def format_observation(self, observation: SeatObservation) -> str:
        cards, raises = texas_state(observation.observation)
        rounds = ", ".join(f"round {i + 1}: {n}" for i, n in enumerate(raises) if n) or "none"
        return (f"Cards you see (your two, then the board): {listing(cards)}. Raises so far: {rounds}. "
                f"Legal moves: {listing(legal_names(observation))}. Your move?")
