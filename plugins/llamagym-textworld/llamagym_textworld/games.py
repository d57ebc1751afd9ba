"""Which game an env id names, and generating it once with `tw-make` into llamagym's cache."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from llamagym.errors import ConfigError, UsageError

PREFIX = "TextWorld-"
FILE_ID = "TextWorld-game"
FILE_VARIABLE = "LLAMAGYM_TEXTWORLD_GAME"
# challenge -> (tw-make name, highest level, what the levels are)
CHALLENGES = {
    "coin_collector": ("tw-coin_collector", 300, "find the coin; higher levels lay more rooms and distractors"),
    "treasure_hunter": ("tw-treasure_hunter", 30, "find and take the named object; higher levels hide it deeper"),
    "simple": ("tw-simple", 3, "a short quest in a house; level 1 rewards every step, 2 some, 3 only the end"),
}
SIMPLE_REWARDS = {1: "dense", 2: "balanced", 3: "sparse"}
_ID = re.compile(r"^TextWorld-(?P<challenge>[a-z_]+)-L(?P<level>\d+)-s(?P<seed>\d+)$")
GAME_SUFFIXES = (".z8", ".ulx", ".z5")


@dataclass(frozen=True)
class GameId:
    challenge: str
    level: int
    seed: int

    @property
    def env_id(self) -> str:
        return f"{PREFIX}{self.challenge}-L{self.level}-s{self.seed}"


def parse_env_id(env_id: str) -> GameId | None:
    """The challenge, level and seed an id names; None if it is no TextWorld id; a UsageError for a bad one."""
    match = _ID.match(env_id)
    if match is None:
        return None
    challenge, level, seed = match["challenge"], int(match["level"]), int(match["seed"])
    if challenge not in CHALLENGES:
        raise UsageError(f"unknown TextWorld challenge {challenge!r} in {env_id!r}; challenges: "
                         f"{', '.join(sorted(CHALLENGES))} (e.g. TextWorld-coin_collector-L5-s0)")
    top = CHALLENGES[challenge][1]
    if not 1 <= level <= top:
        raise UsageError(f"{env_id!r}: {challenge} has levels 1 to {top}")
    return GameId(challenge, level, seed)


def cache_root() -> Path:
    from llamagym.policy.models import cache_dir

    return cache_dir() / "textworld"


def tw_make() -> str:
    """The `tw-make` script installed beside this Python (the textworld wheel ships it)."""
    beside = Path(sys.executable).with_name("tw-make")
    found = str(beside) if beside.is_file() else shutil.which("tw-make")
    if not found:
        raise UsageError("tw-make is not installed; install TextWorld with `pip install llamagym-textworld` "
                         "(or `pip install textworld`)")
    return found


def game_file(game: GameId) -> Path:
    """The compiled game for `game`, generated with tw-make the first time (atomically) and cached after."""
    target = cache_root() / f"{game.challenge}-L{game.level}-s{game.seed}.z8"
    if target.is_file():
        return target
    name = CHALLENGES[game.challenge][0]
    settings = (["--rewards", SIMPLE_REWARDS[game.level], "--goal", "detailed"] if game.challenge == "simple"
                else ["--level", str(game.level)])
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".making-", dir=target.parent))
    try:
        output = staging / target.name
        command = [tw_make(), name, *settings, "--seed", str(game.seed), "--output", str(output), "--silent", "-f"]
        done = subprocess.run(command, capture_output=True, text=True, timeout=600)
        if done.returncode != 0 or not output.is_file():
            cause = (done.stderr.strip() or done.stdout.strip() or "no output").splitlines()[-1]
            raise UsageError(f"tw-make could not generate {game.env_id}: {cause}")
        for made in staging.iterdir():  # the .z8 and TextWorld's .json/.ni beside it
            os.replace(made, target.parent / made.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def user_game(path: str | Path | None) -> Path:
    """A game file the user has (.z8, .ulx): `path`, else $LLAMAGYM_TEXTWORLD_GAME."""
    chosen = path or os.environ.get(FILE_VARIABLE)
    if not chosen:
        raise ConfigError(f"{FILE_ID} plays a game file: pass --env-kwarg path=FILE or set {FILE_VARIABLE} to a "
                          f".z8 or .ulx file, or use an id like TextWorld-coin_collector-L5-s0 to generate one")
    file = Path(chosen).expanduser()
    if not file.is_file() or file.suffix not in GAME_SUFFIXES:
        raise ConfigError(f"TextWorld game {str(file)!r} is not a .z8/.ulx file that exists")
    return file
