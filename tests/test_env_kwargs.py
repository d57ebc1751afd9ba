"""Keyword arguments for an environment's constructor (issue 17): `--env-kwarg KEY=VALUE` on run, eval and
collect, or a `[env_kwargs]` table in the config file; kept in the run's config.json, so that `--resume` and
`eval --checkpoint` make the env the run trained on. Bad syntax, and a kwarg the env rejects, is one line."""

import datetime
import json
import types

import gymnasium
import pytest
from click.testing import CliRunner

from llamagym import hookimpl
from llamagym.cli import cli
from llamagym.cli.options import parse_env_kwargs
from llamagym.config import RunConfig, build, merge, to_dict
from llamagym.errors import ConfigError, UsageError

MADE: list[dict] = []  # the kwargs each KwBlackjack-v0 was made with
TINY = ["--num-envs", 1, "--batch-size", 2, "--mini-batch-size", 2, "--ppo-epochs", 1, "--max-new-tokens", 2,
        "--lora-r", 2, "--no-score-policy"]
PLAY = ["--agent", "blackjack", "--env", "KwBlackjack-v0"]


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


class KwBlackjack(gymnasium.Wrapper):
    """Blackjack that records what it was made with; `natural` is Blackjack's own kwarg."""

    def __init__(self, tag="registered", natural=False, table=None):
        MADE.append({"tag": tag, "natural": natural, "table": table})
        super().__init__(gymnasium.make("Blackjack-v1", natural=natural))


@pytest.fixture
def kw_env(with_plugins):
    module = types.ModuleType("kw_env_plugin")
    module.llamagym_register_envs = hookimpl(lambda register: register("KwBlackjack-v0", KwBlackjack,
                                                                       kwargs={"tag": "registered"}))
    with_plugins(module)
    MADE.clear()
    return MADE


def one_line_error(result, *fragments, exit_code=2):
    assert result.exit_code == exit_code, result.output
    lines = result.output.strip().splitlines()
    assert lines[-1].startswith("Error:") and "Traceback" not in result.output, result.output
    assert all(fragment in lines[-1] for fragment in fragments), lines[-1]


# ---- KEY=VALUE ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("pair, value", [
    ("n=3", 3), ("x=2.5", 2.5), ("flag=true", True), ("flag=false", False), ("name=hello", "hello"),
    ('name="a b"', "a b"), ("path=~/games/zork1.z8", "~/games/zork1.z8"), ("xs=[1, 2]", [1, 2]),
    ("judge={url = 'http://h/v1', model = 'm'}", {"url": "http://h/v1", "model": "m"}), ("v=null", None),
    ("day=1979-05-27", "1979-05-27"), ("empty=", ""), ("eq=a=b", "a=b"), (' spaced = 4 ', 4),
    ('obj={"a": [1, true]}', {"a": [1, True]}), ("inject=1\nother = 2", "1\nother = 2"),
])
def test_values_are_toml_or_json_literals_else_text(pair, value):
    key = pair.split("=")[0].strip()
    assert parse_env_kwargs([pair]) == {key: value}


def test_a_key_given_twice_takes_the_last_value():
    assert parse_env_kwargs(["n=1", "m=x", "n=2"]) == {"n": 2, "m": "x"}


@pytest.mark.parametrize("pair", ["noequals", "=3", "1x=3", "a-b=1", "a.b=1", ""])
def test_a_pair_that_is_not_key_value_is_one_line(pair):
    with pytest.raises(UsageError, match="is not KEY=VALUE with KEY a Python name; pass e.g. --env-kwarg"):
        parse_env_kwargs([pair])


@pytest.mark.parametrize("command", ["run", "eval", "collect"])
def test_every_command_refuses_bad_syntax_in_one_line(tmp_path, command):
    out = tmp_path / ("out.jsonl" if command == "collect" else "out")
    where = ["-o", out] if command != "eval" else []
    result = invoke(command, "--agent", "blackjack", "--env", "Blackjack-v1", "--env-kwarg", "natural", *where, "-q")
    one_line_error(result, "--env-kwarg 'natural' is not KEY=VALUE")
    assert not out.exists()


# ---- the config: a table, kept in config.json ---------------------------------------------------------------------

@pytest.mark.parametrize("data, message", [
    ({"env_kwargs": 3}, "env_kwargs must be a table of keyword arguments (KEY = VALUE), got 3"),
    ({"env_kwargs": {"1x": 1}}, "env_kwargs keys must be Python names (a keyword argument), got '1x'"),
    ({"env_kwargs": {"day": datetime.date(1979, 5, 27)}}, "env_kwargs.day must be a string, number, boolean, array"),
    ({"env_kwargs": {"xs": [1, datetime.time(7, 0)]}}, "env_kwargs.xs must be a string, number, boolean, array"),
    ({"env_kwargs": {"t": {"in-ner": 1}}}, "env_kwargs.t keys must be Python names"),
])
def test_a_table_that_is_not_keyword_arguments_names_the_key(data, message):
    with pytest.raises(ConfigError) as raised:
        build(RunConfig, data)
    assert message in str(raised.value)


def test_tables_merge_key_by_key_over_their_base_and_keep_none():
    file_values = {"env_kwargs": {"tag": "file", "size": 3}}
    config = build(RunConfig, merge(file_values, {"env_kwargs": {"tag": "flag"}}))
    assert config.env_kwargs == {"tag": "flag", "size": 3}
    resumed = build(RunConfig, {"env_kwargs": {"size": 4, "extra": None}}, base=config)
    assert resumed.env_kwargs == {"tag": "flag", "size": 4, "extra": None}
    assert config.env_kwargs == {"tag": "flag", "size": 3}  # the base is not changed
    assert to_dict(resumed)["env_kwargs"] == {"tag": "flag", "size": 4, "extra": None}
    assert build(RunConfig, json.loads(json.dumps(to_dict(resumed)))).env_kwargs == resumed.env_kwargs


def test_run_resume_eval_and_collect_make_the_env_with_the_runs_kwargs(tmp_path, tiny_model_dir, kw_env):
    out = tmp_path / "run"
    config = tmp_path / "run.toml"
    config.write_text('[env_kwargs]\ntag = "file"\nnatural = true\ntable = {a = 1}\n')
    result = invoke("run", *PLAY, "--model", tiny_model_dir, *TINY, "--episodes", 2, "--config", config,
                    "--env-kwarg", "tag=flag", "-o", out, "-q")
    assert result.exit_code == 0, result.output
    assert kw_env and all(made == {"tag": "flag", "natural": True, "table": {"a": 1}} for made in kw_env)
    saved = json.loads((out / "config.json").read_text())["config"]["env_kwargs"]
    assert saved == {"tag": "flag", "natural": True, "table": {"a": 1}}

    kw_env.clear()
    result = invoke("run", "--resume", out, "--episodes", 4, "-q")
    assert result.exit_code == 0, result.output
    assert kw_env and all(made["tag"] == "flag" and made["natural"] for made in kw_env)

    kw_env.clear()
    result = invoke("run", "--resume", out, "--episodes", 6, "--env-kwarg", "tag=changed", "-q")
    assert result.exit_code == 0, result.output
    assert kw_env and all(made == {"tag": "changed", "natural": True, "table": {"a": 1}} for made in kw_env)
    record = json.loads((out / "config.json").read_text())
    assert record["config"]["env_kwargs"]["tag"] == "changed"
    assert record["changes"][-1]["settings"]["env_kwargs.tag"] == ["flag", "changed"]

    kw_env.clear()
    result = invoke("eval", "--checkpoint", out, "--episodes", 1, "--num-envs", 1, "-q")
    assert result.exit_code == 0, result.output
    assert kw_env and all(made["tag"] == "changed" for made in kw_env)
    kw_env.clear()
    result = invoke("eval", "--checkpoint", out, "--episodes", 1, "--num-envs", 1, "--env-kwarg", "natural=false",
                    "-q")
    assert result.exit_code == 0, result.output
    assert kw_env and all(made["tag"] == "changed" and not made["natural"] for made in kw_env)

    kw_env.clear()
    collected = tmp_path / "data.jsonl"
    result = invoke("collect", "--checkpoint", out, "--episodes", 1, "--num-envs", 1, "-o", collected, "-q")
    assert result.exit_code == 0, result.output
    assert kw_env and all(made["tag"] == "changed" for made in kw_env)


def test_another_env_for_eval_does_not_take_the_runs_kwargs(tmp_path, tiny_model_dir, kw_env):
    out = tmp_path / "run"
    result = invoke("run", *PLAY, "--model", tiny_model_dir, *TINY, "--episodes", 2, "--env-kwarg", "tag=mine",
                    "-o", out, "-q")
    assert result.exit_code == 0, result.output
    result = invoke("eval", "--checkpoint", out, "--env", "Blackjack-v1", "--episodes", 1, "--num-envs", 1, "-q")
    assert result.exit_code == 0, result.output  # Blackjack-v1 itself takes no `tag`


# ---- a kwarg the env rejects: one line, before the model loads ------------------------------------------------------

@pytest.fixture
def no_model_loading(monkeypatch):
    def loaded(*args, **kwargs):
        raise AssertionError("the model was loaded before the env kwargs were tried")

    for module in ("llamagym.run.training", "llamagym.cli.collect", "llamagym.run.setup"):
        monkeypatch.setattr(f"{module}.build_agent", loaded)


@pytest.mark.parametrize("command, env, pair, shown", [
    ("run", "KwBlackjack-v0", "colour=red", "colour='red'"),
    ("run", "Blackjack-v1", "bogus=1", "bogus=1"),
    ("eval", "KwBlackjack-v0", "colour=red", "colour='red'"),
    ("collect", "Blackjack-v1", "bogus=1", "bogus=1"),
])
def test_a_kwarg_the_env_rejects_is_one_line(tmp_path, tiny_model_dir, kw_env, no_model_loading, command, env, pair,
                                             shown):
    out = tmp_path / ("out.jsonl" if command == "collect" else "out")
    where = {"run": ["-o", out, *TINY], "eval": ["--num-envs", 1], "collect": ["-o", out, "--num-envs", 1]}[command]
    result = invoke(command, "--agent", "blackjack", "--env", env, "--model", tiny_model_dir, "--episodes", 1,
                    "--env-kwarg", pair, *where, "-q")
    key = pair.split("=")[0]
    one_line_error(result, f"env {env!r} cannot be created with the keyword arguments {shown} (TypeError:",
                   f"unexpected keyword argument '{key}'", "fix or drop them (--env-kwarg KEY=VALUE")
    assert not out.exists()
