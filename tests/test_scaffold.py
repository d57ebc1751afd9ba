"""`llamagym new`: the rendered package, bad names, and the whole path a plugin author takes: scaffold, pip install,
see it listed, run its generated tests, train it a few episodes on a tiny model, uninstall it and see it gone."""

import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from llamagym.cli import cli
from llamagym.tools.scaffold import plugin_names, scaffold_plugin, template_files

CLI = [sys.executable, "-c", "from llamagym.cli import main; main()"]


def test_names_derive_from_the_plugin_name():
    assert plugin_names("llamagym-Word-Chain") == {
        "name": "word-chain", "distribution": "llamagym-word-chain", "module": "llamagym_word_chain",
        "class_prefix": "WordChain", "env_id": "WordChain-v0", "llamagym_version": "0.2"}


@pytest.mark.parametrize("bad", ["2048", "my_game", "a--b", "x-", "", "game!"])
def test_a_bad_name_is_one_line_exit_2(bad, tmp_path):
    result = CliRunner().invoke(cli, ["new", bad, "-d", str(tmp_path)])
    assert result.exit_code == 2 and "is not valid: use lowercase letters" in result.output
    assert len(result.output.strip().splitlines()) == 1 and not any(tmp_path.iterdir())


def test_the_package_is_rendered_completely(tmp_path):
    result = CliRunner().invoke(cli, ["new", "word-chain", "-d", str(tmp_path)])
    assert result.exit_code == 0, result.output
    root = tmp_path / "llamagym-word-chain"
    written = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    assert written == ["README.md", "llamagym_word_chain/__init__.py", "llamagym_word_chain/agent.py",
                       "llamagym_word_chain/env.py", "llamagym_word_chain/plugin.py",
                       "llamagym_word_chain/preset.toml", "pyproject.toml", "tests/test_llamagym_word_chain.py"]
    assert len(written) == len(template_files())
    for path in root.rglob("*.py"):
        compile(path.read_text(), str(path), "exec")
    text = "".join(p.read_text() for p in root.rglob("*") if p.is_file())
    assert "${" not in text and "__module__" not in text
    assert 'word-chain = "llamagym_word_chain.plugin"' in (root / "pyproject.toml").read_text()
    assert "class WordChainAgent(Agent)" in (root / "llamagym_word_chain" / "agent.py").read_text()


def test_scaffolding_over_an_existing_package_is_refused(tmp_path):
    scaffold_plugin("word-chain", tmp_path)
    (tmp_path / "llamagym-word-chain" / "README.md").write_text("mine")
    result = CliRunner().invoke(cli, ["new", "word-chain", "-d", str(tmp_path)])
    assert result.exit_code == 2 and "already exists" in result.output
    assert (tmp_path / "llamagym-word-chain" / "README.md").read_text() == "mine"


def test_the_generated_env_passes_gymnasiums_checker_in_its_own_tests(tmp_path):
    """The generated tests run `check_env` on the env (pip-free: the package directory on the path), so a plugin
    started from the template keeps passing it."""
    package = scaffold_plugin("checker-guess", tmp_path)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(package), os.environ.get("PYTHONPATH", "")])}
    tests = _run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", "env_checker"],
                 cwd=package, env=env)
    assert tests.returncode == 0, tests.stdout[-3000:]
    assert "1 passed" in tests.stdout


def _run(args, **kwargs):
    return subprocess.run(args, capture_output=True, text=True, timeout=300, **kwargs)


def _plugins():
    listing = _run([*CLI, "plugins", "--json"])
    assert listing.returncode == 0, listing.stderr
    return {p["name"]: p for p in json.loads(listing.stdout)}


def test_scaffold_install_list_test_run_uninstall(tmp_path, tiny_model_dir):
    package = scaffold_plugin("demo-guess", tmp_path)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input", "-q"]
    assert "demo-guess" not in _plugins()
    installed = _run([*pip, "install", "--no-deps", "--no-build-isolation", "-e", str(package)])
    assert installed.returncode == 0, installed.stderr
    try:
        listed = _plugins()["demo-guess"]
        assert listed["distribution"] == "llamagym-demo-guess" and listed["version"] == "0.1.0"
        assert listed["agents"] == ["demo-guess"] and listed["envs"] == ["DemoGuess-v0"] and listed["error"] is None
        assert listed["hooks"] == ["llamagym_register_agents", "llamagym_register_envs", "llamagym_shape_reward"]

        tests = _run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=package)
        assert tests.returncode == 0, tests.stdout[-3000:]
        assert " passed" in tests.stdout and "failed" not in tests.stdout

        out = tmp_path / "run"
        run = _run([*CLI, "run", "--agent", "demo-guess", "--env", "DemoGuess-v0", "--model", str(tiny_model_dir),
                    "--episodes", "8", "--num-envs", "4", "--batch-size", "4", "--mini-batch-size", "4",
                    "--ppo-epochs", "1", "--lora-r", "2", "-o", str(out), "-q"])
        assert run.returncode == 0, run.stderr[-3000:]
        summary = json.loads((out / "summary.json").read_text())
        assert summary["episodes"] == 8 and summary["updates"] == 2
        config = json.loads((out / "config.json").read_text())["config"]
        assert config["generation"]["max_new_tokens"] == 4  # the plugin's preset was applied
    finally:
        removed = _run([*pip, "uninstall", "-y", "llamagym-demo-guess"])
    assert removed.returncode == 0, removed.stderr
    assert "demo-guess" not in _plugins()
