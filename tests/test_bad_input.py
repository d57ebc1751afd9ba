"""Bad input through the command line: every case is one `Error: ...` line naming what is wrong and what would be
right, exit code 2 (1 for a broken plugin), no traceback, and no output directory left behind."""

import json
import os
import types
from pathlib import Path

import pytest
from click.testing import CliRunner

from llamagym import hookimpl
from llamagym.cli import cli

BASE = ["--agent", "blackjack", "--env", "Blackjack-v1"]


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def assert_one_line_error(result, out, *fragments, exit_code=2):
    assert result.exit_code == exit_code, result.output
    lines = result.output.strip().splitlines()
    assert lines[-1].startswith("Error:"), result.output
    for fragment in fragments:
        assert fragment in lines[-1], lines[-1]
    assert "Traceback" not in result.output
    assert not out.exists()


def _file(tmp_path, text, name="c.toml"):
    path = tmp_path / name
    path.write_bytes(text) if isinstance(text, bytes) else path.write_text(text)
    return path


@pytest.mark.parametrize("toml, fragments", [
    ("[ppo]\nlearnin_rate = 1e-4\n", ["unknown config key 'ppo.learnin_rate' (did you mean 'ppo.learning_rate'?)",
                                      "c.toml"]),
    ("episodes = 'many'\n", ["episodes must be an integer, got 'many'", "c.toml"]),
    ("[ppo]\nbatch_size = 0\n", ["ppo.batch_size must be at least 1, got 0"]),
    ("ppo = 3\n", ["ppo must be a table of settings"]),
    ("agent = 5\n", ["agent must be a string, got 5"]),
    ("episodes = [1,\n", ["is not valid TOML"]),
    (b"\xff\xfe\x00garbage", ["c.toml' is not UTF-8 text; a config file is TOML"]),
    ("[generation]\ntemperature = nan\n", ["generation.temperature must be a finite number, got nan"]),
    ("[ppo]\ncliprange = inf\n", ["ppo.cliprange must be a finite number, got inf"]),
    ("[ppo]\nkl_coef = -inf\n", ["ppo.kl_coef must be a finite number, got -inf"]),
    ("seed = 18446744073709551616\n", ["seed must be at most 4294967295"]),
])
def test_bad_config_files(tmp_path, toml, fragments):
    out = tmp_path / "out"
    result = invoke("run", *BASE, "--config", _file(tmp_path, toml), "-o", out, "-q")
    assert_one_line_error(result, out, *fragments)


@pytest.mark.parametrize("args, fragments", [
    (["--episodes", "many"], ["Invalid value for '--episodes'"]),
    (["--learning-rate", "0"], ["ppo.learning_rate must be greater than 0.0, got 0.0"]),
    (["--temperature", "-1"], ["generation.temperature must be greater than 0.0"]),
    (["--top-p", "1.5"], ["generation.top_p must be at most 1.0"]),
    (["--num-envs", "0"], ["num_envs must be at least 1"]),
    (["--max-env-errors", "-1"], ["max_env_errors must be at least 0"]),
    (["--precision", "fp8"], ["Invalid value for '--precision'"]),
    (["--config", "."], ["Invalid value for '--config'"]),
    (["--bogus-flag", "1"], ["No such option '--bogus-flag'"]),
    (["--temperature", "nan"], ["generation.temperature must be a finite number, got nan"]),
    (["--cliprange", "inf"], ["ppo.cliprange must be a finite number, got inf"]),
    (["--top-p", "nan"], ["generation.top_p must be a finite number"]),
    (["--learning-rate", "inf"], ["ppo.learning_rate must be a finite number"]),
    (["--seed", str(2**64)], ["seed must be at most 4294967295"]),
    (["--seed", "-1"], ["seed must be at least 0, got -1"]),
])
def test_bad_flags(tmp_path, args, fragments):
    out = tmp_path / "out"
    assert_one_line_error(invoke("run", *BASE, *args, "-o", out, "-q"), out, *fragments)


@pytest.mark.parametrize("model, fragments", [
    ("./no/such/dir", ["model './no/such/dir' is not a local directory or file, nor a valid Hugging Face id"]),
    ("nobody-has/this-model", ["model 'nobody-has/this-model' is not in the Hugging Face cache",
                               "pass 'default', a local model directory"]),
    ("weights.bin", ["is a file but not a .gguf file"]),
])
def test_unknown_models(tmp_path, monkeypatch, model, fragments):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # no network in tests: the answer is immediate
    monkeypatch.chdir(tmp_path)
    (tmp_path / "weights.bin").write_bytes(b"0")
    out = tmp_path / "out"
    assert_one_line_error(invoke("run", *BASE, "--model", model, "-o", out, "-q"), out, *fragments)


def test_model_directory_without_tokenizer_leaves_no_output(tmp_path):
    from llamagym.testing import tiny_model_and_tokenizer

    model, _ = tiny_model_and_tokenizer()
    model.save_pretrained(tmp_path / "m")
    out = tmp_path / "out"
    result = invoke("run", *BASE, "--model", tmp_path / "m", "-o", out, "-q")
    assert_one_line_error(result, out, "cannot load a tokenizer", "tokenizer.save_pretrained")


def _agent_plugin(preset):
    module = types.ModuleType("preset_plugin")
    module.llamagym_register_agents = hookimpl(lambda register: register(
        "presetted", "llamagym_blackjack.agent:BlackjackAgent", preset=preset))
    return module


@pytest.mark.parametrize("preset, fragments", [
    ("/no/such/preset.toml", ["the preset of agent 'presetted' (plugin 'preset_plugin') cannot be used",
                              "does not exist", "pass --no-preset"]),
    ({"ppo": {"batch_sise": 2}}, ["unknown config key 'ppo.batch_sise'", "pass --no-preset"]),
])
def test_bad_presets(tmp_path, with_plugins, preset, fragments):
    with_plugins(_agent_plugin(preset))
    out = tmp_path / "out"
    result = invoke("run", "--agent", "presetted", "--env", "Blackjack-v1", "-o", out, "-q")
    assert_one_line_error(result, out, *fragments)


def test_unknown_agent_names_plugins_that_failed_to_load(tmp_path, with_plugins):
    def broken(register):
        raise ImportError("needs a package that is missing")

    module = types.ModuleType("half_installed")
    module.llamagym_register_agents = hookimpl(broken)
    with_plugins(module)
    out = tmp_path / "out"
    result = invoke("run", "--agent", "poker", "--env", "Blackjack-v1", "-o", out, "-q")
    assert_one_line_error(result, out, "unknown agent 'poker'", "plugins that failed to load: half_installed "
                          "(llamagym_register_agents raised ImportError: needs a package that is missing)")


@pytest.mark.parametrize("args, fragments", [
    (["--resume", "{tmp}/nothing"], ["cannot resume", "not a llamagym run directory"]),
    (["--resume", "{tmp}/run", "-o", "{tmp}/elsewhere"], ["continues that directory; drop -o/--output"]),
    (["--resume", "{tmp}/run", "--model", "default"], ["a resumed run cannot change model"]),
    (["--resume", "{tmp}/run", "--learning-rate", "-1"], ["ppo.learning_rate must be greater than 0.0"]),
])
def test_bad_resumes(tmp_path, tiny_model_dir, args, fragments):
    run = tmp_path / "run"
    first = invoke("run", *BASE, "--model", tiny_model_dir, "--episodes", 2, "--num-envs", 2, "--batch-size", 2,
                   "--max-new-tokens", 2, "--lora-r", 2, "-o", run, "-q")
    assert first.exit_code == 0, first.output
    before = sorted(p.name for p in run.rglob("*"))
    result = invoke("run", *[a.format(tmp=tmp_path) for a in args], "-q")
    assert_one_line_error(result, tmp_path / "elsewhere", *fragments)
    assert sorted(p.name for p in run.rglob("*")) == before  # the run is untouched


def test_output_that_is_a_file(tmp_path):
    target = tmp_path / "taken"
    target.write_text("x")
    result = invoke("run", *BASE, "-o", target, "-q")
    assert result.exit_code == 2 and "Error:" in result.output and target.read_text() == "x"


# --- outputs that cannot be written: one line before the model loads or an episode is played -------------------

TINY = ["--num-envs", 1, "--batch-size", 2, "--max-new-tokens", 2, "--lora-r", 2]


@pytest.fixture
def no_model_loading(monkeypatch):
    """Fail the test if the model is loaded: an unwritable output must be refused before."""
    def loaded(*args, **kwargs):
        raise AssertionError("the model was loaded before the output was checked")

    for module in ("llamagym.run.training", "llamagym.cli.collect", "llamagym.tools.sft"):
        monkeypatch.setattr(f"{module}.build_agent", loaded)


def _unwritable(tmp_path, kind):
    if kind == "proc":
        return Path("/proc/llamagym-nope") / "out"
    if kind == "sys":
        return Path("/sys/llamagym-nope")
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    return blocker / "out"


@pytest.mark.parametrize("kind, fragment", [("proc", "no file can be created in '/proc'"),
                                            ("sys", "no file can be created in '/sys'"),
                                            ("file", "is a file, not a folder")])
def test_run_output_that_cannot_be_written(tmp_path, tiny_model_dir, no_model_loading, kind, fragment):
    out = _unwritable(tmp_path, kind)
    result = invoke("run", *BASE, "--model", tiny_model_dir, *TINY, "-o", out, "-q")
    assert_one_line_error(result, out, "cannot write", fragment, "pass an output in a")


@pytest.mark.parametrize("kind, fragment", [("proc", "no file can be created in '/proc'"),
                                            ("file", "is a file, not a folder")])
def test_collect_output_that_cannot_be_written(tmp_path, tiny_model_dir, no_model_loading, kind, fragment):
    out = _unwritable(tmp_path, kind).with_suffix(".jsonl")
    result = invoke("collect", *BASE, "--model", tiny_model_dir, "--episodes", 2, "-o", out, "-q")
    assert_one_line_error(result, out, "cannot write", fragment)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_collect_into_a_read_only_directory(tmp_path, tiny_model_dir, no_model_loading):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    result = invoke("collect", *BASE, "--model", tiny_model_dir, "-o", locked / "x.jsonl", "-q")
    assert_one_line_error(result, locked / "x.jsonl", "cannot write", "Permission denied")


def test_collect_keeps_what_it_collected_when_the_write_fails(tmp_path, tiny_model_dir, monkeypatch):
    import errno

    from llamagym.tools import collect

    real, calls = collect.write_jsonl, []

    def disk_full_once(path, records):
        calls.append(path)
        if len(calls) == 1:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real(path, records)

    monkeypatch.setattr(collect, "write_jsonl", disk_full_once)
    out = tmp_path / "x.jsonl"
    result = invoke("collect", *BASE, "--model", tiny_model_dir, "--policy", "expert", "--episodes", 3,
                    "--num-envs", 1, "-o", out, "-q")
    assert_one_line_error(result, out, "No space left on device", "the 3 collected conversations are kept in")
    kept = Path(result.output.strip().splitlines()[-1].split("kept in ")[1].split(":")[0])
    assert len(kept.read_text().splitlines()) == 3
    kept.unlink()


@pytest.mark.parametrize("kind, fragment", [("proc", "no file can be created in '/proc'"),
                                            ("sys", "no file can be created in '/sys'"),
                                            ("file", "is a file, not a folder")])
def test_plot_output_that_cannot_be_written(tmp_path, kind, fragment):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text('{"update": 1, "episodes": 2, "env/return_mean": 0.5}\n')
    out = _unwritable(tmp_path, kind).with_suffix(".png")
    assert_one_line_error(invoke("plot", run, "-o", out), out, "cannot write", fragment)


def test_sft_output_that_cannot_be_written(tmp_path, tiny_model_dir, no_model_loading):
    data = _file(tmp_path, json.dumps(_record()) + "\n", "data.jsonl")
    out = _unwritable(tmp_path, "proc")
    result = invoke("sft", data, "--agent", "blackjack", "--env", "Blackjack-v1", "--model", tiny_model_dir,
                    "-o", out, "-q")
    assert_one_line_error(result, out, "cannot write", "'/proc'")


# --- malformed SFT data: one line with the file and line number ----------------------------------------------

def _record(**changes):
    record = {"agent": "blackjack", "env": "Blackjack-v1", "return": 1.0, "turns": 1, "invalid_turns": 0,
              "messages": [{"role": "system", "content": "Play blackjack."},
                           {"role": "user", "content": "You have 15."},
                           {"role": "assistant", "content": "Action: stick"}]}
    record.update(changes)
    return record


@pytest.mark.parametrize("content, fragments", [
    ("", ["data.jsonl' holds no conversations (it is empty)", "llamagym collect"]),
    ("\n  \n\n", ["data.jsonl' holds no conversations"]),
    (b"\x00\x89PNG\xff\xfe\n", ["data.jsonl:1 is not UTF-8 text"]),
    (json.dumps(_record()) + "\n" + json.dumps(_record(**{"return": "high"})) + "\n",
     ["data.jsonl:2 has a return of 'high'; it must be a number"]),
    (json.dumps(_record(**{"return": None})) + "\n", ["data.jsonl:1 has a return of None"]),
    (json.dumps(_record(**{"return": True})) + "\n", ["data.jsonl:1 has a return of True"]),
    (json.dumps(_record(messages=[{"role": "assistant", "content": "Action: hit"},
                                  {"role": "user", "content": "You have 15."}])) + "\n",
     ["data.jsonl:1 has a conversation whose first message after the system prompt is an assistant message",
      "the user's observation"]),
    (json.dumps(_record(messages=[{"role": "robot", "content": "x"}])) + "\n", ["data.jsonl:1 has no conversation"]),
])
def test_malformed_sft_data(tmp_path, tiny_model_dir, no_model_loading, content, fragments):
    data = _file(tmp_path, content, "data.jsonl")
    out = tmp_path / "out"
    result = invoke("sft", data, "--agent", "blackjack", "--env", "Blackjack-v1", "--model", tiny_model_dir,
                    "-o", out, "-q")
    assert_one_line_error(result, out, *fragments)


# --- plugins and environments that break their contract: one line naming the plugin (or env) and the hook -------

def _answering_plugin(hook_name, answer):
    signature = {"llamagym_system_prompt": "agent", "llamagym_action_choices": "agent, observation",
                 "llamagym_extract_action": "agent, response, observation"}[hook_name]
    namespace = {"answer": answer}
    exec(f"def {hook_name}({signature}):\n    return answer", namespace)  # pluggy reads the argument names
    module = types.ModuleType("contract_plugin")
    setattr(module, hook_name, hookimpl(tryfirst=True)(namespace[hook_name]))
    return module


BLOCK = "plugin 'contract_plugin' (block it with LLAMAGYM_BLOCK_PLUGINS=contract_plugin) returned"


@pytest.mark.parametrize("hook_name, answer, fragments", [
    ("llamagym_system_prompt", 5, ["5 in llamagym_system_prompt: it must return the system prompt as a string"]),
    ("llamagym_system_prompt", ["a", "list"], ["in llamagym_system_prompt"]),
    ("llamagym_action_choices", [], ["[] in llamagym_action_choices: it must list at least one response"]),
    ("llamagym_action_choices", " hit", ["' hit' in llamagym_action_choices: it must return a list"]),
    ("llamagym_action_choices", [1, 2], ["in llamagym_action_choices: it must return a list of the response"]),
    ("llamagym_extract_action", 7, ["7 in llamagym_extract_action: the action is not in the env's action space "
                                    "Discrete(2)"]),
    ("llamagym_extract_action", "stick", ["'stick' in llamagym_extract_action: the action is not in the env's"]),
])
def test_a_hook_answer_that_breaks_the_contract_names_the_plugin(tmp_path, tiny_model_dir, with_plugins, hook_name,
                                                                 answer, fragments):
    with_plugins(_answering_plugin(hook_name, answer))
    out = tmp_path / "out"
    result = invoke("run", *BASE, "--model", tiny_model_dir, *TINY, "--episodes", 2, "-o", out, "-q")
    assert_one_line_error(result, out, BLOCK, *fragments, exit_code=1)


def test_an_agent_method_that_breaks_the_contract_is_named_by_its_class(tiny, bare_pm):
    import gymnasium

    from llamagym import Agent, PluginError

    class Careless(Agent):
        def get_system_prompt(self):
            return 42

        def format_observation(self, observation):
            return "total 12"

        def extract_action(self, response):
            return 3

    model, tokenizer = tiny
    agent = Careless(model, tokenizer, "cpu", {"max_new_tokens": 2}, plugin_manager=bare_pm,
                     action_space=gymnasium.spaces.Discrete(2))
    with pytest.raises(PluginError, match=r"agent .*Careless\.get_system_prompt returned 42 in "
                                          r"llamagym_system_prompt"):
        agent.act((12, 3, 0))
    agent.get_system_prompt = lambda: "Say hit or stick."
    with pytest.raises(PluginError, match=r"agent .*Careless\.extract_action returned 3 in llamagym_extract_action: "
                                          r"the action is not in the env's action space Discrete\(2\)"):
        agent.act((12, 3, 0), slot=1)


class OddReward(__import__("gymnasium").Wrapper):
    """Blackjack whose rewards are `reward` (None, a string...)."""

    def __init__(self, reward=None):
        super().__init__(__import__("gymnasium").make("Blackjack-v1"))
        self.reward = reward

    def step(self, action):
        observation, _, terminated, truncated, info = self.env.step(action)
        return observation, self.reward, terminated, truncated, info


def _env_plugin(reward):
    module = types.ModuleType("odd_env_plugin")
    module.llamagym_register_envs = hookimpl(lambda register: register("OddReward-v0", OddReward,
                                                                       kwargs={"reward": reward}))
    return module


@pytest.mark.parametrize("reward", [None, "1.0", [1.0]])
def test_a_reward_that_is_not_a_number_names_the_env(tmp_path, tiny_model_dir, with_plugins, reward):
    with_plugins(_env_plugin(reward))
    out = tmp_path / "out"
    result = invoke("run", "--agent", "blackjack", "--env", "OddReward-v0", "--model", tiny_model_dir, *TINY,
                    "--episodes", 2, "-o", out, "-q")
    assert_one_line_error(result, out, "env <OddReward<", f"returned the reward {reward!r}", "from step",
                          "a reward must be a number", exit_code=1)


def test_numpy_rewards_are_numbers(tmp_path, tiny_model_dir, with_plugins):
    import numpy as np

    with_plugins(_env_plugin(np.float32(0.5)))
    out = tmp_path / "out"
    result = invoke("run", "--agent", "blackjack", "--env", "OddReward-v0", "--model", tiny_model_dir, *TINY,
                    "--episodes", 2, "-o", out, "-q")
    assert result.exit_code == 0, result.output


# --- broken models: one line naming the model and what is wrong ----------------------------------------------

def _broken_model(tmp_path, tiny_model_dir, damage):
    import shutil

    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    if damage == "truncated weights":
        weights = model / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[:1000])
    elif damage == "garbage weights":
        (model / "model.safetensors").write_bytes(b"\x00garbage" * 64)
    elif damage == "unknown architecture":
        config = json.loads((model / "config.json").read_text())
        config["model_type"] = "no-such-architecture"
        (model / "config.json").write_text(json.dumps(config))
    elif damage == "gguf without magic":
        model = tmp_path / "model.gguf"
        model.write_bytes(b"NOTGGUF" + b"\x00" * 256)
    return model


@pytest.mark.parametrize("damage", ["truncated weights", "garbage weights", "unknown architecture",
                                    "gguf without magic"])
def test_broken_models(tmp_path, tiny_model_dir, damage):
    model = _broken_model(tmp_path, tiny_model_dir, damage)
    out = tmp_path / "out"
    result = invoke("run", *BASE, "--model", model, *TINY, "-o", out, "-q")
    assert_one_line_error(result, out, f"cannot load model {str(model)!r}")


# --- resuming with fewer episodes than the run has: an error; as many: nothing to do ------------------------------

@pytest.fixture(scope="module")
def four_episode_run(tmp_path_factory, tiny_model_dir):
    """A finished run of 4 episodes and 2 updates, with a checkpoint after each update."""
    out = tmp_path_factory.mktemp("finished") / "run"
    result = invoke("run", *BASE, "--model", tiny_model_dir, *TINY, "--episodes", 4, "--mini-batch-size", 2,
                    "--ppo-epochs", 1, "--checkpoint-every", 1, "--no-score-policy", "-o", out, "-q")
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture
def finished_copy(four_episode_run, tmp_path):
    import shutil

    target = tmp_path / "run"
    shutil.copytree(four_episode_run, target)
    return target


def _files(directory):
    return {str(p.relative_to(directory)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(directory.rglob("*")) if p.is_file() and p.name != ".lock"}


@pytest.mark.parametrize("episodes", [1, 2, 3])
def test_resume_with_fewer_episodes_than_the_run_has(finished_copy, no_model_loading, episodes):
    before = _files(finished_copy)
    result = invoke("run", "--resume", finished_copy, "--episodes", episodes, "-q")
    assert_one_line_error(result, finished_copy / "nothing", f"with episodes = {episodes}",
                          "the run already has 4 episodes (checkpoint update-000002-ep-000000004)",
                          "pass --episodes larger than 4")
    assert _files(finished_copy) == before


@pytest.mark.parametrize("args", [[], ["--episodes", 4], ["--episodes", 4, "--learning-rate", 1e-3]])
def test_resume_with_as_many_episodes_as_the_run_has_changes_nothing(finished_copy, no_model_loading, args):
    before = _files(finished_copy)
    result = invoke("run", "--resume", finished_copy, *args, "-q")
    assert result.exit_code == 0, result.output
    assert result.output.strip() == (f"the run in {finished_copy} already has its 4 episodes (2 updates): nothing "
                                     f"to train, nothing changed; pass --episodes larger than 4 to train it further")
    assert _files(finished_copy) == before


def test_a_run_killed_before_its_summary_is_completed_by_a_resume(finished_copy):
    (finished_copy / "summary.json").unlink()  # killed after the last checkpoint, before the summary
    result = invoke("run", "--resume", finished_copy, "-q")
    assert result.exit_code == 0, result.output
    assert "trained 4 episodes, 2 updates" in result.output
    assert json.loads((finished_copy / "summary.json").read_text())["episodes"] == 4


def test_fewer_episodes_count_from_the_checkpoint_a_resume_can_use(finished_copy):
    newest = finished_copy / "checkpoints" / "update-000002-ep-000000004" / "trainer.pt"
    newest.write_bytes(newest.read_bytes()[:100])  # damaged: the resume falls back to update 1 (2 episodes)
    result = invoke("run", "--resume", finished_copy, "--episodes", 3, "-q")
    assert result.exit_code == 0, result.output
    assert json.loads((finished_copy / "summary.json").read_text())["episodes"] == 3


# --- a prompt longer than the model's context: one line, before generation ----------------------------------------

@pytest.fixture(scope="module")
def short_context_model(tmp_path_factory):
    """A tiny GPT-2 (learnt positions: no position past the 64th exists) and the tiny tokenizer."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from llamagym.testing import tiny_tokenizer

    tokenizer = tiny_tokenizer()
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=64, n_embd=32, n_layer=2, n_head=4,
                        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                        pad_token_id=tokenizer.pad_token_id)
    model = GPT2LMHeadModel(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    directory = tmp_path_factory.mktemp("gpt2-64")
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.mark.parametrize("args", [[], ["--max-history-turns", 1], ["--no-score-policy", "--max-new-tokens", 8]])
def test_a_prompt_longer_than_the_models_context_is_one_line(tmp_path, short_context_model, args):
    out = tmp_path / "out"
    result = invoke("run", *BASE, "--model", short_context_model, *TINY, "--lora-target-modules", "c_attn",
                    "--episodes", 2, *args, "-o", out, "-q")
    assert_one_line_error(result, out, "the prompt is", "tokens, beyond the model's context of 64 tokens",
                          "generation.max_history_turns", "shorten the system prompt or the observation")
    assert "IndexError" not in result.output


# --- a continuous-action env under a discrete agent ----------------------------------------------------------------

@pytest.mark.parametrize("command", ["run", "eval"])
def test_a_discrete_agent_on_a_continuous_env_is_one_line(tmp_path, tiny_model_dir, command):
    out = tmp_path / "out"
    where = ["-o", out, "--no-score-policy", *TINY] if command == "run" else ["--num-envs", 1]
    result = invoke(command, "--agent", "blackjack", "--env", "Pendulum-v1", "--model", tiny_model_dir,
                    "--episodes", 2, *where, "-q")
    assert_one_line_error(result, out, "BlackjackAgent.extract_action", "action space Box(-2.0, 2.0, (1,), float32) "
                          "holds continuous actions (float32 arrays of shape (1,))", "it is not an agent for this env",
                          "Discrete action space", exit_code=1)
