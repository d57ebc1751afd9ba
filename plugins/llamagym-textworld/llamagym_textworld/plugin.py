"""Hook implementations: the `textworld` agent, a few TextWorld games, any `TextWorld-<challenge>-L<level>-s<seed>`
on demand, and `TextWorld-game` for a game file of the user's. Nothing heavy is imported at listing time."""

from __future__ import annotations

from pathlib import Path

from llamagym import hookimpl

from .games import CHALLENGES, FILE_ID, FILE_VARIABLE, GameId, parse_env_id

PRESET = Path(__file__).with_name("preset.toml")
ENV = "llamagym_textworld.env:TextWorldEnv"
GAMES = [GameId("coin_collector", 1, 0), GameId("treasure_hunter", 1, 0), GameId("simple", 1, 0)]


@hookimpl
def llamagym_register_agents(register):
    register("textworld", "llamagym_textworld.agent:TextWorldAgent",
             description="reads the room, answers `command: <cmd>` among the admissible commands", preset=str(PRESET))


@hookimpl
def llamagym_register_envs(register):
    for game in GAMES:
        register(game.env_id, ENV, kwargs={"challenge": game.challenge, "level": game.level, "seed": game.seed},
                 description=f"TextWorld {game.challenge}, level {game.level}, seed {game.seed}: "
                             f"{CHALLENGES[game.challenge][2]} (any -L<level>-s<seed> works)")


@hookimpl
def llamagym_resolve_env(env_id):
    """Ids made on demand: any challenge, level and seed, and `TextWorld-game`, the file in
    $LLAMAGYM_TEXTWORLD_GAME (not registered: without the variable there is no game to list or check)."""
    from llamagym.plugins.specs import EnvSpec

    if env_id == FILE_ID:
        return EnvSpec(env_id, ENV, "gymnasium", f"the TextWorld game file (.z8/.ulx) in ${FILE_VARIABLE}",
                       "textworld", {})
    game = parse_env_id(env_id)
    if game is None:
        return None

    return EnvSpec(env_id, ENV, "gymnasium", f"TextWorld {game.challenge}, level {game.level}, seed {game.seed}",
                   "textworld", {"challenge": game.challenge, "level": game.level, "seed": game.seed})
