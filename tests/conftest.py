"""Shared fixtures: run the solver CLI as a real subprocess and parse what it prints."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str

    @property
    def doc(self) -> dict:
        return json.loads(self.stdout)


def run_solvers(*args: str, env: dict[str, str] | None = None, timeout: float = 600) -> CliResult:
    """``python -m solvers ARGS`` in this interpreter, from the repository root."""
    proc = subprocess.run(
        [sys.executable, "-m", "solvers", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture
def solvers_cli():
    return run_solvers
