"""Result documents → one DataFrame, one row per (run, framework, framework_version, device, variant, dim, host).

Run directories are read through ``orchestrator.sweep.rundir.RunDir`` (which validates every document again and
skips, with a line on stderr, any file that is not a valid result). The result-row columns are derived from
``solvers.schema.ROW_FIELDS``: scalar fields are copied, object fields flattened into named columns on
purpose, and the few fields no table can hold stay in the documents only.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from orchestrator.backends.base import HostRecord
from orchestrator.errors import InvalidOptions
from orchestrator.labels import CUDA_VERSION
from orchestrator.sweep.rundir import RunDir
from solvers.schema import ROW_FIELDS

MERGED_PARQUET = "results.parquet"
MERGED_CSV = "results.csv"

#: Object-valued row fields, flattened on purpose: field → {merged column: key in the object}.
FLATTENED: dict[str, dict[str, str]] = {
    "sync_check": {"sync_ratio": "ratio"},
    "slope": {"slope_time_per_iter_s": "time_per_iter_s", "slope_low": "low", "slope_high": "high"},
    "layout": {"layout_extra_bytes": "extra_bytes", "x_alignment": "x_alignment"},
    "energy": {"joules_per_iter": "joules_per_iter", "avg_power_w": "avg_power_w"},
    "sampling": {"sampling_stop": "stop", "sampling_ci_rel": "ci_rel"},
}
#: Flattened columns that hold text, not numbers.
TEXT_COLUMNS = ("sampling_stop",)
#: List-valued row fields: per-repeat times stay a list (parquet native, CSV as JSON); flags join with ";".
LISTS = ("repeat_times_s", "flags")
#: Row fields left in the documents only: long text and nested samples that no table column can hold.
DOCUMENT_ONLY = ("stderr_tail", "async_probe", "gpu_samples", "host_load", "gpu_state_before", "gpu_state_after")

ROW_COLUMNS = [c for f in ROW_FIELDS if f not in DOCUMENT_ONLY for c in FLATTENED.get(f, {f: f})]
#: ``provenance.host`` (the engine's own facts, never the container's): merged column → key in that object.
#: ``host`` is the inventory name, "local" when a document names none (one engine, or written before hosts).
HOST_KEYS = {"host": "name", "host_engine_id": "engine_id", "host_hostname": "hostname", "host_kernel": "kernel",
             "host_os": "os", "host_cpu_model": "cpu_model", "host_architecture": "architecture",
             "host_engine": "engine", "host_engine_version": "engine_version"}
#: Columns of merged files written before the host record named its engine: old name → new name.
RENAMED_COLUMNS = {"docker_version": "host_engine_version"}
HOST_COLUMNS = list(HOST_KEYS)
LOCAL_HOST = "local"
#: The memory floor of the row's document at the row's d, and the row's time over it.
FLOOR_COLUMNS = ["floor_s", "floor_call_overhead_bound", "x_floor"]
PROVENANCE_COLUMNS = [
    "iters", "repeats", "n", "dtype", "seed", "threads", "cpu_model", "hostname", "timestamp_utc", "python_version",
    "numpy_version", "blas", "gpu_name", "gpu_driver_version", "cuda_driver_version", "cuda_runtime", "image_tag",
    "image_digest",
    "image_id", *HOST_COLUMNS, "source",
]
#: Column order of the merged table; the report and compare read these names.
COLUMNS = ["run_id", "framework", "framework_version", "device", *ROW_COLUMNS, *FLOOR_COLUMNS, *PROVENANCE_COLUMNS]
#: Without these a merged file cannot be told apart from any other table.
REQUIRED = ("run_id", "framework", "device", "variant", "dim", "status", "time_per_iter_s", "repeat_times_s")

Warn = Callable[[str], None]


def _warn(msg: str) -> None:
    print(msg, file=sys.stderr)


def _blas_summary(blas: list[dict[str, Any]] | None) -> str | None:
    if not blas:
        return None
    return "; ".join(sorted(f"{b.get('internal_api')} {b.get('version')} x{b.get('num_threads')}" for b in blas))


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def row_values(result: dict[str, Any], bad: list[str] | None = None) -> dict[str, Any]:
    """One result row as merged columns (``ROW_COLUMNS``); a non-numeric value in a flattened object is left
    empty and its ``field.key`` appended to ``bad``."""
    out: dict[str, Any] = {}
    for name in ROW_FIELDS:
        value = result.get(name)
        if name in DOCUMENT_ONLY:
            continue
        if name in FLATTENED:
            obj = value if isinstance(value, dict) else {}
            for column, key in FLATTENED[name].items():
                if column in TEXT_COLUMNS:
                    out[column] = str(obj[key]) if obj.get(key) is not None else None
                    continue
                out[column] = _number(obj.get(key))
                if out[column] is None and obj.get(key) is not None and bad is not None:
                    bad.append(f"{name}.{key}")
        elif name == "flags":
            out[name] = ";".join(str(f) for f in value or [])
        elif name == "repeat_times_s":
            out[name] = list(value or [])
        else:
            out[name] = value
    return out


def floors(doc: dict[str, Any], source: str, warn: Warn = _warn) -> dict[int, tuple[float, bool | None]]:
    """The document's floor per d: (time_s, call_overhead_bound); unusable entries are named in one line."""
    out: dict[int, tuple[float, bool | None]] = {}
    bad = []
    for entry in doc.get("floor") or []:
        dim, time_s = entry.get("dim"), _number(entry.get("time_s"))
        if not isinstance(dim, int) or isinstance(dim, bool) or time_s is None or time_s <= 0 or dim in out:
            bad.append(json.dumps(entry, default=str)[:80])
            continue
        bound = entry.get("call_overhead_bound")
        out[dim] = (time_s, bool(bound) if isinstance(bound, bool) else None)
    if bad:
        warn(f"{source}: {len(bad)} floor entr{'y' if len(bad) == 1 else 'ies'} without a unique integer dim and "
             f"a positive time_s ({'; '.join(bad)}): those rows keep their times, without × floor")
    return out


#: Where a framework's own provenance names the CUDA runtime it was built with (torch, TensorFlow, CuPy).
FRAMEWORK_CUDA_KEYS = ("cuda_build", "cuda_version", "cuda_runtime")


def cuda_runtime(prov: dict[str, Any]) -> str | None:
    """The CUDA runtime a row ran with: the image's label (what its lock resolved), else what the framework
    says of its build; None for a CPU image and a framework that names none."""
    label = ((prov.get("image") or {}).get("labels") or {}).get(CUDA_VERSION)
    if label:
        return str(label)
    framework = prov.get("framework") or {}
    for key in FRAMEWORK_CUDA_KEYS:
        value = framework.get(key) or (framework.get("details") or {}).get(key)
        if isinstance(value, int) and value > 1000:  # CuPy's runtimeGetVersion(): 12080 → 12.8
            return f"{value // 1000}.{value % 1000 // 10}"
        if value:
            return str(value)
    return None


def document_rows(doc: dict[str, Any], run_id: str, source: str, host: dict[str, Any] | None = None,
                  warn: Warn = _warn) -> list[dict]:
    """Flatten one solver document into merged rows (provenance repeated on each row for easy grouping)."""
    prov, prob = doc["provenance"], doc["problem"]
    gpu = prov.get("gpu") or {}
    image = prov.get("image") or {}
    host = HostRecord.from_dict({**(host or {}), **(prov.get("host") or {})}).to_dict()
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
        # The interpreter that ran the solver; a document written for a container that never ran has none,
        # and then the image's label says which Python it would have been.
        "python_version": (prov.get("python") or {}).get("version") or image.get("python_version"),
        "numpy_version": (prov.get("numpy") or {}).get("version"),
        "blas": _blas_summary(prov.get("blas")),
        "gpu_name": gpu.get("name") or host.get("gpu_name"),
        "gpu_driver_version": gpu.get("driver_version") or host.get("driver_version"),
        "cuda_driver_version": gpu.get("cuda_driver_version") or host.get("cuda_driver_version"),
        "cuda_runtime": cuda_runtime(prov),
        "image_tag": image.get("tag"),
        "image_digest": image.get("digest") or image.get("id"),
        "image_id": image.get("id"),
        **{column: host.get(key) for column, key in HOST_KEYS.items()},
        "host": host.get("name") or LOCAL_HOST,
        "source": source,
    }
    floor = floors(doc, source, warn)
    rows, bad = [], []
    for r in doc["results"]:
        row = {**base, **row_values(r, bad)}
        floor_s, bound = floor.get(r.get("dim"), (None, None))  # type: ignore[arg-type]
        t = _number(row.get("time_per_iter_s"))
        row.update(floor_s=floor_s, floor_call_overhead_bound=bound,
                   x_floor=t / floor_s if t is not None and floor_s else None)
        rows.append(row)
    if bad:
        warn(f"{source}: {len(bad)} non-numeric value(s) in {', '.join(sorted(set(bad)))}: left empty, "
             "the rows keep everything else")
    return rows


def _read_table(path: Path, warn: Warn) -> pd.DataFrame:
    """A merged .parquet or .csv: the columns it lacks are one line (empty, or refused if they are identity)."""
    try:
        df = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    except Exception as exc:  # pandas and pyarrow raise many types for an unreadable file
        raise InvalidOptions(f"{path}: unreadable ({type(exc).__name__}: {exc})",
                             fix="regenerate it with `gdbench merge RUN_DIR --out DIR`") from exc
    df = df.rename(columns={old: new for old, new in RENAMED_COLUMNS.items() if new not in df.columns})
    if "host_engine_version" in df.columns and "host_engine" not in df.columns:
        df["host_engine"] = df["host_engine_version"].map(lambda v: "docker" if isinstance(v, str) and v else None)
    missing = [c for c in COLUMNS if c not in df.columns]
    if fatal := [c for c in REQUIRED if c in missing]:
        raise InvalidOptions(f"{path}: not a gdbench merged table (no column {', '.join(fatal)})",
                             fix="regenerate it with `gdbench merge RUN_DIR --out DIR`")
    if missing:
        warn(f"{path}: no column {', '.join(missing)} (written by an older gdbench): left empty"
             + (f" (host: {LOCAL_HOST})" if "host" in missing else ""))
    df = df.reindex(columns=[*df.columns, *missing])
    df["host"] = df["host"].where(df["host"].notna() & (df["host"].astype(str) != ""), LOCAL_HOST)
    if path.suffix == ".csv":
        def times(text: Any) -> list[float]:
            try:
                return list(json.loads(text)) if isinstance(text, str) else []
            except json.JSONDecodeError as exc:
                raise InvalidOptions(f"{path}: repeat_times_s {text[:40]!r} is not a JSON list",
                                     fix="regenerate it with `gdbench merge RUN_DIR --out DIR`") from exc

        df["repeat_times_s"] = df["repeat_times_s"].map(times)
    return df


def load_runs(paths: Iterable[Path | str], warn: Warn = _warn) -> pd.DataFrame:
    """Merge run directories and/or merged files (.parquet, .csv) into one DataFrame with ``COLUMNS``."""
    frames: list[pd.DataFrame] = []
    for raw in paths:
        path = Path(raw)
        if path.is_file() and path.suffix in (".parquet", ".csv"):
            frames.append(_read_table(path, warn))
        elif path.is_dir():
            run = RunDir(path)
            host = run.manifest().host
            rows = [row for src, doc in run.documents(warn=warn)
                    for row in document_rows(doc, run.run_id(), str(src), host, warn)]
            frames.append(pd.DataFrame(rows, columns=COLUMNS))
        else:
            raise InvalidOptions(f"{path}: not a run directory, .parquet or .csv file",
                                 fix="give a directory written by `gdbench run` or a file from `gdbench merge`")
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
