"""What a plugin registers: an agent (`AgentSpec`) or an environment (`EnvSpec`), and how either is loaded. Kept
apart from the registry so that the built-in plugins can name them without importing the plugin manager."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from llamagym.errors import LlamaGymError, PluginError, UsageError

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
    """An environment a plugin registered; `make()` returns a fresh instance. `given` are keyword arguments the
    user gave (a run's `env_kwargs`), over the plugin's `kwargs`."""

    id: str
    entry_point: Any = None
    kind: str = "gymnasium"
    description: str = ""
    plugin: str = ""
    kwargs: dict = field(default_factory=dict)
    given: dict = field(default_factory=dict)

    def with_kwargs(self, given: dict[str, Any]) -> EnvSpec:
        """This env, made with the keyword arguments `given` over the ones registered."""
        return replace(self, given={**self.given, **given})

    def make(self, **overrides: Any) -> Any:
        """A new instance; one that cannot be created is an error naming the env, its plugin and the cause (and
        the keyword arguments given, when it rejects them)."""
        given = {**self.given, **overrides}
        kwargs = {**self.kwargs, **given}
        try:
            if self.entry_point is None:
                import gymnasium  # gymnasium: loaded when an env is made, not by `llamagym list`

                return gymnasium.make(self.id, **kwargs)
            return import_object(self.entry_point)(**kwargs)
        except LlamaGymError:
            raise
        except Exception as exc:
            cause = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
            if given and isinstance(exc, (TypeError, ValueError)):
                shown = ", ".join(f"{key}={value!r}" for key, value in given.items())
                raise UsageError(f"env {self.id!r} cannot be created with the keyword arguments {shown} "
                                 f"({cause}); fix or drop them (--env-kwarg KEY=VALUE, or the config's "
                                 f"[env_kwargs] table)") from None
            if self.plugin == "gymnasium" or self.entry_point is None:
                raise UsageError(f"cannot create env {self.id!r}: {cause}; install what it needs (for Gymnasium "
                                 f"envs, e.g. pip install 'gymnasium[box2d]') or check its kwargs") from None
            raise PluginError(f"env {self.id!r} of plugin {self.plugin!r} cannot be created: {cause}") from None


__all__ = ["AgentSpec", "EnvSpec", "ENV_KINDS", "import_object"]
