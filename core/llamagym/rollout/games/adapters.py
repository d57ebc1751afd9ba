"""Several policies on one base model: each is its own named LoRA adapter (peft) with its own value head.

A policy activates its adapter before it generates or trains and puts the previous one back afterwards, so the
adapter that was active when the engine was built (the main policy's) is active whenever the engine is idle.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from llamagym.errors import ConfigError

if TYPE_CHECKING:
    from llamagym.agent.agent import Agent

BASE = "__base__"  # not an adapter: the base model with every adapter switched off


def peft_model_of(agent: Agent, purpose: str) -> Any:
    """The agent's peft model; a clear error when the agent trains the full model instead of LoRA adapters."""
    if not agent.model.is_peft_model:
        raise ConfigError(f"{purpose} needs LoRA adapters (several policies share one base model); "
                          f"drop --no-lora")
    return agent.model.pretrained_model


def active_adapter(agent: Agent) -> str | None:
    return agent.model.pretrained_model.active_adapter if agent.model.is_peft_model else None


@contextlib.contextmanager
def adapter_active(agent: Agent, name: str | None) -> Iterator[None]:
    """Run the block with adapter `name` active (BASE: adapters off; None: leave things as they are)."""
    if name is None:
        yield
        return
    peft_model = agent.model.pretrained_model
    if name == BASE:
        with peft_model.disable_adapter():
            yield
        return
    previous = peft_model.active_adapter
    if previous == name:
        yield
        return
    peft_model.set_adapter(name)
    try:
        yield
    finally:
        peft_model.set_adapter(previous)


def add_adapter(agent: Agent, name: str, weights: str | None = None) -> None:
    """A new adapter shaped like the active one (fresh, so equal to the base model), or loaded from `weights`."""
    peft_model = peft_model_of(agent, f"adapter {name!r}")
    previous = peft_model.active_adapter
    if weights is not None:
        peft_model.load_adapter(weights, adapter_name=name, is_trainable=False)
    else:
        peft_model.add_adapter(name, dataclasses.replace(peft_model.peft_config[previous]))
    peft_model.set_adapter(previous)  # reset which adapter's parameters require gradients


def remove_adapter(agent: Agent, name: str) -> None:
    peft_model = agent.model.pretrained_model
    if name in peft_model.peft_config and name != peft_model.active_adapter:
        peft_model.delete_adapter(name)


def adapter_state(agent: Agent, name: str) -> dict[str, Any]:
    """A CPU copy of one adapter's weights (a snapshot for the self-play pool)."""
    from peft import get_peft_model_state_dict  # peft (torch): loaded on first use

    state = get_peft_model_state_dict(agent.model.pretrained_model, adapter_name=name)
    return {key: value.detach().to("cpu", copy=True) for key, value in state.items()}


def load_adapter_state(agent: Agent, name: str, state: dict[str, Any]) -> None:
    from peft import set_peft_model_state_dict  # peft (torch): loaded on first use

    set_peft_model_state_dict(agent.model.pretrained_model, state, adapter_name=name)


def clone_agent(agent: Agent, seed_offset: int = 0) -> Agent:
    """Another Agent of the same class on the same model weights (its own conversations, value head, trainer).

    Build it while the adapter it will use is active: its optimiser holds the parameters that require gradients
    at that moment (that adapter and the new value head), and nothing else.
    """
    from llamagym.policy.value_head import AutoModelForCausalLMWithValueHead  # torch: loaded on first use

    model = AutoModelForCausalLMWithValueHead(agent.model.pretrained_model)
    clone = type(agent)(model, agent.tokenizer, agent.device,
                        generate_config_dict=dataclasses.asdict(agent.generation),
                        ppo_config_dict=dataclasses.asdict(agent.ppo_config),
                        action_space=agent.action_space, plugin_manager=agent.plugin_manager,
                        seed=None if agent.seed is None else agent.seed + seed_offset)
    clone.policy.autocast = agent.policy.autocast
    clone.trainer.autocast = agent.policy.autocast
    return clone
