"""scripts/gpu_proof.py up to the device boundary: on this GPU-less machine every GPU row is unavailable with
its reason, NumPy's CPU base is timed and checked, and the exit status says no GPU number exists."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT


def test_without_a_gpu_the_proof_says_so_row_by_row_and_exits_3() -> None:
    proc = subprocess.run([sys.executable, "scripts/gpu_proof.py", "--dims", "2,100", "--iters", "20",
                           "--repeats", "2"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    base = [line.split() for line in lines if line.startswith("numpy (cpu)")]
    assert [(row[3], row[4], row[6]) for row in base] == [("2", "ok", "1.00"), ("100", "ok", "1.00")]
    assert all(float(row[5]) > 0 for row in base)  # µs/iter, timed and checked by the solver
    for framework in ("numba", "jax", "torch", "cupy", "tensorflow"):
        mine = [line for line in lines if line.startswith(framework + " ")]
        assert mine and all(" unavailable " in line and "GPU requested but" in line for line in mine), mine
    assert any(line.startswith("jax") and "fused_cmdbuf" in line for line in lines)
    assert lines[-1].startswith("no GPU row ran") and "no GPU number exists" in lines[-1]
