"""The PyTorch plugin against the float64 reference, its CUDA-graph replay plan, and its no-GPU boundary."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from solvers.base import Unavailable  # noqa: E402
from solvers.frameworks import torch_  # noqa: E402
from solvers.problem import TOLERANCE, ProblemSpec, make_data, max_rel_error, reference  # noqa: E402
from tests.conftest import ROOT  # noqa: E402

FW = torch_.FRAMEWORK
HAS_GPU = torch.cuda.is_available()
DEVICES = ["cpu", pytest.param("gpu", marks=[pytest.mark.gpu, pytest.mark.skipif(not HAS_GPU, reason="no GPU")])]


def _check(device: str, variant: str, dtype: str, d: int, iters: int, n: int = 2_000) -> None:
    data = make_data(ProblemSpec(n=n, iters=iters, dtype=dtype), d)
    W_ref, b_ref = reference(data, iters)
    solver = FW.make_solver(device, variant)
    solver.setup(data)
    for _ in range(2):  # the second run must start again from (W0, b0)
        out = solver.run(iters)
        solver.sync(out)
        W, b = solver.fetch(out)
        assert W.dtype == np.dtype(dtype), "the solver changed the dtype"
        assert W.shape == (d,)
        err = max_rel_error(W, b, W_ref, b_ref)
        assert err <= TOLERANCE[dtype], f"{device}/{variant}/{dtype} d={d}: error {err:.3g}"


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("variant", ["loop", "fused"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("d", [1, 2, 7, 100])
def test_matches_reference(device: str, variant: str, dtype: str, d: int) -> None:
    _check(device, variant, dtype, d, iters=300)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_compiled_matches_reference(device: str, dtype: str) -> None:
    """``compiled`` (torch.compile of the textbook step) solves the same problem; d=1 and 7: two shapes."""
    for d in (1, 7):
        _check(device, "compiled", dtype, d, iters=50)


def test_compiled_is_a_recorded_variant_only_torch_offers() -> None:
    """Asked for, it runs through the whole protocol (compile apart, sync check) and names inductor as its code
    path; the frameworks without it answer unavailable, with the reason."""
    proc = subprocess.run(
        [sys.executable, "-m", "solvers", "run", "--framework", "torch", "--variant", "fused,compiled", "--dims",
         "3", "--n", "500", "--iters", "50", "--repeats", "2", "--max-repeats", "2", "--no-floor"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    rows = {r["variant"]: r for r in json.loads(proc.stdout)["results"]}
    assert rows["compiled"]["status"] == "ok" and rows["compiled"]["sync_check"]["passed"]
    assert rows["compiled"]["compile_s"] > 0 and rows["compiled"]["kernel_path"].startswith("inductor's C++")
    assert rows["fused"]["kernel_path"].startswith(("MKL", "OpenBLAS"))
    other = subprocess.run([sys.executable, "-m", "solvers", "run", "--framework", "numpy", "--variant", "compiled",
                            "--dims", "3", "--n", "50", "--iters", "5", "--repeats", "1", "--max-repeats", "1"],
                           cwd=ROOT, capture_output=True, text=True, timeout=120)
    row = json.loads(other.stdout)["results"][0]
    assert row["status"] == "unavailable" and row["reason"] == "numpy offers no compiled on cpu"


@pytest.mark.parametrize("device", DEVICES)
def test_fused_float32_full_length(device: str) -> None:
    """1000 float32 steps at full n: the length at which accumulating gemv updates into W drifted past 1e-3."""
    _check(device, "fused", "float32", 2, iters=1_000, n=10_000)


@pytest.mark.parametrize("device", DEVICES)
def test_runs_of_other_lengths_do_not_leak(device: str) -> None:
    """A long run, then a short one that is not a multiple of the graph block, must equal a fresh short run."""
    data = make_data(ProblemSpec(n=1_000, dtype="float64"), 3)
    solver = FW.make_solver(device, "fused")
    solver.setup(data)
    solver.sync(solver.run(300))
    W, b = solver.fetch(solver.run(37))
    W_ref, b_ref = reference(data, 37)
    assert max_rel_error(W, b, W_ref, b_ref) <= TOLERANCE["float64"]
    W_other, b_other = solver.fetch(solver.run(38))
    assert max_rel_error(W_other, b_other, W_ref, b_ref) > TOLERANCE["float64"], "one more step must show"


@pytest.mark.parametrize("iters", [0, 1, 5, 127, 128, 129, 300, 1000, 4096, 12345])
def test_replay_plan_covers_exactly(iters: int) -> None:
    plan = torch_.replay_plan(iters, 128)
    assert sum(size * count for size, count in plan) == iters
    assert all(size in {128 >> i for i in range(8)} for size, _ in plan)
    assert sum(count for size, count in plan if size < 128) <= 7


def test_no_tf32_and_details() -> None:
    info = FW.details("cpu")
    assert info["matmul_allow_tf32"] is False
    assert info["cudnn_allow_tf32"] is False
    assert info["float32_matmul_precision"] == "highest"
    assert torch.get_float32_matmul_precision() == "highest"
    assert info["cuda_build"] == torch.version.cuda
    assert FW.peak_device_memory("cpu") is None


def test_configure_threads_reports_what_is_in_force() -> None:
    got = FW.configure_threads(1)
    assert got["intra_op_threads"] == torch.get_num_threads() == 1
    assert got["inter_op_threads"] == torch.get_num_interop_threads()
    FW.configure_threads(2)
    assert torch.get_num_threads() == 2


@pytest.mark.skipif(HAS_GPU, reason="a GPU is visible here")
def test_gpu_solver_refused_with_reason() -> None:
    assert FW.devices() == ["cpu"]
    with pytest.raises(Unavailable, match=r"CPU-only|sees no device"):
        FW.make_solver("gpu", "fused")
    reason = FW.gpu_unavailable_reason()
    assert ("CPU-only" in reason) == (torch.version.cuda is None)


@pytest.mark.skipif(HAS_GPU, reason="a GPU is visible here")
def test_cli_gpu_request_is_unavailable() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "solvers", "run", "--framework", "torch", "--device", "gpu", "--dims", "2,5"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 3, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["status"] == "unavailable"
    assert "CPU-only" in doc["error"] or "sees no device" in doc["error"]
    assert {(r["dim"], r["variant"], r["status"]) for r in doc["results"]} == {
        (d, v, "unavailable") for d in (2, 5) for v in ("loop", "fused")
    }


def test_cli_cpu_run_passes_protocol() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "solvers", "run", "--framework", "torch", "--dims", "3", "--iters", "200",
         "--repeats", "2", "--max-repeats", "2", "--dtype", "float32", "--no-sync-check"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert [(r["variant"], r["status"], r["output_dtype"]) for r in doc["results"]] == [
        ("loop", "ok", "float32"), ("fused", "ok", "float32")
    ]
    fw = doc["provenance"]["framework"]
    assert fw["name"] == "torch" and fw["version"] == torch.__version__
    assert doc["provenance"]["threads"]["framework"]["inter_op_threads"] == 1


def _cache_env(extra: dict[str, str], home: str) -> dict[str, str | None]:
    env = {k: v for k, v in os.environ.items() if k not in ("TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR")}
    env.update(extra, HOME=home)
    code = ("import json, os, solvers.frameworks.torch_ as t; "
            "print(json.dumps({k: os.environ.get(k) for k in ('TORCHINDUCTOR_CACHE_DIR', 'TRITON_CACHE_DIR')}))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("kind", [
    "missing",
    pytest.param("read-only", marks=pytest.mark.skipif(os.geteuid() == 0, reason="root writes a read-only dir")),
])
def test_compile_caches_move_to_tmp_when_home_is_unusable(tmp_path: Path, kind: str) -> None:
    home = tmp_path / "home"
    if kind == "read-only":
        home.mkdir()
        home.chmod(0o555)
    try:
        got = _cache_env({}, str(home))
        mine = _cache_env({"TRITON_CACHE_DIR": str(tmp_path / "t")}, str(home))
    finally:
        if home.exists():
            home.chmod(0o755)
    tmp = tempfile.gettempdir()
    assert got["TORCHINDUCTOR_CACHE_DIR"].startswith(tmp) and got["TRITON_CACHE_DIR"].startswith(tmp)
    assert mine["TRITON_CACHE_DIR"] == str(tmp_path / "t"), "a cache dir the user set is kept"


def test_compile_caches_left_alone_when_home_is_writable(tmp_path: Path) -> None:
    got = _cache_env({}, str(tmp_path))
    assert got == {"TORCHINDUCTOR_CACHE_DIR": None, "TRITON_CACHE_DIR": None}


def test_cpu_fused_copies_xt_only_while_x_is_small() -> None:
    """The copy of Xᵀ is a re-layout the document must show; above the threshold the view stays."""
    limit_rows = torch_.XT_COPY_MAX_BYTES // (8 * 50)
    for n, copied in ((limit_rows, True), (limit_rows + 1, False)):
        data = make_data(ProblemSpec(n=n), 50)
        solver = FW.make_solver("cpu", "fused")
        solver.setup(data)
        assert solver.XT.is_contiguous() is copied, n
        assert solver.extra_bytes == (data.X.nbytes if copied else 0)
        assert (solver.relayout is not None) is copied
        W, b = solver.fetch(solver.run(20))
        assert max_rel_error(W, b, *reference(data, 20)) <= TOLERANCE["float64"]
