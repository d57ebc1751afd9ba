"""A training run from start to finish: resolve the config (defaults < agent preset < config file < flags),
build the agent, roll out and train with a progress bar, write metrics and checkpoints, save the adapter."""

from __future__ import annotations

import json
import random
import shutil
import signal
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .config import RunConfig, build, load_toml, merge, to_dict
from .errors import ConfigError, UsageError
from .registry import AgentSpec, EnvSpec, get_registry

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
EPISODES_FILE = "episodes.jsonl"
SUMMARY_FILE = "summary.json"
ADAPTER_DIR = "adapter"


def load_preset(spec: AgentSpec) -> dict[str, Any]:
    """The agent's recommended settings: a dict, or a TOML file path, or nothing."""
    if spec.preset is None:
        return {}
    if isinstance(spec.preset, dict):
        return dict(spec.preset)
    return load_toml(spec.preset)


def resolve_config(flags: dict[str, Any], config_file: str | None = None, use_preset: bool = True) -> RunConfig:
    """Layer defaults, the agent's preset, the config file and the flags given on the command line."""
    file_values = load_toml(config_file) if config_file else {}
    agent_name = flags.get("agent") or file_values.get("agent")
    if not agent_name:
        raise UsageError("no agent given: pass --agent NAME (see `llamagym list`) or set agent in the config file")
    preset = load_preset(get_registry().agent(agent_name)) if use_preset else {}
    config = build(RunConfig, merge(preset, file_values, flags))
    if not config.env:
        raise UsageError("no environment given: pass --env ID (see `llamagym list`) or set env in the config file")
    env_spec = get_registry().env(config.env)
    if env_spec.kind != "gymnasium" and config.multiagent.play == "opponent":
        from .multiagent.opponents import check_opponent

        check_opponent(get_registry().pm, config.multiagent.opponent, config.env)
    return config


def seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def build_agent(config: RunConfig, adapter: str | None = None) -> Any:
    """Load the model (fresh LoRA adapters, or a saved adapter) and construct the registered agent class."""
    from .models import load_model

    spec = get_registry().agent(config.agent)
    agent_class = spec.load()
    seed_everything(config.seed)
    model, tokenizer = load_model(config.model, config.lora, adapter=adapter)
    return agent_class(model, tokenizer, config.device, generate_config_dict=to_dict(config.generation),
                       ppo_config_dict=to_dict(config.ppo), precision=config.precision, seed=config.seed)


def make_engine(agent: Any, env_spec: EnvSpec, config: RunConfig) -> Any:
    """The rollout engine for the env's kind."""
    if env_spec.kind == "gymnasium":
        from .rollout import RolloutEngine

        return RolloutEngine(agent, env_spec.make, config.num_envs, config.seed)
    if env_spec.kind in ("aec", "parallel"):
        from .multiagent.build import build_game_engine

        return build_game_engine(agent, env_spec, config)
    raise UsageError(f"env {env_spec.id!r} has kind {env_spec.kind!r}, which no engine plays")


def prepare_output(output: Path, resume: bool, overwrite: bool) -> None:
    """Refuse to silently reuse a run directory; `--resume` continues it, `--overwrite` replaces it."""
    if resume:
        if not (output / CONFIG_FILE).is_file():
            raise UsageError(f"cannot resume: {str(output)!r} holds no llamagym run ({CONFIG_FILE} missing)")
        return
    if output.exists() and any(output.iterdir()):
        if not overwrite:
            raise UsageError(f"output directory {str(output)!r} already holds files; pass --resume to continue "
                             f"that run or --overwrite to replace it")
        shutil.rmtree(output)


def default_output(config: RunConfig) -> Path:
    return Path("runs") / f"{config.agent}-{config.env}-{time.strftime('%Y%m%d-%H%M%S')}"


class RunningStats:
    """Return, win rate and invalid-action rate over the last `window` episodes, for the progress bar."""

    def __init__(self, window: int = 100):
        self.returns: deque[float] = deque(maxlen=window)
        self.invalid: deque[tuple[int, int]] = deque(maxlen=window)

    def add(self, env_return: float, invalid: int, turns: int) -> None:
        self.returns.append(env_return)
        self.invalid.append((invalid, turns))

    def postfix(self) -> dict[str, str]:
        n = max(len(self.returns), 1)
        turns = max(sum(t for _, t in self.invalid), 1)
        return {"return": f"{sum(self.returns) / n:+.3f}", "win": f"{sum(r > 0 for r in self.returns) / n:.2f}",
                "invalid": f"{sum(i for i, _ in self.invalid) / turns:.2f}"}


@contextmanager
def interrupt_flag() -> Iterator[dict[str, bool]]:
    """Turn the first Ctrl-C into a flag the loop checks (so it can checkpoint and stop); a second one kills."""
    flag = {"stop": False}
    previous = signal.getsignal(signal.SIGINT)

    def handler(signum: int, frame: Any) -> None:
        if flag["stop"]:
            raise KeyboardInterrupt
        flag["stop"] = True

    try:
        signal.signal(signal.SIGINT, handler)
    except ValueError:  # not the main thread
        pass
    try:
        yield flag
    finally:
        try:
            signal.signal(signal.SIGINT, previous)
        except ValueError:
            pass


class StopRun(Exception):
    """Raised inside the rollout callbacks to end a run early (Ctrl-C)."""


def train(config: RunConfig, output: Path | None = None, *, resume: bool = False, overwrite: bool = False,
          show_progress: bool = True) -> dict[str, Any]:
    """Run training as `llamagym run` does; returns the summary also written to `summary.json`."""
    from tqdm.auto import tqdm

    from .checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint, save_model_dir
    from .metrics import JsonlWriter, read_jsonl, truncate_jsonl

    output = Path(output) if output else default_output(config)
    env_spec = get_registry().env(config.env)
    prepare_output(output, resume, overwrite)
    if resume:
        config = build(RunConfig, json.loads((output / CONFIG_FILE).read_text())["config"])
    agent = build_agent(config)
    state = {"episodes": 0, "next_index": 0, "updates": 0, "metrics_rows": 0, "episode_rows": 0, "env_steps": 0}
    checkpoint = latest_checkpoint(output) if resume else None
    if checkpoint is not None:
        state.update(load_checkpoint(checkpoint, agent))
    output.mkdir(parents=True, exist_ok=True)
    if not resume:
        (output / CONFIG_FILE).write_text(json.dumps({"config": to_dict(config)}, indent=2))
    truncate_jsonl(output / METRICS_FILE, state["metrics_rows"])
    truncate_jsonl(output / EPISODES_FILE, state["episode_rows"])
    metrics, episodes_log = JsonlWriter(output / METRICS_FILE), JsonlWriter(output / EPISODES_FILE)
    engine = make_engine(agent, env_spec, config)
    running = RunningStats()
    for row in read_jsonl(output / EPISODES_FILE)[-100:]:
        running.add(row["return"], row["invalid_turns"], row["turns"])
    started = time.perf_counter()
    remaining = config.episodes - state["episodes"]
    bar = tqdm(total=config.episodes, initial=state["episodes"], unit="ep", disable=not show_progress,
               desc=f"{config.agent} on {config.env}", dynamic_ncols=True)

    def checkpoint_now() -> None:
        save_checkpoint(output, agent, {**state, "config": to_dict(config)})

    def on_episode(result: Any) -> None:
        state["episodes"] += 1
        state["next_index"] = max(state["next_index"], result.index + 1)
        state["env_steps"] += result.turns
        episodes_log.write({"episode": result.index, "seed": result.seed, "return": result.env_return,
                            "turns": result.turns, "invalid_turns": result.invalid_turns, "error": result.error})
        state["episode_rows"] += 1
        running.add(result.env_return, result.invalid_turns, result.turns)
        bar.update(1)
        bar.set_postfix({**running.postfix(), "updates": state["updates"]}, refresh=False)

    def on_update(stats: dict[str, float]) -> None:
        state["updates"] += 1
        metrics.write({"update": state["updates"], "episodes": state["episodes"],
                       "time_s": time.perf_counter() - started, **stats})
        state["metrics_rows"] += 1
        if config.checkpoint_every and state["updates"] % config.checkpoint_every == 0:
            checkpoint_now()
        if flag["stop"]:
            raise StopRun

    interrupted = False
    with interrupt_flag() as flag:
        try:
            # in-flight episodes of an interrupted run are dropped; their seeds are not reused
            engine.run(remaining, start_index=state["next_index"], on_episode=on_episode, on_update=on_update)
            if agent.buffer and not flag["stop"]:
                on_update(agent.train())
        except (StopRun, KeyboardInterrupt):
            interrupted = True
        finally:
            bar.close()
            metrics.close()
            episodes_log.close()
            engine.close()
    checkpoint_now()
    save_model_dir(agent, output / ADAPTER_DIR)
    summary = {"output": str(output), "episodes": state["episodes"], "updates": state["updates"],
               "interrupted": interrupted, "wall_time_s": time.perf_counter() - started,
               "last_100_return": float(running.postfix()["return"]), "adapter": str(output / ADAPTER_DIR)}
    (output / SUMMARY_FILE).write_text(json.dumps(summary, indent=2))
    return summary


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


__all__ = ["train", "resolve_config", "build_agent", "make_engine", "config_from_run"]
