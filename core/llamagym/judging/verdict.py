"""A judge's answer as a score in [0, 1]: "correct" (or yes, right, true) is 1, "incorrect" (or no, wrong,
false) is 0, "7/10" or "score: 0.7" is 0.7. Anything else is a `MalformedVerdictError`, never a silent 0."""

from __future__ import annotations

import re
from dataclasses import dataclass

from llamagym.judging.judge import MalformedVerdictError

POSITIVE = ("correct", "yes", "right", "true", "pass")
NEGATIVE = ("incorrect", "no", "wrong", "false", "fail")
_WORD = re.compile(r"[a-z]+")
_NEGATED = re.compile(r"\bnot\s+(?:correct|right|true)\b")
_FRACTION = re.compile(r"(-?\d+(?:\.\d+)?)\s*/\s*(\d+(?:\.\d+)?)")
_SCORE = re.compile(r"score\s*[:=]?\s*(-?\d+(?:\.\d+)?)")


@dataclass(frozen=True)
class Verdict:
    """What a judge decided: `score` in [0, 1] (1: correct) and the text it answered with."""

    score: float
    text: str

    @property
    def correct(self) -> bool:
        return self.score >= 0.5


def parse_verdict(text: str, judge: str = "the judge") -> Verdict:
    """The verdict in a judge's answer: the first verdict word, else a fraction ("7/10") or "score: 0.7"."""
    lowered = _NEGATED.sub("incorrect", text.strip().lower())
    for word in _WORD.findall(lowered):
        if word in NEGATIVE:
            return Verdict(0.0, text)
        if word in POSITIVE:
            return Verdict(1.0, text)
    fraction = _FRACTION.search(lowered)
    if fraction is not None and float(fraction.group(2)) > 0:
        return Verdict(_clamp(float(fraction.group(1)) / float(fraction.group(2)), text, judge), text)
    score = _SCORE.search(lowered)
    if score is not None:
        value = float(score.group(1))
        return Verdict(_clamp(value / 10 if value > 1 else value, text, judge), text)
    raise MalformedVerdictError(f"{judge} answered {_short(text)}, which is no verdict (expected 'correct' or "
                                f"'incorrect', or a score like 7/10); the episode is dropped")


def _clamp(value: float, text: str, judge: str) -> float:
    if not 0.0 <= value <= 1.0:
        raise MalformedVerdictError(f"{judge} answered {_short(text)}: a score outside 0..1")
    return value


def _short(text: str, limit: int = 80) -> str:
    one_line = " ".join(text.split())
    return repr(one_line if len(one_line) <= limit else one_line[:limit] + "...")
