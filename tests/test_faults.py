"""Faults that lose nothing: NaN rewards skip updates (logged, never reaching the weights) and, repeated, stop the
run with a clear error and an intact checkpoint; environments that raise drop their episode (counted, with the
error) and, repeated, stop the run; a plugin hook that raises is one line naming the plugin."""

import json
import types

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

import fault_plugin
from llamagym import ActionParseError, PluginError, hookimpl
from llamagym.run.rundir import latest_checkpoint, list_checkpoints
from llamagym.cli import cli


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def run_args(model_dir, out, env="Blackjack-v1", episodes=8, num_envs=2, every=2):
    return ["run", "--agent", "blackjack", "--env", env, "--model", model_dir, "--episodes", episodes,
            "--num-envs", num_envs, "--batch-size", 2, "--mini-batch-size", 2, "--ppo-epochs", 1,
            "--max-new-tokens", 3, "--lora-r", 2, "--checkpoint-every", every, "-o", out, "-q"]


def rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def last_line(result):
    return result.output.strip().splitlines()[-1]


def test_repeated_nan_rewards_stop_the_run_and_keep_the_last_good_checkpoint(tiny_model_dir, tmp_path,
                                                                             with_plugins, monkeypatch):
    with_plugins(fault_plugin)
    monkeypatch.setenv(fault_plugin.NAN_AFTER_UPDATES, "2")  # updates 1-2 are sound, every later one is NaN
    out = tmp_path / "run"
    result = invoke(*run_args(tiny_model_dir, out, episodes=20))
    assert result.exit_code == 1, result.output
    line = last_line(result)
    assert line.startswith("Error: 3 updates in a row were skipped") and f"--resume {out}" in line
    assert "Traceback" not in result.output
    metrics = rows(out / "metrics.jsonl")
    assert [m["update"] for m in metrics] == [1, 2, 3, 4]  # the third skipped update raised before its row
    assert [bool(m.get("ppo/skipped_update")) for m in metrics] == [False, False, True, True]
    good, last = list_checkpoints(out)
    assert json.loads((good / "state.json").read_text())["updates"] == 2
    assert json.loads((last / "state.json").read_text())["updates"] == 4
    good_weights = load_file(str(good / "adapter_model.safetensors"))
    last_weights = load_file(str(last / "adapter_model.safetensors"))
    assert all(torch.isfinite(t).all() for t in last_weights.values())
    assert all(torch.equal(good_weights[k], last_weights[k]) for k in good_weights)  # NaN never reached them

    monkeypatch.delenv(fault_plugin.NAN_AFTER_UPDATES)
    resumed = invoke("run", "--resume", out, "--learning-rate", 5e-5, "-q")
    assert resumed.exit_code == 0, resumed.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["updates"] == 4 + (20 - 8) // 2  # 8 episodes were committed at update 4; 2 per update
    assert [m["update"] for m in rows(out / "metrics.jsonl")] == list(range(1, summary["updates"] + 1))
    assert len(rows(out / "episodes.jsonl")) == 20
    assert not any(m.get("ppo/skipped_update") for m in rows(out / "metrics.jsonl")[4:])


def test_environment_step_errors_drop_the_episode_and_are_counted(tiny_model_dir, tmp_path, with_plugins):
    with_plugins(fault_plugin)
    out = tmp_path / "run"
    result = invoke(*run_args(tiny_model_dir, out, env="FlakyStep-v0", episodes=9))
    assert result.exit_code == 0, result.output
    assert "(3 dropped for environment errors)" in result.output
    played = rows(out / "episodes.jsonl")
    failed = sorted(r["episode"] for r in played if r["error"])
    assert len(played) == 9 and failed == [0, 3, 6]  # the plugin fails seeds divisible by 3
    assert all("step failed on purpose" in r["error"] for r in played if r["error"])
    assert rows(out / "metrics.jsonl")[-1]["env/dropped_episodes"] == 3
    assert json.loads((out / "summary.json").read_text())["dropped_episodes"] == 3


def test_environment_reset_errors_drop_the_episode_and_are_counted(tiny_model_dir, tmp_path, with_plugins):
    with_plugins(fault_plugin)
    out = tmp_path / "run"
    result = invoke(*run_args(tiny_model_dir, out, env="FlakyReset-v0", episodes=9, num_envs=3))
    assert result.exit_code == 0, result.output
    played = rows(out / "episodes.jsonl")
    assert sorted(r["episode"] for r in played) == list(range(9))  # no episode beyond the budget
    assert sorted(r["episode"] for r in played if r["error"]) == [0, 4, 8]
    assert all(r["turns"] == 0 and "reset failed on purpose" in r["error"] for r in played if r["error"])


def test_repeated_environment_errors_stop_the_run_at_the_configured_limit(tiny_model_dir, tmp_path,
                                                                         with_plugins):
    with_plugins(fault_plugin)
    out = tmp_path / "run"
    result = invoke(*run_args(tiny_model_dir, out, env="BrokenStep-v0", episodes=20), "--max-env-errors", 4)
    assert result.exit_code == 1, result.output
    line = last_line(result)
    assert "4 environment errors in a row (limit 4, set with --max-env-errors)" in line
    assert "step failed on purpose" in line and "Traceback" not in result.output
    played = rows(out / "episodes.jsonl")
    assert len(played) == 4 and all(r["error"] for r in played)
    assert latest_checkpoint(out) is not None  # stopped with its state saved, so it can be resumed


def test_an_environment_that_cannot_be_built_is_one_line_and_leaves_nothing(tiny_model_dir, tmp_path,
                                                                            with_plugins):
    with_plugins(fault_plugin)
    out = tmp_path / "run"
    result = invoke(*run_args(tiny_model_dir, out, env="Unbuildable-v0"))
    assert result.exit_code == 1, result.output
    assert last_line(result) == ("Error: env 'Unbuildable-v0' of plugin 'fault_plugin' cannot be created: "
                                 "RuntimeError: this environment cannot be built")
    assert not out.exists()


def _raising_plugin(hook_name):
    def broken(**kwargs):
        raise KeyError("no such field")

    broken.__name__ = hook_name
    signature = {"llamagym_system_prompt": "agent", "llamagym_format_observation": "agent, observation",
                 "llamagym_extract_action": "agent, response, observation",
                 "llamagym_response_complete": "agent, response",
                 "llamagym_action_choices": "agent, observation"}[hook_name]
    namespace = {"broken": broken}
    exec(f"def {hook_name}({signature}):\n    return broken()", namespace)  # pluggy reads the argument names
    module = types.ModuleType("broken_plugin")
    setattr(module, hook_name, hookimpl(namespace[hook_name]))
    return module


@pytest.mark.parametrize("hook_name", ["llamagym_system_prompt", "llamagym_format_observation",
                                       "llamagym_extract_action", "llamagym_response_complete",
                                       "llamagym_action_choices"])
def test_a_plugin_hook_that_raises_is_one_line_naming_the_plugin(tiny_model_dir, tmp_path, with_plugins,
                                                                  hook_name):
    with_plugins(_raising_plugin(hook_name))
    out = tmp_path / "run"
    free_text = ["--no-constrained"] if hook_name == "llamagym_response_complete" else []  # else never asked
    result = invoke(*run_args(tiny_model_dir, out), *free_text)
    assert result.exit_code == 1, result.output
    assert last_line(result) == (f"Error: plugin 'broken_plugin' (block it with LLAMAGYM_BLOCK_PLUGINS="
                                 f"broken_plugin) raised KeyError in {hook_name}: 'no such field'")
    assert "Traceback" not in result.output
    assert not out.exists()  # failed before its first checkpoint: nothing half-made is left


def test_an_agent_method_that_raises_is_named_by_its_class(tiny, bare_pm):
    from llamagym import Agent

    class Fragile(Agent):
        def get_system_prompt(self):
            return "Say hit or stick."

        def format_observation(self, observation):
            return f"total {observation[5]}"  # IndexError for a 3-tuple

        def extract_action(self, response):
            raise ActionParseError("never valid")

    model, tokenizer = tiny
    agent = Fragile(model, tokenizer, "cpu", {"max_new_tokens": 2}, plugin_manager=bare_pm)
    with pytest.raises(PluginError, match=r"agent .*Fragile\.format_observation raised IndexError in "
                                          r"llamagym_format_observation: tuple index out of range"):
        agent.act((12, 3, 0))
    # the documented parse error is no fault: the turn takes the fallback action and counts as invalid
    agent.format_observation = lambda observation: "total"
    import gymnasium as gym

    agent.action_space = gym.spaces.Discrete(2)
    assert agent.act((12, 3, 0), slot=1) in (0, 1) and agent.counters["invalid_turns"] == 1


@pytest.mark.parametrize("fault", ["inf loss", "inf gradient"])
def test_a_nonfinite_loss_or_gradient_skips_the_update_untouched(tiny, monkeypatch, fault):
    from llamagym.algo import ppo
    from llamagym.config import LoraConfig, PPOConfig
    from llamagym.agent.episode import Episode, Turn
    from llamagym.policy.models import add_lora
    from llamagym.algo.trainer import PPOTrainer
    from llamagym.policy.value_head import AutoModelForCausalLMWithValueHead

    model, tokenizer = tiny
    policy = AutoModelForCausalLMWithValueHead(add_lora(model, LoraConfig(r=2)))
    trainer = PPOTrainer(policy, PPOConfig(learning_rate=1e-2, mini_batch_size=2, ppo_epochs=2),
                         pad_token_id=tokenizer.pad_token_id)
    episodes = [Episode([Turn([1, 30, 31], [40 + i, 41], "x", None, 0, reward=r, env_reward=r)])
                for i, r in enumerate([1.0, -1.0, 0.5, -0.5])]
    if fault == "inf loss":
        policy_loss = ppo.policy_loss
        monkeypatch.setattr(ppo, "policy_loss", lambda *a, **k: (policy_loss(*a, **k)[0] * float("inf"),
                                                                   policy_loss(*a, **k)[1]))
    else:
        monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", lambda *a, **k: torch.tensor(float("inf")))
    before = [p.detach().clone() for p in policy.trainable_parameters()]
    optimizer_state = len(trainer.optimizer.state)
    stats = trainer.step(episodes)
    assert stats["ppo/skipped_update"] == 1.0 and trainer.updates == 0
    assert all(torch.equal(a, b) for a, b in zip(before, policy.trainable_parameters()))
    assert len(trainer.optimizer.state) == optimizer_state  # no Adam moments from a poisoned step
