"""gdbench as a newcomer installs it: the wheel built from this tree, installed into a fresh venv outside the
checkout, run from another directory with a home of its own. It must find its project files in the user data
dir (made from the wheel), build the numpy image with them, and run a sweep on that image.

The build replaces the numpy image's tag in the engine; the test puts the tag back on the image it found, so
the engine is left as it was.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from orchestrator.sweep.rundir import RunDir
from solvers import schema
from tests.conftest import ROOT

pytestmark = [pytest.mark.docker, pytest.mark.slow]

SMALL = ["--devices", "cpu", "--dims", "2", "--n", "500", "--iters", "50", "--repeats", "2", "--no-sync-check"]


@dataclass(frozen=True)
class Installed:
    venv: Path
    wheel: Path
    home: Path  # the cwd and HOME of every command: outside the checkout
    data: Path  # the user data dir's project

    def env(self) -> dict[str, str]:
        """This environment less anything naming the checkout; pip's download cache stays the machine's."""
        keep = {k: v for k, v in os.environ.items()
                if not k.startswith("GDBENCH_") and k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        return {**keep, "HOME": str(self.home), "XDG_DATA_HOME": str(self.home / "data"), "XDG_CACHE_HOME": cache,
                "PATH": f"{self.venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"}

    def gdbench(self, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(self.venv / "bin" / "gdbench"), *args], cwd=self.home, env=self.env(),
                              capture_output=True, text=True, timeout=timeout, check=False)


def source_tree(dest: Path) -> Path:
    """What a clone of this tree holds now (tracked and new files, links kept as links), nothing ignored: the
    wheel must not depend on a build/ folder or a cache of this checkout."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout.split("\0")
    for rel in filter(None, listed):
        src, out = ROOT / rel, dest / rel
        if not src.is_symlink() and not src.is_file():
            continue  # deleted in the working tree
        out.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            out.symlink_to(os.readlink(src))
        else:
            shutil.copy2(src, out)
    return dest


def _run(cmd: list[str], **kw) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, **kw)
    assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"


@pytest.fixture(scope="module")
def installed(engine, tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """The wheel (pip wheel of a clean copy of the tree) in a fresh venv: the host requirements, then the wheel
    without dependencies, then ``pip check`` that the requirements satisfy everything the wheel declares."""
    base = tmp_path_factory.mktemp("install")
    src = source_tree(base / "src")
    _run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
          "-w", str(base / "dist"), str(src)])
    (wheel,) = (base / "dist").glob("gdbench-*.whl")
    venv = base / "venv"
    _run([sys.executable, "-m", "venv", str(venv)])
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    _run([*pip, "-r", str(ROOT / "requirements-host.txt")])
    _run([*pip, "--no-deps", str(wheel)])
    _run([str(venv / "bin" / "python"), "-m", "pip", "check"])
    home = base / "home"
    home.mkdir()
    return Installed(venv=venv, wheel=wheel, home=home, data=home / "data" / "gdbench" / "project")


def test_the_wheel_carries_the_project_files_and_runs_from_its_venv(installed: Installed) -> None:
    names = set(zipfile.ZipFile(installed.wheel).namelist())
    for rel in ("compose.yaml", "pyproject.toml", "images/Dockerfile", "images/numpy/requirements-cpu.txt",
                "scripts/build_image.py", "scripts/build-wheel.sh", "scripts/fetch_wheels.py"):
        assert f"gdbench_project/{rel}" in names, rel
    where = subprocess.run([str(installed.venv / "bin" / "python"), "-c", "import orchestrator; print(orchestrator"
                            ".__file__)"], cwd=installed.home, env=installed.env(), capture_output=True, text=True,
                           check=True).stdout.strip()
    assert Path(where).is_relative_to(installed.venv), where


def test_doctor_says_the_user_data_dir(installed: Installed) -> None:
    done = installed.gdbench("doctor", "--json")
    assert done.returncode in (0, 1), done.stderr[-3000:]  # 1: a declared image not built here is a blocker
    rows = {c["name"]: c for c in json.loads(done.stdout)}
    assert rows["project"] == {"name": "project", "level": "ok", "detail": f"{installed.data} (the user data dir)",
                               "fix": None}
    assert rows["compose file"]["level"] == "ok", rows["compose file"]
    assert not [r for r in rows.values() if r["name"] == "docker daemon" and r["level"] == "blocker"]
    assert (installed.data / "solvers" / "cli.py").is_file() and (installed.data / "images" / "Dockerfile").is_file()


def _image_id(tag: str) -> str | None:
    done = subprocess.run(["docker", "image", "inspect", "-f", "{{.Id}}", tag], capture_output=True, text=True,
                          check=False)
    return done.stdout.strip() if done.returncode == 0 else None


@pytest.fixture
def numpy_tag_restored(compose):
    """The numpy image's tag, put back on the image it named before the test (if any) afterwards."""
    tag = compose.service_for("numpy", "cpu").image
    before = _image_id(tag)
    yield tag
    after = _image_id(tag)
    if before and after and after != before:
        subprocess.run(["docker", "tag", before, tag], capture_output=True, check=False)
        subprocess.run(["docker", "image", "rm", after], capture_output=True, check=False)


def test_images_build_then_run_from_the_installed_gdbench(installed: Installed, numpy_tag_restored: str,
                                                          engine) -> None:
    built = installed.gdbench("images", "build", "numpy")
    assert built.returncode == 0, built.stderr[-4000:]
    assert f"built {numpy_tag_restored}" in built.stderr
    assert list((installed.data / ".cache" / "dist").glob("gdbench-*.whl")), "the images' wheel, built in the project"
    out = installed.home / "run"
    done = installed.gdbench("run", "-f", "numpy", *SMALL, "--out", str(out))
    assert done.returncode == 0, done.stderr[-4000:]
    assert done.stdout.strip().splitlines()[-1] == str(out)
    manifest = RunDir(out).manifest()
    assert [c["key"] for c in manifest.containers] == ["numpy-cpu"]
    assert manifest.compose == str(installed.data / "compose.yaml")
    (doc_path,) = [p for p in out.glob("*.json") if p.name != "manifest.json"]
    doc = schema.loads(doc_path.read_text())
    assert (doc["status"], doc["framework"], doc["device"]) == ("ok", "numpy", "cpu")
    assert [(r["dim"], r["status"]) for r in doc["results"]] == [(2, "ok"), (2, "ok")]
    image = doc["provenance"]["image"]
    assert (image["tag"], image["id"]) == (numpy_tag_restored, engine.image(numpy_tag_restored).id)
