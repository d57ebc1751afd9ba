"""`llamagym new NAME`: render the plugin template shipped inside llamagym into a pip-installable package."""

from __future__ import annotations

import os
import re
import shutil
import string
import tempfile
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING

from llamagym import __version__
from llamagym.errors import UsageError

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

TEMPLATE = ("templates", "plugin")
SUFFIX = ".tmpl"
MODULE_PLACEHOLDER = "__module__"
NAME = re.compile(r"[a-z][a-z0-9]*(?:-[a-z0-9]+)*")


def plugin_names(name: str) -> dict[str, str]:
    """Every name the template needs, derived from the plugin name (`guess-number` → `llamagym_guess_number`)."""
    name = name.strip().lower().removeprefix("llamagym-")
    if not NAME.fullmatch(name):
        raise UsageError(f"plugin name {name!r} is not valid: use lowercase letters, digits and single hyphens, "
                         f"starting with a letter (for example guess-number)")
    class_prefix = "".join(part.capitalize() for part in name.split("-"))
    return {"name": name, "distribution": f"llamagym-{name}", "module": f"llamagym_{name.replace('-', '_')}",
            "class_prefix": class_prefix, "env_id": f"{class_prefix}-v0",
            "llamagym_version": ".".join(__version__.split(".")[:2])}


def template_files(root: Traversable | None = None, prefix: tuple[str, ...] = ()
                   ) -> list[tuple[tuple[str, ...], Traversable]]:
    """(relative path parts, file) of every template file."""
    if root is None:
        root = files("llamagym")
        for part in TEMPLATE:  # one name per joinpath: Python 3.10's Traversable.joinpath takes only one
            root = root.joinpath(part)
    found: list[tuple[tuple[str, ...], Traversable]] = []
    for entry in sorted(root.iterdir(), key=lambda e: e.name):
        if entry.is_dir() and entry.name != "__pycache__":
            found += template_files(entry, prefix + (entry.name,))
        elif entry.name.endswith(SUFFIX):
            found.append((prefix + (entry.name,), entry))
    return found


def render_path(parts: tuple[str, ...], names: dict[str, str]) -> Path:
    parts = tuple(part.replace(MODULE_PLACEHOLDER, names["module"]) for part in parts)
    return Path(*parts[:-1], parts[-1].removesuffix(SUFFIX))


def scaffold_plugin(name: str, directory: str | Path = ".") -> Path:
    """Write the package `llamagym-NAME/` into `directory` and return its path; an existing one is an error."""
    names = plugin_names(name)
    directory = Path(directory)
    target = directory / names["distribution"]
    if target.exists():
        raise UsageError(f"{str(target)!r} already exists: choose another name or directory (-d)")
    directory.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=directory))
    try:
        for parts, template in template_files():
            path = staging / render_path(parts, names)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(string.Template(template.read_text(encoding="utf-8")).substitute(names),
                            encoding="utf-8")
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
