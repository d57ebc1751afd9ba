"""Build the game engine a run asks for (`[multiagent]` settings): self-play with a snapshot pool, one adapter
per seat, or the learner against a named opponent."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, cast

from llamagym.config import RunConfig
from llamagym.plugins.specs import EnvSpec
from llamagym.rollout.games import opponents
from llamagym.rollout.games.adapters import BASE, active_adapter, adapter_active, add_adapter, clone_agent, peft_model_of
from llamagym.rollout.games.engine import GameEngine
from llamagym.rollout.games.lineups import PerSeat, SelfPlay, VersusOpponent
from llamagym.rollout.games.players import Player, PolicyPlayer, ScriptedPlayer
from llamagym.rollout.games.pool import SnapshotPool

if TYPE_CHECKING:
    from llamagym.agent.agent import Agent

OPPONENT_ADAPTER = "opponent"


def build_game_engine(agent: Agent, env_spec: EnvSpec, config: RunConfig) -> GameEngine:
    """A GameEngine for `env_spec` in which `agent` is the main (first-seat, evaluated) policy."""
    settings = config.multiagent
    main = PolicyPlayer(agent, "policy", adapter=active_adapter(agent))
    if settings.play == "selfplay":
        pool = None
        if settings.pool_size and settings.pool_rate > 0:
            peft_model_of(agent, "the self-play snapshot pool (multiagent.pool_size > 0)")
            # a peft model's active adapter: a name
            pool = SnapshotPool(agent, cast(str, main.adapter), settings.pool_size, settings.snapshot_every)
        lineup: SelfPlay | PerSeat | VersusOpponent = SelfPlay(main, pool, settings.pool_rate)
    elif settings.play == "separate":
        probe = env_spec.make()
        seats = list(probe.possible_agents)
        probe.close()
        lineup = PerSeat(separate_policies(agent, main, seats), main)
    else:
        opponent = make_opponent(agent, settings.opponent, env_spec.id, config.seed)
        lineup = VersusOpponent(main, opponent, settings.learner_seat)
    return GameEngine(env_spec.make, lineup, kind=env_spec.kind, num_tables=config.num_envs, seed=config.seed,
                      max_env_errors=config.max_env_errors)


def separate_policies(agent: Agent, main: PolicyPlayer, seats: list[str]) -> dict[str, PolicyPlayer]:
    """The main policy in the first seat and a fresh LoRA adapter (named after its seat) in every other one."""
    peft_model_of(agent, "separate policies per seat (multiagent.play = separate)")
    players = {seats[0]: main}
    for offset, seat in enumerate(seats[1:], start=1):
        add_adapter(agent, seat)
        with adapter_active(agent, seat):
            players[seat] = PolicyPlayer(clone_agent(agent, seed_offset=offset), seat, adapter=seat)
    return players


def make_opponent(agent: Agent, name: str, env_id: str, seed: int = 0) -> Player:
    """The fixed opponent called `name` (see `llamagym.rollout.games.opponents`): `base`, a checkpoint directory, or
    a scripted one (`random` included) found in the plugins."""
    if name == opponents.BASE_MODEL:
        peft_model_of(agent, "the base-model opponent")
        return PolicyPlayer(clone_agent(agent, seed_offset=1), opponents.BASE_MODEL, adapter=BASE, learns=False)
    if opponents.is_checkpoint(name):
        from llamagym.run.rundir import find_adapter  # run/ sits above rollout/: not imported at the top

        add_adapter(agent, OPPONENT_ADAPTER, weights=str(find_adapter(Path(name).expanduser())))
        return PolicyPlayer(clone_agent(agent, seed_offset=1), f"checkpoint {name}", adapter=OPPONENT_ADAPTER,
                            learns=False)
    spec = opponents.find_scripted(agent.plugin_manager, name, env_id)
    return ScriptedPlayer(spec.load(), name, seed)
