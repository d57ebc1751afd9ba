"""The text games: what the text says matches the env's state, the shortest-path reference solves both games
through the wrapper, the agents parse their words, and a tiny model plays and trains a few episodes."""

import importlib.metadata
import json

import pytest

from llamagym.run.loop import train_loop
from llamagym.testing.engines import UpdateLog

from llamagym import ActionParseError
from llamagym.config import RunConfig, build, load_toml
from llamagym.plugins.registry import Registry
from llamagym.rollout.gym import RolloutEngine
from llamagym_textgames import plugin
from llamagym_textgames.agents import FrozenLakeAgent, TaxiAgent
from llamagym_textgames.envs import TAXI_ACTIONS
from llamagym_textgames.solver import play_optimally, shortest_plan


@pytest.fixture
def registry(llamagym_plugin_manager):
    llamagym_plugin_manager.register(plugin, name="textgames")
    return Registry(llamagym_plugin_manager)


def test_the_plugin_registers_both_games_and_agents(registry):
    assert registry.agent("frozenlake").load() is FrozenLakeAgent and registry.agent("taxi").load() is TaxiAgent
    lake = registry.env("FrozenLakeText-v0").make()
    assert lake.spec.max_episode_steps == 20 and not lake.unwrapped.spec.kwargs.get("is_slippery", True)
    assert registry.env("TaxiText-v0").make().spec.max_episode_steps == 50


def test_the_lake_text_shows_where_you_are_and_what_is_next_to_you(registry):
    env = registry.env("FrozenLakeText-v0").make()
    text, _ = env.reset(seed=0)
    assert text.splitlines()[1:5] == ["@FFF", "FHFH", "FFFH", "HFFG"]
    assert "row 1, column 1" in text and "right: frozen ice" in text and "up: the edge" in text
    text, *_ = env.step(1)  # down
    assert text.splitlines()[2] == "@HFH" and "row 2, column 1" in text and "right: a hole" in text


def test_the_taxi_text_matches_the_decoded_state(registry):
    env = registry.env("TaxiText-v0").make()
    for seed in range(20):
        text, _ = env.reset(seed=seed)
        taxi = env.unwrapped
        row, col, passenger, destination = taxi.decode(taxi.s)
        assert f"taxi at row {row + 1}, column {col + 1}" in text
        r, c = taxi.locs[destination]
        assert f"wants to go to {'RGYB'[destination]} (row {r + 1}, column {c + 1})" in text
        moves_that_change_state = [TAXI_ACTIONS[a] for a in range(4) if taxi.P[taxi.s][a][0][1] != taxi.s]
        assert f"Open roads: {', '.join(moves_that_change_state)}." in text


@pytest.mark.parametrize("env_id, expected", [("FrozenLakeText-v0", (1.0, 1.0)), ("TaxiText-v0", (3.0, 15.0))])
def test_the_shortest_plan_solves_each_game_through_the_text_wrapper(registry, env_id, expected):
    env = registry.env(env_id).make()
    returns = [play_optimally(env, seed) for seed in range(30)]
    assert expected[0] <= min(returns) and max(returns) <= expected[1]


@pytest.mark.parametrize("env_id", ["FrozenLakeText-v0", "TaxiText-v0"])
def test_each_game_passes_gymnasiums_env_checker(registry, env_id, monkeypatch):
    """`check_env` on the env as `llamagym run` makes it (the wrapper included, so `env.spec` must be able to
    recreate it), and every observation of random play inside the text observation space."""
    import warnings

    from gymnasium.utils.env_checker import check_env

    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")  # the render-mode check opens a "human" window: off-screen
    env = registry.env(env_id).make()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*different from the unwrapped version")  # wrapped on purpose
        check_env(env)
    assert env.spec.additional_wrappers[-1].name == "TextObservation"
    env.action_space.seed(0)
    for seed in range(5):
        observation, _ = env.reset(seed=seed)
        done = False
        while not done:
            assert env.observation_space.contains(observation), observation
            observation, _, terminated, truncated, _ = env.step(env.action_space.sample())
            done = terminated or truncated
        assert env.observation_space.contains(observation), observation


def test_no_plan_from_a_hole():
    import gymnasium as gym

    lake = gym.make("FrozenLake-v1", is_slippery=False).unwrapped
    assert shortest_plan(lake, 5) == []  # state 5 is a hole: terminal, no way out


@pytest.mark.parametrize("agent_class, response, action", [
    (FrozenLakeAgent, "I move down", 1), (FrozenLakeAgent, "I move Up, then left", 3),
    (TaxiAgent, "My action: pickup", 4), (TaxiAgent, "My action: go WEST", 3),
    (TaxiAgent, "My action: pick up the passenger", 4), (TaxiAgent, "My action: drop off", 5)])
def test_agents_read_their_action_words(llamagym_tiny, llamagym_plugin_manager, agent_class, response, action):
    model, tokenizer = llamagym_tiny
    agent = agent_class(model, tokenizer, "cpu", plugin_manager=llamagym_plugin_manager)
    assert agent.extract_action(response) == action
    assert agent.response_complete(response) and not agent.response_complete(f"{agent.response_prefix} I think")
    with pytest.raises(ActionParseError):
        agent.extract_action(f"{agent.response_prefix} jump")


def test_a_tiny_model_plays_and_trains_frozenlake(llamagym_tiny, registry):
    model, tokenizer = llamagym_tiny
    agent = FrozenLakeAgent(model, tokenizer, "cpu", {"max_new_tokens": 3}, {"batch_size": 2, "ppo_epochs": 1},
                            plugin_manager=registry.pm)
    env_spec = registry.env("FrozenLakeText-v0")
    updates = []
    engine = RolloutEngine(agent, lambda: env_spec.make(max_episode_steps=4), num_envs=2, seed=0)
    log = UpdateLog()
    results = train_loop(engine, 4, log=log)
    updates.extend(log.updates)
    assert len(results) == 4 and all(1 <= r.turns <= 4 for r in results) and len(updates) == 2
    assert not agent.buffer  # every finished episode went into an update
    assert "env/invalid_rate" in updates[0] and "ppo/kl" in updates[0]


@pytest.mark.parametrize("preset", ["frozenlake.toml", "taxi.toml"])
def test_presets_are_valid_configs(preset):
    config = build(RunConfig, load_toml(plugin.HERE / preset))
    assert config.generation.max_history_turns == 1 and config.ppo.invalid_action_penalty < 0


def _installed():
    try:
        importlib.metadata.distribution("llamagym-textgames")
        return True
    except importlib.metadata.PackageNotFoundError:
        return False


@pytest.mark.skipif(not _installed(), reason="llamagym-textgames is not pip-installed (make install does it)")
def test_the_installed_package_is_listed():
    from click.testing import CliRunner

    from llamagym.cli import cli

    listed = json.loads(CliRunner().invoke(cli, ["list", "--json"]).output)
    agents = {a["name"]: a["package"] for a in listed["agents"]}
    envs = {e["id"]: e["package"] for e in listed["envs"]}
    assert agents["frozenlake"] == agents["taxi"] == "llamagym-textgames"
    assert envs["FrozenLakeText-v0"] == envs["TaxiText-v0"] == "llamagym-textgames"
