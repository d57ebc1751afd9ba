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
                             "version": "1.2.3", "status": "loaded", "error": None, "agents": ["chess"],
                             "envs": ["Chess-v0"], "clashes": [],
                             "hooks": ["llamagym_register_agents", "llamagym_register_envs",
                                       "llamagym_shape_reward"]}
    assert rows["broken"]["error"] == "ModuleNotFoundError: No module named 'pettingzoo'"
    assert rows["broken"]["status"] == "failed"
    assert rows["broken"]["distribution"] == "llamagym-broken" and rows["broken"]["hooks"] == []


def test_plugins_text_listing(fake_plugins):
    result = CliRunner().invoke(cli, ["plugins"])
    assert result.exit_code == 0, result.output
    assert "games (llamagym-games 1.2.3)\n  hooks:  llamagym_register_agents, llamagym_register_envs, " \
           "llamagym_shape_reward\n  agents: chess\n  envs:   Chess-v0" in result.output
    assert "broken (llamagym-broken 0.0.1)\n  could not load: ModuleNotFoundError" in result.output
    with_core = json.loads(CliRunner().invoke(cli, ["plugins", "--json", "--all"]).output)
    assert "llamagym.agent_methods" in {row["name"] for row in with_core}


# --- a name clash, a broken entry point, blocked plugins: every command still works (issue 18) -------------------

def clash_module():
    """A third-party plugin that claims a name the `games` plugin also registers, and one of its own."""
    module = types.ModuleType("clash_module")

    def register_agents(register):
        register("chess", "elsewhere:Chess")
        register("checkers", "elsewhere:Checkers", description="plays checkers")

    module.llamagym_register_agents = hookimpl(register_agents)
    module.llamagym_register_envs = hookimpl(lambda register: register("Chess-v0", "elsewhere:make", kind="aec"))
    return module


@pytest.fixture
def clashing_plugins(monkeypatch):
    eps = [EntryPoint("games", games_module, Dist("llamagym-games", "1.2.3")),
           EntryPoint("lgtp-clash", clash_module, Dist("lgtp-clash", "0.1.0")),
           EntryPoint("broken", broken_module, Dist("llamagym-broken", "0.0.1"))]
    monkeypatch.setattr(plugins, "_entry_points", lambda: eps)
    monkeypatch.delenv(plugins.LOAD_ENV, raising=False)
    monkeypatch.delenv(plugins.BLOCK_ENV, raising=False)
    plugins.reset_plugin_manager()
    yield
    plugins.reset_plugin_manager()


CLASH = "agent name 'chess' is registered by both 'games' and 'lgtp-clash'"


def test_list_works_through_a_name_clash_and_shows_it(clashing_plugins):
    result = CliRunner().invoke(cli, ["list"])
    assert result.exit_code == 0, result.output
    assert "checkers" in result.stdout and "plays checkers" in result.stdout  # the other names still list
    assert CLASH in result.stderr and "env id 'Chess-v0' is registered by both" in result.stderr
    assert "LLAMAGYM_BLOCK_PLUGINS=lgtp-clash" in result.stderr
    assert "broken: could not load: ModuleNotFoundError: No module named 'pettingzoo'" in result.stderr
    listed = json.loads(CliRunner().invoke(cli, ["list", "--json"]).stdout)
    assert "checkers" in {a["name"] for a in listed["agents"]} and "chess" not in {a["name"] for a in listed["agents"]}
    assert CLASH in listed["errors"]["games"] and CLASH in listed["errors"]["lgtp-clash"]
    assert listed["errors"]["broken"] == "could not load: ModuleNotFoundError: No module named 'pettingzoo'"
    assert {"kind": "agent", "name": "chess", "plugins": ["games", "lgtp-clash"]} in listed["clashes"]
    assert {"kind": "env", "name": "Chess-v0", "plugins": ["games", "lgtp-clash"]} in listed["clashes"]


def test_list_json_errors_name_a_plugin_whose_entry_point_fails(fake_plugins):
    result = CliRunner().invoke(cli, ["list"])
    assert result.exit_code == 0, result.output
    assert "! broken: could not load: ModuleNotFoundError: No module named 'pettingzoo'" in result.stderr
    listed = json.loads(CliRunner().invoke(cli, ["list", "--json"]).stdout)
    assert listed["errors"] == {"broken": "could not load: ModuleNotFoundError: No module named 'pettingzoo'"}


def test_plugins_marks_both_sides_of_a_clash(clashing_plugins):
    result = CliRunner().invoke(cli, ["plugins"])
    assert result.exit_code == 0, result.output
    assert "games (llamagym-games 1.2.3)\n  hooks:" in result.output
    assert "  clash:  agent 'chess' is also registered by 'lgtp-clash'" in result.output
    assert "  clash:  agent 'chess' is also registered by 'games'" in result.output
    assert "  agents: checkers, chess (clash)" in result.output
    rows = {row["name"]: row for row in json.loads(CliRunner().invoke(cli, ["plugins", "--json"]).stdout)}
    for name in ("games", "lgtp-clash"):
        assert rows[name]["status"] == "loaded" and rows[name]["error"] is None
        assert {"kind": "agent", "name": "chess", "plugins": ["games", "lgtp-clash"]} in rows[name]["clashes"]
    assert rows["lgtp-clash"]["agents"] == ["checkers", "chess"]
    assert rows["broken"]["status"] == "failed" and rows["broken"]["clashes"] == []


def test_a_clashing_name_is_refused_in_one_line_and_the_other_names_work(clashing_plugins):
    from llamagym.errors import PluginError
    from llamagym.plugins.registry import get_registry
    from llamagym.run.setup import resolve_config

    registry = get_registry()
    with pytest.raises(PluginError) as info:
        registry.agent("chess")
    message = str(info.value)
    assert CLASH in message and "LLAMAGYM_BLOCK_PLUGINS=lgtp-clash" in message and "uninstall" in message
    assert "\n" not in message
    with pytest.raises(PluginError, match="env id 'Chess-v0' is registered by both 'games' and 'lgtp-clash'"):
        registry.env("Chess-v0")  # not handed on to llamagym_resolve_env
    assert registry.agent("checkers").plugin == "lgtp-clash"
    config = resolve_config({"agent": "checkers", "env": "FrozenLake-v1"}, use_preset=False)
    assert config.agent == "checkers"
    with pytest.raises(PluginError, match=CLASH):
        resolve_config({"agent": "chess", "env": "FrozenLake-v1"})
    result = CliRunner().invoke(cli, ["run", "--agent", "chess", "--env", "FrozenLake-v1"])
    assert result.exit_code == 1 and CLASH in result.output and "Traceback" not in result.output


def test_blocking_one_side_of_a_clash_lists_it_as_blocked_and_frees_the_name(clashing_plugins, monkeypatch):
    monkeypatch.setenv(plugins.BLOCK_ENV, "lgtp-clash")
    result = CliRunner().invoke(cli, ["plugins"])
    assert result.exit_code == 0, result.output
    assert "lgtp-clash (lgtp-clash 0.1.0)\n  blocked by LLAMAGYM_BLOCK_PLUGINS" in result.output
    rows = {row["name"]: row for row in json.loads(CliRunner().invoke(cli, ["plugins", "--json"]).stdout)}
    assert rows["lgtp-clash"]["status"] == "blocked" and rows["lgtp-clash"]["hooks"] == []
    assert rows["lgtp-clash"]["distribution"] == "lgtp-clash" and rows["games"]["clashes"] == []
    from llamagym.plugins.registry import get_registry

    assert get_registry().agent("chess").plugin == "games"


def test_plugins_not_selected_by_load_plugins_are_listed_as_not_loaded(clashing_plugins, monkeypatch):
    monkeypatch.setenv(plugins.LOAD_ENV, "games")
    result = CliRunner().invoke(cli, ["plugins"])
    assert result.exit_code == 0, result.output
    assert "lgtp-clash (lgtp-clash 0.1.0)\n  not loaded: not in LLAMAGYM_LOAD_PLUGINS" in result.output
    rows = {row["name"]: row for row in json.loads(CliRunner().invoke(cli, ["plugins", "--json"]).stdout)}
    assert rows["games"]["status"] == "loaded"
    assert rows["lgtp-clash"]["status"] == "not_selected" and rows["broken"]["status"] == "not_selected"


def test_list_survives_an_opponent_name_two_plugins_register_for_one_game(monkeypatch):
    def opponents(register):
        register("greedy", "random:choice", envs=["Chess-v0"])

    def module(name):
        plugin = types.ModuleType(name)
        plugin.llamagym_register_opponents = hookimpl(opponents)
        return plugin

    eps = [EntryPoint(name, lambda name=name: module(name), Dist(name, "1.0")) for name in ("one", "two")]
    monkeypatch.setattr(plugins, "_entry_points", lambda: eps)
    monkeypatch.delenv(plugins.LOAD_ENV, raising=False)
    plugins.reset_plugin_manager()
    try:
        result = CliRunner().invoke(cli, ["list"])
        listed = json.loads(CliRunner().invoke(cli, ["list", "--json"]).stdout)
    finally:
        plugins.reset_plugin_manager()
    assert result.exit_code == 0, result.output
    assert "opponent 'greedy' is registered by both 'one' and 'two'" in result.stderr
    assert "random " in result.stdout and "base " in result.stdout  # the core's own still list
    assert "'greedy' is registered by both" in listed["errors"]["llamagym_register_opponents"]


def test_an_opponent_name_two_plugins_register_is_unusable_and_the_others_still_play(bare_pm):
    from llamagym.errors import PluginError
    from llamagym.rollout.games.opponents import check_opponent, find_scripted

    for name in ("one", "two"):
        plugin = types.ModuleType(name)
        plugin.llamagym_register_opponents = hookimpl(
            lambda register: register("greedy", "random:choice", envs=["tictactoe_v3"]))
        bare_pm.register(plugin, name=name)
    assert check_opponent(bare_pm, "random", "tictactoe_v3") == "random"  # the built-in one still plays
    with pytest.raises(PluginError, match="opponent 'greedy' is registered by both 'one' and 'two'.*BLOCK_PLUGINS"):
        find_scripted(bare_pm, "greedy", "tictactoe_v3")
