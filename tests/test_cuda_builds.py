"""A CUDA build as part of an image's identity: names, recipes, compose keys, and real locks against PyPI."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from orchestrator.errors import InvalidOptions
from orchestrator.images import cuda, versions
from orchestrator.images import locks as version_locks
from orchestrator.images.compose import load_compose
from tests.conftest import ROOT, refused


def test_a_build_names_its_tag_service_and_lock() -> None:
    assert cuda.parse_major("13") == cuda.parse_major("cuda13") == cuda.parse_major("13.0") == "13"
    assert cuda.parse_major(None) is None
    assert version_locks.image_tag("jax", "0.10.2", "cuda", cuda="13") == "gdbench/jax:0.10.2-cuda13"
    assert version_locks.image_tag("jax", "0.10.2", "cuda") == "gdbench/jax:0.10.2-cuda"  # the default build
    assert version_locks.service_name("jax", "0.10.2", "cuda", cuda="13") == "jax-0.10.2-cuda13-gpu"
    py313 = versions.BASES["3.13"]
    assert version_locks.lock_stem("jax", "0.10.2", "cuda", py313, "12") == "requirements-0.10.2-cuda12-py3.13"


@pytest.mark.parametrize("bad", ["11", "cuda", "13.x", "14", ""])
def test_an_unknown_cuda_major_is_one_line(bad: str, capsys, tmp_path: Path) -> None:
    compose = tmp_path / "compose.yaml"
    shutil.copy(ROOT / "compose.yaml", compose)
    err = refused(capsys, "images", "add", "jax==0.10.2", "--cuda", bad, "--compose", str(compose))
    assert "--cuda" in err and "12, 13" in err
    assert compose.read_text() == (ROOT / "compose.yaml").read_text()


def test_a_cuda_build_is_never_a_cpu_image_and_an_index_is_a_url(capsys, tmp_path: Path) -> None:
    compose = tmp_path / "compose.yaml"
    shutil.copy(ROOT / "compose.yaml", compose)
    assert "cannot be --flavour cpu" in refused(capsys, "images", "add", "jax==0.10.2", "--cuda", "13", "--flavour",
                                                "cpu", "--compose", str(compose))
    assert "not a URL" in refused(capsys, "images", "add", "torch==2.13.0", "--cuda", "12", "--index-url",
                                  "download.pytorch.org", "--compose", str(compose))


@pytest.mark.parametrize(("framework", "moved"), [
    ("jax", "jax[cuda13]==0.10.2"), ("cupy", "cupy-cuda13x[ctk]==14.2.0"), ("numba", "numba-cuda[cu13]==0.30.4")])
def test_the_recipe_moves_every_spelling_of_the_cuda_major(framework: str, moved: str) -> None:
    text = (ROOT / f"images/{framework}/requirements-cuda.in").read_text()
    out = cuda.recipe_for(text, "13", None)
    assert moved in out.splitlines() and "12" not in "".join(line for line in out.splitlines()
                                                            if not line.startswith("#"))
    assert cuda.recipe_for(text, None, None) == text
    with_index = cuda.recipe_for(text, "13", "https://example.org/simple")
    first = next(line for line in with_index.splitlines() if line.strip() and not line.startswith("#"))
    assert first == "--extra-index-url https://example.org/simple"


def test_a_resolved_build_that_is_not_the_asked_one_says_what_to_do() -> None:
    assert cuda.check_resolved("jax", "0.10.2", "13", "13.0", None) is None
    assert cuda.check_resolved("jax", "0.10.2", None, "12.9", None) is None
    torch = cuda.check_resolved("torch", "2.13.0", "12", "13.0", None)
    assert torch is not None and "--index-url https://download.pytorch.org/whl/cu12" in torch
    tf = cuda.check_resolved("tensorflow", "2.21.0", "13", "12.9", None)
    assert tf == ("tensorflow 2.21.0 resolves CUDA 12.9, not CUDA 13 (PyPI carries no CUDA 13 build of it); "
                  "declare --cuda 12 instead")


def test_frameworks_name_a_build_as_version_plus_cuda() -> None:
    """The project declares jax 0.10.2 twice for CUDA: the flavour's default (CUDA 12) and a cuda13 build."""
    cf = load_compose(ROOT / "compose.yaml", env={})
    built = cf.service_for("jax", "cuda", "0.10.2+cuda13")
    assert (built.name, built.cuda_build, built.version_key) == ("jax-0.10.2-cuda13-gpu", "cuda13", "0.10.2+cuda13")
    assert built.image == "gdbench/jax:0.10.2-cuda13" and built.args["CUDA_VERSION"].startswith("13.")
    default = cf.service_for("jax", "cuda", "0.10.2+cuda12")  # the default jax-gpu is CUDA 12.9
    assert default.name == "jax-gpu" and default.cuda_build is None and default.args["CUDA_VERSION"] == "12.9"
    assert cf.service_for("jax", "cuda", "0.10.2").name == "jax-gpu", "the bare version stays the default build"
    assert cf.framework_versions("jax", "cuda", "all") == ["0.10.2", "0.10.2+cuda13"]
    with pytest.raises(InvalidOptions) as exc:
        cf.service_for("cupy", "cuda", "14.2.0+cuda13")
    assert exc.value.fix == "gdbench images add cupy==14.2.0 --cuda 13"
    args = yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]["jax-0.10.2-cuda13-gpu"]["build"]["args"]
    assert args["CUDA_BUILD"] == "cuda13" and args["LOCK"] == "images/jax/requirements-0.10.2-cuda13.txt"


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A scratch copy of what adding a version touches (as tests/test_versions.py makes it)."""
    for rel in ("Makefile", "compose.yaml", "images", "scripts"):
        src = ROOT / rel
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / rel)
    if (ROOT / ".cache/tools").is_dir():
        (tmp_path / ".cache").mkdir()
        (tmp_path / ".cache/tools").symlink_to(ROOT / ".cache/tools")
    (tmp_path / "pyproject.toml").write_text("")
    return tmp_path


def test_cupy_for_cuda_13_is_declared_beside_its_cuda_12_build(checkout: Path, capfd) -> None:
    """A real lock against PyPI: cupy-cuda13x 14.2.0, its own tag and service, removed byte for byte."""
    from orchestrator.cli.app import main

    compose = checkout / "compose.yaml"
    before = compose.read_text()
    assert main(["images", "add", "cupy==14.2.0", "--cuda", "13", "--compose", str(compose)]) == 0
    out, _ = capfd.readouterr()
    assert "image    gdbench/cupy:14.2.0-cuda13" in out
    assert "run it:   gdbench run --frameworks cupy@14.2.0+cuda13" in out
    svc = load_compose(compose, env={}).service_for("cupy", "cuda", "14.2.0+cuda13")
    lock = (checkout / svc.args["LOCK"]).read_text()
    assert svc.args["CUDA_VERSION"].startswith("13.") and "\ncupy-cuda13x==14.2.0 " in lock
    assert "cupy-cuda12x" not in lock and svc.image == "gdbench/cupy:14.2.0-cuda13"
    assert main(["images", "remove", "cupy==14.2.0", "--cuda", "13", "--compose", str(compose)]) == 0
    assert compose.read_text() == before
    assert not list((checkout / "images/cupy").glob("*cuda13*"))


@pytest.mark.parametrize(("pin", "major", "says"), [
    ("tensorflow==2.21.0", "13", "resolves CUDA 12."),
    ("torch==2.13.0", "12", "--index-url https://download.pytorch.org/whl/cu12"),
])
def test_a_build_pypi_does_not_have_is_refused_and_leaves_nothing(checkout: Path, capfd, pin: str, major: str,
                                                                  says: str) -> None:
    """The lock is resolved for real; the build it resolved is not the asked one: one line, nothing kept."""
    from orchestrator.cli.app import main

    compose = checkout / "compose.yaml"
    before, files = compose.read_text(), sorted((checkout / "images").rglob("*"))
    assert main(["images", "add", pin, "--cuda", major, "--compose", str(compose)]) == 2
    out, err = capfd.readouterr()
    last = err.strip().splitlines()[-1]
    assert out == "" and last.startswith("error: ") and says in last and "Traceback" not in err
    assert compose.read_text() == before and sorted((checkout / "images").rglob("*")) == files


def test_every_cuda_image_says_the_oldest_driver_that_runs_it() -> None:
    from orchestrator.hosts import gpus
    from orchestrator.images.build import image_rows

    assert gpus.oldest_driver("12.9") == "575.51.03" and gpus.oldest_driver("13.0.1") == "580.65.06"
    assert gpus.oldest_driver("11.8") is None and gpus.oldest_driver(None) is None
    rows = {r["service"]: r for r in image_rows(load_compose(ROOT / "compose.yaml", env={}), None)}
    for name, row in rows.items():
        if row["flavour"] == "cuda":  # a CUDA minor newer than NVIDIA's table in gdbench says "?", never a guess
            assert row["min_driver"] == gpus.oldest_driver(row["cuda_version"]), name
            assert (row["min_driver"] is None) == (gpus.cuda_tuple(row["cuda_version"]) not in gpus.OLDEST_DRIVER)
        else:
            assert row["min_driver"] is None and row["cuda_build"] is None, name
