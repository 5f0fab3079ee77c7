"""What a new machine pays for ``make bench-all``: a fresh clone against a fresh Docker engine, timed.

Usage: python scripts/bench_cold.py [--this-engine] [--keep]     (as root; run it alone, it is a benchmark)

The clone has no host environment, no wheelhouse, no gdbench wheel; the engine has no base image, no layer
and no image, so every image the sweep runs is built from nothing. By default the engine is a fresh one
(``testbeds.engines``: its own dockerd and data-root), which works where the images need no Debian packages
fetched through a container (its network namespace has no route out: numba's and torch's do); with
``--this-engine`` it is this machine's own, which must hold no image at all (``docker system prune -af``).
What stays warm is outside the project: Debian's installed packages and pip's download cache of this machine.
Prints the total wall time; the log keeps make's own lines.
"""

from __future__ import annotations

import argparse
import contextlib
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
    ap.add_argument("--this-engine", action="store_true", help="this machine's engine, emptied beforehand")
    args = ap.parse_args()
    if args.this_engine:
        images = subprocess.run(["docker", "images", "-aq"], capture_output=True, text=True, check=True).stdout
        if images.strip():
            print("error: this engine holds images, so the build would not be cold — fix: docker system prune -af "
                  "(it removes every image), or leave out --this-engine", file=sys.stderr)
            return 2
    clone = Path(tempfile.mkdtemp(prefix="gdbench-cold-"))
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    with contextlib.ExitStack() as stack:
        env = dict(os.environ)
        if not args.this_engine:
            (engine,) = stack.enter_context(engines(1))
            env["DOCKER_HOST"] = engine.socket_url
        start = time.monotonic()
        proc = subprocess.run(["make", "bench-all", "RUN_ID=cold"], cwd=clone, env=env, capture_output=True,
                              text=True, check=False)
        wall = time.monotonic() - start
    log = clone / "bench-all.log"
    log.write_text(proc.stdout + proc.stderr)
    print(f"make bench-all from a fresh clone on an empty engine: exit {proc.returncode}, {wall:.0f} s "
          f"({wall / 60:.1f} min); log {log}")
    if not args.keep and proc.returncode == 0:
        shutil.rmtree(clone, ignore_errors=True)
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
