"""Adding a framework version: PyPI's real answers, the lock it resolves, and compose.yaml edited as text.

These ask PyPI itself (the project's locks must resolve against the real index), so they need the network
that `make test` already needs for its wheelhouse.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from orchestrator.errors import ComposeError, GdbenchError, InvalidOptions
from orchestrator.images import compose_edit, versions
from orchestrator.images import locks as version_locks
from tests.conftest import ROOT


@pytest.mark.parametrize(("text", "message"), [
    ("numpy", "expected FRAMEWORK==VERSION"),
    ("numpy==", "expected FRAMEWORK==VERSION"),
    ("pandas==2.0", "unknown framework 'pandas'"),
    ("numpy==latest", "is not a version number"),
])
def test_a_malformed_pin_is_one_line(text: str, message: str) -> None:
    with pytest.raises(InvalidOptions, match=message):
        versions.parse_pin(text)


def test_parse_pin_normalises_the_name() -> None:
    assert versions.parse_pin(" NumPy==1.26.4 ") == ("numpy", "1.26.4")


@pytest.mark.parametrize(("filename", "python", "fits"), [
    ("numpy-1.26.4-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl", "3.11", True),
    ("numpy-1.26.4-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl", "3.13", False),
    ("numpy-1.26.4-cp311-cp311-musllinux_1_1_x86_64.whl", "3.11", False),
    ("numpy-1.26.4-cp311-cp311-manylinux_2_17_aarch64.manylinux2014_aarch64.whl", "3.11", False),
    ("jaxlib-0.10.2-cp313-cp313t-manylinux_2_27_x86_64.whl", "3.13", False),  # free-threaded build
    ("foo-1.0-cp39-abi3-manylinux_2_28_x86_64.whl", "3.11", True),
    ("foo-1.0-cp312-abi3-manylinux_2_28_x86_64.whl", "3.11", False),
    ("foo-1.0-cp311-cp311-manylinux_2_39_x86_64.whl", "3.11", False),  # newer glibc than bookworm's 2.36
    ("foo-1.0-py3-none-any.whl", "3.13", True),
    ("not-a-wheel.tar.gz", "3.11", False),
])
def test_wheel_fits_reads_tags(filename: str, python: str, fits: bool) -> None:
    assert versions.wheel_fits(filename, versions.BASES[python]) is fits


def test_an_existing_version_that_fits_the_default_base() -> None:
    pin = versions.check_pin("numpy", "1.26.4")
    assert pin.base.python == "3.11" and pin.wheels
    assert all(versions.wheel_fits(w, pin.base) for w in pin.wheels)


def test_a_version_that_does_not_exist_names_the_newest() -> None:
    with pytest.raises(versions.VersionRefused, match=r"numpy 99\.0 does not exist on PyPI") as info:
        versions.check_pin("numpy", "99.0")
    assert info.value.fix and info.value.fix.startswith("gdbench images add numpy==")


def test_a_version_without_a_wheel_for_the_python_says_which_works() -> None:
    # numpy 1.26.4 predates Python 3.13: it has no cp313 wheel.
    with pytest.raises(versions.VersionRefused, match=r"no x86_64 Linux wheel for Python 3\.13.*--python 3\.11"):
        versions.check_pin("numpy", "1.26.4", python="3.13")


def test_a_version_that_needs_a_newer_python_is_placed_on_the_newer_base() -> None:
    # jaxlib 0.11.0 requires Python >= 3.12: the default base cannot take it, trixie's 3.13 can.
    assert versions.check_pin("jax", "0.11.0").base.python == "3.13"
    with pytest.raises(versions.VersionRefused, match=r"requires Python >=3\.12\): add it with --python 3\.13"):
        versions.check_pin("jax", "0.11.0", python="3.11")


def test_a_cuda_flavour_for_a_cpu_only_framework_is_refused() -> None:
    with pytest.raises(versions.VersionRefused, match="numpy has no CUDA flavour"):
        versions.check_pin("numpy", "2.4.6", flavour="cuda")


def test_unknown_python_and_flavour_are_one_line() -> None:
    with pytest.raises(InvalidOptions, match="no such base"):
        versions.check_pin("numpy", "2.4.6", python="2.7")
    with pytest.raises(InvalidOptions, match="unknown flavour"):
        versions.check_pin("numpy", "2.4.6", flavour="rocm")


@pytest.mark.parametrize("lock", sorted((ROOT / "images").glob("*/requirements-cuda.txt")))
def test_cuda_version_is_read_from_what_the_lock_resolved(lock: Path) -> None:
    cuda = versions.cuda_from_lock(lock.read_text())
    assert cuda is not None and cuda.count(".") == 1
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]
    declared = compose[f"{lock.parent.name}-gpu"]["build"]["args"]["CUDA_VERSION"]
    assert cuda == declared


def test_cuda_from_a_cpu_lock_is_none() -> None:
    assert versions.cuda_from_lock((ROOT / "images/numpy/requirements-cpu.txt").read_text()) is None


def test_requirements_in_moves_every_pin_of_the_recipe() -> None:
    pin = versions.Pin("jax", "0.9.2", "cuda", versions.BASES["3.11"], ())
    text = version_locks.requirements_in(pin, (ROOT / "images/jax/requirements-cuda.in").read_text(), "0.10.2")
    assert "jax[cuda12]==0.9.2" in text and "jaxlib==0.9.2" in text and "0.10.2\n" not in text
    assert text.startswith("# jax 0.9.2 (cuda, Python 3.11")
    torch = versions.Pin("torch", "2.12.0", "cpu", versions.BASES["3.11"], ())
    assert "torch==2.12.0+cpu" in version_locks.requirements_in(
        torch, (ROOT / "images/torch/requirements-cpu.in").read_text(), "2.13.0")


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A scratch copy of what adding a version touches: compose.yaml, images/, scripts/, the Makefile."""
    import shutil

    for rel in ("Makefile", "compose.yaml", "images", "scripts"):
        src = ROOT / rel
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / rel)
    if (ROOT / ".cache/tools").is_dir():  # reuse the lock tool if this checkout has it
        (tmp_path / ".cache").mkdir()
        (tmp_path / ".cache/tools").symlink_to(ROOT / ".cache/tools")
    (tmp_path / "pyproject.toml").write_text("")
    return tmp_path


def test_lock_pin_resolves_a_hash_lock_against_pypi(checkout: Path) -> None:
    """A real resolution with the project's pinned uv, in a scratch copy of the images tree."""
    tmp_path = checkout
    pin = versions.check_pin("numpy", "1.26.4")
    try:
        in_path, lock_path = version_locks.lock_pin(pin, tmp_path, on_line=lambda _: None)
    except GdbenchError as exc:
        pytest.fail(str(exc))
    text = lock_path.read_text()
    assert in_path.name == "requirements-1.26.4-cpu.in" and lock_path.parent == tmp_path / "images/numpy"
    assert "\nnumpy==1.26.4 \\\n    --hash=sha256:" in text and "--python-version 3.11" in text
    assert "numpy==2.4.6" not in text


def test_add_then_remove_a_version_leaves_the_checkout_as_it_was(checkout: Path) -> None:
    compose = checkout / "compose.yaml"
    before = compose.read_text()
    added = version_locks.add_pin("numpy", "2.4.6", "cpu", "3.13", checkout, compose, on_line=lambda _: None)
    # The default numpy is 2.4.6 on Python 3.11: the same version on 3.13 must get its own name and tag.
    assert (added.service, added.image) == ("numpy-2.4.6-py3.13", "gdbench/numpy:2.4.6-cpu-py3.13")
    args = yaml.safe_load(compose.read_text())["services"][added.service]["build"]["args"]
    assert args["BASE_IMAGE"] == "gdbench/base:trixie-py3.13" and args["LOCK"] == added.lock.relative_to(
        checkout).as_posix()
    assert "--python-version 3.13 --python-platform x86_64-manylinux_2_40" in added.lock.read_text()
    with pytest.raises(InvalidOptions, match="already declared"):
        version_locks.add_pin("numpy", "2.4.6", "cpu", "3.13", checkout, compose, on_line=lambda _: None)
    assert version_locks.remove_pin("numpy", "2.4.6", "cpu", "3.13", checkout, compose) == added.service
    assert compose.read_text() == before and not added.lock.exists()
    assert not added.lock.with_suffix(".in").exists()


def test_a_refused_add_changes_nothing(checkout: Path) -> None:
    compose = checkout / "compose.yaml"
    before, files = compose.read_text(), sorted((checkout / "images").rglob("*"))
    with pytest.raises(versions.VersionRefused):
        version_locks.add_pin("jax", "0.11.0", "cpu", "3.11", checkout, compose, on_line=lambda _: None)
    with pytest.raises(InvalidOptions, match="not a version added"):
        version_locks.remove_pin("numpy", "1.0.0", "cpu", None, checkout, compose)
    assert compose.read_text() == before and sorted((checkout / "images").rglob("*")) == files


# 1.25.2: a version compose.yaml does not declare (1.26.4 is).
SERVICE = dict(name="numpy-1.25.2", image="gdbench/numpy:1.25.2-cpu", framework="numpy", version="1.25.2",
               flavour="cpu", lock="images/numpy/requirements-1.25.2-cpu.txt", base_image=None, cuda_version=None)


def test_add_then_remove_gives_compose_back_byte_for_byte() -> None:
    text = (ROOT / "compose.yaml").read_text()
    added = compose_edit.add_service(text, "numpy-1.25.2", compose_edit.service_block(**SERVICE))
    assert added.startswith(text) and "# The gdbench images" in added  # comments kept
    services = yaml.safe_load(added)["services"]
    assert services["numpy-1.25.2"]["build"]["args"]["FRAMEWORK_VERSION"] == "1.25.2"
    assert services["numpy-1.25.2"]["build"]["args"]["FLAVOUR"] == "cpu"  # the cpu anchor merged
    assert compose_edit.remove_service(added, "numpy-1.25.2") == text


def test_a_cuda_block_carries_the_gpu_reservation_and_its_cuda() -> None:
    text = (ROOT / "compose.yaml").read_text()
    block = compose_edit.service_block(**{**SERVICE, "name": "jax-0.9.2-gpu", "image": "gdbench/jax:0.9.2-cuda",
                                          "framework": "jax", "version": "0.9.2", "flavour": "cuda",
                                          "cuda_version": "12.8", "base_image": "gdbench/base:trixie-py3.13"})
    svc = yaml.safe_load(compose_edit.add_service(text, "jax-0.9.2-gpu", block))["services"]["jax-0.9.2-gpu"]
    assert svc["profiles"] == ["gpu"] and svc["build"]["args"]["CUDA_VERSION"] == "12.8"
    assert svc["build"]["args"]["BASE_IMAGE"] == "gdbench/base:trixie-py3.13"


def test_removing_a_hand_written_service_keeps_the_others_and_the_comments() -> None:
    text = (ROOT / "compose.yaml").read_text()
    out = compose_edit.remove_service(text, "jax")
    assert "jax" not in yaml.safe_load(out)["services"] and "jax-gpu" in yaml.safe_load(out)["services"]
    assert out.count("\n#") == text.count("\n#")


def test_compose_edit_bad_input() -> None:
    text = (ROOT / "compose.yaml").read_text()
    with pytest.raises(ComposeError, match="already declares service 'numpy'"):
        compose_edit.add_service(text, "numpy", compose_edit.service_block(**SERVICE))
    with pytest.raises(ComposeError, match=r"declares no service 'numpy-0\.1'"):
        compose_edit.remove_service(text, "numpy-0.1")
    with pytest.raises(ComposeError, match="no top-level services"):
        compose_edit.service_names("x-build: {}\n")
    with pytest.raises(ComposeError, match="top-level key after services"):
        compose_edit.service_names(text + "volumes:\n  data: {}\n")


def test_the_tensorflow_cpu_recipe_is_found_by_its_distribution_name() -> None:
    """TF's CPU recipe pins tensorflow-cpu, not tensorflow: adding a TF version starts from it."""
    text = (ROOT / "images/tensorflow/requirements-cpu.in").read_text()
    assert version_locks._pinned_version(text, "tensorflow") == "2.21.0"
    pin = versions.Pin("tensorflow", "2.17.1", "cpu", versions.BASES["3.11"], ())
    assert "tensorflow-cpu==2.17.1" in version_locks.requirements_in(pin, text, "2.21.0")


# ------------------------------------------------------------------------- the framework facts, gdbench images


def test_the_registry_holds_each_frameworks_facts() -> None:
    """The wheel PyPI is asked about, the distributions that name the version and the plot colour live in
    solvers.registry alone: a framework added there (cupy) needs no side table elsewhere."""
    from orchestrator.results import plots
    from solvers import registry

    assert not hasattr(versions, "WHEEL_CARRIER") and not hasattr(plots, "FRAMEWORK_COLORS")
    entries = registry.REGISTRY.values()
    assert registry.REGISTRY["jax"].wheel == "jaxlib" and registry.REGISTRY["cupy"].wheel == "cupy-cuda12x"
    assert "tensorflow-cpu" in registry.REGISTRY["tensorflow"].dists
    colors = [e.color for e in entries]
    assert len(set(colors)) == len(colors) and not set(colors) & set(plots.PALETTE)
    assert plots.line_style(("cupy", "gpu", "fused"))["color"] == registry.REGISTRY["cupy"].color


def test_images_add_cupy_declares_its_cuda_image_without_a_traceback(checkout: Path, capfd) -> None:
    """cupy has no CPU image: its version is added as a cuda service, from cupy-cuda12x's wheels on PyPI."""
    from orchestrator.cli.app import main
    from orchestrator.images.compose import load_compose

    compose = checkout / "compose.yaml"
    before = compose.read_text()
    rc = main(["images", "add", "cupy==14.0.0", "--compose", str(compose)])
    out, err = capfd.readouterr()
    assert "Traceback" not in err and rc == 0, err
    assert "service  cupy-14.0.0-gpu" in out and "image    gdbench/cupy:14.0.0-cuda" in out
    svc = load_compose(compose, env={}).services["cupy-14.0.0-gpu"]
    assert (svc.framework, svc.flavour, svc.framework_version) == ("cupy", "cuda", "14.0.0")
    assert svc.args["CUDA_VERSION"].startswith("12.") and "\ncupy-cuda12x==14.0.0 \\\n" in (
        checkout / svc.args["LOCK"]).read_text()
    for args in (["cupy==14.0.0", "--flavour", "cpu"], ["cupy==99.0"]):
        assert main(["images", "add", *args, "--compose", str(compose)]) != 0
        out, err = capfd.readouterr()
        lines = err.strip().splitlines()
        assert lines[-1].startswith("error: cupy") and "fix:" in lines[-1] and "Traceback" not in err
    assert main(["images", "remove", "cupy==14.0.0", "--compose", str(compose)]) == 0
    assert compose.read_text() == before


def test_images_build_flag_is_the_declared_build(monkeypatch, capfd) -> None:
    """``gdbench images --build`` builds through the same path as ``gdbench images build`` (the build script
    with its lock checks and wheelhouse), then lists; an unknown name builds nothing."""
    import json

    from orchestrator.backends.docker.engine import DockerEngine
    from orchestrator.cli.app import main
    from orchestrator.images import build

    built: list[list[str]] = []
    monkeypatch.setattr(build, "build_declared", lambda cf, services, no_cache=False: built.append(
        [s.name for s in services]))

    class NoImages:
        def image(self, tag: str) -> None:
            return None

    monkeypatch.setattr(DockerEngine, "connect", classmethod(lambda cls, *a, **kw: NoImages()))
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    assert main(["images", "--build", "numpy", "--json"]) == 0
    (row,) = json.loads(capfd.readouterr().out)
    assert built == [["numpy"]] and row["service"] == "numpy" and not row["built"]
    assert main(["images", "build", "numpy"]) == 0 and built[-1] == ["numpy"]
    assert main(["images", "--build", "caffe"]) == 2 and len(built) == 2
    assert "unknown image 'caffe'" in capfd.readouterr().err
    assert main(["images", "--build", "numpy", "--docker-host", "tcp://elsewhere:2376"]) == 2 and len(built) == 2
    assert "DOCKER_HOST=tcp://elsewhere:2376 gdbench images --build" in capfd.readouterr().err
