"""Result documents → one pandas DataFrame, one row per (run, framework, device, variant, dim).

A run directory (as written by ``gdbench run``) holds ``manifest.json`` and one validated solver document
per (framework, device) container. Every document is validated again on read: a file that is not a valid
result is reported and skipped, never merged.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from solvers.schema import SchemaError, loads

MANIFEST = "manifest.json"
MERGED_PARQUET = "results.parquet"
MERGED_CSV = "results.csv"

#: Column order of the merged table; the report and compare read these names.
COLUMNS = [
    "run_id", "framework", "framework_version", "device", "variant", "dim",
    "status", "reason", "time_per_iter_s", "median_s", "min_s", "cv", "compile_s", "transfer_s",
    "max_rel_error", "tolerance", "output_dtype", "sync_ratio", "repeat_times_s", "iters", "repeats", "n",
    "dtype", "seed", "peak_rss_bytes", "peak_device_bytes", "threads", "cpu_model", "hostname",
    "timestamp_utc", "python_version", "numpy_version", "blas", "gpu_name", "gpu_driver_version",
    "cuda_driver_version", "image_tag", "image_digest", "docker_version", "source",
]


def read_documents(run_dir: Path) -> tuple[dict[str, Any], list[tuple[Path, dict[str, Any]]]]:
    """The manifest (or ``{}``) and every valid document of one run directory, in name order."""
    manifest_path = run_dir / MANIFEST
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    docs = []
    for path in sorted(run_dir.glob("*.json")):
        if path.name == MANIFEST:
            continue
        try:
            docs.append((path, loads(path.read_text())))
        except (SchemaError, OSError, UnicodeDecodeError) as exc:
            print(f"skipping {path}: {exc}", file=sys.stderr)
    return manifest, docs


def _blas_summary(blas: list[dict[str, Any]] | None) -> str | None:
    if not blas:
        return None
    return "; ".join(sorted(f"{b.get('internal_api')} {b.get('version')} x{b.get('num_threads')}" for b in blas))


def document_rows(doc: dict[str, Any], run_id: str, source: str, host: dict[str, Any] | None = None) -> list[dict]:
    """Flatten one solver document into merged rows (provenance repeated on each row for easy grouping)."""
    prov, prob = doc["provenance"], doc["problem"]
    gpu = prov.get("gpu") or {}
    image = prov.get("image") or {}
    host = {**(host or {}), **(prov.get("host") or {})}
    base = {
        "run_id": run_id,
        "framework": doc["framework"],
        "framework_version": prov["framework"].get("version"),
        "device": doc["device"],
        "iters": prob["iters"], "repeats": prob["repeats"], "n": prob["n"], "dtype": prob["dtype"],
        "seed": prob["seed"],
        "threads": (prov.get("threads") or {}).get("requested"),
        "cpu_model": (prov.get("platform") or {}).get("cpu_model"),
        "hostname": prov.get("hostname"),
        "timestamp_utc": prov.get("timestamp_utc"),
        "python_version": (prov.get("python") or {}).get("version"),
        "numpy_version": (prov.get("numpy") or {}).get("version"),
        "blas": _blas_summary(prov.get("blas")),
        "gpu_name": gpu.get("name") or host.get("gpu_name"),
        "gpu_driver_version": gpu.get("driver_version") or host.get("driver_version"),
        "cuda_driver_version": gpu.get("cuda_driver_version") or host.get("cuda_driver_version"),
        "image_tag": image.get("tag"),
        "image_digest": image.get("digest") or image.get("id"),
        "docker_version": host.get("docker_version"),
        "source": source,
    }
    rows = []
    for r in doc["results"]:
        sync = r.get("sync_check") or {}
        rows.append({
            **base,
            **{k: r.get(k) for k in (
                "variant", "dim", "status", "reason", "time_per_iter_s", "median_s", "min_s", "cv", "compile_s",
                "transfer_s", "max_rel_error", "tolerance", "output_dtype", "peak_rss_bytes", "peak_device_bytes",
            )},
            "sync_ratio": sync.get("ratio"),
            "repeat_times_s": list(r.get("repeat_times_s") or []),
        })
    return rows


def load_runs(paths: Iterable[Path | str]) -> pd.DataFrame:
    """Merge run directories and/or merged files (.parquet, .csv) into one DataFrame with ``COLUMNS``."""
    frames: list[pd.DataFrame] = []
    for raw in paths:
        path = Path(raw)
        if path.is_file() and path.suffix == ".parquet":
            frames.append(pd.read_parquet(path))
        elif path.is_file() and path.suffix == ".csv":
            df = pd.read_csv(path)
            df["repeat_times_s"] = df["repeat_times_s"].map(lambda s: json.loads(s) if isinstance(s, str) else [])
            frames.append(df)
        elif path.is_dir():
            manifest, docs = read_documents(path)
            run_id = str(manifest.get("run_id") or path.name)
            rows = [row for src, doc in docs for row in document_rows(doc, run_id, str(src), manifest.get("host"))]
            frames.append(pd.DataFrame(rows, columns=COLUMNS))
        else:
            raise FileNotFoundError(f"{path}: not a run directory, .parquet or .csv file")
    if not frames:
        return pd.DataFrame(columns=COLUMNS)
    df = pd.concat([f for f in frames if not f.empty] or frames, ignore_index=True)
    return df.reindex(columns=COLUMNS)


def write_merged(df: pd.DataFrame, out_dir: Path) -> tuple[Path, Path]:
    """Write parquet (lists kept native) and CSV (per-repeat times as a JSON list) into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    parquet, csv = out_dir / MERGED_PARQUET, out_dir / MERGED_CSV
    df.to_parquet(parquet, index=False)
    flat = df.copy()
    flat["repeat_times_s"] = flat["repeat_times_s"].map(lambda v: json.dumps(list(v) if v is not None else []))
    flat.to_csv(csv, index=False)
    return parquet, csv
