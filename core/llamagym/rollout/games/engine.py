"""The multi-agent rollout engine: many game tables at once. Every seat waiting to move, across all tables, is
answered in one batched generation per policy; each seat's turns form its own episode (slot `(table, seat)`)
with its own rewards. Each learning seat's finished episode is yielded to the run loop, which trains a policy
whenever its batch is full and tells the engine (`after_update`).

The illegal-move rule: a move that is not in the seat's legal moves (or that the agent could not parse) is
replaced by a uniformly random legal move; the turn counts as invalid and its reward gets the policy's
`ppo.invalid_action_penalty`.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from typing import Any

from llamagym.rollout.engine import (EpisodeResult, Event, Finished, Learner, Messages, Trajectory,
                                     episode_outcome, episode_seed, play_through, sign_outcome)
from llamagym.rollout.games.adapters import BASE, remove_adapter
from llamagym.rollout.games.observation import SeatObservation
from llamagym.rollout.games.players import Player, random_move
from llamagym.rollout.games.tables import make_table

logger = logging.getLogger(__name__)

LINEUP_SEED = 0x5EA7  # seat draws use their own stream, separate from the environment's


@dataclass
class GameResult(EpisodeResult):
    """One finished game, seen from the main policy's seats: `env_return` is their mean return, `outcome` its
    win / draw / loss (a plugin's `llamagym_episode_outcome`, else the sign of that return), `turns` and
    `invalid_turns` count their moves, and `messages` maps every seat of the game to the main policy's
    conversation in it (an empty list for a seat another player held)."""

    returns: dict[str, float] = field(default_factory=dict)
    players: dict[str, str] = field(default_factory=dict)


@dataclass
class Game:
    index: int
    seed: int
    lineup: dict[str, Any]
    returns: dict[str, float]


class GameStats:
    """The main policy's results over the games since the last update, added to each update's statistics."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.games = self.wins = self.draws = self.losses = self.turns = self.invalid = self.mixed = 0

    def add(self, result: GameResult, mixed: bool) -> None:
        if result.error is not None or not result.turns:
            return
        outcome = result.outcome or sign_outcome(result.env_return)
        self.games += 1
        self.wins += outcome == "win"
        self.draws += outcome == "draw"
        self.losses += outcome == "loss"
        self.turns += result.turns
        self.invalid += result.invalid_turns
        self.mixed += mixed

    def pop(self) -> dict[str, float]:
        n = max(self.games, 1)
        stats = {"game/games": self.games, "game/win_rate": self.wins / n, "game/draw_rate": self.draws / n,
                 "game/loss_rate": self.losses / n, "game/illegal_rate": self.invalid / max(self.turns, 1),
                 "game/other_policy_rate": self.mixed / n}
        self.reset()
        return stats


class GameEngine:
    """Plays `lineup` (who sits where) on `num_tables` copies of a PettingZoo game made by `make_env`."""

    def __init__(self, make_env: Callable[[], Any], lineup: Any, *, kind: str = "aec", num_tables: int = 16,
                 seed: int = 0, max_env_errors: int = 10):
        self.lineup, self.kind, self.seed, self.max_env_errors = lineup, kind, seed, max_env_errors
        self.tables = [make_table(make_env(), kind) for _ in range(num_tables)]
        self.num_envs = num_tables
        self.seats = self.tables[0].seats
        self.env_steps = 0
        self.updates: dict[int, int] = {}
        self.stats = GameStats()
        self._rng = random.Random(seed)
        main_agent = getattr(lineup.main, "agent", None)
        if main_agent is not None and main_agent.action_space is None:
            main_agent.action_space = self.tables[0].env.action_space(self.seats[0])

    @property
    def main(self) -> Any:
        return self.lineup.main

    def learners(self) -> list[Learner]:
        """Every learning policy, the main one last (the order the run's last updates take them)."""
        others = [p for p in self.lineup.players() if p.learns and p is not self.main]
        return [*others, self.main] if getattr(self.main, "learns", False) else others

    def run(self, episodes: int, *, learn: bool = False, start_index: int = 0,
            on_episode: Callable[[EpisodeResult], None] | None = None) -> list[EpisodeResult]:
        """Play games without training (evaluation, collection)."""
        return play_through(self, episodes, learn=learn, start_index=start_index, on_episode=on_episode)

    def play(self, episodes: int, *, learn: bool = True, start_index: int = 0) -> Iterator[Event]:
        """Play games `start_index .. start_index + episodes - 1`, yielding each learning seat's episode and each
        game as they end."""
        for player in self.lineup.players():
            player.reset()
        self._learn = learn
        self._next, self._end = start_index, start_index + episodes
        games: dict[int, Game] = {}
        for table in range(min(self.num_envs, episodes)):
            yield from self._start(table, games)
        while games:
            requests = yield from self._requests(games)
            actions = self._act(requests)
            for table, seat_actions in _by_table(actions).items():
                yield from self._step(table, seat_actions, games)

    def after_update(self, learner: Learner, stats: dict[str, Any]) -> dict[str, Any]:
        """Count the update (the self-play pool may take a snapshot); the main policy's stats gain its game results
        since its last update, another policy's its name."""
        key = id(learner)
        self.updates[key] = self.updates.get(key, 0) + 1
        self.lineup.after_update(learner, self.updates[key])
        if learner is self.main:
            return {**stats, **self.stats.pop()}
        return {**stats, "policy": learner.name}

    # ---- one round: who must move, their moves, the steps --------------------------------------------------

    def _requests(self, games: dict[int, Game]) -> Generator[Event, None, dict[int, tuple[Any, dict]]]:
        """Every seat waiting to move, grouped by player (the return value); finished games are closed (yielded)
        and their tables refilled."""
        requests: dict[int, tuple[Any, dict]] = {}
        for table in list(games):
            while table in games:
                game = games[table]
                try:
                    waiting, rewards = self.tables[table].advance()
                except Exception as exc:
                    yield from self._finish(table, games, f"step of game {game.index} raised "
                                                          f"{type(exc).__name__}: {exc}")
                    continue
                self._reward(table, game, rewards)
                if not waiting:
                    yield from self._finish(table, games)
                elif all(game.lineup[seat].instant for seat in waiting):  # scripted seats move at once
                    yield from self._step(table, self._instant_moves(table, game, waiting), games)
                else:
                    for seat, observation in waiting.items():
                        player = game.lineup[seat]
                        requests.setdefault(id(player), (player, {}))[1][(table, seat)] = observation
                    break
        return requests

    def _act(self, requests: dict[int, tuple[Any, dict]]) -> dict[tuple[int, str], Any]:
        actions: dict[tuple[int, str], Any] = {}
        for player, observations in requests.values():
            answered = player.act_batch(observations)
            for slot, observation in observations.items():
                actions[slot] = self._legal(player, slot, observation, answered[slot])
        return actions

    def _instant_moves(self, table: int, game: Game, waiting: dict[str, SeatObservation]) -> dict[str, Any]:
        moves = {}
        for seat, view in waiting.items():
            player = game.lineup[seat]
            moves[seat] = self._legal(player, (table, seat), view, player.act_batch({(table, seat): view})[
                (table, seat)])
        return moves

    def _legal(self, player: Player, slot: tuple[int, str], observation: SeatObservation, action: Any) -> Any:
        """The move itself if legal, else a uniformly random legal move (and the turn counts as invalid)."""
        if observation.is_legal(action):
            return action
        replacement = random_move(observation, self._rng)
        player.penalise_illegal(slot, replacement)
        return replacement

    def _step(self, table: int, actions: dict[str, Any], games: dict[int, Game]) -> Iterator[Event]:
        game = games[table]
        try:
            rewards = self.tables[table].step(actions)
        except Exception as exc:
            yield from self._finish(table, games, f"step of game {game.index} raised {type(exc).__name__}: {exc}")
            return
        self.env_steps += 1
        self._reward(table, game, rewards)

    def _reward(self, table: int, game: Game, rewards: dict[str, float]) -> None:
        for seat, reward in rewards.items():
            if seat in game.lineup:
                game.returns[seat] = game.returns.get(seat, 0.0) + reward
                game.lineup[seat].assign_reward((table, seat), reward)

    # ---- starting and ending games -------------------------------------------------------------------------

    def _start(self, table: int, games: dict[int, Game]) -> Iterator[Event]:
        """Reset `table` for the next game; one whose reset raises is yielded as dropped."""
        while self._next < self._end:
            index = self._next
            self._next += 1
            seed = episode_seed(self.seed, index, not self._learn)
            try:
                self.tables[table].reset(seed)
            except Exception as exc:
                yield Finished(GameResult(index, seed, 0.0, 0, 0, f"reset of game {index} raised "
                                                                  f"{type(exc).__name__}: {exc}",
                                          messages={seat: [] for seat in self.seats}))
                continue
            lineup = self.lineup.seat(index, self.seats, random.Random(seed ^ LINEUP_SEED))
            games[table] = Game(index, seed, lineup, {seat: 0.0 for seat in self.seats})
            return

    def _finish(self, table: int, games: dict[int, Game], error: str | None = None) -> Iterator[Event]:
        """End the game at `table`: each learning seat's episode, then the game, then the table's next game."""
        game = games.pop(table)
        result = self._result(table, game, error)  # before the episodes end: it takes their conversations
        for seat, player in game.lineup.items():
            if error is not None:
                player.drop((table, seat))
                continue
            episode = player.finish((table, seat), self._learn)
            if episode is not None and episode.turns:
                yield Trajectory(player, episode)
        self.lineup.release(game.lineup)
        self.stats.add(result, any(p is not self.main for p in game.lineup.values()))
        yield Finished(result)
        yield from self._start(table, games)

    def _result(self, table: int, game: Game, error: str | None) -> GameResult:
        mine = [seat for seat, player in game.lineup.items() if player is self.main]
        episodes = [self.main.episode((table, seat)) for seat in mine]
        episodes = [e for e in episodes if e is not None]
        env_return = sum(game.returns[s] for s in mine) / len(mine) if mine else 0.0
        agent = getattr(self.main, "agent", None)
        outcome = None
        if error is None:
            outcome = episode_outcome(agent, env_return, {}) if agent is not None else sign_outcome(env_return)
        messages: dict[str, Messages] = {seat: [] for seat in self.seats}
        if agent is not None:
            for seat in mine:
                messages[seat] = agent.messages((table, seat)) or []
        return GameResult(game.index, game.seed, env_return, sum(len(e.turns) for e in episodes),
                          sum(e.invalid_turns for e in episodes), error, outcome=outcome, messages=messages,
                          returns=dict(game.returns),
                          players={seat: player.name for seat, player in game.lineup.items()})

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint needs besides the main policy: the lineup's own state (other seats' policies, the
        self-play pool, an opponent's RNG), how many updates each learning policy has made, and the main
        policy's game results since its last update."""
        names = {id(player): player.name for player in self.lineup.players()}
        return {"updates": {names[key]: count for key, count in self.updates.items() if key in names},
                "lineup": self.lineup.state_dict(), "game_stats": dict(vars(self.stats))}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.lineup.load_state_dict(state["lineup"])
        vars(self.stats).update(state["game_stats"])
        by_name = {player.name: player for player in self.lineup.players() if player.learns}
        self.updates = {id(by_name[name]): count for name, count in state["updates"].items() if name in by_name}

    def close(self) -> None:
        """Close the environments and remove the adapters of frozen opponents (snapshots, checkpoints), so that
        saving the model afterwards saves only the learning policies."""
        for table in self.tables:
            table.close()
        for player in self.lineup.players():
            if not player.learns and getattr(player, "adapter", None) not in (None, BASE):
                remove_adapter(player.agent, player.adapter)


def _by_table(actions: dict[tuple[int, str], Any]) -> dict[int, dict[str, Any]]:
    grouped: dict[int, dict[str, Any]] = {}
    for (table, seat), action in actions.items():
        grouped.setdefault(table, {})[seat] = action
    return grouped
