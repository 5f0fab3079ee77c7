"""The packages' import graph, read from the source: no import circle, and the layering the project keeps.

``solvers`` runs inside every framework image, which holds NumPy and the framework only: it must never import
the orchestrator or its libraries. Typer belongs to the command line: only ``orchestrator/cli/`` imports it,
so the orchestrator's logic can be imported (by scripts, tests, another front end) without it.

The graph is ``scripts/import_graph.py``'s (loaded by path: scripts import no tests), which prints the same
circles and sizes for a person.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.conftest import ROOT


def _load_import_graph() -> ModuleType:
    spec = importlib.util.spec_from_file_location("import_graph", ROOT / "scripts" / "import_graph.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file executes
    spec.loader.exec_module(module)
    return module


import_graph = _load_import_graph()

#: What a solver image does not hold: the orchestrator and the libraries only it uses.
NOT_IN_SOLVERS = ("orchestrator", "docker", "pandas", "typer", "rich")


@pytest.fixture(scope="module")
def graph():
    return import_graph.build(import_graph.sources(ROOT))


def _circles(found: list[list[str]]) -> str:
    return "import circles:\n" + "\n".join("  " + " -> ".join(c) for c in found)


@pytest.mark.parametrize("package", ["orchestrator", "solvers"])
def test_no_import_circle(graph, package: str) -> None:
    found = import_graph.cycles(graph, within=package)
    assert not found, _circles(found)


def test_solvers_import_nothing_of_the_orchestrator_side(graph) -> None:
    solvers = [m for m in graph.files if m.split(".")[0] == "solvers"]
    assert solvers
    bad = {m: sorted(top for top in NOT_IN_SOLVERS if top in graph.external[m]
                     or any(t.split(".")[0] == top for t in graph.edges[m])) for m in solvers}
    assert not {m: tops for m, tops in bad.items() if tops}


def test_only_the_cli_imports_typer(graph) -> None:
    importers = graph.importers_of("typer")
    assert importers, "the CLI imports typer: the graph must see that"
    assert [m for m in importers if not m.startswith("orchestrator.cli.")] == []


# ------------------------------------------------------------------- the graph itself, on a tree made here


def _tree(files: dict[str, str]) -> dict[str, str]:
    return {path: "from __future__ import annotations\n" + text for path, text in files.items()}


TREE = {
    "pkg/__init__.py": "",
    "pkg/a.py": "from pkg import b\n",  # a submodule named by from-import
    "pkg/b.py": "def later():\n    from .sub.c import thing\n",  # function level, relative
    "pkg/sub/__init__.py": "",
    "pkg/sub/c.py": "import os\nimport pkg.a as again\nthing = 1\n",  # absolute, closes a → b → c → a
    "pkg/d.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import a\nelse:\n"
                "    import docker.errors\nfrom . import sub\n",
}


def test_the_graph_resolves_every_kind_of_import_and_finds_the_circle() -> None:
    g = import_graph.build(_tree(TREE), packages=("pkg",))
    assert g.edges["pkg.a"] == {"pkg.b"} and g.edges["pkg.b"] == {"pkg.sub.c"} and g.edges["pkg.sub.c"] == {"pkg.a"}
    assert g.edges["pkg.d"] == {"pkg.sub"} and g.external["pkg.d"] == {"__future__", "typing", "docker"}
    assert import_graph.cycles(g) == [["pkg.a", "pkg.b", "pkg.sub.c", "pkg.a"]]
    assert import_graph.cycles(g, within="pkg.sub") and not import_graph.cycles(g, within="other")
    # Counted only when asked: an import under TYPE_CHECKING never runs.
    assert "pkg.a" in import_graph.build(_tree(TREE), packages=("pkg",), type_checking=True).edges["pkg.d"]


def test_two_circles_through_one_module_are_both_reported() -> None:
    tree = _tree({"pkg/__init__.py": "", "pkg/hub.py": "from pkg import x, y\n", "pkg/x.py": "import pkg.hub\n",
                  "pkg/y.py": "from pkg.hub import z\n"})
    found = import_graph.cycles(import_graph.build(tree, packages=("pkg",)))
    assert found == [["pkg.hub", "pkg.x", "pkg.hub"], ["pkg.hub", "pkg.y", "pkg.hub"]]


def test_the_script_prints_circles_counts_and_the_largest_modules(tmp_path: Path) -> None:
    for path, text in TREE.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(text)
    g = import_graph.build(import_graph.sources(tmp_path, packages=("pkg",)), packages=("pkg",))
    text = import_graph.report(g, largest=2)
    assert "import circles: 1\n  pkg.a -> pkg.b -> pkg.sub.c -> pkg.a" in text
    assert import_graph.package_counts(g) == {"pkg": 4, "pkg.sub": 2}
    assert text.startswith("modules: 6 (pkg 6)\n")
    assert text.endswith("largest modules (lines), top 2:\n      6  pkg/d.py\n      3  pkg/sub/c.py")
