"""Discovery and composition: entry points, broken plugins, name clashes, hooks overriding agent methods."""

import subprocess
import sys
import types

import pytest

import llamagym
from llamagym import hookimpl
from llamagym.plugins import manager as plugins
from llamagym.errors import PluginError, UnknownNameError
from llamagym.plugins.registry import Registry


def _plugin(name, **hooks):
    module = types.ModuleType(name)
    for hook_name, function in hooks.items():
        setattr(module, hook_name, hookimpl(function))
    return module


def test_registration_hooks_fill_the_registry(bare_pm):
    bare_pm.register(_plugin("games", llamagym_register_agents=lambda register: register(
        "poker", "somewhere:PokerAgent", description="plays poker"),
        llamagym_register_envs=lambda register: register("Poker-v0", "somewhere:make", kind="aec")), name="games")
    registry = Registry(bare_pm)
    assert registry.agent("poker").plugin == "games" and registry.agent("poker").description == "plays poker"
    assert registry.env("Poker-v0").kind == "aec"
    assert registry.env("FrozenLake-v1").plugin == "gymnasium"  # Gymnasium's own ids work too


def test_unknown_names_list_installed_ones_and_suggest(bare_pm):
    bare_pm.register(_plugin("p", llamagym_register_agents=lambda register: register("blackjack", "m:A")), name="p")
    registry = Registry(bare_pm)
    with pytest.raises(UnknownNameError) as info:
        registry.agent("blackjak")
    message = str(info.value)
    assert "did you mean 'blackjack'" in message and "installed: blackjack" in message
    assert "\n" not in message
    with pytest.raises(UnknownNameError, match="unknown env 'NoSuchEnv-v9'"):
        registry.env("NoSuchEnv-v9")


def test_two_plugins_claiming_one_name_is_an_error_naming_both(bare_pm):
    bare_pm.register(_plugin("first", llamagym_register_agents=lambda register: register("dup", "m:A")),
                     name="first")
    bare_pm.register(_plugin("second", llamagym_register_agents=lambda register: register("dup", "m:B")),
                     name="second")
    with pytest.raises(PluginError, match="'dup' is registered by both 'first' and 'second'"):
        Registry(bare_pm)


def test_a_raising_registration_hook_is_reported_not_fatal(bare_pm):
    def broken(register):
        raise RuntimeError("boom")

    bare_pm.register(_plugin("broken", llamagym_register_agents=broken), name="broken")
    bare_pm.register(_plugin("fine", llamagym_register_agents=lambda register: register("ok", "m:A")), name="fine")
    registry = Registry(bare_pm)
    assert "ok" in registry.agents and "boom" in registry.errors["broken"]


class FakeDist:
    def __init__(self, name):
        self.metadata = {"Name": name}
        self.version = "9.9"


class FakeEntryPoint:
    def __init__(self, name, value, loader, dist="pkg"):
        self.name, self.value, self._loader, self.dist = name, value, loader, FakeDist(dist)

    def load(self):
        return self._loader()


def test_broken_entry_point_is_recorded_and_others_load(monkeypatch):
    good = _plugin("good", llamagym_register_agents=lambda register: register("good-agent", "m:A"))

    def fail():
        raise ImportError("No module named 'missing_dependency'")

    eps = [FakeEntryPoint("bad", "bad_module", fail, "bad-dist"), FakeEntryPoint("good", "good", lambda: good),
           FakeEntryPoint("good", "good", lambda: good)]  # one distribution found twice on sys.path
    monkeypatch.setattr(plugins, "_entry_points", lambda: eps)
    monkeypatch.delenv(plugins.LOAD_ENV, raising=False)
    pm = plugins.build_plugin_manager()
    records = {r.name: r for r in plugins.plugin_records(pm)}
    assert "missing_dependency" in records["bad"].error and records["bad"].distribution == "bad-dist"
    assert records["good"].error is None and records["good"].hooks == ["llamagym_register_agents"]
    assert "good-agent" in Registry(pm).agents


def test_environment_variables_select_plugins(monkeypatch):
    eps = [FakeEntryPoint(n, n, lambda n=n: _plugin(n)) for n in ("a", "b", "c")]
    monkeypatch.setattr(plugins, "_entry_points", lambda: eps)
    monkeypatch.setenv(plugins.LOAD_ENV, "a,b")
    monkeypatch.setenv(plugins.BLOCK_ENV, "b")
    pm = plugins.build_plugin_manager()
    assert pm.has_plugin("a") and not pm.has_plugin("b") and not pm.has_plugin("c")
    monkeypatch.setenv(plugins.LOAD_ENV, "")
    monkeypatch.delenv(plugins.BLOCK_ENV)
    assert not plugins.build_plugin_manager().has_plugin("a")


class Minimal(llamagym.Agent):
    def get_system_prompt(self): return "base system"
    def format_observation(self, observation): return f"base {observation}"
    def extract_action(self, response): return "base-action"


def test_hooks_override_agent_methods_of_agents_they_did_not_write(tiny, bare_pm):
    model, tokenizer = tiny
    bare_pm.register(_plugin(
        "rewriter",
        llamagym_format_observation=lambda agent, observation: f"PLUGIN SEES {observation}",
        llamagym_extract_action=lambda agent, response: "plugin-action",
        llamagym_shape_reward=lambda reward: 0.25), name="rewriter")
    bare_pm.register(_plugin("penalty", llamagym_shape_reward=lambda agent, action: -0.05), name="penalty")
    agent = Minimal(model, tokenizer, "cpu", {"max_new_tokens": 2}, plugin_manager=bare_pm)
    assert agent.act(3) == "plugin-action"
    turn = agent.current_episode().turns[0]
    assert "PLUGIN SEES 3" in tokenizer.decode(turn.query_ids) and "base system" in tokenizer.decode(turn.query_ids)
    agent.assign_reward(1.0)
    assert turn.shaping == {"rewriter": 0.25, "penalty": -0.05}
    assert turn.reward == pytest.approx(1.2) and turn.env_reward == 1.0


def test_a_hook_that_returns_none_passes_to_the_agent(tiny, bare_pm):
    model, tokenizer = tiny
    bare_pm.register(_plugin("only_for_others", llamagym_extract_action=lambda agent, response:
                             "x" if type(agent).__name__ == "Other" else None), name="only_for_others")
    agent = Minimal(model, tokenizer, "cpu", {"max_new_tokens": 2}, plugin_manager=bare_pm)
    assert agent.act(1) == "base-action"


def test_a_raising_shaping_hook_names_the_plugin(tiny, bare_pm):
    model, tokenizer = tiny

    def bad(reward):
        raise ZeroDivisionError("oops")

    bare_pm.register(_plugin("faulty", llamagym_shape_reward=bad), name="faulty")
    agent = Minimal(model, tokenizer, "cpu", {"max_new_tokens": 2}, plugin_manager=bare_pm)
    agent.act(1)
    with pytest.raises(PluginError, match="plugin 'faulty' raised in llamagym_shape_reward"):
        agent.assign_reward(1.0)


def test_misspelled_hook_is_caught(bare_pm):
    bare_pm.register(_plugin("typo", llamagym_sytem_prompt=lambda agent: "x"), name="typo")
    with pytest.raises(Exception, match="llamagym_sytem_prompt"):
        bare_pm.check_pending()


def test_listing_is_fast_and_does_not_import_torch():
    code = ("import sys, time; t = time.perf_counter(); from click.testing import CliRunner; "
            "from llamagym.cli import cli; r = CliRunner().invoke(cli, ['plugins', '--json']); "
            "r2 = CliRunner().invoke(cli, ['list']); assert r.exit_code == 0 and r2.exit_code == 0, r.output; "
            "assert 'torch' not in sys.modules, 'torch was imported'; print(time.perf_counter() - t)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert float(out.stdout.strip().splitlines()[-1]) < 2.0
