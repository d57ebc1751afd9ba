"""Named opponents for games: a scripted opponent a plugin registers with `llamagym_register_opponents` (the core's
built-in plugin `llamagym.opponents` registers `random`, uniform legal moves, the same way), `base` (the untrained
model) or a directory holding a saved adapter (a frozen checkpoint).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import pluggy

from llamagym.errors import PluginError, UnknownNameError
from llamagym.plugins.calling import call_registration_hook
from llamagym.plugins.specs import import_object

logger = logging.getLogger(__name__)

RANDOM = "random"  # scripted: registered by the built-in plugin `llamagym.plugins.builtin.opponents`
BASE_MODEL = "base"
# the built-in opponents that are not scripted (not registered through the hook), by name
BUILT_IN = {BASE_MODEL: "the base model with its LoRA adapters off"}


@dataclass(frozen=True)
class OpponentSpec:
    """A scripted opponent: `policy(observation, rng) -> move`, for the env ids in `envs` (ids or shell-style
    patterns; None: any)."""

    name: str
    policy: Any
    envs: tuple[str, ...] | None = None
    description: str = ""
    plugin: str = ""

    def load(self) -> Callable:
        return import_object(self.policy)

    def plays(self, env_id: str) -> bool:
        """Whether `env_id` is one of `envs`, an id or a shell-style pattern ("TextArena-*")."""
        return self.envs is None or any(fnmatchcase(env_id, pattern) for pattern in self.envs)


def scripted_opponents(pm: pluggy.PluginManager, clashes: list[str] | None = None) -> list[OpponentSpec]:
    """Every scripted opponent the loaded plugins register; one name may serve different envs. A plugin whose
    registration raises is logged and skipped, as with agents and envs. A name two plugins register for one env is
    left out (neither can be used), and `clashes`, if given, receives a line saying so."""
    specs: list[OpponentSpec] = []
    clashing: dict[int, str] = {}  # index in specs -> the clash it is part of

    def failed(plugin: str, exc: Exception) -> None:
        logger.warning("plugin %r: llamagym_register_opponents raised %s: %s", plugin, type(exc).__name__, exc)

    call_registration_hook(pm, "llamagym_register_opponents",
                           lambda plugin: _register_into(specs, clashing, plugin), failed)
    if clashes is not None:
        clashes.extend(dict.fromkeys(clashing.values()))
    return [spec for index, spec in enumerate(specs) if index not in clashing]


def _register_into(specs: list[OpponentSpec], clashing: dict[int, str], plugin: str) -> Callable:
    def register(name: str, policy: Any, envs: Any = None, description: str = "") -> None:
        spec = OpponentSpec(name, policy, tuple(envs) if envs is not None else None, description, plugin)
        for index, other in enumerate(specs):
            overlap = other.envs is None or spec.envs is None or set(other.envs) & set(spec.envs)
            if other.name == name and overlap:
                message = (f"opponent {name!r} is registered by both {other.plugin!r} and {plugin!r} for the same "
                           f"env, so neither can be used; uninstall one of them or block it with "
                           f"LLAMAGYM_BLOCK_PLUGINS={plugin}")
                clashing[index] = clashing[len(specs)] = message
        specs.append(spec)

    return register


def is_checkpoint(name: str) -> bool:
    return Path(name).expanduser().is_dir()


def find_scripted(pm: pluggy.PluginManager, name: str, env_id: str) -> OpponentSpec:
    """The scripted opponent `name` for `env_id`; an error listing every opponent that can play it, or naming the
    two plugins that both register it."""
    clashes: list[str] = []
    specs = [s for s in scripted_opponents(pm, clashes) if s.plays(env_id)]
    for spec in specs:
        if spec.name == name:
            return spec
    for clash in clashes:
        if clash.startswith(f"opponent {name!r} "):
            raise PluginError(clash)
    known = sorted({*BUILT_IN, *(s.name for s in specs)})
    raise UnknownNameError(f"opponent for {env_id}", name, known,
                           "or pass a run, adapter or checkpoint directory to play a frozen checkpoint",
                           label="known")


def check_opponent(pm: pluggy.PluginManager, name: str, env_id: str) -> str:
    """`name` if it is `base`, a directory or a scripted opponent for `env_id` (`random` among them); else a clear
    error."""
    if name in BUILT_IN or is_checkpoint(name):
        return name
    find_scripted(pm, name, env_id)
    return name
