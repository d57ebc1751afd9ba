"""Build the plugin manager: the core's default plugins (`llamagym.plugins.builtin`, registered like any other),
then every plugin installed under the `llamagym` entry-point group. A plugin that fails to import is recorded with
its error instead of breaking the others.

Environment variables: ``LLAMAGYM_LOAD_PLUGINS=a,b`` loads only those entry points (empty: none),
``LLAMAGYM_BLOCK_PLUGINS=a,b`` skips those; skipped plugins are recorded too (status `not_selected`, `blocked`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import pluggy

from llamagym.plugins import hookspecs

try:
    from importlib_metadata import entry_points
except ImportError:  # the backport is a declared dependency, but the stdlib one serves as well
    # ignore: the stdlib's is typed with overloads, the backport's with one signature
    from importlib.metadata import entry_points  # type: ignore[assignment]

ENTRY_POINT_GROUP = "llamagym"
LOAD_ENV = "LLAMAGYM_LOAD_PLUGINS"
BLOCK_ENV = "LLAMAGYM_BLOCK_PLUGINS"


LOADED, FAILED, BLOCKED, NOT_SELECTED = "loaded", "failed", "blocked", "not_selected"


@dataclass
class PluginRecord:
    """What the listing shows about one plugin: where it came from and whether it loaded. `status` is `loaded`,
    `failed` (with `error`), `blocked` (named in LLAMAGYM_BLOCK_PLUGINS) or `not_selected` (LLAMAGYM_LOAD_PLUGINS
    is set and does not name it); blocked and unselected plugins are not imported."""

    name: str
    module: str | None = None
    distribution: str | None = None
    version: str | None = None
    error: str | None = None
    hooks: list[str] = field(default_factory=list)
    status: str = LOADED


@dataclass
class LoadReport:
    """Plugins found under the entry-point group, loaded or not."""

    records: dict[str, PluginRecord] = field(default_factory=dict)


_manager: pluggy.PluginManager | None = None


def get_plugin_manager() -> pluggy.PluginManager:
    """The process-wide plugin manager, built on first use."""
    global _manager
    if _manager is None:
        _manager = build_plugin_manager()
    return _manager


def reset_plugin_manager() -> None:
    """Forget the process-wide manager (tests, or after installing a plugin in the same process)."""
    global _manager
    _manager = None


def build_plugin_manager(load_entry_points: bool = True) -> pluggy.PluginManager:
    """A fresh manager with the hook specs, the core's default hooks and (unless told not to) installed plugins."""
    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    for name, plugin in builtin_plugins().items():
        pm.register(plugin, name=name)
    pm.llamagym_load_report = LoadReport()  # type: ignore[attr-defined]
    if load_entry_points:
        _load_entry_points(pm, pm.llamagym_load_report)  # type: ignore[attr-defined]
    pm.check_pending()
    return pm


def builtin_plugins() -> dict:
    """The core's default plugins, by plugin name (always registered, before the installed ones, so that any
    installed plugin's hook runs first): the Agent's own methods, the `random` opponent, Gymnasium's env ids."""
    # here, not at the top: gymnasium_envs imports the registry, which imports this module
    from llamagym.plugins.builtin import agent_methods, gymnasium_envs, opponents

    return {"llamagym.agent_methods": agent_methods, "llamagym.opponents": opponents,
            "llamagym.gymnasium_envs": gymnasium_envs}


def load_report(pm: pluggy.PluginManager) -> LoadReport:
    """The record of what `build_plugin_manager` found (empty for a manager built elsewhere)."""
    return getattr(pm, "llamagym_load_report", LoadReport())


def _selection(name: str) -> str:
    """`loaded` if the environment variables let the entry point `name` load, else `blocked` or `not_selected`."""
    load, block = os.environ.get(LOAD_ENV), os.environ.get(BLOCK_ENV, "")
    if name in {n.strip() for n in block.split(",") if n.strip()}:
        return BLOCKED
    if load is None or name in {n.strip() for n in load.split(",") if n.strip()}:
        return LOADED
    return NOT_SELECTED


def _entry_points():
    return entry_points(group=ENTRY_POINT_GROUP)


def _load_entry_points(pm: pluggy.PluginManager, report: LoadReport) -> None:
    seen: set[tuple[str, str]] = set()
    for ep in _entry_points():
        dist = getattr(ep, "dist", None)
        dist_name = dist.metadata["Name"] if dist is not None else None
        key = (dist_name or "", ep.name)
        if key in seen:  # one distribution found twice on sys.path counts once
            continue
        seen.add(key)
        record = PluginRecord(ep.name, ep.value, dist_name, dist.version if dist is not None else None,
                              status=_selection(ep.name))
        if record.status != LOADED:  # blocked or not selected: listed as such, never imported
            report.records.setdefault(ep.name, record)
            continue
        report.records[ep.name] = record
        if pm.has_plugin(ep.name):
            record.error, record.status = f"the plugin name {ep.name!r} is taken by another distribution", FAILED
            continue
        try:
            pm.register(ep.load(), name=ep.name)
        except Exception as exc:  # a broken plugin is shown in the listing, never a crash
            record.error, record.status = f"{type(exc).__name__}: {exc}", FAILED


def plugin_records(pm: pluggy.PluginManager) -> list[PluginRecord]:
    """Every plugin: loaded ones with the hooks they implement, failed ones with their error, blocked and unselected
    ones with their status."""
    records = dict(load_report(pm).records)
    for name, plugin in pm.list_name_plugin():
        record = records.setdefault(name, PluginRecord(name, getattr(plugin, "__name__", None)))
        record.hooks = sorted(caller.name for caller in pm.get_hookcallers(plugin) or [])
    return sorted(records.values(), key=lambda r: r.name)
