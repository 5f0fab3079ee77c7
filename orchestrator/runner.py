"""A sweep: plan every (framework, device) container, check everything up front, then run them one by one.

Running follows asv's rule: a crash, timeout, OOM or unreadable output becomes a stored ``failed`` document
and the sweep goes on. Each document is written atomically as soon as it arrives; the manifest is rewritten
after every container, so an interrupted run directory is still a valid, resumable record. The runner only
sees the ``Backend`` protocol and the ``RunDir``; it never asks where containers run.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from solvers import schema

from . import documents, hostload
from .backend import open_backend
from .container_result import ContainerResult
from .errors import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_UNAVAILABLE,
    GdbenchError,
    GpuUnavailable,
    Interrupted,
    InvalidOptions,
)
from .planner import Planned, Sweep, new_run_id, plan
from .progress import SweepProgress, summary_table
from .rundir import RunDir
from .spec import SweepOptions

#: Start-up overhead goal per container, beyond the framework's own import time (reported, not asserted).
OVERHEAD_GOAL_S = 2.0


class SignalGuard:
    """While a sweep runs, the first SIGINT/SIGTERM interrupts it; any later one is counted, not obeyed.

    The first signal unwinds like Ctrl-C (``KeyboardInterrupt`` / ``Interrupted``) so the running container is
    killed and removed and the manifest says ``interrupted``. A second Ctrl-C, or a supervisor repeating its
    SIGTERM, must not cut that cleanup short: it would leave a manifest saying ``running`` and a traceback.
    """

    def __init__(self) -> None:
        self.armed = True  # False once the sweep is past the point where an interrupt could stop anything

    def handler(self, signum: int, _frame: Any) -> None:
        if self.armed:
            self.armed = False
            raise KeyboardInterrupt if signum == signal.SIGINT else Interrupted(signum)


@contextlib.contextmanager
def signals_as_interrupts() -> Iterator[SignalGuard]:
    """Install a ``SignalGuard`` for SIGINT and SIGTERM (main thread only), restoring the old handlers after."""
    guard = SignalGuard()
    previous: dict[int, Any] = {}
    try:
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, guard.handler)
    except ValueError:  # not the main thread: leave signals alone
        pass
    try:
        yield guard
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


def _row_stats(doc: dict[str, Any]) -> dict[str, Any]:
    rows = doc["results"]
    ok = [r for r in rows if r["status"] == "ok"]
    best_dim = max((r["dim"] for r in ok), default=None)
    at_max = [r["time_per_iter_s"] for r in ok if r["dim"] == best_dim]
    return {"rows": len(rows), "rows_ok": len(ok), "best_dim": best_dim,
            "best_time_per_iter_s": min(at_max) if at_max else None}


def _doc_reason(doc: dict[str, Any]) -> str | None:
    """The document's error, else the first reason of a row that did not pass (e.g. "ran in float32 …")."""
    if doc.get("error"):
        return str(doc["error"])
    bad = [r for r in doc["results"] if r["status"] != "ok"]
    if not bad:
        return None
    first = bad[0]
    return f"{len(bad)}/{len(doc['results'])} rows {first['status']}; first: {first['variant']} d={first['dim']}: " \
           f"{first['reason']}"


class SweepRunner:
    """Runs a planned sweep into its run directory."""

    def __init__(self, sweep: Sweep, progress: SweepProgress) -> None:
        self.sweep = sweep
        self.progress = progress
        self.records: list[dict[str, Any]] = []
        self.manifest: dict[str, Any] = {}
        self.load = hostload.LoadProbe(sweep.backend.on_this_machine)

    # ---------------------------------------------------------------- manifest
    def _write_manifest(self, status: str) -> None:
        s = self.sweep
        timed = [r["timings"]["overhead_s"] for r in self.records
                 if s.backend.reports_startup_overhead and r.get("timings")
                 and r["timings"].get("overhead_s") is not None]
        self.manifest.update({
            "run_id": s.run_id,
            "status": status,
            "finished_utc": schema.utc_now() if status != "running" else None,
            "backend": s.backend.name,
            "compose": s.backend.compose_path,
            "sweep": s.opts.to_dict(),
            "host": s.host_record,
            "notes": s.notes,
            "containers": self.records,
            "overhead": {"goal_s": OVERHEAD_GOAL_S, "mean_s": sum(timed) / len(timed) if timed else None,
                         "max_s": max(timed) if timed else None, "containers": len(timed),
                         "definition": "container wall time (create → document in hand) minus the solver "
                                       "process's own lifetime (daemon StartedAt → FinishedAt)"},
        })
        s.run_dir.write_manifest(self.manifest)

    # -------------------------------------------------------------------- run
    def run(self) -> int:
        s = self.sweep
        self.manifest = {"run_id": s.run_id, "started_utc": schema.utc_now()}
        if s.run_dir.holds_run():
            with contextlib.suppress(GdbenchError):
                prev = s.run_dir.read_manifest()
                self.manifest["started_utc"] = prev.get("started_utc") or self.manifest["started_utc"]
                self.manifest["resumed_utc"] = schema.utc_now()
        self._write_manifest("running")
        if s.backend.on_this_machine and (busy := hostload.busy_warning(hostload.loadavg(), s.opts.cpuset or [])):
            self.progress.note(busy)
        interrupted: BaseException | None = None
        with signals_as_interrupts() as guard:
            try:
                for item in s.planned:
                    done = len(self.records)
                    try:
                        self._run_one(item)
                    except (KeyboardInterrupt, Interrupted):
                        if len(self.records) == done:
                            self.records.append(self._record(item, "interrupted", "interrupted before it finished"))
                        self.progress.finish("interrupted")
                        raise
                    finally:
                        self._write_manifest("running")
            except (KeyboardInterrupt, Interrupted) as exc:
                interrupted = exc
            guard.armed = False  # from here on a signal changes nothing: finish the record
            if interrupted is not None:
                s.backend.remove_run(s.run_id)
            self._write_manifest("interrupted" if interrupted else "complete")
            self.progress.progress.stop()
            self.progress.console.print(summary_table(self.records))
            self._print_overhead()
            if interrupted is not None:
                self.progress.note(f"interrupted; documents so far are in {s.run_dir.path} "
                                   f"(continue with: gdbench run --resume {s.run_dir.path})", style="magenta")
        if interrupted is not None:
            return EXIT_INTERRUPTED
        statuses = {r["status"] for r in self.records}
        if "failed" in statuses or "invalid" in statuses:
            return EXIT_FAILED
        return EXIT_UNAVAILABLE if "unavailable" in statuses else EXIT_OK

    def _print_overhead(self) -> None:
        ov = self.manifest.get("overhead") or {}
        if ov.get("mean_s") is None or not self.sweep.backend.reports_startup_overhead:
            return
        verdict = "within" if ov["max_s"] < OVERHEAD_GOAL_S else "ABOVE"
        self.progress.note(f"container start-up overhead (wall − process): mean {ov['mean_s']:.2f} s, "
                           f"max {ov['max_s']:.2f} s over {ov['containers']} container(s), {verdict} the "
                           f"{OVERHEAD_GOAL_S:g} s goal", style="cyan")

    def _record(self, item: Planned, status: str, reason: str | None, result: ContainerResult | None = None,
                doc: dict[str, Any] | None = None, host_load: dict[str, Any] | None = None) -> dict[str, Any]:
        spec = item.spec
        rec: dict[str, Any] = {
            "key": spec.key, "framework": spec.framework, "framework_version": spec.framework_version,
            "device": spec.device, "flavour": spec.flavour, "status": status, "reason": reason,
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

    def _store(self, item: Planned, doc: dict[str, Any]) -> None:
        documents.attach_provenance(doc, item.image_provenance(), self.sweep.host_record, item.gpu_request)
        self.sweep.run_dir.write_document(item.spec.key, doc)

    def _not_run(self, item: Planned, status: str, reason: str, *, refused: bool = False,
                 host_load: dict[str, Any] | None = None) -> None:
        """Store a document for a container decided not to run, or one the engine refused (reason shown)."""
        doc = documents.synthetic_document(item.spec, status, reason, None, item.framework_version)
        self._store(item, doc)
        self.progress.finish(status, reason if refused else "")
        self.records.append(self._record(item, status, reason, doc=doc, host_load=host_load))

    def _run_one(self, item: Planned) -> None:
        spec = item.spec
        self.progress.start(spec.key, len(spec.dims) * len(spec.variants))
        if item.resumed:
            doc = self.sweep.run_dir.read_document(spec.key)
            self.progress.finish("skipped", "already in the run directory (resumed)")
            rec = self._record(item, doc["status"], doc.get("error"), doc=doc)
            rec["status_note"] = "resumed"
            self.records.append(rec)
            return
        if item.preflight is not None:
            self._not_run(item, *item.preflight)
            return
        self.load.start()
        try:
            result = self.sweep.backend.run(spec, self.progress.line)
        except GdbenchError as exc:
            status = "unavailable" if isinstance(exc, GpuUnavailable) else "failed"
            self._not_run(item, status, exc.message, refused=True, host_load=self.load.finish(None))
            return
        host_load = self.load.finish(result)
        accepted = documents.accept_output(spec, result.stdout, result.stderr, result.exit_code,
                                           oom=result.oom_killed, timed_out=result.timed_out,
                                           framework_version=item.framework_version)
        doc = accepted.doc
        self._store(item, doc)
        reason = accepted.rejection or _doc_reason(doc)
        self.progress.finish(doc["status"], reason or "")
        self.records.append(self._record(item, doc["status"], reason, result, doc, host_load))


def _holds_a_run(run_dir: RunDir) -> InvalidOptions:
    return InvalidOptions(f"{run_dir.path} already holds a gdbench run; continue it with --resume {run_dir.path} "
                          "or choose another --out")


def run_sweep(opts: SweepOptions, out_dir: Path | None, *, resume: bool = False, compose_path: str | None = None,
              progress: SweepProgress | None = None, docker_url: str | None = None) -> tuple[int, Path]:
    """Validate, lock the run directory, plan, run. Returns (exit code, run directory).

    Options are checked before Docker is contacted and before the directory is created; images, compose
    services and the cpuset are checked before the first container is created.
    """
    progress = progress or SweepProgress()
    opts.check()
    run_id = None
    if resume:
        assert out_dir is not None
    elif out_dir is None:
        run_id = new_run_id()
        out_dir = Path("results") / run_id
    run_dir = RunDir(out_dir)
    if not resume and run_dir.holds_run():
        raise _holds_a_run(run_dir)
    backend = open_backend(opts.backend, compose_path=compose_path, docker_url=docker_url)
    try:
        with run_dir.locked():
            if not resume and run_dir.holds_run():  # a run that held the lock finished since the check above
                raise _holds_a_run(run_dir)
            if resume:
                run_id = run_dir.run_id()
            sweep = plan(opts, run_dir, backend, run_id=run_id, resume=resume, progress=progress)
            for note in sweep.notes:
                progress.note(note, style="dim")
            with progress:
                return SweepRunner(sweep, progress).run(), out_dir
    finally:
        backend.close()
