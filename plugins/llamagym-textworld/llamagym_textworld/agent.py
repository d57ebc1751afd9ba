"""The TextWorld agent: LlamaGym's text-world example made to learn. It reads the room and the admissible
commands, answers `command: <cmd>`, and with constrained sampling (the default) chooses among exactly the
admissible commands, as Blackjack's agent chooses between stick and hit. With `--no-constrained` it writes any
command, read from the text after "command:"."""

from __future__ import annotations

import re
from typing import Any

from llamagym import ActionParseError, Agent

from .env import CHARSET, MAX_COMMAND, commands_in

_COMMAND = re.compile(r"command:\s*([^\n]*)", re.IGNORECASE)


class TextWorldAgent(Agent):
    """Plays TextWorld games one command at a time."""

    response_prefix = "command:"
    stop_strings = ("\n",)

    def get_system_prompt(self) -> str:
        return ("You are playing a text adventure. Read what you see and pick the command that brings you closer "
                "to the goal. Answer with one command, as: command: <command>, for example command: go north.")

    def format_observation(self, observation: Any) -> str:
        return str(observation).strip() or "(the game says nothing)"

    def extract_action(self, response: str) -> str:
        match = _COMMAND.search(response)
        text = match.group(1) if match else response
        text = "".join(c for c in text if c in CHARSET)  # what the env's Text space holds
        command = " ".join(text.strip().strip("'\"`.").split()).lower()[:MAX_COMMAND]
        if not command:
            raise ActionParseError(f"no command in {response!r}")
        return command

    def response_complete(self, response: str) -> bool:
        """A line ended after a command that parses (a bare "command:" line does not end the answer)."""
        if "\n" not in response:
            return False
        try:
            self.extract_action(response)
        except ActionParseError:
            return False
        return True

    def action_choices(self, observation: Any) -> list[str] | None:
        commands = commands_in(str(observation))
        return [f" {command}" for command in commands] or None

    def fallback_action(self, observation: Any) -> str:
        return "look"

    def format_action(self, action: Any) -> str:
        return f" {action}"
