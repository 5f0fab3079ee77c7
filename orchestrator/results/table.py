"""What ``report`` and ``compare`` both read from merged results, defined once.

Loading labelled runs, "the rows that ran", number and text formatting and the provenance fields. Row keys
and their order are ``rowkeys``; the noise rule that decides whether two timings differ is ``noise``; the
tables' markdown and HTML are ``emit``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from orchestrator.errors import InvalidOptions
from orchestrator.results.merge import load_runs
from orchestrator.results.noise import num
from orchestrator.results.rowkeys import DEVICE_ORDER, rank, text
from solvers.registry import FRAMEWORKS

#: Host facts that may explain a difference in time, then the workload; label and merged column.
#: "host" is the engine's hostname (``provenance.host``), never a container's random one.
HOST_FIELDS = [
    ("CPU model", "cpu_model"), ("threads", "threads"), ("host", "host_hostname"), ("inventory host", "host"),
    ("GPU", "gpu_name"), ("NVIDIA driver", "gpu_driver_version"), ("CUDA (driver)", "cuda_driver_version"),
    ("kernel", "host_kernel"), ("engine", "host_engine_version"),
]
WORKLOAD_FIELDS = ("n", "iters", "repeats", "dtype", "seed")
#: Facts of one (framework, device) document: label and merged column.
DOCUMENT_FIELDS = [
    ("version", "framework_version"), ("python", "python_version"), ("numpy", "numpy_version"), ("BLAS", "blas"),
    ("image", "image_tag"), ("image digest", "image_digest"), ("CUDA runtime", "cuda_runtime"),
]


def host_fact(df: pd.DataFrame) -> str:
    """The engine's hostname (``provenance.host``); documents that name none fall back to the hostname the
    solver process saw (inside a container: the container's own), and the row says which it is."""
    engine = df["host_hostname"].map(text) != ""
    parts = []
    if engine.any():
        parts.append(f"{distinct(df.loc[engine, 'host_hostname'])} (the Docker engine's hostname)")
    if (~engine).any():
        parts.append(f"{distinct(df.loc[~engine, 'hostname'])} (the solver process's hostname: "
                     "the document names no engine hostname)")
    return "; ".join(parts)


# ---------------------------------------------------------------------------------------------- loading


def load_labeled(paths: Sequence[Path | str]) -> tuple[pd.DataFrame, list[str]]:
    """Merged rows plus a ``run`` label column, and the labels in input order.

    The label is the run_id; when two inputs carry the same run_id (a copied directory, a rerun with the
    same id) the input path is added so neither run silently absorbs the other.
    """
    frames = []
    for index, path in enumerate(paths):
        df = load_runs([path])
        if df.empty:
            raise InvalidOptions(f"{path}: no valid result documents",
                                 fix="give a run directory written by `gdbench run` or a file from `gdbench merge`")
        df["_input"], df["_path"] = index, str(path)
        frames.append(df)
    df = pd.concat(frames, ignore_index=True)
    df["run_id"] = df["run_id"].astype(str)
    owners = df.groupby("run_id")["_input"].nunique()
    labels: dict[tuple[int, str], str] = {}
    for (index, run_id), group in df.groupby(["_input", "run_id"], sort=False):
        label = run_id if owners[run_id] == 1 else f"{run_id} ({group['_path'].iloc[0]})"
        while label in labels.values():  # the same path given twice
            label += " (again)"
        labels[(int(index), str(run_id))] = label
    df["run"] = [labels[(int(i), r)] for i, r in zip(df["_input"], df["run_id"], strict=True)]
    return df.drop(columns=["_input", "_path"]), list(labels.values())


def document_keys(df: pd.DataFrame) -> list[tuple[str, str]]:
    """(framework, device) of every document, in the same order as ``row_keys``."""
    keys = {(str(f), str(d)) for f, d in zip(df["framework"], df["device"], strict=True)}
    return sorted(keys, key=lambda k: (rank(k[0], FRAMEWORKS), rank(k[1], DEVICE_ORDER)))


def dims_of(df: pd.DataFrame) -> list[int]:
    return sorted({int(d) for d in df["dim"].dropna()})


def rows_that_ran(df: pd.DataFrame) -> pd.DataFrame:
    """The rows that ran, for workload facts; rows that never ran still carry the requested parameters."""
    ok = df[df["status"] == "ok"]
    return ok if not ok.empty else df


def timed(rec: dict[str, Any] | None) -> bool:
    """A row that passed its checks and carries a time."""
    return rec is not None and rec.get("status") == "ok" and num(rec.get("time_per_iter_s")) is not None


# ---------------------------------------------------------------------------------------------- text


def number_text(value: Any) -> str:
    """A value as text; integer columns holding a NaN come back as floats, and 2.0 threads reads as a mistake."""
    return text(value)


def distinct(series: pd.Series, split: str | None = None) -> str:
    """The distinct values of a column joined with "; " ("—" if none); ``split`` first splits joined lists."""
    values = {number_text(v) for v in series.dropna() if str(v) != ""}
    if split is not None:
        values = {part for v in values for part in v.split(split)}
    return "; ".join(sorted(values)) if values else "—"
