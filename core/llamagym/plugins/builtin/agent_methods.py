"""The Agent's own methods as the last answer to each behaviour hook, so plugins can override them."""

from __future__ import annotations

import inspect
from functools import lru_cache

from llamagym.plugins.hookspecs import hookimpl


@lru_cache(maxsize=None)
def _takes_observation_of(function) -> bool:
    parameters = list(inspect.signature(function).parameters.values())
    return len(parameters) >= 3 or any(p.kind is p.VAR_POSITIONAL for p in parameters)


def _takes_observation(method) -> bool:
    """Whether `extract_action(self, response, observation)` was written with the optional observation."""
    return _takes_observation_of(getattr(method, "__func__", method))


@hookimpl(trylast=True)
def llamagym_system_prompt(agent):
    return agent.get_system_prompt()


@hookimpl(trylast=True)
def llamagym_format_observation(agent, observation):
    return agent.format_observation(observation)


@hookimpl(trylast=True)
def llamagym_extract_action(agent, response, observation):
    if _takes_observation(agent.extract_action):
        return agent.extract_action(response, observation)
    return agent.extract_action(response)


@hookimpl(trylast=True)
def llamagym_response_complete(agent, response):
    return agent.response_complete(response)


@hookimpl(trylast=True)
def llamagym_action_choices(agent, observation):
    return agent.action_choices(observation)


@hookimpl(trylast=True)
def llamagym_expert_action(agent, observation):
    return agent.expert_action(observation)
