"""Constrained decoding over a finite set of responses.

An agent that can list the responses it accepts (`Agent.action_choices`: the action words of a game) has the
policy sample only among them, token by token, and PPO scores the same restricted distribution. No response is
then invalid, and exploration is spent on the actions instead of on text the parser rejects.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch

from llamagym.errors import UsageError

_END = -1  # trie key marking that a choice ends at this node


class ChoiceTrie:
    """The token sequences of the allowed responses, as a prefix tree.

    Where one choice ends and a longer one goes on (" 1" and " 10"), `end_token_id` is what ends the shorter one.
    """

    def __init__(self, sequences: Sequence[Sequence[int]], end_token_id: int):
        self.end_token_id = end_token_id
        self.root: dict[int, Any] = {}
        for sequence in sequences:
            if not sequence:
                raise UsageError("an action choice is empty: every choice needs at least one token")
            node = self.root
            for token in sequence:
                node = node.setdefault(int(token), {})
            node[_END] = {}

    def allowed(self, prefix: Sequence[int]) -> list[int]:
        """The tokens that may follow `prefix`; an empty list when `prefix` is a complete choice."""
        node = self._node(prefix)
        if node is None:
            return []
        tokens = [token for token in node if token != _END]
        if tokens and _END in node:
            tokens.append(self.end_token_id)
        return tokens

    def allowed_per_position(self, response: Sequence[int]) -> list[list[int]]:
        """For each token of `response`, the tokens that were allowed at its position (ValueError if `response`
        leaves the choices)."""
        self._node(response)
        return [self.allowed(response[:position]) for position in range(len(response))]

    def _node(self, prefix: Sequence[int]) -> dict[int, Any] | None:
        """The node `prefix` leads to; None when its last token is the end token closing a choice."""
        node = self.root
        for position, token in enumerate(prefix):
            if token == self.end_token_id and _END in node and position == len(prefix) - 1:
                return None
            if token not in node:
                raise ValueError(f"token {token} at position {position} continues none of the choices")
            node = node[token]
        return node


def build_trie(tokenizer: Any, choices: Sequence[str], end_token_id: int) -> ChoiceTrie:
    """The trie of `choices` (response texts after the agent's response prefix), tokenised on their own."""
    sequences = [tokenizer(text, add_special_tokens=False)["input_ids"] for text in dict.fromkeys(choices)]
    return ChoiceTrie(sequences, end_token_id)


def restrict_logits(logits: torch.Tensor, allowed: Iterable[tuple]) -> torch.Tensor:
    """`logits` with, at each listed place, every token but the allowed ones given the lowest finite logit (zero
    probability, and entropies stay defined). Each entry is ``(*index, tokens)``: ``(row, tokens)`` for the
    sampler's (rows, vocab) logits, ``(row, position, tokens)`` for PPO's (rows, K, vocab) response logits."""
    allowed = list(allowed)
    if not allowed:
        return logits
    blocked = torch.zeros_like(logits, dtype=torch.bool)
    for *index, tokens in allowed:
        blocked[tuple(index)] = True
        blocked[tuple(index) + (tokens,)] = False
    return logits.masked_fill(blocked, torch.finfo(logits.dtype).min)
