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


#: CI sets this: a missing daemon or image then fails the Docker tests instead of skipping them.
REQUIRE_DOCKER = os.environ.get("GDBENCH_REQUIRE_DOCKER") == "1"


def docker_unusable(reason: str) -> None:
    """Skip (on a developer machine) or fail (in CI) a test whose Docker prerequisites are missing."""
    if REQUIRE_DOCKER:
        pytest.fail(f"{reason} (GDBENCH_REQUIRE_DOCKER=1)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def host():
    """A connection to the real Docker engine."""
    from orchestrator.dockerhost import DockerHost
    from orchestrator.errors import GdbenchError

    try:
        return DockerHost.connect()
    except GdbenchError as exc:
        docker_unusable(str(exc))
        raise
