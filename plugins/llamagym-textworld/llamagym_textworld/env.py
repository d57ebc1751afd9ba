"""`TextWorldEnv`: a TextWorld game as a Gymnasium env with text observations and text commands. The observation
is the game's text with its banner removed, followed by "Admissible commands: ..."; the reward is the change in
the game's score; the episode ends when the game is won or lost, and is truncated after `max_steps` commands."""

from __future__ import annotations

import re
import string
import warnings
from pathlib import Path
from typing import Any

import gymnasium
from gymnasium import spaces

from .games import GameId, game_file, user_game

CHARSET = frozenset(string.printable)
MAX_OBSERVATION = 6000
MAX_COMMAND = 200
# what reaches the Z-machine: letters, digits, spaces and - ' (long or symbol-laden input crashes Frotz)
_UNSENDABLE = re.compile(r"[^A-Za-z0-9 '\-]+")
SENT_CHARS = 60
COMMANDS_LINE = "Admissible commands:"
_BLANKS = re.compile(r"\n\s*\n+")


def clean(text: str) -> str:
    """The game's text without TextWorld's ASCII-art banner (lines made mostly of symbols) and the extra blank
    lines around it; every character outside printable ASCII shown as "?"."""
    kept = []
    for line in text.splitlines():
        visible = line.strip()
        letters = sum(c.isalnum() for c in visible)
        if visible and letters < 0.5 * len(visible.replace(" ", "")) and not visible.startswith("-="):
            continue  # banner art: $$$$ \_/ |__ ...
        kept.append(line.rstrip())
    cleaned = _BLANKS.sub("\n\n", "\n".join(kept)).strip()
    return "".join(c if c in CHARSET else "?" for c in cleaned)


def with_commands(text: str, commands: list[str]) -> str:
    shown = f"{text}\n\n{COMMANDS_LINE} {', '.join(commands)}" if commands else text
    return shown if len(shown) <= MAX_OBSERVATION else shown[-MAX_OBSERVATION:]


def sendable(action: Any) -> str:
    """The command as the game receives it: unsendable characters dropped, spaces collapsed, at most 60
    characters ("look" if nothing is left)."""
    return " ".join(_UNSENDABLE.sub(" ", str(action)).split())[:SENT_CHARS].strip() or "look"


def commands_in(observation: str) -> list[str]:
    """The admissible commands an observation lists (its last "Admissible commands:" line)."""
    for line in reversed(str(observation).splitlines()):
        if line.startswith(COMMANDS_LINE):
            return [c.strip() for c in line[len(COMMANDS_LINE):].split(",") if c.strip()]
    return []


class TextWorldEnv(gymnasium.Env):
    """A TextWorld game: a challenge at a level and seed (generated once into the cache), or a game file `path`
    (.z8/.ulx; None with no challenge: $LLAMAGYM_TEXTWORLD_GAME). The game is fixed by these; reset's seed only
    seeds Gymnasium's RNG. `admissible=False` leaves the admissible commands out of the observation."""

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self, challenge: str | None = None, level: int = 1, seed: int = 0, path: str | Path | None = None,
                 max_steps: int = 50, admissible: bool = True):
        self.game_path = game_file(GameId(challenge, int(level), int(seed))) if challenge else user_game(path)
        self.max_steps, self.admissible = max_steps, admissible
        self.observation_space = spaces.Text(max_length=MAX_OBSERVATION, charset=CHARSET)
        self.action_space = spaces.Text(max_length=MAX_COMMAND, charset=CHARSET)
        self._game: Any = None
        self._steps, self._score = 0, 0.0

    def _start(self) -> Any:
        if self._game is None:
            import textworld

            if Path(self.game_path).with_suffix(".json").is_file():  # a TextWorld game: its logic is known
                infos = textworld.EnvInfos(admissible_commands=True, won=True, lost=True, score=True,
                                           max_score=True, policy_commands=True)
            else:  # any other Z-machine or Glulx game: no admissible commands, so the agent writes free text
                infos = textworld.EnvInfos(score=True, max_score=True)
            with warnings.catch_warnings():  # Jericho's "not fully supported": TextWorld keeps the score itself
                warnings.filterwarnings("ignore", message=".*is not fully supported.*")
                self._game = textworld.start(str(self.game_path), request_infos=infos)
        return self._game

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict]:
        super().reset(seed=seed)
        state = self._start().reset()  # a GameState: the text under "feedback", the requested infos beside it
        self._steps, self._score = 0, float(state.get("score") or 0)
        return self._observation(state), self._info(state)

    def step(self, action: Any) -> tuple[str, float, bool, bool, dict]:
        command = sendable(action)
        state, score, done = self._start().step(command)
        self._steps += 1
        reward, self._score = float(score) - self._score, float(score)
        terminated = bool(done or state.get("won") or state.get("lost"))
        truncated = not terminated and self._steps >= self.max_steps
        return self._observation(state), reward, terminated, truncated, self._info(state)

    def _observation(self, state: Any) -> str:
        commands = sorted(state.get("admissible_commands") or []) if self.admissible else []
        return with_commands(clean(str(state.get("feedback") or "")), commands)

    def _info(self, infos: Any) -> dict[str, Any]:
        return {"admissible_commands": list(infos.get("admissible_commands") or []),
                "walkthrough": list(infos.get("policy_commands") or []), "score": float(infos.get("score") or 0),
                "max_score": float(infos.get("max_score") or 0), "is_success": bool(infos.get("won"))}

    def close(self) -> None:
        if self._game is not None:
            self._game.close()
            self._game = None
