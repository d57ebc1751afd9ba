"""A training run from start to finish: resolve the config (defaults < agent preset < config file < flags),
build the agent, roll out and train with a progress bar, write metrics and checkpoints, save the adapter."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any

from llamagym.config import RunConfig, build, load_toml, merge, to_dict
from llamagym.errors import ConfigError, UsageError
from llamagym.run.loggers import flatten
from llamagym.plugins.registry import AgentSpec, EnvSpec, get_registry

from llamagym.run.metrics import EPISODES_FILE, METRICS_FILE  # noqa: F401  (run-directory layout, one place each)
from llamagym.run.rundir import CONFIG_FILE

SUMMARY_FILE = "summary.json"
ADAPTER_DIR = "adapter"
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
        from llamagym.rollout.games.opponents import check_opponent

        check_opponent(get_registry().pm, config.multiagent.opponent, config.env)
    return config


def seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def build_agent(config: RunConfig, adapter: str | None = None) -> Any:
    """Load the model (fresh LoRA adapters, the run's `init_adapter`, or a saved adapter) and construct the
    registered agent class."""
    from llamagym.policy.models import load_model

    spec = get_registry().agent(config.agent)
    agent_class = spec.load()
    adapter = adapter or init_adapter_dir(config)
    seed_everything(config.seed)
    model, tokenizer = load_model(config.model, config.lora, adapter=adapter)
    return agent_class(model, tokenizer, config.device, generate_config_dict=to_dict(config.generation),
                       ppo_config_dict=to_dict(config.ppo), precision=config.precision, seed=config.seed)


def planned_updates(env_spec: EnvSpec, config: RunConfig, processes: int = 1) -> int | None:
    """How many updates the run makes, which `ppo.lr_schedule = linear` decays over (None: not needed)."""
    if config.ppo.lr_schedule == "constant":
        return None
    if env_spec.kind != "gymnasium":
        raise UsageError(f"ppo.lr_schedule = linear needs a known number of updates, which env {env_spec.id!r} (a "
                         f"game, where each seat's policy updates at its own pace) does not give; use constant")
    return math.ceil(math.ceil(config.episodes / processes) / config.ppo.batch_size)


def init_adapter_dir(config: RunConfig) -> str | None:
    """The adapter directory `init_adapter` points at (a run or `llamagym sft` output holds it in adapter/)."""
    if not config.init_adapter:
        return None
    from llamagym.cli.evaluate import find_adapter

    path = Path(config.init_adapter).expanduser()
    if not path.is_dir():
        raise UsageError(f"init_adapter {config.init_adapter!r} is not a directory; pass a `llamagym sft` output, "
                         f"a run directory, an adapter or a checkpoint")
    return str(find_adapter(path))


def make_engine(agent: Any, env_spec: EnvSpec, config: RunConfig, group_size: int | None = None) -> Any:
    """The rollout engine for the env's kind; `group_size` training episodes share each reset seed (Gymnasium envs;
    default: the advantage estimator's groups)."""
    from llamagym.algo.advantages import seed_group_size

    if env_spec.kind == "gymnasium":
        from llamagym.rollout.gym import RolloutEngine

        return RolloutEngine(agent, env_spec.make, config.num_envs, config.seed, max_env_errors=config.max_env_errors,
                             group_size=group_size or seed_group_size(config.ppo))
    if seed_group_size(config.ppo) > 1:
        raise UsageError(f"ppo.advantage = grpo needs episodes that start alike, which env {env_spec.id!r} (a game) "
                         f"does not group yet; use advantage = gae or reinforce")
    if env_spec.kind in ("aec", "parallel"):
        from llamagym.rollout.games.build import build_game_engine

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


def train(config: RunConfig, output: Path | None = None, *, resume: bool = False, overwrite: bool = False,
          show_progress: bool = True) -> dict[str, Any]:
    """Run training as `llamagym run` does; returns the summary also written to `summary.json`.

    The first SIGINT/SIGTERM stops at the next episode boundary with a final checkpoint (the summary's
    `interrupted` names the signal); a second raises `ForcedStop` at once. A `TrainingError` (repeated NaNs,
    repeated environment errors) is raised after a checkpoint of the last good state is written."""
    from llamagym.distributed.launch import launched_world_size
    from llamagym.run.loggers import tracker_names
    from llamagym.run.rundir import check_output, claimed, default_output

    if launched_world_size() > 1:  # started by accelerate launch, torchrun or `--num-processes`
        from llamagym.distributed.parallel_run import train_parallel

        return train_parallel(config, output, resume=resume, overwrite=overwrite, show_progress=show_progress)
    output = Path(output) if output else default_output(config.agent, config.env)
    check_output(output, resume, overwrite)
    tracker_names(config.report_to)  # an unknown or missing tracker fails before anything is written
    if resume:
        check_resumable(config_from_run(output) or config, config)
    env_spec = get_registry().env(config.env)
    updates = planned_updates(env_spec, config)
    agent = build_agent(config)
    agent.trainer.planned_updates = updates
    engine = make_engine(agent, env_spec, config)
    try:
        with claimed(output, resume, overwrite):
            return _train_in(output, agent, engine, config, resume, show_progress)
    finally:
        engine.close()


def _train_in(output: Path, agent: Any, engine: Any, config: RunConfig, resume: bool,
              show_progress: bool) -> dict[str, Any]:
    from llamagym.run.checkpoint import atomic_write_text, latest_checkpoint, load_checkpoint, load_engine_state, remove_staging, save_model_dir
    from llamagym.errors import TrainingError
    from llamagym.run.interrupts import stop_requests
    from llamagym.run.metrics import truncate_jsonl
    from llamagym.run.recorder import EPISODES_FILE, METRICS_FILE, RunRecorder, StopRun, fresh_state

    state = fresh_state()
    if resume:
        remove_staging(output)
        checkpoint = latest_checkpoint(output)
        if checkpoint is not None:
            engine_state = load_engine_state(checkpoint)
            if engine_state is not None and hasattr(engine, "load_state_dict"):
                engine.load_state_dict(engine_state)  # first: refilling the pool draws from the RNGs restored next
            state.update({k: v for k, v in load_checkpoint(checkpoint, agent).items() if k != "config"})
    _write_config(output, config, state, resume)
    truncate_jsonl(output / METRICS_FILE, state["metrics_rows"])
    truncate_jsonl(output / EPISODES_FILE, state["episode_rows"])
    with stop_requests() as stop:
        recorder = RunRecorder(output, agent, config, state, stop, show_progress,
                               engine_state=getattr(engine, "state_dict", None))
        try:
            # in-flight episodes of a stopped run are dropped; a resumed run goes on from the committed index
            engine.run(config.episodes - state["episodes"], start_index=state["next_index"],
                       on_episode=recorder.on_episode, on_update=recorder.on_update)
            if agent.buffer:
                recorder.on_update(agent.train())
            recorder.commit()
        except StopRun:
            pass
        except TrainingError as exc:
            path = recorder.checkpoint()
            raise TrainingError(f"{exc}. The run stopped; its last good state is in {path}: continue with "
                                f"`llamagym run --resume {output}` (flags given with --resume change settings)"
                                ) from None
        finally:
            recorder.close()
        engine.close()  # a game engine drops its frozen opponents' adapters: only learners are saved
        checkpoint = recorder.checkpoint()  # a signal from here on is already being answered
        save_model_dir(agent, output / ADAPTER_DIR)
    committed = recorder.committed
    summary = {"output": str(output), "episodes": committed["episodes"], "updates": committed["updates"],
               "dropped_episodes": committed["dropped_episodes"], "interrupted": stop.name or None,
               "exit_code": stop.exit_code, "wall_time_s": committed["time_s"],
               "last_100_return": recorder.running.mean_return(), "checkpoint": str(checkpoint),
               "adapter": str(output / ADAPTER_DIR)}
    atomic_write_text(output / SUMMARY_FILE, json.dumps(summary, indent=2))
    return summary


def _write_config(output: Path, config: RunConfig, state: dict[str, Any], resume: bool) -> None:
    """`config.json`: the settings, and for a resumed run that changed some, when and what changed."""
    from llamagym.run.checkpoint import atomic_write_text

    path = output / CONFIG_FILE
    record: dict[str, Any] = {"config": to_dict(config)}
    if resume:
        record = json.loads(path.read_text(encoding="utf-8"))
        changes = config_changes(build(RunConfig, record["config"]), config)
        if not changes:
            return
        record["config"] = to_dict(config)
        record.setdefault("changes", []).append({"update": state["updates"], "episode": state["episodes"],
                                                 "settings": changes})
    atomic_write_text(path, json.dumps(record, indent=2))


def config_from_run(run_dir: Path) -> RunConfig | None:
    """The config a run directory was trained with (None if it is not a run directory)."""
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        path = Path(run_dir).parent / CONFIG_FILE  # a checkpoint or adapter directory inside a run
        if not path.is_file():
            return None
    try:
        return build(RunConfig, json.loads(path.read_text())["config"])
    except (KeyError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{str(path)!r} is not a llamagym run config: {exc}") from None


__all__ = ["train", "resolve_config", "resume_config", "build_agent", "make_engine", "config_from_run"]
