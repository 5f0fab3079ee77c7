"""The result document: defined once here, versioned, validated when written and when read.

Other tools (the orchestrator, reports) read these names; a document with another ``schema_version`` is
refused rather than guessed at.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 2
#: Versions this gdbench still reads; an older one is migrated on load (``migrate``), anything else refused.
READABLE_VERSIONS = (1, 2)
#: ``simulated``: ran and was checked under a device simulator (numba's CUDA simulator): no timing exists.
STATUSES = ("ok", "failed", "unavailable", "invalid", "simulated")
#: Marks on a row that ran. ``noisy``: its repeats spread beyond the documented threshold; ``unstable``: the
#: sync check's ratio came out above its upper bound (speed changed within the run; the time is kept);
#: ``retried``: the row is a fresh attempt after one that failed only a diagnostic.
FLAGS = ("noisy", "unstable", "retried")
NOISE_STD = 0.1

_num = {"type": ["number", "null"]}
_int = {"type": ["integer", "null"]}
_str = {"type": ["string", "null"]}
_obj = {"type": ["object", "null"]}

RESULT = {
    "type": "object",
    "required": [
        "dim", "variant", "status", "reason", "time_per_iter_s", "repeat_times_s", "compile_s", "max_rel_error",
    ],
    "properties": {
        "dim": {"type": ["integer", "null"]},
        "variant": {"type": "string"},
        "status": {"enum": list(STATUSES)},
        "reason": _str,
        "stderr_tail": _str,
        "time_per_iter_s": {"type": ["number", "null"], "exclusiveMinimum": 0},
        "median_s": _num,
        "min_s": _num,
        "cv": _num,
        "repeat_times_s": {"type": "array", "items": {"type": "number", "exclusiveMinimum": 0}},
        #: How the repeats were sampled: the rule (min/max repeats, interval width, budget) and why they stopped.
        "sampling": _obj,
        "compile_s": _num,
        "transfer_s": _num,
        "max_rel_error": _num,
        "tolerance": _num,
        "output_dtype": _str,
        #: The library and kernel the row's products ran on, as the process could read it (``solvers.kernels``).
        "kernel_path": _str,
        "sync_check": {
            "type": ["object", "null"],
            "required": ["iters", "ratio", "passed"],
            "properties": {"iters": {"type": "integer"}, "ratio": {"type": "number"}, "passed": {"type": "boolean"},
                           "unstable": {"type": "boolean"}},
        },
        "flags": {"type": "array", "items": {"enum": list(FLAGS)}},
        "iqr_rel": _num,
        "slope": _obj,
        "async_probe": _obj,
        "layout": _obj,
        "energy": _obj,
        "gpu_samples": _obj,
        "host_load": _obj,
        "peak_rss_bytes": _int,
        "peak_device_bytes": _int,
        "gpu_state_before": _obj,
        "gpu_state_after": _obj,
    },
    # A timing exists only for a run that passed its checks; anything else carries no number.
    "if": {"properties": {"status": {"const": "ok"}}},
    "then": {
        "properties": {
            "time_per_iter_s": {"type": "number"},
            "repeat_times_s": {"minItems": 1},
            "max_rel_error": {"type": "number"},
        }
    },
    # A failed row may keep the repeat times it measured (so its spread can be checked), never a time.
    "else": {"properties": {"time_per_iter_s": {"type": "null"}}},
}

#: Every field of a result row, in document order: the one list the solver, merge and the report derive from.
ROW_FIELDS: tuple[str, ...] = tuple(RESULT["properties"])

DOCUMENT = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "gdbench solver result",
    "type": "object",
    "required": ["schema_version", "framework", "device", "status", "problem", "provenance", "results"],
    "properties": {
        "schema_version": {"const": SCHEMA_VERSION},
        "framework": {"type": "string"},
        "device": {"type": "string"},
        "status": {"enum": list(STATUSES)},
        "error": _str,
        "problem": {
            "type": "object",
            "required": ["n", "dims", "iters", "repeats", "dtype", "seed", "lr"],
            "properties": {
                "n": {"type": "integer"},
                "dims": {"type": "array", "items": {"type": "integer"}},
                "iters": {"type": "integer"},
                "repeats": {"type": "integer"},
                "sampling": _obj,
                "dtype": {"type": "string"},
                "seed": {"type": "integer"},
                "lr": {"type": "number"},
            },
        },
        "provenance": {
            "type": "object",
            "required": ["framework", "python", "platform", "threads", "timestamp_utc", "hostname"],
            "properties": {
                "framework": {
                    "type": "object",
                    "required": ["name", "version"],
                    "properties": {"name": {"type": "string"}, "version": _str},
                },
                "python": {"type": "object"},
                "platform": {"type": "object"},
                "threads": {"type": "object"},
                "blas": {"type": ["array", "null"]},
                "gpu": _obj,
                "image": _obj,
                "timestamp_utc": {"type": "string"},
                "hostname": {"type": "string"},
            },
        },
        "results": {"type": "array", "items": RESULT},
        #: The memory floor measured in the same process at every d (same threads, same cpuset).
        "floor": {"type": ["array", "null"], "items": {"type": "object", "required": ["dim"]}},
    },
}


class SchemaError(ValueError):
    """A document that is not a valid gdbench result (wrong version, missing or mistyped fields)."""


def empty_row(dim: int, variant: str, status: str, reason: str | None) -> dict[str, Any]:
    """A row with every field present and nothing measured."""
    row: dict[str, Any] = dict.fromkeys(ROW_FIELDS)
    row.update(dim=dim, variant=variant, status=status, reason=reason, repeat_times_s=[], flags=[])
    return row


def not_run_row(dim: int, variant: str, status: str, reason: str) -> dict[str, Any]:
    """A row for a (dim, variant) that never ran: invalid input, unavailable framework/device/variant."""
    return empty_row(dim, variant, status, reason)


def utc_now() -> str:
    """The one timestamp format of documents and manifests: ISO 8601 to the second, UTC as ``Z``."""
    import datetime as dt

    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def problem_record(*, n: int, dims: list[int], iters: int, repeats: int, dtype: str, seed: int,
                   lr: float, sampling: dict[str, Any] | None = None) -> dict[str, Any]:
    """``repeats`` is the minimum number of timed repeats; ``sampling`` the whole rule (``timing.Sampling``)."""
    record = {"n": n, "dims": list(dims), "iters": iters, "repeats": repeats, "dtype": dtype, "seed": seed,
              "lr": lr, "noise_std": NOISE_STD}
    if sampling is not None:
        record["sampling"] = sampling
    return record


def sampling_record(*, min_repeats: int, max_repeats: int, ci_width: float, budget_s: float) -> dict[str, Any]:
    """The adaptive-repeats rule as documents record it (``problem.sampling``, each row's ``sampling``)."""
    return {"min_repeats": min_repeats, "max_repeats": max_repeats, "ci_width": ci_width,
            "budget_s": budget_s if math.isfinite(budget_s) else None}


def not_run_document(*, framework: str, device: str, status: str, reason: str, problem: dict[str, Any],
                     variants: list[str], provenance: dict[str, Any], stderr_tail: str | None = None
                     ) -> dict[str, Any]:
    """A document for a run that produced no usable rows: every (dim, variant) carries ``reason``."""
    rows = []
    for d in problem["dims"]:
        for v in variants:
            row = not_run_row(d, v, status, reason)
            row["stderr_tail"] = stderr_tail
            rows.append(row)
    return {"schema_version": SCHEMA_VERSION, "framework": framework, "device": device, "status": status,
            "error": reason, "problem": problem, "provenance": provenance, "results": rows}


def migrate(doc: dict[str, Any]) -> dict[str, Any]:
    """Bring a readable older document to ``SCHEMA_VERSION``.

    Version 1 → 2: rows gained optional diagnostics (``flags``, spread, slope, layout, energy) and a failed
    row may keep its repeat times; a version-1 row simply has none of them.
    """
    if doc.get("schema_version") == 1:
        doc = {**doc, "schema_version": 2,
               "results": [{**r, "flags": list(r.get("flags") or [])} for r in doc.get("results") or []]}
    return doc


def validate(doc: Any) -> dict[str, Any]:
    """Return ``doc`` if it is a valid result document, else raise ``SchemaError`` saying where it is wrong."""
    import jsonschema

    if not isinstance(doc, dict):
        raise SchemaError(f"result document must be a JSON object, got {type(doc).__name__}")
    version = doc.get("schema_version")
    if version != SCHEMA_VERSION:
        raise SchemaError(f"unsupported schema_version {version!r}; this gdbench reads version {SCHEMA_VERSION}"
                          + (" (load it with solvers.schema.loads, which migrates it)"
                             if version in READABLE_VERSIONS else ""))
    errors = sorted(jsonschema.Draft202012Validator(DOCUMENT).iter_errors(doc), key=lambda e: list(e.path))
    if errors:
        e = errors[0]
        where = "/".join(str(p) for p in e.path) or "<root>"
        raise SchemaError(f"invalid result document at {where}: {e.message}")
    return doc


def loads(text: str) -> dict[str, Any]:
    """The one loader: parse, migrate a readable older version, validate (the boundary check for any input)."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SchemaError(f"not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from exc
    if isinstance(doc, dict) and doc.get("schema_version") in READABLE_VERSIONS:
        doc = migrate(doc)
    return validate(doc)


def dumps(doc: dict[str, Any]) -> str:
    """Validate then serialise; nothing invalid is ever written."""
    return json.dumps(validate(doc), indent=2, sort_keys=False, allow_nan=False)


def write_atomic(path: str | Path, text: str) -> None:
    """Write to a temp file in the same directory, then rename: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o644)  # mkstemp makes 0600; results are meant to be read by others
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
