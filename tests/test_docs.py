"""The documentation cannot drift from the code: every hook documented with its exact signature, every setting
and command line the pages name exists, and the site builds with `mkdocs build --strict`."""

import dataclasses
import importlib.util
import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

import click
import pytest

from llamagym.plugins import hookspecs
from llamagym.cli import cli
from llamagym.config import SECTIONS, RunConfig

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.rglob("*.md"))
HOOK_PAGE = DOCS / "reference" / "hooks.md"


def hookspec_functions():
    marker = f"{hookspecs.PROJECT_NAME}_spec"
    return {name: fn for name, fn in vars(hookspecs).items() if callable(fn) and hasattr(fn, marker)}


def hook_sections():
    """`## `llamagym_x`` heading -> the text of its section."""
    parts = re.split(r"^## `(llamagym_\w+)`$", HOOK_PAGE.read_text(), flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2]))


def source_signature(fn):
    """`(name: annotation, ...) -> annotation` as written in the source: hookspecs' annotations are strings
    (`from __future__ import annotations`), which `str(inspect.signature(fn))` would show quoted."""
    signature = inspect.signature(fn)

    def text(annotation):
        return annotation if isinstance(annotation, str) else inspect.formatannotation(annotation)

    parameters = ", ".join(p.name if p.annotation is p.empty else f"{p.name}: {text(p.annotation)}"
                           for p in signature.parameters.values())
    returns = "" if signature.return_annotation is signature.empty else f" -> {text(signature.return_annotation)}"
    return f"({parameters}){returns}"


def test_every_hook_is_documented_with_its_exact_signature():
    specs, sections = hookspec_functions(), hook_sections()
    assert len(specs) >= 7
    assert sorted(sections) == sorted(specs), "the hook reference and llamagym.plugins.hookspecs list different hooks"
    for name, fn in specs.items():
        assert all(p.annotation is not p.empty for p in inspect.signature(fn).parameters.values()), name
        signature = f"def {name}{source_signature(fn)}"
        assert f"```python\n{signature}\n```" in sections[name], f"{name}: document `{signature}`"


def test_the_hook_reference_says_how_answers_combine():
    for name, fn in hookspec_functions().items():
        firstresult = getattr(fn, f"{hookspecs.PROJECT_NAME}_spec")["firstresult"]
        section = " ".join(hook_sections()[name].split())
        if firstresult:
            assert "the first non-None answer wins (`firstresult`)" in section, name
        else:
            assert "every implementation is called" in section, name


def setting_names():
    names = {f.name for f in dataclasses.fields(RunConfig) if f.name not in SECTIONS}
    for section in SECTIONS:
        names |= {f"{section}.{f.name}" for f in dataclasses.fields(type(getattr(RunConfig(), section)))}
    return names


def test_every_setting_the_pages_name_exists():
    known = setting_names()
    named = {(page.name, m) for page in PAGES
             for m in re.findall(r"`((?:ppo|generation|lora)\.[a-z_]+)`", page.read_text())}
    assert named, "the pages name no settings: the pattern is broken"
    assert [(page, name) for page, name in named if name not in known] == []


def shell_lines(text):
    """The lines of the ```bash (or unlabelled) code blocks of a Markdown text."""
    language = None
    for line in text.splitlines():
        fence = re.match(r"^\s*```(\w*)", line)
        if fence:
            language = None if language is not None else fence.group(1)
        elif language in ("bash", "console", ""):
            yield line


def command_lines():
    """(page, argv) of every `llamagym ...` command shown in a shell block of the docs or the README."""
    for page in [*PAGES, ROOT / "README.md"]:
        for line in shell_lines(page.read_text()):
            words = line.split("#")[0].split()
            if "llamagym" in words and all("=" in w for w in words[:words.index("llamagym")]):
                yield page.name, words[words.index("llamagym") + 1:]


def test_every_command_line_in_the_docs_names_real_commands_and_flags():
    lines = list(command_lines())
    assert len(lines) > 20
    problems = []
    for page, argv in lines:
        command = cli.commands.get(argv[0]) if argv else None
        if command is None:
            problems.append(f"{page}: no command {argv[:1]}")
            continue
        flags = {opt for param in command.params if isinstance(param, click.Option)
                 for opt in param.opts + param.secondary_opts}
        flags |= {"-h", "--help"}
        problems += [f"{page}: llamagym {argv[0]} has no {word}" for word in argv[1:]
                     if word.startswith("-") and word != "..." and word.split("=")[0] not in flags]
    assert problems == []


def test_every_page_is_in_the_navigation():
    nav = (ROOT / "mkdocs.yml").read_text()
    missing = [str(p.relative_to(DOCS)) for p in PAGES if f": {p.relative_to(DOCS).as_posix()}" not in nav]
    assert missing == []


BUILD_TOOLS = ("mkdocs", "material", "mkdocs_click")


@pytest.mark.skipif(any(importlib.util.find_spec(m) is None for m in BUILD_TOOLS),
                    reason="the docs tools are not installed (pip install -e '.[docs]')")
def test_the_site_builds_strictly_with_generated_reference_pages(tmp_path):
    site = tmp_path / "site"
    build = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(site)],
                           cwd=ROOT, capture_output=True, text=True, timeout=300,
                           env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert build.returncode == 0, build.stderr[-3000:]
    settings = (site / "reference" / "hyperparameters" / "index.html").read_text()
    for name in setting_names():
        assert f"<code>{name}</code>" in settings, f"{name} missing from the generated hyperparameter tables"
    assert "<code>ppo.kl_coef</code></td>\n<td><code>--kl-coef</code></td>\n<td><code>0.05</code>" in settings
    commands = (site / "reference" / "cli" / "index.html").read_text()
    for name in cli.commands:
        assert f"llamagym {name}" in commands
    assert "--report-to" in commands and "Sentinel" not in commands
