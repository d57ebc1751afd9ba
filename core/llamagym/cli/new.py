"""`llamagym new`: scaffold a plugin package."""

from __future__ import annotations

import click

from llamagym.cli.group import cli
from llamagym.tools.scaffold import plugin_names, scaffold_plugin


@cli.command("new")
@click.argument("name")
@click.option("-d", "--directory", type=click.Path(file_okay=False), default=".", show_default=True,
              help="folder in which to create llamagym-NAME/")
def new_command(name: str, directory: str) -> None:
    """Scaffold llamagym-NAME: a pip-installable plugin with an agent, an env, hooks, a preset and tests."""
    path = scaffold_plugin(name, directory)
    names = plugin_names(name)
    click.echo(f"created {path}\nnext:\n  cd {path}\n  pip install -e '.[test]'\n  llamagym plugins\n  pytest\n"
               f"  llamagym run --agent {names['name']} --env {names['env_id']} -o runs/{names['name']}")
