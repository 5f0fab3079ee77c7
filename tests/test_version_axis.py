"""Versions as a sweep axis, without Docker: compose's reading of versioned services and ``x-gdbench``,
``--frameworks FRAMEWORK@VERSION``, the container keys, and the CLI's refusals (one line, exit 2, nothing
written)."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.backends.local import LocalBackend, installed_version
from orchestrator.errors import ComposeError, InvalidOptions
from orchestrator.images.compose import load_compose
from orchestrator.sweep.spec import parse_frameworks, run_key, split_framework
from tests.conftest import ROOT, refused

HEAD = ("x-build: &build\n  context: .\n  dockerfile: images/Dockerfile\n"
        "x-args: &args\n  BASE_IMAGE: gdbench/base:bookworm-py3.11\n")


def svc(name: str, fw: str, version: str, flavour: str = "cpu", base: str | None = None) -> str:
    tag = f"{version}-{flavour}" + ("-py3.13" if base else "")
    return (f"  {name}:\n    image: gdbench/{fw}:{tag}\n    build:\n      <<: *build\n      args:\n"
            f"        <<: *args\n        FRAMEWORK: {fw}\n        FLAVOUR: {flavour}\n"
            f'        FRAMEWORK_VERSION: "{version}"\n' + (f"        BASE_IMAGE: {base}\n" if base else ""))


SERVICES = ("services:\n" + svc("numpy", "numpy", "2.4.6") + svc("numpy-1.26.4", "numpy", "1.26.4")
            + svc("jax", "jax", "0.10.2") + svc("jax-0.11.0-py3.13-gpu", "jax", "0.11.0", "cuda",
                                                "gdbench/base:trixie-py3.13")
            + svc("jax-gpu", "jax", "0.10.2", "cuda") + svc("cupy-gpu", "cupy", "14.2.0", "cuda"))


def write(tmp_path: Path, middle: str = "") -> Path:
    path = tmp_path / "compose.yaml"
    path.write_text(HEAD + middle + SERVICES)
    return path


def test_versioned_services_are_read_from_their_build_args(tmp_path: Path) -> None:
    cf = load_compose(write(tmp_path), env={})
    jax13 = cf.services["jax-0.11.0-py3.13-gpu"]
    assert (jax13.framework, jax13.flavour, jax13.framework_version, jax13.python, jax13.version_key) == (
        "jax", "cuda", "0.11.0", "3.13", "0.11.0-py3.13")
    old = cf.services["numpy-1.26.4"]
    assert (old.framework, old.flavour, old.version_key) == ("numpy", "cpu", "1.26.4")
    assert [s.name for s in cf.versions_of("numpy", "cpu")] == ["numpy-1.26.4", "numpy"]  # oldest first
    assert [s.name for s in cf.versions_of("jax", "cuda")] == ["jax-gpu", "jax-0.11.0-py3.13-gpu"]


def test_the_default_is_x_gdbench_else_the_newest_declared(tmp_path: Path) -> None:
    cf = load_compose(write(tmp_path), env={})
    assert cf.service_for("numpy", "cpu").name == "numpy"  # no x-gdbench: the newest
    assert cf.service_for("jax", "cuda").name == "jax-0.11.0-py3.13-gpu"
    pinned = load_compose(write(tmp_path, 'x-gdbench:\n  default:\n    numpy: "1.26.4"\n    jax: "0.10.2"\n'), env={})
    assert pinned.service_for("numpy", "cpu").name == "numpy-1.26.4"
    assert pinned.service_for("jax", "cuda").name == "jax-gpu"
    assert pinned.service_for("numpy", "cpu", "2.4.6").name == "numpy"
    assert pinned.service_for("jax", "cuda", "0.11.0-py3.13").name == "jax-0.11.0-py3.13-gpu"
    assert pinned.framework_versions("numpy", "cpu", "all") == ["1.26.4", "2.4.6"]
    assert pinned.framework_versions("numpy", "cpu", None) == [None]


def test_the_project_declares_two_numpy_versions_and_its_defaults() -> None:
    cf = load_compose(ROOT / "compose.yaml", env={})
    assert [s.version_key for s in cf.versions_of("numpy", "cpu")] == ["1.26.4", "2.4.6"]
    assert cf.service_for("numpy", "cpu").image == "gdbench/numpy:2.4.6-cpu"
    assert set(cf.defaults) == {"numpy", "numba", "jax", "tensorflow", "torch", "cupy"}


@pytest.mark.parametrize(("middle", "message"), [
    ("x-gdbench: [numpy]\n", "x-gdbench must be a mapping"),
    ("x-gdbench:\n  default: numpy\n", "x-gdbench must be a mapping"),
    ('x-gdbench:\n  default:\n    numpy: "9.9"\n',
     r"default numpy 9\.9 is not declared \(declared: 1\.26\.4, 2\.4\.6\)"),
    ('x-gdbench:\n  default:\n    caffe: "1.0"\n', "names 'caffe', which no service declares"),
    ("x-gdbench:\n  default:\n    numpy: [2]\n", "must be a version string"),
])
def test_malformed_defaults_are_one_line(tmp_path: Path, middle: str, message: str) -> None:
    with pytest.raises(ComposeError, match=message) as info:
        load_compose(write(tmp_path, middle), env={})
    assert "\n" not in info.value.message and info.value.fix


def test_an_undeclared_version_names_the_declared_ones_and_the_add_command(tmp_path: Path) -> None:
    cf = load_compose(write(tmp_path), env={})
    declared = r"numpy 9\.9 \(cpu\) is not declared .*\(declared: 1\.26\.4, 2\.4\.6\)"
    with pytest.raises(InvalidOptions, match=declared) as e:
        cf.framework_versions("numpy", "cpu", "9.9")
    assert e.value.fix == "gdbench images add numpy==9.9"
    with pytest.raises(InvalidOptions) as e:
        cf.service_for("jax", "cuda", "0.4.38-py3.13")
    assert e.value.fix == "gdbench images add jax==0.4.38 --flavour cuda --python 3.13"
    with pytest.raises(InvalidOptions, match="declares no cuda version of numpy"):
        cf.framework_versions("numpy", "cuda", "all")


@pytest.mark.parametrize(("text", "message"), [
    ("numpy@", "'' is not a version"), ("numpy@x.y", "'x.y' is not a version"), ("nope@1", "unknown framework 'nope'"),
    ("@all", "unknown framework '@all'"), ("numpy,nope", "unknown framework 'nope'"),
])
def test_bad_frameworks_values(text: str, message: str) -> None:
    with pytest.raises(InvalidOptions, match=message):
        parse_frameworks(text)


def test_framework_tokens_and_keys() -> None:
    assert parse_frameworks("numpy@1.26.4,numpy@2.4.6,jax,numpy@1.26.4") == ["numpy@1.26.4", "numpy@2.4.6", "jax"]
    assert split_framework("jax@0.11.0-py3.13") == ("jax", "0.11.0-py3.13")
    assert split_framework("numpy@all") == ("numpy", "all") and split_framework("jax") == ("jax", None)
    assert run_key("numpy", "cpu") == "numpy-cpu"
    assert run_key("numpy", "cpu", "1.26.4") == "numpy@1.26.4-cpu"
    assert run_key("numpy", "cpu", "1.26.4", "gpu1") == "numpy@1.26.4-cpu@gpu1"


def test_the_local_backend_runs_only_the_installed_version() -> None:
    from orchestrator.hosts.gpus import HostGpus

    backend = LocalBackend(HostGpus(gpus=[], error="none"))
    here = installed_version("numpy")
    assert here and backend.framework_versions("numpy", "cpu", here) == [here]
    assert backend.framework_versions("numpy", "cpu", "all") == [None]
    with pytest.raises(InvalidOptions, match=rf"runs the numpy installed in this environment \({here}\), not "
                                             r"numpy@1\.0\.0") as e:
        backend.framework_versions("numpy", "cpu", "1.0.0")
    assert "--backend docker" in (e.value.fix or "")


@pytest.mark.parametrize(("args", "message"), [
    (["images", "add", "numpy"], "expected FRAMEWORK==VERSION"),
    (["images", "add", "caffe==1.0"], "unknown framework 'caffe'"),
    (["images", "add", "numpy==1.x"], "is not a version number"),
    (["images", "add", "numpy==2.4.6", "--flavour", "cuda"], "numpy has no CUDA flavour"),
    (["images", "add", "numpy==2.4.6", "--python", "3.9"], "--python 3.9: no such base"),
    (["images", "add", "numpy==9.9.9"], "numpy 9.9.9 does not exist on PyPI"),  # asks PyPI itself
    (["images", "add", "numpy==2.4.6"], "already declared"),
    (["images", "remove", "numpy==1.0.0"], "is not a version added to compose.yaml"),
    (["run", "--backend", "local", "--frameworks", "numpy@"], "'' is not a version"),
    (["run", "--backend", "local", "--frameworks", "nope@1"], "unknown framework 'nope'"),
    (["run", "--backend", "local", "--frameworks", "numpy@1.0.0", "--devices", "cpu"], "runs the numpy installed"),
])
def test_cli_refusals_are_one_line_exit_2_and_leave_compose_alone(tmp_path: Path, args: list[str], message: str,
                                                                  capsys, monkeypatch) -> None:
    before = (ROOT / "compose.yaml").read_bytes()
    files = sorted((ROOT / "images").rglob("*"))
    monkeypatch.chdir(tmp_path)  # no ./compose.yaml nor ./hosts.toml of the checkout is found by accident
    where = ["--compose", str(ROOT / "compose.yaml")] if args[0] == "images" else ["--out", str(tmp_path / "run")]
    assert message in refused(capsys, *args, *where)
    assert (ROOT / "compose.yaml").read_bytes() == before and sorted((ROOT / "images").rglob("*")) == files
    assert not list((tmp_path / "run").glob("*.json"))  # no manifest, no document: nothing was started


def test_the_planner_expands_versions_and_runs_each_image_once(tmp_path: Path) -> None:
    """``numpy@all,numpy``: every declared numpy once (the bare name is the default, already in @all)."""
    from orchestrator.sweep.planner import containers
    from orchestrator.sweep.spec import SweepOptions

    class ComposeOnly:  # the planner's view of a backend: only the compose side is asked here
        def __init__(self, path: Path) -> None:
            self.compose = load_compose(path, env={})

        def framework_versions(self, fw: str, flavour: str, asked: str | None) -> list[str | None]:
            return self.compose.framework_versions(fw, flavour, asked)

        def image_tag(self, fw: str, flavour: str, version: str | None = None) -> str:
            return self.compose.service_for(fw, flavour, version).image

    backend = ComposeOnly(write(tmp_path))
    opts = SweepOptions(frameworks=["numpy@all", "numpy", "jax@0.11.0-py3.13"], devices=["cpu", "gpu"])
    notes: list[str] = []
    with pytest.raises(InvalidOptions, match=r"jax 0\.11\.0-py3\.13 \(cpu\) is not declared"):
        containers(opts, backend, gpu_possible=True, notes=notes)  # a CUDA-only version asked on the CPU too
    opts = SweepOptions(frameworks=["numpy@all", "numpy", "jax@0.11.0-py3.13"], devices=["gpu"])
    assert containers(opts, backend, gpu_possible=True, notes=notes) == [
        ("jax", "0.11.0-py3.13", "gpu", "cuda")]
    opts = SweepOptions(frameworks=["numpy@all", "numpy"], devices=["cpu"])
    assert containers(opts, backend, gpu_possible=True, notes=[]) == [
        ("numpy", "1.26.4", "cpu", "cpu"), ("numpy", "2.4.6", "cpu", "cpu")]
