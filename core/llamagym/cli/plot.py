"""`llamagym plot`: a PNG of a run's training curves."""

from __future__ import annotations

import click

from llamagym.cli.group import cli
from llamagym.tools.plotting import plot_run


@cli.command("plot")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="PNG to write [default: RUN_DIR/training.png]")
def plot_command(run_dir: str, output: str | None) -> None:
    """Plot return, win rate, KL and invalid-action rate over training from RUN_DIR/metrics.jsonl."""
    click.echo(f"wrote {plot_run(run_dir, output)}")
