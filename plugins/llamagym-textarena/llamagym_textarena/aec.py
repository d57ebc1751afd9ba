"""Two-player TextArena games as PettingZoo AEC envs, for llamagym's multi-agent engine (self-play, opponents)."""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces
from pettingzoo import AECEnv

from .env import CHARSET, MAX_ACTION, MAX_OBSERVATION, View, bracketed, make_game, seed_of, with_moves
from .games import base_name


class GameText(str):
    """A seat's observation: a str that also carries the dtype of its space (PettingZoo's api_test compares an
    observation's dtype with its space's, which a plain str lacks)."""

    dtype = spaces.Text(1).dtype


class TextArenaGame(AECEnv):
    """A two-player TextArena game: seats "player_0" (moves first) and "player_1", text observations and actions;
    at the end each seat gets TextArena's reward (1 win, -1 loss, 0 draw). An invalid move is TextArena's to
    judge: the player is told and tries again, a second one in a row loses the game. `infos[seat]["legal_moves"]`
    lists the moves of the seat to move where the game lists them."""

    metadata: dict[str, Any] = {"name": "textarena", "render_modes": [], "is_parallelizable": False}

    def __init__(self, game: str = "TicTacToe-v0", max_steps: int = 400, **game_kwargs: Any):
        super().__init__()
        self.game, self.max_steps, self.game_kwargs = game, max_steps, game_kwargs
        self._env = make_game(game, **game_kwargs)
        self.possible_agents = ["player_0", "player_1"]
        self.metadata = {**self.metadata, "name": f"textarena_{base_name(game).lower()}"}
        self._observation_space = spaces.Text(max_length=MAX_OBSERVATION + 2000, charset=CHARSET)
        self._action_space = spaces.Text(max_length=MAX_ACTION, charset=CHARSET)
        self.agents = []
        self._views = {agent: View() for agent in self.possible_agents}
        self._np_random = np.random.default_rng()
        self._steps = 0

    def observation_space(self, agent: str) -> spaces.Text:
        return self._observation_space

    def action_space(self, agent: str) -> spaces.Text:
        return self._action_space

    def reset(self, seed: int | None = None, options: dict | None = None) -> None:
        if seed is not None:
            self._np_random = np.random.default_rng(seed)
        self._env = make_game(self.game, **self.game_kwargs)
        self._env.reset(num_players=2, seed=seed_of(self._np_random, seed))
        self.agents = list(self.possible_agents)
        self.rewards = {agent: 0.0 for agent in self.agents}
        self._cumulative_rewards = {agent: 0.0 for agent in self.agents}
        self.terminations = {agent: False for agent in self.agents}
        self.truncations = {agent: False for agent in self.agents}
        self._views = {agent: View() for agent in self.possible_agents}
        self._steps = 0
        self._select()

    def _drain(self) -> None:
        """Move the messages TextArena holds for each player into what that player has been shown."""
        pending = self._env.state.observations
        for index, agent in enumerate(self.possible_agents):
            self._views[agent].add(pending.get(index, []))
            pending[index] = []

    def _select(self) -> None:
        self._drain()
        self.agent_selection = self.possible_agents[int(self._env.state.current_player_id)]
        self.infos = {agent: {"legal_moves": self._moves(agent)} for agent in self.agents}

    def _moves(self, agent: str) -> list[str]:
        return self._shown(agent)[1]

    def _shown(self, agent: str) -> tuple[str, list[str]]:
        """What `agent` reads now, with the moves it may make if it is the one to move."""
        text = self._views[agent].text()
        if agent != self.agent_selection or not self.agents or self.terminations.get(agent):
            return text, []
        return with_moves(text, self.game, getattr(self._env, "state", None))

    def observe(self, agent: str) -> str:
        return GameText(self._shown(agent)[0])

    def step(self, action: Any) -> None:
        agent = self.agent_selection
        if self.terminations[agent] or self.truncations[agent]:
            self._was_dead_step(action)
            return
        self._cumulative_rewards[agent] = 0.0
        done, _ = self._env.step(bracketed(action))
        self._steps += 1
        self.rewards = {seat: 0.0 for seat in self.agents}
        if done:
            rewards, game_info = self._env.close()
            self._drain()
            for index, seat in enumerate(self.possible_agents):
                self.rewards[seat] = float((rewards or {}).get(index, 0.0))
                self.terminations[seat] = True
                reason = str((game_info or {}).get(index, {}).get("reason", ""))
                self.infos[seat] = {"legal_moves": [], "reason": reason}
        elif self._steps >= self.max_steps:
            self._drain()
            self.truncations = {seat: True for seat in self.agents}
        else:
            self._select()
        self._accumulate_rewards()

    def render(self) -> None:
        return None

    def close(self) -> None:
        return None
