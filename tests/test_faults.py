"""Faults injected into real sweeps: a real dockerd, the real gdbench images, real containers and signals.

Each scenario breaks one thing the way it breaks in practice (a container killed from outside, the kernel's
OOM killer, a hung solver, Ctrl-C/SIGTERM of ``gdbench run``, a container that prints garbage, a daemon or
image that is not there, a second orchestrator on the same directory) and checks what the sweep records,
how it exits, that finished documents survive intact, and that nothing it started is left behind.

Garbage output comes from real containers too: small images derived ``FROM`` the gdbench images whose
entrypoint runs the real solver and then spoils its stdout; a throwaway compose file points the real CLI at
them. Nothing here mocks Docker.

``GDBENCH_FAULTS_TABLE=path.md`` writes the outcome of every scenario as the markdown table of
``docs/faults.md``.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime as dt
import json
import math
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator.backends.docker.engine import DockerEngine
from orchestrator.errors import (
    EXIT_ENVIRONMENT,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_INVALID,
)
from orchestrator.images.compose import ComposeFile
from orchestrator.labels import CONTAINER as LABEL_KEY
from orchestrator.labels import MANAGED as LABEL_MANAGED
from orchestrator.labels import RUN as LABEL_RUN
from orchestrator.results.merge import load_runs
from orchestrator.sweep.spec import SweepOptions
from solvers import schema
from tests.conftest import ROOT, SMALL, FaultTable, gdbench

#: Every scenario runs the real CPU images.
pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("all_images")]

#: The shared small options, CPU only.
SMALL_CPU = ["--devices", "cpu", *SMALL]
#: X is 100,000 x 100 float64 (80 MB) and 100,000 steps: minutes of work, so the container is surely running
#: when the test acts on it (a timeout or a kill ends it long before).
LONG = ["--devices", "cpu", "--dims", "100", "--n", "100000", "--iters", "100000", "--repeats", "1",
        "--max-repeats", "1", "--no-sync-check"]

FAULTS = FaultTable("GDBENCH_FAULTS_TABLE", r"/\S*/pytest-\d+/[^/\s]+")
record = FAULTS.record


@pytest.fixture(scope="module", autouse=True)
def outcome_table() -> Iterator[None]:
    yield
    FAULTS.write()


# ------------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def dangling_before(engine: DockerEngine) -> set[str]:
    return _dangling_volumes(engine)


def _dangling_volumes(engine: DockerEngine) -> set[str]:
    return {v.name for v in engine.client.volumes.list(filters={"dangling": True})}


def gdbench_bg(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "orchestrator", *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _run_id(out: Path, proc: subprocess.Popen, deadline_s: float = 120) -> str:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if (out / "manifest.json").exists():
            return json.loads((out / "manifest.json").read_text())["run_id"]
        _alive(proc)
        time.sleep(0.1)
    pytest.fail(f"no manifest in {out} after {deadline_s} s")


def _alive(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        _, err = proc.communicate()
        pytest.fail(f"gdbench exited early ({proc.returncode}): {err[-3000:]}")


def wait_running(engine: DockerEngine, run_id: str, key: str, proc: subprocess.Popen, deadline_s: float = 120) -> Any:
    """The container of ``key`` in run ``run_id`` once the daemon says it is running (found by its labels)."""
    labels = [f"{LABEL_RUN}={run_id}", f"{LABEL_KEY}={key}"]
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        found = engine.client.containers.list(filters={"label": labels, "status": "running"})
        if found:
            return found[0]
        _alive(proc)
        time.sleep(0.1)
    pytest.fail(f"container {key} of run {run_id} never ran")


def container_events(engine: DockerEngine, run_id: str, since: dt.datetime, until: dt.datetime) -> dict[str, list[str]]:
    """The daemon's own record of this run's containers: {"create": [keys], "destroy": [keys]}."""
    # The daemon reads "seconds.nanoseconds" (nine digits); the SDK would truncate a datetime to whole seconds,
    # and a window widened to whole seconds also catches an earlier run's containers of the same run id.
    events = engine.client.events(since=f"{since.timestamp():.9f}", until=math.ceil(until.timestamp()),
                                filters={"type": "container", "event": ["create", "destroy"],
                                         "label": [f"{LABEL_RUN}={run_id}"]}, decode=True)
    seen: dict[str, list[str]] = {"create": [], "destroy": []}
    for e in events:
        seen[e.get("Action") or e["status"]].append(e["Actor"]["Attributes"].get(LABEL_KEY, "?"))
    return seen


def assert_nothing_left(engine: DockerEngine, run_id: str, dangling_before: set[str]) -> None:
    """No container of the run exists (running or not), and no new dangling volume appeared."""
    left = engine.client.containers.list(all=True, filters={"label": [f"{LABEL_MANAGED}=1", f"{LABEL_RUN}={run_id}"]})
    assert [c.name for c in left] == []
    assert _dangling_volumes(engine) - dangling_before == set()


def assert_run_dir_sound(out: Path) -> None:
    """Every document validates, and no temp file of an atomic write is left behind."""
    for path in out.glob("*.json"):
        if path.name != "manifest.json":
            schema.loads(path.read_text())
    assert sorted(p.name for p in out.iterdir() if p.name.endswith(".tmp")) == []


def one_error_line(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in stderr, stderr
    return lines[0]


class GatedDockerSocket:
    """A unix socket in front of the real daemon's that holds every connection until ``open()``.

    It stretches the moment between ``gdbench run`` checking its ``--out`` directory and locking it, so another
    run can finish there in between: the race two CI jobs started together can hit.
    """

    def __init__(self, path: Path, upstream: str) -> None:
        self.path, self.upstream = path, upstream
        self.connected, self.gate = threading.Event(), threading.Event()
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(path))
        self.server.listen(8)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            self.connected.set()
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        self.gate.wait()
        up = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        up.connect(self.upstream)

        def pump(src: socket.socket, dst: socket.socket) -> None:
            with contextlib.suppress(OSError):
                while data := src.recv(1 << 16):
                    dst.sendall(data)
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)

        threading.Thread(target=pump, args=(up, client), daemon=True).start()
        pump(client, up)

    def open(self) -> None:
        self.gate.set()

    def close(self) -> None:
        self.gate.set()
        self.server.close()


# -------------------------------------------------------------------------------------------- inotify
class DirWatch:
    """inotify on one directory: what was created, written and renamed in it, in order (Linux only)."""

    IN_MODIFY, IN_CLOSE_WRITE, IN_MOVED_TO, IN_CREATE = 0x2, 0x8, 0x80, 0x100
    NAMES = {IN_MODIFY: "modify", IN_CLOSE_WRITE: "close_write", IN_MOVED_TO: "moved_to", IN_CREATE: "create"}

    def __init__(self, path: Path) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        self.fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0 or libc.inotify_add_watch(self.fd, os.fsencode(path), sum(self.NAMES)) < 0:
            raise OSError(ctypes.get_errno(), "inotify unavailable")
        self.events: list[tuple[str, str]] = []

    def drain(self) -> list[tuple[str, str]]:
        while True:
            try:
                buf = os.read(self.fd, 1 << 16)
            except BlockingIOError:
                return self.events
            i = 0
            while i < len(buf):
                _wd, mask, _cookie, size = struct.unpack_from("iIII", buf, i)
                name = buf[i + 16:i + 16 + size].rstrip(b"\0").decode()
                i += 16 + size
                self.events += [(self.NAMES[bit], name) for bit in self.NAMES if mask & bit]

    def close(self) -> None:
        os.close(self.fd)


# ============================================================ 1. kill, timeout, hardening, atomic writes
@pytest.fixture(scope="module")
def faulty_sweep(engine: DockerEngine, compose: ComposeFile, tmp_path_factory, dangling_before) -> dict[str, Any]:
    """numpy → still computing at --timeout 8; jax → ``docker kill`` from outside; numba → runs after both.

    The running numpy container is inspected before it times out; inotify watches the run directory.
    """
    out = tmp_path_factory.mktemp("faulty") / "run"
    out.mkdir()
    watch = DirWatch(out)
    t0 = _now()
    proc = gdbench_bg("run", "--frameworks", "numpy,jax,numba", *LONG, "--timeout", "8", "--out", str(out))
    try:
        run_id = _run_id(out, proc)
        numpy_c = wait_running(engine, run_id, "numpy-cpu", proc)
        inspected = engine.client.api.inspect_container(numpy_c.id)
        top = numpy_c.top()
        pid1 = numpy_c.exec_run(["cat", "/proc/1/status"]).output.decode()
        jax_c = wait_running(engine, run_id, "jax-cpu", proc)
        jax_c.kill()
        stdout, stderr = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
    t1 = _now()
    events = watch.drain()
    watch.close()
    return {"out": out, "rc": proc.returncode, "stdout": stdout, "stderr": stderr, "run_id": run_id,
            "manifest": json.loads((out / "manifest.json").read_text()), "inspect": inspected, "top": top,
            "pid1_status": pid1, "events": events, "containers": container_events(engine, run_id, t0, t1)}


def _bytes(size: str) -> int:
    """Docker's size notation (``4g``, ``512m``) in bytes."""
    return int(size.rstrip("bkmg")) * 1024 ** "bkmg".index(size[-1]) if size[-1] in "bkmg" else int(size)


def _rec(manifest: dict[str, Any], key: str) -> dict[str, Any]:
    (rec,) = [c for c in manifest["containers"] if c["key"] == key]
    return rec


def test_container_past_its_timeout_is_killed_and_the_sweep_goes_on(faulty_sweep: dict, engine: DockerEngine,
                                                                     dangling_before: set[str]) -> None:
    m, out = faulty_sweep["manifest"], faulty_sweep["out"]
    assert faulty_sweep["rc"] == EXIT_FAILED, faulty_sweep["stderr"]
    assert m["status"] == "complete" and [c["key"] for c in m["containers"]] == ["numpy-cpu", "jax-cpu", "numba-cpu"]
    rec = _rec(m, "numpy-cpu")
    assert rec["status"] == "failed" and rec["timed_out"] is True and rec["oom_killed"] is False
    assert rec["exit_code"] == 137 and rec["reason"] == "timed out after 8 s; container killed"
    doc = schema.loads((out / "numpy-cpu.json").read_text())
    assert doc["status"] == "failed" and doc["error"] == rec["reason"]
    assert all(r["status"] == "failed" and r["time_per_iter_s"] is None and r["reason"] == rec["reason"]
               for r in doc["results"])
    # The sweep went on: the next two containers were created, and every one was removed.
    assert faulty_sweep["containers"]["create"] == ["numpy-cpu", "jax-cpu", "numba-cpu"]
    assert sorted(faulty_sweep["containers"]["destroy"]) == sorted(faulty_sweep["containers"]["create"])
    numba = _rec(m, "numba-cpu")
    assert numba["status"] != "interrupted" and schema.loads((out / "numba-cpu.json").read_text())
    assert_nothing_left(engine, faulty_sweep["run_id"], dangling_before)
    record("container runs past the per-container timeout", "`--timeout 8` on a solver with minutes of work",
           f"{rec['status']}, container killed at 8 s and removed, sweep went on", rec["reason"], faulty_sweep["rc"])


def test_container_killed_from_outside_is_failed_with_its_exit_code(faulty_sweep: dict) -> None:
    m, out = faulty_sweep["manifest"], faulty_sweep["out"]
    rec = _rec(m, "jax-cpu")
    assert rec["status"] == "failed" and rec["exit_code"] == 137
    assert rec["timed_out"] is False and rec["oom_killed"] is False
    assert rec["reason"] == "crashed with exit code 137 and no document (killed by SIGKILL)"
    doc = schema.loads((out / "jax-cpu.json").read_text())
    assert doc["status"] == "failed" and all(r["time_per_iter_s"] is None for r in doc["results"])
    assert doc["provenance"]["written_by"] == "orchestrator"
    record("container killed mid-run", "`docker kill` of the running container from outside",
           f"{rec['status']}, removed, sweep went on to the next container", rec["reason"], faulty_sweep["rc"])


def test_running_container_is_hardened(faulty_sweep: dict) -> None:
    """What the daemon says about a RUNNING orchestrator container, and what its PID 1 says about itself."""
    attrs = faulty_sweep["inspect"]
    hc, cfg = attrs["HostConfig"], attrs["Config"]
    assert attrs["State"]["Running"] is True
    user = cfg["User"]
    assert user and user.split(":")[0] not in ("", "0", "root")
    assert hc["ReadonlyRootfs"] is True
    assert hc["CapDrop"] == ["ALL"] and not hc.get("CapAdd") and hc["Privileged"] is False
    assert "no-new-privileges:true" in hc["SecurityOpt"]
    assert hc["NetworkMode"] == "none" and attrs["NetworkSettings"]["Networks"].keys() <= {"none"}
    defaults = SweepOptions()
    assert hc["Memory"] == _bytes(defaults.mem_limit) and hc["MemorySwap"] == hc["Memory"]  # no swap on top
    assert hc["PidsLimit"] == defaults.pids_limit
    assert hc["PidMode"] in ("", "private") and hc["IpcMode"] in ("private", "shareable", "none", "")
    assert not hc.get("Devices") and not hc.get("DeviceRequests")
    # No Docker socket, no host path: the only writable place is the tmpfs, and the caches point into it.
    assert not hc.get("Binds") and attrs["Mounts"] == [] and not hc.get("VolumesFrom")
    assert "docker.sock" not in json.dumps(attrs)
    assert set(hc["Tmpfs"]) == {"/tmp"}
    env = dict(e.split("=", 1) for e in cfg["Env"])
    for var in ("HOME", "XDG_CACHE_HOME", "NUMBA_CACHE_DIR", "JAX_COMPILATION_CACHE_DIR", "TRITON_CACHE_DIR"):
        assert env[var].startswith("/tmp"), (var, env[var])
    assert cfg["Labels"][LABEL_MANAGED] == "1" and cfg["Labels"][LABEL_RUN] == faulty_sweep["run_id"]
    # The solver process itself: not root, no capabilities, no-new-privileges set by the kernel.
    status = dict(line.split(":\t", 1) for line in faulty_sweep["pid1_status"].splitlines() if ":\t" in line)
    assert status["Uid"].split()[0] == user.split(":")[0] != "0"
    assert int(status["CapEff"], 16) == 0 and int(status["CapBnd"], 16) == 0 and status["NoNewPrivs"].strip() == "1"
    titles = faulty_sweep["top"]["Titles"]
    uid_col = titles.index("UID")
    assert all(p[uid_col] not in ("root", "0") for p in faulty_sweep["top"]["Processes"])
    record("hardening of a running container", "`docker inspect` + `/proc/1/status` while it runs",
           f"user {user}, read-only rootfs, tmpfs /tmp, CapEff 0, no-new-privileges, network none, "
           f"memory {defaults.mem_limit}/no swap, pids {hc['PidsLimit']}, no mounts", None, "-")


def test_documents_are_written_by_temp_file_and_rename(faulty_sweep: dict) -> None:
    """inotify saw the final names only ever appear by rename, never created or written in place."""
    events = faulty_sweep["events"]
    finals = {name for _, name in events if name.endswith(".json") and not name.startswith(".")}
    assert {"manifest.json", "numpy-cpu.json", "jax-cpu.json", "numba-cpu.json"} <= finals
    for name in finals:
        on_final = {kind for kind, n in events if n == name}
        assert on_final == {"moved_to"}, (name, on_final)
    temps = [n for kind, n in events if kind == "close_write" and n != ".gdbench.lock"]
    assert temps and all(n.startswith(".") and n.endswith(".tmp") for n in temps)
    assert_run_dir_sound(faulty_sweep["out"])
    renames = sum(1 for kind, _ in events if kind == "moved_to")
    record("a reader looks at the run directory mid-write", "inotify on the run directory during the sweep above",
           f"all {renames} writes were temp file + rename; no `.tmp` left", None, "-")


# ===================================================================================== 2. out of memory
def test_out_of_memory_is_failed_with_the_oom_flag(engine: DockerEngine, compose: ComposeFile, tmp_path: Path,
                                                   dangling_before: set[str]) -> None:
    out = tmp_path / "run"  # X alone is 400,000 x 100 x 8 B = 320 MB, four times the limit
    t0 = _now()
    r = gdbench("run", "--frameworks", "numpy,numba", "--devices", "cpu", "--dims", "100", "--n", "400000",
                "--iters", "10", "--repeats", "1", "--max-repeats", "1", "--mem-limit", "80m", "--out", str(out))
    t1 = _now()
    assert r.returncode == EXIT_FAILED, r.stderr
    m = json.loads((out / "manifest.json").read_text())
    rec = _rec(m, "numpy-cpu")
    assert rec["status"] == "failed" and rec["oom_killed"] is True and rec["timed_out"] is False
    assert rec["reason"] == "out of memory: killed at mem_limit 80m (OOMKilled)"
    doc = schema.loads((out / "numpy-cpu.json").read_text())
    assert doc["status"] == "failed" and all(row["time_per_iter_s"] is None for row in doc["results"])
    assert m["status"] == "complete" and schema.loads((out / "numba-cpu.json").read_text())  # went on
    seen = container_events(engine, m["run_id"], t0, t1)
    assert seen["create"] == ["numpy-cpu", "numba-cpu"] and sorted(seen["destroy"]) == sorted(seen["create"])
    assert_nothing_left(engine, m["run_id"], dangling_before)
    assert_run_dir_sound(out)
    record("container runs out of memory", "`--mem-limit 80m` with a 320 MB problem (`--n 400000 --dims 100`)",
           f"{rec['status']}, exit {rec['exit_code']}, OOMKilled, removed, sweep went on", rec["reason"], r.returncode)


# ========================================================================== 3. SIGINT / SIGTERM + resume
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_stops_the_sweep_cleanly_and_resume_runs_only_the_rest(sig: signal.Signals, engine: DockerEngine,
                                                                      compose: ComposeFile, tmp_path: Path,
                                                                      dangling_before: set[str]) -> None:
    out = tmp_path / "run"
    t0 = _now()
    proc = gdbench_bg("run", "--frameworks", "numpy,jax", *SMALL_CPU, "--out", str(out))
    try:
        run_id = _run_id(out, proc)
        wait_running(engine, run_id, "jax-cpu", proc)  # numpy's document is in by now; jax is mid-run
        kept = (out / "numpy-cpu.json").read_bytes()
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    t1 = _now()
    assert proc.returncode == EXIT_INTERRUPTED, err
    assert "Traceback" not in err and f"continue with: gdbench run --resume {out}" in err
    m = json.loads((out / "manifest.json").read_text())
    assert m["status"] == "interrupted"
    assert [(c["key"], c["status"]) for c in m["containers"]] == [("numpy-cpu", "ok"), ("jax-cpu", "interrupted")]
    assert (out / "numpy-cpu.json").read_bytes() == kept  # the finished document is untouched and valid
    assert schema.loads(kept.decode())["status"] == "ok"
    assert not (out / "jax-cpu.json").exists()  # nothing half-measured is stored
    assert_run_dir_sound(out)
    seen = container_events(engine, run_id, t0, t1)
    assert seen["create"] == ["numpy-cpu", "jax-cpu"] and sorted(seen["destroy"]) == sorted(seen["create"])
    assert_nothing_left(engine, run_id, dangling_before)

    t2 = _now()
    r = gdbench("run", "--resume", str(out))
    t3 = _now()
    assert r.returncode in (0, 1, 3) and "Traceback" not in r.stderr, r.stderr
    assert container_events(engine, run_id, t2, t3)["create"] == ["jax-cpu"]  # only what was missing
    resumed = json.loads((out / "manifest.json").read_text())
    assert resumed["run_id"] == run_id and resumed["status"] == "complete"
    assert [(c["key"], c.get("status_note")) for c in resumed["containers"]] == [("numpy-cpu", "resumed"),
                                                                                 ("jax-cpu", None)]
    assert (out / "numpy-cpu.json").read_bytes() == kept
    assert schema.loads((out / "jax-cpu.json").read_text())["framework"] == "jax"
    assert_nothing_left(engine, run_id, dangling_before)
    record(f"{sig.name} to `gdbench run` mid-sweep", f"`{sig.name}` to the process while its 2nd container runs",
           "running container killed and removed; finished document kept byte for byte; manifest `interrupted`; "
           "`--resume` started only the missing container", "interrupted before it finished", proc.returncode)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_repeated_signals_do_not_cut_the_cleanup_short(sig: signal.Signals, engine: DockerEngine, compose: ComposeFile,
                                                       tmp_path: Path, dangling_before: set[str]) -> None:
    """Ctrl-C hammered, or a supervisor repeating SIGTERM: the first signal interrupts, the rest wait."""
    out = tmp_path / "run"
    proc = gdbench_bg("run", "--frameworks", "numpy", *LONG, "--out", str(out))
    try:
        run_id = _run_id(out, proc)
        wait_running(engine, run_id, "numpy-cpu", proc)
        for _ in range(5):
            proc.send_signal(sig)
            time.sleep(0.01)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == EXIT_INTERRUPTED and "Traceback" not in err, err
    m = json.loads((out / "manifest.json").read_text())
    assert m["status"] == "interrupted" and [c["status"] for c in m["containers"]] == ["interrupted"]
    assert_nothing_left(engine, run_id, dangling_before)
    assert_run_dir_sound(out)
    record(f"{sig.name} sent 5 times, 10 ms apart", "while the container runs",
           "first one interrupts; the rest wait for the cleanup; manifest `interrupted`, container removed",
           "interrupted before it finished", proc.returncode)


# ====================================================================== 4. garbage on a container's stdout
GARBLE = '''\
"""Runs the real solver, then spoils what it printed the way a broken container would."""
import json, subprocess, sys, time

mode, args = sys.argv[1], sys.argv[2:]
if mode == "nonjson":
    print("Segmentation fault (core dumped)")
    print("this is not JSON")
    sys.exit(0)
if mode == "wrong-framework":
    args[args.index("--framework") + 1] = "numpy"
out = subprocess.run([sys.executable, "-m", "solvers", *args], stdout=subprocess.PIPE, check=False).stdout.decode()
if mode == "truncated":
    sys.stdout.write(out[: len(out) // 2])
elif mode == "hang":  # a complete document, then the process never exits
    sys.stdout.write(out)
    sys.stdout.flush()
    time.sleep(3600)
elif mode == "invalid":
    doc = json.loads(out)
    doc["status"] = "splendid"
    print(json.dumps(doc, indent=2))
else:
    sys.stdout.write(out)
'''
GARBAGE = {"numpy": "truncated", "numba": "invalid", "jax": "nonjson", "torch": "wrong-framework",
           "tensorflow": "hang"}
#: Long enough for the solver runs inside the others (seconds), short enough to wait for the hung one.
GARBAGE_TIMEOUT = 20


@pytest.fixture(scope="module")
def garbage_compose(engine: DockerEngine, compose: ComposeFile, tmp_path_factory) -> Iterator[Path]:
    """A compose file whose services are the real gdbench images with a spoiling entrypoint on top."""
    ctx = tmp_path_factory.mktemp("garble")
    (ctx / "garble.py").write_text(GARBLE)
    services, tags = [], []
    for fw, mode in GARBAGE.items():
        base = compose.service_for(fw, "cpu").image
        tag = f"gdbench-faults/{fw}:{mode}-{os.getpid()}"
        (ctx / f"Dockerfile.{fw}").write_text(
            f"FROM {base}\nCOPY garble.py /opt/garble.py\nENTRYPOINT [\"python\", \"/opt/garble.py\", \"{mode}\"]\n")
        engine.client.images.build(path=str(ctx), dockerfile=f"Dockerfile.{fw}", tag=tag, rm=True, forcerm=True)
        tags.append(tag)
        services.append(f"  {fw}:\n    image: {tag}\n")
    (ctx / "compose.yaml").write_text("services:\n" + "".join(services))
    try:
        yield ctx / "compose.yaml"
    finally:
        for tag in tags:
            engine.client.images.remove(tag, force=True)


def test_garbage_output_is_rejected_at_the_boundary_and_never_merged(engine: DockerEngine, garbage_compose: Path,
                                                                     tmp_path: Path,
                                                                     dangling_before: set[str]) -> None:
    out = tmp_path / "run"
    t0 = _now()
    r = gdbench("run", "--compose", str(garbage_compose), "--frameworks", ",".join(GARBAGE), *SMALL_CPU,
                "--timeout", str(GARBAGE_TIMEOUT), "--out", str(out))
    t1 = _now()
    assert r.returncode == EXIT_FAILED and "Traceback" not in r.stderr, r.stderr
    m = json.loads((out / "manifest.json").read_text())
    recs = {c["key"]: c for c in m["containers"]}
    assert all(c["status"] == "failed" for c in recs.values()), recs
    assert {k: (c["exit_code"], c["timed_out"]) for k, c in recs.items()} == {
        **{f"{fw}-cpu": (0, False) for fw in GARBAGE if fw != "tensorflow"}, "tensorflow-cpu": (137, True)}
    reasons = {k.removesuffix("-cpu"): c["reason"] for k, c in recs.items()}
    # Each reason names the defect and quotes the first lines the container printed.
    assert reasons["numpy"].startswith("output rejected (not JSON (")
    assert 'it printed: { |   "schema_version": ' in reasons["numpy"]
    assert reasons["numba"].startswith("output rejected (invalid result document at status: 'splendid' is not one")
    assert "it printed: {" in reasons["numba"]
    assert reasons["jax"].startswith("output rejected (not JSON (Expecting value at line 1 column 1)); exit code 0")
    assert reasons["jax"].endswith("it printed: Segmentation fault (core dumped) | this is not JSON")
    assert reasons["torch"] == "output rejected: document is for numpy/cpu, expected torch/cpu"
    # Whatever it printed before hanging, a process that had to be killed is not believed.
    assert reasons["tensorflow"] == f"timed out after {GARBAGE_TIMEOUT} s; container killed"
    for fw, reason in reasons.items():
        doc = schema.loads((out / f"{fw}-cpu.json").read_text())
        assert doc["status"] == "failed" and doc["error"] == reason and doc["framework"] == fw
        assert doc["provenance"]["written_by"] == "orchestrator"  # the container's output was not kept
        assert all(row["status"] == "failed" and row["time_per_iter_s"] is None and row["repeat_times_s"] == []
                   for row in doc["results"])
    # Merged, these are failure rows only: no number from any of them.
    df = load_runs([out])
    assert len(df) == len(GARBAGE) * 2 * 2 and set(df.status) == {"failed"}
    assert df.time_per_iter_s.isna().all() and df.max_rel_error.isna().all()
    assert set(df.framework) == set(GARBAGE)
    seen = container_events(engine, m["run_id"], t0, t1)
    assert sorted(seen["create"]) == sorted(f"{fw}-cpu" for fw in GARBAGE)
    assert sorted(seen["destroy"]) == sorted(seen["create"])
    assert_nothing_left(engine, m["run_id"], dangling_before)
    assert_run_dir_sound(out)
    how = {"truncated": "the real document cut in half", "invalid": "the real document with `status: splendid`",
           "nonjson": "two lines of text, exit 0", "wrong-framework": "a valid numpy document from the torch container",
           "hang": f"the real document, then sleeps forever (`--timeout {GARBAGE_TIMEOUT}`)"}
    for fw, mode in GARBAGE.items():
        outcome = ("failed, killed at the timeout and removed; what it printed is discarded" if mode == "hang"
                   else "failed, never merged (no timing row)")
        record(f"container output: {mode}", how[mode], outcome, reasons[fw], r.returncode)


# =================================================================== 5. the environment is not usable
def test_unusable_environment_is_one_line_with_the_fix(engine: DockerEngine, compose: ComposeFile,
                                                       tmp_path: Path) -> None:
    refusing = tmp_path / "dead.sock"  # a daemon that died and left its socket: connect() is refused
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(refusing))
    not_built = tmp_path / "not-built.yaml"
    not_built.write_text("services:\n  numpy:\n    image: gdbench/numpy:0.0.0-never-built\n")
    cases = [
        ("Docker socket missing", "`DOCKER_HOST=unix:///…/no-such.sock`", [], {"DOCKER_HOST": f"unix://{tmp_path}/no.sock"},
         EXIT_ENVIRONMENT, "cannot reach the Docker daemon: the Docker socket does not exist", "fix: start the daemon"),
        ("Docker daemon down", "`DOCKER_HOST` at a socket nobody listens on", [], {"DOCKER_HOST": f"unix://{refusing}"},
         EXIT_ENVIRONMENT, "cannot reach the Docker daemon: the Docker daemon refused the connection",
         "fix: start the daemon or check DOCKER_HOST"),
        ("image not built (tag)", "compose file naming an absent tag", ["--compose", str(not_built)], {},
         EXIT_ENVIRONMENT, "image gdbench/numpy:0.0.0-never-built (compose service numpy) is not built",
         "fix: make images"),
        ("compose service missing", "`--frameworks jax` with a compose file that lacks it",
         ["--frameworks", "jax", "--compose", str(not_built)], {}, EXIT_ENVIRONMENT, "has no service 'jax'",
         "fix: add a 'jax' service"),
        ("compose file missing", "`--compose` at a path that does not exist",
         ["--compose", str(tmp_path / "nope.yaml")], {}, EXIT_ENVIRONMENT, "nope.yaml does not exist",
         "fix: pass --compose PATH"),
    ]
    if engine.image(compose.service_for("torch", "cuda").image) is None:  # a GPU host may have built it
        cases.insert(3, ("image not built (flavour)", "`--frameworks torch --flavour cuda` without CUDA images",
                         ["--frameworks", "torch", "--flavour", "cuda"], {}, EXIT_ENVIRONMENT,
                         "(compose service torch-gpu) is not built", "fix: make images FLAVOUR=cuda"))
    try:
        for fault, how, args, env, code, message, fix in cases:
            out = tmp_path / f"run-{len(FAULTS.rows)}-{fault.split()[0]}"
            argv = ["--frameworks", "numpy", *args] if "--frameworks" not in args else args
            r = gdbench("run", *argv, *SMALL_CPU, "--out", str(out), env=env, timeout=120)
            line = one_error_line(r.stderr)
            assert r.returncode == code and message in line and fix in line, (fault, r.returncode, r.stderr)
            assert r.stdout == "" and not list(out.glob("*.json"))  # no manifest, no document
            record(fault, how, "refused before any container; nothing written", line.removeprefix("error: "),
                   r.returncode)
    finally:
        dead.close()


# ================================================================== 6. two orchestrators, one directory
def test_second_orchestrator_on_a_running_sweep_is_refused(engine: DockerEngine, compose: ComposeFile,
                                                              tmp_path: Path, dangling_before: set[str]) -> None:
    out = tmp_path / "run"
    t0 = _now()
    first = gdbench_bg("run", "--frameworks", "numpy", *LONG, "--timeout", "60", "--out", str(out))
    try:
        run_id = _run_id(out, first)
        wait_running(engine, run_id, "numpy-cpu", first)
        again = gdbench("run", "--frameworks", "numpy", *SMALL_CPU, "--out", str(out), timeout=120)
        resume = gdbench("run", "--resume", str(out), timeout=120)
        _alive(first)
        first.send_signal(signal.SIGTERM)
        _, err = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            first.kill()
    t1 = _now()
    line = one_error_line(again.stderr)
    assert again.returncode == EXIT_INVALID and f"{out} already holds a gdbench run" in line
    line2 = one_error_line(resume.stderr)
    assert resume.returncode == EXIT_ENVIRONMENT
    assert f"{out} is in use by another gdbench run (pid {first.pid})" in line2 and "fix: wait for it" in line2
    assert first.returncode == EXIT_INTERRUPTED, err
    m = json.loads((out / "manifest.json").read_text())
    assert m["run_id"] == run_id and [c["key"] for c in m["containers"]] == ["numpy-cpu"]
    seen = container_events(engine, run_id, t0, t1)
    assert seen["create"] == ["numpy-cpu"] and seen["destroy"] == ["numpy-cpu"]  # the refused ones started none
    assert_nothing_left(engine, run_id, dangling_before)
    record("second `gdbench run --out DIR` on a directory in use", "while the first one's container runs",
           "refused, nothing started", line.removeprefix("error: "), again.returncode)
    record("second `gdbench run --resume DIR` on a directory in use", "while the first one's container runs",
           "refused by the directory lock, nothing started", line2.removeprefix("error: "), resume.returncode)


def test_a_run_that_finishes_between_check_and_lock_is_not_overwritten(engine: DockerEngine, compose: ComposeFile,
                                                                       tmp_path: Path) -> None:
    """Two runs started together on one directory: the later one re-checks under the lock and refuses."""
    docker_host = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    sock = docker_host.removeprefix("unix://")
    if not docker_host.startswith("unix://") or not Path(sock).exists():
        pytest.skip(f"needs the daemon on a local unix socket (DOCKER_HOST is {docker_host})")
    out = tmp_path / "run"
    gated = GatedDockerSocket(tmp_path / "gated.sock", sock)
    try:
        late = gdbench_bg("run", "--frameworks", "numpy", *SMALL_CPU, "--out", str(out),
                          "--docker-host", f"unix://{tmp_path / 'gated.sock'}")
        assert gated.connected.wait(60), "the second run never reached the daemon"
        assert not out.exists()  # it has checked --out and is now waiting on its daemon connection
        first = gdbench("run", "--frameworks", "numpy", *SMALL_CPU, "--out", str(out))
        assert first.returncode == 0, first.stderr
        finished = (out / "manifest.json").read_bytes()
        gated.open()
        _, err = late.communicate(timeout=120)
    finally:
        gated.close()
        if late.poll() is None:
            late.kill()
    line = one_error_line(err)
    assert late.returncode == EXIT_INVALID and f"{out} already holds a gdbench run" in line, err
    assert (out / "manifest.json").read_bytes() == finished  # the finished run's record is untouched
    record("a second run started together with the first on one `--out`",
           "the second checks `--out`, then the first finishes there before the second takes the lock",
           "refused under the lock; the finished run untouched", line.removeprefix("error: "), late.returncode)
