"""TextArena games as llamagym environments. `TextArenaEnv` (Gymnasium) holds a single-player game,
`TextArenaGame` (a PettingZoo AEC env) a two-player one; both take TextArena's raw game (no TextArena wrappers)
and show each player a bounded text: the game's prompt, its last few messages, the current board. So the prompt
stays the same size however long a game runs."""

from __future__ import annotations

import string
from typing import Any

import gymnasium
from gymnasium import spaces

from .games import check_offline, legal_moves, listed_moves

# printable ASCII, Latin-1, and the symbols TextArena's boards draw with; any other character shows as "?"
_SYMBOLS = "".join(chr(c) for c in [*range(0xA0, 0x180), *range(0x2190, 0x21FF), *range(0x2500, 0x25FF),
                                    *range(0x2600, 0x26FF), 0x2014, 0x2013, 0x2018, 0x2019, 0x201C, 0x201D,
                                    0x2022, 0x2026, 0x2713, 0x2717, 0x279C])
CHARSET = frozenset(string.printable + _SYMBOLS)
MAX_OBSERVATION = 8000
MAX_ACTION = 200
RECENT_MESSAGES = 6  # game messages kept (moves described, invalid-move notices), besides prompt and board


def _text(value: str, limit: int) -> str:
    cleaned = "".join(c if c in CHARSET else "?" for c in value)
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 3] + "..."


def bracketed(action: Any) -> str:
    """TextArena's moves are bracketed ("[4]"); an answer without brackets is wrapped, as TextArena's own
    ActionFormattingWrapper does."""
    text = str(action).strip()
    return text if "[" in text and "]" in text else f"[{text}]"


class View:
    """What one player has been shown: the prompt, recent game messages, the latest board."""

    def __init__(self) -> None:
        self.prompt, self.board = "", ""
        self.messages: list[str] = []

    def add(self, messages: list[tuple[int, str, Any]]) -> None:
        for _, message, kind in messages:
            name = getattr(kind, "name", "")
            if name == "PROMPT":
                self.prompt = message
            elif name == "GAME_BOARD":
                self.board = message
            elif name != "PLAYER_ACTION":
                self.messages = (self.messages + [message])[-RECENT_MESSAGES:]

    def text(self) -> str:
        parts = [self.prompt.strip(), "\n".join(m.strip() for m in self.messages), self.board.strip()]
        return _text("\n\n".join(p for p in parts if p), MAX_OBSERVATION)


def with_moves(text: str, game: str, state: Any) -> tuple[str, list[str]]:
    """The text with an "Available moves: ..." line added where the game does not list its moves itself but they
    are known (its rules fix them, or its state tells), and those moves."""
    moves = legal_moves(game, text, state)
    if moves and not listed_moves(text):
        text = _text(f"{text}\n\nAvailable moves: {', '.join(moves)}", MAX_OBSERVATION + 2000)
    return text, moves


def make_game(game: str, **kwargs: Any) -> Any:
    """TextArena's raw game `game` (its registered kwargs, overridden by `kwargs`), refused with a one-line
    UsageError if it needs a download."""
    check_offline(game)
    from textarena.envs.registration import ENV_REGISTRY  # importing textarena registers its games

    from llamagym.errors import UsageError

    if game not in ENV_REGISTRY:
        raise UsageError(f"TextArena has no game {game!r}; its games: `python -c \"import textarena.envs."
                         f"registration as r; print(sorted(r.ENV_REGISTRY))\"`")
    spec = ENV_REGISTRY[game]
    entry = spec.entry_point
    if isinstance(entry, str):
        import importlib

        module, _, name = entry.partition(":")
        entry = getattr(importlib.import_module(module), name)
    env = entry(**{**spec.kwargs, **kwargs})
    env.env_id, env.entry_point = game, spec.entry_point
    return env


def seed_of(np_random: Any, seed: int | None) -> int:
    return int(seed) if seed is not None else int(np_random.integers(2**31))


class TextArenaEnv(gymnasium.Env):
    """A single-player TextArena game. Observation and action are text; the reward is TextArena's at the end of
    the game (0 on every other step). `max_steps` truncates a game that has not ended (TextArena's own turn
    limits end most games first)."""

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self, game: str = "GuessTheNumber-v0", max_steps: int = 100, **game_kwargs: Any):
        self.game, self.max_steps, self.game_kwargs = game, max_steps, game_kwargs
        self._env = make_game(game, **game_kwargs)
        self.observation_space = spaces.Text(max_length=MAX_OBSERVATION + 2000, charset=CHARSET)
        self.action_space = spaces.Text(max_length=MAX_ACTION, charset=CHARSET)
        self._view, self._steps = View(), 0
        self._text, self._moves = "", []

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict]:
        super().reset(seed=seed)
        self._env = make_game(self.game, **self.game_kwargs)
        self._env.reset(num_players=1, seed=seed_of(self.np_random, seed))
        self._view, self._steps = View(), 0
        return self._observe(), self._info()

    def _observe(self) -> str:
        _, messages = self._env.get_observation()
        self._view.add(messages)
        self._text, self._moves = with_moves(self._view.text(), self.game, getattr(self._env, "state", None))
        return self._text

    def _info(self) -> dict[str, Any]:
        return {"legal_moves": list(self._moves)}

    def step(self, action: Any) -> tuple[str, float, bool, bool, dict]:
        done, _ = self._env.step(bracketed(action))
        self._steps += 1
        observation = self._observe()
        info = self._info()
        reward = 0.0
        if done:
            rewards, game_info = self._env.close()
            reward = float((rewards or {}).get(0, 0.0))
            info["reason"] = str((game_info or {}).get(0, {}).get("reason", ""))
        truncated = not done and self._steps >= self.max_steps
        return observation, reward, bool(done), truncated, info
