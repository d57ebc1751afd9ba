"""Hook implementations: two text-game environments and their agents. No heavy imports, so listing stays fast."""

from __future__ import annotations

from pathlib import Path

from llamagym import hookimpl

HERE = Path(__file__).parent


@hookimpl
def llamagym_register_agents(register):
    register("frozenlake", "llamagym_textgames.agents:FrozenLakeAgent",
             description="crosses the frozen lake from a text map, answering left, down, right or up",
             preset=str(HERE / "frozenlake.toml"))
    register("taxi", "llamagym_textgames.agents:TaxiAgent",
             description="drives the taxi from a text description, answering a move, pickup or dropoff",
             preset=str(HERE / "taxi.toml"))


@hookimpl
def llamagym_register_envs(register):
    register("FrozenLakeText-v0", "llamagym_textgames.envs:make_frozenlake",
             description="Gymnasium's 4x4 FrozenLake (not slippery) as a text map; 20 moves at most",
             kwargs={"is_slippery": False, "max_episode_steps": 20})
    register("TaxiText-v0", "llamagym_textgames.envs:make_taxi",
             description="Gymnasium's Taxi described in words; 50 actions at most",
             kwargs={"max_episode_steps": 50})
