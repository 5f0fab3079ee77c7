"""The project files an installed gdbench carries: compose.yaml, image recipes, locks, build scripts.

Its entries are links to the tree's own files, so the tree stays their one source; a wheel holds them as plain
files (``[tool.setuptools.package-data]`` in pyproject.toml lists which), and ``orchestrator.project`` copies
them, with the installed ``solvers`` package, into a project directory for an installed ``gdbench``.
"""

from pathlib import Path

#: The folder holding the files (links in a checkout, copies in an installed wheel).
FILES = Path(__file__).resolve().parent
