"""One game table: a PettingZoo environment seen as "these seats must move now" and "these rewards just came".

AEC games: one seat moves at a time; seats that are done take their dead step here. Parallel games: every live
seat moves at once. Rewards are read after every step for every seat (PettingZoo's per-step `rewards`), so a
reward that arrives after other players' moves still reaches its player.
"""

from __future__ import annotations

from typing import Any

from llamagym.rollout.games.observation import SeatObservation, seat_observation

Rewards = dict[str, float]


class AECTable:
    """A PettingZoo AEC environment."""

    def __init__(self, env: Any):
        self.env = env
        self.seats: list[str] = list(env.possible_agents)

    def reset(self, seed: int) -> None:
        self.env.reset(seed=seed)

    def advance(self) -> tuple[dict[str, SeatObservation], Rewards]:
        """Take the dead steps of finished seats; return the seat to move (none: the game is over) and the
        rewards those dead steps produced."""
        rewards: Rewards = {}
        env = self.env
        while env.agents:
            seat = env.agent_selection
            observation, _, terminated, truncated, info = env.last()
            if not (terminated or truncated):
                view = seat_observation(observation, seat, self.seats.index(seat), env.action_space(seat), info)
                return {seat: view}, rewards
            env.step(None)
            _add(rewards, env.rewards)
        return {}, rewards

    def step(self, actions: dict[str, Any]) -> Rewards:
        (seat, action), = actions.items()
        self.env.step(action)
        return _add({}, self.env.rewards)

    def close(self) -> None:
        self.env.close()


class ParallelTable:
    """A PettingZoo Parallel environment."""

    def __init__(self, env: Any):
        self.env = env
        self.seats: list[str] = list(env.possible_agents)
        self._observations: dict[str, Any] = {}
        self._infos: dict[str, dict] = {}
        self._live: list[str] = []

    def reset(self, seed: int) -> None:
        self._observations, self._infos = self.env.reset(seed=seed)
        self._live = list(self.env.agents)

    def advance(self) -> tuple[dict[str, SeatObservation], Rewards]:
        views = {seat: seat_observation(self._observations[seat], seat, self.seats.index(seat),
                                        self.env.action_space(seat), self._infos.get(seat))
                 for seat in self._live}
        return views, {}

    def step(self, actions: dict[str, Any]) -> Rewards:
        observations, rewards, terminations, truncations, infos = self.env.step(actions)
        self._observations, self._infos = observations, infos
        self._live = [seat for seat in self.env.agents
                      if not (terminations.get(seat) or truncations.get(seat)) and seat in observations]
        return _add({}, rewards)

    def close(self) -> None:
        self.env.close()


def make_table(env: Any, kind: str) -> AECTable | ParallelTable:
    return ParallelTable(env) if kind == "parallel" else AECTable(env)


def _add(total: Rewards, rewards: dict[str, Any]) -> Rewards:
    for seat, reward in rewards.items():
        if reward:
            total[seat] = total.get(seat, 0.0) + float(reward)
    return total
