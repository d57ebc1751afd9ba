"""Every environment llamagym ships or generates passes its library's own checker: Gymnasium's `check_env` for
`kind = "gymnasium"`, PettingZoo's `api_test` / `parallel_api_test` for `"aec"` / `"parallel"`. The envs are the
ones the installed first-party and contrib plugins register, plus the one `llamagym new` generates, each made as
`llamagym run --env ID` makes it: through `llamagym.make_env`."""

from __future__ import annotations

import importlib
import subprocess
import sys
import warnings

import pytest

import llamagym
from llamagym.errors import UnknownNameError
from llamagym.plugins.registry import get_registry
from llamagym.tools.scaffold import plugin_names, scaffold_plugin

SCAFFOLD = plugin_names("checked-guess")  # a name no other test installs
SCAFFOLD_ENV = SCAFFOLD["env_id"]
# the envs the installed plugins must register (so an uninstalled plugin fails here rather than shrinking the test)
FIRST_PARTY = {"Blackjack-v1", "tictactoe_v3", "connect_four_v3", "rps_v2", "leduc_holdem_v4", "texas_holdem_v4"}
CONTRIB = {"FrozenLakeText-v0", "TaxiText-v0"}
INSTALLED = sorted(get_registry().envs)  # listed at collection, through the process-wide registry
# What check_env says of any env made through gymnasium.make or wrapped, as `llamagym run` makes them: it advises
# checking `env.unwrapped`, but the env as made (wrappers included) is what trains, so that is the one checked.
WRAPPED_ADVICE = "is different from the unwrapped version"


@pytest.fixture(scope="session")
def scaffold_module(tmp_path_factory):
    """The plugin module of a package rendered from the `llamagym new` template, imported from its directory."""
    package = scaffold_plugin(SCAFFOLD["name"], tmp_path_factory.mktemp("scaffold"))
    sys.path.insert(0, str(package))
    try:
        yield importlib.import_module(f"{SCAFFOLD['module']}.plugin")
    finally:
        sys.path.remove(str(package))
        for name in [m for m in sys.modules if m == SCAFFOLD["module"] or m.startswith(SCAFFOLD["module"] + ".")]:
            del sys.modules[name]


@pytest.fixture
def every_env(with_plugins, scaffold_module, monkeypatch):
    """The process-wide plugin manager with the installed plugins and the scaffold's; pygame draws off-screen."""
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    monkeypatch.setenv("SDL_AUDIODRIVER", "dummy")
    with_plugins(scaffold_module)
    return get_registry()


def test_the_checked_envs_are_every_env_the_plugins_register(every_env):
    assert FIRST_PARTY | CONTRIB <= set(INSTALLED), "a first-party or contrib plugin is not installed"
    assert sorted(every_env.envs) == sorted([*INSTALLED, SCAFFOLD_ENV])
    assert every_env.envs[SCAFFOLD_ENV].plugin == f"{SCAFFOLD['module']}.plugin"


def observations_stay_in_space(env, episodes: int = 5, max_steps: int = 200) -> None:
    """check_env asserts only reset's observation is inside the space (a step's outside is a warning): play random
    episodes and assert every observation is."""
    env.action_space.seed(0)
    for seed in range(episodes):
        observation, _ = env.reset(seed=seed)
        for _ in range(max_steps):
            assert env.observation_space.contains(observation), f"outside {env.observation_space}: {observation!r}"
            observation, _, terminated, truncated, _ = env.step(env.action_space.sample())
            if terminated or truncated:
                break
        assert env.observation_space.contains(observation), f"outside {env.observation_space}: {observation!r}"


@pytest.mark.parametrize("env_id", [*INSTALLED, SCAFFOLD_ENV])
def test_every_env_passes_its_checker(every_env, env_id):
    kind = every_env.env(env_id).kind
    env = llamagym.make_env(env_id)
    try:
        if kind == "gymnasium":
            from gymnasium.utils.env_checker import check_env

            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                check_env(env)
            # a warning from the checker is a finding too (a step's observation outside the space, a bad dtype)
            findings = [str(w.message) for w in caught if WRAPPED_ADVICE not in str(w.message)
                        and "render modes due to the environment not having a spec" not in str(w.message)]
            assert findings == []
            observations_stay_in_space(env)
        elif kind == "aec":
            from pettingzoo.test import api_test

            api_test(env, num_cycles=200)
        else:
            from pettingzoo.test import parallel_api_test

            parallel_api_test(env, num_cycles=200)
    finally:
        env.close()


# --- llamagym.make_env ------------------------------------------------------------------------------------------

def test_make_env_makes_a_registered_env_as_the_run_command_does(every_env):
    lake = llamagym.make_env("FrozenLakeText-v0")  # the plugin's registered kwargs apply
    assert lake.spec.max_episode_steps == 20 and isinstance(lake.reset(seed=0)[0], str)
    assert type(llamagym.make_env("FrozenLakeText-v0")) is type(every_env.env("FrozenLakeText-v0").make())
    assert llamagym.make_env("FrozenLakeText-v0", max_episode_steps=7).spec.max_episode_steps == 7  # kwargs win
    assert type(llamagym.make_env(SCAFFOLD_ENV).unwrapped).__name__ == f"{SCAFFOLD['class_prefix']}Env"


def test_make_env_makes_any_gymnasium_id():
    env = llamagym.make_env("FrozenLake-v1", map_name="8x8")
    assert env.spec.id == "FrozenLake-v1" and env.observation_space.n == 64


def test_make_env_refuses_an_unknown_id_in_one_line():
    with pytest.raises(UnknownNameError) as raised:
        llamagym.make_env("FrozenLakeTxt-v0")
    message = str(raised.value)
    assert "'FrozenLakeTxt-v0'" in message and "'FrozenLakeText-v0'" in message and "\n" not in message
    with pytest.raises(UnknownNameError) as from_registry:
        get_registry().env("FrozenLakeTxt-v0")
    assert str(from_registry.value) == message


def test_make_env_is_exported_lazily_and_keeps_the_import_torch_free():
    assert "make_env" in llamagym.__all__
    code = ("import sys, llamagym; f = llamagym.make_env; assert f.__module__ == 'llamagym.envs'; "
            "f('Blackjack-v1').reset(seed=0); assert 'torch' not in sys.modules, 'torch was imported'")
    subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
