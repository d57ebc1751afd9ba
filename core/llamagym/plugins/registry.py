"""Named agents and environments contributed by plugins through the registration hooks."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pluggy

from llamagym.errors import NameClashError, UnknownNameError
from llamagym.plugins.calling import BUILTIN_PREFIX, call_pm_hook, call_registration_hook
from llamagym.plugins.manager import get_plugin_manager, load_report
from llamagym.plugins.specs import ENV_KINDS, AgentSpec, EnvSpec

if TYPE_CHECKING:
    from llamagym.agent.agent import Agent

@dataclass(frozen=True)
class Clash:
    """An agent name or env id registered by more than one plugin (in registration order): no one can use it."""

    kind: str  # "agent" or "env"
    name: str
    plugins: tuple[str, ...]

    @property
    def label(self) -> str:
        return "agent name" if self.kind == "agent" else "env id"

    def message(self) -> str:
        """One line: the name, every plugin that registers it, and how to make it usable again."""
        quoted = [repr(p) for p in self.plugins]
        who = f"both {quoted[0]} and {quoted[1]}" if len(quoted) == 2 else f"{', '.join(quoted[:-1])} and {quoted[-1]}"
        return f"{self.label} {self.name!r} is registered by {who}, so " \
               f"{'neither' if len(quoted) == 2 else 'none'} can be used; {self.resolution()}"

    def resolution(self) -> str:
        """What makes the name usable: uninstall all but one plugin, or block the others (never a built-in one,
        which cannot be blocked; else every plugin but the first)."""
        resolve = "uninstall one of them" if len(self.plugins) == 2 else "uninstall all but one"
        blockable = [p for p in self.plugins if not p.startswith(BUILTIN_PREFIX)]
        if len(blockable) == len(self.plugins):
            blockable = blockable[1:]
        if blockable:
            resolve += f" or block {'it' if len(blockable) == 1 else 'them'} with " \
                       f"LLAMAGYM_BLOCK_PLUGINS={','.join(blockable)}"
        return resolve

    def error(self) -> NameClashError:
        return NameClashError(self.message(), self.kind, self.name, self.plugins)

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "plugins": list(self.plugins)}


class Registry:
    """Agents and envs from every loaded plugin. A name two plugins register is set aside as a `Clash`: asking for
    it raises a `NameClashError` naming both, while every other name works; a plugin whose registration fails is
    listed in `errors`."""

    def __init__(self, pm: pluggy.PluginManager):
        self.pm = pm
        self.agents: dict[str, AgentSpec] = {}
        self.envs: dict[str, EnvSpec] = {}
        self.errors: dict[str, str] = {}
        self._clashes: dict[tuple[str, str], Clash] = {}
        self._collect(pm, "llamagym_register_agents", self._agent_register)
        self._collect(pm, "llamagym_register_envs", self._env_register)

    @property
    def clashes(self) -> list[Clash]:
        """Every clashing name, agents first, each in the order it was first claimed."""
        return list(self._clashes.values())

    def clashes_of(self, plugin: str) -> list[Clash]:
        return [clash for clash in self._clashes.values() if plugin in clash.plugins]

    def _collect(self, pm: pluggy.PluginManager, hook_name: str, make_register: Callable) -> None:
        """Each registration tagged with its plugin; a plugin whose registration raises is reported in `errors`,
        the others still load (see `llamagym.plugins.calling.call_registration_hook`)."""

        def failed(plugin: str, exc: Exception) -> None:
            self.errors[plugin] = f"{hook_name} raised {type(exc).__name__}: {exc}"

        call_registration_hook(pm, hook_name, make_register, failed)

    def _agent_register(self, plugin: str) -> Callable:
        def register(name: str, agent: type[Agent] | str, description: str = "",
                     preset: dict[str, Any] | str | None = None) -> None:
            self._claim(self.agents, "agent",
                        AgentSpec(name, agent, description or _first_doc_line(agent), plugin, preset))

        return register

    def _env_register(self, plugin: str) -> Callable:
        def register(env_id: str, entry_point: Any = None, kind: str = "gymnasium", description: str = "",
                     kwargs: dict | None = None) -> None:
            if kind not in ENV_KINDS:  # not a PluginError: this plugin's failure (in `errors`), not everyone's
                raise ValueError(f"env {env_id!r} has kind {kind!r}; use one of {', '.join(ENV_KINDS)}")
            self._claim(self.envs, "env", EnvSpec(env_id, entry_point, kind, description, plugin, dict(kwargs or {})))

        return register

    def _claim(self, table: dict[str, Any], kind: str, spec: AgentSpec | EnvSpec) -> None:
        """Enter `spec` under its name, unless another plugin has the name: then the name becomes a clash (taken out
        of `table`, so that nothing uses either plugin's by mistake). A plugin registering one name twice fails
        on its own (a ValueError: `call_registration_hook` records it in `errors`, stopping that plugin only)."""
        name = spec.name if isinstance(spec, AgentSpec) else spec.id
        clash = self._clashes.get((kind, name))
        claimed_by = clash.plugins if clash is not None else (table[name].plugin,) if name in table else ()
        if spec.plugin in claimed_by:
            raise ValueError(f"it registered {'agent name' if kind == 'agent' else 'env id'} {name!r} twice")
        if not claimed_by:
            table[name] = spec
            return
        table.pop(name, None)
        self._clashes[(kind, name)] = Clash(kind, name, (*claimed_by, spec.plugin))

    def agent(self, name: str) -> AgentSpec:
        """The agent registered under `name`; a name two plugins register raises a NameClashError naming both."""
        if ("agent", name) in self._clashes:
            raise self._clashes[("agent", name)].error()
        if name not in self.agents:
            raise UnknownNameError("agent", name, self.agents, self._unknown_hint("agent"))
        return self.agents[name]

    def env(self, env_id: str) -> EnvSpec:
        """A registered env, else what the `llamagym_resolve_env` hook makes of the id: the built-in plugin
        `llamagym.gymnasium_envs` answers last with any id Gymnasium itself knows (so `--env FrozenLake-v1` works).
        An id two plugins register raises a NameClashError naming both (it is not handed on to the hook)."""
        if ("env", env_id) in self._clashes:
            raise self._clashes[("env", env_id)].error()
        if env_id in self.envs:
            return self.envs[env_id]
        spec = call_pm_hook(self.pm, "llamagym_resolve_env", env_id=env_id)
        if spec is not None:
            return spec
        raise UnknownNameError("env", env_id, self.envs, self._unknown_hint("env"))

    def _unknown_hint(self, kind: str) -> str:
        """Where names come from, and which plugins failed to load (the name may be theirs)."""
        failed = {r.name: r.error for r in load_report(self.pm).records.values() if r.error}
        failed.update(self.errors)
        hint = _install_hint(kind)
        if failed:
            hint += "; plugins that failed to load: " + "; ".join(
                f"{name} ({str(error).strip().splitlines()[0] if str(error).strip() else 'no message'})"
                for name, error in sorted(failed.items()))
        return hint


def _first_doc_line(obj: Any) -> str:
    doc = getattr(obj, "__doc__", None) if not isinstance(obj, str) else None
    return doc.strip().splitlines()[0] if doc else ""


def _install_hint(kind: str) -> str:
    return f"`llamagym list` shows every installed {kind}; plugins are pip packages such as llamagym-blackjack"


_registry: Registry | None = None


def get_registry() -> Registry:
    """The registry of the process-wide plugin manager, built on first use."""
    global _registry
    pm = get_plugin_manager()
    if _registry is None or _registry.pm is not pm:
        _registry = Registry(pm)
    return _registry
