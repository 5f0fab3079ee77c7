"""The ``Backend`` protocol over one exclusive Slurm node: a host's containers run as steps of one allocation.

Why one allocation per host (``salloc --no-shell --exclusive``, then one ``srun --jobid`` step per container)
rather than one ``sbatch`` job per container: every container of a host then runs on the same node, which is
what makes its rows comparable; the node describes itself once; its image is loaded once; and the cost per
container is a step (tenths of a second), not a trip through the scheduler's queue. The node is held
exclusively and this backend runs one step at a time (``slots`` 1), so a timed container never shares its
machine; two hosts of one cluster are two allocations on two nodes, run side by side by the runner.
"""

from __future__ import annotations

import contextlib
import re
import signal
import subprocess
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from orchestrator.backends.base import HostRecord, Prepared, gpu_facts
from orchestrator.backends.docker.container import hardening
from orchestrator.backends.result import STDERR_KEEP_LINES, ContainerResult
from orchestrator.backends.slurm import step
from orchestrator.backends.slurm.bundle import LIMITS, Bundle, ensure_bundle
from orchestrator.backends.slurm.client import Slurm, first_error
from orchestrator.errors import GdbenchError, HostLost
from orchestrator.hosts import gpus as gpuhost

if TYPE_CHECKING:
    from orchestrator.backends.docker.engine import DockerEngine, ImageInfo
    from orchestrator.backends.slurm.settings import Settings
    from orchestrator.images.compose import ComposeFile
    from orchestrator.sweep.spec import RunSpec

#: Job states after which the allocation is gone.
ENDED = ("CANCELLED", "COMPLETED", "DEADLINE", "FAILED", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED", "TIMEOUT",
         "BOOT_FAIL")
#: Node states in which no new container should start there (an admin drained it, or it is gone).
NOT_USABLE = ("DOWN", "DRAIN", "FAIL", "NOT_RESPONDING", "POWER")


def _value(text: str | None) -> str | None:
    """scontrol's ``(null)`` is no value."""
    return None if text in (None, "", "(null)") else text


#: What every gdbench job's name starts with (``gdbench clean`` finds them by it).
JOB_PREFIX = "gdbench-"


def job_name(run_id: str, host: str) -> str:
    """Every job of a run carries its run id: ``scancel --name`` finds them after an interrupt."""
    return f"{JOB_PREFIX}{run_id}-{host}"


class SlurmBackend:
    name = "slurm"
    slots = 1
    reports_startup_overhead = True
    on_this_machine = False

    def __init__(self, host: str, settings: Settings, slurm: Slurm, compose: ComposeFile,
                 local_engine: Callable[[], DockerEngine | None], note: Callable[[str], None],
                 registry: str | None = None) -> None:
        self.host = host
        self.settings = settings
        self.slurm = slurm
        self.compose = compose
        self.compose_path = str(compose.path)
        self._local_engine = local_engine
        self.note = note
        #: ``--registry``: images reach the node through it instead of docker save/load.
        self.registry = registry
        self.job_id: str | None = None
        self.node: str | None = None
        self._facts: dict[str, str] = {}
        self._node_info: dict[str, str] = {}
        self._version: str | None = None
        self._on_node: dict[str, str] = {}  # tag → image id checked on the node
        self._bundles: dict[str, Bundle] = {}  # tag → OCI bundle (runtime oci)
        self._lost: str | None = None
        self._refusal: str | None = None

    # ------------------------------------------------------------------ plan
    def cpus(self) -> None:
        """The scheduler places the job: only threads are fixed, the document records the CPUs it had."""
        return None

    def gpu_unavailable(self) -> str | None:
        if self.settings.gres and "gpu" in self.settings.gres:
            return None
        return (f"GPU requested but host {self.host} asks Slurm for no GPU: add gres = \"gpu:1\" (or gpu:TYPE:N) to "
                f"[hosts.{self.host}], or run with --devices cpu")

    def image_tag(self, framework: str, flavour: str, version: str | None = None) -> str:
        return self.compose.service_for(framework, flavour, version).image

    def framework_versions(self, framework: str, flavour: str, asked: str | None) -> list[str | None]:
        return self.compose.framework_versions(framework, flavour, asked)

    def prepare(self, spec: RunSpec) -> Prepared:
        """Hold the node, know what it is, and have the image there with this machine's image id."""
        if self._refusal is None and self.job_id is None:
            try:
                self._allocate(spec.run_id)
            except GdbenchError as exc:
                self._refusal = exc.message + (f" — fix: {exc.fix}" if exc.fix else "")
        if self._refusal is not None:
            return Prepared.refused(self._refusal)
        service = self.compose.service_for(spec.framework, spec.flavour, spec.framework_version)
        engine = self._local_engine()
        image = engine.image(service.image) if engine is not None else None
        if image is None:
            why = "this machine's Docker engine does not answer" if engine is None else "it is not built here"
            return Prepared.refused(f"image {service.image} cannot be sent to host {self.host}: {why}")
        try:
            if self.settings.runtime == "oci":
                assert engine is not None and self.settings.image_dir is not None
                self._bundles[image.tag] = ensure_bundle(engine, self.settings.image_dir, image.tag)
            else:
                self._ensure_on_node(engine, image)  # type: ignore[arg-type]
        except GdbenchError as exc:
            return Prepared.refused(exc.message + (f" — fix: {exc.fix}" if exc.fix else ""), image=image)
        if spec.device == "gpu":
            why = gpuhost.cuda_incompatibility(service.image, image.cuda_version, self._gpus())
            if why:
                return Prepared.refused(why, image=image)
        return Prepared(image=image)

    def _allocate(self, run_id: str) -> None:
        args = [*self.settings.allocation_args(), "--no-shell", "--job-name", job_name(run_id, self.host),
                "--comment", f"gdbench run {run_id} host {self.host}"]
        proc = self.slurm.run("salloc", *args, timeout=24 * 3600, check=False)
        m = re.search(r"Granted job allocation (\d+)", proc.stderr + proc.stdout)
        if proc.returncode != 0 or not m:
            raise self.slurm.failure("salloc", proc.stderr or proc.stdout)
        self.job_id = m[1]
        info = self.slurm.job(self.job_id)
        self.node = info.get("NodeList") or None
        self._node_info = self.slurm.node(self.node) if self.node else {}
        facts = self.slurm.run(*self._step("bash", "-c", step.facts_script()), timeout=120)
        self._facts = step.parse_facts(facts.stdout)
        self._version = self.slurm.version()
        self.note(f"host {self.host}: Slurm job {self.job_id} holds node {self.node} "
                  f"({self._node_info.get('AvailableFeatures') or 'no features'}) exclusively")

    def _ensure_on_node(self, engine: DockerEngine, image: ImageInfo) -> None:
        """``docker load`` the image on the node unless it holds this id already (the Docker fleet's check)."""
        if self._on_node.get(image.tag) == image.id:
            return
        there = self._node_image_id(image.tag)
        if there != image.id:
            t0 = time.perf_counter()
            if self.registry is not None:
                self._via_registry(engine, image.tag)
                how = f"pulled through {self.registry}"
            elif self.settings.image_dir is not None:
                path = self.settings.image_dir / f"{image.id.replace(':', '-')}.tar"
                if not path.exists():
                    self.settings.image_dir.mkdir(parents=True, exist_ok=True)
                    tmp = path.with_suffix(".partial")
                    with open(tmp, "wb") as out:
                        for chunk in engine.client.images.get(image.tag).save(named=True):
                            out.write(chunk)
                    tmp.rename(path)
                self.slurm.run(*self._step("docker", "load", "-q", "-i", str(path)), timeout=3600)
                how = f"loaded from {path}"
            else:
                self._stream_load(engine, image.tag)
                how = "streamed through srun"
            there = self._node_image_id(image.tag)
            if there != image.id:
                raise GdbenchError(f"host {self.host}: after loading, node {self.node} holds {image.tag} as "
                                   f"{there or 'nothing'}, not this machine's {image.id}",
                                   fix=f"remove the tag on {self.node} (docker rmi {image.tag}) and run again")
            self.note(f"host {self.host}: {image.tag} {how} to node {self.node} in {time.perf_counter() - t0:.1f} s")
        self._on_node[image.tag] = image.id

    def _via_registry(self, engine: DockerEngine, tag: str) -> None:
        """``--registry REPO``: push once as ``REPO/name:tag`` from here, pull and re-tag on the node."""
        name, _, version = tag.rpartition(":")
        remote = f"{self.registry}/{name.rpartition('/')[2]}"
        engine.client.images.get(tag).tag(remote, version)
        for message in engine.client.api.push(remote, tag=version, stream=True, decode=True):
            if message.get("error"):
                raise GdbenchError(f"pushing {tag} to {self.registry} failed: {message['error']}",
                                   fix=f"docker login {(self.registry or '').split('/')[0]}")
        self.slurm.run(*self._step("bash", "-c", f"docker pull -q {remote}:{version} && docker tag {remote}:{version} "
                                   f"{tag}"), timeout=3600)

    def _step(self, *argv: str) -> list[str]:
        """One step of the host's allocation: one task on its one node (srun options first, then the command)."""
        return ["srun", f"--jobid={self.job_id}", "--nodes=1", "--ntasks=1", "--quiet", *argv]

    def _node_image_id(self, tag: str) -> str | None:
        proc = self.slurm.run(*self._step("docker", "image", "inspect", "-f", "{{.Id}}", tag), check=False,
                              timeout=120)
        return proc.stdout.strip() or None if proc.returncode == 0 else None

    def _stream_load(self, engine: DockerEngine, tag: str) -> None:
        """``docker save`` here piped into ``docker load`` on the node: srun hands its stdin to the task."""
        proc = subprocess.Popen(self._step("docker", "load", "-q"), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=self.slurm.env)
        assert proc.stdin is not None
        try:
            for chunk in engine.client.images.get(tag).save(named=True):
                proc.stdin.write(chunk)
            proc.stdin.close()
            _, err = proc.communicate(timeout=3600)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        if proc.returncode != 0:
            raise GdbenchError(f"host {self.host}: docker load on node {self.node} failed: "
                               f"{first_error(err.decode(errors='replace'))}")

    # ------------------------------------------------------------------- run
    def run(self, spec: RunSpec, prepared: Prepared, on_line: Callable[[str], None]) -> ContainerResult:
        if self._lost is not None:
            raise HostLost(self._lost, fix="gdbench run --resume RUN_DIR (reruns what is missing)")
        self._check_node(spec)
        image = prepared.image
        assert image is not None and self.job_id is not None, "prepare() the container first"
        h = hardening(spec, image, image_user=getattr(image, "user", None),
                      labels_of_image=dict(getattr(image, "labels", {}) or {}), gpu=spec.device == "gpu")
        if self.settings.runtime == "oci":
            b = self._bundles[image.tag]
            command = ["env", "-i", *b.env, *(f"{k}={v}" for k, v in h.env.items()),
                       "timeout", f"{max(spec.timeout_s, 0.1):g}s", *b.entrypoint, *h.command]
            argv = self._step("--unbuffered", f"--container={b.path}", f"--chdir={b.workdir}", *command)
        else:
            gpus = (",".join(spec.gpus) if spec.gpus else "all") if spec.device == "gpu" else None
            create = h.cli_args(gpus=gpus, extra_labels={step.JOB_LABEL: self.job_id})
            argv = self._step("--unbuffered", "bash", "-c", step.docker_step(h.name, create, spec.timeout_s))
        result = ContainerResult(name=h.name)
        t0 = time.perf_counter()
        # The step's own timeout ends the container; this one only guards against a step that hangs.
        code, stdout, lines = step.stream(argv, self.slurm.env, on_line, spec.timeout_s + 300, self._end_step)
        kept, state = step.split_state(lines)
        result.wall_s = time.perf_counter() - t0
        result.stdout = stdout
        result.stderr = "\n".join(kept[-STDERR_KEEP_LINES:])
        if state is not None:  # docker: the container's own state, from the daemon on the node
            result.exit_code, result.oom_killed = state.exit_code, state.oom_killed
            result.timed_out, result.process_s = state.timed_out, state.process_s
            return result
        node = self.slurm.node(self.node) if self.node else {}
        if any(s in node.get("State", "") for s in NOT_USABLE):  # the step died with its node
            self._lost = (f"host {self.host}: node {self.node} went {node['State']} (Slurm's reason: "
                          f"{node.get('Reason') or 'none given'}) while {spec.key} ran")
            raise HostLost(self._lost, fix="when the node is back: gdbench run --resume RUN_DIR")
        if self.slurm.job(self.job_id).get("JobState") == "RUNNING":  # the step ended, the allocation did not
            result.exit_code, result.timed_out = code, code == step.TIMED_OUT
            return result
        return self._step_died(spec, code, result, kept)

    def _check_node(self, spec: RunSpec) -> None:
        """A node an admin drained (or that went down) starts nothing more: its cells wait for --resume."""
        if not self.node:
            return
        node = self.slurm.node(self.node)
        state = node.get("State", "")
        if any(s in state for s in NOT_USABLE):
            self._lost = (f"host {self.host}: node {self.node} is {state} (Slurm's reason: "
                          f"{node.get('Reason') or 'none given'}); {spec.key} and the rest were not started")
            raise HostLost(self._lost, fix="when the node is back: gdbench run --resume RUN_DIR")

    def _step_died(self, spec: RunSpec, code: int, result: ContainerResult, lines: list[str]) -> ContainerResult:
        """The step ended without the container's state: the job's time limit, a failed node, or a step error."""
        job = self.slurm.job(self.job_id or "")
        state, reason = job.get("JobState", "GONE"), job.get("Reason") or "none given"
        if state == "TIMEOUT" or "DUE TO TIME LIMIT" in "\n".join(lines):
            self._lost = (f"host {self.host}: Slurm job {self.job_id} reached its time limit "
                          f"({self.settings.time_limit or 'the partition default'}); the containers after "
                          f"{spec.key} were not started")
            result.timed_out = True
            result.timeout_reason = (f"timed out: Slurm job {self.job_id} reached its time limit "
                                     f"({self.settings.time_limit or 'the partition default'}); container removed")
            result.exit_code = code
            return result
        if state in ENDED or state == "GONE" or state.startswith("NODE"):
            node = self.slurm.node(self.node) if self.node else {}
            self._lost = (f"host {self.host}: Slurm job {self.job_id} on node {self.node} ended {state} "
                          f"(reason: {node.get('Reason') or reason}) while {spec.key} ran")
            raise HostLost(self._lost, fix="when the node is back: gdbench run --resume RUN_DIR")
        result.exit_code = code
        return result

    def _end_step(self, proc: subprocess.Popen[bytes]) -> None:
        """An interrupt: TERM reaches the step (the docker script's trap removes the container; Slurm has runc
        kill an OCI container), then srun ends."""
        with contextlib.suppress(Exception):
            self.slurm.run("scancel", "--signal=TERM", self.job_id or "", check=False, timeout=30)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()

    # -------------------------------------------------------------- records
    def _gpus(self) -> gpuhost.HostGpus:
        names = [g for g in (self._facts.get("gpus") or "").split(";") if g]
        return gpuhost.HostGpus(driver_version=self._facts.get("driver") or None,
                                cuda_driver_version=self._facts.get("cuda") or None, gpus=names,
                                error=None if names else "nvidia-smi on the node lists no GPU")

    def host_record(self) -> HostRecord:
        f, gpus = self._facts, self._gpus()
        extra: dict[str, Any] = {
            "slurm_job_id": self.job_id, "node": self.node, "partition": self.settings.partition,
            "constraint": self.settings.constraint, "features": self._node_info.get("AvailableFeatures"),
            "gres": _value(self._node_info.get("Gres")), "requested_gres": self.settings.gres,
            "runtime": self.settings.runtime,
            "limits": LIMITS if self.settings.runtime == "oci" else "docker --memory/--pids-limit",
            "docker_on_node": f.get("docker"), "runc_on_node": f.get("runc"),
            "features_active": _value(self._node_info.get("ActiveFeatures")),
        }
        return HostRecord(name=self.host, engine="slurm", engine_version=self._version, hostname=f.get("hostname"),
                          kernel=f.get("kernel"), os=f.get("os"), cpu_model=f.get("cpu_model"),
                          ncpu=int(f["ncpu"]) if f.get("ncpu", "").isdigit() else None,
                          architecture=f.get("architecture"), runtimes=[self.settings.runtime],
                          **gpu_facts(gpus, source="nvidia-smi on the node" if gpus.gpus else None),
                          extra={k: v for k, v in extra.items() if v is not None})

    def remove_run(self, run_id: str) -> None:
        """Cancel every job of the run on this cluster (found by name); the steps' traps and the Epilog remove
        the containers."""
        with contextlib.suppress(Exception):
            self.slurm.cancel(name=job_name(run_id, self.host))
        if self.job_id:
            with contextlib.suppress(Exception):
                self.slurm.cancel(job_id=self.job_id)

    def close(self) -> None:
        """Give the node back."""
        if self.job_id:
            with contextlib.suppress(Exception):
                self.slurm.cancel(job_id=self.job_id)
