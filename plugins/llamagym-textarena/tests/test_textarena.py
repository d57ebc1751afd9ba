"""The TextArena plugin: the games it offers and refuses, the Gymnasium and PettingZoo envs, the agent and its
constrained moves, and runs through the command line on the tiny model (single-player, self-play, an opponent)."""

from __future__ import annotations

import json
import warnings

import pytest
from click.testing import CliRunner

import llamagym
from llamagym.cli import cli
from llamagym.errors import UsageError
from llamagym.multiagent import SeatObservation
from llamagym.plugins.registry import get_registry
from llamagym_textarena import plugin
from llamagym_textarena.agent import TextArenaAgent
from llamagym_textarena.games import GAMES, NEEDS, legal_moves, listed_moves, refusal

SINGLE = sorted(env_id for env_id, game in GAMES.items() if game.players == 1)
DOUBLE = sorted(env_id for env_id, game in GAMES.items() if game.players == 2)


def test_every_curated_game_is_registered_with_its_kind():
    registry = get_registry()
    for env_id, game in GAMES.items():
        spec = registry.env(env_id)
        assert spec.kind == ("gymnasium" if game.players == 1 else "aec") and spec.kwargs == {"game": game.game}
    assert registry.agent("textarena").load() is TextArenaAgent
    assert len(SINGLE) >= 5 and len(DOUBLE) >= 5


@pytest.mark.parametrize("game", ["Wordle-v0", "Hangman-v0-hardcore", "TwentyQuestions-v0", "Chess-v0"])
def test_a_game_that_needs_a_download_is_refused_in_one_line(game):
    with pytest.raises(UsageError) as raised:
        llamagym.make_env(f"TextArena-{game}")
    message = str(raised.value)
    assert "\n" not in message and f"TextArena's {game} needs" in message and "leaves it out" in message
    assert "TextArena-TicTacToe-v0" in message


def test_every_refused_game_says_why():
    assert all(refusal(f"{name}-v0") for name in NEEDS)
    assert refusal("TicTacToe-v0") is None


def test_an_offline_game_beyond_the_curated_set_is_made_on_demand():
    spec = get_registry().env("TextArena-Nim-v0-large")
    assert spec.kind == "aec" and spec.kwargs == {"game": "Nim-v0-large"}
    assert get_registry().env("TextArena-Sokoban-v0").kind == "gymnasium"
    with pytest.raises(UsageError, match="more than 2 players"):
        get_registry().env("TextArena-SecretMafia-v0")
    with pytest.raises(llamagym.errors.UnknownNameError):
        get_registry().env("TextArena-NoSuchGame-v0")


@pytest.mark.parametrize("env_id", SINGLE)
def test_single_player_games_pass_gymnasiums_checker(env_id):
    from gymnasium.utils.env_checker import check_env

    env = llamagym.make_env(env_id)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check_env(env)
    first, _ = env.reset(seed=3)
    assert env.reset(seed=3)[0] == first and env.observation_space.contains(first)


@pytest.mark.parametrize("env_id", DOUBLE)
def test_two_player_games_pass_pettingzoos_api_test(env_id):
    from pettingzoo.test import api_test

    api_test(llamagym.make_env(env_id), num_cycles=60)


def test_a_game_is_played_to_the_end_with_its_rewards():
    env = llamagym.make_env("TextArena-TicTacToe-v0")
    env.reset(seed=0)
    for cell in (4, 0, 1, 2, 7):  # player_0 takes the middle column
        seat = env.agent_selection
        observation, *_ = env.last()
        assert f"'[{cell}]'" in observation and f"[{cell}]" in env.infos[seat]["legal_moves"]
        env.step(f"[{cell}]")
    assert all(env.terminations.values())
    assert env.rewards == {"player_0": 1.0, "player_1": -1.0}


def test_moves_are_listed_fixed_or_read_off_the_state():
    assert listed_moves("Board\nAvailable Moves: '[0]', '[3]'") == ["[0]", "[3]"]
    assert legal_moves("GuessTheNumber-v0", "Guess!")[:2] == ["[1]", "[2]"]
    nim = llamagym.make_env("TextArena-Nim-v0")
    nim.reset(seed=0)
    observation = nim.observe(nim.agent_selection)
    assert "Available moves: [0 1]" in observation
    tower = llamagym.make_env("TextArena-TowerOfHanoi-v0")
    text, info = tower.reset(seed=0)
    assert "[A C]" in info["legal_moves"] and "Available moves:" in text


def test_the_agent_constrains_its_move_to_the_listed_ones(llamagym_tiny):
    model, tokenizer = llamagym_tiny
    agent = TextArenaAgent(model, tokenizer, "cpu")
    seat = SeatObservation("player_0", 0, "Board\nAvailable Moves: '[0]', '[8]'", info={"legal_moves": ["[0]", "[8]"]})
    assert agent.action_choices(seat) == [" [0]", " [8]"]
    assert agent.action_choices("no moves here") is None
    assert agent.extract_action("My move: [col 3] because", seat) == "[col 3]"
    with pytest.raises(llamagym.ActionParseError):
        agent.extract_action("My move: 3", seat)
    assert agent.fallback_action(seat) in ("[0]", "[8]") and agent.fallback_action("text") == "[]"
    assert agent.format_observation("Board").endswith("Your move?")
    for _ in range(3):
        assert agent.act(seat, slot=0) in ("[0]", "[8]")


def test_random_move_picks_a_listed_move():
    import random

    from llamagym_textarena.opponents import random_move

    seat = SeatObservation("player_1", 1, "", info={"legal_moves": ["[a]", "[b]"]})
    assert random_move(seat, random.Random(0)) in ("[a]", "[b]")
    with pytest.raises(ValueError, match="lists no moves"):
        random_move(SeatObservation("player_1", 1, "", info={}), random.Random(0))
    assert plugin.llamagym_resolve_env("CartPole-v1") is None


def test_random_move_plays_every_two_player_textarena_game_and_no_other():
    from llamagym.errors import UnknownNameError
    from llamagym.plugins.manager import get_plugin_manager
    from llamagym.rollout.games.opponents import check_opponent

    pm = get_plugin_manager()
    for env_id in [*DOUBLE, "TextArena-KuhnPoker-v0-short"]:  # curated, and one made on demand
        assert check_opponent(pm, "random-move", env_id) == "random-move"
    with pytest.raises(UnknownNameError, match="random-move"):
        check_opponent(pm, "random-move", "tictactoe_v3")


# ---- runs as a user starts them ---------------------------------------------------------------------------------

def invoke(*args):
    return CliRunner().invoke(cli, list(map(str, args)))


def run_args(model_dir, out, env, *extra):
    return ["run", "--agent", "textarena", "--env", env, "--model", model_dir, "--episodes", 4, "--num-envs", 2,
            "--batch-size", 2, "--mini-batch-size", 8, "--ppo-epochs", 1, "--max-new-tokens", 6, "--lora-r", 2,
            "-o", out, "-q", *extra]


def rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_single_player_run_and_its_eval(llamagym_tiny_model_dir, tmp_path):
    out = tmp_path / "guess"
    result = invoke(*run_args(llamagym_tiny_model_dir, out, "TextArena-GuessTheNumber-v0"))
    assert result.exit_code == 0, result.output
    episodes = rows(out / "episodes.jsonl")
    assert len(episodes) == 4 and all(e.get("error") is None for e in episodes)
    metrics = [m for m in rows(out / "metrics.jsonl") if "env/invalid_rate" in m]
    assert metrics and all(m["env/invalid_rate"] == 0 for m in metrics)  # constrained to [1]..[20]
    result = invoke("eval", "--checkpoint", out, "--episodes", 2)
    assert result.exit_code == 0, result.output


def test_env_kwargs_reach_the_game(llamagym_tiny_model_dir, tmp_path):
    """`--env-kwarg` sets the env's own settings (max_steps) and the TextArena game's (its registered kwargs)."""
    env = llamagym.make_env("TextArena-GuessTheNumber-v0", max_steps=3, max_number=5)
    assert env.max_steps == 3 and env.game_kwargs == {"max_number": 5}
    assert llamagym.make_env("TextArena-Nim-v0", piles=[1, 1]).game_kwargs == {"piles": [1, 1]}
    out = tmp_path / "guess"
    result = invoke(*run_args(llamagym_tiny_model_dir, out, "TextArena-GuessTheNumber-v0"), "--env-kwarg",
                    "max_steps=1", "--env-kwarg", "max_number=5")
    assert result.exit_code == 0, result.output
    assert all(e["turns"] == 1 for e in rows(out / "episodes.jsonl"))  # truncated after one guess
    assert json.loads((out / "config.json").read_text())["config"]["env_kwargs"] == {"max_steps": 1,
                                                                                     "max_number": 5}


def test_a_kwarg_the_game_rejects_is_one_line(tmp_path):
    out = tmp_path / "guess"
    result = invoke("run", "--agent", "textarena", "--env", "TextArena-GuessTheNumber-v0", "--env-kwarg",
                    "colour=red", "-o", out, "-q")
    assert result.exit_code == 2, result.output
    line = result.output.strip().splitlines()[-1]
    assert line.startswith("Error: env 'TextArena-GuessTheNumber-v0' cannot be created with the keyword arguments "
                           "colour='red' (TypeError:") and "colour" in line and "Traceback" not in result.output
    assert not out.exists()


def test_two_player_self_play_and_against_random_move(llamagym_tiny_model_dir, tmp_path):
    out = tmp_path / "ttt"
    result = invoke(*run_args(llamagym_tiny_model_dir, out, "TextArena-TicTacToe-v0"))
    assert result.exit_code == 0, result.output
    episodes = rows(out / "episodes.jsonl")
    assert len(episodes) == 4 and all(e.get("error") is None for e in episodes)
    result = invoke(*run_args(llamagym_tiny_model_dir, tmp_path / "vs", "TextArena-KuhnPoker-v0", "--play",
                              "opponent", "--opponent", "random-move"))
    assert result.exit_code == 0, result.output
    result = invoke("eval", "--checkpoint", out, "--episodes", 2, "--opponent", "random-move")
    assert result.exit_code == 0, result.output
