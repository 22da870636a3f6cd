"""The layout's rules (docs/contributing.md, "Layout"), read from the source as text: no import
circle between forkq's modules (imports inside functions count), the server side never imports
the admin side, and the top of ``forkq/`` stays what an application imports plus the shared
ground."""

from __future__ import annotations

import ast
import os

import pytest

ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "forkq")
#: most modules directly in forkq/ (the rest live in the folders of their runtime part)
MOST_TOP_MODULES = 25


def module_paths() -> dict[str, str]:
    """Dotted module name → file, for every module of the forkq package."""
    found = {}
    for folder, _, files in os.walk(ROOT):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                dotted = "forkq" + path[len(ROOT):-3].replace(os.sep, ".")
                found[dotted.removesuffix(".__init__")] = path
    return found


def imported(module: str, path: str, modules: dict[str, str]) -> set[str]:
    """The forkq modules ``module`` imports anywhere in its text (functions included)."""
    package = module if path.endswith("__init__.py") else module.rpartition(".")[0]
    names = set()
    for node in ast.walk(ast.parse(open(path).read())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            # ``from package import name`` imports the submodule when there is one (the
            # package's own __init__ runs first in any case, which is no edge of the design)
            names.update(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                         for alias in node.names)
    found = set()
    for name in names:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        if name and name != module:
            found.add(name)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = module_paths()
    return {module: imported(module, path, modules) for module, path in modules.items()}


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, edges = work[-1]
            for target in edges:
                if target not in index:
                    index[target] = low[target] = len(index)
                    stack.append(target)
                    on_stack.add(target)
                    work.append((target, iter(sorted(graph[target]))))
                    break
                if target in on_stack:
                    low[node] = min(low[node], index[target])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    group = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        group.append(member)
                        if member == node:
                            break
                    if len(group) > 1:
                        groups.append(sorted(group))
    return groups


def test_no_import_circle_between_forkq_modules():
    assert circles(import_graph()) == []


def test_the_circle_finder_finds_a_circle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert circles(graph) == [["a", "b", "c"]]


@pytest.mark.parametrize("server", ["forkq.worker", "forkq.flow"])
def test_the_server_side_never_imports_the_admin_side(server):
    graph = import_graph()
    admin = ("forkq.api", "forkq.web", "forkq.ctl", "forkq.cli")
    reached = {target for module, targets in graph.items()
               if module == server or module.startswith(server + ".") for target in targets}
    inside_admin = tuple(name + "." for name in admin)
    assert sorted(t for t in reached if t in admin or t.startswith(inside_admin)) == []


def test_the_top_of_the_package_holds_at_most_25_modules():
    top = [name for name in os.listdir(ROOT) if name.endswith(".py")]
    assert len(top) <= MOST_TOP_MODULES, sorted(top)
