"""One hardened container's life on a Docker engine: its configuration, start, logs, timeout, exit and removal.

Every container gets the same hardening: a non-root user, read-only root filesystem with a tmpfs /tmp, all
capabilities dropped, no-new-privileges, no network, memory/pids limits, no host mounts, and labels so
``gdbench`` can find and remove what it started. Docker errors become ``GdbenchError`` subclasses that say
what to do: a refused GPU request is ``GpuUnavailable``, an engine that stops answering is ``HostLost``.
"""

from __future__ import annotations

import collections
import contextlib
import datetime as dt
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

import docker
import docker.errors
import docker.types
import requests.exceptions

from orchestrator import labels
from orchestrator.backends.docker.engine import parse_ts
from orchestrator.backends.result import OOM_EVENT_WAIT_S, SIGKILL_EXIT, STDERR_KEEP_LINES, ContainerResult
from orchestrator.errors import GdbenchError, GpuUnavailable, HostLost
from orchestrator.sweep.spec import RunSpec, format_cpuset

if TYPE_CHECKING:
    from orchestrator.backends.base import ImageRef
    from orchestrator.backends.docker.engine import DockerEngine, ImageInfo

NOBODY = "65534:65534"
# The only writable path. `exec`, because Docker mounts a tmpfs noexec by default and JITs that load what
# they compiled from their cache there (torch.compile, Triton) then fail with "failed to map segment".
TMPFS = {"/tmp": "rw,exec,nosuid,nodev,size=512m"}


class GpuRefusal(NamedTuple):
    """Fragments of the engine's message when it cannot honour a GPU request (matched after the status code)."""

    no_driver: str = "could not select device driver"  # no runtime or CDI driver registered for the request
    cdi: str = "unresolvable CDI devices"  # CDI asked for a device no spec file names
    toolkit: str = "nvidia-container-cli"  # the NVIDIA hook ran and failed (driver missing or mismatched)
    runtime: str = "unknown or invalid runtime name: nvidia"


GPU_REFUSAL = GpuRefusal()
#: Statuses a GPU refusal comes with: 500 from start() for a missing driver or a failing hook (seen on dockerd
#: 28), 400 where the engine validates the request up front. A 404 or 409 is never about the GPU.
GPU_REFUSAL_STATUS = (400, 500)


@dataclass(frozen=True)
class Hardening:
    """What every container gets, whoever starts it (the SDK here, ``docker create`` on a Slurm node): one owner."""

    name: str
    image: str
    command: list[str]
    user: str
    env: dict[str, str]
    labels: dict[str, str]
    mem_limit: str
    pids_limit: int
    cpuset: str
    read_only: bool = True
    tmpfs: dict[str, str] = field(default_factory=lambda: dict(TMPFS))
    cap_drop: tuple[str, ...] = ("ALL",)
    security_opt: tuple[str, ...] = ("no-new-privileges:true",)
    network: str = "none"

    def cli_args(self, *, gpus: str | None = None, extra_labels: dict[str, str] | None = None) -> list[str]:
        """The same container as ``docker create`` arguments (after ``create``), ending with image and command."""
        args = ["--name", self.name, "--user", self.user, "--network", self.network, "--memory", self.mem_limit,
                "--memory-swap", self.mem_limit, "--pids-limit", str(self.pids_limit),
                "--log-opt", "max-size=64m"]
        if self.read_only:
            args.append("--read-only")
        if self.cpuset:
            args += ["--cpuset-cpus", self.cpuset]
        for path, options in self.tmpfs.items():
            args += ["--tmpfs", f"{path}:{options}"]
        for cap in self.cap_drop:
            args += ["--cap-drop", cap]
        for opt in self.security_opt:
            args += ["--security-opt", opt]
        for key, value in {**self.labels, **(extra_labels or {})}.items():
            args += ["--label", f"{key}={value}"]
        for key, value in self.env.items():
            args += ["--env", f"{key}={value}"]
        if gpus is not None:
            args += ["--gpus", gpus]
        return [*args, self.image, *self.command]


def hardening(spec: RunSpec, image: ImageRef, *, image_user: str | None, labels_of_image: dict[str, str],
              gpu: bool) -> Hardening:
    """The hardened container for ``spec`` from ``image``: non-root, read-only, no network, no capabilities."""
    image_user = (image_user or "").strip()
    user = NOBODY if image_user in ("", "root", "0", "0:0", "root:root") else image_user
    env = {
        "GDBENCH_IMAGE_TAG": image.tag,
        "GDBENCH_IMAGE_DIGEST": image.digest or image.id,
        "GDBENCH_IMAGE_REVISION": labels_of_image.get("org.opencontainers.image.revision", ""),
        "GDBENCH_RUN_ID": spec.run_id,
        # Read-only rootfs: every cache a framework may want goes to the tmpfs.
        "HOME": "/tmp",
        "XDG_CACHE_HOME": "/tmp/.cache",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    if gpu:
        env["NVIDIA_DRIVER_CAPABILITIES"] = "compute,utility"
    return Hardening(name=container_name(spec), image=image.id, command=spec.solver_args(), user=user, env=env,
                     labels={**spec.labels, labels.MANAGED: "1", labels.RUN: spec.run_id, labels.CONTAINER: spec.key},
                     mem_limit=spec.mem_limit, pids_limit=spec.pids_limit, cpuset=format_cpuset(spec.cpuset))


def container_config(engine: DockerEngine, spec: RunSpec, image: ImageInfo, *, gpu: bool) -> dict[str, Any]:
    """Keyword arguments for ``containers.create``: ``hardening`` in the SDK's words."""
    h = hardening(spec, image, image_user=image.user, labels_of_image=image.labels, gpu=gpu)
    env = dict(h.env)
    config: dict[str, Any] = {
        "image": h.image,
        "command": h.command,
        "name": h.name,
        "labels": h.labels,
        "environment": env,
        "user": h.user,
        "read_only": h.read_only,
        "tmpfs": dict(h.tmpfs),
        "cap_drop": list(h.cap_drop),
        "security_opt": list(h.security_opt),
        "network_mode": h.network,
        "mem_limit": h.mem_limit,
        "memswap_limit": h.mem_limit,  # no swap: an over-limit run is OOM-killed, not silently slowed
        "pids_limit": h.pids_limit,
        "cpuset_cpus": h.cpuset,
        "log_config": docker.types.LogConfig(type="json-file", config={"max-size": "64m"}),
        "detach": True,
    }
    if gpu:
        config["device_requests"] = [gpu_request(spec.gpus, cdi=engine.facts().use_cdi)]
        if engine.on_this_machine:  # what `gdbench gpu lock` recorded here describes this engine's GPUs
            from orchestrator.hosts.gpuclocks import record_env

            env.update(record_env())
    return config


def create(engine: DockerEngine, spec: RunSpec, image: ImageInfo, *, gpu: bool) -> Any:
    config = container_config(engine, spec, image, gpu=gpu)
    _remove_stale(engine, config["name"])
    try:
        return engine.client.containers.create(**config)
    except docker.errors.APIError as exc:
        raise _classify(exc, spec) from exc


def _oom_event(engine: DockerEngine, container_id: str, since: int) -> bool:
    """Whether Docker reported an ``oom`` event for the container since ``since``.

    Docker sets ``State.OOMKilled`` from the same kernel notification, but only when that notification
    arrives before it has processed the exit. On a loaded host it can come later, and the container then
    reads "exit 137, not OOMKilled" although the kernel's log names it. The event stream still carries the
    ``oom`` event, so a SIGKILLed container is asked once more, waiting ``OOM_EVENT_WAIT_S`` for it.
    """
    try:
        events = engine.client.events(since=since, until=int(time.time()) + OOM_EVENT_WAIT_S, decode=True,
                                      filters={"container": container_id, "event": "oom"})
        return any(e.get("status") == "oom" or e.get("Action") == "oom" for e in events)
    except (docker.errors.DockerException, requests.exceptions.RequestException):
        return False


def run(engine: DockerEngine, spec: RunSpec, image: ImageInfo, *, gpu: bool,
        on_line: Callable[[str], None]) -> ContainerResult:
    """Create, start, stream stderr lines to ``on_line``, enforce the timeout, collect, remove.

    Interrupts (KeyboardInterrupt, ``Interrupted``) propagate after the container is killed and removed.
    """
    result = ContainerResult(name=container_name(spec))
    t0 = time.perf_counter()
    try:
        container = create(engine, spec, image, gpu=gpu)
    except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
        raise _lost(engine, exc, spec) if _is_connection_loss(exc) else \
            GdbenchError(f"Docker error while creating {spec.key}: {exc}") from exc
    result.create_s = time.perf_counter() - t0
    stderr_lines: collections.deque[str] = collections.deque(maxlen=STDERR_KEEP_LINES)
    watchdog: threading.Timer | None = None
    try:
        t1 = time.perf_counter()
        started_at = int(time.time()) - 1
        try:
            container.start()
        except docker.errors.APIError as exc:
            raise _classify(exc, spec) from exc
        result.start_s = time.perf_counter() - t1
        result.user = engine.client.api.inspect_container(container.id)["Config"].get("User")

        def on_timeout() -> None:
            result.timed_out = True
            _kill_quietly(container)

        watchdog = threading.Timer(spec.timeout_s, on_timeout)
        watchdog.daemon = True
        watchdog.start()
        first_ts: dt.datetime | None = None
        for ts, line in _lines(container.logs(stream=True, follow=True, stdout=False, stderr=True,
                                              timestamps=True)):
            first_ts = first_ts or ts
            stderr_lines.append(line)
            on_line(line)
        status = container.wait()
        watchdog.cancel()
        state = engine.client.api.inspect_container(container.id)["State"]
        result.exit_code = int(status.get("StatusCode", state.get("ExitCode", -1)))
        result.oom_killed = bool(state.get("OOMKilled")) or (
            result.exit_code == SIGKILL_EXIT and not result.timed_out and _oom_event(engine, container.id, started_at))
        started, finished = parse_ts(state.get("StartedAt")), parse_ts(state.get("FinishedAt"))
        if started and finished:
            result.process_s = (finished - started).total_seconds()
        if started and first_ts:
            result.first_line_s = (first_ts - started).total_seconds()
        result.stdout = container.logs(stdout=True, stderr=False).decode("utf-8", errors="replace")
        result.stderr = "\n".join(stderr_lines)
        result.wall_s = time.perf_counter() - t0
        return result
    except GdbenchError:
        _kill_quietly(container)
        raise
    except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
        _kill_quietly(container)
        if _is_connection_loss(exc):
            raise _lost(engine, exc, spec) from exc
        raise GdbenchError(f"Docker error while running {spec.key}: {exc}") from exc
    except BaseException:  # KeyboardInterrupt, Interrupted: the container must not outlive us
        _kill_quietly(container)
        raise
    finally:
        if watchdog is not None:
            watchdog.cancel()
        t2 = time.perf_counter()
        _remove_quietly(container)
        result.remove_s = time.perf_counter() - t2


def _lost(engine: DockerEngine, exc: BaseException, spec: RunSpec) -> HostLost:
    first = str(exc).splitlines()[0][:200] if str(exc) else exc.__class__.__name__
    return HostLost(f"host {engine.name} ({engine.address}) stopped answering while {spec.key} ran: {first}",
                    fix="bring the engine back, then: gdbench run --resume RUN_DIR (reruns what is missing)")


def _remove_stale(engine: DockerEngine, name: str) -> None:
    """A container of ours with this name survives only a killed orchestrator (e.g. before --resume)."""
    try:
        old = engine.client.containers.get(name)
    except docker.errors.NotFound:
        return
    if old.labels.get(labels.MANAGED) == "1":
        _remove_quietly(old)


def _kill_quietly(container: Any) -> None:
    with contextlib.suppress(docker.errors.APIError, requests.exceptions.RequestException):
        container.kill()  # fails harmlessly when it already exited


def _remove_quietly(container: Any) -> None:
    try:
        container.remove(force=True)
    except docker.errors.NotFound:
        pass
    except (docker.errors.APIError, requests.exceptions.RequestException):
        pass  # removal in progress; the label lets `gdbench doctor` find leftovers


def gpu_request(gpus: list[str] | None, *, cdi: bool) -> docker.types.DeviceRequest:
    """Every GPU (``count=-1``, CDI ``=all``), or exactly the devices ``--gpus`` named (indices or UUIDs)."""
    if cdi:
        return docker.types.DeviceRequest(driver="cdi", device_ids=[f"nvidia.com/gpu={g}" for g in gpus or ["all"]])
    if gpus:
        return docker.types.DeviceRequest(device_ids=list(gpus), capabilities=[["gpu"]])
    return docker.types.DeviceRequest(count=-1, capabilities=[["gpu"]])


def container_name(spec: RunSpec) -> str:
    """Docker names allow [A-Za-z0-9_.-]: the key's ``@`` (version, host) becomes ``-at-``, anything else ``-``."""
    return re.sub(r"[^a-zA-Z0-9_.-]", "-", f"gdbench-{spec.run_id}-{spec.key}".replace("@", "-at-"))[:120]


def _is_connection_loss(exc: BaseException) -> bool:
    """The engine went away (refused, reset, stream cut), as opposed to an answer saying no."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, (requests.exceptions.ConnectionError, requests.exceptions.ChunkedEncodingError,
                             ConnectionError)):
            return True
        name = seen.__class__.__name__
        if name in ("ProtocolError", "IncompleteRead", "ReadTimeoutError", "NewConnectionError"):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _classify(exc: docker.errors.APIError, spec: RunSpec) -> GdbenchError:
    """A refused create/start: ``GpuUnavailable`` when a GPU was asked for and the status and message say the
    engine cannot provide one (status first, then ``GPU_REFUSAL``), else a plain refusal."""
    text = str(exc.explanation or exc)
    if spec.device == "gpu" and exc.status_code in GPU_REFUSAL_STATUS and any(f in text for f in GPU_REFUSAL):
        return GpuUnavailable(f"GPU requested but this Docker host has no NVIDIA runtime: {text}",
                              fix="install the NVIDIA Container Toolkit and restart dockerd, or run --devices cpu")
    return GdbenchError(f"Docker refused container {spec.key}: {text}")


def _lines(stream: Iterator[bytes]) -> Iterator[tuple[dt.datetime | None, str]]:
    """Split a timestamped log stream into (daemon timestamp, text) lines; partial lines are joined."""
    buf = b""
    for chunk in stream:
        buf += chunk
        *complete, buf = buf.split(b"\n")
        for raw in complete:
            yield _split_ts(raw.decode("utf-8", errors="replace"))
    if buf:
        yield _split_ts(buf.decode("utf-8", errors="replace"))


def _split_ts(line: str) -> tuple[dt.datetime | None, str]:
    stamp, sep, text = line.partition(" ")
    ts = parse_ts(stamp) if sep else None
    return (ts, text) if ts else (None, line)
