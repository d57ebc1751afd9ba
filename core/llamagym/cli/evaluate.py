"""`llamagym eval`: measure an agent (trained or not) without training it."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import click

from llamagym.cli.group import cli
from llamagym.cli.options import env_kwarg_option, parse_env_kwargs
from llamagym.config import RunConfig, build
from llamagym.errors import UsageError
from llamagym.plugins.manager import get_plugin_manager
from llamagym.plugins.registry import get_registry
from llamagym.rollout.games.opponents import check_opponent
from llamagym.run import setup
from llamagym.run.rundir import find_adapter
from llamagym.run.setup import config_from_run, make_engine, resolve_config, run_env
from llamagym.tools.evaluation import evaluate


@cli.command("eval")
@click.option("--agent", help="agent name [default: the checkpoint's run]")
@click.option("--env", "env", help="environment id [default: the checkpoint's run]")
@click.option("--checkpoint", type=click.Path(exists=True, file_okay=False),
              help="run directory, adapter or checkpoint to evaluate [default: the untrained model]")
@click.option("--model", help="base model [default: the checkpoint's run, else the embedded default]")
@click.option("--episodes", type=click.IntRange(min=1), default=200, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True, help="evaluation episodes are seeded from this")
@click.option("--num-envs", type=click.IntRange(min=1), default=16, show_default=True)
@click.option("--opponent", help="games only: random, base (the untrained model), a scripted opponent a plugin "
                                "registers, or a run/adapter directory; the agent takes each seat in turn "
                                "[default: random]")
@click.option("--sample", is_flag=True, help="sample responses (default: greedy decoding)")
@click.option("--json", "as_json", is_flag=True, help="print the result as JSON")
@click.option("-q", "--quiet", is_flag=True, help="no progress bar")
@env_kwarg_option
def eval_command(agent, env, checkpoint, model, episodes, seed, num_envs, opponent, sample, as_json, quiet,
                 env_kwargs):
    """Mean return (± standard error) and win/draw/loss rates of an agent, with no training."""
    from tqdm.auto import tqdm

    given = parse_env_kwargs(env_kwargs)
    adapter = find_adapter(Path(checkpoint)) if checkpoint else None
    base = config_from_run(adapter) if adapter else None
    if base is None:  # no run to take settings from: the agent's preset, as training would use it
        if not agent or not env:
            raise UsageError("pass --agent and --env (or --checkpoint inside a run directory)")
        base = resolve_config({"agent": agent, "env": env})
    if env and env != base.env:  # another env: the run's kwargs were for its own
        base = replace(base, env_kwargs={})
    config = build(RunConfig, {"agent": agent or base.agent, "env": env or base.env,
                               "model": model or base.model, "seed": seed, "num_envs": num_envs,
                               "env_kwargs": given}, base=base)
    get_registry().agent(config.agent)
    env_spec = run_env(config)
    if env_spec.kind != "gymnasium":
        opponent = check_opponent(get_plugin_manager(), opponent or "random", config.env)
        config = build(RunConfig, {"multiagent": {"play": "opponent", "opponent": opponent,
                                                  "learner_seat": "alternate"}}, base=config)
    elif opponent:
        raise UsageError(f"--opponent applies to PettingZoo games; {config.env!r} is a single-agent environment")
    # looked up on the module at each call (tests wrap it)
    the_agent = setup.build_agent(config, adapter=str(adapter) if adapter else None)
    engine = make_engine(the_agent, env_spec, config)
    with tqdm(total=episodes, unit="ep", disable=quiet, desc="evaluating") as bar:
        result = evaluate(the_agent, engine, episodes, greedy=not sample, on_episode=lambda r: bar.update(1))
    engine.close()
    from llamagym.run.scoring import describe, score_policy  # the agent's plugins may score its policy exactly

    score = score_policy(the_agent, config.env)
    if as_json:
        payload = result.to_dict()
        if env_spec.kind != "gymnasium":
            payload["opponent"] = config.multiagent.opponent
        if score is not None:
            payload["policy_score"] = score
        click.echo(json.dumps(payload))
    else:
        against = f" against {config.multiagent.opponent}" if env_spec.kind != "gymnasium" else ""
        click.echo(f"{config.agent} on {config.env}{against} ({'untrained' if adapter is None else adapter}): "
                   f"{result.line()}")
        for line in describe(None, score):
            click.echo(line)
