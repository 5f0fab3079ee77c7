"""What the sweep benchmarks share: one ``gdbench run`` from the checkout, timed, and its containers' time per host.

A helper of scripts/bench_fleet.py and scripts/bench_cluster.py (not a benchmark of its own).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Sweep:
    wall_s: float
    manifest: dict[str, Any]
    stderr: str

    @property
    def per_host_s(self) -> dict[str, float]:
        """Each host's containers' wall time, summed (hosts run side by side)."""
        out: dict[str, float] = {}
        for rec in self.manifest["containers"]:
            host = rec.get("host") or "local"
            out[host] = out.get(host, 0.0) + ((rec.get("timings") or {}).get("wall_s") or 0.0)
        return out


def sweep(args: list[str], out: Path, timeout: float = 1800) -> Sweep:
    """``gdbench run ARGS --out OUT``, timed from here; a failed sweep ends the benchmark with its stderr."""
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "orchestrator", "run", *args, "--out", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)
    wall = time.monotonic() - start
    if done.returncode != 0:
        sys.exit(f"sweep failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return Sweep(wall, json.loads((out / "manifest.json").read_text()), done.stderr)
