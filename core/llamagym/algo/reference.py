"""Reference log-probs remembered by sequence: the reference policy (the base weights with LoRA switched off, or
the frozen copy) never changes during a run, so a prompt and answer scored once need no second forward pass.
Environments whose prompts repeat (Blackjack has 280 states) stop paying for the reference after a few updates."""

from __future__ import annotations

import hashlib
from array import array
from collections import OrderedDict
from collections.abc import Sequence

import torch


def sequence_key(query: Sequence[int], response: Sequence[int], allowed: Sequence[Sequence[int]] | None) -> bytes:
    """A 16-byte digest of what the reference log-probs depend on: the tokens, and any constraint on the answer."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(array("q", query).tobytes())
    digest.update(b"|")
    digest.update(array("q", response).tobytes())
    for tokens in allowed or ():
        digest.update(b"/")
        digest.update(array("q", tokens).tobytes())
    return digest.digest()


class ReferenceCache:
    """At most `capacity` sequences' reference log-probs, the least recently used dropped first (0: keep none)."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.entries: OrderedDict[bytes, torch.Tensor] = OrderedDict()
        self.hits = self.misses = 0

    def get(self, key: bytes) -> torch.Tensor | None:
        found = self.entries.get(key)
        if found is None:
            self.misses += 1
            return None
        self.entries.move_to_end(key)
        self.hits += 1
        return found

    def put(self, key: bytes, logprobs: torch.Tensor) -> None:
        if self.capacity == 0:
            return
        self.entries[key] = logprobs
        self.entries.move_to_end(key)
        while len(self.entries) > self.capacity:
            self.entries.popitem(last=False)

    def state_dict(self) -> dict:
        """The entries in recency order, so a resumed run scores (and drops) exactly what the uninterrupted one
        would."""
        return {"keys": list(self.entries), "logprobs": list(self.entries.values())}

    def load_state_dict(self, state: dict) -> None:
        self.entries = OrderedDict(zip(state.get("keys", []), state.get("logprobs", [])))
        while len(self.entries) > self.capacity:
            self.entries.popitem(last=False)
