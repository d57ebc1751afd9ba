"""The base class of agents for PettingZoo games: it reads a `SeatObservation` and answers a move.

A subclass writes `get_system_prompt`, `format_observation(observation)` and `parse_move(response, observation)`.
A move outside the legal moves counts as invalid like an unparsable one, and both are replaced by a uniformly
random legal move (the action mask's), with `ppo.invalid_action_penalty` added to the turn's reward.
"""

from __future__ import annotations

from typing import Any

from llamagym.agent.agent import Agent
from llamagym.errors import ActionParseError
from llamagym.rollout.games.observation import SeatObservation


class IllegalMoveError(ActionParseError):
    """The response names a move, but not a legal one."""


class GameAgent(Agent):
    """An Agent that plays one seat of a PettingZoo game (the engine hands it a `SeatObservation`)."""

    def parse_move(self, response: str, observation: SeatObservation) -> Any:
        """The move the response names; raise `ActionParseError` if it names none."""
        raise NotImplementedError(f"{type(self).__name__} must define parse_move(response, observation)")

    # ignore: Agent.extract_action documents that a subclass may also take the observation; the built-in
    # llamagym_extract_action hook passes it to a method written so (see plugins/builtin/agent_methods.py)
    def extract_action(self, response: str, observation: SeatObservation) -> Any:  # type: ignore[override]
        move = self.parse_move(response, observation)
        if isinstance(observation, SeatObservation) and not observation.is_legal(move):
            raise IllegalMoveError(f"move {move!r} is not legal now (legal: {observation.legal_actions})")
        return move

    def fallback_action(self, observation: Any) -> Any:
        """A uniformly random legal move; the base rule when the observation carries no legal moves."""
        if isinstance(observation, SeatObservation) and observation.legal_actions:
            return self.rng.choice(observation.legal_actions)
        return super().fallback_action(observation)
