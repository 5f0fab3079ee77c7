"""A sweep: plan every container, check everything up front, then run them — one at a time on each host.

Running follows asv's rule: a crash, timeout, OOM or unreadable output becomes a stored ``failed`` document
and the sweep goes on. Each document is written atomically as soon as it arrives; the manifest is rewritten
after every container, so an interrupted run directory is still a valid, resumable record. The runner only
sees the ``Backend`` protocol and the ``RunDir``; it never asks where containers run. One cohesive boundary
(running planned sweeps: a worker thread per host, the signal guard, one manifest), hence its length.
"""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.backends.base import open_backend
from orchestrator.backends.result import ContainerResult
from orchestrator.errors import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_UNAVAILABLE,
    GdbenchError,
    GpuUnavailable,
    HostLost,
    Interrupted,
    InvalidOptions,
)
from orchestrator.sweep import documents, hostload
from orchestrator.sweep.fleet import plan_hosts
from orchestrator.sweep.planner import Planned, Sweep, new_run_id, plan
from orchestrator.sweep.progress import HostView, SweepProgress, summary_table
from orchestrator.sweep.rundir import RunDir
from orchestrator.sweep.signals import signals_as_interrupts
from orchestrator.sweep.spec import SweepOptions
from solvers import schema

if TYPE_CHECKING:
    from orchestrator.hosts.inventory import HostEntry

#: Start-up overhead goal per container, beyond the framework's own import time (reported, not asserted).
OVERHEAD_GOAL_S = 2.0


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


class _Stopped(Exception):
    """Inside a host's worker thread: the sweep was interrupted while this container ran."""


class SweepRunner:
    """Runs planned sweeps — one per host — into one run directory.

    One host runs in the calling thread, as a single-host sweep always has. Several run in one worker thread
    per host: on a host containers stay strictly one at a time, while hosts proceed in parallel. Only the
    main thread receives signals; it then stops every worker and removes every host's running container.
    """

    def __init__(self, sweep: Sweep | list[Sweep], progress: SweepProgress,
                 fleet: dict[str, Any] | None = None, asked: SweepOptions | None = None) -> None:
        self.sweeps = sweep if isinstance(sweep, list) else [sweep]
        self.sweep = self.sweeps[0]
        self.progress = progress
        self.fleet = fleet
        #: A fleet's manifest keeps the options as asked: each host resolves its own cpuset and threads
        #: (from its CPUs and its inventory table), again on --resume.
        self.asked = asked
        self.records: list[dict[str, Any]] = []
        self.manifest: dict[str, Any] = {}
        self._lock = threading.RLock()  # records and manifest, shared by the hosts' workers
        self._stop = threading.Event()
        #: The item each host's worker is running now: an interrupt records it even if its worker never does.
        self._current: dict[int, Planned] = {}
        self._status = "running"  # the manifest's status; only the main thread changes it
        self._views = {id(s): progress.view(s.backend.host if len(self.sweeps) > 1 else None) for s in self.sweeps}

    # ---------------------------------------------------------------- manifest
    def _write_manifest(self, status: str | None = None) -> None:
        """Persist the records under ``status``, or under the sweep's status so far when None.

        Host workers pass None: a worker that wakes after the sweep was finished (its engine answered late)
        adds its record but cannot turn an interrupted or complete manifest back into a running one.
        """
        with self._lock:
            if status is not None:
                self._status = status
            status = self._status
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
                "sweep": (self.asked or s.opts).to_dict(),
                "host": s.host_record,
                "notes": [n for sw in self.sweeps for n in sw.notes],
                "containers": self.records,
                "overhead": {"goal_s": OVERHEAD_GOAL_S, "mean_s": sum(timed) / len(timed) if timed else None,
                             "max_s": max(timed) if timed else None, "containers": len(timed),
                             "definition": "container wall time (create → document in hand) minus the solver "
                                           "process's own lifetime (daemon StartedAt → FinishedAt)"},
            })
            if self.fleet is not None:
                self.manifest["fleet"] = self.fleet
                self.manifest["hosts"] = {sw.backend.host: {**sw.host_record, "threads": sw.opts.threads,
                                                            "cpuset": sw.opts.cpuset} for sw in self.sweeps}
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
        for sw in self.sweeps:
            if sw.backend.on_this_machine and (busy := hostload.busy_warning(hostload.loadavg(),
                                                                             sw.opts.cpuset or [])):
                self._views[id(sw)].note(busy)
        interrupted: BaseException | None = None
        with signals_as_interrupts() as guard:
            try:
                if len(self.sweeps) == 1:
                    self._run_host(s)
                else:
                    self._run_hosts()
            except (KeyboardInterrupt, Interrupted) as exc:
                interrupted = exc
            guard.armed = False  # from here on a signal changes nothing: finish the record
            if interrupted is not None:
                for sw in self.sweeps:
                    sw.backend.remove_run(s.run_id)
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

    def _run_hosts(self) -> None:
        """One worker thread per host; the main thread waits, and on a signal stops them all."""
        errors: list[BaseException] = []

        def work(sweep: Sweep) -> None:
            try:
                self._run_host(sweep)
            except BaseException as exc:  # a bug in one worker must not vanish with its thread
                errors.append(exc)

        workers = [threading.Thread(target=work, args=(sw,), name=f"gdbench-{sw.backend.host}", daemon=True)
                   for sw in self.sweeps]
        for w in workers:
            w.start()
        try:
            while any(w.is_alive() for w in workers):
                for w in workers:
                    w.join(timeout=0.2)
        except (KeyboardInterrupt, Interrupted):
            self._stop.set()
            for sw in self.sweeps:  # ends each host's running container, so its worker returns
                sw.backend.remove_run(sw.run_id)
            for w in workers:
                w.join(timeout=120)
            for item in list(self._current.values()):  # a worker still stuck, or one that died, recorded nothing
                self._record_interrupted(item)
            raise
        if errors:
            raise errors[0]

    def _run_host(self, sweep: Sweep) -> None:
        """The containers of one host, strictly one after another."""
        view = self._views[id(sweep)]
        load = hostload.LoadProbe(sweep.backend.on_this_machine)
        lost: str | None = None
        for item in sweep.planned:
            if self._stop.is_set():
                return
            try:
                if lost is not None and not item.resumed:
                    # No document: the run directory lacks it, so --resume runs it once the host is back.
                    view.start(item.spec.key, 1)
                    view.finish("unavailable", lost)
                    self._add(self._record(item, "unavailable", lost))
                    continue
                self._current[id(sweep)] = item
                lost = self._run_one(sweep, item, view, load)
                self._current.pop(id(sweep), None)
            except (KeyboardInterrupt, Interrupted, _Stopped) as exc:
                self._record_interrupted(item)
                view.finish("interrupted")
                if isinstance(exc, _Stopped):
                    return
                raise
            finally:
                self._write_manifest()

    def _record_interrupted(self, item: Planned) -> None:
        """Record ``item`` as interrupted unless it has a record: its worker and the main thread may both try."""
        with self._lock:
            if not any(r["key"] == item.spec.key for r in self.records):
                self.records.append(self._record(item, "interrupted", "interrupted before it finished"))

    def _add(self, record: dict[str, Any]) -> None:
        with self._lock:
            self.records.append(record)

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

    def _store(self, sweep: Sweep, item: Planned, doc: dict[str, Any]) -> None:
        documents.attach_provenance(doc, item.image_provenance(), sweep.host_record, item.gpu_request)
        sweep.run_dir.write_document(item.spec.key, doc)

    def _not_run(self, sweep: Sweep, item: Planned, view: HostView, status: str, reason: str, *,
                 refused: bool = False, host_load: dict[str, Any] | None = None) -> None:
        """Store a document for a container decided not to run, or one the engine refused (reason shown)."""
        doc = documents.synthetic_document(item.spec, status, reason, None, item.framework_version)
        self._store(sweep, item, doc)
        view.finish(status, reason if refused else "")
        self._add(self._record(item, status, reason, doc=doc, host_load=host_load))

    def _run_one(self, sweep: Sweep, item: Planned, view: HostView, load: hostload.LoadProbe) -> str | None:
        """One container; returns why the host is lost when it stopped answering, else None."""
        spec = item.spec
        view.start(spec.key, len(spec.dims) * len(spec.variants))
        if item.resumed:
            doc = sweep.run_dir.read_document(spec.key)
            view.finish("skipped", "already in the run directory (resumed)")
            rec = self._record(item, doc["status"], doc.get("error"), doc=doc)
            rec["status_note"] = "resumed"
            self._add(rec)
            return None
        if item.preflight is not None:
            self._not_run(sweep, item, view, *item.preflight)
            return None
        load.start()
        try:
            result = sweep.backend.run(spec, view.line)
        except GdbenchError as exc:
            if self._stop.is_set():
                raise _Stopped from exc
            status = "unavailable" if isinstance(exc, GpuUnavailable) else "failed"
            self._not_run(sweep, item, view, status, exc.message, refused=True, host_load=load.finish(None))
            if isinstance(exc, HostLost):
                return f"not run: host {spec.host} was lost earlier in this sweep ({exc.message})"
            return None
        if self._stop.is_set():
            raise _Stopped
        host_load = load.finish(result)
        accepted = documents.accept_output(spec, result.stdout, result.stderr, result.exit_code,
                                           oom=result.oom_killed, timed_out=result.timed_out,
                                           framework_version=item.framework_version)
        doc = accepted.doc
        self._store(sweep, item, doc)
        reason = accepted.rejection or _doc_reason(doc)
        view.finish(doc["status"], reason or "")
        self._add(self._record(item, doc["status"], reason, result, doc, host_load))
        return None


def _holds_a_run(run_dir: RunDir) -> InvalidOptions:
    return InvalidOptions(f"{run_dir.path} already holds a gdbench run; continue it with --resume {run_dir.path} "
                          "or choose another --out")


def run_sweep(opts: SweepOptions, out_dir: Path | None, *, resume: bool = False, compose_path: str | None = None,
              progress: SweepProgress | None = None, docker_url: str | None = None,
              hosts: list[HostEntry] | None = None, fleet: dict[str, Any] | None = None,
              registry: str | None = None) -> tuple[int, Path]:
    """Validate, lock the run directory, plan, run. Returns (exit code, run directory).

    Options are checked before Docker is contacted and before the directory is created; images, compose
    services and the cpuset are checked before the first container is created. ``hosts`` (inventory
    entries) makes it a fleet sweep: one backend and one plan per host, all in this one run directory.
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
    if hosts is None:
        backends = [open_backend(opts.backend, compose_path=compose_path, docker_url=docker_url)]
    else:
        from orchestrator.sweep.fleet import open_backends

        backends = open_backends(hosts, compose_path, registry=registry, note=progress.note)
    try:
        with run_dir.locked():
            if not resume and run_dir.holds_run():  # a run that held the lock finished since the check above
                raise _holds_a_run(run_dir)
            if resume:
                run_id = run_dir.run_id()
            if hosts is None:
                sweeps = [plan(opts, run_dir, backends[0], run_id=run_id, resume=resume, progress=progress)]
            else:
                sweeps = plan_hosts(opts, run_dir, backends, hosts, run_id or new_run_id(), resume, progress)
            for note in (n for sw in sweeps for n in sw.notes):
                progress.note(note, style="dim")
            with progress:
                return SweepRunner(sweeps, progress, fleet, opts if hosts is not None else None).run(), out_dir
    finally:
        for backend in backends:
            backend.close()
