"""Shared fixtures: the solver CLI and ``gdbench`` as real subprocesses, the real Docker engine and compose file."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: Small and quick solver options. The sync check is skipped: on a busy shared CI host its timing ratio is noise,
#: and these tests are about correctness and orchestration, not the timing protocol (test_solvers.py covers that).
SMALL = ["--dims", "2,5", "--n", "500", "--iters", "50", "--repeats", "2", "--max-repeats", "2", "--no-sync-check"]


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


def gdbench(*args: str, timeout: float = 900, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``gdbench ARGS`` (``python -m orchestrator``) in this interpreter, from the repository root.

    For what needs a whole process: a real sweep, its signals, its exit. A refusal is checked in this process
    with ``refused``."""
    return subprocess.run([sys.executable, "-m", "orchestrator", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def refused(capsys: pytest.CaptureFixture[str], *args: str, code: int = 2, output_first: bool = False) -> str:
    """``gdbench ARGS`` through the CLI's entry point in this process, refused: exit ``code`` (2: bad options,
    nothing started), one ``error:`` line on stderr, and nothing on stdout unless ``output_first`` (a command
    that prints its data, then refuses to gate on it). Returns the error line.

    Only for what parsing and checking decide; a traceback here is the test's failure, as it is a bug there."""
    from orchestrator.cli.app import main

    capsys.readouterr()  # what the test printed before is not the command's
    rc = main(list(args))
    out, err = capsys.readouterr()
    err = err.strip()
    assert rc == code, err
    assert err.startswith("error: ") and len(err.splitlines()) == 1, err
    assert output_first or out == "", out
    return err


#: CI sets this: a missing daemon or image then fails the Docker tests instead of skipping them.
REQUIRE_DOCKER = os.environ.get("GDBENCH_REQUIRE_DOCKER") == "1"


def docker_unusable(reason: str) -> None:
    """Skip (on a developer machine) or fail (in CI) a test whose Docker prerequisites are missing."""
    if REQUIRE_DOCKER:
        pytest.fail(f"{reason} (GDBENCH_REQUIRE_DOCKER=1)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def engine():
    """A connection to the real Docker engine."""
    from orchestrator.backends.docker.engine import DockerEngine
    from orchestrator.errors import GdbenchError

    try:
        return DockerEngine.connect()
    except GdbenchError as exc:
        docker_unusable(str(exc))
        raise


@pytest.fixture(scope="module")
def compose():
    """The project's compose file (or ``GDBENCH_COMPOSE``), read the way the orchestrator reads it."""
    from orchestrator.errors import GdbenchError
    from orchestrator.images.compose import load_compose

    try:
        return load_compose(os.environ.get("GDBENCH_COMPOSE") or ROOT / "compose.yaml")
    except GdbenchError as exc:
        docker_unusable(str(exc))
        raise


def require_images(engine, compose, frameworks: list[str]) -> None:
    """Skip (or fail in CI) unless the CPU image of every framework named is built."""
    missing = [compose.service_for(fw, "cpu").image for fw in frameworks
               if engine.image(compose.service_for(fw, "cpu").image) is None]
    if missing:
        docker_unusable(f"CPU image(s) not built: {', '.join(missing)} (make images)")


@pytest.fixture(scope="module")
def all_images(engine, compose) -> None:
    from solvers import registry

    require_images(engine, compose, [fw for fw in registry.FRAMEWORKS if "cpu" in registry.REGISTRY[fw].devices])


@pytest.fixture(scope="module")
def numpy_image(engine, compose) -> None:
    require_images(engine, compose, ["numpy"])


class FaultTable:
    """The rows of a fault table in docs/faults.md, taken from what each run directory and process said.

    A test module records one row per fault; when the environment variable it names is set, the table is
    written there at the end of the module (that is how docs/faults.md's tables are made).
    """

    HEADER = ["| fault | how it is produced | outcome | recorded reason | `gdbench` exit |", "|---|---|---|---|---|"]

    def __init__(self, env_var: str, tmp_pattern: str) -> None:
        self.env_var, self.tmp_pattern = env_var, re.compile(tmp_pattern)
        self.rows: list[dict[str, str]] = []

    def record(self, fault: str, how: str, outcome: str, reason: str | None, exit_code: int | str) -> None:
        shown = self.tmp_pattern.sub("$TMP", reason or "-").replace("|", "\\|")
        self.rows.append({"fault": fault, "how": how, "outcome": outcome, "reason": shown, "exit": str(exit_code)})

    def write(self) -> None:
        target = os.environ.get(self.env_var)
        if target and self.rows:
            lines = [*self.HEADER, *(f"| {r['fault']} | {r['how']} | {r['outcome']} | {r['reason']} | {r['exit']} |"
                                     for r in self.rows)]
            Path(target).write_text("\n".join(lines) + "\n", encoding="utf-8")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The CUDA image checks run only where those images were built for them (``make test-cuda`` sets
    GDBENCH_CUDA_IMAGES=1); elsewhere they are deselected, not skipped: CI builds no CUDA image."""
    if os.environ.get("GDBENCH_CUDA_IMAGES") == "1":
        return
    chosen = [i for i in items if i.get_closest_marker("cuda_images") is None]
    if len(chosen) != len(items):
        config.hook.pytest_deselected(items=[i for i in items if i.get_closest_marker("cuda_images")])
        items[:] = chosen
