"""The slurm backend against a real Slurm cluster: one slurmctld and two slurmd nodes started on this machine.

The nodes share this machine's two cores and its one Docker engine, so these tests check behaviour, never a
timing; the nodes' ``drv550``/``drv580`` features are labels (there is no GPU here, and none is faked).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator.labels import MANAGED, RUN
from testbeds.slurmcluster import SlurmCluster, slurm_unavailable
from tests.conftest import ROOT, gdbench

pytestmark = [pytest.mark.docker, pytest.mark.slurm]

TINY = ["-f", "numpy", "--devices", "cpu", "--dims", "2", "--n", "300", "--iters", "20", "--repeats", "1",
        "--max-repeats", "1",
        "--no-sync-check"]
#: Seconds of work per container (not minutes), so a test can act while it surely runs.
BUSY = ["-f", "numpy", "--devices", "cpu", "--dims", "50", "--n", "20000", "--iters", "1000", "--repeats", "3",
        "--max-repeats", "3",
        "--no-sync-check", "--threads", "1"]
NODES = {"n1": ["drv550", "h100"], "n2": ["drv580", "h100"]}


def require_slurm() -> None:
    """Skip where Slurm cannot run (a developer machine without root); fail where CI demands it."""
    if (why := slurm_unavailable()) is not None:
        if os.environ.get("GDBENCH_REQUIRE_SLURM") == "1":
            pytest.fail(f"Slurm is not usable here: {why} (make slurm; GDBENCH_REQUIRE_SLURM=1)")
        pytest.skip(f"Slurm is not usable here: {why} (make slurm)")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, numpy_image) -> Iterator[SlurmCluster]:
    require_slurm()
    with SlurmCluster(tmp_path_factory.mktemp("slurm"), nodes=NODES) as c:
        yield c


def hosts_file(path: Path, cluster: SlurmCluster, **extra: dict[str, Any]) -> Path:
    """Two slurm hosts, one per driver feature; ``extra`` adds keys per host (or a whole new host)."""
    tables = {"drv550": {"constraint": "h100&drv550"}, "drv580": {"constraint": "h100&drv580"}}
    for name, keys in extra.items():
        tables[name] = {**tables.get(name, {}), **keys}
    text = ""
    for name, keys in tables.items():
        keys = {"kind": "slurm", "partition": "gpu", "slurm_conf": str(cluster.conf_path), **keys}
        text += f"[hosts.{name}]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in keys.items()) + "\n"
    path.write_text(text)
    return path


def manifest(out: Path) -> dict[str, Any]:
    return json.loads((out / "manifest.json").read_text())


def jobs_of(cluster: SlurmCluster, run_id: str) -> list[str]:
    """The run's jobs Slurm still holds (pending or running)."""
    out = cluster.run("squeue", "-h", "-o", "%i %j %T", check=True).stdout
    return [line for line in out.splitlines() if run_id in line]


def containers_of(run_id: str) -> list[str]:
    out = subprocess.run(["docker", "ps", "-aq", "--filter", f"label={RUN}={run_id}"], capture_output=True,
                         text=True, check=True).stdout
    return out.split()


def start(*args: str, log: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "orchestrator", *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=log.open("w"), text=True)


def wait_container(run_id_dir: Path, proc: subprocess.Popen, deadline_s: float = 120) -> str:
    """Until a container of the run in ``run_id_dir`` runs; returns the run id."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        assert proc.poll() is None, "gdbench exited before its container ran"
        if (run_id_dir / "manifest.json").exists():
            run_id = manifest(run_id_dir)["run_id"]
            out = subprocess.run(["docker", "ps", "-q", "--filter", f"label={RUN}={run_id}", "--filter",
                                  "status=running"], capture_output=True, text=True, check=True).stdout
            if out.strip():
                return run_id
        time.sleep(0.1)
    raise AssertionError("no container of the run started")


@contextlib.contextmanager
def sweep_running(hosts: str, hosts_toml: Path, args: list[str], out: Path) -> Iterator[subprocess.Popen]:
    """A sweep started in the background, once its first container runs; killed on the way out if still alive."""
    proc = start("run", "--hosts", hosts, "--hosts-file", str(hosts_toml), *args, "--out", str(out),
                 log=out.parent / "stderr")
    try:
        wait_container(out, proc)
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_sweep_over_two_nodes_records_each_node_and_compares_across_host(cluster: SlurmCluster,
                                                                           tmp_path: Path) -> None:
    hosts = hosts_file(tmp_path / "hosts.toml", cluster)
    out = tmp_path / "run"
    proc = gdbench("run", "--hosts", "all", "--hosts-file", str(hosts), *TINY, "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    man = manifest(out)
    assert man["status"] == "complete" and set(man["hosts"]) == {"drv550", "drv580"}
    nodes = {}
    for name, feature in (("drv550", "drv550"), ("drv580", "drv580")):
        doc = json.loads((out / f"numpy-cpu@{name}.json").read_text())
        assert doc["status"] == "ok" and all(r["status"] == "ok" for r in doc["results"])
        host = doc["provenance"]["host"]
        assert host["engine"] == "slurm" and host["engine_version"].startswith("22.")
        assert host["kernel"] and host["cpu_model"] and host["ncpu"] and host["architecture"]  # from the node
        extra = host["extra"]
        assert feature in extra["features"] and extra["partition"] == "gpu" and extra["slurm_job_id"]
        assert doc["provenance"]["threads"]["requested"] == 2  # the scheduler placed it; threads stay fixed
        nodes[name] = extra["node"]
    assert nodes == {"drv550": "n1", "drv580": "n2"}  # each host on the node its features name
    assert not jobs_of(cluster, man["run_id"]) and not containers_of(man["run_id"])  # nodes given back, nothing left
    merged = gdbench("merge", str(out), "--out", str(tmp_path / "merged"))
    assert merged.returncode == 0, merged.stderr
    cmp = gdbench("compare", str(out), "--across", "host", "--out", str(tmp_path / "cmp"))
    assert cmp.returncode == 0, cmp.stderr
    assert "drv550" in cmp.stdout + cmp.stderr and "drv580" in cmp.stdout + cmp.stderr


def test_the_container_on_the_node_is_the_hardened_one(cluster: SlurmCluster, tmp_path: Path) -> None:
    hosts = hosts_file(tmp_path / "hosts.toml", cluster)
    out = tmp_path / "run"
    with sweep_running("drv580", hosts, BUSY, out) as proc:
        run_id = manifest(out)["run_id"]
        cid = containers_of(run_id)[0]
        info = json.loads(subprocess.run(["docker", "inspect", cid], capture_output=True, text=True,
                                         check=True).stdout)[0]
        hc, cfg = info["HostConfig"], info["Config"]
        assert hc["ReadonlyRootfs"] and hc["CapDrop"] == ["ALL"] and hc["NetworkMode"] == "none"
        assert "no-new-privileges:true" in hc["SecurityOpt"] and hc["Memory"] > 0 and hc["PidsLimit"] == 4096
        assert hc["Memory"] == hc["MemorySwap"] and "/tmp" in hc["Tmpfs"] and not hc["Binds"]
        image_user = subprocess.run(["docker", "image", "inspect", "-f", "{{.Config.User}}", cfg["Image"]],
                                    capture_output=True, text=True, check=True).stdout.strip()
        assert cfg["User"] == (image_user or "65534:65534") and cfg["User"].split(":")[0] not in ("0", "root")
        assert cfg["Labels"][MANAGED] == "1"
        assert cfg["Labels"]["io.gdbench.slurm-job"] == manifest(out)["hosts"]["drv580"]["extra"]["slurm_job_id"]
        assert proc.wait(timeout=300) == 0
    assert not containers_of(run_id)


def test_a_container_killed_for_memory_on_the_node_is_failed_with_the_oom_flag(cluster: SlurmCluster,
                                                                             tmp_path: Path) -> None:
    """The step reads ``State.OOMKilled`` and, where a loaded node lost it, Docker's ``oom`` event."""
    hosts = hosts_file(tmp_path / "hosts.toml", cluster)
    out = tmp_path / "run"  # X alone is 400,000 x 100 x 8 B = 320 MB, four times the limit
    proc = gdbench("run", "--hosts", "drv550", "--hosts-file", str(hosts), "-f", "numpy", "--devices", "cpu",
                   "--dims", "100", "--n", "400000", "--iters", "10", "--repeats", "1", "--max-repeats", "1",
                   "--mem-limit", "80m", "--out", str(out), timeout=300)
    assert proc.returncode == 1, proc.stderr
    rec = manifest(out)["containers"][0]
    assert rec["status"] == "failed" and rec["oom_killed"] is True and rec["timed_out"] is False, rec
    assert rec["exit_code"] == 137 and rec["reason"] == "out of memory: killed at mem_limit 80m (OOMKilled)", rec
    assert not containers_of(manifest(out)["run_id"])


def test_ctrl_c_cancels_every_job_of_the_run_and_leaves_no_container(cluster: SlurmCluster, tmp_path: Path) -> None:
    hosts = hosts_file(tmp_path / "hosts.toml", cluster)
    out = tmp_path / "run"
    proc = start("run", "--hosts", "all", "--hosts-file", str(hosts), *BUSY, "--out", str(out),
                 log=tmp_path / "stderr")
    run_id = wait_container(out, proc)
    assert len(jobs_of(cluster, run_id)) == 2  # both nodes held while the sweep runs
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=120) == 130, (tmp_path / "stderr").read_text()
    man = manifest(out)
    assert man["status"] == "interrupted"
    assert {c["status"] for c in man["containers"]} == {"interrupted"}
    deadline = time.monotonic() + 30  # scancel is asynchronous: the jobs end within KillWait
    while (jobs_of(cluster, run_id) or containers_of(run_id)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not jobs_of(cluster, run_id) and not containers_of(run_id)


def test_a_node_that_fails_mid_sweep_loses_its_cells_and_resume_runs_them(cluster: SlurmCluster,
                                                                          tmp_path: Path) -> None:
    hosts = hosts_file(tmp_path / "hosts.toml", cluster)
    out = tmp_path / "run"
    # Two containers on drv580 (two numpy versions), so one is running and one is still to come.
    args = [*BUSY[2:], "-f", "numpy,numpy@1.26.4"]
    try:
        with sweep_running("drv550,drv580", hosts, args, out) as proc:
            cluster.kill_node("n2")
            code = proc.wait(timeout=600)
    finally:
        cluster.start_node("n2")
    said = (tmp_path / "stderr").read_text()
    assert code in (1, 3), said
    recs = {c["key"]: c for c in manifest(out)["containers"]}
    # A step already running on the node when its slurmd dies may still finish (slurmstepd lives on): its
    # document is then a whole, checked one. What came after it did not run.
    lost = [r for k, r in recs.items() if k.endswith("@drv580") and r["status"] != "ok"]
    assert lost and all(r["status"] in ("failed", "unavailable") for r in lost), recs
    assert any("n2" in (r["reason"] or "") for r in lost), lost  # Slurm's word for what happened to the node
    assert all(r["status"] == "ok" for k, r in recs.items() if k.endswith("@drv550"))  # the other host went on
    again = gdbench("run", "--resume", str(out))
    assert again.returncode == 0, again.stderr
    final = {c["key"]: c for c in manifest(out)["containers"]}
    assert all(r["status"] == "ok" for r in final.values()), final
    assert {k for k, r in final.items() if not r["resumed"]} == {r["key"] for r in lost}


@pytest.mark.parametrize(("keys", "message"), [
    ({"partition": "nope"}, "invalid partition"),
    ({"constraint": "h100&drv999"}, "Invalid feature specification"),
])
def test_a_bad_partition_or_constraint_is_one_line_and_nothing_is_queued(cluster: SlurmCluster, tmp_path: Path,
                                                                         keys: dict[str, str], message: str) -> None:
    hosts = hosts_file(tmp_path / "hosts.toml", cluster, drv580=keys)
    before = cluster.run("squeue", "-h", "-o", "%i", check=True).stdout
    proc = gdbench("run", "--hosts", "all", "--hosts-file", str(hosts), *TINY, "--out", str(tmp_path / "run"))
    assert proc.returncode == 2, proc.stderr
    line = proc.stderr.strip()
    assert len(line.splitlines()) == 1 and "host drv580" in line and message.lower() in line.lower(), line
    assert cluster.run("squeue", "-h", "-o", "%i", check=True).stdout == before
    assert not (tmp_path / "run").exists()


def test_a_controller_that_does_not_answer_is_one_line_and_its_cells_unavailable(cluster: SlurmCluster,
                                                                                 tmp_path: Path) -> None:
    hosts = hosts_file(tmp_path / "hosts.toml", cluster)
    cluster.stop_controller()
    try:
        fleet = gdbench("run", "--hosts", "drv550", "--hosts-file", str(hosts), *TINY, "--out",
                        str(tmp_path / "run"))
        alone = gdbench("run", *TINY, "--backend", "slurm", "--backend-opt", "partition=gpu",
                        "--backend-opt", f"slurm_conf={cluster.conf_path}", "--out", str(tmp_path / "alone"))
    finally:
        cluster.start_controller()
    assert fleet.returncode == 3, fleet.stderr
    rec = manifest(tmp_path / "run")["containers"][0]
    assert rec["status"] == "unavailable" and "Slurm controller does not answer" in rec["reason"]
    assert alone.returncode == 5 and len(alone.stderr.strip().splitlines()) == 1, alone.stderr
    assert "Slurm controller does not answer" in alone.stderr and "fix: start slurmctld" in alone.stderr


def test_missing_slurm_commands_are_one_line_with_the_fix(tmp_path: Path) -> None:
    proc = gdbench("run", *TINY, "--backend", "slurm", "--backend-opt", "partition=gpu", "--out",
                   str(tmp_path / "run"), env={"PATH": str(tmp_path)})
    assert proc.returncode == 5 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "Slurm client commands" in proc.stderr and "apt-get install slurm-client" in proc.stderr


def test_hosts_check_has_a_row_per_slurm_host(cluster: SlurmCluster, tmp_path: Path) -> None:
    hosts = hosts_file(tmp_path / "hosts.toml", cluster, bad={"constraint": "drv999"})
    proc = gdbench("hosts", "check", "--hosts-file", str(hosts), "--json")
    rows = {r["name"]: r for r in json.loads(proc.stdout)}
    assert rows["drv550"]["reachable"] and "n1" in rows["drv550"]["cpu"] and "drv550" in rows["drv550"]["cpu"]
    assert rows["drv550"]["engine"].startswith("slurm 22.")
    assert rows["drv550"]["nvidia_runtime"].startswith("runtime docker: ") and "unknown" not in rows["drv550"][
        "nvidia_runtime"]  # the Docker version a node reports
    assert not rows["bad"]["reachable"] and rows["bad"]["problems"][0]["level"] == "blocker"


def test_the_job_time_limit_ends_the_cell_as_timed_out(cluster: SlurmCluster, tmp_path: Path) -> None:
    """Slurm's smallest limit is one minute, checked about every 30 s: this test takes a minute or two."""
    hosts = hosts_file(tmp_path / "hosts.toml", cluster, drv550={"time_limit": "1"})
    long = ["-f", "numpy", "--devices", "cpu", "--dims", "100", "--n", "20000", "--iters", "2000", "--repeats", "200",
            "--max-repeats", "200",
            "--no-sync-check", "--threads", "1"]
    out = tmp_path / "run"
    proc = gdbench("run", "--hosts", "drv550", "--hosts-file", str(hosts), *long, "--out", str(out), timeout=600)
    assert proc.returncode == 1, proc.stderr
    rec = manifest(out)["containers"][0]
    assert rec["status"] == "failed" and rec["timed_out"] and "reached its time limit (1)" in rec["reason"], rec
    assert not containers_of(manifest(out)["run_id"])


def test_settings_refuse_bad_keys_in_one_line(tmp_path: Path) -> None:
    from orchestrator.errors import InventoryError
    from orchestrator.hosts import inventory

    file = tmp_path / "hosts.toml"
    for table, message in [('port = 1\npartition = "gpu"', "unknown key(s) port"),
                           ('constraint = "a"', 'needs partition = "NAME"'),
                           ('partition = "gpu"\nruntime = "enroot"', "runtime must be one of docker, oci"),
                           ('partition = "gpu"\ntime_limit = "soon"', "is not a Slurm time"),
                           ('partition = "gpu"\nruntime = "oci"', "needs image_dir"),
                           ('partition = "gpu"\nslurm_conf = "/nowhere/slurm.conf"', "does not exist"),
                           ('partition = "g p u"', "characters Slurm does not take"),
                           ('partition = "gpu"\ncpus_per_task = 0', "cpus_per_task must be a positive integer")]:
        file.write_text(f'[hosts.h]\nkind = "slurm"\n{table}\n')
        with pytest.raises(InventoryError, match=message.replace("(", r"\(").replace(")", r"\)")) as info:
            inventory.load(file)
        assert "\n" not in str(info.value) and "host h" in str(info.value)
    file.write_text('[hosts.h]\nkind = "slurm"\npartition = "gpu"\ntime_limit = 30\nmem = "4G"\n')
    s = inventory.load(file)["h"].settings
    assert s.allocation_args()[:7] == ["--partition", "gpu", "--nodes", "1", "--ntasks", "1", "--exclusive"]
    assert "--time" in s.allocation_args() and os.fspath(s.image_dir or "") == ""


@pytest.fixture(scope="module")
def oci_cluster(tmp_path_factory, numpy_image) -> Iterator[SlurmCluster]:
    require_slurm()
    with SlurmCluster(tmp_path_factory.mktemp("slurm-oci"), nodes=NODES, oci=True) as c:
        yield c


def test_the_oci_runtime_runs_a_bundle_made_from_the_image_with_the_same_hardening(oci_cluster: SlurmCluster,
                                                                                   tmp_path: Path) -> None:
    image_dir = oci_cluster.directory / "images"  # every node reads it; the job's user (nobody) too
    hosts = hosts_file(tmp_path / "hosts.toml", oci_cluster, drv550={"runtime": "oci", "image_dir": str(image_dir)},
                       drv580={"runtime": "oci", "image_dir": str(image_dir)})
    out = tmp_path / "run"
    proc = gdbench("run", "--hosts", "all", "--hosts-file", str(hosts), *TINY, "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    for name in ("drv550", "drv580"):
        doc = json.loads((out / f"numpy-cpu@{name}.json").read_text())
        assert doc["status"] == "ok" and doc["provenance"]["host"]["extra"]["runtime"] == "oci"
        assert doc["provenance"]["image"]["id"].startswith("sha256:")
    (bundle,) = [p for p in (image_dir / "oci").iterdir() if p.is_dir()]
    local_id = subprocess.run(["docker", "image", "inspect", "-f", "{{.Id}}", "gdbench/numpy:2.4.6-cpu"],
                              capture_output=True, text=True, check=True).stdout.strip()
    assert json.loads((bundle / "IMAGE").read_text())["id"] == local_id  # kept beside the bundle
    # What the process inside can and cannot do: the Docker container's hardening, in rootless runc's terms.
    probe = ("import os, socket, pathlib\n"
             "st = dict(l.split(':\\t') for l in open('/proc/self/status').read().splitlines() if ':\\t' in l)\n"
             "def can_write(p):\n"
             "    try: pathlib.Path(p).write_text('x'); return True\n"
             "    except OSError: return False\n"
             "print(open('/proc/self/uid_map').read().split()[1], st['CapEff'].strip(), st['NoNewPrivs'].strip(),"
             " can_write('/opt/x'), can_write('/tmp/x'), ','.join(sorted(n for _, n in socket.if_nameindex())))\n")
    ran = oci_cluster.run("srun", "-p", "gpu", "-N1", "--exclusive", f"--container={bundle}", "--chdir=/tmp",
                          "env", "-i", "PATH=/opt/venv/bin:/usr/bin:/bin", "python", "-c", probe, timeout=120)
    assert ran.returncode == 0, ran.stderr
    outside_uid, capeff, nnp, root_w, tmp_w, ifaces = ran.stdout.split()
    assert outside_uid == "65534"  # root inside is nobody outside: nothing runs as root on the node
    assert int(capeff, 16) == 0 and nnp == "1" and root_w == "False" and tmp_w == "True" and ifaces == "lo"


def test_a_node_drained_mid_sweep_starts_nothing_more_and_resume_runs_the_rest(cluster: SlurmCluster,
                                                                               tmp_path: Path) -> None:
    hosts = hosts_file(tmp_path / "hosts.toml", cluster)
    out = tmp_path / "run"
    args = [*BUSY[2:], "-f", "numpy,numpy@1.26.4"]
    try:
        with sweep_running("drv580", hosts, args, out) as proc:
            cluster.drain_node("n2", "driver upgrade to 580")
            code = proc.wait(timeout=600)
        recs = {c["key"]: c for c in manifest(out)["containers"]}
        # While drained, the node is the cluster's state, not a bad option: a resume says so, runs nothing.
        still = gdbench("run", "--resume", str(out))
        assert still.returncode == 3, still.stderr
        assert "every node matching h100&drv580 in partition gpu is unavailable now: n2" in manifest(out)[
            "containers"][-1]["reason"]
    finally:
        cluster.resume_node("n2")
    cluster.wait_nodes(lambda n: n.state == "IDLE", names=["n2"], timeout=60)
    assert code == 1, (tmp_path / "stderr").read_text()
    assert recs["numpy-cpu@drv580"]["status"] == "ok"  # a drain lets the running container finish
    second = recs["numpy@1.26.4-cpu@drv580"]  # never started: failed with Slurm's reason, so --resume reruns it
    assert second["status"] == "failed" and "DRAIN" in second["reason"] and "driver upgrade to 580" in second["reason"]
    again = gdbench("run", "--resume", str(out))
    assert again.returncode == 0, again.stderr
    assert {c["key"]: c["status"] for c in manifest(out)["containers"]} == {
        "numpy-cpu@drv580": "ok", "numpy@1.26.4-cpu@drv580": "ok"}


def test_clean_cancels_what_a_killed_orchestrator_left_on_the_cluster(cluster: SlurmCluster, tmp_path: Path) -> None:
    hosts = hosts_file(tmp_path / "hosts.toml", cluster)
    out = tmp_path / "run"
    with sweep_running("drv580", hosts, BUSY, out) as proc:
        run_id = manifest(out)["run_id"]
        proc.kill()  # SIGKILL: no cleanup of its own; the allocation and the container stay
        proc.wait()
        assert jobs_of(cluster, run_id) and containers_of(run_id)
    cleaned = gdbench("clean", "--hosts-file", str(hosts), "--hosts", "drv580")
    assert cleaned.returncode == 0 and "drv580: cancelled 1 Slurm job(s)" in cleaned.stderr, cleaned.stderr
    deadline = time.monotonic() + 30  # scancel is asynchronous: the job ends within KillWait, then its Epilog
    while (jobs_of(cluster, run_id) or containers_of(run_id)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not jobs_of(cluster, run_id) and not containers_of(run_id)
