"""Rock paper scissors (and its larger odd variants): the model sees the opponent's last throw and names its own."""

from __future__ import annotations

from typing import Any

from llamagym.multiagent import GameAgent, SeatObservation
from llamagym.parsing import find_choice, match_choice

MOVES = ("rock", "paper", "scissors", "spock", "lizard")  # PettingZoo's order


def move_names(observation: SeatObservation) -> list[str]:
    count = len(observation.legal_actions or MOVES[:3])
    return [MOVES[i] if i < len(MOVES) else f"action_{i + 1}" for i in range(count)]


class RockPaperScissorsAgent(GameAgent):
    """Plays rps_v2: told the opponent's previous throw, answers rock, paper or scissors."""

    response_prefix = "I throw"

    def get_system_prompt(self) -> str:
        return ("You play rock paper scissors against the same opponent for several rounds. Rock beats "
                "scissors, scissors beat paper, paper beats rock. Answer with one word: rock, paper or scissors.")

    def format_observation(self, observation: SeatObservation) -> str:
        names = move_names(observation)
        last = int(observation.observation)
        opening = (f"Your opponent's last throw was {names[last]}." if last < len(names)
                   else "This is the first round.")
        return f"{opening} Your throw: {', '.join(names[:-1])} or {names[-1]}?"

    def parse_move(self, response: str, observation: SeatObservation) -> Any:
        # every throw name parses; one this variant does not have ("spock" in plain rps) is an illegal move
        return match_choice(response, {name: index for index, name in enumerate(MOVES)})

    def response_complete(self, response: str) -> bool:
        return find_choice(response, {name: index for index, name in enumerate(MOVES)}) is not None
