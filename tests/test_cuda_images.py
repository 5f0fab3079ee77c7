"""Every built CUDA image, checked on a machine without a GPU (``make test-cuda``; CI builds no CUDA image).

For each CUDA service compose declares: the solvers list inside it; a CPU-device run where the framework's
CUDA build runs on the CPU (jax, tensorflow, torch, numba), correct and with a valid document; a GPU request
on this engine, which has no GPU, answered ``unavailable`` in one line with exit 3; its labels matching what
is inside (the framework's version, the CUDA runtime its wheels carry). And the question the CUDA axis
exists for, asked for real without a GPU: two CUDA builds of one jax release run on the CPU in one sweep,
compared ``--across cuda``.

Marked ``cuda_images``: deselected unless asked for (``pytest -m cuda_images``), since these images are
built only by ``make images FLAVOUR=cuda``; asked for, a missing image is a failure that names the build.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from orchestrator import labels
from orchestrator.images.compose import Service, load_compose
from solvers import registry, schema
from tests.conftest import ROOT, gdbench

pytestmark = [pytest.mark.cuda_images, pytest.mark.docker, pytest.mark.slow]

SERVICES = [s for s in load_compose(ROOT / "compose.yaml", env={}).services.values() if s.flavour == "cuda"]
TINY = ["--dims", "2", "--n", "300", "--iters", "20", "--repeats", "2", "--max-repeats", "2", "--no-sync-check"]
#: What each image's Python prints: its framework's version and the CUDA runtime its wheels carry.
PROBE = """
import importlib.metadata as m, json, re, sys
dists = {d.metadata["Name"].lower(): d.version for d in m.distributions()}
runtime = [v for k, v in dists.items() if re.fullmatch(r"nvidia-cuda-runtime(-cu\\d+)?", k)]
print(json.dumps({"versions": {n: dists.get(n) for n in sys.argv[1:]}, "runtime": runtime}))
"""


def _labels(svc: Service) -> dict[str, str]:
    proc = subprocess.run(["docker", "image", "inspect", "--format", "{{json .Config.Labels}}", svc.image],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"{svc.image} is not built: make images FLAVOUR=cuda (or gdbench images build " \
                                 f"{svc.name})"
    return json.loads(proc.stdout) or {}


def _key(svc: Service) -> str:
    return f"{svc.framework}@{svc.version_key}"


@pytest.mark.parametrize("svc", SERVICES, ids=lambda s: s.name)
def test_the_solvers_inside_list_the_framework_and_no_gpu(svc: Service) -> None:
    _labels(svc)
    proc = subprocess.run(["docker", "run", "--rm", "--network", "none", svc.image, "list"], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    listed = json.loads(proc.stdout)[svc.framework]
    assert listed["installed"] and listed["version"].split("+")[0] == svc.framework_version, listed
    assert "gpu" not in listed["devices"], "this engine has no GPU to offer"


@pytest.mark.parametrize("svc", SERVICES, ids=lambda s: s.name)
def test_labels_say_what_is_inside(svc: Service) -> None:
    image_labels = _labels(svc)
    dists = list(registry.REGISTRY[svc.framework].dists)
    proc = subprocess.run(["docker", "run", "--rm", "--network", "none", "--entrypoint", "python", svc.image, "-c",
                           PROBE, *dists], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    inside = json.loads(proc.stdout)
    version = next(v for d in dists if (v := inside["versions"].get(d)))
    assert version.split("+")[0] == image_labels[labels.FRAMEWORK_VERSION].split("+")[0] == svc.framework_version
    assert len(inside["runtime"]) == 1, inside
    assert ".".join(inside["runtime"][0].split(".")[:2]) == image_labels[labels.CUDA_VERSION]
    assert image_labels.get(labels.CUDA_BUILD, "") == (svc.cuda_build or "")


@pytest.mark.parametrize("svc", [s for s in SERVICES if "cpu" in registry.REGISTRY[s.framework].devices],
                         ids=lambda s: s.name)
def test_a_cuda_build_runs_correctly_on_the_cpu(svc: Service, tmp_path: Path) -> None:
    _labels(svc)
    out = tmp_path / "run"
    proc = gdbench("run", "-f", _key(svc), "--flavour", "cuda", "--devices", "cpu", *TINY, "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    docs = [schema.loads(p.read_text()) for p in out.glob("*.json") if p.name != "manifest.json"]
    assert len(docs) == 1 and docs[0]["status"] == "ok"
    assert docs[0]["provenance"]["image"]["tag"] == svc.image
    assert all(r["max_rel_error"] <= r["tolerance"] for r in docs[0]["results"])


@pytest.mark.parametrize("svc", SERVICES, ids=lambda s: s.name)
def test_a_gpu_request_on_this_engine_is_unavailable(svc: Service, tmp_path: Path) -> None:
    _labels(svc)
    out = tmp_path / "run"
    proc = gdbench("run", "-f", _key(svc), "--devices", "gpu", *TINY, "--out", str(out))
    assert proc.returncode == 3, proc.stderr[-3000:]
    docs = [schema.loads(p.read_text()) for p in out.glob("*.json") if p.name != "manifest.json"]
    assert [d["status"] for d in docs] == ["unavailable"]
    reason = docs[0]["error"]
    assert reason and "\n" not in reason and "GPU" in reason


def test_two_cuda_builds_of_one_release_compared_across_cuda(tmp_path: Path) -> None:
    """jax 0.10.2 for CUDA 12 and for CUDA 13, both on the CPU in one sweep, then ``compare --across cuda``."""
    builds = [s for s in SERVICES if s.framework == "jax" and s.framework_version == "0.10.2"]
    assert {s.cuda_build for s in builds} == {None, "cuda13"}, "compose declares both jax 0.10.2 builds"
    for svc in builds:
        _labels(svc)
    out = tmp_path / "run"
    proc = gdbench("run", "-f", "jax@0.10.2+cuda12,jax@0.10.2+cuda13", "--flavour", "cuda", "--devices", "cpu",
                   "--dims", "2,20", "--n", "2000", "--iters", "100", "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    across = gdbench("compare", str(out), "--across", "cuda", "--out", str(tmp_path / "cmp"))
    assert across.returncode == 0, across.stderr[-3000:]
    runtimes = sorted({str(json.loads(p.read_text())["provenance"]["image"]["labels"][labels.CUDA_VERSION])
                       for p in out.glob("jax*.json")})
    assert len(runtimes) == 2 and runtimes[0].startswith("12.") and runtimes[1].startswith("13.")
    assert all(r in across.stdout for r in runtimes), across.stdout
    assert "jax across cuda" in across.stdout
