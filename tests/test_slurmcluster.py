"""Real tests of testbeds/slurmcluster.py: a throw-away Slurm 22.05 cluster (one slurmctld, two slurmd) on this machine.

They check the helper and, on the way, record how Slurm behaves in the cases the orchestrator will meet: placement
by feature, --exclusive, refused submissions, steps in an allocation, a node dying, the controller going away,
time limits, and Docker containers started by a job that is cancelled.
Needs root, Slurm and munge (scripts/ensure-slurm.sh); skipped otherwise, or failed with GDBENCH_REQUIRE_SLURM=1.
"""

from __future__ import annotations

import os
import subprocess
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from testbeds.slurmcluster import JOB_LABEL, SlurmCluster, SlurmError, slurm_unavailable

pytestmark = pytest.mark.slurm

#: Images any of which carries sleep and python3; the first one present locally is used.
IMAGE_PREFERENCE = ("gdbench/base:bookworm-py3.11", "gdbench/numpy:")


@pytest.fixture(autouse=True)
def _require_slurm() -> None:
    reason = slurm_unavailable()
    if reason:
        if os.environ.get("GDBENCH_REQUIRE_SLURM") == "1":
            pytest.fail(f"{reason} (GDBENCH_REQUIRE_SLURM=1)")
        pytest.skip(reason)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[SlurmCluster]:
    with SlurmCluster(tmp_path) as c:
        yield c


def _docker_unusable(reason: str) -> None:
    """Skip, or fail where CI demands Docker (GDBENCH_REQUIRE_DOCKER=1, as in conftest.py)."""
    if os.environ.get("GDBENCH_REQUIRE_DOCKER") == "1":
        pytest.fail(f"{reason} (GDBENCH_REQUIRE_DOCKER=1)")
    pytest.skip(reason)


def local_image() -> str:
    """A local image with sleep and python3, or skip: no registry is reachable, so nothing is pulled."""
    try:
        out = subprocess.run(["docker", "images", "--format", "{{.Repository}}:{{.Tag}}"], capture_output=True,
                             text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:
        _docker_unusable(f"docker CLI unusable: {exc}")
        raise
    if out.returncode != 0:
        _docker_unusable(f"Docker engine unusable: {out.stderr.strip()}")
    present = out.stdout.split()
    for wanted in IMAGE_PREFERENCE:
        for image in present:
            if image == wanted or (wanted.endswith(":") and image.startswith(wanted)):
                return image
    _docker_unusable(f"none of {IMAGE_PREFERENCE} is built here (make images)")
    raise AssertionError("unreachable")


def containers(job_id: int) -> list[str]:
    """Ids of the containers (running or not) labelled with that job id."""
    out = subprocess.run(["docker", "ps", "-aq", "--filter", f"label={JOB_LABEL}={job_id}"], capture_output=True,
                         text=True, timeout=30, check=True)
    return out.stdout.split()


def running_containers(job_id: int) -> list[str]:
    out = subprocess.run(["docker", "ps", "-q", "--filter", f"label={JOB_LABEL}={job_id}"], capture_output=True,
                         text=True, timeout=30, check=True)
    return out.stdout.split()


def poll(predicate: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    """Whether ``predicate`` became true within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


# -- the cluster itself -------------------------------------------------------------------------------------------


def test_cluster_starts_with_two_idle_nodes_and_their_features(cluster: SlurmCluster) -> None:
    nodes = cluster.nodes()
    assert {n: (v.state, v.features) for n, v in nodes.items()} == {
        "n1": ("IDLE", ("drv550", "h100")),
        "n2": ("IDLE", ("drv580", "h100")),
    }
    sinfo = cluster.run("sinfo", "-h", "-N", "-o", "%N %t %f %P", check=True).stdout.split("\n")
    assert "n1 idle drv550,h100 gpu*" in sinfo and "n2 idle drv580,h100 gpu*" in sinfo
    assert cluster.start_seconds is not None and cluster.start_seconds < cluster.start_timeout


def test_client_commands_follow_slurm_conf_env(cluster: SlurmCluster) -> None:
    """Clients have no -f: SLURM_CONF alone points them at this cluster, not at /etc/slurm."""
    shown = cluster.run("scontrol", "show", "config", check=True).stdout
    assert f"ClusterName             = {cluster.cluster_name}" in shown
    assert f"SLURM_CONF              = {cluster.conf_path}" in shown


def test_nothing_is_left_after_the_context_exits(tmp_path: Path) -> None:
    with SlurmCluster(tmp_path) as c:
        job = c.sbatch("--wrap=sleep 300", "-o", "/dev/null")
        c.wait_job(job, states={"RUNNING"})
        pids = c.pids()
        root = c.root
        assert len(pids) >= 5  # slurmctld (+ slurmscriptd), two slurmd, the job's slurmstepd, shell and sleep
    assert root is not None and not root.exists()
    assert all(not Path(f"/proc/{pid}").exists() or _zombie(pid) for pid in pids), "cluster processes survived"
    assert not [cmd for cmd in _cmdlines() if str(root) in cmd], "a process still names the cluster directory"
    assert c.stop_seconds is not None


def test_a_cluster_that_cannot_start_fails_with_its_log_and_leaves_nothing(tmp_path: Path) -> None:
    broken = SlurmCluster(tmp_path, extra_conf=["SelectType=select/bogus"])
    with pytest.raises(SlurmError, match=r"slurmctld exited(.|\n)*Can't find plugin for select/bogus"):
        broken.start()
    assert broken.root is None
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("slurm-")]


def _cmdlines() -> list[str]:
    """Every process's command line (what ``pgrep -a`` shows), without needing procps."""
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            out.append(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
        except OSError:
            continue
    return out


def _zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat[stat.rfind(")") + 2] == "Z"


# -- scheduling ---------------------------------------------------------------------------------------------------


def test_constraint_places_the_job_on_the_node_with_that_feature(cluster: SlurmCluster, tmp_path: Path) -> None:
    out = tmp_path / "out.txt"
    job = cluster.sbatch("--constraint=drv580", "-o", str(out), "--wrap=hostname; echo node=$SLURMD_NODENAME")
    record = cluster.wait_job(job)
    assert (record["JobState"], record["NodeList"]) == ("COMPLETED", "n2")
    assert "node=n2" in out.read_text()
    other = cluster.wait_job(cluster.sbatch("--constraint=drv550", "-o", "/dev/null", "--wrap=true"))
    assert other["NodeList"] == "n1"


def test_exclusive_jobs_take_whole_nodes(cluster: SlurmCluster) -> None:
    jobs = [cluster.sbatch("--exclusive", "-o", "/dev/null", "--wrap=sleep 2") for _ in range(3)]
    records = [cluster.wait_job(j, timeout=60) for j in jobs]
    assert all(r["JobState"] == "COMPLETED" for r in records)
    assert all(r["NumCPUs"] == str(cluster.cpus_per_node) and r["OverSubscribe"] == "NO" for r in records)
    # Two nodes, three exclusive jobs: the last one to start waited for one of the others to end.
    by_start = sorted(records, key=lambda r: r["StartTime"])
    assert by_start[2]["StartTime"] >= min(by_start[0]["EndTime"], by_start[1]["EndTime"])


@pytest.mark.parametrize(("args", "message"), [
    (["-p", "nope"], "Invalid partition name specified"),
    (["--constraint=drv999"], "Invalid feature specification"),
    (["--constraint=drv580&drv550"], "Requested node configuration is not available"),
    (["-N", "3"], "Requested node configuration is not available"),
])
def test_test_only_refuses_unsatisfiable_requests_at_once(cluster: SlurmCluster, args: list[str],
                                                          message: str) -> None:
    refused = cluster.run("sbatch", "--test-only", *args, "--wrap=true", timeout=15)
    assert refused.returncode != 0
    assert message in refused.stderr
    accepted = cluster.run("sbatch", "--test-only", "--constraint=drv580", "--wrap=true", timeout=15)
    assert accepted.returncode == 0 and "to start at" in accepted.stderr and "on nodes n2" in accepted.stderr


def test_srun_steps_run_inside_a_salloc_allocation(cluster: SlurmCluster) -> None:
    granted = cluster.run("salloc", "--no-shell", "--exclusive", "--constraint=drv550", "-J", "alloc", check=True)
    assert "Granted job allocation" in granted.stderr
    job = int(granted.stderr.split("Granted job allocation")[1].split()[0])
    steps = [cluster.run("srun", f"--jobid={job}", "sh", "-c", "echo $SLURMD_NODENAME $SLURM_STEP_ID", check=True)
             for _ in range(2)]
    assert [s.stdout.split() for s in steps] == [["n1", "0"], ["n1", "1"]]
    assert cluster.job(job)["JobState"] == "RUNNING"  # --no-shell: the allocation outlives its steps
    cluster.run("scancel", str(job), check=True)
    assert cluster.wait_job(job)["JobState"] == "CANCELLED"


def test_drained_node_gets_no_new_jobs_until_resumed(cluster: SlurmCluster) -> None:
    cluster.drain_node("n1", "maintenance by test")
    drained = cluster.nodes()["n1"]
    assert "DRAIN" in drained.flags and drained.reason == "maintenance by test"
    job = cluster.sbatch("--constraint=drv550", "-o", "/dev/null", "--wrap=true")
    time.sleep(1)
    assert cluster.job(job)["JobState"] == "PENDING"
    cluster.resume_node("n1")
    assert cluster.wait_job(job)["JobState"] == "COMPLETED"


# -- failures -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("requeue", "job_state"), [(True, "PENDING"), (False, "NODE_FAIL")])
def test_killed_node_goes_down_and_its_job_is_requeued_or_failed(tmp_path: Path, requeue: bool,
                                                                 job_state: str) -> None:
    """slurmd SIGKILLed: NOT_RESPONDING at the next failed ping (~5 s), DOWN after SlurmdTimeout (~6 s with 1 s).

    The job's slurmstepd and processes keep running on the "dead" node (they are not slurmd's children);
    the controller requeues the batch job (JobRequeue=1, Slurm's default) or ends it NODE_FAIL.
    """
    with SlurmCluster(tmp_path, slurmd_timeout=1, job_requeue=requeue) as c:
        job = c.sbatch("--constraint=drv580", "-o", "/dev/null", "--wrap=sleep 300")
        c.wait_job(job, states={"RUNNING"})
        c.kill_node("n2")
        c.wait_nodes(lambda n: n.base_state == "DOWN" and "NOT_RESPONDING" in n.flags, ["n2"], timeout=90,
                     what="n2 DOWN+NOT_RESPONDING")
        assert c.nodes()["n2"].reason.startswith("Not responding")
        assert c.nodes()["n1"].state == "IDLE"
        record = c.wait_job(job, states={job_state}, timeout=30)
        if not requeue:
            assert record["Reason"] == "NodeDown"
        c.start_node("n2")
        assert c.wait_nodes(lambda n: n.state in ("IDLE", "ALLOCATED", "MIXED"), ["n2"], timeout=60)


def test_controller_down_refuses_clients_and_restart_keeps_running_jobs(cluster: SlurmCluster) -> None:
    job = cluster.sbatch("--constraint=drv550", "-o", "/dev/null", "--wrap=sleep 300")
    cluster.wait_job(job, states={"RUNNING"})
    cluster.stop_controller()
    down = cluster.run("squeue", timeout=30)
    assert down.returncode != 0 and "Unable to contact slurm controller" in down.stderr
    refused = cluster.run("sbatch", "--wrap=true", timeout=30)
    assert refused.returncode != 0 and "Unable to contact slurm controller" in refused.stderr
    cluster.start_controller()
    assert cluster.job(job)["JobState"] == "RUNNING"
    assert cluster.wait_job(cluster.sbatch("--constraint=drv580", "-o", "/dev/null", "--wrap=true"))["JobState"] \
        == "COMPLETED"


@pytest.mark.slow
def test_time_limit_ends_the_job_with_timeout(cluster: SlurmCluster) -> None:
    """--time is in minutes: 0:05 (5 s) is rounded up to 1 minute, and slurmctld checks limits every 30 s.

    So the shortest time-limited job ends TIMEOUT 60-90 s after it starts (85 s measured here).
    """
    job = cluster.sbatch("--time=0:05", "-o", "/dev/null", "--wrap=sleep 300")
    assert cluster.job(job)["TimeLimit"] == "00:01:00"
    record = cluster.wait_job(job, timeout=180)
    assert (record["JobState"], record["Reason"]) == ("TIMEOUT", "TimeLimit")
    assert cluster.jobcomp()[job]["JobState"] == "TIMEOUT"


# -- Docker containers started by a job ---------------------------------------------------------------------------

#: `docker run` in a job, the container labelled with the job id (what the Epilog looks for).
RUN = f"docker run --rm --init --label {JOB_LABEL}=$SLURM_JOB_ID"
#: A container whose process ignores SIGTERM, as a busy or badly written workload would.
IGNORES_TERM = "sh -c 'trap \"\" TERM; sleep 300 & wait; sleep 300'"


def _submit_container_job(c: SlurmCluster, script: str) -> int:
    path = c.directory / "job.sh"
    path.write_text(script)
    job = c.sbatch("-o", str(c.directory / "job.out"), str(path))
    c.wait_job(job, states={"RUNNING"})
    assert poll(lambda: bool(running_containers(job)), timeout=60), "the job's container never ran"
    return job


@pytest.mark.docker
@pytest.mark.parametrize(("payload", "outlives"), [("sleep 300", False), (IGNORES_TERM, True)])
def test_scancel_without_epilog(tmp_path: Path, payload: str, outlives: bool) -> None:
    """Without the Epilog the container's fate depends on its process: scancel SIGTERMs the job's processes,
    the docker CLI forwards SIGTERM to the container (--sig-proxy), and a process that exits on it is removed by
    --rm (~0.3 s). One that ignores SIGTERM keeps running after the job has ended: dockerd, not the job, owns it.
    """
    image = local_image()
    with SlurmCluster(tmp_path, epilog=None) as c:
        job = _submit_container_job(c, f"#!/bin/sh\nexec {RUN} {image} {payload}\n")
        c.run("scancel", str(job), check=True)
        c.wait_job(job)
        gone = poll(lambda: not containers(job), timeout=5)
        assert gone is not outlives
    # The helper's stop() removes what the cluster's jobs left behind.
    assert containers(job) == []


@pytest.mark.docker
def test_epilog_removes_the_container_of_a_cancelled_job(cluster: SlurmCluster) -> None:
    job = _submit_container_job(cluster, f"#!/bin/sh\nexec {RUN} {local_image()} {IGNORES_TERM}\n")
    cluster.run("scancel", str(job), check=True)
    cluster.wait_job(job)
    assert poll(lambda: not containers(job), timeout=30), "the Epilog did not remove the container"
    assert poll(lambda: f"epilog job={job} node=n1 rc=0" in cluster.epilog_log.read_text(), timeout=10)


@pytest.mark.docker
def test_batch_script_trap_removes_its_container(tmp_path: Path) -> None:
    """No Epilog: the batch script runs docker in the background and removes its container on SIGTERM."""
    script = textwrap.dedent(f"""\
        #!/bin/bash
        trap 'docker rm -f $(docker ps -aq --filter label={JOB_LABEL}=$SLURM_JOB_ID) >/dev/null 2>&1; exit 143' TERM
        {RUN} {local_image()} {IGNORES_TERM} &
        wait
        """)
    with SlurmCluster(tmp_path, epilog=None) as c:
        job = _submit_container_job(c, script)
        c.run("scancel", str(job), check=True)
        c.wait_job(job)
        assert poll(lambda: not containers(job), timeout=10), "the trap did not remove the container"


# -- OCI containers (srun --container) ----------------------------------------------------------------------------


@pytest.mark.docker
def test_srun_container_runs_an_oci_bundle_unprivileged_read_only_without_network(tmp_path: Path) -> None:
    """Slurm 22.05's own container support: rootless runc, run by slurmstepd as the job's (non-root) user."""
    image = local_image()
    with SlurmCluster(tmp_path, oci=True) as c:
        bundle = c.make_oci_bundle(image, user="nobody")
        probe = ("import os, socket; print(1); print(os.getuid(), [n for _, n in socket.if_nameindex()]);"
                 "open('/probe', 'w')")
        run = c.run("srun", "--chdir=/tmp", f"--container={bundle}", "python3", "-c", probe, user="nobody",
                    timeout=120)
        lines = run.stdout.splitlines()
        assert lines[:2] == ["1", "0 ['lo']"], run.stderr  # root inside = nobody outside; loopback only
        assert "Read-only file system" in run.stderr and run.returncode != 0
        ok = c.run("srun", "--chdir=/tmp", f"--container={bundle}", "python3", "-c", "print(1)", user="nobody",
                   timeout=120)
        assert (ok.returncode, ok.stdout) == (0, "1\n"), ok.stderr


def test_helper_refuses_an_unknown_node_and_use_after_stop(tmp_path: Path) -> None:
    with SlurmCluster(tmp_path) as c, pytest.raises(KeyError):
        c.kill_node("n9")
    with pytest.raises(SlurmError):
        c.nodes()
