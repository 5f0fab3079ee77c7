"""The import graph of the ``orchestrator`` and ``solvers`` packages, read from the source with ``ast``.

Every ``import`` and ``from … import`` counts, at module level and inside functions alike (a function-level
import closes a circle as surely, only later), absolute or relative; each is resolved to the most specific
module of the two packages it names (``from orchestrator.results import report`` → that module, ``from
.schema import utc_now`` → ``solvers.schema``). Imports under ``if TYPE_CHECKING:`` never run and are left
out unless asked for. Anything else is recorded by its top-level name (``docker``, ``pandas``, …).

tests/test_imports.py loads this file by path and asserts on the same graph (no circle, the solvers' and the
CLI's import rules); run directly, it prints the circles, the modules per package and the largest modules:

    python scripts/import_graph.py [--rev GIT_REVISION] [--type-checking]

``--rev`` reads the packages as a commit has them (``git show``), for before/after numbers.
"""

from __future__ import annotations

import argparse
import ast
import subprocess
import sys
from collections import Counter, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("orchestrator", "solvers")


@dataclass
class Graph:
    #: module name → its file, relative to the root (``orchestrator/cli/app.py``).
    files: dict[str, str] = field(default_factory=dict)
    #: module name → its lines of source.
    lines: dict[str, int] = field(default_factory=dict)
    #: module name → the modules of the packages it imports.
    edges: dict[str, set[str]] = field(default_factory=dict)
    #: module name → top-level names of everything else it imports (``docker``, ``typer``, ``os``, …).
    external: dict[str, set[str]] = field(default_factory=dict)

    def importers_of(self, top: str) -> list[str]:
        """Modules that import ``top`` (a third-party top-level name) or a module of package ``top``."""
        return sorted(m for m in self.files if top in self.external[m]
                      or any(t == top or t.startswith(top + ".") for t in self.edges[m]))


def module_name(path: str) -> str:
    """``orchestrator/cli/app.py`` → ``orchestrator.cli.app``; a package's ``__init__.py`` is the package."""
    parts = path.removesuffix(".py").split("/")
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def sources(root: Path = ROOT, packages: Iterable[str] = PACKAGES, rev: str | None = None) -> dict[str, str]:
    """Relative path → source of every ``.py`` file of the packages: the working tree, or a git revision."""
    if rev is None:
        return {p.relative_to(root).as_posix(): p.read_text(encoding="utf-8")
                for pkg in packages for p in sorted((root / pkg).rglob("*.py"))}
    names = subprocess.run(["git", "ls-tree", "-r", "--name-only", rev, "--", *packages], cwd=root,
                           capture_output=True, text=True, check=True).stdout.split()
    return {n: subprocess.run(["git", "show", f"{rev}:{n}"], cwd=root, capture_output=True, text=True,
                              check=True).stdout for n in names if n.endswith(".py")}


def _imports(tree: ast.Module, type_checking: bool) -> Iterable[ast.Import | ast.ImportFrom]:
    """Every import statement of the module, at any depth; ``if TYPE_CHECKING:`` bodies only when asked."""
    todo: deque[ast.AST] = deque([tree])
    while todo:
        node = todo.popleft()
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        if not type_checking and isinstance(node, ast.If) and _is_type_checking(node.test):
            todo.extend(node.orelse)
            continue
        todo.extend(ast.iter_child_nodes(node))


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def build(files: Mapping[str, str], packages: Iterable[str] = PACKAGES, type_checking: bool = False) -> Graph:
    """The graph of ``files`` (relative path → source), e.g. ``build(sources())``."""
    packages = tuple(packages)
    graph = Graph()
    for path in sorted(files):
        name = module_name(path)
        graph.files[name] = path
        graph.lines[name] = len(files[path].splitlines())
        graph.edges[name], graph.external[name] = set(), set()
    known = set(graph.files)

    def resolve(dotted: str) -> str | None:
        """The most specific known module that ``dotted`` is or lies in."""
        parts = dotted.split(".")
        for n in range(len(parts), 0, -1):
            if ".".join(parts[:n]) in known:
                return ".".join(parts[:n])
        return None

    for name, path in graph.files.items():
        package = name if path.endswith("__init__.py") else name.rpartition(".")[0]
        for node in _imports(ast.parse(files[path], filename=path), type_checking):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    origin = ".".join([*base, *([node.module] if node.module else [])])
                else:
                    origin = node.module or ""
                # ``from pkg import mod`` names the submodule where there is one, else something pkg defines.
                targets = [f"{origin}.{a.name}" if f"{origin}.{a.name}" in known else origin for a in node.names]
            for target in targets:
                if target.split(".")[0] in packages:
                    found = resolve(target)
                    if found is not None and found != name:
                        graph.edges[name].add(found)
                elif target:
                    graph.external[name].add(target.split(".")[0])
    return graph


def cycles(graph: Graph, within: str | None = None) -> list[list[str]]:
    """Import circles as paths that end where they start (``a → b → a``), the shortest through each module of
    each strongly connected part, each circle once; ``within`` keeps those through a module of that package."""
    found: dict[tuple[str, ...], list[str]] = {}
    for part in _strong_parts(graph.edges):
        if len(part) < 2:
            continue
        for start in sorted(part):
            path = _shortest_circle(graph.edges, start, part)
            i = path.index(min(path[:-1]))
            key = tuple(path[i:-1] + path[:i])
            found.setdefault(key, [*key, key[0]])
    out = sorted(found.values(), key=lambda c: (len(c), c))
    if within is not None:
        out = [c for c in out if any(m == within or m.startswith(within + ".") for m in c)]
    return out


def _strong_parts(edges: Mapping[str, set[str]]) -> list[set[str]]:
    """Tarjan's strongly connected components, iteratively (no recursion limit)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    parts: list[set[str]] = []
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges.get(root, ()))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                part = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    part.add(member)
                    if member == node:
                        break
                parts.append(part)
    return parts


def _shortest_circle(edges: Mapping[str, set[str]], start: str, part: set[str]) -> list[str]:
    """Breadth-first from ``start`` back to it, inside one strongly connected part."""
    before: dict[str, str] = {}
    todo = deque([start])
    while todo:
        node = todo.popleft()
        for child in sorted(edges.get(node, ())):
            if child not in part:
                continue
            if child == start:
                path = [node]
                while path[-1] != start:
                    path.append(before[path[-1]])
                return [start, *reversed(path[:-1]), start]
            if child not in before:
                before[child] = node
                todo.append(child)
    raise AssertionError(f"{start} is in a strongly connected part but on no circle")


def package_counts(graph: Graph) -> dict[str, int]:
    """Modules per package (``orchestrator.cli`` counts its own modules, not its sub-packages')."""
    counts = Counter(name if path.endswith("__init__.py") else name.rpartition(".")[0]
                     for name, path in graph.files.items())
    return dict(sorted(counts.items()))


def report(graph: Graph, largest: int = 10) -> str:
    tops = Counter(m.split(".")[0] for m in graph.files)
    lines = [f"modules: {len(graph.files)} (" + ", ".join(f"{p} {n}" for p, n in sorted(tops.items())) + ")",
             "", "modules per package:"]
    lines += [f"  {pkg:<28} {n:>3}" for pkg, n in package_counts(graph).items()]
    found = cycles(graph)
    lines += ["", f"import circles: {len(found)}"]
    lines += ["  " + " -> ".join(c) for c in found]
    lines += ["", f"largest modules (lines), top {largest}:"]
    lines += [f"  {graph.lines[m]:>5}  {graph.files[m]}"
              for m in sorted(graph.lines, key=lambda m: (-graph.lines[m], m))[:largest]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rev", help="read the packages at this git revision instead of the working tree")
    parser.add_argument("--type-checking", action="store_true", help="count imports under if TYPE_CHECKING: too")
    args = parser.parse_args(argv)
    print(report(build(sources(rev=args.rev), type_checking=args.type_checking)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
