"""Frozen-trunk hidden states remembered by sequence (`llamagym.policy.trunk`): the layers below the adapted ones
never change during a run, so the states a prompt and answer reach there are computed once, not in every update
that sees them again. Blackjack's 280 states make most of an update's sequences repeats after a few updates."""

from __future__ import annotations

from collections import OrderedDict

import torch


class TrunkCache:
    """At most `megabytes` of states, the least recently used dropped first (0: keep none). An entry holds a
    sequence's states from position `start` on (the shared prefix, computed apart, before it); a later update
    whose shared prefix is at least as long reads the part it needs."""

    def __init__(self, megabytes: int):
        self.capacity = megabytes * 2**20
        self.size = 0
        self.entries: OrderedDict[bytes, tuple[int, torch.Tensor]] = OrderedDict()

    def get(self, key: bytes, start: int) -> torch.Tensor | None:
        """The states of the sequence `key` from position `start` on, if they are kept."""
        found = self.entries.get(key)
        if found is None or found[0] > start:
            return None
        self.entries.move_to_end(key)
        return found[1][start - found[0]:]

    def put(self, key: bytes, start: int, states: torch.Tensor) -> None:
        if _nbytes(states) > self.capacity:
            return
        old = self.entries.pop(key, None)
        if old is not None:
            self.size -= _nbytes(old[1])
        self.entries[key] = (start, states)
        self.size += _nbytes(states)
        while self.size > self.capacity:
            _, (_, dropped) = self.entries.popitem(last=False)
            self.size -= _nbytes(dropped)


def _nbytes(states: torch.Tensor) -> int:
    return states.numel() * states.element_size()
