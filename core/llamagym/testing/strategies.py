"""Hypothesis strategies for property tests of agents and plugins: any value a Gymnasium space holds, and model
responses that mix arbitrary text with the words an agent is listening for. Needs `hypothesis` (the `test` extra).

    @given(observation=space_values(env.observation_space))
    def test_formatter(observation): assert agent.format_observation(observation)
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, Literal

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

SEPARATORS = ["", " ", "  ", "\n", ".", ",", "!", "?", ":", "'", '"', "*", "-", "_", "\t", "[", "]", "(", ")"]


def space_values(space: Any) -> st.SearchStrategy:
    """Every value `space` contains (any Gymnasium space; unknown kinds fall back to seeded `space.sample()`)."""
    from gymnasium import spaces  # gymnasium: loaded on first use

    if isinstance(space, spaces.Discrete):
        start, n = int(space.start), int(space.n)
        return st.integers(start, start + n - 1).map(np.int64)
    if isinstance(space, spaces.Box):
        return hnp.arrays(space.dtype, space.shape, elements=_box_elements(space)).map(
            lambda values: np.clip(values, space.low, space.high).astype(space.dtype))
    if isinstance(space, spaces.MultiBinary):
        return hnp.arrays(np.int8, space.shape, elements=st.integers(0, 1))
    if isinstance(space, spaces.MultiDiscrete):
        nvec = np.asarray(space.nvec).reshape(-1)
        starts = np.asarray(space.start).reshape(-1)
        return st.tuples(*(st.integers(int(s), int(s + n - 1)) for s, n in zip(starts, nvec))).map(
            lambda values: np.asarray(values, dtype=space.dtype).reshape(space.shape))
    if isinstance(space, spaces.Tuple):
        return st.tuples(*(space_values(child) for child in space.spaces))
    if isinstance(space, spaces.Dict):
        return st.fixed_dictionaries({key: space_values(child) for key, child in space.spaces.items()})
    if isinstance(space, spaces.Text):
        return st.text(alphabet=sorted(space.character_set), min_size=space.min_length,
                       max_size=space.max_length)
    return st.integers(0, 2**31 - 1).map(lambda seed: _sample(space, seed))


def _box_elements(space: Any) -> st.SearchStrategy:
    low, high = float(np.min(space.low)), float(np.max(space.high))
    if np.issubdtype(space.dtype, np.integer):
        return st.integers(int(low), int(high))
    # one range for every element keeps the strategy simple; values are then clipped to each element's bounds
    width: Literal[32, 64] = 32 if space.dtype == np.float32 else 64
    return st.floats(low if np.isfinite(low) else None, high if np.isfinite(high) else None, allow_nan=False,
                     allow_infinity=False, width=width)


def _sample(space: Any, seed: int) -> Any:
    space.seed(seed)
    return space.sample()


def words_of(*texts: str) -> list[str]:
    """The distinct words of `texts` (a system prompt, a formatted observation), in several casings."""
    words = {w for text in texts for w in re.findall(r"\w+", text)}
    return sorted({variant for w in words for variant in (w, w.lower(), w.upper(), w.capitalize())})


def responses(words: Iterable[str] = (), prefix: str = "", key_words: Iterable[str] = ()
              ) -> st.SearchStrategy[str]:
    """Model responses: arbitrary text, and text stitched from `words` and punctuation (so a parser meets both
    responses it accepts and near misses), each after the agent's response prefix. `key_words` (the words a parser
    looks for) get a draw of their own, so they turn up even among many other words."""
    vocabulary = sorted(set(words))
    key = sorted(set(key_words))
    word = st.text(max_size=4)
    for choices in (vocabulary, key):
        if choices:
            word = st.sampled_from(choices) | word
    separator = st.sampled_from(SEPARATORS) | st.text(max_size=3)
    stitched = st.lists(st.tuples(separator, word).map("".join), max_size=8).map("".join)
    return st.one_of(st.text(), stitched).map(lambda text: prefix + text)
