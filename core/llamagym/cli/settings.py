"""Settings shared by the commands that play an agent without training it (collect): the run config from a
checkpoint's run or the agent's preset, and the opponent for games."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from llamagym.config import RunConfig, build
from llamagym.errors import UsageError
from llamagym.plugins.manager import get_plugin_manager
from llamagym.rollout.games.opponents import check_opponent
from llamagym.run.setup import config_from_run, resolve_config


def run_settings(agent: str | None, env: str | None, model: str | None, seed: int, num_envs: int,
                 adapter: Path | None, config_file: str | None, use_preset: bool,
                 env_kwargs: dict[str, Any] | None = None) -> RunConfig:
    """The checkpoint's run config if there is one, else defaults < preset < config file; then the flags (the
    run's env kwargs apply to the run's env only; `env_kwargs` go over them)."""
    base = config_from_run(adapter) if adapter else None
    if base is None:
        if not agent and not env and not config_file:
            raise UsageError("pass --agent and --env (or --checkpoint inside a run directory)")
        flags = {key: value for key, value in (("agent", agent), ("env", env), ("model", model)) if value}
        base = resolve_config(flags, config_file, use_preset=use_preset)
    elif env and env != base.env:
        base = replace(base, env_kwargs={})
    values = {"agent": agent or base.agent, "env": env or base.env, "model": model or base.model, "seed": seed,
              "num_envs": num_envs, "env_kwargs": env_kwargs or {}}
    return build(RunConfig, values, base=base)


def game_settings(config: RunConfig, opponent: str | None) -> RunConfig:
    """The config for playing a game against `opponent` (default random), the agent taking each seat in turn."""
    opponent = check_opponent(get_plugin_manager(), opponent or "random", config.env)
    return build(RunConfig, {"multiagent": {"play": "opponent", "opponent": opponent, "learner_seat": "alternate"}},
                 base=config)
