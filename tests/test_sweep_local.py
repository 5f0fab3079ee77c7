"""The planner and the sweep runner in this process, through the local backend: real solver subprocesses, no Docker.

Tiny sizes keep each solver process to a second or two; the sync check is off (a timing-honesty check,
covered by the solver tests, and noise at this size). Nothing is mocked: the backend starts real
``python -m solvers`` children and the documents they print cross the same boundary check as a container's.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from orchestrator.backends.local import LocalBackend
from orchestrator.errors import InvalidOptions
from orchestrator.hosts.gpus import HostGpus, probe
from orchestrator.sweep import documents, hostload
from orchestrator.sweep.planner import plan
from orchestrator.sweep.progress import SweepProgress
from orchestrator.sweep.rundir import RunDir
from orchestrator.sweep.runner import SweepRunner
from orchestrator.sweep.spec import RunSpec, SweepOptions
from solvers import registry, schema

TINY = {"dims": [2], "n": 200, "iters": 20, "repeats": 2, "sync_check": False, "threads": 1, "backend": "local"}
#: What this machine says about its GPUs when none is usable: the state of a GPU-less host, stated outright.
NO_GPU = HostGpus(error="NVML lists no GPUs")


def options(**kw) -> SweepOptions:
    return SweepOptions(**{**TINY, **kw})


def progress() -> tuple[SweepProgress, io.StringIO]:
    text = io.StringIO()
    return SweepProgress(console=Console(file=text, width=160, force_terminal=False)), text


def run(opts: SweepOptions, run_dir: RunDir, backend: LocalBackend, *, resume: bool = False) -> tuple[int, str]:
    bar, text = progress()
    run_id = run_dir.run_id() if resume else None
    sweep = plan(opts, run_dir, backend, run_id=run_id, resume=resume, progress=bar)
    with run_dir.locked(), bar:
        code = SweepRunner(sweep, bar).run()
    return code, text.getvalue()


# ------------------------------------------------------------------------------------------------ planner
def test_auto_device_follows_the_gpus_this_machine_has(tmp_path: Path) -> None:
    gpus = probe()
    sweep = plan(options(devices=["auto"]), RunDir(tmp_path), LocalBackend(gpus))
    devices = {p.spec.framework: p.spec.device for p in sweep.planned}
    # A GPU-only framework (cupy) has nothing to run on a machine without a GPU: the planner skips it.
    assert set(devices) == {fw for fw in registry.FRAMEWORKS if gpus.gpus or "cpu" in registry.REGISTRY[fw].devices}
    for fw, device in devices.items():
        gpu_capable = "gpu" in registry.REGISTRY[fw].devices
        assert device == ("gpu" if gpus.gpus and gpu_capable else "cpu"), (fw, device)
    assert all(p.preflight is None and not p.resumed for p in sweep.planned)
    assert sweep.opts.threads == 1 and sweep.opts.cpuset == sweep.opts.cpuset[:1]


def test_gpu_without_a_gpu_is_unavailable_before_anything_runs(tmp_path: Path) -> None:
    bar, text = progress()
    sweep = plan(options(frameworks=["numpy", "jax", "torch"], devices=["cpu", "gpu"]), RunDir(tmp_path),
                 LocalBackend(NO_GPU), progress=bar)
    by_key = {p.spec.key: p for p in sweep.planned}
    assert list(by_key) == ["numpy-cpu", "jax-cpu", "jax-gpu", "torch-cpu", "torch-gpu"]
    assert sweep.notes == ["numpy has no gpu backend; skipped"]
    for key in ("jax-gpu", "torch-gpu"):
        status, reason = by_key[key].preflight or ("", "")
        assert status == "unavailable" and "no usable NVIDIA GPU: NVML lists no GPUs" in reason
    assert all(by_key[k].preflight is None for k in ("numpy-cpu", "jax-cpu", "torch-cpu"))
    assert text.getvalue().count("GPU requested but this machine has no usable NVIDIA GPU") == 1  # said once


def test_nothing_to_run_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidOptions, match=r"nothing to run: no framework offers.*numpy has no gpu backend"):
        plan(options(frameworks=["numpy"], devices=["gpu"]), RunDir(tmp_path), LocalBackend(NO_GPU))


def test_resume_keeps_documents_that_did_not_fail(tmp_path: Path) -> None:
    run_dir = RunDir(tmp_path)
    opts = options(frameworks=["numpy", "jax", "torch"], devices=["cpu"])
    cpus = opts.with_cpus(LocalBackend(NO_GPU).cpus())

    def stored(framework: str, status: str) -> None:
        spec = RunSpec.from_sweep(cpus, framework, "cpu", None, "cpu", "r1")
        run_dir.write_document(spec.key, documents.synthetic_document(spec, status, f"{status} here"))

    stored("numpy", "failed")
    stored("torch", "unavailable")
    unreachable = RunSpec.from_sweep(cpus, "numba", "cpu", None, "cpu", "r1", host="gone")
    doc = documents.synthetic_document(unreachable, "unavailable", "host gone did not answer")
    doc["provenance"]["host"] = {"name": "gone", "reachable": False}
    run_dir.write_document(unreachable.key, doc)  # a host down at start: tried again on resume
    run_dir.path.joinpath("jax-cpu.json").write_text("{ not a document")  # unreadable: run it again
    sweep = plan(opts, run_dir, LocalBackend(NO_GPU), run_id="r1", resume=True)
    assert {p.spec.key: p.resumed for p in sweep.planned} == {"numpy-cpu": False, "jax-cpu": False,
                                                              "torch-cpu": True}
    assert run_dir.done_keys() == {"torch-cpu"} and "numba-cpu@gone" in run_dir.documents_by_key()


# ----------------------------------------------------------------------------------------------- runner
def test_sweep_writes_documents_and_manifest_then_resume_runs_only_what_is_missing(tmp_path: Path) -> None:
    run_dir = RunDir(tmp_path / "run")
    backend = LocalBackend(NO_GPU)
    opts = options(frameworks=["numpy", "jax"], devices=["cpu", "gpu"])
    code, said = run(opts, run_dir, backend)
    assert code == 3, said  # every CPU row passed; jax-gpu is unavailable on this (GPU-less) backend

    manifest = run_dir.manifest().to_dict()
    assert manifest["status"] == "complete" and manifest["backend"] == "local" and manifest["compose"] is None
    records = {c["key"]: c for c in manifest["containers"]}
    assert list(records) == ["numpy-cpu", "jax-cpu", "jax-gpu"]
    docs = run_dir.documents_by_key()
    assert set(docs) == set(records)
    for key in ("numpy-cpu", "jax-cpu"):
        doc, rec = docs[key], records[key]
        assert doc["status"] == "ok" and rec["status"] == "ok" and rec["rows_ok"] == rec["rows"] == 2
        assert doc["provenance"]["host"] == manifest["host"] and doc["problem"]["n"] == 200
        assert all(r["max_rel_error"] <= r["tolerance"] and r["time_per_iter_s"] > 0 for r in doc["results"])
        load = rec["host_load"]
        assert load["source"].startswith("this machine") and len(load["loadavg_start"]) == 3
        assert load["involuntary_ctx_switches"] >= 0
    assert records["jax-gpu"]["status"] == "unavailable" and "host_load" not in records["jax-gpu"]
    assert all(r["time_per_iter_s"] is None for r in docs["jax-gpu"]["results"])
    assert manifest["overhead"]["containers"] == 0  # a local process has no container start-up to report

    kept = run_dir.document_path("jax-cpu").read_bytes()
    run_dir.document_path("numpy-cpu").unlink()
    code, said = run(opts, run_dir, backend, resume=True)
    assert code == 3, said
    again = run_dir.manifest().to_dict()
    assert again["run_id"] == manifest["run_id"] and again["started_utc"] == manifest["started_utc"]
    assert "resumed_utc" in again
    resumed = {c["key"]: c["resumed"] for c in again["containers"]}
    assert resumed == {"numpy-cpu": False, "jax-cpu": True, "jax-gpu": True}
    assert run_dir.document_path("jax-cpu").read_bytes() == kept  # not run again
    assert schema.loads(run_dir.document_path("numpy-cpu").read_text())["status"] == "ok"  # run again


def test_busy_host_rule_counts_the_cpus_outside_the_cpuset() -> None:
    assert hostload.busy_warning([2.5, 1.0, 1.0], [0, 1], ncpu=4) is not None  # 2 CPUs free, 2.5 runnable
    assert hostload.busy_warning([2.0, 1.0, 1.0], [0, 1], ncpu=4) is None  # exactly fits beside the sweep
    line = hostload.busy_warning([0.5, 0.1, 0.1], [0, 1], ncpu=2)
    assert line is not None and "0 CPU(s) outside the sweep's cpuset (2 of 2)" in line
    assert hostload.busy_warning(None, [0], ncpu=2) is None


class TwoSlots(LocalBackend):
    """The local backend told it may run two containers at once, as a scheduler holding two machines would."""

    slots = 2


def test_a_backend_with_two_slots_runs_its_containers_on_two_workers(tmp_path: Path) -> None:
    run_dir = RunDir(tmp_path / "run")
    bar, text = progress()  # not a terminal: one plain line per container start and end
    sweep = plan(options(frameworks=["numpy", "jax"], devices=["cpu"]), run_dir, TwoSlots(NO_GPU), progress=bar)
    with run_dir.locked(), bar:
        code = SweepRunner(sweep, bar).run()
    said = text.getvalue()
    assert code == 0, said
    assert {c["key"]: c["status"] for c in run_dir.manifest().containers} == {"numpy-cpu": "ok", "jax-cpu": "ok"}
    events = [line.split()[0] for line in said.splitlines() if line.startswith(("start ", "end "))]
    assert events == ["start", "start", "end", "end"], said  # both running at once; one worker gives start, end, …
