"""The same small sweep on 1, 2 and 3 Docker engines of this machine: wall time, per-host time, shipping rate.

A benchmark, not a test: it prints ratios from one run. The extra engines are real dockerds started by
the test harness (testbeds/engines.py: own data-root, exec-root, socket and network namespace) and removed
afterwards; they start empty, so each sweep also ships the image to them (save → load, streamed). The goal
the fleet is built for is that N hosts finish in about the wall time of the slowest one; on one machine the
hosts share its CPUs, so each host gets its own CPU here (``cpuset``), and the numbers say how close it
comes. Needs root (dockerd), the built numpy CPU image and a running local engine.

Usage: python scripts/bench_fleet.py [--hosts-max 3] [--dims 2,5] [--n 2000] [--iters 200] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import benchrun  # noqa: E402  (what the sweep benchmarks share)

from testbeds.engines import engines  # noqa: E402  (the one way this project starts extra engines)

SHIPPED = re.compile(r"(\S+): shipped \S+ \(\w+\): ([\d.]+) MB in ([\d.]+) s")


def sweep(hosts_file: Path, out: Path, args: argparse.Namespace) -> dict:
    done = benchrun.sweep(["--hosts", "all", "--hosts-file", str(hosts_file), "--frameworks", "numpy", "--devices",
                           "cpu", "--dims", args.dims, "--n", str(args.n), "--iters", str(args.iters), "--repeats",
                           str(args.repeats), "--max-repeats", str(args.repeats), "--threads", "1"], out)
    shipped = [(h, float(mb), float(s)) for h, mb, s in SHIPPED.findall(done.stderr)]
    return {"wall_s": done.wall_s, "per_host_s": done.per_host_s, "shipped": shipped}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hosts-max", type=int, default=3)
    parser.add_argument("--dims", default="2,5")
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--iters", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench_fleet: starting extra dockerds needs root")
    ncpu = len(os.sched_getaffinity(0))
    print(f"gdbench fleet bench: numpy cpu, dims {args.dims}, n={args.n}, iters={args.iters}, "
          f"repeats={args.repeats}, 1 thread per host, {ncpu} CPUs on this machine")
    rows = []
    with tempfile.TemporaryDirectory(prefix="gdbench-fleet-") as tmp, engines(args.hosts_max - 1) as extra:
        for count in range(1, args.hosts_max + 1):
            tables = [f'[hosts.local]\nurl = "unix:///var/run/docker.sock"\ncpuset = "{0 % ncpu}"\n']
            for i, engine in enumerate(extra[:count - 1], start=1):
                tables.append(f'[hosts.engine{i}]\nurl = "{engine.socket_url}"\ncpuset = "{i % ncpu}"\n')
                # Each sweep ships to an empty engine, so every row measures a shipment.
                subprocess.run(["docker", "-H", engine.socket_url, "image", "rm", "-f", "gdbench/numpy:2.4.6-cpu"],
                               capture_output=True)
            hosts_file = Path(tmp) / f"hosts-{count}.toml"
            hosts_file.write_text("\n".join(tables))
            result = sweep(hosts_file, Path(tmp) / f"run-{count}", args)
            rows.append((count, result))
    base = rows[0][1]["wall_s"]
    print(f"\n{'hosts':>5}  {'wall s':>7}  {'vs 1 host':>9}  {'slowest host s':>14}  {'wall / slowest':>14}  shipping")
    for count, r in rows:
        slowest = max(r["per_host_s"].values()) if r["per_host_s"] else float("nan")
        ship = "; ".join(f"{h} {mb:.0f} MB {mb / s:.0f} MB/s" for h, mb, s in r["shipped"] if s > 0) or "-"
        print(f"{count:>5}  {r['wall_s']:>7.1f}  {r['wall_s'] / base:>8.2f}x  {slowest:>14.1f}  "
              f"{r['wall_s'] / slowest:>13.2f}x  {ship}")
    print("\nwall: the whole `gdbench run` (planning, shipping, containers); slowest host: the sum of its "
          "containers' wall times (create → document)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
