"""MkDocs hook: pages that must not drift from the code are filled in at build time. A marker comment in a page,
`<!-- llamagym:hyperparameters -->`, becomes the tables of every setting, read from llamagym's config classes."""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

MARKER = "<!-- llamagym:hyperparameters -->"


def accepted_values(field: dataclasses.Field) -> str:
    """What a setting accepts, from its type and range metadata."""
    from llamagym.config import _base_type

    scalar, optional = _base_type(field.type)
    meta = field.metadata
    if meta.get("choices"):
        text = " / ".join(f"`{c}`" for c in meta["choices"])
    elif scalar is bool:
        text = "true / false"
    elif typing.get_origin(scalar) is dict:
        text = "a table of `KEY = VALUE` (any TOML value)"
    else:
        low, high = meta.get("min"), meta.get("max")
        text = {int: "integer", float: "number", str: "text"}[scalar]
        if low is not None and high is not None:
            text += f" in [{low}, {high}]"
        elif low is not None:
            text += f" > {low}" if meta.get("exclusive_min") else f" ≥ {low}"
    return text + (", or unset" if optional else "")


def flag(field: dataclasses.Field) -> str:
    """The `llamagym run` flag of a setting, named as cli/options.py names it."""
    from llamagym.config import _base_type

    name = field.metadata.get("flag") or field.name.replace("_", "-")
    scalar = _base_type(field.type)[0]
    if scalar is bool:
        positive, _, negative = name.partition("/")
        return f"`--{positive}` / `{negative or '--no-' + positive}`"
    if typing.get_origin(scalar) is dict:
        return f"`--{name} KEY=VALUE` (repeatable)"
    return f"`--{name}`"


def default_text(field: dataclasses.Field) -> str:
    value = field.default
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    return f'`"{value}"`' if isinstance(value, str) else f"`{value}`"


def table(section: str | None, cls: type) -> str:
    from llamagym.config import SECTIONS

    rows = ["| setting | flag | default | accepts | what it does |", "| --- | --- | --- | --- | --- |"]
    for field in dataclasses.fields(cls):
        if section is None and field.name in SECTIONS:
            continue
        key = f"{section}.{field.name}" if section else field.name
        help_text = field.metadata.get("help", "").replace("|", "\\|")
        rows.append(f"| `{key}` | {flag(field)} | {default_text(field)} | {accepted_values(field)} | "
                    f"{help_text} |")
    return "\n".join(rows)


def hyperparameter_tables() -> str:
    from llamagym.config import SECTIONS, RunConfig

    parts = ["### Run (top level of a config file)", "", table(None, RunConfig)]
    for section in SECTIONS:
        cls = type(getattr(RunConfig(), section))
        doc = (cls.__doc__ or "").strip().splitlines()[0]
        parts += ["", f"### `[{section}]`", "", doc, "", table(section, cls)]
    return "\n".join(parts)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    if MARKER in markdown:
        markdown = markdown.replace(MARKER, hyperparameter_tables())
    return markdown
