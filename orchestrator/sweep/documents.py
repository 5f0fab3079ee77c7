"""The boundary between a container's output and the run directory.

Whatever a container prints is checked with ``solvers.schema.loads``; anything else (truncated, not JSON,
the wrong framework, a crash with no document) becomes a schema-valid ``failed`` document carrying the
reason and the tail of stderr, so it shows up in the results as a failure and never as a number.
"""

from __future__ import annotations

import signal
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from orchestrator.sweep.spec import RunSpec
from solvers import schema

if TYPE_CHECKING:
    from orchestrator.backends.result import ContainerResult
    from orchestrator.sweep.planner import Planned

STDERR_TAIL_CHARS = 4000
STDOUT_HEAD_LINES = 5


def tail(text: str, limit: int = STDERR_TAIL_CHARS) -> str:
    return text[-limit:] if len(text) > limit else text


def head_lines(text: str, lines: int = STDOUT_HEAD_LINES) -> str:
    first = text.strip().splitlines()[:lines]
    shown = " | ".join(line[:200] for line in first)
    return shown or "<nothing>"


def synthetic_document(spec: RunSpec, status: str, reason: str, stderr_tail: str | None = None,
                       framework_version: str | None = None) -> dict[str, Any]:
    """A document for a container that produced none (or an unusable one): every row carries the reason."""
    sampling = schema.sampling_record(min_repeats=spec.repeats, max_repeats=spec.max_repeats,
                                      ci_width=spec.ci_width, budget_s=spec.row_budget_s)
    problem = schema.problem_record(n=spec.n, dims=spec.dims, iters=spec.iters, repeats=spec.repeats,
                                    dtype=spec.dtype, seed=spec.seed, lr=spec.lr, sampling=sampling)
    provenance = {
        "framework": {"name": spec.framework, "version": framework_version},
        "python": {}, "platform": {}, "threads": {"requested": spec.threads, "cpuset": spec.cpuset},
        "blas": None, "gpu": None, "image": None,
        "timestamp_utc": schema.utc_now(),
        "hostname": socket.gethostname(),
        "written_by": "orchestrator",
    }
    return schema.not_run_document(framework=spec.framework, device=spec.device, status=status, reason=reason,
                                   problem=problem, variants=list(spec.variants), provenance=provenance,
                                   stderr_tail=stderr_tail)


@dataclass
class Accepted:
    """The outcome of checking one container's output."""

    doc: dict[str, Any]
    rejection: str | None  # why the output was rejected, None when the solver's own document was kept


def accept_output(spec: RunSpec, stdout: str, stderr: str, exit_code: int | None, *, oom: bool = False,
                  timed_out: bool = False, framework_version: str | None = None,
                  timeout_reason: str | None = None) -> Accepted:
    """Turn what a container printed into the document to store, rejecting anything not trustworthy.

    A timeout or OOM kill discards even a complete-looking stdout: the process did not finish on its own.
    """
    err_tail = tail(stderr) or None

    def failed(reason: str) -> Accepted:
        return Accepted(synthetic_document(spec, "failed", reason, err_tail, framework_version), reason)

    if timed_out:
        return failed(timeout_reason or f"timed out after {spec.timeout_s:g} s; container killed")
    if oom:
        return failed(f"out of memory: killed at mem_limit {spec.mem_limit} (OOMKilled)")
    if not stdout.strip():
        if exit_code == 0:
            return failed("exited 0 but printed no document")
        return failed(f"crashed with exit code {exit_code} and no document" + _signal_note(exit_code))
    try:
        doc = schema.loads(stdout)
    except schema.SchemaError as exc:
        return failed(f"output rejected ({exc}); exit code {exit_code}; it printed: {head_lines(stdout)}")
    if doc["status"] == "invalid" and "unrecognized arguments" in str(doc.get("error")):
        # Options this gdbench passes that the image's solvers predate: the image, not the request, is old.
        return failed(f"{doc['error']}: the image was built from an older gdbench; rebuild it "
                      f"(gdbench images build {spec.framework})")
    if (doc["framework"], doc["device"]) != (spec.framework, spec.device):
        return failed(f"output rejected: document is for {doc['framework']}/{doc['device']}, "
                      f"expected {spec.framework}/{spec.device}")
    if doc["problem"]["dims"] != list(spec.dims) and doc["status"] != "invalid":
        return failed(f"output rejected: document covers dims {doc['problem']['dims']}, expected {spec.dims}")
    return Accepted(doc, None)


def _signal_note(exit_code: int | None) -> str:
    if exit_code is not None and exit_code > 128:
        try:
            return f" (killed by {signal.Signals(exit_code - 128).name})"
        except ValueError:
            return ""
    return ""


def attach_provenance(doc: dict[str, Any], image: dict[str, Any] | None, host_record: dict[str, Any],
                      gpu_request: list[str] | str | None = None) -> dict[str, Any]:
    """Add what only the orchestrator knows: the image it started, the host it ran on, the GPUs it asked for."""
    prov = doc["provenance"]
    if image is not None:
        prov["image"] = {**(prov.get("image") or {}), **image}
    prov["host"] = host_record
    if gpu_request is not None:
        prov["gpu_request"] = gpu_request
    return doc


def _row_stats(doc: dict[str, Any]) -> dict[str, Any]:
    rows = doc["results"]
    ok = [r for r in rows if r["status"] == "ok"]
    best_dim = max((r["dim"] for r in ok), default=None)
    at_max = [r["time_per_iter_s"] for r in ok if r["dim"] == best_dim]
    return {"rows": len(rows), "rows_ok": len(ok), "best_dim": best_dim,
            "best_time_per_iter_s": min(at_max) if at_max else None}


def doc_reason(doc: dict[str, Any]) -> str | None:
    """The document's error, else the first reason of a row that did not pass (e.g. "ran in float32 …")."""
    if doc.get("error"):
        return str(doc["error"])
    bad = [r for r in doc["results"] if r["status"] != "ok"]
    if not bad:
        return None
    first = bad[0]
    return f"{len(bad)}/{len(doc['results'])} rows {first['status']}; first: {first['variant']} d={first['dim']}: " \
           f"{first['reason']}"


def container_record(item: Planned, status: str, reason: str | None, result: ContainerResult | None = None,
                     doc: dict[str, Any] | None = None, host_load: dict[str, Any] | None = None) -> dict[str, Any]:
    """The manifest's record of one container: what it was, what became of it, where its time went."""
    spec = item.spec
    rec: dict[str, Any] = {
        "key": spec.key, "framework": spec.framework, "framework_version": spec.framework_version,
        "device": spec.device, "flavour": spec.flavour, "host": spec.host, "status": status, "reason": reason,
        "document": f"{spec.key}.json" if doc is not None else None,
        "image": item.image.provenance() if item.image else ({"tag": spec.image} if spec.image else None),
        "resumed": item.resumed,
    }
    if item.gpu:
        rec["gpus"] = item.gpu_request
    if result is not None:
        rec.update(exit_code=result.exit_code, oom_killed=result.oom_killed, timed_out=result.timed_out,
                   container=result.name, user=result.user, timings=result.timings())
    if host_load is not None:
        rec["host_load"] = host_load
    if doc is not None:
        rec.update(_row_stats(doc))
    return rec
