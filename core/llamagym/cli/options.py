"""Click options generated from the config dataclasses, so every hyperparameter is a flag with its help."""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Callable
from typing import Any

import click

from llamagym.config import SECTIONS, RunConfig, _base_type, check_table, field_specs
from llamagym.errors import UsageError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

SEPARATOR = "__"
TOP_LEVEL = ("model", "init_adapter", "episodes", "max_minutes", "seed", "num_envs", "device", "precision",
             "checkpoint_every", "report_to", "max_env_errors", "record_conversations", "score_policy")


def _option_for(section: str | None, spec: dataclasses.Field) -> click.Option:
    scalar, _ = _base_type(spec.type)
    meta = spec.metadata
    flag = meta.get("flag") or spec.name.replace("_", "-")
    dest = f"{section}{SEPARATOR}{spec.name}" if section else spec.name
    default_text = spec.default if spec.default is not dataclasses.MISSING else None
    help_text = f"{meta.get('help', '')} [default: {default_text}]"
    if scalar is bool:
        positive, _, negative = flag.partition("/")
        names = [f"--{positive}/{negative or '--no-' + positive}"]
        return click.Option(names + [dest], default=None, help=help_text)
    click_type: Any = {int: int, float: float, str: str}[scalar]
    if meta.get("choices"):
        click_type = click.Choice(meta["choices"])
    return click.Option([f"--{flag}", dest], type=click_type, default=None, help=help_text)


def config_options(command: Callable) -> Callable:
    """Decorate a command with one option per RunConfig field (top level, then each section)."""
    run_fields = field_specs(RunConfig)
    options = [_option_for(None, run_fields[name]) for name in TOP_LEVEL]
    for section in SECTIONS:
        section_cls = type(getattr(RunConfig(), section))
        options += [_option_for(section, spec) for spec in dataclasses.fields(section_cls)]
    for opt in reversed(options):
        click.decorators._param_memo(command, opt)
    return command


def collect_flags(values: dict[str, Any]) -> dict[str, Any]:
    """The flags the user actually gave, as a nested config dict."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if value is None:
            continue
        if SEPARATOR in key:
            section, name = key.split(SEPARATOR, 1)
            out.setdefault(section, {})[name] = value
        else:
            out[key] = value
    return out


env_kwarg_option = click.option(
    "--env-kwarg", "env_kwargs", multiple=True, metavar="KEY=VALUE",
    help="a keyword argument for the environment's constructor (gym.make), repeatable; VALUE is read as a TOML "
         "(or JSON) literal where it is one (3, true, [1, 2], {a = 1}), else as text. Also a [env_kwargs] table "
         "in --config; a run keeps them in config.json for --resume and eval --checkpoint")


def parse_env_kwargs(pairs: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """`--env-kwarg KEY=VALUE` pairs as keyword arguments; a pair that is not KEY=VALUE is a one-line error."""
    kwargs: dict[str, Any] = {}
    for pair in pairs:
        key, equals, text = pair.partition("=")
        key = key.strip()
        if not equals or not key.isidentifier():
            raise UsageError(f"--env-kwarg {pair!r} is not KEY=VALUE with KEY a Python name; pass e.g. "
                             f"--env-kwarg max_steps=20 or --env-kwarg path=games/zork1.z8")
        kwargs[key] = literal(text.strip())
    return check_table("--env-kwarg", kwargs)


def literal(text: str) -> Any:
    """`text` as a TOML value (3, 2.5, true, "a b", [1, 2], {a = 1}), else as JSON (null), else the text itself."""
    try:
        parsed = tomllib.loads(f"value = {text}")
        if list(parsed) == ["value"] and _plain(parsed["value"]):
            return parsed["value"]
    except tomllib.TOMLDecodeError:
        pass
    try:
        return json.loads(text)
    except ValueError:
        return text


def _plain(value: Any) -> bool:
    """Whether a parsed value holds only what JSON holds (a TOML date is kept as the text it was written as)."""
    if isinstance(value, dict):
        return all(_plain(v) for v in value.values())
    if isinstance(value, list):
        return all(_plain(v) for v in value)
    return isinstance(value, (str, bool, int, float))
