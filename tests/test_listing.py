"""`llamagym plugins` as a user reads it: per plugin its distribution and version, hooks, agents, envs and load
error, in text and JSON."""

import json
import types

import pytest
from click.testing import CliRunner

from llamagym import hookimpl
from llamagym.plugins import manager as plugins
from llamagym.cli import cli


class Dist:
    def __init__(self, name, version):
        self.metadata, self.version = {"Name": name}, version


class EntryPoint:
    def __init__(self, name, load, dist):
        self.name, self.value, self.load, self.dist = name, f"{name}_module", load, dist


def games_module():
    module = types.ModuleType("games_module")
    module.llamagym_register_agents = hookimpl(lambda register: register("chess", "m:Chess"))
    module.llamagym_register_envs = hookimpl(lambda register: register("Chess-v0", "m:make", kind="aec"))
    module.llamagym_shape_reward = hookimpl(lambda reward: None)
    return module


def broken_module():
    raise ModuleNotFoundError("No module named 'pettingzoo'")


@pytest.fixture
def fake_plugins(monkeypatch):
    eps = [EntryPoint("games", games_module, Dist("llamagym-games", "1.2.3")),
           EntryPoint("broken", broken_module, Dist("llamagym-broken", "0.0.1"))]
    monkeypatch.setattr(plugins, "_entry_points", lambda: eps)
    monkeypatch.delenv(plugins.LOAD_ENV, raising=False)
    plugins.reset_plugin_manager()
    yield
    plugins.reset_plugin_manager()


def test_plugins_json_shows_what_each_plugin_brings_and_why_one_failed(fake_plugins):
    result = CliRunner().invoke(cli, ["plugins", "--json"])
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.output)}
    assert set(rows) == {"games", "broken"}  # the core's own hooks only with --all
    assert rows["games"] == {"name": "games", "module": "games_module", "distribution": "llamagym-games",
                             "version": "1.2.3", "error": None, "agents": ["chess"], "envs": ["Chess-v0"],
                             "hooks": ["llamagym_register_agents", "llamagym_register_envs",
                                       "llamagym_shape_reward"]}
    assert rows["broken"]["error"] == "ModuleNotFoundError: No module named 'pettingzoo'"
    assert rows["broken"]["distribution"] == "llamagym-broken" and rows["broken"]["hooks"] == []


def test_plugins_text_listing(fake_plugins):
    result = CliRunner().invoke(cli, ["plugins"])
    assert result.exit_code == 0, result.output
    assert "games (llamagym-games 1.2.3)\n  hooks:  llamagym_register_agents, llamagym_register_envs, " \
           "llamagym_shape_reward\n  agents: chess\n  envs:   Chess-v0" in result.output
    assert "broken (llamagym-broken 0.0.1)\n  could not load: ModuleNotFoundError" in result.output
    with_core = json.loads(CliRunner().invoke(cli, ["plugins", "--json", "--all"]).output)
    assert "llamagym.agent_methods" in {row["name"] for row in with_core}
