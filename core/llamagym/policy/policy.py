"""The policy side of an agent: the model with its value head, its tokenizer, how it samples (the generation
settings and backend) and the trainer that updates it. An `Agent` holds one (`agent.policy`) and adds the agent
side: prompting hooks, conversations and episodes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from llamagym.agent.choices import ChoiceTrie
from llamagym.algo.trainer import PPOTrainer
from llamagym.config import GenerationConfig, PPOConfig
from llamagym.policy.backends import IsComplete, make_backend
from llamagym.policy.context import check_prompt_length, context_length
from llamagym.policy.generation import Response
from llamagym.policy.precision import autocast_factory, resolve_device, resolve_precision
from llamagym.policy.value_head import AutoModelForCausalLMWithValueHead


class Policy:
    """A causal LM with a value head (added when missing), on `device`, sampling with `generation` and trained
    by a `PPOTrainer` with `ppo_config`."""

    def __init__(self, model: torch.nn.Module, tokenizer: Any, device: str | torch.device | None,
                 generation: GenerationConfig, ppo_config: PPOConfig, precision: str = "auto",
                 seed: int | None = None):
        self.device = resolve_device(device)
        self.model = AutoModelForCausalLMWithValueHead.wrap(model).to(self.device)
        self.model.eval()
        self.tokenizer = prepare_tokenizer(tokenizer)
        self.generation = generation
        self.generator = make_backend(generation.backend)
        self.ppo_config = ppo_config
        self.autocast = autocast_factory(self.device, resolve_precision(precision, self.device))
        self.seed = seed
        self.trainer = PPOTrainer(self.model, ppo_config, pad_token_id=self.tokenizer.pad_token_id,
                                  temperature=generation.temperature, autocast=self.autocast, seed=seed or 0)
        self.eos_token_ids = eos_token_ids(self.tokenizer, self.model)
        self.context = context_length(self.model.config)

    def check_prompt(self, prompt: Sequence[int]) -> None:
        """A prompt must leave room in the model's context for the longest response (a one-line ConfigError)."""
        check_prompt_length(len(prompt), self.context, self.generation)

    def generate(self, prompts: Sequence[Sequence[int]], is_complete: IsComplete,
                 choices: Sequence[ChoiceTrie | None] | None = None) -> list[Response]:
        """Sample one response per prompt in one batch (restricted to `choices` where given)."""
        return self.generator.generate(self, prompts, is_complete, choices)


def prepare_tokenizer(tokenizer: Any) -> Any:
    """Left padding (generation needs it) and a pad token (the end-of-sequence token if there is none)."""
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return tokenizer


def eos_token_ids(tokenizer: Any, model: AutoModelForCausalLMWithValueHead) -> set[int]:
    """Every token id that ends a response: the tokenizer's and the generation config's."""
    ids = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    configured = getattr(getattr(model.base_model, "generation_config", None), "eos_token_id", None)
    if isinstance(configured, int):
        ids.add(configured)
    elif configured:
        ids.update(configured)
    return ids


def apply_chat_template(tokenizer: Any, messages: list[dict[str, str]]) -> list[int]:
    """Token ids of the conversation with the assistant's turn opened; a plain layout if there is no template."""
    if getattr(tokenizer, "chat_template", None):
        encoded = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        ids = encoded["input_ids"] if isinstance(encoded, Mapping) or hasattr(encoded, "keys") else encoded
        return list(ids[0] if ids and isinstance(ids[0], list) else ids)
    text = "".join(f"{m['role'].capitalize()}: {m['content']}\n" for m in messages) + "Assistant:"
    return list(tokenizer(text, add_special_tokens=True)["input_ids"])


__all__ = ["Policy", "prepare_tokenizer", "eos_token_ids", "apply_chat_template"]
