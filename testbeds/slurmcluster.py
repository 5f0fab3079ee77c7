"""A real, throw-away Slurm cluster on this one machine, for tests.

Debian's slurm-wlm 22.05 is built with MULTIPLE_SLURMD, so one ``slurmctld`` and several ``slurmd -N NAME`` can run
side by side here, each node with its own TCP port and ``Feature=`` tags. That lets tests exercise the real
scheduler (constraints, ``--exclusive``, time limits, node failures, a controller outage) instead of a fake.

Usage::

    with SlurmCluster(tmp_path, nodes={"n1": ["drv550", "h100"], "n2": ["drv580", "h100"]}) as cluster:
        job = cluster.sbatch("--constraint=drv580", "--wrap=hostname")
        assert cluster.wait_job(job)["NodeList"] == "n2"
        subprocess.run(["squeue"], env={**os.environ, **cluster.env})

Everything the cluster writes (config, state, spool, logs, pid files) lives in one directory it creates and removes.
Every daemon is started in the foreground by this class and stopped by pid; ``stop()`` then sweeps any process that
still belongs to the cluster (orphaned ``slurmstepd`` after :meth:`SlurmCluster.kill_node`, job processes) by pid.
Prerequisites (root, the packages, a running munged) come from ``scripts/ensure-slurm.sh``.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import random
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

ROOT = Path(__file__).resolve().parents[1]
#: The Epilog wired into every cluster by default: removes Docker containers labelled with the ending job's id.
EPILOG = ROOT / "scripts" / "slurm-epilog.sh"
ENSURE_SCRIPT = ROOT / "scripts" / "ensure-slurm.sh"
#: Label a job puts on the Docker containers it starts, so the Epilog (and :meth:`SlurmCluster.stop`) can find them.
JOB_LABEL = "io.gdbench.slurm-job"

DEFAULT_NODES: Mapping[str, Sequence[str]] = {"n1": ("drv550", "h100"), "n2": ("drv580", "h100")}

#: Job states after which a job never runs again (a requeued job goes back to PENDING instead).
TERMINAL_JOB_STATES = frozenset({
    "BOOT_FAIL", "CANCELLED", "COMPLETED", "DEADLINE", "FAILED", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED", "TIMEOUT",
})

_DAEMONS = ("slurmctld", "slurmd", "slurmstepd")
_CLIENTS = ("sbatch", "srun", "salloc", "squeue", "sinfo", "scancel", "scontrol")
#: Longest unix socket path (sun_path holds 108 bytes with its NUL): slurmstepd binds SPOOL/NODE/HOST_JOBID.STEPID.
_MAX_SOCKET_PATH = 107


class SlurmError(RuntimeError):
    """The cluster could not be started, or a Slurm command failed; the message carries the relevant log tail."""


def slurm_unavailable() -> str | None:
    """Why no cluster can start on this machine, or None if one can (used by tests to skip with a reason)."""
    if os.geteuid() != 0:
        return "a local Slurm cluster needs root (SlurmUser=root, slurmd runs jobs as their user)"
    missing = [b for b in (*_DAEMONS, *_CLIENTS, "munge", "unmunge") if shutil.which(b) is None]
    if missing:
        return f"Slurm/munge binaries missing ({', '.join(missing)}): run scripts/ensure-slurm.sh"
    try:
        cred = subprocess.run(["munge", "-n"], capture_output=True, timeout=10, check=True).stdout
        subprocess.run(["unmunge"], input=cred, capture_output=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return "munged does not answer: run scripts/ensure-slurm.sh"
    return None


@dataclass(frozen=True)
class Node:
    """One node as the controller sees it (``scontrol show node``)."""

    name: str
    #: Slurm's compound state, e.g. ``IDLE``, ``ALLOCATED``, ``DOWN+NOT_RESPONDING``, ``IDLE+DRAIN``.
    state: str
    features: tuple[str, ...]
    #: Why the node is down or drained, without Slurm's " [user@time]" suffix; "" when none.
    reason: str = ""

    @property
    def flags(self) -> frozenset[str]:
        """The state's parts, e.g. ``{"DOWN", "NOT_RESPONDING"}``."""
        return frozenset(self.state.split("+"))

    @property
    def base_state(self) -> str:
        return self.state.split("+", 1)[0]


def free_port() -> int:
    """A TCP port nothing listens on right now (the kernel's choice; a small race is accepted)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def parse_oneliner(line: str) -> dict[str, str]:
    """``Key=Value Key2=Value with spaces`` (``scontrol -o`` output) into a dict."""
    out: dict[str, str] = {}
    for part in re.split(r" (?=[A-Za-z][A-Za-z0-9_:/]*=)", line.strip()):
        key, sep, value = part.partition("=")
        if sep:
            out[key] = value
    return out


class SlurmCluster:
    """One ``slurmctld`` and one ``slurmd -N NAME`` per node, all on this machine, as a context manager.

    ``env`` (merge it into a subprocess's environment) and ``conf_path`` point client commands at this cluster:
    clients read the ``SLURM_CONF`` environment variable (they have no ``-f``); the daemons get ``-f``.
    """

    def __init__(
        self,
        tmpdir: str | os.PathLike[str],
        nodes: Mapping[str, Sequence[str]] = DEFAULT_NODES,
        partition: str = "gpu",
        *,
        cpus_per_node: int = 2,
        real_memory_mb: int = 1000,
        slurmd_timeout: int = 3,
        kill_wait: int = 2,
        job_requeue: bool = True,
        epilog: str | os.PathLike[str] | None = EPILOG,
        oci: bool = False,
        extra_conf: Iterable[str] = (),
        start_timeout: float = 30.0,
        grace: float = 5.0,
    ) -> None:
        """Describe the cluster; nothing starts before :meth:`start` (or ``with``).

        slurmd_timeout: seconds without an answer before the controller marks a node DOWN (see kill_node for
        what that gives here); 1 makes failure tests quickest, the default 3 keeps a busy machine from flapping.
        kill_wait: seconds between SIGTERM and SIGKILL when a job is cancelled or hits its time limit.
        job_requeue: Slurm's JobRequeue; with True a batch job on a node that dies goes back to PENDING,
        with False it ends NODE_FAIL.
        oci: also write oci.conf (runc, rootless, ``run``) so ``srun --container=BUNDLE`` works.
        extra_conf: slurm.conf lines appended before the node lines; a key given again overrides the default.
        grace: seconds a daemon gets between SIGTERM and SIGKILL on stop.
        """
        if not nodes:
            raise ValueError("a cluster needs at least one node")
        self.tmpdir = Path(tmpdir)
        self.node_features: dict[str, tuple[str, ...]] = {n: tuple(f) for n, f in nodes.items()}
        self.partition = partition
        self.cpus_per_node = cpus_per_node
        self.real_memory_mb = real_memory_mb
        self.slurmd_timeout = slurmd_timeout
        self.kill_wait = kill_wait
        self.job_requeue = job_requeue
        self.epilog = Path(epilog) if epilog is not None else None
        self.oci = oci
        self.extra_conf = list(extra_conf)
        self.start_timeout = start_timeout
        self.grace = grace
        self.cluster_name = "gdb" + uuid.uuid4().hex[:12]
        # Job ids start at a random point so that Docker labels (io.gdbench.slurm-job=ID) of two clusters on this
        # machine do not collide and one cluster's Epilog never removes another's containers.
        self.first_job_id = random.randint(100_000, 60_000_000)
        self.hostname = socket.gethostname().split(".", 1)[0]
        self.root: Path | None = None
        self.ctld_port = 0
        self.node_ports: dict[str, int] = {}
        self._ctld: subprocess.Popen[bytes] | None = None
        self._slurmd: dict[str, subprocess.Popen[bytes]] = {}
        self._started_pids: set[int] = set()
        self._job_ids: set[int] = set()
        self.start_seconds: float | None = None
        self.stop_seconds: float | None = None

    # -- paths and environment -------------------------------------------------------------------------------------

    def _root(self) -> Path:
        if self.root is None:
            raise SlurmError("cluster not started")
        return self.root

    @property
    def directory(self) -> Path:
        """The directory holding everything of this running cluster (removed by stop)."""
        return self._root()

    @property
    def conf_path(self) -> Path:
        return self._root() / "etc" / "slurm.conf"

    @property
    def log_dir(self) -> Path:
        return self._root() / "log"

    @property
    def epilog_log(self) -> Path:
        """One line per Epilog run (``epilog job=ID node=NAME rc=N``) plus the Epilog's own output."""
        return self.log_dir / "epilog.log"

    @property
    def env(self) -> dict[str, str]:
        """Merge into a subprocess's environment so that sbatch/srun/squeue/sinfo/scancel/scontrol use this cluster."""
        return {"SLURM_CONF": str(self.conf_path)}

    # -- configuration ---------------------------------------------------------------------------------------------

    def _make_root(self) -> Path:
        self.tmpdir.mkdir(parents=True, exist_ok=True)
        base = self.tmpdir
        longest_socket = len("/slurm-XXXXXXXX/spool/") + max(map(len, self.node_features)) + len(
            f"/{self.hostname}_{99_999_999}.{4_294_967_295}")
        if len(str(base.resolve())) + longest_socket > _MAX_SOCKET_PATH:
            # pytest's tmp_path can be long; slurmstepd's unix sockets under SlurmdSpoolDir cannot.
            base = Path(tempfile.gettempdir())
        if self.oci and not all(p.stat().st_mode & 0o001 for p in (base.resolve(), *base.resolve().parents)):
            # runc runs as the job's user and must reach the bundle and its state dir; pytest's tmp_path is 0700.
            base = Path(tempfile.gettempdir())
        root = Path(tempfile.mkdtemp(prefix="slurm-", dir=base))
        if self.oci:
            # runc runs as the job's (non-root) user: it must reach the bundle spool and its state directory.
            root.chmod(0o755)
        return root

    def _write_config(self) -> None:
        root = self._root()
        for sub in ("etc", "state", "log", "run", *(f"spool/{n}" for n in self.node_features)):
            (root / sub).mkdir(parents=True, exist_ok=True)
        if self.oci:
            for sub in ("spool", *(f"spool/{n}" for n in self.node_features)):
                (root / sub).chmod(0o755)
            (root / "oci").mkdir(mode=0o1777)
            (root / "oci").chmod(0o1777)
        self.ctld_port = free_port()
        self.node_ports = {n: free_port() for n in self.node_features}
        lines = [
            f"ClusterName={self.cluster_name}",
            f"SlurmctldHost={self.hostname}(127.0.0.1)",
            f"SlurmctldPort={self.ctld_port}",
            "SlurmUser=root",
            "SlurmdUser=root",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            "MailProg=/bin/true",
            f"StateSaveLocation={root}/state",
            f"SlurmdSpoolDir={root}/spool/%n",
            f"SlurmctldPidFile={root}/run/slurmctld.pid",
            f"SlurmdPidFile={root}/run/slurmd-%n.pid",
            f"SlurmctldLogFile={root}/log/slurmctld.log",
            f"SlurmdLogFile={root}/log/slurmd-%n.log",
            "SlurmctldDebug=info",
            "SlurmdDebug=info",
            # No systemd, no cgroup delegation here: track job processes by parent pid, bind no CPUs.
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",
            # No accounting database: a text record of every finished job (state, times) instead of sacct.
            "JobCompType=jobcomp/filetxt",
            f"JobCompLoc={root}/log/jobcomp.txt",
            "MpiDefault=none",
            "SchedulerType=sched/backfill",
            # Schedule a batch job the moment it is submitted (the default batch_sched_delay=3 adds ~2.5 s per job).
            "SchedulerParameters=batch_sched_delay=0",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core",
            f"FirstJobId={self.first_job_id}",
            # A node whose slurmd comes back (start_node) is usable again without an admin.
            "ReturnToService=2",
            f"SlurmdTimeout={self.slurmd_timeout}",
            "SlurmctldTimeout=3",
            "MessageTimeout=3",
            "TCPTimeout=2",
            "InactiveLimit=0",
            f"KillWait={self.kill_wait}",
            "MinJobAge=3600",
            f"JobRequeue={1 if self.job_requeue else 0}",
        ]
        if self.epilog is not None:
            lines.append(f"Epilog={self._write_epilog_wrapper()}")
        lines += self.extra_conf
        for name, features in self.node_features.items():
            feat = f" Feature={','.join(features)}" if features else ""
            lines.append(
                f"NodeName={name} NodeHostname={self.hostname} NodeAddr=127.0.0.1 Port={self.node_ports[name]}"
                f" CPUs={self.cpus_per_node} RealMemory={self.real_memory_mb}{feat} State=UNKNOWN"
            )
        lines.append(
            f"PartitionName={self.partition} Nodes={','.join(self.node_features)} Default=YES MaxTime=INFINITE State=UP"
        )
        self.conf_path.write_text("\n".join(lines) + "\n")
        if self.oci:
            (root / "etc" / "oci.conf").write_text(oci_conf(root / "oci"))

    def _write_epilog_wrapper(self) -> Path:
        """The Epilog slurmd runs: the project's script, plus a line in epilog.log so tests can see it ran."""
        assert self.epilog is not None
        wrapper = self._root() / "etc" / "epilog.sh"
        wrapper.write_text(
            "#!/bin/sh\n"
            "# Generated by testbeds/slurmcluster.py: run the real Epilog, record that it ran and how it ended.\n"
            f"/bin/sh '{self.epilog}' >>'{self.epilog_log}' 2>&1\n"
            "rc=$?\n"
            f"echo \"epilog job=$SLURM_JOB_ID node=$SLURMD_NODENAME rc=$rc\" >>'{self.epilog_log}'\n"
            "exit $rc\n"
        )
        wrapper.chmod(0o755)
        return wrapper

    # -- daemons ---------------------------------------------------------------------------------------------------

    def _popen(self, argv: list[str], log_name: str) -> subprocess.Popen[bytes]:
        """A daemon in the foreground (-D), in its own session so a Ctrl-C aimed at pytest does not reach it."""
        with open(self.log_dir / log_name, "ab") as out:
            proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                env={**os.environ, **self.env}, cwd=self._root(),
            )
        self._started_pids.add(proc.pid)
        return proc

    def _start_ctld(self) -> None:
        self._ctld = self._popen(["slurmctld", "-D", "-f", str(self.conf_path)], "slurmctld.out")

    def _start_slurmd(self, name: str) -> None:
        self._slurmd[name] = self._popen(["slurmd", "-D", "-N", name, "-f", str(self.conf_path)], f"slurmd-{name}.out")

    def start(self) -> SlurmCluster:
        """Write the config, start the daemons, wait until every node is IDLE; on failure stop and clean up."""
        if self.root is not None:
            raise SlurmError("cluster already started")
        reason = slurm_unavailable()
        if reason:
            raise SlurmError(reason)
        t0 = time.monotonic()
        self.root = self._make_root()
        try:
            self._write_config()
            self._start_ctld()
            for name in self.node_features:
                self._start_slurmd(name)
            self.wait_nodes(lambda n: n.state == "IDLE", timeout=self.start_timeout, what="all nodes IDLE")
        except BaseException:
            with contextlib.suppress(Exception):
                self.stop()
            raise
        self.start_seconds = time.monotonic() - t0
        return self

    def __enter__(self) -> SlurmCluster:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _terminate(self, procs: Sequence[subprocess.Popen[bytes]], grace: float | None = None) -> None:
        """SIGTERM, wait up to ``grace`` seconds, then SIGKILL whatever is left; reap them all."""
        grace = self.grace if grace is None else grace
        for p in procs:
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for p in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=max(0.0, deadline - time.monotonic()))
        for p in procs:
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    p.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.wait(timeout=10)  # a process stuck in the kernel (D state) is not worth hanging a test for

    def controller_alive(self) -> bool:
        return self._ctld is not None and self._ctld.poll() is None

    def stop(self) -> None:
        """Cancel jobs, stop every daemon by pid (SIGTERM, then SIGKILL), sweep leftovers, remove the directory.

        Safe to call twice and after a failed start. Cancelling first lets slurmd end the steps and run the Epilog;
        processes that survive (steps orphaned by kill_node, a hung job) are found by pid and killed.
        """
        if self.root is None:
            return
        t0 = time.monotonic()
        try:
            # Each step is best effort (a hung squeue must not keep the daemons alive); the sweep runs regardless.
            if self.controller_alive():
                with contextlib.suppress(Exception):
                    self._cancel_all_jobs()
            # The controller first: stopped while slurmd still answers, its agent threads end at once (the other way
            # round it spends ~3 s on "hung communications" with the gone slurmd).
            if self._ctld is not None:
                self._terminate([self._ctld])
            self._terminate(list(self._slurmd.values()))
        finally:
            try:
                self._sweep()
                with contextlib.suppress(Exception):
                    self._job_ids |= self._jobcomp_ids()
                    self._remove_job_containers()
            finally:
                shutil.rmtree(self.root, ignore_errors=True)
                self.root = None
                self._ctld = None
                self._slurmd = {}
                # Pids get reused: never treat these as ours again.
                self._started_pids = set()
                self._job_ids = set()
                self.stop_seconds = time.monotonic() - t0

    def _cancel_all_jobs(self) -> None:
        listed = self.run("squeue", "-h", "-o", "%A", timeout=15)
        ids = [int(x) for x in listed.stdout.split() if x.isdigit()]
        self._job_ids.update(ids)
        if not ids:
            return
        self.run("scancel", *map(str, ids), timeout=15)
        # Wait for the jobs to leave the queue (Epilog done) but never forever: a job on a dead node stays
        # COMPLETING until slurmd_timeout passes.
        deadline = time.monotonic() + self.kill_wait + self.slurmd_timeout + 5
        while time.monotonic() < deadline:
            left = self.run("squeue", "-h", "-o", "%A", timeout=15)
            if left.returncode != 0 or not left.stdout.strip():
                return
            time.sleep(0.2)

    def _jobcomp_ids(self) -> set[int]:
        path = self.log_dir / "jobcomp.txt"
        if not path.exists():
            return set()
        return {int(m) for m in re.findall(r"\bJobId=(\d+)", path.read_text(errors="replace"))}

    def _remove_job_containers(self) -> None:
        """Remove Docker containers still labelled with one of this cluster's job ids (a job's Epilog never ran)."""
        if not self._job_ids or shutil.which("docker") is None:
            return
        try:
            fmt = f'{{{{.ID}}}} {{{{.Label "{JOB_LABEL}"}}}}'
            listed = subprocess.run(["docker", "ps", "-a", "--filter", f"label={JOB_LABEL}", "--format", fmt],
                                    capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.SubprocessError):
            return
        ours = [cid for cid, _, job in (line.partition(" ") for line in listed.stdout.splitlines())
                if job.isdigit() and int(job) in self._job_ids]
        if ours:
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                subprocess.run(["docker", "rm", "-f", *ours], capture_output=True, timeout=60)

    # -- finding this cluster's processes --------------------------------------------------------------------------

    def pids(self) -> set[int]:
        """Live processes that belong to this cluster: its daemons, slurmstepd, and job processes.

        A process belongs if it was started here, descends from one that was, has a file or its working directory
        inside the cluster directory (slurmstepd keeps the slurmd log open), or carries this cluster's
        SLURM_CONF/SLURM_CLUSTER_NAME in its environment (job processes). This process and its ancestors never do.
        """
        root = str(self._root())
        markers = (f"SLURM_CONF={self.conf_path}\0".encode(), f"SLURM_CLUSTER_NAME={self.cluster_name}\0".encode())
        exclude = _self_and_ancestors()
        parents: dict[int, int] = {}
        ours: set[int] = set()
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            pid = int(entry)
            stat = _read_stat(pid)
            if stat is None or stat[1] == "Z" or pid in exclude:
                continue
            parents[pid] = stat[0]
            if pid in self._started_pids or _touches(pid, root):
                ours.add(pid)
                continue
            with contextlib.suppress(OSError):
                environ = Path(f"/proc/{pid}/environ").read_bytes()
                if any(m in environ for m in markers):
                    ours.add(pid)
        grew = True
        while grew:
            kids = {pid for pid, ppid in parents.items() if ppid in ours and pid not in ours}
            ours |= kids
            grew = bool(kids)
        return ours

    def _sweep(self) -> None:
        """SIGTERM, then SIGKILL after the grace, every process that still belongs to this cluster."""
        left = self.pids()
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in left:
                # slurmstepd ignores SIGTERM; its job processes were collected with it and get their SIGTERM.
                stepd = _comm(pid) == "slurmstepd"
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL if stepd else sig)
            deadline = time.monotonic() + (min(self.grace, 2.0) if sig == signal.SIGTERM else 2.0)
            while left and time.monotonic() < deadline:
                time.sleep(0.05)
                left = {p for p in left if _alive(p)}
            if not left:
                return

    # -- client commands -------------------------------------------------------------------------------------------

    def run(self, *argv: str, check: bool = False, timeout: float = 60, input: str | None = None,
            user: str | None = None) -> subprocess.CompletedProcess[str]:
        """A client command (sbatch, srun, squeue, ...) against this cluster; ``user`` runs it via runuser."""
        cmd = list(argv) if user is None else ["runuser", "-u", user, "--", *argv]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, input=input,
                              env={**os.environ, **self.env})
        if check and proc.returncode != 0:
            raise SlurmError(f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr.strip() or proc.stdout.strip()}")
        return proc

    def scontrol(self, *args: str, check: bool = True) -> str:
        return self.run("scontrol", *args, check=check).stdout

    def sbatch(self, *args: str, user: str | None = None) -> int:
        """Submit a batch job (``sbatch --parsable ARGS``) and return its id; raise SlurmError if refused."""
        out = self.run("sbatch", "--parsable", *args, check=True, user=user).stdout.strip()
        job_id = int(out.split(";", 1)[0])
        self._job_ids.add(job_id)
        return job_id

    def job(self, job_id: int) -> dict[str, str]:
        """``scontrol show job -o ID`` as a dict (JobState, NodeList, Reason, ExitCode, ...); {} if unknown."""
        proc = self.run("scontrol", "-o", "show", "job", str(job_id))
        if proc.returncode != 0 or not proc.stdout.strip():
            return {}
        self._job_ids.add(job_id)
        return parse_oneliner(proc.stdout.splitlines()[0])

    def wait_job(self, job_id: int, timeout: float = 60, states: Iterable[str] = TERMINAL_JOB_STATES) -> dict[str, str]:
        """Poll until the job's state is one of ``states`` (default: finished); return its record."""
        wanted = set(states)
        deadline = time.monotonic() + timeout
        info: dict[str, str] = {}
        while time.monotonic() < deadline:
            info = self.job(job_id)
            if info.get("JobState") in wanted:
                return info
            time.sleep(0.2)
        raise SlurmError(f"job {job_id} not in {sorted(wanted)} after {timeout:.0f} s: {info.get('JobState')!r}"
                         f" ({info.get('Reason')})\n{self.log_tail()}")

    def jobcomp(self) -> dict[int, dict[str, str]]:
        """The job completion records (one per finished job run), newest last per job id."""
        path = self.log_dir / "jobcomp.txt"
        records: dict[int, dict[str, str]] = {}
        if path.exists():
            for line in path.read_text(errors="replace").splitlines():
                rec = parse_oneliner(line)
                if rec.get("JobId", "").isdigit():
                    records[int(rec["JobId"])] = rec
        return records

    # -- nodes -----------------------------------------------------------------------------------------------------

    def nodes(self) -> dict[str, Node]:
        """Every node's state, features and reason, from ``scontrol -o show node``."""
        proc = self.run("scontrol", "-o", "show", "node", timeout=15)
        if proc.returncode != 0:
            raise SlurmError(f"scontrol show node failed: {proc.stderr.strip()}")
        out: dict[str, Node] = {}
        for line in proc.stdout.splitlines():
            rec = parse_oneliner(line)
            if "NodeName" not in rec:
                continue
            features = rec.get("AvailableFeatures", "")
            out[rec["NodeName"]] = Node(
                name=rec["NodeName"], state=rec.get("State", ""),
                features=tuple(f for f in features.split(",") if f and f != "(null)"),
                # "Not responding [slurm@2026-01-01T00:00:00]": who set it and when is noise to a test.
                reason=re.sub(r" \[[^\]]*@[^\]]*\]$", "", rec.get("Reason", "")),
            )
        return out

    def wait_nodes(self, predicate: Callable[[Node], bool], names: Iterable[str] | None = None, timeout: float = 30,
                   what: str = "node condition") -> dict[str, Node]:
        """Poll ``nodes()`` until ``predicate`` holds for every node in ``names`` (default: all)."""
        wanted = list(names) if names is not None else list(self.node_features)
        deadline = time.monotonic() + timeout
        last: dict[str, Node] | str = {}
        while time.monotonic() < deadline:
            self._check_daemons()
            try:
                last = self.nodes()
            except SlurmError as exc:
                last = str(exc)
            if isinstance(last, dict) and all(n in last and predicate(last[n]) for n in wanted):
                return last
            time.sleep(0.1)
        raise SlurmError(f"timed out after {timeout:.0f} s waiting for {what}: {last}\n{self.log_tail()}")

    def _check_daemons(self) -> None:
        """Fail fast (with the log) when a daemon this class expects to be running has exited."""
        procs = {"slurmctld": self._ctld} if self._ctld is not None else {}
        procs.update({f"slurmd-{n}": p for n, p in self._slurmd.items()})
        if self._ctld is not None and any(p.poll() is not None for p in self._slurmd.values()):
            # A slurmd that exits at start usually follows a controller that is failing on the same line of
            # slurm.conf: give it a moment, so the controller (with the cause in its log) is the one reported.
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._ctld.wait(timeout=2)
        for label, p in procs.items():
            if p.poll() is not None and p.pid in self._started_pids:
                raise SlurmError(f"{label} exited with status {p.returncode}\n{self.log_tail()}")

    def kill_node(self, name: str) -> None:
        """SIGKILL that node's slurmd, as a crashed machine would look to the controller.

        Measured here: the node shows NOT_RESPONDING ~5 s later (a failed ping), DOWN+NOT_RESPONDING ~6 s later with
        slurmd_timeout=1 and ~11 s with 2 or 3 (the default). Steps already running there keep running: their
        slurmstepd is not slurmd's child. The batch job is requeued (PENDING, job_requeue=True) or ends NODE_FAIL
        (Reason=NodeDown). start_node() makes the new slurmd kill the orphaned step; otherwise stop() does.
        """
        proc = self._slurmd[name]
        self._started_pids.discard(proc.pid)
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait()

    def start_node(self, name: str, wait: bool = True, timeout: float = 30) -> None:
        """Start that node's slurmd again (after kill_node); with ReturnToService=2 the node comes back by itself.

        A no-op if its slurmd runs, so a test can call it in ``finally`` whether or not kill_node was reached.
        """
        if name not in self.node_features:
            raise KeyError(name)
        if name in self._slurmd and self._slurmd[name].poll() is None:
            return
        self._start_slurmd(name)
        if wait:
            self.wait_nodes(lambda n: "NOT_RESPONDING" not in n.flags and n.base_state != "DOWN", [name],
                            timeout=timeout, what=f"{name} responding")

    def drain_node(self, name: str, reason: str = "drained by test") -> None:
        """Mark the node DRAIN: running jobs finish, nothing new is scheduled there."""
        self.scontrol("update", f"NodeName={name}", "State=DRAIN", f"Reason={reason}")

    def resume_node(self, name: str) -> None:
        self.scontrol("update", f"NodeName={name}", "State=RESUME")

    def stop_controller(self) -> None:
        """Stop slurmctld (SIGTERM, SIGKILL after the grace); its state stays on disk for start_controller."""
        if self._ctld is not None:
            self._started_pids.discard(self._ctld.pid)
            self._terminate([self._ctld])

    def start_controller(self, timeout: float = 30) -> None:
        """Start slurmctld again; it recovers jobs and nodes from its state directory.

        Waits until it answers and every node whose slurmd runs has registered again (left UNKNOWN).
        """
        if self.controller_alive():
            raise SlurmError("slurmctld is running")
        self._start_ctld()
        deadline = time.monotonic() + timeout
        while "is UP" not in self.run("scontrol", "ping", timeout=15).stdout:
            self._check_daemons()
            if time.monotonic() > deadline:
                raise SlurmError(f"slurmctld did not answer within {timeout:.0f} s\n{self.log_tail()}")
            time.sleep(0.1)
        running = [n for n, p in self._slurmd.items() if p.poll() is None]
        self.wait_nodes(lambda n: n.base_state != "UNKNOWN", running, timeout=max(1.0, deadline - time.monotonic()),
                        what="nodes registered with the restarted controller")

    def make_oci_bundle(self, image: str, user: str = "nobody", network: bool = False) -> Path:
        """An OCI bundle for ``srun --container`` from a local Docker image, inside the cluster directory.

        ``docker export`` of a created (never started) container becomes ``rootfs``; ``runc spec --rootless`` gives
        config.json with a read-only root, which is adjusted so ``user`` (the job's user: rootless runc maps only
        that uid) is root inside, no terminal is asked for, and, unless ``network``, a new network namespace
        leaves the container only a loopback interface. Slurm replaces args, env and cwd per step.
        """
        pw = pwd.getpwnam(user)
        bundle = Path(tempfile.mkdtemp(prefix="bundle-", dir=self._root()))
        bundle.chmod(0o755)
        (bundle / "rootfs").mkdir()
        cid = subprocess.run(["docker", "create", image, "true"], capture_output=True, text=True, check=True,
                             timeout=120).stdout.strip()
        try:
            with subprocess.Popen(["docker", "export", cid], stdout=subprocess.PIPE) as export:
                subprocess.run(["tar", "-x", "-C", str(bundle / "rootfs")], stdin=export.stdout, check=True,
                               timeout=600)
            if export.returncode != 0:
                raise SlurmError(f"docker export {image} failed with status {export.returncode}")
        finally:
            subprocess.run(["docker", "rm", "-f", cid], capture_output=True, timeout=60)
        subprocess.run(["runc", "spec", "--rootless"], cwd=bundle, check=True, capture_output=True, timeout=30)
        spec = json.loads((bundle / "config.json").read_text())
        spec["process"]["terminal"] = False
        spec["root"]["readonly"] = True
        spec["linux"]["uidMappings"] = [{"containerID": 0, "hostID": pw.pw_uid, "size": 1}]
        spec["linux"]["gidMappings"] = [{"containerID": 0, "hostID": pw.pw_gid, "size": 1}]
        if not network and not any(ns["type"] == "network" for ns in spec["linux"]["namespaces"]):
            spec["linux"]["namespaces"].append({"type": "network"})
        (bundle / "config.json").write_text(json.dumps(spec, indent=1))
        return bundle

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of every log of this cluster, for error messages."""
        if self.root is None or not self.log_dir.exists():
            return ""
        parts = []
        for path in sorted(self.log_dir.glob("*.log")):
            text = path.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"--- {path.name}\n" + "\n".join(text))
        return "\n".join(parts)


def oci_conf(state_dir: str | os.PathLike[str], runtime: str = "runc") -> str:
    """oci.conf for Slurm 22.05 with runc's one-shot ``run`` (Slurm's recommended form over create/start).

    Slurm runs these as the job's user, so runc runs rootless; its state lives in ``state_dir/USER`` (a sticky,
    world-writable directory) instead of /run/user/UID, which needs a systemd login session (22.05 has no %U pattern).
    """
    base = f"{runtime} --rootless=true --root={state_dir}/%u"
    cid = "%n.%u.%j.%s.%t"
    return (
        "# Generated by testbeds/slurmcluster.py (Slurm 22.05 oci.conf keys).\n"
        f'RunTimeQuery="{base} state {cid}"\n'
        f'RunTimeKill="{base} kill -a {cid}"\n'
        f'RunTimeDelete="{base} delete --force {cid}"\n'
        f'RunTimeRun="{base} run {cid} -b %b"\n'
    )


def _read_stat(pid: int) -> tuple[int, str] | None:
    """(parent pid, state letter) of a process, or None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2:].split()
    return int(fields[1]), fields[0]


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    stat = _read_stat(pid)
    return stat is not None and stat[1] != "Z"


def _touches(pid: int, root: str) -> bool:
    """Whether the process has its working directory or an open file inside ``root``."""
    prefix = root.rstrip("/") + "/"
    with contextlib.suppress(OSError):
        if (os.readlink(f"/proc/{pid}/cwd") + "/").startswith(prefix):
            return True
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/{pid}/fd/{fd}").startswith(prefix):
                return True
    return False


def _self_and_ancestors() -> set[int]:
    out: set[int] = set()
    pid = os.getpid()
    while pid > 0 and pid not in out:
        out.add(pid)
        stat = _read_stat(pid)
        if stat is None:
            break
        pid = stat[0]
    return out
