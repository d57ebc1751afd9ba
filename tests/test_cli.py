"""The command line as a user drives it: run, eval, list, plugins, and one-line errors for bad input."""

import json

import pytest
from click.testing import CliRunner

from llamagym.cli import cli


def invoke(*args):
    return CliRunner().invoke(cli, list(map(str, args)))


def tiny_run_args(model_dir, out, episodes=8):
    return ["run", "--agent", "blackjack", "--env", "Blackjack-v1", "--model", model_dir, "--episodes", episodes,
            "--num-envs", 4, "--batch-size", 4, "--mini-batch-size", 4, "--ppo-epochs", 1, "--max-new-tokens", 3,
            "--lora-r", 2, "-o", out, "-q"]


def test_run_trains_and_saves_everything(tiny_model_dir, tmp_path):
    out = tmp_path / "run"
    result = invoke(*tiny_run_args(tiny_model_dir, out))
    assert result.exit_code == 0, result.output
    assert (out / "adapter" / "adapter_config.json").is_file() and (out / "adapter" / "value_head.safetensors").is_file()
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    episodes = [json.loads(line) for line in (out / "episodes.jsonl").read_text().splitlines()]
    assert len(episodes) == 8 and len(metrics) == 2 and metrics[-1]["update"] == 2
    assert [m["episodes"] for m in metrics] == [4, 8]  # the update after episode 4 counts episode 4
    assert {"ppo/kl", "env/return_mean", "env/invalid_rate", "env/win_rate"} <= set(metrics[0])
    config = json.loads((out / "config.json").read_text())["config"]
    assert config["ppo"]["batch_size"] == 4 and config["lora"]["r"] == 2
    summary = json.loads((out / "summary.json").read_text())
    assert summary["episodes"] == 8 and not summary["interrupted"]

    evaluated = invoke("eval", "--checkpoint", out, "--episodes", 6, "--num-envs", 3, "--json", "-q")
    assert evaluated.exit_code == 0, evaluated.output
    stats = json.loads(evaluated.output.strip().splitlines()[-1])
    assert stats["episodes"] == 6 and stats["win_rate"] + stats["draw_rate"] + stats["loss_rate"] == pytest.approx(1)

    again = invoke(*tiny_run_args(tiny_model_dir, out))
    assert again.exit_code == 2 and "--resume" in again.output and "--overwrite" in again.output


def test_linear_learning_rate_decays_over_the_runs_updates(tiny_model_dir, tmp_path):
    out = tmp_path / "run"
    result = invoke(*tiny_run_args(tiny_model_dir, out, episodes=12), "--lr-schedule", "linear",
                    "--learning-rate", "3e-4")
    assert result.exit_code == 0, result.output
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["ppo/learning_rate"] for m in metrics] == pytest.approx([3e-4, 2e-4, 1e-4])


def test_linear_learning_rate_is_refused_for_games(tmp_path):
    result = invoke("run", "--agent", "tictactoe", "--env", "tictactoe_v3", "--model", "/no/such/model.gguf",
                    "--lr-schedule", "linear", "-o", tmp_path / "never", "-q")
    assert result.exit_code == 2, result.output
    assert "lr_schedule = linear" in result.output and "Traceback" not in result.output


def test_run_with_a_config_file(tiny_model_dir, tmp_path):
    config = tmp_path / "c.toml"
    config.write_text(f'agent = "blackjack"\nenv = "Blackjack-v1"\nmodel = "{tiny_model_dir}"\nepisodes = 4\n'
                      f'num_envs = 2\n[ppo]\nbatch_size = 2\nmini_batch_size = 2\nppo_epochs = 1\n'
                      f'[generation]\nmax_new_tokens = 2\n')
    result = invoke("run", "--config", config, "-o", tmp_path / "out", "-q", "--episodes", 2)
    assert result.exit_code == 0, result.output
    saved = json.loads((tmp_path / "out" / "config.json").read_text())["config"]
    assert saved["episodes"] == 2 and saved["ppo"]["batch_size"] == 2 and saved["generation"]["max_new_tokens"] == 2


@pytest.mark.parametrize("args, message", [
    (["--agent", "blackjak", "--env", "Blackjack-v1"], "unknown agent 'blackjak' (did you mean 'blackjack'?)"),
    (["--agent", "blackjack", "--env", "Blackjak-v1"], "unknown env 'Blackjak-v1'"),
    (["--agent", "blackjack", "--env", "Blackjack-v1", "--learning-rate", "-1"],
     "ppo.learning_rate must be greater than 0.0"),
    (["--agent", "blackjack", "--env", "Blackjack-v1", "--batch-size", "0"], "ppo.batch_size must be at least 1"),
    (["--agent", "blackjack", "--env", "Blackjack-v1", "--model", "/no/such/dir/model.gguf"], "does not exist"),
    (["--env", "Blackjack-v1"], "no agent given"),
    (["--agent", "blackjack", "--env", "Blackjack-v1", "--config", "/no/such.toml"], "does not exist"),
])
def test_bad_input_is_one_line_exit_2_and_leaves_no_output(tmp_path, args, message):
    out = tmp_path / "never"
    result = invoke("run", *args, "-o", out, "-q")
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert message in lines[-1] and lines[-1].startswith("Error:")
    assert "Traceback" not in result.output
    assert not out.exists()


def test_model_directory_without_tokenizer(tmp_path):
    from llamagym.testing import tiny_model_and_tokenizer

    model, _ = tiny_model_and_tokenizer()
    model.save_pretrained(tmp_path / "m")
    result = invoke("run", "--agent", "blackjack", "--env", "Blackjack-v1", "--model", tmp_path / "m", "-o",
                    tmp_path / "out", "-q")
    assert result.exit_code == 2 and "tokenizer" in result.output.strip().splitlines()[-1]


def test_list_and_plugins_show_the_blackjack_package():
    listed = invoke("list", "--json")
    data = json.loads(listed.output)
    blackjack_agent = next(a for a in data["agents"] if a["name"] == "blackjack")
    assert blackjack_agent["package"] == "llamagym-blackjack"
    plugins = json.loads(invoke("plugins", "--json").output)
    blackjack = next(p for p in plugins if p["name"] == "blackjack")
    assert blackjack["distribution"] == "llamagym-blackjack" and blackjack["agents"] == ["blackjack"]
    assert "llamagym_register_agents" in blackjack["hooks"] and blackjack["error"] is None
    text = invoke("plugins").output
    assert "blackjack (llamagym-blackjack" in text


def test_eval_of_the_untrained_model_uses_the_agents_preset(tiny_model_dir, monkeypatch):
    import llamagym.run.setup

    seen = {}
    real = llamagym.run.setup.build_agent

    def spy(config, adapter=None):
        seen["config"] = config
        return real(config, adapter)

    monkeypatch.setattr(llamagym.run.setup, "build_agent", spy)
    result = invoke("eval", "--agent", "blackjack", "--env", "Blackjack-v1", "--model", tiny_model_dir,
                    "--episodes", 2, "--num-envs", 2, "--json", "-q")
    assert result.exit_code == 0, result.output
    assert seen["config"].generation.max_history_turns == 1 and seen["config"].generation.max_new_tokens == 6
