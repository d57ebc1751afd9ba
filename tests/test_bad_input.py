"""Bad input through the command line: every case is one `Error: ...` line naming what is wrong and what would be
right, exit code 2 (1 for a broken plugin), no traceback, and no output directory left behind."""

import types

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
