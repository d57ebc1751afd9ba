"""Click options generated from the config dataclasses, so every hyperparameter is a flag with its help."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import click

from llamagym.config import SECTIONS, RunConfig, _base_type, field_specs

SEPARATOR = "__"
TOP_LEVEL = ("model", "init_adapter", "episodes", "seed", "num_envs", "device", "precision", "checkpoint_every",
             "report_to", "max_env_errors", "record_conversations", "score_policy")


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
