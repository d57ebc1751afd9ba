"""Hook implementations: the `textarena` agent, the curated TextArena envs, any other offline TextArena game on
demand (`TextArena-<game id>`), and the `random-move` opponent. No TextArena import at listing time."""

from __future__ import annotations

from pathlib import Path

from llamagym import hookimpl

from .games import GAMES, MAX_PLAYERS, PREFIX, check_offline

PRESET = Path(__file__).with_name("preset.toml")
SINGLE, DOUBLE = "llamagym_textarena.env:TextArenaEnv", "llamagym_textarena.aec:TextArenaGame"


@hookimpl
def llamagym_register_agents(register):
    register("textarena", "llamagym_textarena.agent:TextArenaAgent",
             description="reads a TextArena game's text and answers one [move], chosen among the listed ones",
             preset=str(PRESET))


@hookimpl
def llamagym_register_envs(register):
    for env_id, game in GAMES.items():
        kind = "gymnasium" if game.players == 1 else "aec"
        register(env_id, SINGLE if game.players == 1 else DOUBLE, kind=kind, kwargs={"game": game.game},
                 description=f"TextArena {game.game} ({game.players} player{'s' * (game.players > 1)}): "
                             f"{game.description}")


@hookimpl
def llamagym_register_opponents(register):
    register("random-move", "llamagym_textarena.opponents:random_move", envs=[f"{PREFIX}*"],
             description="a uniformly random one of the moves the game lists (any two-player TextArena game "
                         "that lists them)")


@hookimpl
def llamagym_resolve_env(env_id):
    """`TextArena-<any TextArena id>` beyond the curated set: made on demand if it runs offline with one or two
    players; one that needs a download (or more players) is refused in one line."""
    if not env_id.startswith(PREFIX):
        return None
    from llamagym.errors import UsageError
    from llamagym.plugins.specs import EnvSpec

    game = env_id[len(PREFIX):]
    check_offline(game)
    from textarena.envs.registration import ENV_REGISTRY

    if game not in ENV_REGISTRY:
        return None  # not a TextArena game: the usual unknown-env error, with the close matches
    players = _players(game)
    if players is None:
        raise UsageError(f"TextArena's {game} needs more than {MAX_PLAYERS} players (or cannot start offline); "
                         f"llamagym-textarena offers games of one or two players: {', '.join(sorted(GAMES))}")
    return EnvSpec(env_id, SINGLE if players == 1 else DOUBLE, "gymnasium" if players == 1 else "aec",
                   f"TextArena {game}", "textarena", {"game": game})


def _players(game: str) -> int | None:
    """How many players `game` takes (1 or 2), found by starting it; None if neither works."""
    import contextlib
    import io

    from .env import make_game

    for players in (1, 2):
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                make_game(game).reset(num_players=players, seed=0)
            return players
        except Exception:
            continue
    return None
