"""Any environment id Gymnasium itself knows, as the last answer to `llamagym_resolve_env` (so that
`--env FrozenLake-v1` works without a plugin registering it)."""

from __future__ import annotations

from llamagym.plugins.hookspecs import hookimpl
from llamagym.plugins.specs import EnvSpec


@hookimpl(trylast=True)
def llamagym_resolve_env(env_id: str) -> EnvSpec | None:
    import gymnasium  # gymnasium: loaded when an id is looked up, not by `llamagym list`

    if env_id in gymnasium.registry:
        return EnvSpec(env_id, None, "gymnasium", "from Gymnasium's own registry", "gymnasium")
    return None
