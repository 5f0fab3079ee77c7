"""What a new machine pays for ``make bench-all``: a fresh clone against a fresh Docker engine, timed.

Usage: python scripts/bench_cold.py [--keep]     (as root; run it alone, it is a benchmark)

The clone has no host environment, no wheelhouse, no gdbench wheel; the engine (``testbeds.engines``: its own
dockerd, data-root and network namespace) has no base image, no layer and no image, so every image the
sweep runs is built from nothing. What stays warm is outside the project: Debian's installed packages and
pip's download cache of this machine. Prints the total wall time; the log keeps make's own lines.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from testbeds.engines import engines  # noqa: E402  (real extra engines, stopped and removed on the way out)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--keep", action="store_true", help="keep the clone (its results/ holds the run)")
    args = ap.parse_args()
    clone = Path(tempfile.mkdtemp(prefix="gdbench-cold-"))
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    with engines(1) as (engine,):
        env = {**os.environ, "DOCKER_HOST": engine.socket_url}
        start = time.monotonic()
        proc = subprocess.run(["make", "bench-all", "RUN_ID=cold"], cwd=clone, env=env, capture_output=True,
                              text=True, check=False)
        wall = time.monotonic() - start
    log = clone / "bench-all.log"
    log.write_text(proc.stdout + proc.stderr)
    print(f"make bench-all from a fresh clone on a fresh engine: exit {proc.returncode}, {wall:.0f} s "
          f"({wall / 60:.1f} min); log {log}")
    if not args.keep and proc.returncode == 0:
        shutil.rmtree(clone, ignore_errors=True)
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
