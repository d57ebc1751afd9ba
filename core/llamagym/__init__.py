"""llamagym: fine-tune LLM agents with online reinforcement learning in Gymnasium and PettingZoo environments.

Importing the package is cheap: torch-backed names (`Agent`, `AutoModelForCausalLMWithValueHead`, ...) load on
first use, so plugin listings and `--help` stay fast.
"""

from __future__ import annotations

from llamagym.errors import ActionParseError, ConfigError, LlamaGymError, PluginError, TrainingError, UsageError
from llamagym.lazy import lazy_exports
from llamagym.plugins.hookspecs import hookimpl

__version__ = "0.2.0"

_LAZY = {
    "Agent": "llamagym.agent.agent",
    "AutoModelForCausalLMWithValueHead": "llamagym.policy.value_head",
    "PPOConfig": "llamagym.config",
    "GenerationConfig": "llamagym.config",
    "LoraConfig": "llamagym.config",
    "RunConfig": "llamagym.config",
    "Episode": "llamagym.agent.episode",
    "Turn": "llamagym.agent.episode",
    "load_model": "llamagym.policy.models",
    "make_env": "llamagym.envs",
}

__all__ = ["ActionParseError", "ConfigError", "LlamaGymError", "PluginError", "TrainingError", "UsageError",
           "hookimpl", "__version__", *_LAZY]

__getattr__ = lazy_exports(__name__, _LAZY)
