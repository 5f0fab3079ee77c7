"""The same small sweep on this machine's Docker engine and on one and two nodes of a Slurm cluster: what the
Slurm path costs per container, as a ratio to the Docker path, from one run.

A benchmark, not a test: it prints numbers from one run. The cluster is a real one (testbeds/slurmcluster.py: one
slurmctld and two slurmd on this machine, each node its own features), started and stopped here. Its "nodes" share
this machine's cores and its one Docker engine, so the solver times say nothing; what is measured is the path
around them. Per container, "overhead" is the runner's own: wall time (start → document in hand) minus the
solver process's lifetime (the daemon's StartedAt → FinishedAt). The Slurm column adds the srun step, the step
script and the per-container Slurm checks; the allocation itself (salloc, the node's facts, the image check) is
paid once per host and shown apart. Goal: Slurm adds at most 1 s per container over the Docker path.

Usage: python scripts/bench_cluster.py [--frameworks numpy,numba] [--dims 2] [--n 2000] [--iters 50] [--repeats 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import benchrun  # noqa: E402  (what the sweep benchmarks share)

from testbeds.slurmcluster import SlurmCluster  # noqa: E402  (the one way this project starts a test cluster)


def sweep(args: argparse.Namespace, out: Path, extra: list[str]) -> dict:
    done = benchrun.sweep(["--frameworks", args.frameworks, "--devices", "cpu", "--dims", args.dims, "--n",
                           str(args.n), "--iters", str(args.iters), "--repeats", str(args.repeats),
                           "--max-repeats", str(args.repeats), "--threads", "1",
                           "--no-sync-check", *extra], out)
    recs = done.manifest["containers"]
    over = [r["timings"]["overhead_s"] for r in recs if (r.get("timings") or {}).get("overhead_s")]
    # Hosts run side by side: what the containers cost in wall time is the slowest host's sum.
    return {"wall_s": done.wall_s, "containers": len(recs), "overhead_s": sum(over) / len(over),
            "cells_s": max(done.per_host_s.values())}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frameworks", default="numpy,numba")
    parser.add_argument("--dims", default="2")
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--iters", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench_cluster: starting slurmctld/slurmd needs root")
    print(f"gdbench cluster bench: {args.frameworks} on cpu, dims {args.dims}, n={args.n}, iters={args.iters}, "
          f"repeats={args.repeats}, 1 thread; {len(os.sched_getaffinity(0))} CPUs on this machine")
    rows = []
    with tempfile.TemporaryDirectory(prefix="gdbench-cluster-") as tmp, SlurmCluster(Path(tmp) / "cluster") as c:
        rows.append(("docker (local engine)", sweep(args, Path(tmp) / "docker", [])))
        for count in (1, 2):
            hosts = Path(tmp) / f"hosts-{count}.toml"
            hosts.write_text("".join(
                f'[hosts.node{i}]\nkind = "slurm"\npartition = "gpu"\nconstraint = "{feature}"\n'
                f'slurm_conf = "{c.conf_path}"\n\n' for i, feature in enumerate(("drv550", "drv580")[:count], 1)))
            rows.append((f"slurm, {count} node(s)", sweep(args, Path(tmp) / f"slurm-{count}",
                                                          ["--hosts", "all", "--hosts-file", str(hosts)])))
    base = rows[0][1]
    print(f"\n{'path':<22} {'containers':>10} {'wall s':>7} {'overhead s/container':>21} {'− docker':>9} "
          f"{'× docker':>9} {'wall − cells s':>15}")
    for name, r in rows:
        print(f"{name:<22} {r['containers']:>10} {r['wall_s']:>7.2f} {r['overhead_s']:>21.2f} "
              f"{r['overhead_s'] - base['overhead_s']:>+9.2f} {r['overhead_s'] / base['overhead_s']:>9.2f} "
              f"{r['wall_s'] - r['cells_s']:>15.2f}")
    worst = max(r["overhead_s"] - base["overhead_s"] for _, r in rows[1:])
    verdict = "within" if worst <= 1.0 else "ABOVE"
    print(f"\nSlurm adds at most {worst:.2f} s per container over the Docker path: {verdict} the 1 s goal "
          "(wall − cells: the allocation, node facts and image check, paid once per host, plus planning)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
