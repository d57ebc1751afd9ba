"""The self-play pool: snapshots of the learning adapter taken every few updates, replayed as opponents so the
policy keeps beating its past selves instead of drifting into a strategy only its current self loses to."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

from llamagym.rollout.games.adapters import adapter_state, add_adapter, clone_agent, load_adapter_state
from llamagym.rollout.games.players import PolicyPlayer

if TYPE_CHECKING:
    from llamagym.agent.agent import Agent

POOL_ADAPTER = "pool_{}"


class SnapshotPool:
    """Up to `size` past snapshots, each loaded in its own frozen adapter. A new snapshot replaces the oldest one
    that no game is using at that moment (it waits if all are in use), so no game changes opponent midway."""

    def __init__(self, agent: Agent, learner_adapter: str, size: int, every: int):
        self.agent, self.learner_adapter, self.size, self.every = agent, learner_adapter, size, every
        self.players: list[PolicyPlayer] = []
        self.ages: list[int] = []
        self.in_use: dict[int, int] = {}
        self.pending: dict[str, Any] | None = None
        self.snapshots = 0

    def after_update(self, updates: int) -> None:
        """Take a snapshot every `every` updates of the learner."""
        if self.size and updates % self.every == 0:
            self.pending = adapter_state(self.agent, self.learner_adapter)
            self.snapshots += 1

    def draw(self, rng: random.Random) -> PolicyPlayer | None:
        """A uniformly chosen past snapshot (None while the pool is empty); mark it in use until `release`."""
        self._install_pending()
        if not self.players:
            return None
        index = rng.randrange(len(self.players))
        self.in_use[index] = self.in_use.get(index, 0) + 1
        return self.players[index]

    def release(self, player: PolicyPlayer) -> None:
        for index, candidate in enumerate(self.players):
            if candidate is player and self.in_use.get(index):
                self.in_use[index] -= 1

    def state_dict(self) -> dict[str, Any]:
        """The snapshots' weights and ages, the one waiting to be installed, and the snapshot count."""
        return {"snapshots": self.snapshots, "ages": list(self.ages), "pending": self.pending,
                "weights": [adapter_state(self.agent, POOL_ADAPTER.format(i)) for i in range(len(self.players))]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Refill the pool as a checkpoint left it (no game is using a snapshot when a run resumes)."""
        for index, weights in enumerate(state["weights"]):
            if index == len(self.players):
                self._add_slot()
            load_adapter_state(self.agent, POOL_ADAPTER.format(index), weights)
        self.ages, self.snapshots, self.pending = list(state["ages"]), state["snapshots"], state["pending"]
        self.in_use = {}

    def _add_slot(self) -> int:
        index = len(self.players)
        name = POOL_ADAPTER.format(index)
        add_adapter(self.agent, name)
        self.players.append(PolicyPlayer(clone_agent(self.agent, seed_offset=1000 + index), "snapshot",
                                         adapter=name, learns=False))
        self.ages.append(0)
        return index

    def _install_pending(self) -> None:
        if self.pending is None:
            return
        if len(self.players) < self.size:
            index = self._add_slot()
        else:
            free = [i for i in range(len(self.players)) if not self.in_use.get(i)]
            if not free:
                return
            index = min(free, key=lambda i: self.ages[i])
        load_adapter_state(self.agent, POOL_ADAPTER.format(index), self.pending)
        self.ages[index] = self.snapshots
        self.pending = None
