"""Discovery and composition: entry points, broken plugins, name clashes, hooks overriding agent methods."""

import json
import subprocess
import sys
import types

import pytest

import llamagym
from llamagym import hookimpl
from llamagym.plugins import manager as plugins
from llamagym.errors import NameClashError, PluginError, UnknownNameError
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


def test_two_plugins_claiming_one_name_make_it_unusable_and_leave_the_rest(bare_pm):
    bare_pm.register(_plugin("first", llamagym_register_agents=lambda register: register("dup", "m:A"),
                             llamagym_register_envs=lambda register: register("Dup-v0", "m:make")), name="first")
    bare_pm.register(_plugin("second", llamagym_register_agents=lambda register: (
        register("dup", "m:B"), register("own", "m:C")),
        llamagym_register_envs=lambda register: register("Dup-v0", "m:make2")), name="second")
    registry = Registry(bare_pm)  # building the registry does not fail
    assert list(registry.agents) == ["own"] and registry.agent("own").plugin == "second"
    with pytest.raises(NameClashError, match="agent name 'dup' is registered by both 'first' and 'second'") as info:
        registry.agent("dup")
    assert isinstance(info.value, PluginError) and "\n" not in str(info.value)
    assert info.value.plugins == ("first", "second") and "LLAMAGYM_BLOCK_PLUGINS=second" in str(info.value)
    with pytest.raises(NameClashError, match="env id 'Dup-v0' is registered by both 'first' and 'second'"):
        registry.env("Dup-v0")
    assert [(c.kind, c.name, c.plugins) for c in registry.clashes] == [
        ("agent", "dup", ("first", "second")), ("env", "Dup-v0", ("first", "second"))]
    assert registry.errors == {}
    with pytest.raises(UnknownNameError, match="installed: own"):  # a clashing name is not offered as installed
        registry.agent("dupe")


def test_a_name_claimed_by_three_plugins_names_them_all(bare_pm):
    for name in ("a", "b", "c"):
        bare_pm.register(_plugin(name, llamagym_register_agents=lambda register: register("dup", "m:A")), name=name)
    with pytest.raises(NameClashError) as info:
        Registry(bare_pm).agent("dup")
    assert "agent name 'dup' is registered by 'a', 'b' and 'c'" in str(info.value)
    assert "LLAMAGYM_BLOCK_PLUGINS=b,c" in str(info.value)


def test_a_plugin_registering_one_name_twice_is_its_own_error(bare_pm):
    bare_pm.register(_plugin("twice", llamagym_register_agents=lambda register: (
        register("x", "m:A"), register("x", "m:B"))), name="twice")
    bare_pm.register(_plugin("fine", llamagym_register_agents=lambda register: register("ok", "m:A")), name="fine")
    registry = Registry(bare_pm)
    assert registry.agent("x").entry_point == "m:A" and registry.agent("ok").plugin == "fine"
    assert "registered agent name 'x' twice" in registry.errors["twice"] and registry.clashes == []


def test_an_env_with_a_bad_kind_is_the_plugins_error_not_everyones(bare_pm):
    bare_pm.register(_plugin("odd", llamagym_register_envs=lambda register: register("Odd-v0", "m:make", kind="x")),
                     name="odd")
    bare_pm.register(_plugin("fine", llamagym_register_envs=lambda register: register("Fine-v0", "m:make")),
                     name="fine")
    registry = Registry(bare_pm)
    assert registry.env("Fine-v0").plugin == "fine" and "Odd-v0" not in registry.envs
    assert "kind 'x'" in registry.errors["odd"] and "gymnasium, aec, parallel" in registry.errors["odd"]


def test_a_plugin_reusing_an_installed_agent_name_stops_only_that_name(with_plugins):
    """Issue 18: a plugin that registers `blackjack` next to the first-party blackjack plugin."""
    from click.testing import CliRunner

    from llamagym.cli import cli
    from llamagym.plugins.registry import get_registry
    from llamagym.run.setup import resolve_config

    installed = Registry(plugins.build_plugin_manager()).agents
    if "blackjack" not in installed or len(installed) < 2:
        pytest.skip("needs the first-party blackjack plugin and one other agent installed")
    other = next(name for name in installed if name != "blackjack")
    owner = installed["blackjack"].plugin
    with_plugins(_plugin("lgtp_clash", llamagym_register_agents=lambda register: register("blackjack", "m:A")))
    for command in (["list"], ["list", "--json"], ["plugins"], ["plugins", "--json"]):
        result = CliRunner().invoke(cli, command)
        assert result.exit_code == 0, (command, result.output)
        assert "lgtp_clash" in result.output, command
    assert f"agent name 'blackjack' is registered by both {owner!r} and 'lgtp_clash'" in \
        CliRunner().invoke(cli, ["list"]).stderr
    assert resolve_config({"agent": other, "env": "Blackjack-v1"}, use_preset=False).agent == other
    with pytest.raises(NameClashError, match="LLAMAGYM_BLOCK_PLUGINS=lgtp_clash"):
        get_registry().agent("blackjack")


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


# --- every hook goes through pluggy: wrappers, tryfirst/trylast, tracing, error isolation -------------------------

def _shaping_agent(pm):
    return types.SimpleNamespace(plugin_manager=pm)  # all that calling.shaping_terms reads of the agent


def test_a_wrapper_on_shape_reward_sees_each_term_and_can_change_it(tiny, bare_pm):
    model, tokenizer = tiny
    seen = []

    @hookimpl(wrapper=True)
    def llamagym_shape_reward(reward):
        terms = yield
        seen.append((reward, list(terms)))
        return [2 * term for term in terms]

    bare_pm.register(_plugin("bonus", llamagym_shape_reward=lambda reward: 0.25), name="bonus")
    bare_pm.register(_plugin("penalty", llamagym_shape_reward=lambda action: -0.05), name="penalty")
    bare_pm.register(types.SimpleNamespace(llamagym_shape_reward=llamagym_shape_reward), name="doubler")
    agent = Minimal(model, tokenizer, "cpu", {"max_new_tokens": 2}, plugin_manager=bare_pm)
    agent.act(3)
    agent.assign_reward(1.0)
    assert seen == [(1.0, [-0.05]), (1.0, [0.25])]  # once per shaping plugin, the last registered first
    turn = agent.current_episode().turns[0]
    assert turn.shaping == {"penalty": -0.1, "bonus": 0.5} and turn.reward == 1.0 - 0.1 + 0.5


def test_shaping_terms_keep_pluggys_order_and_their_plugins(bare_pm):
    from llamagym.plugins.calling import shaping_terms

    values = {"last": 1e16, "a": 0.1, "quiet": None, "b": -1e16, "first": 0.3, "unhashable": 0.7}
    for name, value in values.items():
        marker = {"last": {"trylast": True}, "first": {"tryfirst": True}}.get(name, {})
        function = hookimpl(**marker)(lambda reward, value=value: value)
        plugin = types.SimpleNamespace() if name == "unhashable" else types.ModuleType(name)
        plugin.llamagym_shape_reward = function
        bare_pm.register(plugin, name=name)
    hook = bare_pm.hook.llamagym_shape_reward
    before = [(impl.plugin_name, float(impl.function(reward=1.0))) for impl in reversed(hook.get_hookimpls())
              if impl.function(reward=1.0) is not None]  # what Agent._shaping_terms computed before
    terms = shaping_terms(_shaping_agent(bare_pm), 1.0, None, "", None)
    assert terms == before
    assert [plugin for plugin, _ in terms] == ["first", "unhashable", "b", "a", "last"]
    total = 1.0
    for _, term in terms:
        total += term
    assert total == 1.0 + 0.3 + 0.7 - 1e16 + 0.1 + 1e16  # summed in that order, bit for bit


def test_a_raising_wrapper_on_shape_reward_is_named(bare_pm):
    from llamagym.plugins.calling import shaping_terms

    @hookimpl(wrapper=True)
    def llamagym_shape_reward():
        yield
        raise KeyError("teardown")

    bare_pm.register(_plugin("term", llamagym_shape_reward=lambda: 1.0), name="term")
    bare_pm.register(types.SimpleNamespace(llamagym_shape_reward=llamagym_shape_reward), name="wrapping")
    with pytest.raises(PluginError, match="plugin 'wrapping' raised in llamagym_shape_reward: KeyError"):
        shaping_terms(_shaping_agent(bare_pm), 0.0, None, "", None)


def test_a_wrapper_on_a_registration_hook_sees_the_call_and_its_registrations_are_its_own(bare_pm):
    calls = []

    @hookimpl(wrapper=True)
    def llamagym_register_agents(register):
        calls.append("before")
        register("wrapped", "m:Wrapped")
        result = yield
        calls.append("after")
        return result

    bare_pm.register(_plugin("plain", llamagym_register_agents=lambda register: register("plain", "m:A")),
                     name="plain")
    bare_pm.register(types.SimpleNamespace(llamagym_register_agents=llamagym_register_agents), name="wrapper")
    registry = Registry(bare_pm)
    assert calls == ["before", "after"]
    assert registry.agent("wrapped").plugin == "wrapper" and registry.agent("plain").plugin == "plain"


def test_tryfirst_runs_first_and_registrations_keep_their_order(bare_pm):
    from llamagym.rollout.games.opponents import scripted_opponents

    called = []

    def plugin(name, **marker):
        @hookimpl(**marker)
        def llamagym_register_opponents(register):  # one code object for every plugin this makes
            called.append(name)
            register(f"{name}-1", "random:choice", envs=[name])
            register(f"{name}-2", "random:choice", envs=[name])
        return types.SimpleNamespace(llamagym_register_opponents=llamagym_register_opponents)

    bare_pm.register(plugin("early", tryfirst=True), name="early")
    bare_pm.register(plugin("middle"), name="middle")
    bare_pm.register(plugin("late", trylast=True), name="late")
    specs = scripted_opponents(bare_pm)
    assert called == ["early", "middle", "late"]  # pluggy's call order
    mine = [(s.name, s.plugin) for s in specs if s.plugin != "llamagym.opponents"]
    # listed in registration order (trylast first, tryfirst last), as when each implementation was called in turn
    assert mine == [("late-1", "late"), ("late-2", "late"), ("middle-1", "middle"), ("middle-2", "middle"),
                    ("early-1", "early"), ("early-2", "early")]


def test_a_name_claimed_twice_names_the_plugins_in_registration_order_whoever_runs_first(bare_pm):
    eager = types.ModuleType("eager")
    eager.llamagym_register_agents = hookimpl(tryfirst=True)(lambda register: register("dup", "m:A"))
    bare_pm.register(eager, name="eager")
    bare_pm.register(_plugin("plain", llamagym_register_agents=lambda register: register("dup", "m:B")),
                     name="plain")
    with pytest.raises(PluginError, match="'dup' is registered by both 'plain' and 'eager'"):
        Registry(bare_pm).agent("dup")


@pytest.mark.parametrize("plugin_type", ["module", "unhashable"])
def test_a_raising_registration_plugin_is_recorded_and_the_others_register_exactly_once(bare_pm, plugin_type):
    from llamagym.rollout.games.opponents import scripted_opponents

    called = []

    def plugin(name, fails=False):
        def llamagym_register_opponents(register):
            called.append(name)
            register(name, "random:choice", envs=["g"])
            if fails:
                raise RuntimeError(f"{name} broke")

        namespace = types.ModuleType(name) if plugin_type == "module" else types.SimpleNamespace()
        namespace.llamagym_register_opponents = hookimpl(llamagym_register_opponents)
        return namespace

    for name in ("a", "b", "c", "d"):
        bare_pm.register(plugin(name, fails=name in ("b", "c")), name=name)
    specs = [(s.name, s.plugin) for s in scripted_opponents(bare_pm) if s.plugin != "llamagym.opponents"]
    # each plugin once, in registration order; a failing one keeps what it registered before raising
    assert specs == [("a", "a"), ("b", "b"), ("c", "c"), ("d", "d")]
    assert called == ["d", "c", "d", "b", "d", "a"]  # called again without the failed ones, in pluggy's order

    bare_pm.register(_plugin("agents_ok", llamagym_register_agents=lambda register: register("ok", "m:A")),
                     name="agents_ok")
    bare_pm.register(_plugin("agents_broken", llamagym_register_agents=lambda register: 1 / 0), name="agents_broken")
    registry = Registry(bare_pm)
    assert list(registry.agents) == ["ok"]
    assert registry.errors == {"agents_broken": "llamagym_register_agents raised ZeroDivisionError: division by zero"}


def test_a_plugin_calling_register_with_wrong_arguments_is_recorded(bare_pm):
    bare_pm.register(_plugin("wrong", llamagym_register_envs=lambda register: register("E-v0", colour="red")),
                     name="wrong")
    bare_pm.register(_plugin("right", llamagym_register_envs=lambda register: register("R-v0", "m:make")),
                     name="right")
    registry = Registry(bare_pm)
    assert "colour" in registry.errors["wrong"] and registry.env("R-v0").plugin == "right"


def test_every_hook_call_is_seen_by_pluggys_monitoring(bare_pm):
    from llamagym.plugins.calling import shaping_terms
    from llamagym.rollout.games.opponents import scripted_opponents

    seen = []
    undo = bare_pm.add_hookcall_monitoring(lambda name, impls, kwargs: seen.append(name), lambda *args: None)
    bare_pm.register(_plugin("shaper", llamagym_shape_reward=lambda: 0.5), name="shaper")
    try:
        registry = Registry(bare_pm)
        registry.env("FrozenLake-v1")
        scripted_opponents(bare_pm)
        shaping_terms(_shaping_agent(bare_pm), 0.0, None, "", None)
    finally:
        undo()
    assert seen == ["llamagym_register_agents", "llamagym_register_envs", "llamagym_resolve_env",
                    "llamagym_register_opponents", "llamagym_shape_reward"]


def test_resolve_env_answers_for_ids_nobody_registered_and_gymnasium_answers_last(bare_pm):
    from llamagym.plugins.specs import EnvSpec

    def resolve(env_id):
        if env_id.startswith("Maze-") or env_id == "FrozenLake-v1":
            return EnvSpec(env_id, "m:make", description="a maze", plugin="maze")
        return None

    bare_pm.register(_plugin("registers", llamagym_register_envs=lambda register: register("Maze-1", "m:one")),
                     name="registers")
    registry = Registry(bare_pm)
    assert registry.env("FrozenLake-v1").plugin == "gymnasium"  # the built-in plugin
    bare_pm.register(_plugin("maze", llamagym_resolve_env=resolve), name="maze")
    assert registry.env("Maze-7").plugin == "maze" and registry.env("Maze-1").plugin == "registers"
    assert registry.env("FrozenLake-v1").plugin == "maze"  # a plugin answers before the trylast built-in
    with pytest.raises(UnknownNameError, match="unknown env 'NoSuchEnv-v9'"):
        registry.env("NoSuchEnv-v9")
    bare_pm.register(_plugin("bad", llamagym_resolve_env=lambda env_id: {}["x"]), name="bad")
    with pytest.raises(PluginError, match="plugin 'bad' .*raised KeyError in llamagym_resolve_env"):
        registry.env("Other-v0")


def test_the_random_opponent_comes_from_the_builtin_plugin(bare_pm):
    from click.testing import CliRunner

    from llamagym.cli import cli
    from llamagym.rollout.games.build import make_opponent
    from llamagym.rollout.games.opponents import check_opponent, find_scripted
    from llamagym.rollout.games.players import ScriptedPlayer, random_move

    spec = find_scripted(bare_pm, "random", "tictactoe_v3")
    assert spec.plugin == "llamagym.opponents" and spec.envs is None and spec.load() is random_move
    assert check_opponent(bare_pm, "random", "connect_four_v3") == "random"
    opponent = make_opponent(types.SimpleNamespace(plugin_manager=bare_pm), "random", "tictactoe_v3", seed=7)
    assert isinstance(opponent, ScriptedPlayer) and opponent.policy is random_move and opponent.name == "random"
    assert opponent.rng.random() == ScriptedPlayer(random_move, "random", 7).rng.random()

    plugins.reset_plugin_manager()
    try:
        rows = {row["name"]: row for row in json.loads(CliRunner().invoke(cli, ["plugins", "--json", "--all"]).output)}
        listed = json.loads(CliRunner().invoke(cli, ["list", "--json"]).output)
    finally:
        plugins.reset_plugin_manager()
    assert rows["llamagym.opponents"]["hooks"] == ["llamagym_register_opponents"]
    assert rows["llamagym.gymnasium_envs"]["hooks"] == ["llamagym_resolve_env"]
    assert listed["opponents"][:2] == [
        {"name": "random", "package": "llamagym", "envs": None, "description": "uniformly random legal moves"},
        {"name": "base", "package": "llamagym", "envs": None, "description": "the base model with its LoRA adapters off"}]
