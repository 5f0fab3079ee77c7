"""A sweep: plan every (framework, device) container, check everything up front, then run them one by one.

Planning touches nothing that runs: it resolves compose services and images, the cpuset, GPU availability
and CUDA compatibility, so a bad option or a missing image stops the sweep before any container exists.
Running follows asv's rule: a crash, timeout, OOM or unreadable output becomes a stored ``failed`` document
and the sweep goes on. Each document is written atomically as soon as it arrives; the manifest is rewritten
after every container, so an interrupted run directory is still a valid, resumable record.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from solvers import schema
from solvers.metadata import collect_time

from . import documents, gpuhost
from .errors import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_UNAVAILABLE,
    GdbenchError,
    Interrupted,
    InvalidOptions,
    RunDirLocked,
)
from .merge import MANIFEST
from .outcome import ContainerResult
from .progress import SweepProgress, summary_table
from .spec import RunSpec, SweepOptions, framework_devices, host_cpus

if TYPE_CHECKING:
    from .compose import ComposeFile, Service
    from .dockerhost import DockerHost, ImageInfo

LOCK_NAME = ".gdbench.lock"
#: Start-up overhead goal per container, beyond the framework's own import time (reported, not asserted).
OVERHEAD_GOAL_S = 2.0


@dataclass
class Planned:
    """One container of the sweep, with everything decided before anything runs."""

    spec: RunSpec
    gpu: bool
    service: Service | None = None
    image: ImageInfo | None = None
    image_tag: str | None = None
    #: Decided up front: (status, reason) for a container that will not be started.
    preflight: tuple[str, str] | None = None
    resumed: bool = False


@dataclass
class Sweep:
    opts: SweepOptions
    run_id: str
    out_dir: Path
    planned: list[Planned]
    host: dict[str, Any]
    docker: DockerHost | None = None
    compose_path: str | None = None
    notes: list[str] = field(default_factory=list)


def new_run_id() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(3)


def host_record(docker_host: DockerHost | None, gpus: gpuhost.HostGpus) -> dict[str, Any]:
    """``provenance.host`` and ``manifest.host``: the Docker daemon's facts plus the host GPUs from NVML."""
    facts = docker_host.facts().to_dict() if docker_host else {}
    return {
        "docker_version": facts.get("docker_version"),
        "api_version": facts.get("api_version"),
        "storage_driver": facts.get("storage_driver"),
        "cgroup_version": facts.get("cgroup_version"),
        "cgroup_driver": facts.get("cgroup_driver"),
        "runtimes": facts.get("runtimes"),
        "nvidia_runtime": facts.get("nvidia_runtime"),
        "ncpu": facts.get("ncpu") or os.cpu_count(),
        "driver_version": gpus.driver_version,
        "cuda_driver_version": gpus.cuda_driver_version,
        "gpu_name": gpus.gpu_name,
        "gpu_count": len(gpus.gpus),
    }


def _existing_docs(out_dir: Path) -> dict[str, dict[str, Any]]:
    docs: dict[str, dict[str, Any]] = {}
    for path in out_dir.glob("*.json"):
        if path.name == MANIFEST:
            continue
        try:
            docs[path.stem] = schema.loads(path.read_text(encoding="utf-8"))
        except (schema.SchemaError, OSError, UnicodeDecodeError):
            continue
    return docs


def resume_options(out_dir: Path, given: dict[str, Any]) -> tuple[SweepOptions, str]:
    """The sweep of an earlier run in ``out_dir``; options given now must agree on everything that sets the numbers."""
    import json

    path = out_dir / MANIFEST
    if not path.is_file():
        raise InvalidOptions(f"--resume {out_dir}: no {MANIFEST} there (not a gdbench run directory)")
    manifest = json.loads(path.read_text(encoding="utf-8"))
    base = SweepOptions.from_dict(manifest.get("sweep") or {})
    clash = [f"--{k.replace('_', '-')} {given[k]!r} (run has {getattr(base, k)!r})"
             for k in SweepOptions.PROBLEM_FIELDS if given.get(k) is not None and given[k] != getattr(base, k)]
    if clash:
        raise InvalidOptions(f"--resume {out_dir}: options differ from the run being resumed: {'; '.join(clash)}")
    merged = {**base.to_dict(), **{k: v for k, v in given.items() if v is not None}}
    return SweepOptions.from_dict(merged), str(manifest.get("run_id") or out_dir.name)


def plan(opts: SweepOptions, out_dir: Path, *, run_id: str | None = None, resume: bool = False,
         compose: ComposeFile | None = None, docker_host: DockerHost | None = None,
         gpus: gpuhost.HostGpus | None = None, progress: SweepProgress | None = None) -> Sweep:
    """Check the whole sweep and decide each container's fate; raises ``GdbenchError`` on any blocker."""
    opts.check()
    gpus = gpus if gpus is not None else gpuhost.probe()
    local = opts.backend == "local"
    if not local and (compose is None or docker_host is None):
        raise GdbenchError("the docker backend needs the compose file and a Docker connection")
    available = host_cpus() if local else docker_host.cpus()  # type: ignore[union-attr]
    opts = opts.with_cpus(available)
    run_id = run_id or new_run_id()
    host_can_gpu = bool(gpus.gpus) if local else docker_host.facts().nvidia_runtime  # type: ignore[union-attr]
    existing = _existing_docs(out_dir) if resume else {}
    notes: list[str] = []
    planned: list[Planned] = []
    gpu_line_said = False
    for fw in opts.frameworks:
        offered = framework_devices(fw)
        devices: list[str] = []
        for d in opts.devices:
            if d == "auto":
                d = "gpu" if host_can_gpu and "gpu" in offered else "cpu"
            if d not in offered:
                notes.append(f"{fw} has no {d} backend; skipped")
                continue
            if d not in devices:
                devices.append(d)
        for device in devices:
            gpu = device == "gpu"
            flavour = (opts.flavour or ("cuda" if gpu else "cpu")) if "gpu" in offered else "cpu"
            service = compose.service_for(fw, flavour) if compose else None
            spec = RunSpec.from_sweep(opts, fw, device, service.image if service else None, flavour, run_id)
            item = Planned(spec=spec, gpu=gpu, service=service, image_tag=service.image if service else None)
            prior = existing.get(spec.key)
            if prior is not None and prior["status"] != "failed":
                item.resumed = True
            elif gpu and not host_can_gpu:
                item.preflight = ("unavailable", _no_gpu_reason(local, docker_host, gpus))
                if not gpu_line_said and progress:
                    progress.note(item.preflight[1])
                gpu_line_said = True
            elif not local:
                assert docker_host is not None and service is not None
                item.image = docker_host.require_image(service)
                if gpu:
                    why = gpuhost.cuda_incompatibility(service.image, item.image.cuda_version, gpus)
                    if why:
                        item.preflight = ("unavailable", why)
                        if progress:
                            progress.note(why)
            planned.append(item)
    if not planned:
        raise InvalidOptions("nothing to run: no framework offers the requested device(s)"
                             + (f" ({'; '.join(notes)})" if notes else ""))
    return Sweep(opts=opts, run_id=run_id, out_dir=out_dir, planned=planned,
                 host=host_record(docker_host, gpus), docker=docker_host,
                 compose_path=str(compose.path) if compose else None, notes=notes)


def _no_gpu_reason(local: bool, docker_host: DockerHost | None, gpus: gpuhost.HostGpus) -> str:
    if local:
        return f"GPU requested but this machine has no usable NVIDIA GPU: {gpus.error or 'NVML lists no GPUs'}"
    facts = docker_host.facts() if docker_host else None
    runtimes = ", ".join(facts.runtimes) if facts and facts.runtimes else "none"
    return (f"GPU requested but this Docker host has no NVIDIA runtime: docker info lists runtimes [{runtimes}] and "
            "no NVIDIA CDI devices; install the NVIDIA Container Toolkit (nvidia-ctk runtime configure "
            "--runtime=docker, then restart dockerd) or run with --devices cpu")


@contextlib.contextmanager
def locked(out_dir: Path) -> Iterator[None]:
    """Hold an exclusive flock on the run directory: two orchestrators never write the same run."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
            raise RunDirLocked(f"{out_dir} is in use by another gdbench run (pid {holder})",
                               fix="wait for it to finish or choose another --out") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)  # closing releases the lock


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
    """Runs a planned sweep into its output directory."""

    def __init__(self, sweep: Sweep, progress: SweepProgress) -> None:
        self.sweep = sweep
        self.progress = progress
        self.records: list[dict[str, Any]] = []
        self.manifest: dict[str, Any] = {}

    # ---------------------------------------------------------------- manifest
    def _write_manifest(self, status: str) -> None:
        s = self.sweep
        timed = [r["timings"]["overhead_s"] for r in self.records
                 if s.opts.backend == "docker" and r.get("timings") and r["timings"].get("overhead_s") is not None]
        self.manifest.update({
            "run_id": s.run_id,
            "status": status,
            "finished_utc": collect_time() if status != "running" else None,
            "backend": s.opts.backend,
            "compose": s.compose_path,
            "sweep": s.opts.to_dict(),
            "host": s.host,
            "notes": s.notes,
            "containers": self.records,
            "overhead": {"goal_s": OVERHEAD_GOAL_S, "mean_s": sum(timed) / len(timed) if timed else None,
                         "max_s": max(timed) if timed else None, "containers": len(timed),
                         "definition": "container wall time (create → document in hand) minus the solver "
                                       "process's own lifetime (daemon StartedAt → FinishedAt)"},
        })
        documents.write_json_atomic(s.out_dir / MANIFEST, self.manifest)

    # -------------------------------------------------------------------- run
    def run(self) -> int:
        s = self.sweep
        self.manifest = {"run_id": s.run_id, "started_utc": collect_time()}
        old = s.out_dir / MANIFEST
        if old.is_file():
            import json

            with contextlib.suppress(ValueError, OSError):
                prev = json.loads(old.read_text(encoding="utf-8"))
                self.manifest["started_utc"] = prev.get("started_utc") or self.manifest["started_utc"]
                self.manifest["resumed_utc"] = collect_time()
        self._write_manifest("running")
        interrupted: BaseException | None = None
        with signals_as_interrupts() as guard:
            try:
                for item in s.planned:
                    done = len(self.records)
                    try:
                        self._one(item)
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
            if interrupted is not None and s.docker is not None:
                with contextlib.suppress(Exception):
                    s.docker.remove_containers(s.run_id)
            self._write_manifest("interrupted" if interrupted else "complete")
            self.progress.progress.stop()
            self.progress.console.print(summary_table(self.records))
            self._print_overhead()
            if interrupted is not None:
                self.progress.note(f"interrupted; documents so far are in {s.out_dir} "
                                   f"(continue with: gdbench run --resume {s.out_dir})", style="magenta")
        if interrupted is not None:
            return EXIT_INTERRUPTED
        statuses = {r["status"] for r in self.records}
        if "failed" in statuses or "invalid" in statuses:
            return EXIT_FAILED
        return EXIT_UNAVAILABLE if "unavailable" in statuses else EXIT_OK

    def _print_overhead(self) -> None:
        ov = self.manifest.get("overhead") or {}
        if ov.get("mean_s") is None or self.sweep.opts.backend != "docker":
            return
        verdict = "within" if ov["max_s"] < OVERHEAD_GOAL_S else "ABOVE"
        self.progress.note(f"container start-up overhead (wall − process): mean {ov['mean_s']:.2f} s, "
                           f"max {ov['max_s']:.2f} s over {ov['containers']} container(s), {verdict} the "
                           f"{OVERHEAD_GOAL_S:g} s goal", style="cyan")

    def _record(self, item: Planned, status: str, reason: str | None, result: ContainerResult | None = None,
                doc: dict[str, Any] | None = None) -> dict[str, Any]:
        spec = item.spec
        rec: dict[str, Any] = {
            "key": spec.key, "framework": spec.framework, "device": spec.device, "flavour": spec.flavour,
            "status": status, "reason": reason, "document": f"{spec.key}.json" if doc is not None else None,
            "image": item.image.provenance() if item.image else ({"tag": item.image_tag} if item.image_tag else None),
            "resumed": item.resumed,
        }
        if result is not None:
            rec.update(exit_code=result.exit_code, oom_killed=result.oom_killed, timed_out=result.timed_out,
                       container=result.name, user=result.user, timings=result.timings())
        if doc is not None:
            rec.update(_row_stats(doc))
        return rec

    def _store(self, item: Planned, doc: dict[str, Any]) -> None:
        image = item.image.provenance() if item.image else ({"tag": item.image_tag, "id": None, "digest": None,
                                                             "labels": {}} if item.image_tag else None)
        documents.attach_provenance(doc, image, self.sweep.host)
        documents.write_document(self.sweep.out_dir / f"{item.spec.key}.json", doc)

    def _one(self, item: Planned) -> None:
        spec = item.spec
        total = len(spec.dims) * len(spec.variants)
        if item.resumed:
            doc = schema.loads((self.sweep.out_dir / f"{spec.key}.json").read_text(encoding="utf-8"))
            self.progress.start(spec.key, total)
            self.progress.finish("skipped", "already in the run directory (resumed)")
            rec = self._record(item, doc["status"], doc.get("error"), doc=doc)
            rec["status_note"] = "resumed"
            self.records.append(rec)
            return
        if item.preflight is not None:
            status, reason = item.preflight
            doc = documents.synthetic_document(spec, status, reason, None,
                                               item.image.framework_version if item.image else None)
            self._store(item, doc)
            self.progress.start(spec.key, total)
            self.progress.finish(status)
            self.records.append(self._record(item, status, reason, doc=doc))
            return
        self.progress.start(spec.key, total)
        result: ContainerResult | None = None
        try:
            result = self._execute(item)
        except GdbenchError as exc:
            from .dockerhost import GpuUnavailable

            status = "unavailable" if isinstance(exc, GpuUnavailable) else "failed"
            doc = documents.synthetic_document(spec, status, exc.message, None,
                                               item.image.framework_version if item.image else None)
            self._store(item, doc)
            self.progress.finish(status, exc.message)
            self.records.append(self._record(item, status, exc.message, doc=doc))
            return
        accepted = documents.accept_output(spec, result.stdout, result.stderr, result.exit_code,
                                           oom=result.oom_killed, timed_out=result.timed_out,
                                           framework_version=item.image.framework_version if item.image else None)
        doc = accepted.doc
        self._store(item, doc)
        reason = accepted.problem or _doc_reason(doc)
        self.progress.finish(doc["status"], reason or "")
        self.records.append(self._record(item, doc["status"], reason, result, doc))

    def _execute(self, item: Planned) -> ContainerResult:
        if self.sweep.opts.backend == "local":
            from .localrun import run_local

            return run_local(item.spec, self.progress.line)
        assert self.sweep.docker is not None and item.image is not None
        return self.sweep.docker.run(item.spec, item.image, gpu=item.gpu, on_line=self.progress.line)


def _holds_a_run(out_dir: Path) -> InvalidOptions:
    return InvalidOptions(f"{out_dir} already holds a gdbench run; continue it with --resume {out_dir} "
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
    elif (out_dir / MANIFEST).exists():
        raise _holds_a_run(out_dir)
    docker_host = compose = None
    if opts.backend == "docker":
        from .compose import load_compose
        from .dockerhost import DockerHost

        compose = load_compose(compose_path)
        docker_host = DockerHost.connect(docker_url)
    with locked(out_dir):
        if not resume and (out_dir / MANIFEST).exists():  # a run that held the lock finished since the check above
            raise _holds_a_run(out_dir)
        if resume:
            import json

            run_id = str(json.loads((out_dir / MANIFEST).read_text(encoding="utf-8")).get("run_id") or out_dir.name)
        sweep = plan(opts, out_dir, run_id=run_id, resume=resume, compose=compose, docker_host=docker_host,
                     progress=progress)
        for note in sweep.notes:
            progress.note(note, style="dim")
        with progress:
            return SweepRunner(sweep, progress).run(), out_dir
