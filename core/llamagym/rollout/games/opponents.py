"""Named opponents for games: `random` (uniform legal moves), `base` (the untrained model), a directory holding
a saved adapter (a frozen checkpoint), or a scripted opponent a plugin registers with `llamagym_register_opponents`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pluggy

from llamagym.errors import PluginError, UnknownNameError
from llamagym.plugins.registry import import_object

logger = logging.getLogger(__name__)

RANDOM = "random"
BASE_MODEL = "base"
BUILT_IN = {RANDOM: "uniformly random legal moves", BASE_MODEL: "the base model with its LoRA adapters off"}


@dataclass(frozen=True)
class OpponentSpec:
    """A scripted opponent: `policy(observation, rng) -> move`, for the env ids in `envs` (None: any)."""

    name: str
    policy: Any
    envs: tuple[str, ...] | None = None
    description: str = ""
    plugin: str = ""

    def load(self) -> Callable:
        return import_object(self.policy)

    def plays(self, env_id: str) -> bool:
        return self.envs is None or env_id in self.envs


def scripted_opponents(pm: pluggy.PluginManager) -> list[OpponentSpec]:
    """Every scripted opponent the loaded plugins register; one name may serve different envs. A plugin whose
    registration raises is logged and skipped, as with agents and envs."""
    specs: list[OpponentSpec] = []
    for impl in pm.hook.llamagym_register_opponents.get_hookimpls():
        try:
            impl.function(register=_register_into(specs, impl.plugin_name))
        except PluginError:
            raise
        except Exception as exc:
            logger.warning("plugin %r: llamagym_register_opponents raised %s: %s", impl.plugin_name,
                           type(exc).__name__, exc)
    return specs


def _register_into(specs: list[OpponentSpec], plugin: str) -> Callable:
    def register(name: str, policy: Any, envs: Any = None, description: str = "") -> None:
        spec = OpponentSpec(name, policy, tuple(envs) if envs is not None else None, description, plugin)
        for other in specs:
            overlap = other.envs is None or spec.envs is None or set(other.envs) & set(spec.envs)
            if other.name == name and overlap:
                raise PluginError(f"opponent {name!r} is registered by both {other.plugin!r} and {plugin!r} for "
                                  f"the same env")
        specs.append(spec)

    return register


def is_checkpoint(name: str) -> bool:
    return Path(name).expanduser().is_dir()


def find_scripted(pm: pluggy.PluginManager, name: str, env_id: str) -> OpponentSpec:
    """The scripted opponent `name` for `env_id`; an error listing every opponent that can play it."""
    specs = [s for s in scripted_opponents(pm) if s.plays(env_id)]
    for spec in specs:
        if spec.name == name:
            return spec
    known = sorted({*BUILT_IN, *(s.name for s in specs)})
    raise UnknownNameError(f"opponent for {env_id}", name, known,
                           "or pass a run, adapter or checkpoint directory to play a frozen checkpoint",
                           label="known")


def check_opponent(pm: pluggy.PluginManager, name: str, env_id: str) -> str:
    """`name` if it is a built-in opponent, a directory or a scripted opponent for `env_id`; else a clear error."""
    if name in BUILT_IN or is_checkpoint(name):
        return name
    find_scripted(pm, name, env_id)
    return name
