"""Batched sampling with a KV cache: one forward per new token for all prompts, rows leave as they finish.

Written here rather than through `model.generate` so that a row that has finished (end-of-turn token, or an
agent saying its response already holds an action) is dropped from the batch at once, so that a prompt prefix all
rows share (system prompt, chat template) is computed once, and so that exactly the sampled token ids come back:
the PPO update trains on them, never on re-tokenised text.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from llamagym.agent.choices import ChoiceTrie, restrict_logits
from llamagym.config import GenerationConfig

MIN_SHARED_PREFIX = 8  # below this many shared tokens the separate prefix pass is not worth it


@dataclass
class Response:
    """The sampled token ids of one response and why it stopped: "eos", "complete" or "length".

    `logprobs` and `values` (one per token) are the sampling policy's own log-probs of the sampled tokens and its
    values before each, recorded when the sampling distribution is the one PPO trains (plain temperature sampling,
    no top-k or top-p): the update then takes them as its old log-probs and values instead of scoring again."""

    token_ids: list[int]
    stop_reason: str
    logprobs: list[float] | None = None
    values: list[float] | None = None


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


def shared_prefix_length(sequences: Sequence[Sequence[int]], keep: int = 1) -> int:
    """Length of the prefix all sequences share, leaving at least `keep` tokens of each after it."""
    if not sequences:
        return 0
    limit = min(len(s) for s in sequences) - keep
    first = sequences[0]
    length = 0
    while length < limit and all(s[length] == first[length] for s in sequences):
        length += 1
    return max(length, 0)


def split_shared_prefix(sequences: Sequence[Sequence[int]], pad_id: int, device: torch.device | str,
                        keep: int = 1, enabled: bool = True
                        ) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor]:
    """(prefix ids (1, P) or None, left-padded rest (B, L), attention mask (B, P + L))."""
    length = shared_prefix_length(sequences, keep) if enabled and len(sequences) > 1 else 0
    if length < MIN_SHARED_PREFIX:
        ids, mask = left_pad(sequences, pad_id, device)
        return None, ids, mask
    prefix = torch.as_tensor([list(sequences[0][:length])], dtype=torch.long, device=device)
    ids, mask = left_pad([s[length:] for s in sequences], pad_id, device)
    return prefix, ids, torch.cat([mask.new_ones((len(sequences), length)), mask], dim=1)


def samples_training_distribution(settings: GenerationConfig) -> bool:
    """Whether tokens are drawn from softmax(logits / temperature) itself, the distribution PPO's ratio is taken
    against (top-k and top-p truncate it; greedy decoding is not sampling)."""
    return settings.do_sample and settings.top_k == 0 and settings.top_p >= 1.0


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
        probs = sorted_logits.softmax(-1)
        drop = probs.cumsum(-1) - probs >= settings.top_p  # keep the token that crosses top_p
        logits = logits.masked_fill(drop.scatter(-1, order, drop), float("-inf"))
    return torch.multinomial(torch.softmax(logits, dim=-1), 1, generator=generator).squeeze(-1)


@torch.no_grad()
def sample_responses(policy: Any, prompts: Sequence[Sequence[int]], settings: GenerationConfig, *,
                     eos_token_ids: set[int], pad_token_id: int,
                     is_complete: Callable[[int, list[int]], bool] | None = None,
                     generator: torch.Generator | None = None,
                     choices: Sequence[ChoiceTrie | None] | None = None) -> list[Response]:
    """Generate one response per prompt with `policy` (an `AutoModelForCausalLMWithValueHead`).

    `is_complete(row, token_ids)` is asked after each new token; True ends that row early. A row with a
    `choices` trie samples only tokens that continue one of its choices, and ends when one is complete.
    """
    from transformers import DynamicCache  # transformers: most of a second to import, beyond torch

    device = policy.device
    prefix, input_ids, attention_mask = split_shared_prefix(prompts, pad_token_id, device,
                                                            enabled=policy.splits_decoder)
    cache = policy.prefix_cache(prefix, len(prompts)) if prefix is not None else DynamicCache()
    hidden = policy.hidden_states(input_ids, attention_mask, cache=cache)
    next_position = (attention_mask.sum(-1, keepdim=True) - 1)  # position of each row's last token
    tokens: list[list[int]] = [[] for _ in prompts]
    record = samples_training_distribution(settings)
    logprobs: list[list[float]] = [[] for _ in prompts]
    values: list[list[float]] = [[] for _ in prompts]
    reasons = ["length"] * len(prompts)
    rows = list(range(len(prompts)))  # batch position -> prompt index
    for step in range(settings.max_new_tokens):
        logits = policy.next_token_logits(hidden)
        if choices is not None:
            logits = restrict_logits(logits, [(pos, trie.allowed(tokens[row]))
                                              for pos, row in enumerate(rows) if (trie := choices[row]) is not None])
        chosen_ids = choose_tokens(logits, settings, generator)
        chosen = chosen_ids.tolist()
        if record:
            step_logprobs, step_values = _sampled_logprobs_and_values(policy, hidden, logits, chosen_ids, settings)
        keep = []
        for batch_pos, (row, token) in enumerate(zip(rows, chosen)):
            tokens[row].append(token)
            if record:
                logprobs[row].append(step_logprobs[batch_pos])
                values[row].append(step_values[batch_pos])
            if token in eos_token_ids:
                reasons[row] = "eos"
            elif choices is not None and (trie := choices[row]) is not None and not trie.allowed(tokens[row]):
                reasons[row] = "complete"
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
        hidden = policy.hidden_states(next_ids, attention_mask, cache=cache, position_ids=next_position)
    if not record:
        return [Response(t, r) for t, r in zip(tokens, reasons)]
    return [Response(t, r, lp, v) for t, r, lp, v in zip(tokens, reasons, logprobs, values)]


def _sampled_logprobs_and_values(policy: Any, hidden: torch.Tensor, logits: torch.Tensor, chosen: torch.Tensor,
                                 settings: GenerationConfig) -> tuple[list[float], list[float]]:
    """log softmax(logits / T) at each row's sampled token, as the trainer computes it, and the value head on the
    hidden state the token was sampled from."""
    logprobs = torch.log_softmax(logits / settings.temperature, dim=-1).gather(-1, chosen[:, None]).squeeze(-1)
    with torch.autocast(device_type=hidden.device.type, enabled=False):
        values = policy.v_head(hidden[:, -1].float()).squeeze(-1)
    return logprobs.float().tolist(), values.float().tolist()
