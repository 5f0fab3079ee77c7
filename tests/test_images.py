"""The framework images: locks, compose.yaml, and real containers run the way the orchestrator runs them.

The Docker tests build each CPU image through its make target (a no-op when `make images` already ran,
as in CI) and run ``python -m solvers`` inside it with a read-only root, a tmpfs /tmp, no network, no
capabilities and no-new-privileges.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

from solvers import registry, schema
from tests.conftest import ROOT, SMALL
from tests.imagechecks import (
    added_services,
    check_cuda_lock,
    check_lock,
    compose,
    framework_pin,
    lock_path,
    pins,
    raw_compose,
)

FRAMEWORKS = ("numpy", "numba", "jax", "tensorflow", "torch")
GPU_FRAMEWORKS = ("jax", "tensorflow", "torch")
#: Every CUDA service compose declares: the three above plus numba (numba-cuda) and cupy (GPU only).
CUDA_SERVICES = (*(f"{f}-gpu" for f in GPU_FRAMEWORKS), "numba-gpu", "cupy-gpu")
# The orchestrator's hardening, spelled as docker run flags. /tmp needs `exec`: Docker mounts a tmpfs noexec
# unless told otherwise, and torch.compile loads the kernels it builds there.
HARDENED = ["--read-only", "--tmpfs", "/tmp:rw,exec,nosuid,nodev,size=512m", "--network", "none", "--cap-drop", "ALL",
            "--security-opt", "no-new-privileges"]
OCI = ("title", "version", "revision", "created", "source")


# ------------------------------------------------------------------------------------------ locks, compose
LOCKS = [(f, "cpu") for f in FRAMEWORKS] + [(f, "cuda") for f in GPU_FRAMEWORKS]


@pytest.mark.parametrize(("framework", "flavour"), LOCKS)
def test_lock_pins_everything_with_hashes(framework: str, flavour: str) -> None:
    """Every requirement exact and hashed, the solver core included, and a header saying why that version."""
    check_lock(framework, flavour)


def test_cuda_locks_pin_the_cuda_stack() -> None:
    jax, tf, torch = (pins(lock_path(f, "cuda")) for f in GPU_FRAMEWORKS)
    assert jax["jax-cuda12-plugin"] == jax["jax"] and "nvidia-cudnn-cu12" in jax
    assert tf["tensorflow"] == "2.21.0" and "nvidia-cudnn-cu12" in tf
    assert torch["torch"] == framework_pin("torch", "cpu").split("+")[0], "CPU and CUDA torch are one release"
    assert "triton" in torch and "nvidia-cuda-runtime" in torch
    assert framework_pin("torch", "cpu").endswith("+cpu"), "the CPU image takes PyTorch's CPU build"


@pytest.mark.parametrize("framework", GPU_FRAMEWORKS)
def test_cuda_lock_resolves_to_files_on_pypi(framework: str) -> None:
    """CI builds no CUDA image (3-5 GB each); instead every pin of the CUDA lock must name a file on PyPI that
    the image can install and whose sha256 the lock lists, which is exactly what the image build needs."""
    check_cuda_lock(lock_path(framework, "cuda"))


@pytest.mark.parametrize("lock", sorted(ROOT.glob("images/*/requirements-*-cuda*.txt")),
                         ids=lambda p: f"{p.parent.name}/{p.name}")
def test_added_cuda_lock_resolves_to_files_on_pypi(lock: Path) -> None:
    """The same for every CUDA version added with ``gdbench images add --flavour cuda`` or ``--cuda N``."""
    check_cuda_lock(lock)


def test_compose_declares_every_image_consistently_with_the_locks() -> None:
    cf = compose()
    from orchestrator.images.versions import BASES

    expected = {*FRAMEWORKS, *CUDA_SERVICES}
    assert set(cf.services) - added_services() == expected
    for svc in cf.services.values():
        args = svc.build.args
        fw, flavour = svc.framework, svc.flavour
        assert (args["FRAMEWORK"], args["FLAVOUR"]) == (fw, flavour)
        lock = ROOT / args["LOCK"] if "LOCK" in args else lock_path(fw, flavour)
        assert lock.is_file() and lock.with_suffix(".in").is_file(), svc.name
        version = framework_pin(fw, flavour, lock)
        suffix = "" if svc.python == "3.11" else f"-py{svc.python}"
        assert args["FRAMEWORK_VERSION"] == version
        build = svc.cuda_build or flavour  # a named CUDA build (images add --cuda 13) tags itself cuda13
        assert svc.image == f"gdbench/{fw}:{version.split('+')[0]}-{build}{suffix}" == (
            f"gdbench/{fw}:{args['IMAGE_VERSION']}")
        assert svc.build.context == ROOT and svc.build.dockerfile == "images/Dockerfile"
        assert args["BASE_IMAGE"] == BASES[svc.python].tag
        runtime = [v for k, v in pins(lock).items()
                   if re.fullmatch(r"nvidia-cuda-runtime(-cu\d+)?", k)]
        assert args["CUDA_VERSION"] == (".".join(runtime[0].split(".")[:2]) if runtime else "")
        assert svc.profiles == (("gpu",) if flavour == "cuda" else ())


def test_gpu_services_reserve_gpus_the_compose_way() -> None:
    services = raw_compose()["services"]
    for fw in GPU_FRAMEWORKS:
        devices = services[f"{fw}-gpu"]["deploy"]["resources"]["reservations"]["devices"]
        assert devices == [{"driver": "nvidia", "capabilities": ["gpu"], "count": "all"}]
        assert "deploy" not in services[fw]


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose (v1) not installed")
def test_docker_compose_accepts_the_file() -> None:
    done = subprocess.run(["docker-compose", "--profile", "gpu", "config", "--services"], cwd=ROOT,
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert set(done.stdout.split()) == set(compose().services)  # every declared service, added versions too


# ------------------------------------------------------------------------------------------------- docker
def _docker_up() -> bool:
    return shutil.which("docker") is not None and subprocess.run(
        ["docker", "info"], capture_output=True, check=False).returncode == 0


@pytest.fixture(scope="session")
def docker() -> None:
    if not _docker_up():
        if os.environ.get("CI"):
            pytest.fail("CI needs a running Docker daemon (make docker)")
        pytest.skip("no Docker daemon (make docker starts one)")


@cache
def _built(framework: str) -> str:
    """Build (or find up to date) the CPU image through its make target; returns the tag."""
    done = subprocess.run(["make", "-s", f"image-{framework}", f"PY={sys.executable}"], cwd=ROOT,
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"make image-{framework} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return compose().service(framework).image


@pytest.fixture(params=FRAMEWORKS)
def image(request: pytest.FixtureRequest, docker: None) -> tuple[str, str]:
    framework = request.param
    return framework, _built(framework)


def labels(tag: str) -> dict[str, str]:
    out = subprocess.run(["docker", "image", "inspect", "-f", "{{json .Config.Labels}}", tag],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def docker_run(tag: str, *args: str, entrypoint: str | None = None, flags: list[str] | None = None,
               timeout: float = 600) -> subprocess.CompletedProcess[str]:
    cmd = ["docker", "run", "--rm", *(flags if flags is not None else HARDENED)]
    if entrypoint:
        cmd += ["--entrypoint", entrypoint]
    return subprocess.run([*cmd, tag, *args], capture_output=True, text=True, timeout=timeout, check=False)


@pytest.mark.docker
def test_image_solves_correctly_under_hardening(image: tuple[str, str]) -> None:
    """Every CPU variant the plugin offers passes the correctness checks inside the image, read-only,
    offline and unprivileged, with the framework version the lock pins."""
    framework, tag = image
    listed = docker_run(tag, "list")
    assert listed.returncode == 0, listed.stderr[-2000:]
    info = json.loads(listed.stdout)[framework]
    assert info["installed"], info
    variants = info["variants"]["cpu"]
    # Every variant the plugin declares, extras (torch's compiled) included: an image missing what a variant
    # needs (numba's SciPy, torch's compiler) would drop one.
    declared = registry.load(framework).variants["cpu"]
    assert {"fused", "loop"} <= set(variants) and sorted(variants) == sorted(declared), \
        f"{framework} image offers only {variants}"
    done = docker_run(tag, "run", "--framework", framework, "--variant", ",".join(variants), *SMALL)
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stderr[-4000:]}"
    doc = schema.loads(done.stdout)
    assert (doc["status"], doc["framework"], doc["device"]) == ("ok", framework, "cpu")
    rows = {(r["dim"], r["variant"]): r for r in doc["results"]}
    assert set(rows) == {(d, v) for d in (2, 5) for v in variants}
    for row in rows.values():
        assert row["status"] == "ok", row
        assert row["max_rel_error"] <= row["tolerance"], row
        assert row["time_per_iter_s"] > 0 and len(row["repeat_times_s"]) == 2
    prov = doc["provenance"]
    lab = labels(tag)
    # The version that ran is the one the lock pins and the label advertises.
    assert prov["framework"]["version"] == info["version"] == framework_pin(framework, "cpu") == \
        lab["io.gdbench.framework.version"]
    assert prov["python"]["version"] == lab["io.gdbench.python.version"]
    assert prov["python"]["version"].startswith("3.11.")
    assert prov["python"]["executable"] == "/opt/venv/bin/python"
    if framework == "numba":  # OpenMP, as on a normal host, not the workqueue fallback (libgomp1 is in the image)
        assert prov["framework"]["threading_layer"] == "omp"


@pytest.mark.docker
def test_image_metadata_user_and_contents(image: tuple[str, str]) -> None:
    framework, tag = image
    lab = labels(tag)
    for key in OCI:
        assert f"org.opencontainers.image.{key}" in lab, key
    assert lab["org.opencontainers.image.title"] == f"gdbench-{framework}"
    assert tag.endswith(":" + lab["org.opencontainers.image.version"])
    assert re.match(r"^[0-9a-f]{40}(-dirty)?$", lab["org.opencontainers.image.revision"])
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", lab["org.opencontainers.image.created"])
    assert (lab["io.gdbench.framework"], lab["io.gdbench.flavour"], lab["io.gdbench.cuda.version"]) == (
        framework, "cpu", "")
    user = subprocess.run(["docker", "image", "inspect", "-f", "{{.Config.User}}", tag], capture_output=True,
                          text=True, check=True).stdout.strip()
    assert user == "10001:10001"
    probe = (
        "import importlib.util as u, json, os, shutil, glob; print(json.dumps({"
        "'uid': os.getuid(), 'pip': u.find_spec('pip') is not None, 'gcc': shutil.which('gcc'),"
        "'gxx': shutil.which('g++'), 'debs': glob.glob('/var/cache/apt/archives/*.deb') + glob.glob('/tmp/**/*.deb'),"
        "'wheels': [w for d in ('/opt', '/var', '/tmp', '/root', '/home')"
        "           for w in glob.glob(d + '/**/*.whl', recursive=True)],"
        "'tmp': os.listdir('/tmp'),"
        "'solvers': u.find_spec('solvers').origin}))"
    )
    done = docker_run(tag, "-c", probe, entrypoint="python")
    assert done.returncode == 0, done.stderr
    facts = json.loads(done.stdout)
    assert facts["uid"] == 10001
    assert not facts["pip"] and not facts["debs"] and not facts["wheels"], "installers and caches stay out"
    assert facts["tmp"] == [], "nothing of the build is left in /tmp"
    assert facts["solvers"].startswith("/opt/venv/lib/python3.11/site-packages/solvers/")
    # A compiler only where the framework compiles C/C++ at run time (torch.compile's CPU backend, Triton).
    if framework == "torch":
        assert facts["gcc"] and facts["gxx"]
    else:
        assert facts["gcc"] is None and facts["gxx"] is None


@pytest.mark.docker
def test_torch_compile_builds_and_loads_kernels_inside_its_image(docker: None) -> None:
    """What the torch image keeps g++ for: inductor writes C++, g++ builds it into /tmp and the process loads
    it, in the hardened container. (The solver's ``fused`` variant measured eager ops faster on CPU and does
    not call torch.compile; see solvers/frameworks/torch_.py.)"""
    tag = _built("torch")
    script = (
        "import glob, torch\n"
        "f = torch.compile(lambda x, w, b: x @ w - b, backend='inductor', fullgraph=True)\n"
        "x, w = torch.randn(64, 8, dtype=torch.float64), torch.randn(8, dtype=torch.float64)\n"
        "assert torch.allclose(f(x, w, 1.0), x @ w - 1.0)\n"
        "print(len(glob.glob('/tmp/torchinductor/**/*.so', recursive=True)))\n"
    )
    done = docker_run(tag, "-c", script, entrypoint="python")
    assert done.returncode == 0, done.stderr[-4000:]
    assert int(done.stdout.split()[-1]) >= 1, "inductor built no shared object"


@pytest.mark.docker
def test_cuda_flavour_builds_up_to_the_wheel_install(docker: None) -> None:
    """The CUDA flavour's Dockerfile path (args, base, system stage) builds here; its wheels are not fetched."""
    _built("torch")  # the wheel, the debhouse and the base exist after any CPU build of torch
    svc = compose().service("torch-gpu")
    cmd = ["docker", "build", "-q", "--target", "system", "-f", "images/Dockerfile", "-t", "gdbench/test:cuda-system"]
    for key, value in svc.build.args.items():
        cmd += ["--build-arg", f"{key}={value}"]
    tar = subprocess.Popen(["tar", "-c", "images/Dockerfile", "images/system-delta.sh", ".cache/debhouse/torch"],
                           cwd=ROOT, stdout=subprocess.PIPE)
    done = subprocess.run([*cmd, "-"], stdin=tar.stdout, capture_output=True, text=True,
                          env={**os.environ, "DOCKER_BUILDKIT": "0"}, check=False)
    tar.wait()
    assert done.returncode == 0, done.stderr[-3000:]
    out = docker_run("gdbench/test:cuda-system", "-c", "ls /delta/usr/bin/g++ /delta/etc/passwd", entrypoint="sh",
                     flags=["--network", "none"])
    subprocess.run(["docker", "rmi", "gdbench/test:cuda-system"], capture_output=True, check=False)
    assert out.returncode == 0, out.stderr


@pytest.mark.docker
def test_context_dot_build_makes_the_same_image(docker: None) -> None:
    """compose's build section as the orchestrator uses it (Docker SDK, context ".", .dockerignore) gives the
    image `make` built, layer for layer."""
    import docker as docker_sdk

    tag = _built("numpy")
    svc = compose().service("numpy")
    client = docker_sdk.from_env()
    errors = [chunk for chunk in client.api.build(path=str(svc.build.context), dockerfile=svc.build.dockerfile,
                                                  buildargs=svc.build.args, tag="gdbench/test:numpy-context",
                                                  rm=True, decode=True) if "error" in chunk]
    try:
        assert not errors, errors
        built = client.images.get("gdbench/test:numpy-context").attrs["RootFS"]["Layers"]
        assert built == client.images.get(tag).attrs["RootFS"]["Layers"]
    finally:
        if not errors:
            client.images.remove("gdbench/test:numpy-context")
