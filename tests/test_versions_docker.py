"""Versions as a sweep axis against the real engine: two declared numpy versions in one sweep through the real
CLI, one document per version with its own provenance, resume by version; and a version added on the
Python 3.13 base in a scratch copy of the checkout, built, run, and removed byte for byte."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT, docker_unusable, gdbench, refused

pytestmark = pytest.mark.docker

SMALL = ["--devices", "cpu", "--dims", "2,5", "--n", "500", "--iters", "50", "--repeats", "2",
         "--max-repeats", "2", "--no-sync-check"]


def build(engine, compose, *names: str, compose_path: Path | None = None) -> None:
    """Build declared images through ``gdbench images build`` (what a user runs) unless they are built.

    A build that fails fails the test, in CI and outside it: the engine and compose fixtures already skipped
    (outside CI) where Docker itself is missing, so a build that breaks here is what the test is there to see."""
    extra = ["--compose", str(compose_path)] if compose_path else []
    done = gdbench("images", "build", *names, *extra, timeout=900)
    said = f"gdbench images build {' '.join(names)} failed (exit {done.returncode}):\n{done.stderr[-3000:]}"
    assert done.returncode == 0, said


def documents(run: Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in run.glob("*.json") if p.name != "manifest.json"}


def test_two_numpy_versions_run_in_one_sweep_one_container_each(engine, compose, tmp_path: Path) -> None:
    old, new = compose.service_for("numpy", "cpu", "1.26.4"), compose.service_for("numpy", "cpu", "2.4.6")
    if engine.image(old.image) is None or engine.image(new.image) is None:
        build(engine, compose, "numpy@all")
    run = tmp_path / "run"
    done = gdbench("run", "--frameworks", "numpy@1.26.4,numpy@2.4.6", *SMALL, "--out", str(run))
    assert done.returncode == 0, done.stderr[-3000:]
    docs = documents(run)
    assert set(docs) == {"numpy@1.26.4-cpu", "numpy@2.4.6-cpu"}
    for version, svc in (("1.26.4", old), ("2.4.6", new)):
        doc = docs[f"numpy@{version}-cpu"]
        prov = doc["provenance"]
        assert doc["status"] == "ok" and {r["status"] for r in doc["results"]} == {"ok"}
        assert prov["framework"]["version"] == version  # what numpy itself reported inside the container
        assert prov["image"]["tag"] == svc.image and prov["image"]["id"] == engine.image(svc.image).id
        assert prov["image"]["python_version"] == prov["python"]["version"]
        assert prov["image"]["python_version"].startswith("3.11.")
    manifest = json.loads((run / "manifest.json").read_text())
    assert sorted((c["key"], c["framework_version"]) for c in manifest["containers"]) == [
        ("numpy@1.26.4-cpu", "1.26.4"), ("numpy@2.4.6-cpu", "2.4.6")]
    again = gdbench("run", "--resume", str(run))  # each version is its own container: both are already done
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads((run / "manifest.json").read_text())["containers"][0]["resumed"] is True
    assert documents(run) == docs


def test_an_undeclared_version_is_refused_before_any_container(engine, compose, tmp_path: Path, capsys) -> None:
    line = refused(capsys, "run", "--frameworks", "numpy@9.9,numpy", *SMALL, "--out", str(tmp_path / "run"))
    assert "numpy 9.9 (cpu) is not declared" in line and "declared: 1.26.4, 2.4.6" in line
    assert "gdbench images add numpy==9.9" in line
    assert not list((tmp_path / "run").glob("*.json"))  # no manifest, no document: nothing was started


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """What adding, building and running a version needs: compose.yaml, images/, scripts/ (and the orchestrator
    they import), solvers/, the wheel's pyproject and the Makefile (the lock tool is reused from here)."""
    for rel in ("Makefile", "compose.yaml", "pyproject.toml", "README.md", "images", "scripts", "solvers",
                "orchestrator"):
        src = ROOT / rel
        if src.is_dir():
            shutil.copytree(src, tmp_path / rel, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(src, tmp_path / rel)
    (tmp_path / ".cache").mkdir()
    if (ROOT / ".cache/tools").is_dir():
        (tmp_path / ".cache/tools").symlink_to(ROOT / ".cache/tools")
    return tmp_path


def test_a_python_313_version_is_added_built_run_and_removed(engine, checkout: Path, tmp_path: Path) -> None:
    compose_path = checkout / "compose.yaml"
    before = compose_path.read_bytes()
    if engine.image("gdbench/base:trixie-py3.13") is None and shutil.which("debootstrap") is None:
        docker_unusable("no trixie base and no debootstrap to build it")
    added = gdbench("images", "add", "numpy==2.4.6", "--python", "3.13", "--compose", str(compose_path))
    assert added.returncode == 0, added.stderr
    assert "service  numpy-2.4.6-py3.13" in added.stdout and "image    gdbench/numpy:2.4.6-cpu-py3.13" in added.stdout
    tag = "gdbench/numpy:2.4.6-cpu-py3.13"
    try:
        built = gdbench("images", "build", "numpy@2.4.6-py3.13", "--compose", str(compose_path), timeout=900)
        assert built.returncode == 0, built.stderr[-3000:]
        listed = gdbench("images", "list", "numpy@all", "--json", "--compose", str(compose_path))
        rows = {r["service"]: r for r in json.loads(listed.stdout)}
        assert rows["numpy-2.4.6-py3.13"]["built"] and rows["numpy-2.4.6-py3.13"]["python"].startswith("3.13.")
        assert rows["numpy"]["default"] and not rows["numpy-2.4.6-py3.13"]["default"]
        run = tmp_path / "run"
        done = gdbench("run", "--frameworks", "numpy@2.4.6-py3.13", *SMALL, "--dims", "2", "--out", str(run),
                       "--compose", str(compose_path))
        assert done.returncode == 0, done.stderr[-3000:]
        (doc,) = documents(run).values()
        assert doc["provenance"]["python"]["version"].startswith("3.13.")
        assert doc["provenance"]["image"]["python_version"] == doc["provenance"]["python"]["version"]
        assert (doc["provenance"]["image"]["tag"], doc["provenance"]["framework"]["version"]) == (tag, "2.4.6")
    finally:
        removed = gdbench("images", "remove", "numpy==2.4.6", "--python", "3.13", "--compose", str(compose_path))
        if engine.image(tag) is not None:
            subprocess.run(["docker", "image", "rm", "-f", tag], capture_output=True, check=False)
    assert removed.returncode == 0 and removed.stdout.strip() == "numpy-2.4.6-py3.13", removed.stderr
    assert compose_path.read_bytes() == before
    assert not list((checkout / "images/numpy").glob("requirements-2.4.6-cpu-py3.13.*"))
