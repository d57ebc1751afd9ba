"""`llamagym list` and `llamagym plugins`: what is installed, and what went wrong loading it (a plugin that fails
to import, a registration that raises, a name two plugins register) without failing themselves. Neither imports
torch."""

from __future__ import annotations

import json
from typing import Any

import click

from llamagym.cli.group import cli
from llamagym.plugins.calling import BUILTIN_PREFIX
from llamagym.plugins.manager import (BLOCK_ENV, BLOCKED, FAILED, LOAD_ENV, NOT_SELECTED, PluginRecord,
                                      get_plugin_manager, plugin_records)
from llamagym.plugins.registry import Clash, Registry, get_registry
from llamagym.rollout.games.opponents import BUILT_IN, OpponentSpec, scripted_opponents


def _distribution_of(plugin: str, records: dict) -> str:
    record = records.get(plugin)
    if record is not None and record.distribution:
        return record.distribution
    return "llamagym" if plugin.startswith(BUILTIN_PREFIX) else plugin  # the core's built-in plugins


@cli.command("list")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def list_command(as_json: bool) -> None:
    """Installed agents and environments, with the package each comes from; plugins that failed to load and names
    two plugins register (unusable until one is uninstalled or blocked) are reported on stderr."""
    registry = get_registry()
    records = {r.name: r for r in plugin_records(get_plugin_manager())}
    agents = [{"name": s.name, "package": _distribution_of(s.plugin, records), "description": s.description}
              for s in registry.agents.values()]
    envs = [{"id": s.id, "kind": s.kind, "package": _distribution_of(s.plugin, records),
             "description": s.description} for s in registry.envs.values()]
    opponents, opponents_error = _opponents(records)
    failures = _failures(registry, records)
    if opponents_error:
        failures[OPPONENTS_HOOK] = opponents_error
    errors = dict(failures)
    for clash in registry.clashes:
        for plugin in clash.plugins:
            errors[plugin] = f"{errors[plugin]}; {clash.message()}" if plugin in errors else clash.message()
    if as_json:
        click.echo(json.dumps({"agents": agents, "envs": envs, "opponents": opponents, "errors": errors,
                               "clashes": [clash.as_dict() for clash in registry.clashes]}))
        return
    clashed = {(clash.kind, clash.name): _clash_note(clash) for clash in registry.clashes}
    click.echo("Agents:")
    for name, package, description in sorted([(a["name"], a["package"], a["description"]) for a in agents] + [
            (name, "(clash)", note) for (kind, name), note in clashed.items() if kind == "agent"]):
        click.echo(f"  {name:<20} {package:<24} {description}")
    if not agents and not clashed:
        click.echo("  (none: pip install llamagym-blackjack, or scaffold one with `llamagym new`)")
    click.echo("Environments:")
    for env_id, package, kind, description in sorted(
            [(e["id"], e["package"], e["kind"], e["description"]) for e in envs] +
            [(name, "(clash)", "-", note) for (kind, name), note in clashed.items() if kind == "env"]):
        click.echo(f"  {env_id:<20} {package:<24} {kind:<10} {description}")
    click.echo("  (any Gymnasium id also works with --env)")
    click.echo("Opponents (for games: --opponent NAME):")
    for o in opponents:
        where = ", ".join(o["envs"]) if o["envs"] else "any game"
        click.echo(f"  {o['name']:<20} {o['package']:<24} {where:<30} {o['description']}")
    for plugin, error in failures.items():
        click.echo(f"  ! {plugin}: {error}", err=True)
    for clash in registry.clashes:
        click.echo(f"  ! {clash.message()}", err=True)


OPPONENTS_HOOK = "llamagym_register_opponents"


def _failures(registry: Registry, records: dict[str, PluginRecord]) -> dict[str, str]:
    """Plugin name -> why it brings nothing (or not everything): its entry point failed to import, or its
    registration hook raised."""
    failures = {name: f"could not load: {record.error}" for name, record in sorted(records.items()) if record.error}
    for plugin, error in registry.errors.items():
        failures[plugin] = f"{failures[plugin]}; {error}" if plugin in failures else error
    return failures


def _clash_note(clash: Clash) -> str:
    return f"! registered by {' and '.join(repr(p) for p in clash.plugins)}: unusable until one is uninstalled " \
           f"or blocked"


def _opponents(records: dict) -> tuple[list[dict], str | None]:
    """Built-in and plugin-registered opponents for games (a run directory also works as --opponent): the core's
    scripted ones (`random`), its other built-ins (`base`), then the plugins' by name; and the error that stopped
    the plugins' registrations, if any (an opponent name two plugins register for one game), so that the rest of
    the listing still shows."""
    def row(s: OpponentSpec) -> dict[str, Any]:
        return {"name": s.name, "package": _distribution_of(s.plugin, records),
                "envs": list(s.envs) if s.envs else None, "description": s.description}

    built_in = [{"name": name, "package": "llamagym", "envs": None, "description": description}
                for name, description in BUILT_IN.items()]
    clashes: list[str] = []
    scripted = scripted_opponents(get_plugin_manager(), clashes)  # a clashing name is left out, and said
    error = "; ".join(clashes) or None
    core = [row(s) for s in scripted if s.plugin.startswith(BUILTIN_PREFIX)]
    return core + built_in + [row(s) for s in sorted(scripted, key=lambda s: s.name)
                              if not s.plugin.startswith(BUILTIN_PREFIX)], error


@cli.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@click.option("--all", "show_all", is_flag=True, help="include the core's built-in hook implementations")
def plugins_command(as_json: bool, show_all: bool) -> None:
    """Installed plugins: distribution, version, status (loaded, failed, blocked, not selected), hooks implemented,
    agents and envs registered, names another plugin registers too, load errors."""
    pm = get_plugin_manager()
    registry = get_registry()
    rows: list[dict[str, Any]] = []
    for record in plugin_records(pm):
        if record.name.startswith("llamagym.") and not show_all:
            continue
        error = record.error or registry.errors.get(record.name)
        clashes = registry.clashes_of(record.name)
        rows.append({"name": record.name, "module": record.module, "distribution": record.distribution,
                     "version": record.version, "status": FAILED if error else record.status, "hooks": record.hooks,
                     "agents": sorted([a.name for a in registry.agents.values() if a.plugin == record.name] +
                                      [c.name for c in clashes if c.kind == "agent"]),
                     "envs": sorted([e.id for e in registry.envs.values() if e.plugin == record.name] +
                                    [c.name for c in clashes if c.kind == "env"]),
                     "clashes": [c.as_dict() for c in clashes], "error": error})
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no plugins installed")
    for row in rows:
        origin = f"{row['distribution']} {row['version']}" if row["distribution"] else row["module"]
        click.echo(f"{row['name']} ({origin})")
        if row["status"] == BLOCKED:
            click.echo(f"  blocked by {BLOCK_ENV}")
            continue
        if row["status"] == NOT_SELECTED:
            click.echo(f"  not loaded: not in {LOAD_ENV}")
            continue
        if row["error"]:
            click.echo(f"  could not load: {row['error']}")
            continue
        clashed = {(c["kind"], c["name"]) for c in row["clashes"]}
        click.echo(f"  hooks:  {', '.join(row['hooks']) or '-'}")
        if row["agents"]:
            click.echo(f"  agents: {', '.join(_mark(name, ('agent', name) in clashed) for name in row['agents'])}")
        if row["envs"]:
            click.echo(f"  envs:   {', '.join(_mark(name, ('env', name) in clashed) for name in row['envs'])}")
        for clash in registry.clashes_of(row["name"]):
            others = " and ".join(repr(p) for p in clash.plugins if p != row["name"])
            click.echo(f"  clash:  {clash.kind} {clash.name!r} is also registered by {others}, so it cannot be "
                       f"used; {clash.resolution()}")


def _mark(name: str, clashed: bool) -> str:
    return f"{name} (clash)" if clashed else name
