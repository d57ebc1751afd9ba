"""Who sits in a seat: an LLM policy (learning, or frozen on its own adapter) or a scripted move function.

Every player answers `act_batch({slot: SeatObservation})` for all the seats it holds across tables at once; a
slot is `(table, seat)`.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Hashable, Mapping
from typing import TYPE_CHECKING, Any, ContextManager, Protocol, cast

from llamagym.agent.episode import Episode

from llamagym.rollout.games.adapters import adapter_active, adapter_state, load_adapter_state
from llamagym.rollout.games.observation import SeatObservation

if TYPE_CHECKING:
    from llamagym.agent.agent import Agent

MovePolicy = Callable[[SeatObservation, random.Random], Any]


class Player(Protocol):
    """What sits in a seat (`PolicyPlayer`, `ScriptedPlayer`): the engine asks it for the moves of the slots it
    holds, hands it their rewards and ends their episodes."""

    name: str
    learns: bool
    instant: bool

    def act_batch(self, observations: Mapping[Hashable, SeatObservation]) -> dict[Hashable, Any]: ...

    def assign_reward(self, slot: Hashable, reward: float) -> None: ...

    def episode(self, slot: Hashable) -> Episode | None: ...

    def finish(self, slot: Hashable, learn: bool) -> Episode | None: ...

    def drop(self, slot: Hashable) -> None: ...

    def reset(self) -> None: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...

    def penalise_illegal(self, slot: Hashable, action: Any) -> None: ...


class PolicyPlayer:
    """An Agent in a seat. `adapter` names the LoRA adapter it plays with (None: the active one; adapters.BASE:
    the base model); only a player with `learns` keeps its episodes for PPO."""

    instant = False  # its moves need a generation, batched with every other seat waiting on it

    def __init__(self, agent: Agent, name: str = "policy", adapter: str | None = None, learns: bool = True):
        self.agent, self.name, self.adapter, self.learns = agent, name, adapter, learns

    def act_batch(self, observations: Mapping[Hashable, SeatObservation]) -> dict[Hashable, Any]:
        with adapter_active(self.agent, self.adapter):
            return self.agent.act_batch(observations)

    def assign_reward(self, slot: Hashable, reward: float) -> None:
        self.agent.assign_reward(reward, slot=slot)

    def episode(self, slot: Hashable) -> Episode | None:
        return self.agent.current_episode(slot)

    def finish(self, slot: Hashable, learn: bool) -> Episode | None:
        """End the slot's episode; a learning player's is returned, for the run loop to store and train on."""
        episode = self.agent.end_episode(slot)
        return episode if learn and self.learns else None

    def drop(self, slot: Hashable) -> None:
        self.agent.end_episode(slot)

    def training(self) -> ContextManager[None]:
        """Its adapter active, for its updates."""
        return adapter_active(self.agent, self.adapter)

    def reset(self) -> None:
        self.agent.reset_conversations()

    def state_dict(self) -> dict[str, Any]:
        """A learning policy that is not the run's main one (its adapter is not the one saved as the run's):
        adapter and value head weights, trainer, RNG, counters and the episodes it has not trained on yet."""
        if not self.learns:
            return {}
        agent = self.agent
        # such a policy plays with an adapter of its own: `adapter` names it
        return {"adapter": adapter_state(agent, cast(str, self.adapter)),
                "value_head": {k: v.detach().cpu().clone() for k, v in agent.model.v_head.state_dict().items()},
                "trainer": agent.trainer.state_dict(), "rng": agent.rng.getstate(),
                "counters": dict(agent.counters), "buffer": list(agent.buffer)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not state:
            return
        agent = self.agent
        load_adapter_state(agent, cast(str, self.adapter), state["adapter"])
        agent.model.v_head.load_state_dict(state["value_head"])
        agent.trainer.restore(state["trainer"])
        agent.rng.setstate(state["rng"])
        agent.counters.update(state["counters"])
        agent.buffer = list(state["buffer"])

    def penalise_illegal(self, slot: Hashable, action: Any) -> None:
        """Mark the slot's last turn invalid (once) with the invalid-action penalty, and record the move made."""
        episode = self.agent.current_episode(slot)
        if episode is None or not episode.turns:
            return
        turn = episode.turns[-1]
        if turn.valid:
            turn.valid = False
            turn.reward += self.agent.ppo_config.invalid_action_penalty
            self.agent.counters["invalid_turns"] += 1
        turn.action = action


class ScriptedPlayer:
    """A move function in a seat (random legal moves, or a heuristic a plugin registers); it never learns."""

    learns = False
    instant = True  # moves at once, without waiting for the round's generation

    def __init__(self, policy: MovePolicy, name: str, seed: int = 0):
        self.policy, self.name = policy, name
        self.rng = random.Random(seed)

    def act_batch(self, observations: Mapping[Hashable, SeatObservation]) -> dict[Hashable, Any]:
        return {slot: self.policy(observation, self.rng) for slot, observation in observations.items()}

    def assign_reward(self, slot: Hashable, reward: float) -> None:
        pass

    def episode(self, slot: Hashable) -> None:
        return None

    def finish(self, slot: Hashable, learn: bool) -> None:
        return None

    def drop(self, slot: Hashable) -> None:
        pass

    def reset(self) -> None:
        pass

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self.rng.getstate()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            self.rng.setstate(state["rng"])

    def penalise_illegal(self, slot: Hashable, action: Any) -> None:
        pass


def random_move(observation: SeatObservation, rng: random.Random) -> Any:
    """A uniformly random legal move (the action mask's legal moves, or any action of a Discrete space)."""
    if not observation.legal_actions:
        raise ValueError(f"seat {observation.agent_id!r} has no legal move to choose from")
    return rng.choice(observation.legal_actions)
