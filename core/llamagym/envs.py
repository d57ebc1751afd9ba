"""Making environments from Python: `make_env(ID)` is the env `llamagym run --env ID` trains in."""

from __future__ import annotations

from typing import Any

from llamagym.plugins.registry import get_registry


def make_env(env_id: str, **kwargs: Any) -> Any:
    """A new instance of any env llamagym knows, made exactly as `llamagym run --env ID` makes it.

    `env_id` is looked up among the envs installed plugins register (`llamagym list` shows them), then in
    Gymnasium's own registry (so `make_env("FrozenLake-v1")` works with no plugin). `kwargs` override the ones the
    plugin registered. Returns a `gymnasium.Env` for `kind = "gymnasium"`, and a PettingZoo `AECEnv` or
    `ParallelEnv` for `"aec"` or `"parallel"`. An unknown id raises `UnknownNameError`, one line naming the
    installed envs and any close match; an env that cannot be created raises a `PluginError` (or, for a
    Gymnasium id, a `UsageError`) naming it and the cause.
    """
    return get_registry().env(env_id).make(**kwargs)
