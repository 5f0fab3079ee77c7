"""The GPU proof: every GPU solver on this machine's GPU against NumPy's ``loop`` on its CPU, as one table.

For an NVIDIA machine without Docker that has the frameworks installed in this Python (PyTorch, JAX, CuPy,
numba-cuda, nvidia-ml-py; TensorFlow where present): each framework's GPU solver at every d, ``loop`` and
``fused`` (and JAX's ``fused_cmdbuf``), then NumPy ``loop`` on the CPU at the same d, each through
``python -m solvers run`` with the one timing protocol and its checks. It prints per row the time per iteration,
the speedup over NumPy ``loop`` at that d, the energy per iteration where NVML measured it, and three verdicts:
the best GPU at d=100 at least 10x NumPy ``loop``; every GPU ``fused`` at d=100 at most 20 µs/iter; no ``fused``
slower than its ``loop`` beyond the rows' spread. Without a GPU every GPU row is unavailable, with its reason,
and the exit status is 3. A benchmark, not a test: numbers from one run.

Usage: python scripts/gpu_proof.py [--dims 2,5,10,20,50,100] [--iters 1000] [--repeats 7] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
#: GPU frameworks and the variants each is run with (JAX adds its command-buffer form).
GPU_RUNS = {"numba": "loop,fused", "jax": "loop,fused,fused_cmdbuf", "torch": "loop,fused", "cupy": "loop,fused",
            "tensorflow": "loop,fused"}
SPEEDUP_GOAL = 10.0  # best GPU at d=100 over NumPy loop on the same machine
FUSED_GOAL_S = 20e-6  # every GPU fused at d=100, per iteration


def solve(framework: str, device: str, variants: str, args: argparse.Namespace, out: Path) -> dict[str, Any]:
    """One solver run's document (the solver writes one even when the device is unavailable)."""
    path = out / f"{framework}-{device}.json"
    cmd = [sys.executable, "-m", "solvers", "run", "--framework", framework, "--device", device, "--variant",
           variants, "--dims", args.dims, "--iters", str(args.iters), "--repeats", str(args.repeats),
           "--out", str(path)]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=1800,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    if not path.exists():
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"framework": framework, "device": device, "status": "failed", "error": tail, "results": []}
    return json.loads(path.read_text())


def spread(row: dict[str, Any]) -> tuple[float, float]:
    """Per-iteration min and max over the row's repeats (the median repeat is ``time_per_iter_s``)."""
    times = sorted(row.get("repeat_times_s") or [])
    if not times or not row.get("time_per_iter_s"):
        return (float("nan"), float("nan"))
    scale = row["time_per_iter_s"] / row.get("median_s", times[len(times) // 2])
    return (times[0] * scale, times[-1] * scale)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dims", default="2,5,10,20,50,100")
    parser.add_argument("--iters", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", type=Path, help="keep the documents here (default: a temporary directory)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gdbench-gpu-proof-") as tmp:
        out = args.out or Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        docs = [solve(fw, "gpu", variants, args, out) for fw, variants in GPU_RUNS.items()]
        base = solve("numpy", "cpu", "loop", args, out)
    cpu = {r["dim"]: r for r in base["results"] if r["status"] == "ok"}
    gpu_name = next((d["provenance"].get("gpu", {}) or {}).get("name") for d in docs
                    if d.get("status") == "ok" and d.get("provenance", {}).get("gpu")) if any(
        d.get("status") == "ok" for d in docs) else None
    print(f"gdbench GPU proof: GPU {gpu_name or 'none'}; CPU NumPy loop as the base; d = {args.dims}, "
          f"{args.iters} iterations, {args.repeats} repeats")
    print(f"\n{'framework':<11} {'variant':<13} {'d':>4} {'status':<11} {'µs/iter':>10} {'× numpy loop':>13} "
          f"{'J/iter':>10}  reason")
    for dim, row in sorted(cpu.items()):
        print(f"{'numpy (cpu)':<11} {'loop':<13} {dim:>4} {'ok':<11} {row['time_per_iter_s'] * 1e6:>10.2f} "
              f"{1.0:>13.2f} {'-':>10}")
    rows: list[tuple[str, dict[str, Any]]] = []
    for doc in docs:
        if not doc.get("results"):
            print(f"{doc['framework']:<11} {'-':<13} {'-':>4} {doc['status']:<11} {'-':>10} {'-':>13} {'-':>10}  "
                  f"{doc.get('error') or ''}")
        for r in doc.get("results", []):
            rows.append((doc["framework"], r))
            t = r.get("time_per_iter_s")
            base_t = (cpu.get(r["dim"]) or {}).get("time_per_iter_s")
            joules = (r.get("energy") or {}).get("joules_per_iter")
            print(f"{doc['framework']:<11} {r['variant']:<13} {r['dim']:>4} {r['status']:<11} "
                  f"{(t * 1e6 if t else float('nan')):>10.2f} "
                  f"{(base_t / t if t and base_t else float('nan')):>13.2f} "
                  f"{(f'{joules:.2e}' if joules else '-'):>10}  {r.get('reason') or ''}")
    ok = [(fw, r) for fw, r in rows if r["status"] == "ok" and r.get("time_per_iter_s")]
    if not ok:
        print("\nno GPU row ran: every GPU row is unavailable or failed (reasons above); no GPU number exists")
        return 3
    top = max(cpu) if cpu else None
    at_top = [(fw, r) for fw, r in ok if r["dim"] == top]
    if top is not None and at_top and top in cpu:
        fw, best = min(at_top, key=lambda x: x[1]["time_per_iter_s"])
        speedup = cpu[top]["time_per_iter_s"] / best["time_per_iter_s"]
        print(f"\nbest GPU at d={top}: {fw} {best['variant']} {speedup:.1f}x NumPy loop: "
              f"{'PASS' if speedup >= SPEEDUP_GOAL else 'FAIL'} (goal >= {SPEEDUP_GOAL:g}x)")
        for fw, r in at_top:
            if r["variant"].startswith("fused"):
                t = r["time_per_iter_s"]
                print(f"{fw} {r['variant']} at d={top}: {t * 1e6:.1f} µs/iter: "
                      f"{'PASS' if t <= FUSED_GOAL_S else 'FAIL'} (goal <= {FUSED_GOAL_S * 1e6:g} µs)")
    for fw in dict.fromkeys(f for f, _ in ok):
        mine = {(r["variant"], r["dim"]): r for f, r in ok if f == fw}
        for (variant, dim), r in mine.items():
            loop = mine.get(("loop", dim))
            if variant == "loop" or loop is None:
                continue
            f_lo, _ = spread(r)
            _, l_hi = spread(loop)
            if f_lo > l_hi:
                print(f"{fw} {variant} slower than loop at d={dim} beyond the spread: FAIL")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
