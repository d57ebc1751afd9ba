"""The QA agent: the question in, a short answer on one line out."""

from __future__ import annotations

from typing import Any

from llamagym import ActionParseError, Agent

from .env import CHARSET, MAX_ANSWER


class QAAgent(Agent):
    """Answers the question it is shown; the answer (its first line) is what the judge grades."""

    response_prefix = "Answer:"
    stop_strings = ("\n",)

    def get_system_prompt(self) -> str:
        return "Answer each question correctly in a few words, on one line."

    def format_observation(self, observation: Any) -> str:
        return f"Question: {observation}"

    def extract_action(self, response: str) -> str:
        answer = response[len(self.response_prefix):] if response.startswith(self.response_prefix) else response
        answer = "".join(c for c in answer if c in CHARSET or c == "\n")  # what the env's Text space holds
        answer = answer.strip().splitlines()[0].strip()[:MAX_ANSWER] if answer.strip() else ""
        if not answer:
            raise ActionParseError(f"no answer in {response!r}")
        return answer

    def fallback_action(self, observation: Any) -> str:
        return ""  # an empty answer: the judge grades it (incorrect), so a silent answer is never rewarded

    def format_action(self, action: Any) -> str:
        return f" {action}"
