"""The public import path of the answer-matching helpers plugins use (`from llamagym.parsing import find_choice,
match_choice`); they live in `llamagym.agent.parsing`."""

from llamagym.agent.parsing import find_choice, match_choice

__all__ = ["find_choice", "match_choice"]
