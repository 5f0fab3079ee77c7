"""The orchestrator against a real Docker daemon, real CPU images and real containers.

Needs ``dockerd`` running and the CPU images built (``make images``). Without them these tests are skipped,
unless ``GDBENCH_REQUIRE_DOCKER=1`` (set by CI), which turns a missing daemon or image into a failure.
Image tags always come from compose.yaml, as the orchestrator reads them.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orchestrator.backends.docker import container as containers
from orchestrator.backends.docker.backend import DockerBackend
from orchestrator.backends.docker.engine import DockerEngine
from orchestrator.backends.slurm import step
from orchestrator.errors import GdbenchError, GpuUnavailable
from orchestrator.hosts import gpus as gpuhost
from orchestrator.images.compose import ComposeFile
from orchestrator.labels import MANAGED as LABEL_MANAGED
from orchestrator.labels import RUN as LABEL_RUN
from orchestrator.results.merge import load_runs
from orchestrator.sweep.planner import plan
from orchestrator.sweep.rundir import RunDir
from orchestrator.sweep.spec import RunSpec, SweepOptions
from solvers import registry, schema
from tests.conftest import ROOT, SMALL, gdbench, refused

pytestmark = pytest.mark.docker

#: Frameworks with a CPU backend (cupy is GPU-only: on a host without GPUs it has no container at all).
CPU_FRAMEWORKS = [fw for fw in registry.FRAMEWORKS if "cpu" in registry.REGISTRY[fw].devices]


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def created_containers(engine: DockerEngine, since: dt.datetime, until: dt.datetime, *labels: str) -> list:
    """Container ``create`` events for gdbench-labelled containers in a time window (the daemon's own record)."""
    label_list = [f"{LABEL_MANAGED}=1", *labels]  # a list: docker-py wraps anything else as one value
    events = engine.client.events(since=since - dt.timedelta(seconds=1), until=until + dt.timedelta(seconds=1),
                                filters={"type": "container", "event": "create", "label": label_list}, decode=True)
    return [e["Actor"]["Attributes"].get("name") for e in events]


# ---------------------------------------------------------------------------------------- the full sweep
@pytest.fixture(scope="module")
def sweep(tmp_path_factory, engine: DockerEngine, compose: ComposeFile, all_images) -> dict:
    """One small sweep over every framework, CPU and GPU, shared by the tests below."""
    out = tmp_path_factory.mktemp("sweep") / "run"
    t0 = _now()
    r = gdbench("run", "--frameworks", "all", "--devices", "cpu,gpu", *SMALL, "--out", str(out))
    t1 = _now()
    manifest = json.loads((out / "manifest.json").read_text()) if (out / "manifest.json").exists() else {}
    return {"result": r, "out": out, "manifest": manifest, "t0": t0, "t1": t1}


def test_sweep_runs_every_framework_and_merges(sweep: dict, engine: DockerEngine, compose: ComposeFile,
                                               tmp_path: Path) -> None:
    r, out, manifest = sweep["result"], sweep["out"], sweep["manifest"]
    facts = engine.facts()
    statuses = {c["status"] for c in manifest["containers"]}
    assert "failed" not in statuses, r.stderr
    assert r.returncode == (3 if "unavailable" in statuses else 0), r.stderr
    if not facts.nvidia_runtime:
        assert r.returncode == 3  # the GPU part cannot run here
    assert r.stdout.strip() == str(out)
    assert manifest["status"] == "complete" and manifest["backend"] == "docker"
    keys = [c["key"] for c in manifest["containers"]]
    assert keys == [f"{fw}-{dev}" for fw in registry.FRAMEWORKS for dev in ("cpu", "gpu")
                    if dev in registry.REGISTRY[fw].devices]

    merged = tmp_path / "merged"
    m = gdbench("merge", str(out), "--out", str(merged), timeout=120)
    assert m.returncode == 0, m.stderr
    df = load_runs([merged / "results.parquet"])
    assert len(df) == len(keys) * 2 * 2  # every (container, dim, variant) has a row, ok or not

    cpu_all = df[df.device == "cpu"]
    bad = cpu_all[(cpu_all.status != "ok") & ~cpu_all.reason.fillna("").str.contains("offers no")]
    assert bad.empty, bad[["framework", "variant", "dim", "reason"]].to_string()  # only variants not offered
    cpu = cpu_all[cpu_all.status == "ok"]
    assert sorted(set(cpu.framework)) == sorted(CPU_FRAMEWORKS)  # every CPU framework measured something
    assert (cpu.max_rel_error <= cpu.tolerance).all() and (cpu.time_per_iter_s > 0).all()
    assert set(cpu.output_dtype) == {"float64"} and set(cpu.threads) == {manifest["sweep"]["threads"]}
    started = {c["framework"]: c["image"] for c in manifest["containers"] if c["device"] == "cpu"}
    for fw, rows in cpu.groupby("framework"):
        # The image the container ran (resolved from compose's tag when the sweep was planned).
        svc = compose.service_for(fw, "cpu")
        assert set(rows.image_tag) == {svc.image} and started[fw]["tag"] == svc.image
        assert set(rows.image_digest) == {started[fw]["id"]} and started[fw]["id"].startswith("sha256:")
        assert set(rows.framework_version) == {started[fw]["labels"]["io.gdbench.framework.version"]}
    assert set(df.host_engine_version) == {facts.docker_version}
    assert set(df.run_id) == {manifest["run_id"]}

    for c in manifest["containers"]:
        doc = schema.loads((out / c["document"]).read_text())
        assert doc["provenance"]["host"]["engine_version"] == facts.docker_version
        assert doc["provenance"]["host"]["storage_driver"] == facts.storage_driver
        # The host is named from the engine, not from inside the container (whose hostname is random).
        assert doc["provenance"]["host"]["name"] == "local" and doc["provenance"]["host"]["hostname"] == facts.hostname
        if c["device"] == "cpu":
            threads = doc["provenance"]["threads"]
            assert threads["cpus_allowed"] == manifest["sweep"]["cpuset"]  # the container's cpuset, for everyone
            assert threads["requested"] == manifest["sweep"]["threads"]
            assert doc["provenance"]["image"]["tag"] == c["image"]["tag"]
            assert doc["provenance"]["image"]["labels"]["io.gdbench.framework"] == c["framework"]
            t = c["timings"]
            assert 0 < t["process_s"] < t["wall_s"] and t["overhead_s"] >= 0
            load = c["host_load"]  # the engine is this machine's: its load and steal describe the containers' host
            assert load["source"].startswith("this machine") and len(load["loadavg_start"]) == 3
            assert load["steal_s"] is None or load["steal_s"] >= 0
    assert manifest["overhead"]["containers"] == len(CPU_FRAMEWORKS)

    # Every started container was removed, and exactly the CPU ones were ever created.
    assert engine.managed_containers(manifest["run_id"]) == []
    created = created_containers(engine, sweep["t0"], sweep["t1"], f"{LABEL_RUN}={manifest['run_id']}")
    expected = len(keys) if facts.nvidia_runtime else len(CPU_FRAMEWORKS)
    assert len(created) == expected, created


def test_gpu_on_a_host_without_nvidia_runtime_is_unavailable(sweep: dict, engine: DockerEngine) -> None:
    if engine.facts().nvidia_runtime:
        pytest.skip("this Docker host has the NVIDIA runtime")
    r, out, manifest = sweep["result"], sweep["out"], sweep["manifest"]
    line = "GPU requested but this Docker host has no NVIDIA runtime"
    assert r.stderr.count(line) == 1, r.stderr  # said once, clearly
    gpu = [c for c in manifest["containers"] if c["device"] == "gpu"]
    assert gpu and all(c["status"] == "unavailable" and line in c["reason"] for c in gpu)
    for c in gpu:
        doc = schema.loads((out / c["document"]).read_text())
        assert doc["status"] == "unavailable"
        assert all(row["status"] == "unavailable" and row["time_per_iter_s"] is None for row in doc["results"])
        assert doc["provenance"]["image"]["tag"].endswith("cuda") or "gpu" in doc["provenance"]["image"]["tag"]
    assert all(c["status"] != "failed" and c["rows_ok"] > 0 for c in manifest["containers"] if c["device"] == "cpu")


def test_devices_auto_means_cpu_without_nvidia_runtime(engine: DockerEngine, compose: ComposeFile, tmp_path: Path,
                                                       all_images) -> None:
    sweep = plan(SweepOptions(devices=["auto"]), RunDir(tmp_path), DockerBackend(engine, compose, gpuhost.probe()))
    devices = {p.spec.framework: p.spec.device for p in sweep.planned}
    if engine.facts().nvidia_runtime:
        assert devices["torch"] == "gpu" and devices["numpy"] == "cpu"
    else:
        assert set(devices.values()) == {"cpu"} and set(devices) == set(CPU_FRAMEWORKS)
    assert all(p.preflight is None for p in sweep.planned)


# --------------------------------------------------------------------------------- refusals up front
def test_bad_options_and_missing_parts_start_no_container(engine: DockerEngine, compose: ComposeFile, tmp_path: Path,
                                                          numpy_image, capsys) -> None:
    broken = tmp_path / "compose.yaml"
    broken.write_text("services:\n  numpy:\n    image: gdbench/numpy:not-built-cpu\n")
    cases = [
        (["--frameworks", "numpy,caffe"], 2, "unknown framework"),
        (["--dims", "0"], 2, "--dims must be positive"),
        (["--frameworks", "numpy", "--cpuset", "0-511"], 2, "--cpuset names CPU(s)"),
        (["--frameworks", "numpy", "--compose", str(broken)], 5, "gdbench/numpy:not-built-cpu (compose service "
                                                                 "numpy) is not built — fix: make images"),
        (["--frameworks", "jax", "--compose", str(broken)], 5, "has no service 'jax'"),
    ]
    mark = f"io.gdbench.test=refusals-{os.getpid()}-{time.time_ns()}"  # other gdbench runs may share the daemon
    t0 = _now()
    for args, code, message in cases:
        out = tmp_path / f"run{code}-{len(args)}"
        line = refused(capsys, "run", *SMALL, "--label", mark, *args, "--out", str(out), code=code)  # in-process
        assert message in line, (args, line)
        assert not (out / "manifest.json").exists()
    assert created_containers(engine, t0, _now(), mark) == []
    # The same label on a run that does start proves the check sees what it should.
    t1 = _now()
    ok = gdbench("run", *SMALL, "--label", mark, "--frameworks", "numpy", "--devices", "cpu", "--out",
                 str(tmp_path / "ok"), timeout=300)
    assert ok.returncode == 0, ok.stderr
    assert len(created_containers(engine, t1, _now(), mark)) == 1


def test_unreachable_daemon_is_one_line_with_the_fix(tmp_path: Path, capsys, monkeypatch) -> None:
    env = {"DOCKER_HOST": f"unix://{tmp_path}/no-such.sock"}
    monkeypatch.setenv("DOCKER_HOST", env["DOCKER_HOST"])
    line = refused(capsys, "run", "--frameworks", "numpy", *SMALL, "--out", str(tmp_path / "x"), code=5)
    assert line.startswith("error: cannot reach the Docker daemon: the Docker socket does not exist")
    assert "fix: start the daemon" in line
    d = gdbench("doctor", env=env, timeout=120)
    assert d.returncode == 1 and "docker daemon" in d.stdout and "blocker" in d.stdout


# ------------------------------------------------------------------------------------------- hardening
def test_containers_are_hardened(engine: DockerEngine, compose: ComposeFile, numpy_image) -> None:
    svc = compose.service_for("numpy", "cpu")
    image = engine.require_image(svc)
    spec = RunSpec(framework="numpy", device="cpu", image=svc.image, flavour="cpu", dims=[2], variants=["loop"],
                   n=100, iters=5, repeats=1, dtype="float64", seed=0, lr=1e-3, threads=1, cpuset=[0],
                   timeout_s=60, mem_limit="1g", pids_limit=256, run_id="hardening-test")
    container = containers.create(engine, spec, image, gpu=False)
    try:
        attrs = engine.client.api.inspect_container(container.id)
    finally:
        container.remove(force=True)
    hc, cfg = attrs["HostConfig"], attrs["Config"]
    assert hc["ReadonlyRootfs"] is True
    assert hc["CapDrop"] == ["ALL"] and not hc.get("CapAdd")
    assert "no-new-privileges:true" in hc["SecurityOpt"]
    assert hc["NetworkMode"] == "none"
    assert hc["Memory"] == 1 << 30 and hc["MemorySwap"] == 1 << 30  # no swap on top
    assert hc["PidsLimit"] == 256 and hc["CpusetCpus"] == "0"
    assert set(hc["Tmpfs"]) == {"/tmp"}
    assert not hc.get("Binds") and not attrs.get("Mounts") and hc["Privileged"] is False
    assert not hc.get("DeviceRequests")
    assert cfg["User"] not in ("", "root", "0", "0:0")
    assert cfg["Labels"][LABEL_MANAGED] == "1" and cfg["Labels"][LABEL_RUN] == "hardening-test"
    assert cfg["Cmd"][:3] == ["run", "--framework", "numpy"]
    env = dict(e.split("=", 1) for e in cfg["Env"])
    assert env["GDBENCH_IMAGE_TAG"] == svc.image and env["GDBENCH_IMAGE_DIGEST"] == image.id

    # The same configuration, really running: what the process inside can and cannot do.
    probe = ("import os, socket, pathlib\n"
             "st = dict(l.split(':\\t') for l in open('/proc/self/status').read().splitlines() if ':\\t' in l)\n"
             "def can_write(p):\n"
             "    try: pathlib.Path(p).write_text('x'); return True\n"
             "    except OSError: return False\n"
             "ifaces = sorted(n for _, n in socket.if_nameindex())\n"
             "print(os.getuid(), st['CapEff'].strip(), st['NoNewPrivs'].strip(), can_write('/opt/x'),"
             " can_write('/tmp/x'), ','.join(ifaces), sorted(os.sched_getaffinity(0)))\n")
    config = containers.container_config(engine, spec, image, gpu=False)
    config.update(entrypoint=["python", "-c", probe], command=[], name=None)
    c = engine.client.containers.run(**{**config, "detach": True})
    try:
        assert c.wait(timeout=120)["StatusCode"] == 0, c.logs().decode()
        uid, capeff, nnp, root_w, tmp_w, ifaces, cpus = c.logs(stderr=False).decode().split(maxsplit=6)
    finally:
        c.remove(force=True)
    assert int(uid) != 0 and int(capeff, 16) == 0 and nnp == "1"
    assert (root_w, tmp_w) == ("False", "True")
    assert ifaces == "lo" and cpus.strip() == "[0]"


def _numpy_spec(compose: ComposeFile, **kw) -> RunSpec:
    svc = compose.service_for("numpy", "cpu")
    base = dict(framework="numpy", device="cpu", image=svc.image, flavour="cpu", dims=[2], variants=["loop"], n=100,
                iters=5, repeats=1, dtype="float64", seed=0, lr=1e-3, threads=1, cpuset=[0], timeout_s=60,
                mem_limit="1g", pids_limit=256, run_id=f"gpu-request-{os.getpid()}")
    return RunSpec(**{**base, **kw})


def test_gpu_request_names_every_gpu_or_exactly_the_ones_asked(engine: DockerEngine, compose: ComposeFile,
                                                               numpy_image) -> None:
    """What the engine is asked for (created, never started: a create succeeds without the NVIDIA runtime)."""
    image = engine.require_image(compose.service_for("numpy", "cpu"))
    seen = {}
    for gpus in (None, ["0", "GPU-8e2c0d5a-1b2c-4d5e-8f90-123456789abc"]):
        container = containers.create(engine, _numpy_spec(compose, device="gpu", gpus=gpus), image, gpu=True)
        try:
            seen[bool(gpus)] = engine.client.api.inspect_container(container.id)["HostConfig"]["DeviceRequests"]
        finally:
            container.remove(force=True)
    (every,), (chosen,) = seen[False], seen[True]
    if engine.facts().use_cdi:
        assert every["DeviceIDs"] == ["nvidia.com/gpu=all"]
        assert chosen["DeviceIDs"] == ["nvidia.com/gpu=0", "nvidia.com/gpu=GPU-8e2c0d5a-1b2c-4d5e-8f90-123456789abc"]
    else:
        assert every["Count"] == -1 and not every.get("DeviceIDs") and every["Capabilities"] == [["gpu"]]
        assert chosen["DeviceIDs"] == ["0", "GPU-8e2c0d5a-1b2c-4d5e-8f90-123456789abc"] and not chosen["Count"]


def test_engine_refusing_a_gpu_is_unavailable_and_any_other_refusal_is_not(engine: DockerEngine,
                                                                          compose: ComposeFile, numpy_image) -> None:
    if engine.facts().nvidia_runtime:
        pytest.skip("this Docker host can start GPU containers")
    image = engine.require_image(compose.service_for("numpy", "cpu"))
    with pytest.raises(GpuUnavailable, match="could not select device driver"):
        containers.run(engine, _numpy_spec(compose, device="gpu"), image, gpu=True, on_line=lambda _: None)
    # A refusal with nothing to do with GPUs (a cpuset the machine lacks) stays a plain refusal.
    with pytest.raises(GdbenchError) as refused:
        containers.run(engine, _numpy_spec(compose, cpuset=[511]), image, gpu=False, on_line=lambda _: None)
    assert not isinstance(refused.value, GpuUnavailable)
    assert engine.managed_containers(_numpy_spec(compose).run_id) == []


# --------------------------------------------------------------------------- failures become documents
def test_timeout_and_oom_become_failed_documents(engine: DockerEngine, tmp_path: Path, numpy_image) -> None:
    slow = tmp_path / "slow"
    r = gdbench("run", "--frameworks", "numpy", "--devices", "cpu", "--dims", "100", "--n", "100000",
                "--iters", "100000", "--timeout", "4", "--out", str(slow))
    assert r.returncode == 1, r.stderr
    doc = schema.loads((slow / "numpy-cpu.json").read_text())
    assert doc["status"] == "failed" and "timed out after 4 s" in doc["error"]
    assert all(row["time_per_iter_s"] is None for row in doc["results"])
    rec = json.loads((slow / "manifest.json").read_text())["containers"][0]
    assert rec["timed_out"] is True and rec["exit_code"] == 137  # killed by the timeout, not ended on its own

    big = tmp_path / "big"  # X alone is 400,000 x 100 x 8 B = 320 MB, four times the limit
    r = gdbench("run", "--frameworks", "numpy", "--devices", "cpu", "--dims", "100", "--n", "400000",
                "--iters", "10", "--mem-limit", "80m", "--out", str(big))
    assert r.returncode == 1, r.stderr
    doc = schema.loads((big / "numpy-cpu.json").read_text())
    assert doc["status"] == "failed" and "out of memory" in doc["error"], doc["error"]
    rec = json.loads((big / "manifest.json").read_text())["containers"][0]
    assert rec["oom_killed"] is True
    for run in (slow, big):
        assert engine.managed_containers(json.loads((run / "manifest.json").read_text())["run_id"]) == []


def test_sigterm_removes_the_running_container_and_keeps_the_run(engine: DockerEngine, tmp_path: Path,
                                                                 numpy_image) -> None:
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "orchestrator", "run", "--frameworks", "numpy", "--devices",
                             "cpu", "--dims", "100", "--n", "100000", "--iters", "100000", "--out", str(out)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        run_id, deadline = None, time.monotonic() + 120
        while time.monotonic() < deadline:
            if run_id is None and (out / "manifest.json").exists():
                run_id = json.loads((out / "manifest.json").read_text())["run_id"]
            if run_id and any(c["status"] == "running" for c in engine.managed_containers(run_id)):
                break
            time.sleep(0.2)
        else:
            pytest.fail("the container never started")
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "interrupted" in err and f"--resume {out}" in err
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "interrupted" and manifest["containers"][0]["status"] == "interrupted"
    assert not (out / "numpy-cpu.json").exists()  # nothing half-measured is stored
    assert engine.managed_containers(run_id) == []
    with RunDir(out).locked():  # the lock died with the process
        pass


# ------------------------------------------------------------------------------------ doctor and images
def test_doctor_reports_this_host(engine: DockerEngine, compose: ComposeFile, all_images) -> None:
    r = gdbench("doctor", "--json", timeout=120)
    checks = {c["name"]: c for c in json.loads(r.stdout) if not c["name"].startswith("image ")}
    images = {c["name"].removeprefix("image "): c for c in json.loads(r.stdout) if c["name"].startswith("image ")}
    facts = engine.facts()
    assert checks["docker daemon"]["level"] == "ok" and facts.docker_version in checks["docker daemon"]["detail"]
    assert checks["storage driver"]["detail"] == facts.storage_driver
    if facts.nvidia_runtime:
        assert checks["NVIDIA runtime"]["level"] == "ok"
    else:
        assert checks["NVIDIA runtime"]["level"] in ("info", "warning")
        assert "absent" in checks["NVIDIA runtime"]["detail"] and "nvidia-ctk" in checks["NVIDIA runtime"]["fix"]
    for fw in CPU_FRAMEWORKS:
        tag = compose.service_for(fw, "cpu").image
        assert images[tag]["level"] in ("ok", "warning") and "built" in images[tag]["detail"]
        assert engine.image(tag).framework_version in images[tag]["detail"]
    assert r.returncode == 0, r.stdout  # nothing blocks a CPU sweep here
    table = gdbench("doctor", timeout=120)
    assert "gdbench doctor" in table.stdout and "docker daemon" in table.stdout


def test_images_lists_every_compose_service(engine: DockerEngine, compose: ComposeFile, numpy_image) -> None:
    r = gdbench("images", "--json", timeout=120)
    assert r.returncode == 0, r.stderr
    rows = {row["service"]: row for row in json.loads(r.stdout)}
    assert set(rows) == set(compose.services)
    numpy = rows["numpy"]
    assert numpy["built"] and numpy["tag"] == compose.service_for("numpy", "cpu").image
    assert numpy["labels"]["io.gdbench.framework"] == "numpy" and numpy["framework_version"]
    assert numpy["size_bytes"] > 0


def test_a_recorded_clock_lock_reaches_gpu_containers_only(engine: DockerEngine, compose: ComposeFile, numpy_image,
                                                           tmp_path: Path, monkeypatch) -> None:
    """What `gdbench gpu lock` recorded goes into a GPU container's environment (its provenance), not a CPU one's."""
    from orchestrator.hosts import gpuclocks

    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    gpuclocks.write_json_atomic(gpuclocks.record_path(), {"action": "lock", "asked": {"sm_mhz": 1200}})
    image = engine.require_image(compose.service_for("numpy", "cpu"))
    envs = {}
    for device in ("gpu", "cpu"):
        container = containers.create(engine, _numpy_spec(compose, device=device), image, gpu=device == "gpu")
        try:
            envs[device] = engine.client.api.inspect_container(container.id)["Config"]["Env"]
        finally:
            container.remove(force=True)
    clocks = [e for e in envs["gpu"] if e.startswith(f"{gpuclocks.RECORD_ENV}=")]
    assert len(clocks) == 1 and '"sm_mhz": 1200' in clocks[0]
    assert not any(e.startswith(f"{gpuclocks.RECORD_ENV}=") for e in envs["cpu"])


def test_an_oom_kill_is_read_from_the_event_stream_too(engine: DockerEngine, compose: ComposeFile, numpy_image) -> None:
    """A SIGKILLed container is asked for Docker's ``oom`` event, which can trail ``State.OOMKilled``: by the
    docker backend through the API, and by the Slurm step's shell function through Docker's CLI."""
    image = compose.services["numpy"].image
    since = int(time.time()) - 1
    ids = []
    try:
        for code in ("b = bytearray(400 * 2**20); b[::4096] = b'x' * len(b[::4096])", "pass"):
            c = engine.client.containers.run(image, entrypoint=["python", "-c", code], mem_limit="64m",
                                             memswap_limit="64m", network_mode="none", detach=True)
            ids.append(c.id)
            c.wait()
        killed, fine = (engine.client.api.inspect_container(i)["State"]["ExitCode"] for i in ids)
        assert (killed, fine) == (containers.SIGKILL_EXIT, 0)
        assert containers._oom_event(engine, ids[0], since) is True
        assert containers._oom_event(engine, ids[1], since) is False
        script = step.OOM_EVENT_FUNCTION + 'oom_event "$1" "$2"'
        answers = [subprocess.run(["bash", "-c", script, "oom_event", i, str(since)]).returncode for i in ids]
        assert answers == [0, 1], "the step's oom_event finds the OOM kill and only that"
    finally:
        for i in ids:
            engine.client.api.remove_container(i, force=True)
