"""Where Docker is talked to (docker SDK for Python), with hostconn.py (reaching an engine) and ship.py
(moving images between engines); everything else sees typed results.

One cohesive boundary, hence its length: ``DockerEngine`` is one connected engine (its facts, images, builds
and hardened containers; several may exist at once, nothing is kept at module level) and ``DockerBackend`` is
the ``Backend`` protocol over one engine and the compose file. Every container gets the same hardening: a
non-root user, read-only root filesystem with a tmpfs /tmp, all capabilities dropped, no-new-privileges, no
network, memory/pids limits, no host mounts, and labels so ``gdbench`` can find and remove what it started.
Docker errors are translated into ``GdbenchError`` subclasses that say what to do.
"""

from __future__ import annotations

import collections
import contextlib
import datetime as dt
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import docker
import docker.errors
import docker.tls
import docker.types
import requests.exceptions

from orchestrator import labels
from orchestrator.backends import base as backend
from orchestrator.backends.result import STDERR_KEEP_LINES, ContainerResult
from orchestrator.errors import DockerUnavailable, GdbenchError, GpuUnavailable, HostLost, ImageMissing
from orchestrator.hosts import gpus as gpuhost
from orchestrator.images.compose import ComposeFile, Service
from orchestrator.sweep.spec import RunSpec, format_cpuset

if TYPE_CHECKING:
    from orchestrator.backends.docker.ship import Shipper
    from orchestrator.hosts.inventory import HostEntry
    from orchestrator.sweep.planner import Planned

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
class HostFacts:
    """What the Docker daemon says about itself; recorded in every manifest and document."""

    docker_version: str | None = None
    api_version: str | None = None
    storage_driver: str | None = None
    cgroup_version: str | None = None
    cgroup_driver: str | None = None
    runtimes: list[str] = field(default_factory=list)
    default_runtime: str | None = None
    cdi_spec_dirs: list[str] = field(default_factory=list)
    #: CDI device names the daemon (API ≥ 1.48) or the spec files in ``cdi_spec_dirs`` offer for NVIDIA GPUs.
    cdi_gpus: list[str] = field(default_factory=list)
    ncpu: int | None = None
    mem_total_bytes: int | None = None
    operating_system: str | None = None
    kernel_version: str | None = None
    warnings: list[str] = field(default_factory=list)
    engine_id: str | None = None
    hostname: str | None = None
    architecture: str | None = None  # the engine's machine, as uname says it (x86_64, aarch64)
    root_dir: str | None = None  # DockerRootDir: with engine_id, tells two engines apart (the ID may be shared)

    @property
    def nvidia_runtime(self) -> bool:
        """GPU containers can be requested: an ``nvidia`` runtime is registered, or CDI offers NVIDIA GPUs.

        CDI spec directories alone do not count (recent daemons list them by default, GPU or not).
        """
        return any("nvidia" in r for r in self.runtimes) or bool(self.cdi_gpus)

    @property
    def use_cdi(self) -> bool:
        return bool(self.cdi_gpus) and not any("nvidia" in r for r in self.runtimes)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "nvidia_runtime": self.nvidia_runtime}


@dataclass(frozen=True)
class ImageInfo:
    tag: str
    id: str
    digest: str | None  # registry digest; locally built images have none, so ``id`` identifies them
    labels: dict[str, str]
    size_bytes: int
    created: str | None
    user: str | None

    def provenance(self) -> dict[str, Any]:
        return {"tag": self.tag, "id": self.id, "digest": self.digest, "labels": dict(self.labels),
                "python_version": self.labels.get(labels.PYTHON_VERSION) or None}

    @property
    def framework_version(self) -> str | None:
        return self.labels.get(labels.FRAMEWORK_VERSION)

    @property
    def cuda_version(self) -> str | None:
        return self.labels.get(labels.CUDA_VERSION) or None


def _parse_ts(text: str | None) -> dt.datetime | None:
    """Docker's RFC 3339 nanosecond timestamps → aware datetime (microseconds kept)."""
    if not text or text.startswith("0001-"):
        return None
    base, _, frac = text.rstrip("Z").partition(".")
    frac = (frac.split("+")[0].split("-")[0] + "000000")[:6]
    try:
        return dt.datetime.fromisoformat(f"{base}.{frac}").replace(tzinfo=dt.UTC)
    except ValueError:
        return None


def _connection_fix(exc: BaseException) -> tuple[str, str]:
    text = str(exc)
    if "Permission denied" in text or "PermissionError" in text:
        return ("permission denied on the Docker socket",
                "add your user to the docker group (sudo usermod -aG docker $USER, then log in again)")
    if "No such file" in text or "FileNotFoundError" in text:
        return ("the Docker socket does not exist (daemon not running?)",
                "start the daemon: sudo systemctl start docker (or: dockerd &), or set DOCKER_HOST")
    if "Connection refused" in text:
        return ("the Docker daemon refused the connection", "start the daemon or check DOCKER_HOST")
    return (text.splitlines()[0][:300], "check that the Docker daemon is running and DOCKER_HOST is right")


class DockerEngine:
    """One connected Docker engine; its facts are read once. ``name`` is its inventory name."""

    def __init__(self, client: docker.DockerClient, name: str = "local") -> None:
        self.client = client
        self.name = name
        self.address = str(client.api.base_url)  # what lines name it by: the inventory's URL where there is one
        self._facts: HostFacts | None = None

    @classmethod
    def connect(cls, base_url: str | None = None, timeout: int = 120,
                tls: docker.tls.TLSConfig | None = None) -> DockerEngine:
        """Connect (``base_url``, else the environment's DOCKER_HOST) and ping; an unreachable engine is one
        ``DockerUnavailable`` line with the fix."""
        try:
            client = docker.DockerClient(base_url=base_url, timeout=timeout, tls=tls or False) if base_url else \
                docker.from_env(timeout=timeout)
            client.ping()
        except (docker.errors.DockerException, requests.exceptions.RequestException, OSError) as exc:
            what, fix = _connection_fix(exc)
            raise DockerUnavailable(f"cannot reach the Docker daemon: {what}", fix=fix) from exc
        return cls(client)

    @classmethod
    def for_host(cls, entry: HostEntry, timeout: int = 120) -> DockerEngine:
        """Connect to one inventory entry and ping it; any failure is one line naming the host (and, for TLS,
        the certificate problem)."""
        from orchestrator.backends.docker import connect as hostconn

        if entry.url is None and entry.context is None:
            engine = cls.connect(timeout=timeout)
            engine.name = entry.name
            return engine
        try:
            client = hostconn.docker_client(entry, timeout=timeout)
            client.ping()
        except (docker.errors.DockerException, requests.exceptions.RequestException, OSError) as exc:
            raise hostconn.connect_failure(entry, exc, _connection_fix(exc)) from exc
        engine = cls(client, entry.name)
        engine.address = entry.address
        return engine

    @property
    def base_url(self) -> str:
        return str(self.client.api.base_url)

    @property
    def on_this_machine(self) -> bool:
        """A unix socket (docker-py names it ``http+docker://localhost``) or a loopback TCP address is here."""
        from urllib.parse import urlsplit

        url = urlsplit(self.base_url)
        return url.scheme in ("http+docker", "unix") or url.hostname in ("localhost", "127.0.0.1", "::1")

    # ------------------------------------------------------------------ facts
    def facts(self) -> HostFacts:
        if self._facts is None:
            info = self.client.info()
            version = self.client.version()
            self._facts = HostFacts(
                docker_version=version.get("Version") or info.get("ServerVersion"),
                api_version=version.get("ApiVersion"),
                storage_driver=info.get("Driver"),
                cgroup_version=str(info["CgroupVersion"]) if info.get("CgroupVersion") else None,
                cgroup_driver=info.get("CgroupDriver"),
                runtimes=sorted((info.get("Runtimes") or {}).keys()),
                default_runtime=info.get("DefaultRuntime"),
                cdi_spec_dirs=list(info.get("CDISpecDirs") or []),
                cdi_gpus=_cdi_gpus(info),
                ncpu=info.get("NCPU"),
                mem_total_bytes=info.get("MemTotal"),
                operating_system=info.get("OperatingSystem"),
                kernel_version=info.get("KernelVersion"),
                warnings=list(info.get("Warnings") or []),
                engine_id=info.get("ID") or None,
                hostname=info.get("Name") or None,
                architecture=info.get("Architecture") or None,
                root_dir=info.get("DockerRootDir") or None,
            )
        return self._facts

    def cpus(self) -> list[int]:
        """CPU numbers a cpuset may name on the daemon's machine."""
        return list(range(self.facts().ncpu or 1))

    # ----------------------------------------------------------------- images
    def image(self, tag: str) -> ImageInfo | None:
        try:
            img = self.client.images.get(tag)
        except docker.errors.ImageNotFound:
            return None
        attrs = img.attrs
        cfg = attrs.get("Config") or {}
        digests = attrs.get("RepoDigests") or []
        return ImageInfo(tag=tag, id=img.id, digest=digests[0] if digests else None, labels=dict(img.labels or {}),
                         size_bytes=int(attrs.get("Size") or 0), created=attrs.get("Created"),
                         user=cfg.get("User") or None)

    def require_image(self, service: Service) -> ImageInfo:
        info = self.image(service.image)
        if info is None:
            raise ImageMissing(f"image {service.image} (compose service {service.name}) is not built",
                               fix=f"make images{' FLAVOUR=cuda' if service.flavour == 'cuda' else ''} (or: gdbench "
                                   f"images --build {service.name})")
        return info

    def build(self, service: Service, on_line: Callable[[str], None]) -> None:
        """Build a compose service's image with the classic builder (no compose plugin or BuildKit needed)."""
        if service.build is None:
            raise ImageMissing(f"compose service {service.name} has no build section", fix="add build: to it")
        b = service.build
        if not (b.context / b.dockerfile).is_file():
            raise ImageMissing(f"{b.context / b.dockerfile} does not exist (compose service {service.name})",
                               fix="check build.context and build.dockerfile in compose.yaml")
        try:
            for chunk in self.client.api.build(path=str(b.context), dockerfile=b.dockerfile, buildargs=b.args,
                                               tag=service.image, target=b.target, rm=True, forcerm=True,
                                               decode=True):
                if "error" in chunk:
                    detail = (chunk.get("errorDetail") or {}).get("message") or chunk["error"]
                    raise GdbenchError(f"building {service.image} failed: {detail.strip()}",
                                       fix="see the build log above; the context needs the locked wheels "
                                       "(make wheelhouse), or build with make images")
                text = chunk.get("stream") or chunk.get("status") or ""
                for line in text.splitlines():
                    if line.strip():
                        on_line(line.rstrip())
        except docker.errors.APIError as exc:
            raise GdbenchError(f"building {service.image} failed: {exc.explanation or exc}") from exc
        if self.image(service.image) is None:
            raise GdbenchError(f"build of {service.image} finished but the tag is missing")

    # ------------------------------------------------------------- containers
    def container_config(self, spec: RunSpec, image: ImageInfo, *, gpu: bool) -> dict[str, Any]:
        """Keyword arguments for ``containers.create``: the hardening lives here, in one place."""
        image_user = (image.user or "").strip()
        user = NOBODY if image_user in ("", "root", "0", "0:0", "root:root") else image_user
        env = {
            "GDBENCH_IMAGE_TAG": image.tag,
            "GDBENCH_IMAGE_DIGEST": image.digest or image.id,
            "GDBENCH_IMAGE_REVISION": image.labels.get("org.opencontainers.image.revision", ""),
            "GDBENCH_RUN_ID": spec.run_id,
            # Read-only rootfs: every cache a framework may want goes to the tmpfs.
            "HOME": "/tmp",
            "XDG_CACHE_HOME": "/tmp/.cache",
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        config: dict[str, Any] = {
            "image": image.id,
            "command": spec.solver_args(),
            "name": container_name(spec),
            "labels": {**spec.labels, labels.MANAGED: "1", labels.RUN: spec.run_id, labels.CONTAINER: spec.key},
            "environment": env,
            "user": user,
            "read_only": True,
            "tmpfs": dict(TMPFS),
            "cap_drop": ["ALL"],
            "security_opt": ["no-new-privileges:true"],
            "network_mode": "none",
            "mem_limit": spec.mem_limit,
            "memswap_limit": spec.mem_limit,  # no swap: an over-limit run is OOM-killed, not silently slowed
            "pids_limit": spec.pids_limit,
            "cpuset_cpus": format_cpuset(spec.cpuset),
            "log_config": docker.types.LogConfig(type="json-file", config={"max-size": "64m"}),
            "detach": True,
        }
        if gpu:
            config["device_requests"] = [gpu_request(spec.gpus, cdi=self.facts().use_cdi)]
            env["NVIDIA_DRIVER_CAPABILITIES"] = "compute,utility"
            if self.on_this_machine:  # what `gdbench gpu lock` recorded here describes this engine's GPUs
                from orchestrator.hosts.gpuclocks import record_env

                env.update(record_env())
        return config

    def create(self, spec: RunSpec, image: ImageInfo, *, gpu: bool) -> Any:
        config = self.container_config(spec, image, gpu=gpu)
        self._remove_stale(config["name"])
        try:
            return self.client.containers.create(**config)
        except docker.errors.APIError as exc:
            raise _classify(exc, spec) from exc

    def run(self, spec: RunSpec, image: ImageInfo, *, gpu: bool, on_line: Callable[[str], None]) -> ContainerResult:
        """Create, start, stream stderr lines to ``on_line``, enforce the timeout, collect, remove.

        Interrupts (KeyboardInterrupt, ``Interrupted``) propagate after the container is killed and removed.
        """
        result = ContainerResult(name=container_name(spec))
        t0 = time.perf_counter()
        try:
            container = self.create(spec, image, gpu=gpu)
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            raise self._lost(exc, spec) if _is_connection_loss(exc) else \
                GdbenchError(f"Docker error while creating {spec.key}: {exc}") from exc
        result.create_s = time.perf_counter() - t0
        stderr_lines: collections.deque[str] = collections.deque(maxlen=STDERR_KEEP_LINES)
        watchdog: threading.Timer | None = None
        try:
            t1 = time.perf_counter()
            try:
                container.start()
            except docker.errors.APIError as exc:
                raise _classify(exc, spec) from exc
            result.start_s = time.perf_counter() - t1
            result.user = self.client.api.inspect_container(container.id)["Config"].get("User")

            def on_timeout() -> None:
                result.timed_out = True
                self._kill_quietly(container)

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
            state = self.client.api.inspect_container(container.id)["State"]
            result.exit_code = int(status.get("StatusCode", state.get("ExitCode", -1)))
            result.oom_killed = bool(state.get("OOMKilled"))
            started, finished = _parse_ts(state.get("StartedAt")), _parse_ts(state.get("FinishedAt"))
            if started and finished:
                result.process_s = (finished - started).total_seconds()
            if started and first_ts:
                result.first_line_s = (first_ts - started).total_seconds()
            result.stdout = container.logs(stdout=True, stderr=False).decode("utf-8", errors="replace")
            result.stderr = "\n".join(stderr_lines)
            result.wall_s = time.perf_counter() - t0
            return result
        except GdbenchError:
            self._kill_quietly(container)
            raise
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            self._kill_quietly(container)
            if _is_connection_loss(exc):
                raise self._lost(exc, spec) from exc
            raise GdbenchError(f"Docker error while running {spec.key}: {exc}") from exc
        except BaseException:  # KeyboardInterrupt, Interrupted: the container must not outlive us
            self._kill_quietly(container)
            raise
        finally:
            if watchdog is not None:
                watchdog.cancel()
            t2 = time.perf_counter()
            self._remove_quietly(container)
            result.remove_s = time.perf_counter() - t2

    def _lost(self, exc: BaseException, spec: RunSpec) -> HostLost:
        first = str(exc).splitlines()[0][:200] if str(exc) else exc.__class__.__name__
        return HostLost(f"host {self.name} ({self.address}) stopped answering while {spec.key} ran: {first}",
                        fix="bring the engine back, then: gdbench run --resume RUN_DIR (reruns what is missing)")

    def _remove_stale(self, name: str) -> None:
        """A container of ours with this name survives only a killed orchestrator (e.g. before --resume)."""
        try:
            old = self.client.containers.get(name)
        except docker.errors.NotFound:
            return
        if old.labels.get(labels.MANAGED) == "1":
            self._remove_quietly(old)

    def _kill_quietly(self, container: Any) -> None:
        with contextlib.suppress(docker.errors.APIError, requests.exceptions.RequestException):
            container.kill()  # fails harmlessly when it already exited

    def _remove_quietly(self, container: Any) -> None:
        try:
            container.remove(force=True)
        except docker.errors.NotFound:
            pass
        except (docker.errors.APIError, requests.exceptions.RequestException):
            pass  # removal in progress; the label lets `gdbench doctor` find leftovers

    def managed_containers(self, run_id: str | None = None) -> list[dict[str, Any]]:
        """Containers gdbench labelled (optionally of one run), as {id, name, status, labels}."""
        wanted = [f"{labels.MANAGED}=1"] + ([f"{labels.RUN}={run_id}"] if run_id else [])
        out = []
        for c in self.client.containers.list(all=True, filters={"label": wanted}):
            out.append({"id": c.id, "name": c.name, "status": c.status, "labels": dict(c.labels)})
        return out

    def remove_containers(self, run_id: str | None = None) -> int:
        n = 0
        for c in self.managed_containers(run_id):
            try:
                self.client.containers.get(c["id"]).remove(force=True)
                n += 1
            except docker.errors.APIError:
                pass
        return n


def _cdi_gpus(info: dict[str, Any]) -> list[str]:
    """NVIDIA CDI devices: the daemon's own list when it reports one, else the spec files it reads (local daemon)."""
    found = [d.get("ID", "") for d in info.get("DiscoveredDevices") or [] if d.get("Source") == "cdi"]
    if not found:
        for directory in info.get("CDISpecDirs") or []:
            with contextlib.suppress(OSError):
                for spec_file in Path(directory).iterdir():
                    if spec_file.suffix in (".yaml", ".yml", ".json") and "nvidia" in spec_file.read_text()[:4096]:
                        found.append("nvidia.com/gpu=all")
    return sorted({d for d in found if d.startswith("nvidia.com/gpu")})


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
    ts = _parse_ts(stamp) if sep else None
    return (ts, text) if ts else (None, line)


class DockerBackend:
    """The ``Backend`` protocol over one Docker engine: compose images, hardened containers, the engine's facts."""

    name = "docker"
    reports_startup_overhead = True

    def __init__(self, engine: DockerEngine, compose: ComposeFile, gpus: gpuhost.HostGpus,
                 shipper: Shipper | None = None) -> None:
        self.engine = engine
        self.compose = compose
        self.gpus = gpus
        #: Where images come from when this engine lacks them: None for the local engine itself.
        self.shipper = shipper if shipper is not None and not shipper.same_engine(engine) else None
        self.compose_path = str(compose.path)
        self._images: dict[str, ImageInfo] = {}

    @property
    def on_this_machine(self) -> bool:
        return self.engine.on_this_machine

    @property
    def host(self) -> str:
        return self.engine.name

    def cpus(self) -> list[int]:
        return self.engine.cpus()

    def gpu_unavailable(self) -> str | None:
        facts = self.engine.facts()
        if facts.nvidia_runtime:
            return None
        runtimes = ", ".join(facts.runtimes) if facts.runtimes else "none"
        return (f"GPU requested but this Docker host has no NVIDIA runtime: docker info lists runtimes [{runtimes}] "
                "and no NVIDIA CDI devices; install the NVIDIA Container Toolkit (nvidia-ctk runtime configure "
                "--runtime=docker, then restart dockerd) or run with --devices cpu")

    def image_tag(self, framework: str, flavour: str, version: str | None = None) -> str:
        return self.compose.service_for(framework, flavour, version).image

    def framework_versions(self, framework: str, flavour: str, asked: str | None) -> list[str | None]:
        return self.compose.framework_versions(framework, flavour, asked)

    def prepare(self, item: Planned) -> None:
        """The image must be built; a CUDA image must not need a newer CUDA than the host driver offers."""
        service = self.compose.service_for(item.spec.framework, item.spec.flavour, item.spec.framework_version)
        if self.shipper is not None:
            from orchestrator.backends.docker.ship import ShipRefused

            try:
                item.image = self._images[service.image] = self.shipper.ensure(self.engine, service.image)
            except ShipRefused as exc:
                item.preflight = ("unavailable", exc.message + (f" — fix: {exc.fix}" if exc.fix else ""))
                return
        else:
            item.image = self._images[service.image] = self.engine.require_image(service)
        if item.gpu:
            why = gpuhost.cuda_incompatibility(service.image, item.image.cuda_version, self.gpus)
            if why:
                item.preflight = ("unavailable", why)

    def run(self, spec: RunSpec, on_line: Callable[[str], None]) -> ContainerResult:
        assert spec.image is not None and spec.image in self._images, "prepare() the item first"
        return self.engine.run(spec, self._images[spec.image], gpu=spec.device == "gpu", on_line=on_line)

    def host_record(self) -> dict[str, Any]:
        return backend.host_record(self.engine.facts().to_dict(), self.gpus, name=self.engine.name,
                                   on_this_machine=self.on_this_machine)

    def remove_run(self, run_id: str) -> None:
        with contextlib.suppress(Exception):
            self.engine.remove_containers(run_id)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.engine.client.close()
