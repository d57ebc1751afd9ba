"""The core's scripted opponent for games, registered through `llamagym_register_opponents` like a plugin's."""

from __future__ import annotations

from llamagym.plugins.hookspecs import OpponentRegister, hookimpl

RANDOM = "random"


@hookimpl
def llamagym_register_opponents(register: OpponentRegister) -> None:
    # a string, so that building the plugin manager (and `llamagym list`) imports no game code
    register(RANDOM, "llamagym.rollout.games.players:random_move", description="uniformly random legal moves")
