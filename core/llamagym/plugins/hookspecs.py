"""The hooks a llamagym plugin can implement. One function per hook; plugins implement them with `@hookimpl`.

Hooks are called with keyword arguments only. An implementation may accept fewer arguments than the spec.
Where one answer is needed (`firstresult`), the first implementation that returns something other than None wins:
implementations registered later run first, `tryfirst` / `trylast` reorder them, and the Agent's own methods
answer last, so an installed plugin can change an agent it did not write.

The core's own behaviours are default plugins in `llamagym.plugins.builtin`, registered like any other. Every hook
is called through pluggy (`llamagym.plugins.calling`), so `wrapper=True` implementations and tracing see each call.
The annotations say what each hook is given and returns; the ``register`` callbacks are typed by the protocols
`AgentRegister`, `EnvRegister` and `OpponentRegister`, which an implementation may use in its own annotations;
`Outcome` is what `llamagym_episode_outcome` answers, `PolicyScore` what `llamagym_score_policy` answers.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

import pluggy

if TYPE_CHECKING:
    from llamagym.agent.agent import Agent
    from llamagym.plugins.specs import EnvSpec
    from llamagym.rollout.games.observation import SeatObservation

PROJECT_NAME = "llamagym"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)

EnvKind = Literal["gymnasium", "aec", "parallel"]
Outcome = Literal["win", "draw", "loss"]
OpponentPolicy = Callable[["SeatObservation", random.Random], Any]


@dataclass
class PolicyScore:
    """What `llamagym_score_policy` answers: the exact expected return of an agent's greedy policy, the values of
    reference policies to read it against (``{"basic strategy": -0.0466, ...}``), a line of detail, and the exact
    return of the sampling policy (which moves with every update, before the greedy answers flip)."""

    expected_return: float
    references: dict[str, float] = field(default_factory=dict)
    detail: str = ""
    sampled_return: float | None = None  # the same for the sampling policy, where the plugin can tell


class AgentRegister(Protocol):
    """The ``register`` that `llamagym_register_agents` is called with."""

    def __call__(self, name: str, agent: type[Agent] | str, description: str = "",
                 preset: dict[str, Any] | str | None = None) -> None: ...


class EnvRegister(Protocol):
    """The ``register`` that `llamagym_register_envs` is called with."""

    def __call__(self, env_id: str, entry_point: Callable[..., Any] | str | None = None, kind: EnvKind = "gymnasium",
                 description: str = "", kwargs: dict[str, Any] | None = None) -> None: ...


class OpponentRegister(Protocol):
    """The ``register`` that `llamagym_register_opponents` is called with."""

    def __call__(self, name: str, policy: OpponentPolicy | str, envs: Iterable[str] | None = None,
                 description: str = "") -> None: ...


@hookspec
def llamagym_register_agents(register: AgentRegister) -> None:
    """Contribute named agents: call ``register(name, agent, description="", preset=None)``.

    ``agent`` is an Agent subclass or a ``"module:Class"`` string, imported only when the agent is used, so that
    listing plugins stays fast. ``preset`` optionally names recommended hyperparameters: a dict, or a path to a
    TOML file. Two plugins registering one name is an error that names both.
    """


@hookspec
def llamagym_register_envs(register: EnvRegister) -> None:
    """Contribute named environments: call ``register(env_id, entry_point=None, kind="gymnasium", description="",
    kwargs=None)``.

    ``entry_point`` is a callable or ``"module:function"`` string returning a new environment (None means
    ``gymnasium.make(env_id)``); ``kind`` is ``"gymnasium"``, ``"aec"`` or ``"parallel"``.
    """


@hookspec
def llamagym_register_opponents(register: OpponentRegister) -> None:
    """Contribute scripted opponents for PettingZoo games: call ``register(name, policy, envs=None,
    description="")``.

    ``policy(observation, rng)`` returns a move for a ``llamagym.rollout.games.SeatObservation`` (``rng`` is a
    seeded ``random.Random``); it may be a ``"module:function"`` string, imported on first use. ``envs`` lists the
    env ids it can play, each an id or a shell-style pattern such as ``"TextArena-*"`` (None: any).
    ``llamagym run --play opponent --opponent NAME`` and ``llamagym eval --opponent NAME`` use it.
    """


@hookspec(firstresult=True)
def llamagym_resolve_env(env_id: str) -> EnvSpec | None:
    """Return a ``llamagym.plugins.registry.EnvSpec`` for an ``env_id`` no plugin registered, or None to pass.

    Asked only for ids that ``llamagym_register_envs`` did not register, for example a family of ids a plugin
    makes on demand. The core's built-in plugin answers last with any id Gymnasium's own registry knows.
    """


@hookspec(firstresult=True)
def llamagym_system_prompt(agent: Agent) -> str | None:
    """Return the system prompt for ``agent`` (a string), or None to leave it to the next implementation."""


@hookspec(firstresult=True)
def llamagym_format_observation(agent: Agent, observation: Any) -> str | None:
    """Return ``observation`` rendered as the user message the model will read, or None to pass."""


@hookspec(firstresult=True)
def llamagym_extract_action(agent: Agent, response: str, observation: Any) -> Any | None:
    """Return the environment action that the model's ``response`` (text) asks for, or None to pass.

    Raise ``llamagym.ActionParseError`` when the response holds no valid action: the agent then takes its
    documented fallback action and counts the turn as invalid.
    """


@hookspec(firstresult=True)
def llamagym_response_complete(agent: Agent, response: str) -> bool | None:
    """Return True once the partial ``response`` already holds a complete action, so generation stops early.

    Return None to pass. Saves tokens: an agent whose answers are one word need not generate 32 tokens.
    """


@hookspec(firstresult=True)
def llamagym_action_choices(agent: Agent, observation: Any) -> Sequence[str] | None:
    """Return every response (the text after the agent's response prefix) the agent accepts for ``observation``,
    or None to pass.

    With a list, sampling is restricted to these responses token by token (``generation.constrained``, on by
    default) and PPO scores the same restricted distribution: no response is invalid and exploration stays on
    the actions. Suits a small, fixed set of action words, such as " stick" and " hit".
    """


@hookspec
def llamagym_shape_reward(agent: Agent, reward: float, observation: Any, response: str,
                          action: Any) -> float | None:
    """Return a number added to the environment ``reward`` of the agent's last turn, or None for no change.

    Every implementation is called (shaping terms add up) and each term is logged under its plugin's name.
    ``observation`` is what the agent saw, ``response`` what it said, ``action`` what it did.
    """


@hookspec(firstresult=True)
def llamagym_expert_action(agent: Agent, observation: Any) -> Any | None:
    """Return the action a scripted expert takes for ``observation`` (for example an optimal strategy), or None to
    pass.

    ``llamagym collect --policy expert`` plays these actions and records them as the agent's responses (written by
    ``agent.format_action(action)``), as demonstrations for ``llamagym sft``. The agent's own ``expert_action()``
    answers last.
    """


@hookspec(firstresult=True)
def llamagym_episode_outcome(agent: Agent, env_return: float, info: dict[str, Any]) -> Outcome | None:
    """Return whether an episode that just ended was a ``"win"``, a ``"draw"`` or a ``"loss"``, or None to pass.

    ``env_return`` is the episode's return; ``info`` the ``info`` of its final step (Gymnasium envs; a PettingZoo
    game passes an empty dict). When no implementation answers, ``info["outcome"]`` decides, else
    ``info["is_success"]`` (True a win, False a loss), else the sign of the return. ``llamagym eval`` reports
    win / draw / loss rates from these outcomes: a game that pays 1 for a win and 0 for a loss says so here (or in
    ``info``), or its losses count as draws.
    """


@hookspec(firstresult=True)
def llamagym_score_policy(agent: Agent, env_id: str) -> PolicyScore | None:
    """Return the exact expected return of ``agent``'s greedy policy on ``env_id``, computed rather than sampled,
    or None where this plugin cannot score that agent on that environment.

    An environment small enough to solve offers it: Blackjack asks the agent for its answer in each of the 280
    observations and values that policy table with a dynamic programme. ``llamagym run`` scores the policy
    before and after training and prints both beside the references (``run.score_policy``); without an answer it
    falls back to nothing, and the run's returns speak for themselves.
    """
