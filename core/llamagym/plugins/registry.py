"""Named agents and environments contributed by plugins through the registration hooks."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pluggy

from llamagym.errors import LlamaGymError, PluginError, UnknownNameError, UsageError
from llamagym.plugins.calling import call_pm_hook, call_registration_hook
from llamagym.plugins.manager import get_plugin_manager, load_report

if TYPE_CHECKING:
    from llamagym.agent.agent import Agent

ENV_KINDS = ("gymnasium", "aec", "parallel")


def import_object(reference: Any) -> Any:
    """Resolve a ``"package.module:attribute"`` string; anything else is returned as it is."""
    if not isinstance(reference, str):
        return reference
    module_name, _, attribute = reference.partition(":")
    obj = importlib.import_module(module_name)
    for part in attribute.split(".") if attribute else []:
        obj = getattr(obj, part)
    return obj


@dataclass(frozen=True)
class AgentSpec:
    """An agent a plugin registered: the class (or where to import it from) and its recommended settings."""

    name: str
    entry_point: type[Agent] | str
    description: str = ""
    plugin: str = ""
    preset: dict[str, Any] | str | None = None

    def load(self) -> type:
        return import_object(self.entry_point)


@dataclass(frozen=True)
class EnvSpec:
    """An environment a plugin registered; `make()` returns a fresh instance."""

    id: str
    entry_point: Any = None
    kind: str = "gymnasium"
    description: str = ""
    plugin: str = ""
    kwargs: dict = field(default_factory=dict)

    def make(self, **overrides: Any) -> Any:
        """A new instance; one that cannot be created is an error naming the env, its plugin and the cause."""
        kwargs = {**self.kwargs, **overrides}
        try:
            if self.entry_point is None:
                import gymnasium  # gymnasium: loaded when an env is made, not by `llamagym list`

                return gymnasium.make(self.id, **kwargs)
            return import_object(self.entry_point)(**kwargs)
        except LlamaGymError:
            raise
        except Exception as exc:
            cause = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
            if self.plugin == "gymnasium" or self.entry_point is None:
                raise UsageError(f"cannot create env {self.id!r}: {cause}; install what it needs (for Gymnasium "
                                 f"envs, e.g. pip install 'gymnasium[box2d]') or check its kwargs") from None
            raise PluginError(f"env {self.id!r} of plugin {self.plugin!r} cannot be created: {cause}") from None


class Registry:
    """Agents and envs from every loaded plugin; a name claimed twice is an error naming both plugins."""

    def __init__(self, pm: pluggy.PluginManager):
        self.pm = pm
        self.agents: dict[str, AgentSpec] = {}
        self.envs: dict[str, EnvSpec] = {}
        self.errors: dict[str, str] = {}
        self._collect(pm, "llamagym_register_agents", self._agent_register)
        self._collect(pm, "llamagym_register_envs", self._env_register)

    def _collect(self, pm: pluggy.PluginManager, hook_name: str, make_register: Callable) -> None:
        """Each registration tagged with its plugin; a plugin whose registration raises is reported in `errors`,
        the others still load (see `llamagym.plugins.calling.call_registration_hook`)."""

        def failed(plugin: str, exc: Exception) -> None:
            self.errors[plugin] = f"{hook_name} raised {type(exc).__name__}: {exc}"

        call_registration_hook(pm, hook_name, make_register, failed)

    def _agent_register(self, plugin: str) -> Callable:
        def register(name: str, agent: type[Agent] | str, description: str = "",
                     preset: dict[str, Any] | str | None = None) -> None:
            _claim(self.agents, name, "agent", plugin)
            self.agents[name] = AgentSpec(name, agent, description or _first_doc_line(agent), plugin, preset)

        return register

    def _env_register(self, plugin: str) -> Callable:
        def register(env_id: str, entry_point: Any = None, kind: str = "gymnasium", description: str = "",
                     kwargs: dict | None = None) -> None:
            if kind not in ENV_KINDS:
                raise PluginError(f"plugin {plugin!r} registered env {env_id!r} with kind {kind!r}; "
                                  f"use one of {', '.join(ENV_KINDS)}")
            _claim(self.envs, env_id, "env", plugin)
            self.envs[env_id] = EnvSpec(env_id, entry_point, kind, description, plugin, dict(kwargs or {}))

        return register

    def agent(self, name: str) -> AgentSpec:
        if name not in self.agents:
            raise UnknownNameError("agent", name, self.agents, self._unknown_hint("agent"))
        return self.agents[name]

    def env(self, env_id: str) -> EnvSpec:
        """A registered env, else what the `llamagym_resolve_env` hook makes of the id: the built-in plugin
        `llamagym.gymnasium_envs` answers last with any id Gymnasium itself knows (so `--env FrozenLake-v1` works)."""
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


def _claim(table: dict, name: str, kind: str, plugin: str) -> None:
    if name in table:
        raise PluginError(f"{kind} name {name!r} is registered by both {table[name].plugin!r} and {plugin!r}; "
                          f"uninstall one of them or block it with LLAMAGYM_BLOCK_PLUGINS={plugin}")


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
