"""`llamagym list` and `llamagym plugins`: what is installed. Neither imports torch."""

from __future__ import annotations

import json
from typing import Any

import click

from llamagym.cli.group import cli
from llamagym.plugins.calling import BUILTIN_PREFIX
from llamagym.plugins.manager import get_plugin_manager, plugin_records
from llamagym.plugins.registry import get_registry
from llamagym.rollout.games.opponents import BUILT_IN, OpponentSpec, scripted_opponents


def _distribution_of(plugin: str, records: dict) -> str:
    record = records.get(plugin)
    if record is not None and record.distribution:
        return record.distribution
    return "llamagym" if plugin.startswith(BUILTIN_PREFIX) else plugin  # the core's built-in plugins


@cli.command("list")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def list_command(as_json: bool) -> None:
    """Installed agents and environments, with the package each comes from."""
    registry = get_registry()
    records = {r.name: r for r in plugin_records(get_plugin_manager())}
    agents = [{"name": s.name, "package": _distribution_of(s.plugin, records), "description": s.description}
              for s in registry.agents.values()]
    envs = [{"id": s.id, "kind": s.kind, "package": _distribution_of(s.plugin, records),
             "description": s.description} for s in registry.envs.values()]
    opponents = _opponents(records)
    if as_json:
        click.echo(json.dumps({"agents": agents, "envs": envs, "opponents": opponents, "errors": registry.errors}))
        return
    click.echo("Agents:")
    for a in sorted(agents, key=lambda a: a["name"]):
        click.echo(f"  {a['name']:<20} {a['package']:<24} {a['description']}")
    if not agents:
        click.echo("  (none: pip install llamagym-blackjack, or scaffold one with `llamagym new`)")
    click.echo("Environments:")
    for e in sorted(envs, key=lambda e: e["id"]):
        click.echo(f"  {e['id']:<20} {e['package']:<24} {e['kind']:<10} {e['description']}")
    click.echo("  (any Gymnasium id also works with --env)")
    click.echo("Opponents (for games: --opponent NAME):")
    for o in opponents:
        where = ", ".join(o["envs"]) if o["envs"] else "any game"
        click.echo(f"  {o['name']:<20} {o['package']:<24} {where:<30} {o['description']}")
    for plugin, error in registry.errors.items():
        click.echo(f"  ! {plugin}: {error}", err=True)


def _opponents(records: dict) -> list[dict]:
    """Built-in and plugin-registered opponents for games (a run directory also works as --opponent): the core's
    scripted ones (`random`), its other built-ins (`base`), then the plugins' by name."""
    def row(s: OpponentSpec) -> dict[str, Any]:
        return {"name": s.name, "package": _distribution_of(s.plugin, records),
                "envs": list(s.envs) if s.envs else None, "description": s.description}

    scripted = scripted_opponents(get_plugin_manager())
    core = [row(s) for s in scripted if s.plugin.startswith(BUILTIN_PREFIX)]
    built_in = [{"name": name, "package": "llamagym", "envs": None, "description": description}
                for name, description in BUILT_IN.items()]
    return core + built_in + [row(s) for s in sorted(scripted, key=lambda s: s.name)
                              if not s.plugin.startswith(BUILTIN_PREFIX)]


@cli.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@click.option("--all", "show_all", is_flag=True, help="include the core's built-in hook implementations")
def plugins_command(as_json: bool, show_all: bool) -> None:
    """Installed plugins: distribution, version, hooks implemented, agents and envs registered, load errors."""
    pm = get_plugin_manager()
    registry = get_registry()
    rows: list[dict[str, Any]] = []
    for record in plugin_records(pm):
        if record.name.startswith("llamagym.") and not show_all:
            continue
        error = record.error or registry.errors.get(record.name)
        rows.append({"name": record.name, "module": record.module, "distribution": record.distribution,
                     "version": record.version, "hooks": record.hooks,
                     "agents": sorted(a.name for a in registry.agents.values() if a.plugin == record.name),
                     "envs": sorted(e.id for e in registry.envs.values() if e.plugin == record.name),
                     "error": error})
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no plugins installed")
    for row in rows:
        origin = f"{row['distribution']} {row['version']}" if row["distribution"] else row["module"]
        click.echo(f"{row['name']} ({origin})")
        if row["error"]:
            click.echo(f"  could not load: {row['error']}")
            continue
        click.echo(f"  hooks:  {', '.join(row['hooks']) or '-'}")
        if row["agents"]:
            click.echo(f"  agents: {', '.join(row['agents'])}")
        if row["envs"]:
            click.echo(f"  envs:   {', '.join(row['envs'])}")
