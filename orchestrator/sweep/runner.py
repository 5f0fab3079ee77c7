"""A sweep: plan every container, check everything up front, then run them — one at a time per machine.

Running follows asv's rule: a crash, timeout, OOM or unreadable output becomes a stored ``failed`` document
and the sweep goes on. Each document is written atomically as soon as it arrives; the manifest is rewritten
after every container, so an interrupted run directory is still a valid, resumable record. The runner only
sees the ``Backend`` protocol and the ``RunDir``; it never asks where containers run. One cohesive boundary
(running planned sweeps: ``slots`` workers per host, the signal guard, one manifest), hence its length.
"""

from __future__ import annotations

import collections
import contextlib
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.backends import registry
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
from orchestrator.sweep.planner import Planned, Sweep, new_run_id, plan_hosts
from orchestrator.sweep.progress import HostView, SweepProgress, summary_table
from orchestrator.sweep.rundir import Manifest, RunDir
from orchestrator.sweep.signals import signals_as_interrupts
from solvers import schema

if TYPE_CHECKING:
    from orchestrator.sweep.request import RunRequest

#: Start-up overhead goal per container, beyond the framework's own import time (reported, not asserted).
OVERHEAD_GOAL_S = 2.0


class _Stopped(Exception):
    """Inside a host's worker thread: the sweep was interrupted while this container ran."""


class SweepRunner:
    """Runs planned sweeps — one per host — into one run directory.

    Each host runs up to ``backend.slots`` containers at once (1 for one machine: strictly one after another;
    a scheduler holding several machines says more), hosts in parallel. One worker in all runs in the calling
    thread, as a single-host sweep always has. Only the main thread receives signals; it then stops every
    worker and removes every host's running containers.
    """

    def __init__(self, sweeps: Sweep | list[Sweep], progress: SweepProgress, request: RunRequest | None = None) -> None:
        self.sweeps = sweeps if isinstance(sweeps, list) else [sweeps]
        self.sweep = self.sweeps[0]
        self.progress = progress
        self.request = request
        self.records: list[dict[str, Any]] = []
        self.manifest = Manifest()
        self._lock = threading.RLock()  # records and manifest, shared by the workers
        self._stop = threading.Event()
        #: The item each worker is running now: an interrupt records it even if its worker never does.
        self._current: dict[str, Planned] = {}
        self._status = "running"  # the manifest's status; only the main thread changes it
        several = len(self.sweeps) > 1
        self._views = {(id(s), slot): progress.view(_view_name(s, slot, several))
                       for s in self.sweeps for slot in range(_slots(s))}

    # ---------------------------------------------------------------- manifest
    def _write_manifest(self, status: str | None = None) -> None:
        """Persist the records under ``status``, or under the sweep's status so far when None.

        Workers pass None: a worker that wakes after the sweep was finished (its engine answered late) adds
        its record but cannot turn an interrupted or complete manifest back into a running one.
        """
        with self._lock:
            if status is not None:
                self._status = status
            status = self._status
            s = self.sweep
            timed = [r["timings"]["overhead_s"] for r in self.records
                     if s.backend.reports_startup_overhead and r.get("timings")
                     and r["timings"].get("overhead_s") is not None]
            fleet = self.request.fleet if self.request else None
            asked = self.request.opts if self.request else s.opts
            self.manifest = self.manifest.with_(
                run_id=s.run_id, status=status, finished_utc=schema.utc_now() if status != "running" else None,
                backend=s.backend.name, backend_opts=dict(self.request.backend_opts if self.request else {}),
                compose=s.backend.compose_path,
                # A fleet keeps the options as asked: each host resolves its own cpuset and threads (from its
                # CPUs and its inventory table), again on --resume; one host keeps them resolved.
                sweep=(asked if fleet is not None else s.opts).to_dict(),
                host=s.host_record.to_dict(), notes=[n for sw in self.sweeps for n in sw.notes],
                containers=list(self.records),
                overhead={"goal_s": OVERHEAD_GOAL_S, "mean_s": sum(timed) / len(timed) if timed else None,
                          "max_s": max(timed) if timed else None, "containers": len(timed),
                          "definition": "container wall time (create → document in hand) minus the solver "
                                        "process's own lifetime (daemon StartedAt → FinishedAt)"},
                fleet=fleet,
                hosts={sw.backend.host: {**sw.host_record.to_dict(), "kind": sw.backend.name,
                                         "threads": sw.opts.threads, "cpuset": sw.opts.cpuset}
                       for sw in self.sweeps} if fleet is not None else None)
            s.run_dir.write_manifest(self.manifest)

    # -------------------------------------------------------------------- run
    def run(self) -> int:
        s = self.sweep
        self.manifest = Manifest(run_id=s.run_id, started_utc=schema.utc_now())
        if s.run_dir.holds_run():
            with contextlib.suppress(GdbenchError):
                prev = s.run_dir.manifest()
                self.manifest = self.manifest.with_(started_utc=prev.started_utc or self.manifest.started_utc,
                                                    resumed_utc=schema.utc_now())
        self._write_manifest("running")
        for sw in self.sweeps:
            if sw.backend.on_this_machine and (busy := hostload.busy_warning(hostload.loadavg(),
                                                                             sw.opts.cpuset or [])):
                self._views[(id(sw), 0)].note(busy)
        interrupted: BaseException | None = None
        with signals_as_interrupts() as guard:
            try:
                self._run_workers()
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

    def _run_workers(self) -> None:
        """``slots`` workers per host pull that host's containers in plan order. One worker in all runs here, in
        the main thread; otherwise the main thread waits, and on a signal stops them all."""
        hosts = [_HostQueue(sw) for sw in self.sweeps]
        jobs = [(h, slot) for h in hosts for slot in range(_slots(h.sweep))]
        if len(jobs) == 1:
            self._work(*jobs[0])
            return
        errors: list[BaseException] = []

        def work(host: _HostQueue, slot: int) -> None:
            try:
                self._work(host, slot)
            except BaseException as exc:  # a bug in one worker must not vanish with its thread
                errors.append(exc)

        workers = [threading.Thread(target=work, args=(h, slot), daemon=True,
                                    name=f"gdbench-{h.sweep.backend.host}-{slot}") for h, slot in jobs]
        for w in workers:
            w.start()
        try:
            while any(w.is_alive() for w in workers):
                for w in workers:
                    w.join(timeout=0.2)
        except (KeyboardInterrupt, Interrupted):
            self._stop.set()
            for sw in self.sweeps:  # ends each host's running containers, so its workers return
                sw.backend.remove_run(sw.run_id)
            for w in workers:
                w.join(timeout=120)
            for item in list(self._current.values()):  # a worker still stuck, or one that died, recorded nothing
                self._record_interrupted(item)
            raise
        if errors:
            raise errors[0]

    def _work(self, host: _HostQueue, slot: int) -> None:
        """One worker: the host's next container until none is left; a lost host ends the rest unrun."""
        sweep = host.sweep
        view = self._views[(id(sweep), slot)]
        load = hostload.LoadProbe(sweep.backend.on_this_machine and _slots(sweep) == 1)
        me = f"{sweep.backend.host}#{slot}"
        while not self._stop.is_set() and (item := host.next()) is not None:
            try:
                if host.lost is not None and not item.resumed:
                    # No document: the run directory lacks it, so --resume runs it once the host is back.
                    view.start(item.spec.key, 1)
                    view.finish("unavailable", host.lost)
                    self._add(documents.container_record(item, "unavailable", host.lost))
                    continue
                self._current[me] = item
                lost = self._run_one(sweep, item, view, load)
                if lost is not None:
                    host.lost = lost
                self._current.pop(me, None)
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
                self.records.append(documents.container_record(item, "interrupted", "interrupted before it finished"))

    def _add(self, record: dict[str, Any]) -> None:
        with self._lock:
            self.records.append(record)

    def _print_overhead(self) -> None:
        ov = self.manifest.overhead or {}
        if ov.get("mean_s") is None or not self.sweep.backend.reports_startup_overhead:
            return
        verdict = "within" if ov["max_s"] < OVERHEAD_GOAL_S else "ABOVE"
        self.progress.note(f"container start-up overhead (wall − process): mean {ov['mean_s']:.2f} s, "
                           f"max {ov['max_s']:.2f} s over {ov['containers']} container(s), {verdict} the "
                           f"{OVERHEAD_GOAL_S:g} s goal", style="cyan")

    def _store(self, sweep: Sweep, item: Planned, doc: dict[str, Any]) -> None:
        documents.attach_provenance(doc, item.image_provenance(), sweep.host_record.to_dict(), item.gpu_request)
        sweep.run_dir.write_document(item.spec.key, doc)

    def _not_run(self, sweep: Sweep, item: Planned, view: HostView, status: str, reason: str, *,
                 refused: bool = False, host_load: dict[str, Any] | None = None) -> None:
        """Store a document for a container decided not to run, or one the engine refused (reason shown)."""
        doc = documents.synthetic_document(item.spec, status, reason, None, item.framework_version)
        self._store(sweep, item, doc)
        view.finish(status, reason if refused else "")
        self._add(documents.container_record(item, status, reason, doc=doc, host_load=host_load))

    def _run_one(self, sweep: Sweep, item: Planned, view: HostView, load: hostload.LoadProbe) -> str | None:
        """One container; returns why the host is lost when it stopped answering, else None."""
        spec = item.spec
        view.start(spec.key, len(spec.dims) * len(spec.variants))
        if item.resumed:
            doc = sweep.run_dir.read_document(spec.key)
            view.finish("skipped", "already in the run directory (resumed)")
            rec = documents.container_record(item, doc["status"], doc.get("error"), doc=doc)
            rec["status_note"] = "resumed"
            self._add(rec)
            return None
        if item.preflight is not None:
            self._not_run(sweep, item, view, *item.preflight)
            return None
        load.start()
        try:
            result = sweep.backend.run(spec, item.prepared, view.line)
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
                                           framework_version=item.framework_version,
                                           timeout_reason=result.timeout_reason)
        doc = accepted.doc
        self._store(sweep, item, doc)
        reason = accepted.rejection or documents.doc_reason(doc)
        view.finish(doc["status"], reason or "")
        self._add(documents.container_record(item, doc["status"], reason, result, doc, host_load))
        return None


def _holds_a_run(run_dir: RunDir) -> InvalidOptions:
    return InvalidOptions(f"{run_dir.path} already holds a gdbench run; continue it with --resume {run_dir.path} "
                          "or choose another --out")


class _HostQueue:
    """One host's planned containers, handed out in plan order to that host's workers."""

    def __init__(self, sweep: Sweep) -> None:
        self.sweep = sweep
        self._items = collections.deque(sweep.planned)
        self._lock = threading.Lock()
        #: Why the host is lost (it stopped answering), once one of its containers found out; None while it answers.
        self.lost: str | None = None

    def next(self) -> Planned | None:
        with self._lock:
            return self._items.popleft() if self._items else None


def _slots(sweep: Sweep) -> int:
    """Workers for one host: its backend's slots, never more than it has containers."""
    return max(1, min(sweep.backend.slots, len(sweep.planned)))


def _view_name(sweep: Sweep, slot: int, several_hosts: bool) -> str | None:
    if _slots(sweep) > 1:
        return f"{sweep.backend.host}#{slot + 1}"
    return sweep.backend.host if several_hosts else None


def run_sweep(request: RunRequest, progress: SweepProgress | None = None) -> tuple[int, Path]:
    """Validate, lock the run directory, open every host's backend, plan, run. Returns (exit code, run directory).

    Options are checked before any backend is contacted and before the directory is created; images, compose
    services and the cpuset are checked before the first container is created. Several hosts share this one
    run directory: one backend and one plan per host.
    """
    progress = progress or SweepProgress()
    opts = request.opts.check()
    run_id = None
    out_dir = request.out_dir
    if request.resume:
        assert out_dir is not None
    elif out_dir is None:
        run_id = new_run_id()
        out_dir = Path("results") / run_id
    run_dir = RunDir(out_dir)
    if not request.resume and run_dir.holds_run():
        raise _holds_a_run(run_dir)
    fleet = request.fleet is not None
    context = registry.OpenContext(compose_path=request.compose_path, note=progress.note, registry=request.registry,
                                   fleet=fleet, host_count=len(request.hosts))
    backends = registry.open_hosts(request.hosts, context)
    try:
        with run_dir.locked():
            if not request.resume and run_dir.holds_run():  # a run that held the lock finished since the check
                raise _holds_a_run(run_dir)
            if request.resume:
                run_id = run_dir.run_id()
            sweeps = plan_hosts(opts, run_dir, backends, request.hosts, run_id or new_run_id(), request.resume,
                                progress)
            for note in (n for sw in sweeps for n in sw.notes):
                progress.note(note, style="dim")
            with progress:
                return SweepRunner(sweeps, progress, request).run(), out_dir
    finally:
        for backend in backends:
            backend.close()
        context.close()
