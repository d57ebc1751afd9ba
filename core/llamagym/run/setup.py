"""Setting a run up: resolve the config (defaults < agent preset < config file < flags, or a run directory's saved
config for `--resume`), then build the agent and the engine that plays its environment."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llamagym.config import RunConfig, build, load_toml, merge, to_dict
from llamagym.errors import ConfigError, LlamaGymError, UsageError
from llamagym.policy.models import load_model
from llamagym.rollout.engine import Engine
from llamagym.rollout.games.build import build_game_engine
from llamagym.rollout.games.opponents import check_opponent
from llamagym.run.loggers import flatten
from llamagym.plugins.registry import AgentSpec, EnvSpec, get_registry

from llamagym.run.integrity import check_adapter, check_checksums, read_json_object, read_state
from llamagym.run.threads import configure_threads
from llamagym.run.rundir import ADAPTER_DIR, CHECKPOINTS, CONFIG_FILE, SUMMARY_FILE, find_adapter

if TYPE_CHECKING:
    from llamagym.agent.agent import Agent

FIXED_ON_RESUME = ("agent", "env", "model", "lora")


def load_preset(spec: AgentSpec) -> dict[str, Any]:
    """The agent's recommended settings (a dict, or a TOML file path, or nothing), checked: an error says it
    came from the preset and how to train without it."""
    if spec.preset is None:
        return {}
    try:
        values = dict(spec.preset) if isinstance(spec.preset, dict) else load_toml(spec.preset)
        build(RunConfig, values)
    except ConfigError as exc:
        raise ConfigError(f"the preset of agent {spec.name!r} (plugin {spec.plugin!r}) cannot be used: {exc}; "
                          f"pass --no-preset to train without it") from None
    return values


def resolve_config(flags: dict[str, Any], config_file: str | None = None, use_preset: bool = True) -> RunConfig:
    """Layer defaults, the agent's preset, the config file and the flags given on the command line."""
    file_values = load_toml(config_file) if config_file else {}
    try:
        build(RunConfig, file_values)
    except ConfigError as exc:
        raise ConfigError(f"config file {config_file!r}: {exc}") from None
    agent_name = flags.get("agent") or file_values.get("agent")
    if not agent_name:
        raise UsageError("no agent given: pass --agent NAME (see `llamagym list`) or set agent in the config file")
    preset = load_preset(get_registry().agent(agent_name)) if use_preset else {}
    config = build(RunConfig, merge(preset, file_values, flags))
    if not config.env:
        raise UsageError("no environment given: pass --env ID (see `llamagym list`) or set env in the config file")
    env_spec = get_registry().env(config.env)
    if env_spec.kind != "gymnasium" and config.multiagent.play == "opponent":
        check_opponent(get_registry().pm, config.multiagent.opponent, config.env)
    return config


def seed_everything(seed: int) -> None:
    import numpy as np  # numpy, torch: loaded when a run starts, not by `llamagym --help`
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def build_agent(config: RunConfig, adapter: str | None = None) -> Agent:
    """Load the model (fresh LoRA adapters, the run's `init_adapter`, or a saved adapter) and construct the
    registered agent class."""
    spec = get_registry().agent(config.agent)
    agent_class = spec.load()
    adapter = adapter or init_adapter_dir(config)
    if adapter is not None:
        check_adapter(Path(adapter))  # a damaged adapter is named before the (slow) model load
    seed_everything(config.seed)
    configure_threads()
    model, tokenizer = load_model(config.model, config.lora, adapter=adapter)
    return agent_class(model, tokenizer, config.device, generate_config_dict=to_dict(config.generation),
                       ppo_config_dict=to_dict(config.ppo), precision=config.precision, seed=config.seed)


def planned_updates(env_spec: EnvSpec, config: RunConfig, processes: int = 1) -> int | None:
    """How many updates the run makes, which `ppo.lr_schedule = linear` decays over (None: not needed)."""
    if config.ppo.lr_schedule != "linear":
        return None
    if env_spec.kind != "gymnasium":
        raise UsageError(f"ppo.lr_schedule = linear needs a known number of updates, which env {env_spec.id!r} (a "
                         f"game, where each seat's policy updates at its own pace) does not give; use constant or "
                         f"adaptive")
    return math.ceil(math.ceil(config.episodes / processes) / config.ppo.batch_size)


def init_adapter_dir(config: RunConfig) -> str | None:
    """The adapter directory `init_adapter` points at (a run or `llamagym sft` output holds it in adapter/)."""
    if not config.init_adapter:
        return None
    path = Path(config.init_adapter).expanduser()
    if not path.is_dir():
        raise UsageError(f"init_adapter {config.init_adapter!r} is not a directory; pass a `llamagym sft` output, "
                         f"a run directory, an adapter or a checkpoint")
    return str(find_adapter(path))


def run_env(config: RunConfig) -> EnvSpec:
    """The env a run plays: the one registered as `config.env`, made with the run's `env_kwargs`. Kwargs given are
    tried at once, by making one instance, so that one the env rejects is named before the model loads."""
    spec = get_registry().env(config.env)
    if not config.env_kwargs:
        return spec
    spec = spec.with_kwargs(config.env_kwargs)
    probe = spec.make()
    try:
        probe.close()
    except Exception:  # noqa: S110  (the probe's own clean-up: the run makes its envs afresh)
        pass
    return spec


def make_engine(agent: Agent, env_spec: EnvSpec, config: RunConfig, group_size: int | None = None) -> Engine:
    """The rollout engine for the env's kind; `group_size` training episodes share each reset seed (Gymnasium envs;
    default: the advantage estimator's groups)."""
    from llamagym.algo.advantages import seed_group_size  # torch: loaded when an engine is made

    if env_spec.kind == "gymnasium":
        from llamagym.rollout.gym import RolloutEngine

        return RolloutEngine(agent, env_spec.make, config.num_envs, config.seed, max_env_errors=config.max_env_errors,
                             group_size=group_size or seed_group_size(config.ppo))
    if seed_group_size(config.ppo) > 1:
        raise UsageError(f"ppo.advantage = grpo needs episodes that start alike, which env {env_spec.id!r} (a game) "
                         f"does not group yet; use advantage = gae or reinforce")
    if env_spec.kind in ("aec", "parallel"):
        return build_game_engine(agent, env_spec, config)
    raise UsageError(f"env {env_spec.id!r} has kind {env_spec.kind!r}, which no engine plays")


def resume_config(run_dir: Path, flags: dict[str, Any], config_file: str | None = None) -> RunConfig:
    """The config a run was started with, changed by the flags (and config file) given with `--resume`."""
    saved = config_from_run(run_dir) if (Path(run_dir) / CONFIG_FILE).is_file() else None
    if saved is None:
        raise UsageError(f"cannot resume: {str(run_dir)!r} is not a llamagym run directory ({CONFIG_FILE} missing)")
    file_values = load_toml(config_file) if config_file else {}
    config = build(RunConfig, merge(file_values, flags), base=saved)
    check_resumable(saved, config)
    return config


def finished_run(run_dir: Path, config: RunConfig) -> dict[str, Any] | None:
    """For `--resume`: the run's summary when nothing is left to do: it already has its `config.episodes`
    episodes, or has trained its `config.max_minutes`, trained and saved; None when there are episodes to play (or
    the end was not written: the resume writes it). Fewer episodes than the run already has is a one-line error."""
    state, checkpoint = resumed_state(run_dir)
    have = state["episodes"] if state else 0
    if config.episodes < have:
        raise UsageError(f"cannot resume {str(run_dir)!r} with episodes = {config.episodes}: the run already has "
                         f"{have} episodes (checkpoint {checkpoint}); episodes counts the whole run, so pass "
                         f"--episodes larger than {have} to train it further")
    out_of_time = state is not None and 0 < config.max_minutes <= float(state.get("time_s") or 0.0) / 60
    if not have or (config.episodes != have and not out_of_time) or not (run_dir / ADAPTER_DIR).is_dir():
        return None
    try:
        summary = read_json_object(run_dir / SUMMARY_FILE)
    except LlamaGymError:  # missing or damaged: the resume writes it again
        return None
    return summary if summary.get("episodes") == have else None


def resumed_state(run_dir: Path) -> tuple[dict[str, Any] | None, str | None]:
    """The state (episodes, updates, training seconds, ...) of the checkpoint a resume continues from, the newest
    whose files match their checksums (None with none), and the checkpoint's name."""
    root = Path(run_dir) / CHECKPOINTS
    for path in sorted(root.glob("update-*"), reverse=True) if root.is_dir() else []:
        try:
            check_checksums(path)
            return read_state(path), path.name
        except LlamaGymError:  # damaged: the resume falls back to an older one, and says so
            continue
    return None, None


def check_resumable(saved: RunConfig, config: RunConfig) -> None:
    """A resumed run may change hyperparameters, but not what it trains: agent, env, model or LoRA shape."""
    changed = [k for k in config_changes(saved, config) if k.split(".")[0] in FIXED_ON_RESUME]
    if changed:
        before = flatten(to_dict(saved))
        raise UsageError(f"a resumed run cannot change {', '.join(changed)} (it was trained with "
                         f"{', '.join(f'{k}={before.get(k)!r}' for k in changed)}); start a new run instead")


def config_changes(saved: RunConfig, config: RunConfig) -> dict[str, list[Any]]:
    """{key: [before, after]} for every setting that differs."""
    before, after = flatten(to_dict(saved)), flatten(to_dict(config))
    return {k: [before.get(k), after.get(k)] for k in sorted(set(before) | set(after))
            if before.get(k) != after.get(k)}


def config_from_run(run_dir: Path) -> RunConfig | None:
    """The config a run directory was trained with (None if it is not a run directory); for a directory inside a
    run (its adapter/, a checkpoint), the run's. A config.json that is not a run config is an error naming it."""
    run_dir = Path(run_dir)
    places = [run_dir, run_dir.parent] + ([run_dir.parent.parent] if run_dir.parent.name == CHECKPOINTS else [])
    for place in places:
        if (place / CONFIG_FILE).is_file():
            return _read_config(place / CONFIG_FILE)
    return None


def _read_config(path: Path) -> RunConfig:
    what = "is not a llamagym run config"
    try:
        record = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(f"{str(path)!r} {what} (not JSON: {str(exc).splitlines()[0]}); restore it, or pass "
                          f"--agent and --env") from None
    if not isinstance(record, dict) or not isinstance(record.get("config"), dict):
        raise ConfigError(f"{str(path)!r} {what}: it must be a JSON object whose \"config\" is an object of "
                          f"settings, got {type(record).__name__ if not isinstance(record, dict) else 'no such key'}")
    try:
        return build(RunConfig, record["config"])
    except ConfigError as exc:
        raise ConfigError(f"{str(path)!r} {what}: {exc}") from None


__all__ = ["resolve_config", "resume_config", "build_agent", "make_engine", "config_from_run", "run_env"]
