"""How long ``gdbench publish`` takes for N runs from scratch, and for one more run on top of that site.

A benchmark, not a test: it prints numbers from one run. The N run directories are synthetic: copies of one real
run's documents (``--from RUN_DIR``, or by default one small ``python -m solvers run`` of numpy on the CPU made
here) with the framework version, the timestamp and the host varied per copy, and the repeat times scaled a
little so that the history has steps. Timed in this process with ``time.perf_counter`` (the libraries are
imported before the clock starts): a cold publish into a new site, then a re-publish after one more run, which
reads only that run and takes the rest from the site's cache.

Usage: python scripts/bench_publish.py [--runs 10,50] [--from RUN_DIR]
"""

from __future__ import annotations

import argparse
import copy
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from orchestrator.results.publish import publish  # noqa: E402  (needs the repository on the path)
from orchestrator.sweep.rundir import RunDir  # noqa: E402

VERSIONS = ["1.26.4", "2.0.2", "2.1.3", "2.2.6", "2.3.5", "2.4.6"]
START = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)


def real_documents(source: Path | None, scratch: Path) -> list[dict]:
    """The documents of a real run: ``source``'s, or those of one small solver run made now."""
    if source is None:
        source = scratch / "real"
        source.mkdir()
        subprocess.run([sys.executable, "-m", "solvers", "run", "--framework", "numpy", "--device", "cpu",
                        "--dims", "2,5,10,20,50,100", "--n", "1000", "--iters", "100", "--repeats", "5",
                        "--max-repeats", "5", "--threads", "1", "--no-sync-check",
                        "--out", str(source / "numpy-cpu.json")], cwd=ROOT, check=True, capture_output=True)
    docs = [doc for _, doc in RunDir(source).documents()]
    if not docs:
        sys.exit(f"{source}: no result documents")
    return docs


def synthetic_run(docs: list[dict], index: int, total: int, out: Path) -> Path:
    """Run ``index`` of ``total``: the real documents with version (oldest first, in steps over the runs),
    timestamp, host and a small timing step per version varied."""
    run = RunDir(out / f"synthetic-{index:03d}")
    run.path.mkdir(parents=True)
    run.write_manifest({"run_id": run.path.name})
    version = VERSIONS[index * len(VERSIONS) // total]
    factor = 1.0 + 0.1 * VERSIONS.index(version)
    for n, original in enumerate(docs):
        doc = copy.deepcopy(original)
        prov = doc["provenance"]
        prov["framework"]["version"] = version
        prov["timestamp_utc"] = (START + timedelta(days=index)).isoformat()
        if index % 3 == 2:
            prov["host"] = {"name": "box2", "hostname": "box2", "kernel": "6.1.0-28-amd64"}
        for row in doc["results"]:
            if row["status"] == "ok":
                row["repeat_times_s"] = [t * factor for t in row["repeat_times_s"]]
                for key in ("time_per_iter_s", "median_s", "min_s"):
                    row[key] *= factor
        run.write_document(f"{doc['framework']}-{doc['device']}-{n}", doc)
    return run.path


def measure(docs: list[dict], runs: int, scratch: Path) -> dict:
    base = scratch / f"n{runs}"
    paths = [synthetic_run(docs, i, runs + 1, base) for i in range(runs)]
    site = base / "site"
    t0 = time.perf_counter()
    cold = publish(paths, site, warn=lambda _: None)
    cold_s = time.perf_counter() - t0
    paths.append(synthetic_run(docs, runs, runs + 1, base))
    t0 = time.perf_counter()
    again = publish(paths, site, warn=lambda _: None)
    again_s = time.perf_counter() - t0
    return {"runs": runs, "cold_s": cold_s, "cold_pages": len(cold.written), "again_s": again_s,
            "again_read": len(again.read), "again_reused": len(again.reused), "again_pages": len(again.written)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default="10,50", help="comma-separated numbers of runs")
    parser.add_argument("--from", dest="source", type=Path, default=None, help="a real run directory to copy")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-publish-") as tmp:
        scratch = Path(tmp)
        docs = real_documents(args.source, scratch)
        rows = [measure(docs, int(n), scratch) for n in args.runs.split(",")]
    print(f"synthetic runs: copies of {len(docs)} real document(s), version/timestamp/host varied")
    print("| runs | cold publish | pages | +1 run re-publish | read / from cache | pages rewritten |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['runs']} | {r['cold_s']:.2f} s | {r['cold_pages']} | {r['again_s']:.2f} s | "
              f"{r['again_read']} / {r['again_reused']} | {r['again_pages']} |")


if __name__ == "__main__":
    main()
