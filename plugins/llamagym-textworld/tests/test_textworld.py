"""The TextWorld plugin: games generated once into the cache from an env id, a user's game file, the env (banner
removed, admissible commands, score rewards, the walkthrough wins), the agent (constrained to the admissible
commands, or free `command: <cmd>` text), LlamaGym's own text-world agent in the seed's loop, and runs through the
command line on the tiny model."""

from __future__ import annotations

import json
import re
import shutil
import warnings

import pytest
from click.testing import CliRunner

import llamagym
from llamagym import Agent
from llamagym.cli import cli
from llamagym.errors import ConfigError, UsageError
from llamagym.plugins.registry import get_registry
from llamagym_textworld.agent import TextWorldAgent
from llamagym_textworld.env import COMMANDS_LINE, TextWorldEnv, clean, commands_in
from llamagym_textworld.games import GameId, game_file, parse_env_id

GAME = "TextWorld-coin_collector-L1-s0"


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("tw-cache")


@pytest.fixture(autouse=True)
def _cache(shared_cache, monkeypatch):
    monkeypatch.setenv("LLAMAGYM_CACHE", str(shared_cache))  # one generation per game for the whole module


def test_an_env_id_names_challenge_level_and_seed():
    assert parse_env_id("TextWorld-treasure_hunter-L3-s7") == GameId("treasure_hunter", 3, 7)
    assert parse_env_id("CartPole-v1") is None
    with pytest.raises(UsageError, match="unknown TextWorld challenge 'coins'"):
        parse_env_id("TextWorld-coins-L1-s0")
    with pytest.raises(UsageError, match="levels 1 to 30"):
        parse_env_id("TextWorld-treasure_hunter-L31-s0")
    assert get_registry().env("TextWorld-coin_collector-L4-s2").kwargs == {"challenge": "coin_collector",
                                                                            "level": 4, "seed": 2}


def test_a_game_is_generated_once_into_the_cache(shared_cache):
    path = game_file(GameId("coin_collector", 1, 0))
    assert path.is_file() and path.suffix == ".z8" and shared_cache in path.parents
    stamp = path.stat().st_mtime_ns
    assert game_file(GameId("coin_collector", 1, 0)).stat().st_mtime_ns == stamp


def test_the_observation_has_no_banner_and_lists_the_admissible_commands():
    env = llamagym.make_env(GAME)
    text, info = env.reset(seed=0)
    assert "$$$$" not in text and "\\_" not in text
    assert text.splitlines()[-1].startswith(COMMANDS_LINE)
    assert commands_in(text) == sorted(info["admissible_commands"]) and "look" in commands_in(text)
    assert clean("  $$$$$$$ \\_ $$\n\n\n-= Kitchen =-\nA room.") == "-= Kitchen =-\nA room."


def test_the_walkthrough_wins_with_the_score_as_reward():
    env = llamagym.make_env(GAME)
    _, info = env.reset(seed=0)
    total, terminated = 0.0, False
    for command in info["walkthrough"]:
        _, reward, terminated, truncated, info = env.step(command)
        total += reward
    assert terminated and info["is_success"] and total == info["max_score"] > 0


def test_a_game_that_runs_long_is_truncated():
    env = TextWorldEnv("coin_collector", 1, 0, max_steps=3)
    env.reset(seed=0)
    results = [env.step("look") for _ in range(3)]
    assert [r[3] for r in results] == [False, False, True] and not any(r[2] for r in results)


def test_the_env_passes_gymnasiums_checker():
    from gymnasium.utils.env_checker import check_env

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check_env(llamagym.make_env(GAME))


def test_a_users_own_game_file_works(tmp_path, monkeypatch):
    mine = tmp_path / "my_game.z8"
    made = game_file(GameId("coin_collector", 1, 0))
    shutil.copy(made, mine)
    shutil.copy(made.with_suffix(".json"), mine.with_suffix(".json"))  # TextWorld's game logic, beside the game
    monkeypatch.setenv("LLAMAGYM_TEXTWORLD_GAME", str(mine))
    env = llamagym.make_env("TextWorld-game")
    assert env.game_path == mine and COMMANDS_LINE in env.reset(seed=0)[0]
    monkeypatch.delenv("LLAMAGYM_TEXTWORLD_GAME")
    with pytest.raises(ConfigError, match="LLAMAGYM_TEXTWORLD_GAME"):
        TextWorldEnv()
    with pytest.raises(ConfigError, match="not a .z8/.ulx file"):
        TextWorldEnv(path=tmp_path / "missing.z8")


def test_the_agent_reads_a_command_and_offers_the_admissible_ones(llamagym_tiny):
    model, tokenizer = llamagym_tiny
    agent = TextWorldAgent(model, tokenizer, "cpu")
    assert agent.extract_action("command: Go North.\nthen") == "go north"
    assert agent.extract_action("I think... Command: 'take coin'") == "take coin"
    with pytest.raises(llamagym.ActionParseError):
        agent.extract_action("command:   ")
    observation = f"A room.\n\n{COMMANDS_LINE} go east, look"
    assert agent.action_choices(observation) == [" go east", " look"]
    assert agent.action_choices("A room.") is None
    for _ in range(3):
        assert agent.act(observation, slot=0) in ("go east", "look")


class LlamaGymTextWorldAgent(Agent):
    """LlamaGym's examples/text-world.py agent, its three methods as they were written there."""

    def get_system_prompt(self) -> str:
        return ("You will be playing a text-based game. Here are some example commands: 'go west', 'inventory', "
                "'drop teacup', 'examine broom', 'close type 2 box', 'open door', 'insert pencil into type 1 box', "
                "'look'. Not all commands will work, but there are many others that you can try beyond these "
                "examples. When responding, first reason about the game state to decide the best action and then "
                "say 'command: <your command>'.")

    def format_observation(self, observation) -> str:
        # remove the game header text
        observation = observation.split("$$$$$$$ \n\n")[-1].strip()
        return observation

    def extract_action(self, response: str) -> str:
        command_match = re.search(r"command: (.+?)(?=\n|$)", response, re.IGNORECASE)
        if command_match is None:
            return "look"
        return command_match.group(1)


def test_llamagyms_text_world_agent_runs_unchanged_in_the_seed_loop(llamagym_tiny):
    model, tokenizer = llamagym_tiny
    agent = LlamaGymTextWorldAgent(model, tokenizer, "cpu", {"max_new_tokens": 8, "do_sample": True},
                                   {"batch_size": 2, "mini_batch_size": 8})
    env = TextWorldEnv("coin_collector", 1, 0, max_steps=4)
    stats = {}
    for episode in range(2):
        observation, info = env.reset(seed=episode)
        done = False
        while not done:
            action = agent.act(observation)
            observation, reward, terminated, truncated, info = env.step(action)
            agent.assign_reward(reward)
            done = terminated or truncated
        stats = agent.terminate_episode()
    assert "ppo/kl" in stats and agent.counters["episodes"] == 2


# ---- runs as a user starts them ---------------------------------------------------------------------------------

def invoke(*args):
    return CliRunner().invoke(cli, list(map(str, args)))


def run_args(model_dir, out, *extra):
    return ["run", "--agent", "textworld", "--env", GAME, "--model", model_dir, "--episodes", 4, "--num-envs", 2,
            "--batch-size", 2, "--mini-batch-size", 8, "--ppo-epochs", 1, "--max-new-tokens", 6, "--lora-r", 2,
            "-o", out, "-q", *extra]


def test_the_path_kwarg_wins_over_the_game_variable(tmp_path, monkeypatch):
    """`--env-kwarg path=FILE` (TextWorldEnv's `path`) is taken over $LLAMAGYM_TEXTWORLD_GAME."""
    monkeypatch.setenv("LLAMAGYM_TEXTWORLD_GAME", str(tmp_path / "theirs.z8"))
    with pytest.raises(ConfigError, match="mine.z8"):
        llamagym.make_env("TextWorld-game", path=str(tmp_path / "mine.z8"))
    monkeypatch.delenv("LLAMAGYM_TEXTWORLD_GAME")
    with pytest.raises(ConfigError, match="pass --env-kwarg path=FILE or set LLAMAGYM_TEXTWORLD_GAME"):
        llamagym.make_env("TextWorld-game")


def rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_run_constrained_to_the_admissible_commands_and_its_eval(llamagym_tiny_model_dir, tmp_path):
    out = tmp_path / "tw"
    result = invoke(*run_args(llamagym_tiny_model_dir, out))
    assert result.exit_code == 0, result.output
    episodes = rows(out / "episodes.jsonl")
    assert len(episodes) == 4 and all(e.get("error") is None for e in episodes)
    metrics = [m for m in rows(out / "metrics.jsonl") if "env/invalid_rate" in m]
    assert metrics and all(m["env/invalid_rate"] == 0 for m in metrics)
    result = invoke("eval", "--checkpoint", out, "--episodes", 2)
    assert result.exit_code == 0, result.output


def test_a_free_text_run(llamagym_tiny_model_dir, tmp_path):
    result = invoke(*run_args(llamagym_tiny_model_dir, tmp_path / "free", "--no-constrained"))
    assert result.exit_code == 0, result.output


def test_any_text_is_a_command_the_game_survives():
    """Long or symbol-laden input crashes the Z-machine interpreter: only letters, digits, spaces and - ' reach it,
    60 characters at most."""
    import random
    import string

    from llamagym_textworld.env import sendable

    assert sendable("Take the coin!") == "Take the coin" and sendable("\x0b\"") == "look"
    env = TextWorldEnv("coin_collector", 1, 0, max_steps=1000)
    env.reset(seed=0)
    rng = random.Random(0)
    for _ in range(150):
        env.step("".join(rng.choice(string.printable) for _ in range(rng.randint(1, 200))))
