"""Documents and run directories as the solver and the orchestrator write them, for the results tests.

Rows come from ``solvers.schema``'s helpers, provenance from the real ``solvers.metadata``, and every document
is validated on write by ``RunDir.write_document``; only the timings in them are hand-chosen. Used by
tests/test_merge.py, tests/test_report.py and tests/test_compare_across.py; no test function lives here.
"""

from __future__ import annotations

import hashlib
import statistics
from pathlib import Path
from typing import Any

from orchestrator.sweep.rundir import RunDir
from solvers import metadata
from solvers.schema import SCHEMA_VERSION, empty_row, problem_record

ITERS = 100


def ok_row(dim: int, variant: str, repeat_times_s: list[float], iters: int = ITERS, **extra: Any) -> dict[str, Any]:
    """A passed row with the derived timing fields a solver computes from its repeats."""
    row = empty_row(dim, variant, "ok", None)
    median = statistics.median(repeat_times_s)
    row.update(time_per_iter_s=median / iters, median_s=median, min_s=min(repeat_times_s),
               cv=statistics.stdev(repeat_times_s) / statistics.mean(repeat_times_s),
               repeat_times_s=list(repeat_times_s), compile_s=0.02, max_rel_error=1e-12, tolerance=1e-8,
               output_dtype="float64", **extra)
    return row


def make_document(framework: str, device: str, rows: list[dict[str, Any]], iters: int = ITERS,
                  floor: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    dims = sorted({r["dim"] for r in rows})
    repeats = max(len(r["repeat_times_s"]) for r in rows)
    doc = {
        "schema_version": SCHEMA_VERSION, "framework": framework, "device": device, "status": "ok", "error": None,
        "problem": problem_record(n=1000, dims=dims, iters=iters, repeats=repeats, dtype="float64", seed=0,
                                  lr=0.001),
        "provenance": metadata.collect({"name": framework, "version": "1.0"}, {"requested": 1}, None, gpu=False),
        "results": rows,
    }
    if floor is not None:
        doc["floor"] = floor
    return doc


def write_run(path: Path, run_id: str, docs: list[dict[str, Any]]) -> Path:
    run = RunDir(path)
    path.mkdir(parents=True, exist_ok=True)
    run.write_manifest({"run_id": run_id})
    for doc in docs:
        run.write_document(f"{doc['framework']}-{doc['device']}", doc)
    return path


def host_record(name: str, gpu: str | None = None, driver: str | None = None, cuda: str | None = None,
                kernel: str = "6.8.0-45-generic") -> dict[str, Any]:
    """``provenance.host`` as the orchestrator writes it from one engine's facts and that host's NVML."""
    return {"name": name, "engine_id": f"{name.upper()}:ENGINE:ID", "hostname": f"{name}-box", "kernel": kernel,
            "os": "Debian GNU/Linux 12 (bookworm)", "cpu_model": "AMD EPYC 7B13", "ncpu": 16,
            "architecture": "x86_64", "docker_version": "27.3.1", "api_version": "1.47", "gpu_name": gpu,
            "driver_version": driver, "cuda_driver_version": cuda, "gpu_count": 1 if gpu else 0}


def versioned_document(framework: str, version: str, rows: list[dict[str, Any]], python: str = "3.11.2",
                       host: dict[str, Any] | None = None, device: str = "cpu") -> dict[str, Any]:
    """A document of one pinned version in its image (tag, id, Python label), as the orchestrator stores it."""
    doc = make_document(framework, device, rows)
    prov = doc["provenance"]
    prov["framework"]["version"] = version
    prov["python"]["version"] = python
    image_id = "sha256:" + hashlib.sha256(f"{framework}{version}{python}".encode()).hexdigest()
    prov["image"] = {"tag": f"gdbench/{framework}:{version}-cpu", "id": image_id, "digest": None,
                     "python_version": python, "labels": {"io.gdbench.python.version": python}}
    if host is not None:
        prov["host"] = host
    return doc


def doc_key(doc: dict[str, Any]) -> str:
    """The document's file stem by the run directory's rule: ``numpy@1.26.4-cpu@gpu1``."""
    prov = doc["provenance"]
    host = (prov.get("host") or {}).get("name") or "local"
    version = prov["framework"]["version"]
    return f"{doc['framework']}@{version}-{doc['device']}" + ("" if host == "local" else f"@{host}")


def write_keyed_run(path: Path, run_id: str, docs: list[dict[str, Any]]) -> Path:
    run = RunDir(path)
    path.mkdir(parents=True, exist_ok=True)
    run.write_manifest({"run_id": run_id})
    for doc in docs:
        run.write_document(doc_key(doc), doc)
    return path
