"""`Judge`: the base class of every judge. A subclass answers `verdict(question, answer, reference)`; `reward`
maps the verdict's score in [0, 1] onto [incorrect_reward, correct_reward]. The errors a judge raises are
`JudgeError`s (each one line), by cause."""

from __future__ import annotations

from typing import TYPE_CHECKING

from llamagym.errors import JudgeError

if TYPE_CHECKING:
    from llamagym.judging.verdict import Verdict


class JudgeUnreachableError(JudgeError):
    """The judge's server refused the connection, could not be resolved, or answered with an HTTP error."""


class JudgeTimeoutError(JudgeError):
    """The judge took longer than its timeout."""


class MalformedVerdictError(JudgeError):
    """The judge answered, but with no verdict in it (or with something that is no chat completion)."""


class Judge:
    """A model that grades answers. `correct_reward` and `incorrect_reward` set the two ends of the reward."""

    name = "judge"

    def __init__(self, correct_reward: float = 1.0, incorrect_reward: float = 0.0):
        self.correct_reward = float(correct_reward)
        self.incorrect_reward = float(incorrect_reward)

    def verdict(self, question: str, answer: str, reference: str | None = None) -> Verdict:
        """The judge's verdict on `answer`; a JudgeError if it gives none."""
        raise NotImplementedError(f"{type(self).__name__} must define verdict(question, answer, reference)")

    def reward(self, question: str, answer: str, reference: str | None = None) -> float:
        """The verdict as a reward: `incorrect_reward + score * (correct_reward - incorrect_reward)`."""
        score = self.verdict(question, answer, reference).score
        return self.incorrect_reward + score * (self.correct_reward - self.incorrect_reward)

    def describe(self) -> str:
        return self.name

    def close(self) -> None:
        """Release what the judge holds (a model, a connection); it may be used again after."""
