"""Multi-agent training and evaluation through the command line, on the tiny model: self-play with a snapshot
pool, one adapter per seat on a Parallel game, and `llamagym eval` against named opponents."""

import json

import pytest
from click.testing import CliRunner

from llamagym.cli import cli


def invoke(*args):
    return CliRunner().invoke(cli, list(map(str, args)))


def run_args(model_dir, out, agent="tictactoe", env="tictactoe_v3", episodes=8, *extra):
    return ["run", "--agent", agent, "--env", env, "--model", model_dir, "--episodes", episodes, "--num-envs", 4,
            "--batch-size", 4, "--mini-batch-size", 8, "--ppo-epochs", 1, "--max-new-tokens", 3, "--lora-r", 2,
            "-o", out, "-q", *extra]


def rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def selfplay_run(llamagym_tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("selfplay") / "run"
    result = invoke(*run_args(llamagym_tiny_model_dir, out, "tictactoe", "tictactoe_v3", 8,
                              "--snapshot-every", 1, "--pool-rate", 0.5))
    assert result.exit_code == 0, result.output
    return out


def test_selfplay_trains_both_seats_and_saves_only_the_learner(selfplay_run):
    metrics, episodes = rows(selfplay_run / "metrics.jsonl"), rows(selfplay_run / "episodes.jsonl")
    assert len(episodes) == 8 and len(metrics) >= 2
    assert {"ppo/kl", "env/invalid_rate", "game/illegal_rate", "game/win_rate", "game/other_policy_rate"} <= set(
        metrics[0])
    game_rows = [m for m in metrics if "game/illegal_rate" in m]  # all but the runner's final flush
    assert len(game_rows) >= len(metrics) - 1 and all(0.0 <= m["game/illegal_rate"] <= 1.0 for m in game_rows)
    adapter = selfplay_run / "adapter"
    assert (adapter / "adapter_config.json").is_file() and not list(adapter.glob("pool_*"))
    config = json.loads((selfplay_run / "config.json").read_text())["config"]
    assert config["multiagent"]["play"] == "selfplay" and config["multiagent"]["snapshot_every"] == 1


def test_constrained_moves_are_always_free_cells(selfplay_run, llamagym_tiny_model_dir, tmp_path):
    """The tictactoe agent lists the free cells (action_choices), so the model can name no other: no illegal and
    no unparsable move, where the same tiny model sampling free text makes plenty."""
    constrained = [m for m in rows(selfplay_run / "metrics.jsonl") if "game/illegal_rate" in m]
    assert constrained and all(m["game/illegal_rate"] == 0 and m["env/invalid_rate"] == 0 for m in constrained)
    out = tmp_path / "free"
    result = invoke(*run_args(llamagym_tiny_model_dir, out, "tictactoe", "tictactoe_v3", 8, "--no-constrained"))
    assert result.exit_code == 0, result.output
    free = [m for m in rows(out / "metrics.jsonl") if "game/illegal_rate" in m]
    assert any(m["game/illegal_rate"] + m["env/invalid_rate"] > 0 for m in free)


@pytest.mark.parametrize("opponent", ["heuristic", "random", "base", "RUN"])
def test_eval_reports_win_draw_loss_against_a_named_opponent(selfplay_run, opponent):
    opponent = selfplay_run if opponent == "RUN" else opponent
    result = invoke("eval", "--checkpoint", selfplay_run, "--opponent", opponent, "--episodes", 6, "--num-envs",
                    3, "--json", "-q")
    assert result.exit_code == 0, result.output
    stats = json.loads(result.output.strip().splitlines()[-1])
    assert stats["episodes"] == 6 and stats["opponent"] == str(opponent)
    assert stats["win_rate"] + stats["draw_rate"] + stats["loss_rate"] == pytest.approx(1)
    assert stats["win_ci"][0] <= stats["win_rate"] <= stats["win_ci"][1]
    assert 0.0 <= stats["invalid_rate"] <= 1.0


def test_eval_text_names_the_opponent(selfplay_run):
    result = invoke("eval", "--checkpoint", selfplay_run, "--opponent", "heuristic", "--episodes", 2,
                    "--num-envs", 2, "-q")
    assert result.exit_code == 0, result.output
    assert "tictactoe on tictactoe_v3 against heuristic" in result.output and "win " in result.output


@pytest.mark.parametrize("args, message", [
    (["--opponent", "wizard"], "unknown opponent for tictactoe_v3 'wizard'"),
    (["--opponent", "rock"], "unknown opponent for tictactoe_v3 'rock'"),
])
def test_bad_opponent_is_a_one_line_error(llamagym_tiny_model_dir, args, message):
    result = invoke("eval", "--agent", "tictactoe", "--env", "tictactoe_v3", "--model", llamagym_tiny_model_dir,
                    "--episodes", 2, *args)
    assert result.exit_code == 2 and message in result.output
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output


def test_run_checks_the_opponent_before_loading_anything(llamagym_tiny_model_dir, tmp_path):
    result = invoke(*run_args(llamagym_tiny_model_dir, tmp_path / "z", "tictactoe", "tictactoe_v3", 2,
                              "--play", "opponent", "--opponent", "heuristc"))
    assert result.exit_code == 2 and "unknown opponent for tictactoe_v3 'heuristc' (did you mean 'heuristic'?)" in (
        result.output)
    assert not (tmp_path / "z").exists()


def test_opponent_flag_is_for_games_only(llamagym_tiny_model_dir):
    result = invoke("eval", "--agent", "blackjack", "--env", "Blackjack-v1", "--model", llamagym_tiny_model_dir,
                    "--opponent", "random")
    assert result.exit_code == 2 and "--opponent applies to PettingZoo games" in result.output


def test_bad_multiagent_setting_is_a_one_line_error(llamagym_tiny_model_dir, tmp_path):
    result = invoke(*run_args(llamagym_tiny_model_dir, tmp_path / "x", "tictactoe", "tictactoe_v3", 2,
                              "--pool-rate", 1.5))
    assert result.exit_code == 2 and "multiagent.pool_rate must be at most 1.0" in result.output
    result = invoke(*run_args(llamagym_tiny_model_dir, tmp_path / "y", "tictactoe", "tictactoe_v3", 2,
                              "--play", "everyone"))
    assert result.exit_code == 2 and "'everyone' is not one of" in result.output


def test_separate_policies_on_a_parallel_game(llamagym_tiny_model_dir, tmp_path):
    out = tmp_path / "rps"
    result = invoke(*run_args(llamagym_tiny_model_dir, out, "rps", "rps_v2", 4, "--play", "separate"))
    assert result.exit_code == 0, result.output
    metrics = rows(out / "metrics.jsonl")
    assert any(m.get("policy") == "player_1" for m in metrics) and any("policy" not in m for m in metrics)
    assert (out / "adapter" / "player_1" / "adapter_model.safetensors").is_file()  # the second seat's adapter
    assert all(row["turns"] == 15 for row in rows(out / "episodes.jsonl"))  # 15 rounds, main policy's seat


def test_against_a_scripted_opponent_on_poker(llamagym_tiny_model_dir, tmp_path):
    out = tmp_path / "leduc"
    result = invoke(*run_args(llamagym_tiny_model_dir, out, "leduc_holdem", "leduc_holdem_v4", 6,
                              "--play", "opponent", "--opponent", "calling_station"))
    assert result.exit_code == 0, result.output
    episodes = rows(out / "episodes.jsonl")
    assert len(episodes) == 6 and all(row["error"] is None and row["turns"] >= 1 for row in episodes)


def test_list_shows_the_games_and_their_opponents():
    data = json.loads(invoke("list", "--json").output)
    kinds = {e["id"]: e["kind"] for e in data["envs"]}
    assert kinds["tictactoe_v3"] == "aec" and kinds["rps_v2"] == "parallel"
    opponents = {(o["name"], tuple(o["envs"] or ())) for o in data["opponents"]}
    assert {("random", ()), ("base", ()), ("heuristic", ("tictactoe_v3",)), ("rock", ("rps_v2",))} <= opponents


def test_eval_of_the_untrained_model_uses_the_agents_preset(llamagym_tiny_model_dir, monkeypatch):
    """Baseline and trained agent must be measured alike: the preset's generation settings (as in training)."""
    from llamagym.run import setup as runner

    seen = {}
    original = runner.build_agent

    def spy(config, adapter=None):
        seen["generation"] = config.generation
        return original(config, adapter)

    monkeypatch.setattr(runner, "build_agent", spy)
    result = invoke("eval", "--agent", "tictactoe", "--env", "tictactoe_v3", "--model", llamagym_tiny_model_dir,
                    "--episodes", 2, "--num-envs", 2, "-q")
    assert result.exit_code == 0, result.output
    assert seen["generation"].max_new_tokens == 4 and seen["generation"].max_history_turns == 1
