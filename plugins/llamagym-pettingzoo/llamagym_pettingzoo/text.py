"""Small text helpers shared by the game agents: reading a number or a word out of a response."""

from __future__ import annotations

import re

from llamagym import ActionParseError
from llamagym.multiagent import IllegalMoveError

_NUMBER = re.compile(r"\d+")


def first_number(response: str, low: int, high: int) -> int:
    """The first whole number in `response`; an ActionParseError if there is none, an IllegalMoveError (a move
    was named, so generation rightly stopped) if it lies outside low..high."""
    match = _NUMBER.search(response)
    if match is None:
        raise ActionParseError(f"no number in {response!r}")
    number = int(match.group())
    if not low <= number <= high:
        raise IllegalMoveError(f"{number} is not between {low} and {high}")
    return number


def has_digit(response: str) -> bool:
    """Whether the response holds a digit yet (the boards here number their cells and columns 1-9)."""
    return _NUMBER.search(response) is not None  # the parser's own pattern ("¹" is isdigit() but no number)


def listing(items: list[str]) -> str:
    return ", ".join(items) if items else "none"
