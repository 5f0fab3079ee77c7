"""Orchestrator parts that need no Docker: compose parsing, option checks, the output boundary, the local backend.

The local backend runs the real ``python -m solvers`` in child processes, so its end-to-end test exercises the
same runner, boundary check, documents and manifest as a Docker sweep.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from orchestrator.errors import ComposeError, Interrupted, InvalidOptions, RunDirLocked
from orchestrator.images.compose import ComposeFile, interpolate, load_compose
from orchestrator.results.merge import load_runs, write_merged
from orchestrator.sweep import documents
from orchestrator.sweep.progress import parse_line
from orchestrator.sweep.rundir import RunDir
from orchestrator.sweep.signals import signals_as_interrupts
from orchestrator.sweep.spec import (
    RunSpec,
    SweepOptions,
    parse_cpuset,
    parse_devices,
    parse_dims,
    parse_frameworks,
    parse_gpus,
)
from solvers import schema
from tests.conftest import ROOT, SMALL, gdbench, refused, run_solvers


def spec(**kw) -> RunSpec:
    base = dict(framework="numpy", device="cpu", image=None, flavour="cpu", dims=[2, 5], variants=["loop", "fused"],
                n=500, iters=50, repeats=2, dtype="float64", seed=0, lr=1e-3, threads=1, cpuset=[0], timeout_s=60.0)
    return RunSpec(**{**base, **kw})


# ----------------------------------------------------------------------------------------------- compose
def test_interpolation_follows_compose_rules() -> None:
    env = {"SET": "x", "EMPTY": ""}
    assert interpolate("a-${SET:-d}-${UNSET:-d}-${EMPTY:-d}", env) == "a-x-d-d"
    assert interpolate("${EMPTY-d}|${UNSET-d}", env) == "|d"  # without ':' only unset counts
    assert interpolate("${SET:+alt}|${UNSET:+alt}", env) == "alt|"
    assert interpolate("$$SET $SET ${SET}", env) == "$SET x x"
    assert interpolate("${UNSET:-${SET}-nested}", env) == "x-nested"
    with pytest.raises(ComposeError, match="UNSET is required: give it"):
        interpolate("${UNSET:?give it}", env)


def test_compose_services_tags_and_build(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("NUMPY_VERSION=9.9\n# comment\nexport TAG_SUFFIX='cpu'\n")
    (tmp_path / "compose.yaml").write_text(
        "x-build: &b\n  context: images\n  dockerfile: numpy/Dockerfile\n"
        "services:\n"
        "  numpy:\n    image: gdbench/numpy:${NUMPY_VERSION:-1.0}-${TAG_SUFFIX}\n"
        "    build:\n      <<: *b\n      args:\n        PY: '3.11'\n        FROM_ENV:\n"
        "  torch-gpu:\n    image: gdbench/torch:${TORCH_VERSION:-2.5}-cuda\n    profiles: [gpu]\n    build: images\n")
    cf = load_compose(tmp_path / "compose.yaml", env={"FROM_ENV": "yes"})
    numpy = cf.service_for("numpy", "cpu")
    assert numpy.image == "gdbench/numpy:9.9-cpu"  # .env beats the default
    assert numpy.build is not None and numpy.build.context == (tmp_path / "images").resolve()
    assert numpy.build.dockerfile == "numpy/Dockerfile" and numpy.build.args == {"PY": "3.11", "FROM_ENV": "yes"}
    torch = cf.service_for("torch", "cuda")
    assert (torch.image, torch.flavour, torch.framework, torch.profiles) == ("gdbench/torch:2.5-cuda", "cuda",
                                                                             "torch", ("gpu",))
    with pytest.raises(ComposeError, match="no service 'jax'"):
        cf.service_for("jax", "cpu")


def test_project_compose_names_every_framework() -> None:
    """The real compose.yaml has a CPU service per CPU-capable framework and a GPU service per GPU-capable one."""
    from solvers import registry

    cf: ComposeFile = load_compose(ROOT / "compose.yaml")
    for name, entry in registry.REGISTRY.items():
        if "cpu" in entry.devices:
            assert cf.service_for(name, "cpu").image.startswith(f"gdbench/{name}:")
        if "gpu" in entry.devices:
            assert cf.service_for(name, "cuda").image.startswith(f"gdbench/{name}:")


# ------------------------------------------------------------------------------------------------ options
@pytest.mark.parametrize(("fn", "text", "message"), [
    (parse_frameworks, "numpy,caffe", "unknown framework"),
    (parse_devices, "tpu", "unknown device"),
    (parse_dims, "", "empty"),
    (parse_dims, "2,-1", "positive"),
    (parse_dims, "2,x", "integers"),
    (parse_cpuset, "3-1", "0-3,6"),
])
def test_bad_values_are_rejected(fn, text: str, message: str) -> None:
    with pytest.raises(InvalidOptions, match=message):
        fn(text)


@pytest.mark.parametrize(("args", "message"), [
    (["--repeats", "0"], "--repeats must be >= 1"),
    (["--repeats", "5", "--max-repeats", "4"], "--max-repeats (4) must be >= --repeats (5)"),
    (["--ci-width", "-0.1"], "--ci-width is a fraction of the median"),
    (["--row-budget", "0"], "--row-budget must be > 0 seconds"),
])
def test_bad_sampling_is_refused_before_anything_starts(capsys, tmp_path, args: list[str], message: str) -> None:
    err = refused(capsys, "run", "-f", "numpy", "--dims", "2", "--backend", "local", "--out", str(tmp_path / "r"),
                  *args)
    assert message in err
    assert not (tmp_path / "r").exists()


def test_sampling_options_reach_the_solver_and_the_manifest() -> None:
    opts = SweepOptions(repeats=3, max_repeats=9, ci_width=0.05, row_budget_s=1.5).with_cpus([0])
    args = RunSpec.from_sweep(opts, "numpy", "cpu", None, "cpu", "r").solver_args()
    assert args[args.index("--repeats") + 1] == "3" and args[args.index("--max-repeats") + 1] == "9"
    assert args[args.index("--ci-width") + 1] == "0.05" and args[args.index("--row-budget") + 1] == "1.5"
    assert {"max_repeats", "ci_width", "row_budget_s"} <= set(SweepOptions.RESUME_FIXED_FIELDS)
    assert SweepOptions.from_dict(opts.to_dict()) == opts


def test_gpus_are_all_or_indices_and_uuids() -> None:
    assert parse_gpus("all") is None
    assert parse_gpus("0,2,0") == ["0", "2"]
    assert parse_gpus("GPU-8e2c0d5a-1b2c,MIG-3f4e") == ["GPU-8e2c0d5a-1b2c", "MIG-3f4e"]
    for bad in ("", "first", "0,gpu1", "-1"):
        with pytest.raises(InvalidOptions, match="--gpus must be all or a comma list"):
            parse_gpus(bad)
    assert SweepOptions(gpus=["1"]).with_cpus([0]).gpus == ["1"] and "gpus" in SweepOptions.RESUME_FIXED_FIELDS


def test_cpus_default_and_limits() -> None:
    opts = SweepOptions().with_cpus([0, 1, 2, 3])
    assert (opts.threads, opts.cpuset) == (2, [0, 1])
    assert SweepOptions(cpuset=[2, 3]).with_cpus([0, 1, 2, 3]).threads == 2
    with pytest.raises(InvalidOptions, match="lacks"):
        SweepOptions(cpuset=[7]).with_cpus([0, 1])
    with pytest.raises(InvalidOptions, match="exceeds"):
        SweepOptions(threads=3, cpuset=[0, 1]).with_cpus([0, 1, 2])
    assert parse_cpuset("0-2,5") == [0, 1, 2, 5]


def test_solver_args_are_the_solver_cli() -> None:
    args = spec(variants=["fused"], dims=[3, 4]).solver_args()
    assert args[:5] == ["run", "--framework", "numpy", "--device", "cpu"]
    assert args[args.index("--dims") + 1] == "3,4" and args[args.index("--variant") + 1] == "fused"


def test_progress_lines_match_the_solver_log_format() -> None:
    assert parse_line("numpy/cpu/fused d=50 …") == ("start", {"fw": "numpy", "device": "cpu", "variant": "fused",
                                                             "dim": "50"})
    assert parse_line("  ok: 0.0123 ms/iter, err 1.0e-12") == ("end", {"status": "ok"})
    assert parse_line("  failed: max relative error") == ("end", {"status": "failed"})
    assert parse_line("unrelated warning") is None


@pytest.mark.parametrize("args", [
    ["--frameworks", "numpy,caffe"], ["--dims", "0,2"], ["--dims", ""], ["--n", "1"], ["--repeats", "0"],
    ["--dtype", "float16"], ["--variants", "unrolled"], ["--devices", "tpu"], ["--timeout", "0"],
    ["--mem-limit", "lots"],
])
def test_cli_rejects_bad_options_in_one_line(args: list[str], capsys, tmp_path: Path) -> None:
    out = tmp_path / "run"
    refused(capsys, "run", *args, "--out", str(out))  # one error line, nothing on stdout
    assert not out.exists()  # nothing was created


# ------------------------------------------------------------------------------------------- the boundary
def _solver_doc() -> str:
    r = run_solvers("run", "--framework", "numpy", "--dims", "2,5", "--n", "500", "--iters", "50", "--repeats", "2",
                    "--max-repeats", "2", "--threads", "1", "--no-sync-check")
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_boundary_keeps_a_valid_document_and_rejects_everything_else() -> None:
    good = _solver_doc()
    s = spec()
    kept = documents.accept_output(s, good, "", 0)
    assert kept.rejection is None and kept.doc["status"] == "ok"

    cases = {
        "truncated": (good[: len(good) // 2], 0, {}, "output rejected (not JSON"),
        "junk": ("Segmentation fault\nmore junk\n", 1, {}, "it printed: Segmentation fault | more junk"),
        "invalid": (json.dumps({**json.loads(good), "schema_version": 99}), 0, {}, "unsupported schema_version"),
        "other framework": (good.replace('"framework": "numpy"', '"framework": "torch"', 1), 0, {}, "torch/cpu"),
        "crash": ("", 139, {}, "exit code 139 and no document (killed by SIGSEGV)"),
        "timeout": (good, None, {"timed_out": True}, "timed out after 60 s"),
        "oom": ("", 137, {"oom": True}, "out of memory"),
    }
    for name, (stdout, code, flags, message) in cases.items():
        res = documents.accept_output(s, stdout, "Traceback ...\nboom", code, **flags)
        assert res.rejection is not None and message in res.rejection, (name, res.rejection)
        doc = schema.validate(res.doc)  # stored failures are schema-valid documents
        assert doc["status"] == "failed" and doc["framework"] == "numpy"
        assert {(r["dim"], r["variant"]) for r in doc["results"]} == {(d, v) for d in (2, 5) for v in ("loop", "fused")}
        for row in doc["results"]:
            assert row["status"] == "failed" and row["time_per_iter_s"] is None and message in row["reason"]
            assert row["stderr_tail"].endswith("boom")


def test_an_image_older_than_the_options_it_is_given_says_rebuild_it() -> None:
    """An image built before an option existed answers with an invalid document; the fix is a rebuild."""
    r = run_solvers("run", "--framework", "numpy", "--dims", "2,5", "--option-from-the-future", "1")
    assert r.returncode == 2
    res = documents.accept_output(spec(), r.stdout, r.stderr, r.returncode)
    assert res.rejection is not None and res.rejection.endswith("rebuild it (gdbench images build numpy)")
    assert "unrecognized arguments: --option-from-the-future" in res.rejection
    assert res.doc["status"] == "failed" and all(row["reason"] == res.rejection for row in res.doc["results"])


def test_atomic_write_leaves_no_temp_files(tmp_path: Path) -> None:
    doc = documents.synthetic_document(spec(), "unavailable", "no GPU")
    RunDir(tmp_path).write_document("x", doc)
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]
    assert schema.loads((tmp_path / "x.json").read_text())["error"] == "no GPU"
    assert oct((tmp_path / "x.json").stat().st_mode & 0o777) == "0o644"


def test_second_orchestrator_on_the_same_directory_is_refused(capsys, tmp_path: Path) -> None:
    """The lock is an flock, held per open file: the command's own open of it conflicts with the one held here
    just as another process's would, so the refusal is checked in this process."""
    run_dir = RunDir(tmp_path)
    with run_dir.locked():
        with pytest.raises(RunDirLocked, match=f"pid {os.getpid()}"), run_dir.locked():
            pass
        err = refused(capsys, "run", "--backend", "local", "--frameworks", "numpy", *SMALL, "--resume", str(tmp_path))
    assert "no manifest.json" in err  # resume needs a run there
    manifest = json.dumps({"run_id": "x", "sweep": {}})
    (tmp_path / "manifest.json").write_text(manifest)
    with run_dir.locked():
        err = refused(capsys, "run", "--backend", "local", "--frameworks", "numpy", "--resume", str(tmp_path), code=5)
    assert f"in use by another gdbench run (pid {os.getpid()})" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == [".gdbench.lock", "manifest.json"]  # nothing written
    assert (tmp_path / "manifest.json").read_text() == manifest


# ---------------------------------------------------------------------------------------- local backend
def test_local_backend_end_to_end(tmp_path: Path) -> None:
    """run → documents + manifest → merge → DataFrame, with the GPU part of the sweep recorded as unavailable."""
    out = tmp_path / "run"
    r = gdbench("run", "--backend", "local", "--frameworks", "numpy,jax", "--devices", "cpu,gpu", *SMALL,
                "--threads", "1", "--out", str(out))
    # jax-gpu cannot run on a GPU-less machine: unavailable (3); on a GPU machine everything is ok (0).
    assert r.returncode in (0, 3), r.stderr
    assert r.stdout.strip() == str(out)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["backend"] == "local"
    assert [c["key"] for c in manifest["containers"]] == ["numpy-cpu", "jax-cpu", "jax-gpu"]
    assert "numpy has no gpu backend; skipped" in manifest["notes"]
    for c in manifest["containers"]:
        assert c["document"] == f"{c['key']}.json" and (out / c["document"]).is_file()
    df = load_runs([out])
    assert len(df) == 3 * 2 * 2
    cpu = df[df.device == "cpu"]
    assert (cpu.status == "ok").all(), cpu[["framework", "reason"]]
    assert (cpu.max_rel_error <= cpu.tolerance).all() and (cpu.time_per_iter_s > 0).all()
    assert set(cpu.threads) == {1}
    parquet, csv = write_merged(df, tmp_path / "merged")
    assert len(load_runs([parquet])) == len(load_runs([csv])) == len(df)
    if r.returncode == 3:
        gpu = df[df.device == "gpu"]
        assert (gpu.status == "unavailable").all() and gpu.time_per_iter_s.isna().all()
        assert "GPU requested but this machine has no usable NVIDIA GPU" in r.stderr


def test_local_backend_resume_and_timeout(capsys, tmp_path: Path) -> None:
    out = tmp_path / "run"
    r = gdbench("run", "--backend", "local", "--frameworks", "numpy", "--devices", "cpu", *SMALL, "--threads", "1",
                "--out", str(out))
    assert r.returncode == 0, r.stderr
    first = (out / "numpy-cpu.json").read_text()
    # Refusals, in this process: never two runs in one directory, never other sizes on resume.
    assert "--resume" in refused(capsys, "run", "--backend", "local", "--frameworks", "numpy", "--out", str(out))
    assert "--n 600" in refused(capsys, "run", "--backend", "local", "--resume", str(out), "--n", "600")
    assert (out / "numpy-cpu.json").read_text() == first
    resumed = gdbench("run", "--resume", str(out))  # backend, frameworks, sizes: all from the run's manifest
    assert resumed.returncode == 0, resumed.stderr
    assert (out / "numpy-cpu.json").read_text() == first  # skipped, not re-run
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["containers"][0]["resumed"] is True and "resumed_utc" in manifest
    assert [c["key"] for c in manifest["containers"]] == ["numpy-cpu"] and manifest["backend"] == "local"

    slow = tmp_path / "slow"
    r = gdbench("run", "--backend", "local", "--frameworks", "numpy", "--devices", "cpu", "--dims", "100",
                "--n", "100000", "--iters", "100000", "--timeout", "3", "--out", str(slow))
    assert r.returncode == 1, r.stderr
    doc = schema.loads((slow / "numpy-cpu.json").read_text())
    assert doc["status"] == "failed" and "timed out after 3 s" in doc["error"]
    assert all(row["time_per_iter_s"] is None for row in doc["results"])
    rec = json.loads((slow / "manifest.json").read_text())["containers"][0]
    assert rec["timed_out"] is True and rec["status"] == "failed"  # killed by the timeout, not by anything else


def test_cuda_check_compares_image_toolkit_with_driver() -> None:
    from orchestrator.hosts.gpus import HostGpus, cuda_incompatibility

    driver = HostGpus(driver_version="535.104", cuda_driver_version="12.2", gpus=["NVIDIA A100"])
    why = cuda_incompatibility("gdbench/torch:2.13.0-cuda", "13.0", driver)
    assert why is not None and "CUDA 13.0" in why and "535.104" in why and "up to 12.2" in why
    assert cuda_incompatibility("gdbench/jax:0.10.2-cuda", "12.2", driver) is None
    assert cuda_incompatibility("gdbench/jax:0.10.2-cuda", "11.8", driver) is None
    assert cuda_incompatibility("x", "12.9", HostGpus()) is None  # no NVML: nothing to compare, the run decides


def test_report_and_compare_are_registered() -> None:
    r = gdbench("--help", timeout=60)
    assert r.returncode == 0 and "report" in r.stdout and "compare" in r.stdout and "doctor" in r.stdout
    r = gdbench("report", "--help", timeout=60)
    assert r.returncode == 0 and "--out" in r.stdout


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_guard_obeys_the_first_signal_only(sig: signal.Signals) -> None:
    """Real signals to this process: the first one raises, later ones during cleanup do not; handlers come back."""
    before = signal.getsignal(sig)
    expected = KeyboardInterrupt if sig == signal.SIGINT else Interrupted
    cleaned = False
    with pytest.raises(expected), signals_as_interrupts():
        try:
            os.kill(os.getpid(), sig)
            time.sleep(5)  # the signal is handled before this returns
        finally:
            for _ in range(3):  # Ctrl-C hammered while the container is being removed
                os.kill(os.getpid(), sig)
            time.sleep(0.05)
            cleaned = True
    assert cleaned and signal.getsignal(sig) is before
