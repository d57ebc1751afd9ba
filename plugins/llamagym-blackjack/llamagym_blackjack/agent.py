"""The Blackjack agent: a short prompt a 135M model can follow, and a parser for its one-word answer."""

from __future__ import annotations

from typing import Any

from llamagym import Agent
from llamagym.parsing import find_choice, match_choice

from .strategy import dealer_final

STICK, HIT = 0, 1
# Small models echo the option named last. Naming "stick or hit" in the system prompt and "Hit or stick?" in the
# question balances them: the untrained model says hit and stick about equally often in every state, so PPO sees
# both actions everywhere. (Asking "Stick or hit?" twice made it stick 90% of the time, and PPO never found out
# that hitting a 9 wins.)
ACTION_WORDS = {"stick": STICK, "stand": STICK, "stay": STICK, "hit": HIT}


def card_name(card: int) -> str:
    return "an ace" if card == 1 else ("an 8" if card == 8 else f"a {card}")


def bust_risk(player: int, usable_ace: bool) -> str:
    """How many of the 13 ranks would bust the hand if it hits: a fact a player reads off the cards, which a small
    model cannot work out from the total on its own."""
    busting = 0 if usable_ace else sum(1 for rank in range(1, 14) if player + min(rank, 10) > 21)
    return "A hit cannot bust you." if busting == 0 else f"A hit busts you with {busting} of the 13 ranks."


def stick_strength(player: int) -> str:
    """Below 17 a stick wins only when the dealer busts (the dealer draws to 17 or more): the one fact that sets
    the hands where hitting is worth its risk apart from the rest. The model uses such sentences, not the number."""
    return " Sticking on it wins only if the dealer busts." if player <= 16 else ""


DEALER_BUST = {card: dealer_final(card)[22] for card in range(1, 11)}  # exact, for Gymnasium's rules


def dealer_card(showing: int) -> str:
    """The dealer's card and how often the dealer busts from it, in a word (often: 2-6, 35-42%; seldom: 7-ace,
    12-26%) and a number: a 135M model tells the words apart where it cannot compare the numbers. The observation
    space also admits cards no deal produces (0); those are named without a rate."""
    bust = DEALER_BUST.get(showing)
    if bust is None:
        return f"The dealer shows {card_name(showing)}."
    often = "often" if bust >= 0.3 else "seldom"
    return f"The dealer shows {card_name(showing)} and {often} goes bust ({round(100 * bust)}% of the time)."


class BlackjackAgent(Agent):
    """Plays Blackjack-v1: observation (player sum, dealer card, usable ace) in, "stick" or "hit" out."""

    response_prefix = "My answer:"

    def get_system_prompt(self) -> str:
        return "You are playing blackjack. Each turn, answer with one word: stick or hit."

    def format_observation(self, observation: Any) -> str:
        player, dealer, usable_ace = (int(x) for x in observation)
        ace = " with a usable ace" if usable_ace else ""
        return (f"Your hand totals {player}{ace}.{stick_strength(player)} {bust_risk(player, bool(usable_ace))} "
                f"{dealer_card(dealer)} Hit or stick?")

    def extract_action(self, response: str) -> int:
        return match_choice(response, ACTION_WORDS)

    def action_choices(self, observation: Any) -> list[str]:
        # The policy chooses between exactly these two answers, so none is invalid and PPO explores actions only.
        return [" stick", " hit"]

    def format_action(self, action: int) -> str:
        return " stick" if int(action) == STICK else " hit"

    def response_complete(self, response: str) -> bool:
        return find_choice(response, ACTION_WORDS) is not None
