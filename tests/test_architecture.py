"""The package's shape: no import cycle among the modules of `core/llamagym` (imports at module level and inside
functions; `if TYPE_CHECKING:` blocks do not count), and the layout's rules that the code relies on."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "core" / "llamagym"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in PACKAGE.rglob("*.py")}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def module_imports(tree: ast.Module, name: str, is_package: bool) -> list[str]:
    """Every module a module imports, at module level or inside a function (a cycle through a function-body import
    is a cycle too, only deferred), relative imports resolved; `if TYPE_CHECKING:` blocks are left out."""
    skipped = {id(node) for block in ast.walk(tree) if isinstance(block, ast.If) and _is_type_checking(block)
               for statement in block.body for node in ast.walk(statement)}
    found: list[str] = []
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = name.split(".") if is_package else name.split(".")[:-1]
                parts = parts[:len(parts) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            found.append(base)
            found.extend(f"{base}.{alias.name}" for alias in node.names)
    return found


def import_graph() -> dict[str, set[str]]:
    known = modules()
    graph: dict[str, set[str]] = {}
    for name, path in known.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        targets = module_imports(tree, name, path.name == "__init__.py")
        graph[name] = {t for t in targets if t in known and t != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                connect(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return found


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_relative_and_function_body_imports_count_but_type_checking_ones_do_not():
    tree = ast.parse("from . import x\nfrom ..y import z\nif TYPE_CHECKING:\n    import w\n"
                     "def f():\n    import v\n")
    assert sorted(module_imports(tree, "llamagym.run.loop", False)) == [
        "llamagym.run", "llamagym.run.x", "llamagym.y", "llamagym.y.z", "v"]


def test_no_import_cycle_inside_the_package():
    assert cycles(import_graph()) == []


@pytest.mark.parametrize("private", ["_rng", "_conversations", "_tries"])
def test_no_module_reaches_into_the_agents_private_state(private):
    offenders = []
    for name, path in modules().items():
        if name == "llamagym.agent.agent":
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if f"agent.{private}" in line or f"agent().{private}" in line:
                offenders.append(f"{name}:{number}")
    assert offenders == []


def test_the_training_loop_is_the_only_place_that_starts_updates():
    """Engines yield episodes; only the loop (and the Agent API's own `terminate_episode`) trains."""
    import re

    update = re.compile(r"(\btrainer\.step\(|\b(agent|self)\.train\(\))")
    callers = [name for name, path in modules().items() if update.search(path.read_text(encoding="utf-8"))]
    assert sorted(callers) == ["llamagym.agent.agent", "llamagym.distributed.replicas", "llamagym.run.loop"]


LOWER = ("agent", "policy", "algo", "rollout", "plugins")  # what a run is built from
UPPER = ("run", "distributed", "tools", "cli")  # what builds runs from them


def test_the_layers_below_a_run_do_not_import_the_layers_above():
    """agent/, policy/, algo/, rollout/ and plugins/ never import run/, distributed/, tools/ or cli/ (type-only
    imports aside), except run/rundir.py: the names of a run directory, a leaf every layer may read."""
    offenders = []
    for name, path in modules().items():
        if len(name.split(".")) < 2 or name.split(".")[1] not in LOWER:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for target in module_imports(tree, name, path.name == "__init__.py"):
            parts = target.split(".")
            if len(parts) > 1 and parts[0] == "llamagym" and parts[1] in UPPER and target != "llamagym.run.rundir" \
                    and not target.startswith("llamagym.run.rundir."):
                offenders.append(f"{name} imports {target}")
    assert offenders == []
