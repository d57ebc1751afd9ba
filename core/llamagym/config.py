"""Every hyperparameter in one place: typed dataclasses with defaults, ranges and help, loaded from dicts, TOML
files and CLI flags, with errors that name the bad key and what it accepts."""

from __future__ import annotations

import dataclasses
import math
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llamagym.errors import ConfigError, UnknownNameError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def option(default: Any, help: str, *, min: float | None = None, max: float | None = None,
           choices: tuple | None = None, exclusive_min: bool = False, flag: str | None = None) -> Any:
    """A dataclass field that carries its help text and the range of values it accepts."""
    meta = {"help": help, "min": min, "max": max, "choices": choices, "exclusive_min": exclusive_min,
            "flag": flag}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class PPOConfig:
    """Proximal policy optimisation over the tokens an agent generated."""

    batch_size: int = option(16, "episodes collected per PPO update", min=1)
    mini_batch_size: int = option(16, "turns (samples) per gradient step", min=1)
    gradient_accumulation_steps: int = option(1, "minibatches summed into one optimiser step", min=1)
    ppo_epochs: int = option(4, "passes over the collected samples per update", min=1)
    learning_rate: float | None = option(
        None, "AdamW step size; default 1e-4 with LoRA adapters, 1e-5 for full fine-tuning", min=0.0,
        exclusive_min=True)
    lr_schedule: str = option("constant", "learning rate over the run: constant; linear (down to zero at the "
                              "run's last update; `llamagym run` on a Gymnasium env knows when that is); or adaptive "
                              "(after every optimiser step divided by 1.5 when the step's approx_kl exceeds twice "
                              "lr_kl_target, multiplied by 1.5 when it is below half, within 1/1000 of learning_rate "
                              "and learning_rate itself)",
                              choices=("constant", "linear", "adaptive"))
    lr_kl_target: float = option(0.01, "lr_schedule = adaptive: the approx_kl from the sampling policy, over an "
                                 "optimiser step's minibatches, that the step size aims for", min=0.0,
                                 exclusive_min=True)
    weight_decay: float = option(0.0, "AdamW weight decay", min=0.0)
    kl_coef: float = option(0.05, "initial weight of the per-token KL penalty against the reference", min=0.0)
    adaptive_kl: bool = option(True, "adapt the KL weight towards kl_target (else keep it fixed)")
    kl_target: float = option(6.0, "KL per sample that the adaptive controller aims for", min=0.0,
                              exclusive_min=True)
    kl_horizon: int = option(10000, "samples over which the adaptive KL weight adjusts", min=1)
    kl_estimator: str = option("k1", "per-token KL estimate: k1 (log ratio), abs, mse or k3",
                               choices=("k1", "abs", "mse", "k3"))
    advantage: str = option("gae", "advantage estimator: gae (value head, GAE across turns), grpo (an episode's "
                            "return minus the mean of group_size episodes from its reset seed) or reinforce (return "
                            "minus a running baseline); grpo and reinforce train no value head",
                            choices=("gae", "grpo", "reinforce"))
    group_size: int = option(4, "advantage = grpo: training episodes played from each reset seed (batch_size must "
                             "be a multiple)", min=2)
    baseline_rate: float = option(0.1, "advantage = reinforce: how fast the running baseline follows each batch's "
                                  "mean return", min=0.0, max=1.0, exclusive_min=True)
    gamma: float = option(1.0, "discount between turns of an episode", min=0.0, max=1.0)
    lam: float = option(0.95, "GAE lambda over tokens and turns", min=0.0, max=1.0)
    cliprange: float = option(0.2, "PPO policy ratio clip", min=0.0, exclusive_min=True)
    cliprange_value: float = option(0.2, "value-prediction clip around the old value", min=0.0, exclusive_min=True)
    vf_coef: float = option(0.1, "weight of the value loss", min=0.0)
    entropy_coef: float = option(0.0, "weight of the entropy bonus", min=0.0)
    max_grad_norm: float = option(1.0, "clip the gradient norm to this (0: no clipping)", min=0.0)
    whiten_advantages: bool = option(True, "normalise advantages over the batch")
    target_approx_kl: float = option(0.0, "stop the epochs early once the policy moved this far (0: never)",
                                     min=0.0)
    invalid_action_penalty: float = option(0.0, "reward added to a turn whose response held no valid action")
    forward_batch_size: int = option(32, "samples per no-grad forward pass (memory vs speed)", min=1)
    sampler_logprobs: bool = option(True, "take the log-probs and values the sampler computed as the update's old "
                                    "ones, one forward pass less per update (used when it samples plain "
                                    "softmax(logits / temperature): no top-k, no top-p)")
    reference_cache: int = option(65536, "sequences whose reference log-probs are kept: the reference never "
                                  "changes, so a prompt and answer seen before are not scored again (0: score "
                                  "every sample)", min=0)
    merge_repeats: bool = option(False, "train on one forward row per distinct prompt, answer and constraint of "
                                 "a minibatch, each repeat keeping its own advantage (the same loss, fewer rows "
                                 "where a batch repeats sequences, as Blackjack's 280 states do; one-process runs only)")
    frozen_trunk: bool = option(False, "with adapters on the last layers only (lora.layers), run the layers below "
                                "them once per sequence instead of in every forward pass: the same loss up to bf16 "
                                "rounding, and a pass of the Blackjack preset runs 8 of SmolLM2's 30 layers (off "
                                "until a paired learning comparison clears it: three fresh Blackjack seeds with it "
                                "did not learn)")
    trunk_cache_mb: int = option(256, "MiB of frozen-trunk hidden states kept across updates, so a sequence seen in "
                                 "an earlier update skips the trunk (0: compute them in every update)", min=0)
    gradient_checkpointing: bool = option(False, "recompute activations in the backward pass to save memory")
    max_nonfinite_updates: int = option(
        3, "consecutive updates skipped for NaN/inf before training stops", min=1)


@dataclass
class GenerationConfig:
    """How the policy samples its responses."""

    max_new_tokens: int = option(32, "longest response, in tokens", min=1)
    temperature: float = option(1.0, "sampling temperature (the PPO log-probs use the same)", min=0.0,
                                exclusive_min=True)
    top_k: int = option(0, "sample from the k likeliest tokens (0: all)", min=0)
    top_p: float = option(1.0, "nucleus sampling mass (1: all)", min=0.0, max=1.0, exclusive_min=True)
    do_sample: bool = option(True, "sample (else greedy decoding)")
    constrained: bool = option(True, "when the agent lists the responses it accepts (action_choices), sample only "
                               "among them; PPO scores the same restricted distribution")
    max_history_turns: int = option(0, "keep only the last k turns of the conversation in the prompt (0: all)",
                                    min=0)
    backend: str = option("transformers", "what samples the responses: transformers (the policy itself, any "
                          "device) or vllm (a vLLM engine on the GPU, LoRA synced after each update)",
                          choices=("transformers", "vllm"), flag="generation-backend")
    vllm_gpu_memory: float = option(0.4, "share of the GPU's memory the vLLM engine may take (the rest is left "
                                    "for training)", min=0.0, max=1.0, exclusive_min=True)


@dataclass
class LoraConfig:
    """LoRA adapters trained through peft; the frozen base model doubles as the KL reference."""

    enabled: bool = option(True, "train LoRA adapters (else the full model, with a reference copy)",
                           flag="lora/--no-lora")
    r: int = option(16, "adapter rank", min=1, flag="lora-r")
    alpha: int = option(32, "adapter scaling alpha", min=1, flag="lora-alpha")
    dropout: float = option(0.0, "adapter dropout (0 keeps sampling and training forwards identical)",
                            min=0.0, max=1.0, flag="lora-dropout")
    target_modules: str = option("all-linear", "comma-separated module names, or all-linear",
                                 flag="lora-target-modules")
    layers: int = option(0, "adapt only the last N transformer layers (0, or N at least the model's: all): the "
                         "backward pass then stops below them", min=0, flag="lora-layers")


@dataclass
class MultiAgentConfig:
    """Who plays whom in PettingZoo games (ignored for Gymnasium environments)."""

    play: str = option("selfplay", "selfplay: one shared policy in every seat; separate: one LoRA adapter per "
                       "seat; opponent: the learner against a fixed opponent",
                       choices=("selfplay", "separate", "opponent"))
    opponent: str = option("random", "the fixed opponent (play=opponent): random, base (the untrained model), "
                           "a scripted opponent a plugin registers, or a run/adapter directory")
    learner_seat: str = option("alternate", "the learner's seat against a fixed opponent: alternate (a "
                               "different seat each game) or an agent id such as player_1")
    pool_rate: float = option(0.2, "self-play: probability that a past snapshot plays one seat of a game",
                              min=0.0, max=1.0)
    pool_size: int = option(4, "self-play: past snapshots kept as opponents (0: no pool)", min=0)
    snapshot_every: int = option(4, "self-play: PPO updates between snapshots added to the pool", min=1)


@dataclass
class RunConfig:
    """One training run: what to train, where, for how long, and every hyperparameter."""

    agent: str = option("", "agent name (see `llamagym list`)")
    env: str = option("", "environment id (see `llamagym list`)")
    env_kwargs: dict[str, Any] = option({}, "keyword arguments for the environment's constructor (gym.make), over "
                                        "the ones its plugin registers: a [env_kwargs] table, or --env-kwarg "
                                        "KEY=VALUE (repeatable)", flag="env-kwarg")
    model: str = option("default", "model: 'default' (embedded SmolLM2-135M-Instruct), a Hugging Face id, "
                        "a local directory or a .gguf file")
    init_adapter: str = option("", "start from this LoRA adapter (and its value head, if saved) instead of fresh "
                               "adapters: a `llamagym sft` output, a run directory, an adapter or a checkpoint")
    episodes: int = option(500, "training episodes", min=1)
    max_minutes: float = option(0.0, "stop once the run has trained this many minutes (rollouts and updates, "
                                "resumed time included), at the first commit after it: right after an update, with "
                                "its checkpoint (0: no limit)", min=0.0)
    seed: int = option(0, "seed for the model's sampling and the environments", min=0, max=2**32 - 1)
    num_envs: int = option(16, "environment copies stepped together (one batched generation)", min=1)
    device: str = option("auto", "torch device: auto, cpu, cuda, cuda:1, mps")
    precision: str = option("auto", "autocast: auto (bf16 where the device is fast at it), fp32, bf16, fp16",
                            choices=("auto", "fp32", "bf16", "fp16"))
    checkpoint_every: int = option(10, "updates between checkpoints (0: only at the end)", min=0)
    report_to: str = option("jsonl", "experiment trackers, comma-separated: jsonl, tensorboard, wandb, mlflow "
                                     "(metrics.jsonl is always written)")
    max_env_errors: int = option(10, "environment errors (in reset or step) in a row before the run stops; each "
                                 "drops its episode (0: never stop)", min=0)
    record_conversations: float = option(
        1.0, "share of episodes whose conversation (system prompt, prompts, responses) episodes.jsonl records in "
        "`messages`, spread evenly over the episode indices (0.1: one in ten; 0: none, each row's `messages` empty)",
        min=0.0, max=1.0)
    score_policy: bool = option(True, "score the greedy policy exactly before and after training where a plugin "
                                "can (llamagym_score_policy; Blackjack: its answer in all 280 observations)")
    ppo: PPOConfig = field(default_factory=PPOConfig)
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    multiagent: MultiAgentConfig = field(default_factory=MultiAgentConfig)


SECTIONS = ("ppo", "generation", "lora", "multiagent")

# Keys of trl's old PPOConfig that LlamaGym users pass in ppo_config_dict, mapped to ours.
PPO_ALIASES = {"init_kl_coef": "kl_coef", "adap_kl_ctrl": "adaptive_kl", "target": "kl_target",
               "horizon": "kl_horizon", "kl_penalty": "kl_estimator", "whiten_advantages": "whiten_advantages"}
# Keys of trl's old PPOConfig that have no meaning here; accepted so old configs keep working.
PPO_IGNORED = {"seed", "log_with", "tracker_project_name", "optimize_cuda_cache", "optimize_device_cache",
               "early_stopping", "use_score_scaling", "use_score_norm", "score_clip", "ratio_threshold",
               "model_name", "query_dataset", "reward_model", "remove_unused_columns", "task_name", "steps",
               "tracker_kwargs", "accelerator_kwargs", "project_kwargs", "push_to_hub_if_best_kwargs",
               "exp_name", "compare_steps", "is_encoder_decoder", "is_peft_model", "backward_batch_size",
               "global_backward_batch_size", "global_batch_size", "whiten_rewards", "world_size"}


def field_specs(cls: type) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls)}


def _base_type(annotation: Any) -> tuple[type, bool]:
    """(scalar type, may be None) from a field annotation such as ``float | None``."""
    if isinstance(annotation, str):
        annotation = eval(annotation, {**vars(typing), **vars(sys.modules[__name__])})  # noqa: S307
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        scalar = [a for a in args if a is not type(None)][0]
        return scalar, True
    return annotation, False


def coerce_value(cls: type, key: str, value: Any, where: str) -> Any:
    """Check one value against its field's type and range; return it converted (e.g. int 1 → float 1.0)."""
    spec = field_specs(cls)[key]
    scalar, optional = _base_type(spec.type)
    name = f"{where}{key}"
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{name} must be a {scalar.__name__}, not empty")
    if scalar is bool:
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            value = value.lower() in ("true", "1", "yes")
        if not isinstance(value, bool):
            raise ConfigError(f"{name} must be true or false, got {value!r}")
    elif scalar is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{name} must be an integer, got {value!r}")
    elif scalar is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{name} must be a number, got {value!r}")
        try:
            value = float(value)
        except OverflowError:  # an integer beyond any float
            value = math.inf
        if not math.isfinite(value):  # NaN passes every comparison, inf every lower bound
            raise ConfigError(f"{name} must be a finite number, got {value!r}")
    elif scalar is str:
        if not isinstance(value, str):
            raise ConfigError(f"{name} must be a string, got {value!r}")
    elif typing.get_origin(scalar) is dict:
        return check_table(name, value)
    _check_range(spec.metadata, name, value)
    return value


TABLE_VALUES = (str, bool, int, float, type(None))  # and lists and tables of them: what JSON holds


def check_table(name: str, value: Any) -> dict[str, Any]:
    """A table of keyword arguments (`env_kwargs`): string keys, values JSON can hold (config.json keeps them)."""
    if not isinstance(value, dict):
        raise ConfigError(f"{name} must be a table of keyword arguments (KEY = VALUE), got {value!r}")
    for key, item in value.items():
        if not isinstance(key, str) or not key.isidentifier():
            raise ConfigError(f"{name} keys must be Python names (a keyword argument), got {key!r}")
        _check_table_value(f"{name}.{key}", item)
    return dict(value)


def _check_table_value(name: str, value: Any) -> None:
    if isinstance(value, dict):
        check_table(name, value)
    elif isinstance(value, list):
        for item in value:
            _check_table_value(name, item)
    elif not isinstance(value, TABLE_VALUES):
        raise ConfigError(f"{name} must be a string, number, boolean, array or table, got {value!r}")


def _check_range(meta: Any, name: str, value: Any) -> None:
    choices, low, high = meta.get("choices"), meta.get("min"), meta.get("max")
    if choices and value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(map(str, choices))}, got {value!r}")
    if low is not None and (value < low or (meta.get("exclusive_min") and value == low)):
        relation = "greater than" if meta.get("exclusive_min") else "at least"
        raise ConfigError(f"{name} must be {relation} {low}, got {value!r}")
    if high is not None and value > high:
        raise ConfigError(f"{name} must be at most {high}, got {value!r}")


def build(cls: type, data: dict | None, where: str = "", aliases: dict | None = None,
          ignored: set | None = None, base: Any = None) -> Any:
    """A `cls` instance from `base` (or the defaults) updated by `data`, every key and value checked."""
    result = dataclasses.replace(base) if base is not None else cls()
    specs = field_specs(cls)
    for key, value in (data or {}).items():
        key = (aliases or {}).get(key, key)
        if key in (ignored or set()):
            continue
        if key not in specs:
            raise UnknownNameError("config key", f"{where}{key}", [f"{where}{k}" for k in specs],
                                   "see `llamagym run --help` for what each does", label="valid keys")
        if dataclasses.is_dataclass(specs[key].type) or key in SECTIONS:
            if not isinstance(value, dict):
                raise ConfigError(f"{where}{key} must be a table of settings, got {value!r}")
            sub_cls = type(getattr(result, key))
            value = build(sub_cls, value, f"{where}{key}.", PPO_ALIASES if key == "ppo" else None,
                          PPO_IGNORED if key == "ppo" else None, getattr(result, key))
        else:
            value = coerce_value(cls, key, value, where)
            if isinstance(value, dict):  # a table of keyword arguments: key by key over the base's, as sections
                value = {**getattr(result, key), **value}
        setattr(result, key, value)
    return result


def load_toml(path: str | Path) -> dict:
    """Read a TOML config file; a missing or malformed file is a ConfigError naming the file and the problem."""
    path = Path(path)
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"config file {str(path)!r} does not exist") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {str(path)!r} is not UTF-8 text; a config file is TOML "
                          f"(see `llamagym run --help` for its keys)") from None
    except OSError as exc:
        raise ConfigError(f"config file {str(path)!r} cannot be read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {str(path)!r} is not valid TOML: {exc}") from None


def to_dict(config: Any) -> dict:
    """A plain dict (TOML/JSON-ready) of a config dataclass; None values are left out."""
    out = {}
    for key, value in dataclasses.asdict(config).items():
        if isinstance(value, dict) and key in SECTIONS:  # a table of keyword arguments keeps its None values
            value = {k: v for k, v in value.items() if v is not None}
        if value is not None:
            out[key] = value
    return out


def merge(*layers: dict | None) -> dict:
    """Later layers win; sections (dicts) merge key by key."""
    out: dict = {}
    for layer in layers:
        for key, value in (layer or {}).items():
            if isinstance(value, dict) and isinstance(out.get(key), dict):
                out[key] = {**out[key], **value}
            else:
                out[key] = value
    return out
