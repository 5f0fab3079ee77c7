"""The project directory, in this process: which one is used and why, what ``gdbench init`` writes, how a
project gdbench wrote follows a newer gdbench while the user's changes stay, and the one-line refusals.

Real directories and the real CLI entry point; the installed-wheel path (the user data dir) is
tests/test_install.py's.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from orchestrator import project as projects
from orchestrator.images.compose import find_compose, load_compose
from tests.conftest import ROOT, refused


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No project or compose named by the environment, and a user data dir of the test's own."""
    for var in (projects.PROJECT_ENV, projects.COMPOSE_ENV):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def made(tmp_path: Path) -> Path:
    """A project ``gdbench init`` wrote (from the checkout's gdbench_project links and solvers)."""
    dest = tmp_path / "mine"
    projects.init(dest, note=lambda _: None)
    return dest


def test_from_a_directory_that_is_no_project_the_checkout_is_used(tmp_path: Path) -> None:
    found = projects.resolve()
    assert (found.root, found.source) == (ROOT, "the gdbench checkout")
    assert find_compose() == ROOT / "compose.yaml"
    assert not (tmp_path / "data").exists()  # the user data dir is only for a gdbench without a checkout


def test_init_writes_a_whole_project_and_the_current_directory_wins(made: Path, monkeypatch) -> None:
    assert projects.missing_markers(made) == []
    assert (made / "compose.yaml").read_bytes() == (ROOT / "compose.yaml").read_bytes()
    assert (made / "solvers/timing.py").read_bytes() == (ROOT / "solvers/timing.py").read_bytes()
    assert (made / "images/numpy/requirements-cpu.txt").is_file() and (made / "scripts/build_image.py").is_file()
    assert not list(made.rglob("__pycache__")) and not (made / "__init__.py").exists()
    manifest = json.loads((made / projects.MANIFEST).read_text())
    assert manifest["files"]["compose.yaml"] and manifest["digest"]
    # images add installs its lock tool through the recipes' own make file, which a project carries
    dry = subprocess.run(["make", "-n", "-s", "-f", "images/images.mk", "lock-tool"], cwd=made,
                         capture_output=True, text=True, check=False)
    assert dry.returncode == 0, dry.stderr
    monkeypatch.chdir(made / "images")
    assert projects.resolve().source == "the gdbench checkout"  # a subfolder is not the project
    monkeypatch.chdir(made)
    found = projects.resolve()
    assert (found.root, found.source) == (made.resolve(), "the current directory")
    assert load_compose().path == made.resolve() / "compose.yaml"


def test_named_project_beats_the_environment_and_compose_beats_both(made: Path, tmp_path: Path,
                                                                     monkeypatch) -> None:
    monkeypatch.setenv(projects.PROJECT_ENV, str(made))
    assert projects.resolve().source == "$GDBENCH_PROJECT"
    assert projects.resolve(ROOT) == projects.Project(ROOT, "--project")
    alone = tmp_path / "alone.yaml"
    alone.write_text((ROOT / "compose.yaml").read_text())
    assert find_compose(alone, made) == alone
    monkeypatch.setenv(projects.COMPOSE_ENV, str(alone))
    assert find_compose() == alone  # $GDBENCH_COMPOSE still names the file, as before
    assert find_compose(None, made) == made / "compose.yaml"  # --project is given: it wins over the variable
    where = projects.locate()
    assert (where.root, where.source, where.compose) == (tmp_path, "$GDBENCH_COMPOSE", alone)


def test_a_newer_gdbench_refreshes_what_it_wrote_and_keeps_the_users_changes(made: Path) -> None:
    """As if an earlier gdbench had written another build-wheel.sh: that file follows, the user's compose.yaml
    (changed since it was written) stays, a file the user added is never touched."""
    manifest_path = made / projects.MANIFEST
    manifest = json.loads(manifest_path.read_text())
    old_script = b"# an earlier gdbench's script\n"
    (made / "scripts/build-wheel.sh").write_bytes(old_script)
    manifest["files"]["scripts/build-wheel.sh"] = projects._sha(old_script)
    manifest["digest"] = "an earlier gdbench"
    manifest_path.write_text(json.dumps(manifest))
    mine = (made / "compose.yaml").read_text() + "# my own line\n"
    (made / "compose.yaml").write_text(mine)
    (made / "images/numpy/notes.txt").write_text("mine")
    lines: list[str] = []
    kept = projects.materialise(made, note=lines.append)
    assert kept == ["compose.yaml"]
    assert (made / "scripts/build-wheel.sh").read_bytes() == (ROOT / "scripts/build-wheel.sh").read_bytes()
    assert (made / "compose.yaml").read_text() == mine and (made / "images/numpy/notes.txt").read_text() == "mine"
    assert len(lines) == 1 and "refreshed the project directory" in lines[0] and "compose.yaml" in lines[0]
    assert projects.materialise(made, note=lines.append) == [] and len(lines) == 1  # nothing new: no write


def test_init_refuses_a_directory_that_is_not_new_or_empty(made: Path, tmp_path: Path, capsys) -> None:
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "thesis.tex").write_text("")
    assert "is not empty" in refused(capsys, "init", str(busy))
    assert "already a gdbench project" in refused(capsys, "init", str(ROOT))
    assert projects.init(made, note=lambda _: None).root == made.resolve()  # its own project: refreshed, fine


@pytest.mark.parametrize("args", [["images", "list"], ["images", "build", "numpy"], ["doctor"],
                                  ["run", "-f", "numpy", "--dims", "2"]], ids=" ".join)
def test_a_project_that_is_not_one_is_one_line_with_its_fix(args: list[str], tmp_path: Path, capsys,
                                                            monkeypatch) -> None:
    line = refused(capsys, *args, "--project", str(tmp_path / "nope"))
    assert f"--project {tmp_path / 'nope'}: no such directory" in line and f"gdbench init {tmp_path / 'nope'}" in line
    line = refused(capsys, *args, "--project", str(tmp_path))
    assert f"--project {tmp_path} is not a gdbench project: it lacks compose.yaml, images, scripts, solvers" in line
    monkeypatch.setenv(projects.PROJECT_ENV, str(tmp_path / "nope"))
    assert "$GDBENCH_PROJECT" in refused(capsys, *args)


def test_doctor_says_which_project_and_why(made: Path) -> None:
    from orchestrator.hosts.doctor import diagnose

    rows = {c.name: c for c in diagnose(project=str(made))}
    assert (rows["project"].level, rows["project"].detail) == ("ok", f"{made.resolve()} (--project)")
    assert rows["compose file"].detail.startswith(f"{made.resolve() / 'compose.yaml'}: services numpy")
