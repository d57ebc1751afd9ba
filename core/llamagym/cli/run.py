"""`llamagym run`: train an agent with PPO."""

from __future__ import annotations

from pathlib import Path

import click

from . import cli
from .options import collect_flags, config_options


@cli.command("run")
@click.option("--agent", help="agent name (see `llamagym list`)")
@click.option("--env", "env", help="environment id (see `llamagym list`)")
@click.option("--config", "config_file", type=click.Path(dir_okay=False),
              help="TOML file of settings (top-level keys and [ppo], [generation], [lora], [multiagent] tables)")
@click.option("-o", "--output", type=click.Path(file_okay=False), help="run directory [default: runs/AGENT-ENV-TIME]")
@click.option("--resume", "resume_dir", type=click.Path(file_okay=False),
              help="continue the run in this directory from its latest checkpoint")
@click.option("--overwrite", is_flag=True, help="replace an existing output directory")
@click.option("--no-preset", is_flag=True, help="ignore the agent's recommended settings")
@click.option("-q", "--quiet", is_flag=True, help="no progress bar")
@config_options
def run_command(agent, env, config_file, output, resume_dir, overwrite, no_preset, quiet, **values):
    """Train AGENT on ENV with PPO; metrics, checkpoints and the adapter go to the output directory.

    Settings are layered: defaults < the agent's preset < --config file < flags.
    """
    from ..errors import UsageError
    from ..runner import config_from_run, resolve_config, train

    if resume_dir:
        config = config_from_run(Path(resume_dir))
        if config is None:
            raise UsageError(f"cannot resume: {resume_dir!r} is not a llamagym run directory")
        output = resume_dir
    else:
        flags = collect_flags({**values, "agent": agent, "env": env})
        config = resolve_config(flags, config_file, use_preset=not no_preset)
    summary = train(config, Path(output) if output else None, resume=bool(resume_dir), overwrite=overwrite,
                    show_progress=not quiet)
    state = "interrupted after" if summary["interrupted"] else "trained"
    click.echo(f"{state} {summary['episodes']} episodes, {summary['updates']} updates in "
               f"{summary['wall_time_s']:.0f}s; return over the last 100 episodes {summary['last_100_return']:+.3f}")
    click.echo(f"adapter saved to {summary['adapter']}")
