"""`llamagym run`: train an agent with PPO."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from llamagym.cli.group import CliError, cli
from llamagym.cli.options import collect_flags, config_options, env_kwarg_option, parse_env_kwargs
from llamagym.config import RunConfig
from llamagym.distributed.environment import is_main_process
from llamagym.distributed.launch import launch
from llamagym.errors import UsageError
from llamagym.policy.models import resolve_model_source
from llamagym.run.interrupts import ForcedStop
from llamagym.run.rundir import check_output, default_output
from llamagym.run.setup import resolve_config, resume_config


@cli.command("run")
@click.option("--agent", help="agent name (see `llamagym list`)")
@click.option("--env", "env", help="environment id (see `llamagym list`)")
@click.option("--config", "config_file", type=click.Path(dir_okay=False),
              help="TOML file of settings (top-level keys and [ppo], [generation], [lora], [multiagent] tables)")
@click.option("-o", "--output", type=click.Path(file_okay=False), help="run directory [default: runs/AGENT-ENV-TIME]")
@click.option("--resume", "resume_dir", type=click.Path(file_okay=False),
              help="continue the run in this directory from its latest checkpoint; flags given with it change "
                   "settings (e.g. --episodes, the run's total, --learning-rate), but not agent, env, model or LoRA")
@click.option("--overwrite", is_flag=True, help="replace an existing output directory")
@click.option("--no-preset", is_flag=True, help="ignore the agent's recommended settings")
@click.option("-q", "--quiet", is_flag=True, help="no progress bar")
@click.option("--num-processes", type=click.IntRange(min=1), default=1, show_default=True,
              help="data-parallel processes on this machine, one per GPU (or CPU gloo processes); each plays its "
                   "own episodes and --episodes is the total (see docs/guides/scaling.md)")
@env_kwarg_option
@config_options
def run_command(agent, env, config_file, output, resume_dir, overwrite, no_preset, quiet, num_processes, env_kwargs,
                **values):
    """Train AGENT on ENV with PPO; metrics, checkpoints and the adapter go to the output directory.

    Settings are layered: defaults < the agent's preset < --config file < flags.
    Ctrl-C (or SIGTERM) stops at the next episode boundary with a checkpoint, exiting with 130 (143);
    `--resume DIR` continues from there. A second Ctrl-C stops at once, keeping the previous checkpoint.
    --max-minutes M stops (exit 0) right after the first update that ends past M minutes of training.
    """
    from llamagym.run.training import train  # imports torch: not for --help

    flags = collect_flags({**values, "agent": agent, "env": env})
    if env_kwargs:
        flags["env_kwargs"] = parse_env_kwargs(env_kwargs)
    if resume_dir:
        if output and Path(output).resolve() != Path(resume_dir).resolve():
            raise UsageError(f"--resume {resume_dir} continues that directory; drop -o/--output {output}")
        config = resume_config(Path(resume_dir), flags, config_file)
        output = resume_dir
    else:
        config = resolve_config(flags, config_file, use_preset=not no_preset)
    output = Path(output) if output else default_output(config.agent, config.env)
    try:
        if num_processes > 1:
            summary = _launch(num_processes, config, output, bool(resume_dir), overwrite, quiet)
        else:
            summary = train(config, output, resume=bool(resume_dir), overwrite=overwrite, show_progress=not quiet)
    except ForcedStop as stop:
        raise CliError(f"stopped by a second {stop} without a final checkpoint; `llamagym run --resume "
                       f"{output}` continues from the last one", 128 + stop.signal) from None
    except KeyboardInterrupt:  # Ctrl-C while the model was loading: the run never started
        raise CliError("interrupted before training began; nothing was written", 130) from None
    if not is_main_process():
        return
    if summary.get("already_complete"):
        if summary["episodes"] < config.episodes:  # its time is spent
            click.echo(f"the run in {output} has already trained {summary['wall_time_s'] / 60:.1f} minutes, its "
                       f"max_minutes = {config.max_minutes:g}: nothing to train, nothing changed; pass --max-minutes "
                       f"larger than {summary['wall_time_s'] / 60:.1f} (or 0: no limit) to train it further")
        else:
            click.echo(f"the run in {output} already has its {summary['episodes']} episodes ({summary['updates']} "
                       f"updates): nothing to train, nothing changed; pass --episodes larger than "
                       f"{summary['episodes']} to train it further")
        return
    if summary["interrupted"]:
        click.echo(f"stopped by {summary['interrupted']} after {summary['episodes']} episodes, "
                   f"{summary['updates']} updates; checkpoint {summary['checkpoint']}")
        click.echo(f"continue with: llamagym run --resume {summary['output']}")
        click.get_current_context().exit(summary["exit_code"])
    if summary.get("time_limit_reached"):
        click.echo(f"stopped at the time limit, max_minutes = {config.max_minutes:g}, after {summary['episodes']} of "
                   f"{config.episodes} episodes; continue with: llamagym run --resume {summary['output']} "
                   f"--max-minutes M (M larger, or 0: no limit)")
    dropped = f" ({summary['dropped_episodes']} dropped for environment errors)" if summary["dropped_episodes"] else ""
    click.echo(f"trained {summary['episodes']} episodes{dropped}, {summary['updates']} updates in "
               f"{summary['wall_time_s']:.0f}s; return over the last 100 episodes {summary['last_100_return']:+.3f}")
    click.echo(f"adapter saved to {summary['adapter']}")
    from llamagym.run.scoring import describe

    score = summary.get("policy_score") or {}
    for line in describe(score.get("before"), score.get("after")):
        click.echo(line)


def _launch(num_processes: int, config: RunConfig, output: Path, resume: bool, overwrite: bool, quiet: bool
            ) -> dict[str, Any]:
    """Check what can be checked here (output directory, model), then start the processes."""
    check_output(output, resume, overwrite)
    resolve_model_source(config.model)
    verbose = click.get_current_context().find_root().params.get("verbose", False)
    return launch(num_processes, config, output, resume=resume, overwrite=overwrite, show_progress=not quiet,
                  verbose=verbose)
