"""What a seat sees when it must move: the raw observation, which seat it is, and the legal moves."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class SeatObservation:
    """One seat's view at its turn. `legal_actions` comes from the action mask (in the observation dict or the
    info dict), else every action of a Discrete space; None when the env gives no way to tell."""

    agent_id: str
    seat_index: int
    observation: Any
    action_mask: Any = None
    legal_actions: tuple[int, ...] | None = None
    info: dict = field(default_factory=dict)

    def is_legal(self, action: Any) -> bool:
        if self.legal_actions is None:
            return True
        try:
            return int(action) in self.legal_actions
        except (TypeError, ValueError):
            return False


def seat_observation(raw: Any, agent_id: str, seat_index: int, action_space: Any = None,
                     info: dict | None = None) -> SeatObservation:
    """Split a PettingZoo observation into the part the agent reads and its action mask."""
    info = dict(info or {})
    observation, mask = raw, info.get("action_mask")
    if isinstance(raw, dict) and "observation" in raw:
        observation, mask = raw["observation"], raw.get("action_mask", mask)
    return SeatObservation(agent_id, seat_index, observation, mask, legal_actions(mask, action_space), info)


def legal_actions(mask: Any, action_space: Any = None) -> tuple[int, ...] | None:
    """Indices where `mask` is set; every action of a Discrete space if there is no mask; else None."""
    if mask is not None:
        return tuple(index for index, allowed in enumerate(list(mask)) if allowed)
    n = getattr(action_space, "n", None)
    if n is not None:
        start = int(getattr(action_space, "start", 0))
        return tuple(range(start, start + int(n)))
    return None
