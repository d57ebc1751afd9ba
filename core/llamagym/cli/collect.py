"""`llamagym collect`: roll out episodes and save them as conversations with their returns (JSON lines)."""

from __future__ import annotations

from pathlib import Path

import click

from llamagym.cli.group import cli
from llamagym.cli.options import env_kwarg_option, parse_env_kwargs
from llamagym.cli.settings import game_settings, run_settings
from llamagym.errors import UsageError
from llamagym.run.rundir import check_writable, find_adapter
from llamagym.run.setup import build_agent, make_engine, run_env
from llamagym.tools.collect import POLICIES, collect, collecting, save_records


@cli.command("collect")
@click.option("--agent", help="agent name [default: the checkpoint's run]")
@click.option("--env", "env", help="environment id [default: the checkpoint's run]")
@click.option("--policy", type=click.Choice(POLICIES), default="model", show_default=True,
              help="who answers: the model (sampling), or the scripted expert a plugin provides "
                   "(llamagym_expert_action), written as the model's responses")
@click.option("--checkpoint", type=click.Path(exists=True, file_okay=False),
              help="--policy model: a run directory, adapter or checkpoint to sample from [default: the untrained "
                   "model]")
@click.option("--model", help="base model [default: the checkpoint's run, else the agent's preset]")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="TOML file of settings (as for run)")
@click.option("--no-preset", is_flag=True, help="ignore the agent's recommended settings")
@click.option("--episodes", type=click.IntRange(min=1), default=500, show_default=True,
              help="episodes to keep at most: one per seed (with --best-of N, N are played from each seed)")
@click.option("--best-of", type=click.IntRange(min=1), default=1, show_default=True,
              help="play N episodes from each reset seed and keep the one with the highest return (Gymnasium envs)")
@click.option("--min-return", type=float, help="keep only episodes whose return is at least this (rejection "
                                               "sampling)")
@click.option("--seed", type=int, default=0, show_default=True, help="episodes are seeded from this")
@click.option("--num-envs", type=click.IntRange(min=1), default=16, show_default=True)
@click.option("--opponent", help="games only: who plays the other seats (random, base, a scripted opponent, a run "
                                "directory); the agent takes each seat in turn [default: random]")
@click.option("-o", "--output", type=click.Path(dir_okay=False), required=True, help="JSON-lines file to write")
@click.option("--overwrite", is_flag=True, help="replace an existing output file")
@click.option("-q", "--quiet", is_flag=True, help="no progress bar")
@env_kwarg_option
def collect_command(agent: str | None, env: str | None, policy: str, checkpoint: str | None, model: str | None,
                    config_file: str | None, no_preset: bool, episodes: int, best_of: int, min_return: float | None,
                    seed: int, num_envs: int, opponent: str | None, output: str, overwrite: bool,
                    quiet: bool, env_kwargs: tuple[str, ...]) -> None:
    """Play episodes and write each as a conversation (messages) with its return, for `llamagym sft`.

    With --policy model the agent samples its answers (keep the best with --best-of and --min-return); with
    --policy expert a plugin's expert policy answers, recorded as if the model had said it.
    """
    from tqdm.auto import tqdm

    given = parse_env_kwargs(env_kwargs)
    output_path = Path(output)
    if output_path.exists() and not overwrite:
        raise UsageError(f"{str(output_path)!r} exists; pass --overwrite to replace it")
    check_writable(output_path)  # before the model loads and the episodes are played
    if checkpoint and policy == "expert":
        raise UsageError("--checkpoint samples from a trained model; it does not apply to --policy expert")
    if best_of > 1 and policy == "expert":
        raise UsageError("--best-of compares sampled episodes; the expert plays each seed the same way every time")
    adapter = find_adapter(Path(checkpoint)) if checkpoint else None
    config = run_settings(agent, env, model, seed, num_envs, adapter, config_file, not no_preset, given)
    env_spec = run_env(config)
    if env_spec.kind != "gymnasium":
        if best_of > 1:
            raise UsageError("--best-of needs a Gymnasium env (a game's start does not fix the opponent's moves); "
                             "keep the games you want with --min-return")
        config = game_settings(config, opponent)
    elif opponent:
        raise UsageError(f"--opponent applies to PettingZoo games; {config.env!r} is a single-agent environment")
    the_agent = collecting(build_agent(config, adapter=str(adapter) if adapter else None), policy == "expert")
    engine = make_engine(the_agent, env_spec, config, group_size=best_of)
    tags = {"agent": config.agent, "env": config.env, "policy": policy}
    try:
        with tqdm(total=episodes * best_of, unit="ep", disable=quiet, desc=f"collecting ({policy})") as bar:
            result = collect(the_agent, engine, episodes, best_of=best_of, min_return=min_return, tags=tags,
                             on_episode=lambda r: bar.update(1))
    finally:
        engine.close()
    save_records(output_path, result.records)
    click.echo(f"kept {len(result.records)} of {result.played} episodes (mean return {result.mean_return:+.4f}; "
               f"all played {result.played_mean_return:+.4f}); wrote {output_path}")
