"""Agents for the text games: the observation is already text; the answer is one action word."""

from __future__ import annotations

from typing import Any

from llamagym import Agent
from llamagym.parsing import find_choice, match_choice

from .envs import FROZENLAKE_MOVES, TAXI_ACTIONS


class TextGameAgent(Agent):
    """Shows the env's text as it is and reads the first action word of the answer."""

    response_prefix = "My action:"
    words: dict[str, int] = {}
    instructions = ""

    def get_system_prompt(self) -> str:
        return self.instructions

    def format_observation(self, observation: Any) -> str:
        return str(observation)

    def extract_action(self, response: str) -> int:
        return match_choice(response, self.words)

    def response_complete(self, response: str) -> bool:
        return find_choice(response, self.words) is not None


class FrozenLakeAgent(TextGameAgent):
    """Crosses FrozenLake: answers left, down, right or up."""

    # SmolLM2-135M continues "I move" with a direction (16 of 16 lake positions, greedy), but "My action:" with a
    # description of where it stands (0 of 16)
    response_prefix = "I move"
    words = {move: action for action, move in enumerate(FROZENLAKE_MOVES)}
    instructions = ("You cross a frozen lake to reach the goal without falling into a hole. "
                    "Each turn, answer with one word: left, down, right or up.")


class TaxiAgent(TextGameAgent):
    """Drives the Taxi: answers south, north, east, west, pickup or dropoff."""

    # small models write "pick up the passenger" more often than "pickup"
    words = {**{word: action for action, word in enumerate(TAXI_ACTIONS)}, "pick up": 4, "drop off": 5}
    instructions = ("You drive a taxi: pick the passenger up, then drop them off at their destination. "
                    "Each turn, answer with one word: south, north, east, west, pickup or dropoff.")
