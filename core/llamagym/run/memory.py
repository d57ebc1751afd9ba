"""Handing freed memory back to the system after each update: an update allocates and frees its activations, and
glibc keeps what was freed in its arenas, so a long run's resident memory creeps up update by update (varying
sequence lengths fragment it). `malloc_trim` returns it; elsewhere than glibc this does nothing."""

from __future__ import annotations

import ctypes
import ctypes.util
from functools import lru_cache
from typing import Any


@lru_cache(maxsize=1)
def _libc() -> Any:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "malloc_trim") else None


def release_freed_memory() -> bool:
    """Return freed heap memory to the system; whether it could be asked to."""
    libc = _libc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True
