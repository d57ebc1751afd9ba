"""The hooks a llamagym plugin can implement. One function per hook; plugins implement them with `@hookimpl`.

Hooks are called with keyword arguments only. An implementation may accept fewer arguments than the spec.
Where one answer is needed (`firstresult`), the first implementation that returns something other than None wins:
implementations registered later run first, `tryfirst` / `trylast` reorder them, and the Agent's own methods
answer last, so an installed plugin can change an agent it did not write.
"""

from __future__ import annotations

import pluggy

PROJECT_NAME = "llamagym"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def llamagym_register_agents(register):
    """Contribute named agents: call ``register(name, agent, description="", preset=None)``.

    ``agent`` is an Agent subclass or a ``"module:Class"`` string, imported only when the agent is used, so that
    listing plugins stays fast. ``preset`` optionally names recommended hyperparameters: a dict, or a path to a
    TOML file. Two plugins registering one name is an error that names both.
    """


@hookspec
def llamagym_register_envs(register):
    """Contribute named environments: call ``register(env_id, entry_point=None, kind="gymnasium", description="",
    kwargs=None)``.

    ``entry_point`` is a callable or ``"module:function"`` string returning a new environment (None means
    ``gymnasium.make(env_id)``); ``kind`` is ``"gymnasium"``, ``"aec"`` or ``"parallel"``.
    """


@hookspec
def llamagym_register_opponents(register):
    """Contribute scripted opponents for PettingZoo games: call ``register(name, policy, envs=None,
    description="")``.

    ``policy(observation, rng)`` returns a move for a ``llamagym.rollout.games.SeatObservation`` (``rng`` is a
    seeded ``random.Random``); it may be a ``"module:function"`` string, imported on first use. ``envs`` lists the
    env ids it can play (None: any). ``llamagym run --play opponent --opponent NAME`` and ``llamagym eval
    --opponent NAME`` use it.
    """


@hookspec(firstresult=True)
def llamagym_system_prompt(agent):
    """Return the system prompt for ``agent`` (a string), or None to leave it to the next implementation."""


@hookspec(firstresult=True)
def llamagym_format_observation(agent, observation):
    """Return ``observation`` rendered as the user message the model will read, or None to pass."""


@hookspec(firstresult=True)
def llamagym_extract_action(agent, response, observation):
    """Return the environment action that the model's ``response`` (text) asks for, or None to pass.

    Raise ``llamagym.ActionParseError`` when the response holds no valid action: the agent then takes its
    documented fallback action and counts the turn as invalid.
    """


@hookspec(firstresult=True)
def llamagym_response_complete(agent, response):
    """Return True once the partial ``response`` already holds a complete action, so generation stops early.

    Return None to pass. Saves tokens: an agent whose answers are one word need not generate 32 tokens.
    """


@hookspec(firstresult=True)
def llamagym_action_choices(agent, observation):
    """Return every response (the text after the agent's response prefix) the agent accepts for ``observation``,
    or None to pass.

    With a list, sampling is restricted to these responses token by token (``generation.constrained``, on by
    default) and PPO scores the same restricted distribution: no response is invalid and exploration stays on
    the actions. Suits a small, fixed set of action words, such as " stick" and " hit".
    """


@hookspec
def llamagym_shape_reward(agent, reward, observation, response, action):
    """Return a number added to the environment ``reward`` of the agent's last turn, or None for no change.

    Every implementation is called (shaping terms add up) and each term is logged under its plugin's name.
    ``observation`` is what the agent saw, ``response`` what it said, ``action`` what it did.
    """


@hookspec(firstresult=True)
def llamagym_expert_action(agent, observation):
    """Return the action a scripted expert takes for ``observation`` (for example an optimal strategy), or None to
    pass.

    ``llamagym collect --policy expert`` plays these actions and records them as the agent's responses (written by
    ``agent.format_action(action)``), as demonstrations for ``llamagym sft``. The agent's own ``expert_action()``
    answers last.
    """
