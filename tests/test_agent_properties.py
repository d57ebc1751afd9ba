"""Property tests of every first-party agent (hypothesis): arbitrary observations of its environment always
format to a prompt, and arbitrary responses always give a valid action or the documented ActionParseError.

A new first-party plugin adds its agents to ENV_OF_AGENT (the environment whose spaces the strategies draw
from); `test_every_first_party_agent_is_covered` fails until it does."""

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from llamagym import ActionParseError
from llamagym.rollout.games.game_agent import IllegalMoveError
from llamagym.plugins.manager import get_plugin_manager, plugin_records
from llamagym.plugins.registry import get_registry
from llamagym.testing.strategies import responses, space_values, words_of

REPO = Path(__file__).resolve().parents[1]
ENV_OF_AGENT = {"blackjack": "Blackjack-v1", "tictactoe": "tictactoe_v3", "connect_four": "connect_four_v3",
                "rps": "rps_v2", "leduc_holdem": "leduc_holdem_v4", "texas_holdem": "texas_holdem_v4",
                "qa": "QA-v0", "textarena": "TextArena-GuessTheNumber-v0",
                "textworld": "TextWorld-coin_collector-L1-s0"}
EXAMPLES = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow],
                    derandomize=True)  # the same examples every run: a failure reproduces, none comes and goes


def first_party_agents():
    """Agents registered by distributions whose source lives in this repository's plugins/ directory."""
    distributions = {r.name: r.distribution for r in plugin_records(get_plugin_manager())}
    return sorted(spec.name for spec in get_registry().agents.values()
                  if distributions.get(spec.plugin) and (REPO / "plugins" / distributions[spec.plugin]).is_dir())


def test_every_first_party_agent_is_covered():
    agents = first_party_agents()
    assert "blackjack" in agents
    missing = sorted(set(agents) - set(ENV_OF_AGENT))
    assert not missing, f"add the environment of {missing} to ENV_OF_AGENT in {Path(__file__).name}"


def spaces_of(env_id):
    """(observation space, action space, what the agent is shown for a raw observation)."""
    spec = get_registry().env(env_id)
    env = spec.make()
    try:
        if spec.kind == "gymnasium":
            return env.observation_space, env.action_space, lambda raw: raw
        from llamagym.rollout.games.observation import seat_observation

        player = env.possible_agents[0]  # PettingZoo: every seat of a first-party game has the same spaces
        action_space = env.action_space(player)
        # a game agent reads the engine's SeatObservation: the raw observation split from its action mask
        return env.observation_space(player), action_space, lambda raw: seat_observation(raw, player, 0, action_space)
    finally:
        env.close()


def string_literals(agent_class):
    """The one-word string constants of the module defining `agent_class`: the words its parser likely wants."""
    import ast
    import inspect
    import re

    tree = ast.parse(inspect.getsource(inspect.getmodule(agent_class)))
    return [node.value for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and re.fullmatch(r"\w+", node.value)]


@pytest.fixture(scope="module", params=sorted(ENV_OF_AGENT))
def subject(request):
    """(agent, observation space, action space), the agent on the tiny model with every installed plugin."""
    from llamagym.testing import tiny_model_and_tokenizer

    observation_space, action_space, shown = spaces_of(ENV_OF_AGENT[request.param])
    model, tokenizer = tiny_model_and_tokenizer()
    agent_class = get_registry().agent(request.param).load()
    agent = agent_class(model, tokenizer, "cpu", {"max_new_tokens": 4}, action_space=action_space)
    # a seat is only asked to move when at least one move is legal
    observations = space_values(observation_space).map(shown).filter(
        lambda seen: getattr(seen, "legal_actions", None) != ())
    return agent, observations, action_space


def test_formatter_renders_any_observation(subject):
    agent, observations, _ = subject
    hook = agent.plugin_manager.hook

    @EXAMPLES
    @given(observation=observations)
    def check(observation):
        text = hook.llamagym_format_observation(agent=agent, observation=observation)
        assert isinstance(text, str) and text.strip()

    check()


def test_extractor_returns_a_valid_action_or_the_parse_error(subject):
    agent, observations, action_space = subject
    hook = agent.plugin_manager.hook
    literals = string_literals(type(agent))
    words = words_of(hook.llamagym_system_prompt(agent=agent),
                     hook.llamagym_format_observation(agent=agent, observation=observations.example()), *literals)
    outcomes = {"action": 0, "illegal move": 0, "parse error": 0}

    @EXAMPLES
    @given(response=responses(words, agent.response_prefix, key_words=words_of(*literals)), observation=observations)
    def check(response, observation):
        try:
            action = hook.llamagym_extract_action(agent=agent, response=response, observation=observation)
        except IllegalMoveError:  # a move was named, just not a legal one: stopping there was right
            outcomes["illegal move"] += 1
            return
        except ActionParseError:
            outcomes["parse error"] += 1
            assert not hook.llamagym_response_complete(agent=agent, response=response), (
                "generation stopped early on a response that does not parse")
            return
        outcomes["action"] += 1
        assert action is not None and action_space.contains(action), f"{action!r} is not in {action_space}"
        assert action == hook.llamagym_extract_action(agent=agent, response=response, observation=observation)

    check()
    # both branches were exercised: responses that name a move (legal or not) and responses that name none
    assert outcomes["action"] + outcomes["illegal move"] and outcomes["parse error"], outcomes


def test_response_complete_answers_any_text(subject):
    agent, _, _ = subject
    hook = agent.plugin_manager.hook

    @EXAMPLES
    @given(response=responses(words_of(hook.llamagym_system_prompt(agent=agent)), agent.response_prefix))
    def check(response):
        assert hook.llamagym_response_complete(agent=agent, response=response) in (True, False)

    check()


def _spaces():
    import numpy as np
    from gymnasium import spaces

    return [spaces.Discrete(3, start=-1), spaces.Box(low=np.array([0.0, -1.0]), high=np.array([1.0, 5.0])),
            spaces.Box(-np.inf, np.inf, (2, 2)), spaces.Box(0, 255, (3,), dtype=np.uint8), spaces.MultiBinary(4),
            spaces.MultiDiscrete([2, 5], start=[1, -2]), spaces.Text(5, charset="ab"),
            spaces.Dict({"observation": spaces.MultiBinary([2, 3]), "action_mask": spaces.MultiBinary(9)}),
            spaces.Tuple((spaces.Discrete(32), spaces.Discrete(11), spaces.Discrete(2))),
            spaces.Sequence(spaces.Discrete(4))]


@pytest.mark.parametrize("space", _spaces(), ids=lambda s: type(s).__name__)
def test_space_values_stay_in_their_space(space):
    @settings(max_examples=50, deadline=None)
    @given(value=space_values(space))
    def check(value):
        assert space.contains(value), value

    check()
