"""Batched sampling with a KV cache: one forward per new token for all prompts, rows leave as they finish.

Written here rather than through `model.generate` so that a row that has finished (end-of-turn token, or an
agent saying its response already holds an action) is dropped from the batch at once, and so that exactly the
sampled token ids come back: the PPO update trains on them, never on re-tokenised text.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from .config import GenerationConfig
from .value_head import position_ids_from_mask


@dataclass
class Response:
    """The sampled token ids of one response and why it stopped: "eos", "complete" or "length"."""

    token_ids: list[int]
    stop_reason: str


def left_pad(sequences: Sequence[Sequence[int]], pad_id: int, device: torch.device | str = "cpu"
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack sequences right-aligned (padding on the left) with their attention mask."""
    length = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), length), dtype=torch.long)
    for row, seq in enumerate(sequences):
        if seq:
            ids[row, length - len(seq):] = torch.as_tensor(seq, dtype=torch.long)
            mask[row, length - len(seq):] = 1
    return ids.to(device), mask.to(device)


def choose_tokens(logits: torch.Tensor, settings: GenerationConfig, generator: torch.Generator | None = None
                  ) -> torch.Tensor:
    """Pick one token per row: greedy, or sampled after temperature, top-k and top-p."""
    if not settings.do_sample:
        return logits.argmax(-1)
    logits = logits / settings.temperature
    if settings.top_k > 0:
        kth = torch.topk(logits, min(settings.top_k, logits.shape[-1]), dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if settings.top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        cumulative = sorted_logits.softmax(-1).cumsum(-1)
        drop = cumulative - sorted_logits.softmax(-1) >= settings.top_p  # keep the token that crosses top_p
        logits = logits.masked_fill(drop.scatter(-1, order, drop), float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


@torch.no_grad()
def sample_responses(model: torch.nn.Module, prompts: Sequence[Sequence[int]], settings: GenerationConfig, *,
                     eos_token_ids: set[int], pad_token_id: int,
                     is_complete: Callable[[int, list[int]], bool] | None = None,
                     generator: torch.Generator | None = None) -> list[Response]:
    """Generate one response per prompt with a causal LM (`model` returns `.logits`).

    `is_complete(row, token_ids)` is asked after each new token; True ends that row early.
    """
    from transformers import DynamicCache

    device = next(model.parameters()).device
    input_ids, attention_mask = left_pad(prompts, pad_token_id, device)
    position_ids = position_ids_from_mask(attention_mask)
    cache = DynamicCache()
    logits = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, cache=cache,
                   use_cache=True, logits_to_keep=1).logits[:, -1, :]
    tokens: list[list[int]] = [[] for _ in prompts]
    reasons = ["length"] * len(prompts)
    rows = list(range(len(prompts)))  # batch position -> prompt index
    next_position = position_ids[:, -1:]
    for step in range(settings.max_new_tokens):
        chosen = choose_tokens(logits.float(), settings, generator).tolist()
        keep = []
        for batch_pos, (row, token) in enumerate(zip(rows, chosen)):
            tokens[row].append(token)
            if token in eos_token_ids:
                reasons[row] = "eos"
            elif is_complete is not None and is_complete(row, tokens[row]):
                reasons[row] = "complete"
            else:
                keep.append(batch_pos)
        if not keep or step == settings.max_new_tokens - 1:
            break
        next_ids = torch.tensor([[chosen[i]] for i in keep], dtype=torch.long, device=device)
        if len(keep) < len(rows):
            index = torch.tensor(keep, dtype=torch.long, device=device)
            cache.batch_select_indices(index)
            attention_mask, next_position = attention_mask[index], next_position[index]
            rows = [rows[i] for i in keep]
        attention_mask = torch.cat([attention_mask, attention_mask.new_ones((len(rows), 1))], dim=-1)
        next_position = next_position + 1
        logits = model(input_ids=next_ids, attention_mask=attention_mask, position_ids=next_position,
                       cache=cache, use_cache=True).logits[:, -1, :]
    return [Response(t, r) for t, r in zip(tokens, reasons)]
