"""A sweep over several real Docker engines, and the faults a fleet adds — each with nothing lost.

Two extra dockerds start for the module (testbeds/engines.py): ``tls1`` on TCP with TLS over a veth pair,
``sock2`` on a unix socket, each in its own network namespace with its own data-root. They start empty:
the numpy image reaches them only through gdbench's own shipping (save → load from this machine's
engine). Every scenario runs the real ``gdbench`` CLI and ends by checking that no container with
gdbench's labels is left on any host. Nothing here mocks Docker.

``GDBENCH_FLEET_FAULTS_TABLE=path.md`` writes each scenario's outcome as a markdown table (docs/faults.md).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator.backends.docker.engine import DockerEngine
from orchestrator.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_INVALID, EXIT_OK, EXIT_UNAVAILABLE
from orchestrator.hosts import inventory
from orchestrator.labels import MANAGED
from testbeds.engines import Engine, Pki, engines
from tests.conftest import ROOT, FaultTable, gdbench

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("numpy_image"),
              pytest.mark.skipif(os.geteuid() != 0, reason="starting a dockerd needs root")]

TINY = ["-f", "numpy", "--devices", "cpu", "--dims", "2", "--n", "300", "--iters", "20", "--repeats", "2",
        "--max-repeats", "2",
        "--no-sync-check"]
#: Seconds of work per container (not minutes), so a test can act while it surely runs.
BUSY = ["-f", "numpy", "--devices", "cpu", "--dims", "50", "--n", "20000", "--iters", "1000", "--repeats", "2",
        "--max-repeats", "2",
        "--no-sync-check", "--threads", "1"]

FAULTS = FaultTable("GDBENCH_FLEET_FAULTS_TABLE", r"/tmp/(pytest-of-[^/]+/pytest-\d+|gdbe[^/]+)/[^\s)]*")
record = FAULTS.record


@pytest.fixture(scope="module", autouse=True)
def outcome_table() -> Iterator[None]:
    yield
    FAULTS.write()


class Fleet:
    """The module's engines, its PKI, and a hosts file naming them (plus ``local`` and an unreachable ``down``)."""

    def __init__(self, root: Path, pki: Pki, tls1: Engine, sock2: Engine) -> None:
        self.root, self.pki, self.tls1, self.sock2 = root, pki, tls1, sock2
        self.good = pki.client("good")
        self.hosts_file = root / "hosts.toml"
        self.hosts_file.write_text(
            f'[hosts.local]\nurl = "unix:///var/run/docker.sock"\n\n'
            f'[hosts.tls1]\nurl = "{tls1.tcp_url}"\ncert_path = "{self.good}"\n\n'
            f'[hosts.sock2]\nurl = "{sock2.socket_url}"\nthreads = 1\n\n'
            f'[hosts.down]\nurl = "unix://{root}/no-engine-here.sock"\n')

    def engines(self) -> dict[str, DockerEngine]:
        """A connection to every reachable host, the way gdbench makes it."""
        hosts = inventory.load(self.hosts_file)
        return {name: DockerEngine.for_host(name, hosts[name].settings) for name in ("local", "tls1", "sock2")}

    def run(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return gdbench("run", "--hosts-file", str(self.hosts_file), *args, timeout=timeout)

    def start(self, *args: str, log: Path) -> subprocess.Popen:
        with open(log, "w") as err:
            return subprocess.Popen([sys.executable, "-m", "orchestrator", "run", "--hosts-file",
                                     str(self.hosts_file), *args], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    root = tmp_path_factory.mktemp("fleet")
    pki = Pki.create(root / "pki")
    with engines(1) as (sock2,), engines(1, pki=pki) as (tls1,):
        yield Fleet(root, pki, tls1, sock2)


def assert_nothing_left(fleet: Fleet) -> None:
    for name, engine in fleet.engines().items():
        assert engine.managed_containers() == [], f"gdbench containers left on host {name}"


def documents(out: Path) -> dict[str, dict[str, Any]]:
    return {p.stem: json.loads(p.read_text()) for p in out.glob("*.json") if p.name != "manifest.json"}


def manifest(out: Path) -> dict[str, Any]:
    return json.loads((out / "manifest.json").read_text())


def wait_running(engine: DockerEngine, proc: subprocess.Popen, deadline_s: float = 120) -> None:
    """Until a gdbench container runs on ``engine`` (the orchestrator must still be alive)."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        assert proc.poll() is None, "gdbench exited before its container ran"
        if engine.client.containers.list(filters={"label": f"{MANAGED}=1", "status": "running"}):
            return
        time.sleep(0.05)
    raise AssertionError("no gdbench container started")


def test_one_sweep_over_three_engines_ships_images_and_marks_the_unreachable_host(fleet: Fleet, engine: DockerEngine,
                                                                                  compose, tmp_path: Path) -> None:
    tag = compose.service_for("numpy", "cpu").image
    local_id = engine.image(tag).id
    for name in ("tls1", "sock2"):  # fresh engines: the image can only arrive by shipping
        assert fleet.engines()[name].image(tag) is None
    out = tmp_path / "run"
    proc = fleet.run("--hosts", "all", *TINY, "--out", str(out))
    assert proc.returncode == EXIT_UNAVAILABLE, proc.stderr
    for name in ("tls1", "sock2"):
        assert re.search(rf"{name}: shipped {re.escape(tag)} \(streamed\): [\d.]+ MB in [\d.]+ s", proc.stderr)
        assert fleet.engines()[name].image(tag).id == local_id
    docs = documents(out)
    assert set(docs) == {"numpy-cpu", "numpy-cpu@tls1", "numpy-cpu@sock2", "numpy-cpu@down"}
    facts = {name: e.facts() for name, e in fleet.engines().items()}
    for key, name in (("numpy-cpu", "local"), ("numpy-cpu@tls1", "tls1"), ("numpy-cpu@sock2", "sock2")):
        doc = docs[key]
        assert doc["status"] == "ok" and all(r["status"] == "ok" for r in doc["results"])
        host = doc["provenance"]["host"]
        assert host["name"] == name and host["engine_version"] == facts[name].docker_version
        assert host["engine"] == "docker"
        assert host["hostname"] == facts[name].hostname != doc["provenance"]["hostname"]  # not the container's
        assert host["kernel"] and host["architecture"] and host["ncpu"]
        assert doc["provenance"]["image"]["id"] == local_id
    # The inventory's threads for sock2 replace the sweep's default there, and only there.
    assert docs["numpy-cpu@sock2"]["provenance"]["threads"]["requested"] == 1
    assert docs["numpy-cpu@tls1"]["provenance"]["threads"]["requested"] == 2
    # Only an engine on this machine (a unix socket) can say its CPU model; a TCP engine cannot.
    assert docs["numpy-cpu"]["provenance"]["host"]["cpu_model"]
    assert docs["numpy-cpu@tls1"]["provenance"]["host"]["cpu_model"] is None
    down = docs["numpy-cpu@down"]
    assert down["status"] == "unavailable"
    assert all(r["status"] == "unavailable" and "host down" in r["reason"] and "does not exist" in r["reason"]
               for r in down["results"])
    man = manifest(out)
    assert man["status"] == "complete" and set(man["hosts"]) == {"local", "tls1", "sock2", "down"}
    assert man["fleet"]["hosts"] == ["local", "tls1", "sock2", "down"]
    # The manifest keeps the sweep as asked; each host resolved its own threads (again so on --resume).
    assert man["sweep"]["threads"] is None
    assert (man["hosts"]["sock2"]["threads"], man["hosts"]["tls1"]["threads"]) == (1, 2)
    assert_nothing_left(fleet)
    record("host unreachable at start", "a hosts.toml entry whose socket does not exist", "its cells "
           "`unavailable`, the other hosts ran", down["results"][0]["reason"], proc.returncode)

    again = fleet.run("--hosts", "tls1", *TINY, "--out", str(tmp_path / "again"))  # same id there: nothing shipped
    assert again.returncode == EXIT_OK, again.stderr
    assert "shipped" not in again.stderr


def test_a_host_lost_mid_sweep_fails_its_cell_and_resume_reruns_only_that(fleet: Fleet, tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = fleet.start("--hosts", "tls1,sock2", *BUSY, "--out", str(out), log=tmp_path / "stderr")
    wait_running(fleet.engines()["sock2"], proc)
    fleet.sock2.kill()
    assert proc.wait(timeout=300) == EXIT_FAILED, (tmp_path / "stderr").read_text()
    docs = documents(out)
    assert docs["numpy-cpu@tls1"]["status"] == "ok"
    lost = docs["numpy-cpu@sock2"]
    assert lost["status"] == "failed" and "host sock2" in lost["error"] and "stopped answering" in lost["error"]
    assert manifest(out)["status"] == "complete"
    tls_written = (out / "numpy-cpu@tls1.json").stat().st_mtime_ns
    record("host lost mid-sweep", "its dockerd SIGKILLed while its container runs", "its running cell "
           "`failed`, the other hosts finished", lost["error"], proc.returncode)

    fleet.sock2.restart()
    resumed = gdbench("run", "--resume", str(out), timeout=300)  # the hosts come from the run's manifest
    assert resumed.returncode == EXIT_OK, resumed.stderr
    assert (out / "numpy-cpu@tls1.json").stat().st_mtime_ns == tls_written  # not run again
    assert documents(out)["numpy-cpu@sock2"]["status"] == "ok"
    recs = {r["key"]: r for r in manifest(out)["containers"]}
    assert recs["numpy-cpu@tls1"].get("status_note") == "resumed" and not recs["numpy-cpu@sock2"]["resumed"]
    assert_nothing_left(fleet)
    record("resume after a lost host", "`gdbench run --resume DIR` once the engine is back", "only the lost "
           "host's cell ran again", None, resumed.returncode)


def test_bad_client_certificates_are_one_line_naming_the_host(fleet: Fleet, tmp_path: Path) -> None:
    other = Pki.create(tmp_path / "other")
    foreign = other.client("foreign")  # signed by a CA the engine does not trust
    (foreign / "ca.pem").write_bytes((fleet.pki.root / "ca.pem").read_bytes())
    expired = fleet.pki.client("old", expired=True)
    missing = fleet.pki.client("lost")
    (missing / "cert.pem").unlink()
    url = fleet.tls1.tcp_url
    hosts = tmp_path / "hosts.toml"

    def write(name: str, folder: Path) -> None:
        hosts.write_text(f'[hosts.{name}]\nurl = "{url}"\ncert_path = "{folder}"\n')

    for name, folder, fragment in (("old", expired, "expired on"), ("lost", missing, "lacks cert.pem")):
        write(name, folder)
        proc = gdbench("run", "--hosts-file", str(hosts), "--hosts", name, *TINY, "--out", str(tmp_path / name))
        assert proc.returncode == EXIT_INVALID
        line = proc.stderr.strip()
        assert "\n" not in line and f"host {name}" in line and fragment in line, line
        assert not (tmp_path / name).exists()
        record(f"{'expired' if name == 'old' else 'missing'} client certificate", "cert_path with an expired "
               "cert.pem" if name == "old" else "cert_path without cert.pem", "refused before any engine is "
               "contacted", line.removeprefix("error: "), proc.returncode)

    write("foreign", foreign)
    proc = gdbench("run", "--hosts-file", str(hosts), "--hosts", "foreign", *TINY, "--out", str(tmp_path / "f"))
    assert proc.returncode == EXIT_UNAVAILABLE, proc.stderr
    reason = documents(tmp_path / "f")["numpy-cpu@foreign"]["error"]
    assert "host foreign" in reason and "refused the client certificate" in reason, reason
    assert sum("refused the client certificate" in line for line in proc.stderr.splitlines()) == 1
    record("client certificate the engine refuses", "cert.pem signed by another CA", "that host's cells "
           "`unavailable`", reason, proc.returncode)
    assert_nothing_left(fleet)


def test_ctrl_c_stops_and_removes_the_running_container_on_every_host(fleet: Fleet, tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = fleet.start("--hosts", "local,tls1,sock2", *BUSY, "--out", str(out), log=tmp_path / "stderr")
    engines_ = fleet.engines()
    for engine in engines_.values():
        wait_running(engine, proc)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=120) == EXIT_INTERRUPTED, (tmp_path / "stderr").read_text()
    man = manifest(out)
    assert man["status"] == "interrupted"
    assert {r["key"]: r["status"] for r in man["containers"]} == {
        "numpy-cpu": "interrupted", "numpy-cpu@tls1": "interrupted", "numpy-cpu@sock2": "interrupted"}
    assert documents(out) == {}  # nothing half-measured is stored: --resume runs all three
    assert_nothing_left(fleet)
    record("Ctrl-C during a fleet sweep", "SIGINT while a container runs on each of three hosts", "every host's "
           "container stopped and removed; manifest `interrupted`", None, proc.returncode)


def test_hosts_check_has_a_row_per_host_with_the_engine_facts_and_the_image_ids(fleet: Fleet, engine: DockerEngine,
                                                                                compose) -> None:
    proc = gdbench("hosts", "check", "--hosts-file", str(fleet.hosts_file), "--hosts", "local,tls1,down", "--json")
    assert proc.returncode == 1, proc.stderr  # down is a blocker
    rows = {r["name"]: r for r in json.loads(proc.stdout)}
    assert list(rows) == ["local", "tls1", "down"]
    facts = fleet.engines()["tls1"].facts()
    tls1 = rows["tls1"]
    assert tls1["reachable"] and tls1["engine"] == f"{facts.docker_version} (API {facts.api_version})"
    assert tls1["architecture"] == facts.architecture and facts.kernel_version in tls1["os"]
    assert "unknown" in tls1["gpus"] and tls1["driver"] == "unknown"  # NVML cannot answer for a remote engine
    tag = compose.service_for("numpy", "cpu").image
    there = fleet.engines()["tls1"].image(tag)
    want = "missing" if there is None else ("same id" if there.id == engine.image(tag).id else "other id")
    assert {i["tag"]: i["state"] for i in tls1["images"]}[tag] == want
    assert {i["tag"]: i["state"] for i in rows["local"]["images"]}[tag] == "local"
    assert not rows["down"]["reachable"]
    (problem,) = rows["down"]["problems"]
    assert problem["level"] == "blocker" and "host down" in problem["detail"] and problem["fix"]


def _foreign_image(tag: str, architecture: str) -> bytes:
    """A ``docker save`` archive of a one-empty-layer image whose config says ``architecture``."""
    import hashlib
    import io
    import tarfile

    def tar(files: dict[str, bytes]) -> bytes:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as t:
            for name, data in files.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                t.addfile(info, io.BytesIO(data))
        return buf.getvalue()

    layer = tar({})
    config = json.dumps({"architecture": architecture, "os": "linux", "config": {},
                         "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(layer).hexdigest()]}},
                        ).encode()
    name = hashlib.sha256(config).hexdigest() + ".json"
    manifest_ = json.dumps([{"Config": name, "RepoTags": [tag], "Layers": ["layer.tar"]}]).encode()
    return tar({"manifest.json": manifest_, name: config, "layer.tar": layer})


def test_an_image_for_another_architecture_is_refused_before_shipping(fleet: Fleet, engine: DockerEngine) -> None:
    from orchestrator.backends.docker.ship import Shipper, ShipRefused

    tag = "gdbench-test/foreign:arm64"
    list(engine.client.api.load_image(_foreign_image(tag, "arm64")))
    try:
        target = fleet.engines()["sock2"]
        with pytest.raises(ShipRefused) as refused:
            Shipper(engine).ensure(target, tag)
        line = refused.value.message
        assert "\n" not in line and "host sock2" in line and "x86_64" in line and "arm64" in line, line
        assert target.image(tag) is None  # nothing was sent
        record("image for another architecture", "an arm64 image shipped to an x86_64 host", "refused before a "
               "byte moves; that host's cells `unavailable`", line, "-")
    finally:
        engine.client.images.remove(tag, force=True)


def test_a_docker_context_and_an_insecure_engine_are_hosts_too(fleet: Fleet, tmp_path: Path) -> None:
    config = tmp_path / "docker-config"
    subprocess.run(["docker", "--config", str(config), "context", "create", "fleetctx", "--docker",
                    f"host={fleet.sock2.socket_url}"], check=True, capture_output=True)
    hosts = tmp_path / "hosts.toml"
    hosts.write_text('[hosts.viactx]\ncontext = "fleetctx"\n\n[hosts.plain]\nurl = "tcp://127.0.0.1:9"\n'
                     'insecure = true\n')
    proc = gdbench("hosts", "check", "--hosts-file", str(hosts), "--hosts", "viactx", "--json",
                   env={"DOCKER_CONFIG": str(config)})
    (row,) = json.loads(proc.stdout)
    assert row["reachable"] and row["engine"].startswith(fleet.engines()["sock2"].facts().docker_version)
    run = gdbench("run", "--hosts-file", str(hosts), "--hosts", "plain", *TINY, "--out", str(tmp_path / "run"))
    assert run.returncode == EXIT_UNAVAILABLE, run.stderr
    warnings = [line for line in run.stderr.splitlines() if line.startswith("warning: host plain")]
    assert len(warnings) == 1 and "without TLS" in warnings[0]
    assert documents(tmp_path / "run")["numpy-cpu@plain"]["status"] == "unavailable"
