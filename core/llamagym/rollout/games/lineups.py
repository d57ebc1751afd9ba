"""Who sits where in each game: self-play (one shared policy, sometimes a past snapshot in one seat), one policy
per seat, or the learner against a fixed opponent."""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

from llamagym.errors import ConfigError
from llamagym.rollout.engine import Learner
from llamagym.rollout.games.players import Player, PolicyPlayer
from llamagym.rollout.games.pool import SnapshotPool

ALTERNATE = "alternate"


class SelfPlay:
    """The main policy in every seat; with probability `pool_rate` a past snapshot takes one random seat."""

    def __init__(self, main: PolicyPlayer, pool: SnapshotPool | None = None, pool_rate: float = 0.0):
        self.main, self.pool, self.pool_rate = main, pool, pool_rate

    def players(self) -> list[PolicyPlayer]:
        return [self.main] + (list(self.pool.players) if self.pool else [])

    def seat(self, index: int, seats: list[str], rng: random.Random) -> dict[str, PolicyPlayer]:
        lineup = {seat: self.main for seat in seats}
        if self.pool is not None and self.pool_rate > 0 and rng.random() < self.pool_rate:
            snapshot = self.pool.draw(rng)
            if snapshot is not None:
                lineup[rng.choice(seats)] = snapshot
        return lineup

    def release(self, lineup: Mapping[str, PolicyPlayer]) -> None:
        if self.pool is not None:
            for player in lineup.values():
                if player is not self.main:
                    self.pool.release(player)

    def after_update(self, player: Learner, updates: int) -> None:
        if self.pool is not None and player is self.main:
            self.pool.after_update(updates)

    def state_dict(self) -> dict[str, Any]:
        return {"pool": self.pool.state_dict()} if self.pool is not None else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.pool is not None and "pool" in state:
            self.pool.load_state_dict(state["pool"])


class PerSeat:
    """A fixed mapping from agent ids to players (for example one LoRA adapter per seat)."""

    def __init__(self, players: Mapping[str, Player], main: Player | None = None):
        self.mapping = dict(players)
        self.main = main if main is not None else next(iter(self.mapping.values()))

    def players(self) -> list[Player]:
        return list(dict.fromkeys(self.mapping.values()))

    def seat(self, index: int, seats: list[str], rng: random.Random) -> dict[str, Player]:
        missing = [seat for seat in seats if seat not in self.mapping]
        if missing:
            raise ConfigError(f"no policy for seat(s) {', '.join(missing)}; the game's seats are "
                              f"{', '.join(seats)}")
        return {seat: self.mapping[seat] for seat in seats}

    def release(self, lineup: Mapping[str, Player]) -> None:
        pass

    def after_update(self, player: Learner, updates: int) -> None:
        pass

    def state_dict(self) -> dict[str, Any]:
        """Every seat's policy but the main one's (the run saves that one itself)."""
        return {seat: player.state_dict() for seat, player in self.mapping.items() if player is not self.main}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for seat, player_state in state.items():
            if seat in self.mapping:
                self.mapping[seat].load_state_dict(player_state)


class VersusOpponent:
    """The main policy in one seat (a different one each game with "alternate"), the opponent in the others."""

    def __init__(self, main: PolicyPlayer, opponent: Player, learner_seat: str = ALTERNATE):
        self.main, self.opponent, self.learner_seat = main, opponent, learner_seat

    def players(self) -> list[Player]:
        return [self.main, self.opponent]

    def seat(self, index: int, seats: list[str], rng: random.Random) -> dict[str, Player]:
        if self.learner_seat == ALTERNATE:
            mine = seats[index % len(seats)]
        elif self.learner_seat in seats:
            mine = self.learner_seat
        else:
            raise ConfigError(f"multiagent.learner_seat={self.learner_seat!r} is not a seat of this game; use "
                              f"{ALTERNATE} or one of {', '.join(seats)}")
        return {seat: (self.main if seat == mine else self.opponent) for seat in seats}

    def release(self, lineup: Mapping[str, Player]) -> None:
        pass

    def after_update(self, player: Learner, updates: int) -> None:
        pass

    def state_dict(self) -> dict[str, Any]:
        return {"opponent": self.opponent.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.opponent.load_state_dict(state.get("opponent", {}))
