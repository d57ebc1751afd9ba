"""The model's context: how many positions a prompt and its response may take together. A prompt that leaves no
room for the response is refused before generation with one line saying what to shorten, rather than failing
inside the model (a GPT-2-style model's position table ends in `IndexError: index out of range in self`)."""

from __future__ import annotations

from typing import Any

from llamagym.config import GenerationConfig
from llamagym.errors import ConfigError

# where a transformers config keeps its context length (Llama, Qwen, ... / GPT-2 / older GPT-2 / others)
CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "n_ctx", "max_sequence_length", "seq_length")


def context_length(config: Any) -> int | None:
    """The model's context length in tokens, from its config (None where the config does not say)."""
    for key in CONTEXT_KEYS:
        value = getattr(config, key, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def check_prompt_length(tokens: int, context: int | None, generation: GenerationConfig) -> None:
    """A prompt of `tokens` tokens must leave room for `generation.max_new_tokens` more within the context."""
    if context is None or tokens + generation.max_new_tokens <= context:
        return
    kept = generation.max_history_turns
    shorter = (f"keep fewer turns in the prompt (generation.max_history_turns, now {kept or '0: every turn'}), "
               f"shorten the system prompt or the observation")
    if tokens >= context:
        raise ConfigError(f"the prompt is {tokens} tokens, beyond the model's context of {context} tokens; "
                          f"{shorter}")
    raise ConfigError(f"the prompt is {tokens} tokens and up to generation.max_new_tokens = "
                      f"{generation.max_new_tokens} more are generated, beyond the model's context of {context} "
                      f"tokens; {shorter}, or lower generation.max_new_tokens (prompt + max_new_tokens <= "
                      f"{context})")


__all__ = ["context_length", "check_prompt_length"]
