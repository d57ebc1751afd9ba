"""Helpers for `extract_action`: find the first of a set of words in free text."""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from llamagym.errors import ActionParseError


@lru_cache(maxsize=256)
def _word_pattern(words: tuple[str, ...]) -> re.Pattern[str]:
    alternatives = "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))
    return re.compile(rf"(?<![\w])({alternatives})(?![\w])", re.IGNORECASE)


def find_choice(response: str, choices: Mapping[str, Any]) -> Any | None:
    """The action of the first whole word of `response` that is a key of `choices` (any case), or None."""
    match = _word_pattern(tuple(choices)).search(response)
    if match is None:
        return None
    lowered = {k.lower(): v for k, v in choices.items()}
    return lowered[match.group(1).lower()]


def match_choice(response: str, choices: Mapping[str, Any]) -> Any:
    """Like `find_choice`, but raise `ActionParseError` (naming the accepted words) when none is present."""
    action = find_choice(response, choices)
    if action is None:
        raise ActionParseError(f"no action word ({', '.join(choices)}) in {response!r}")
    return action
