"""One connected Docker engine: its facts, its images and builds, and the containers gdbench labelled.

Where Docker is talked to (docker SDK for Python), with connect.py (reaching an engine), container.py (one
hardened container's life) and ship.py (moving images between engines); everything else sees typed results.
Several engines may exist at once; nothing is kept at module level.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import docker
import docker.errors
import docker.tls
import requests.exceptions

from orchestrator import labels
from orchestrator.errors import DockerUnavailable, GdbenchError, ImageMissing
from orchestrator.images.compose import Service

if TYPE_CHECKING:
    from orchestrator.backends.docker.settings import Settings
    from orchestrator.backends.registry import OpenContext


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


def parse_ts(text: str | None) -> dt.datetime | None:
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
    def for_host(cls, name: str, settings: Settings, timeout: int = 120) -> DockerEngine:
        """Connect to one host's engine and ping it; any failure is one line naming the host (and, for TLS,
        the certificate problem)."""
        from orchestrator.backends.docker import connect

        if settings.url is None and settings.context is None:
            engine = cls.connect(settings.docker_host, timeout=timeout)
            engine.name = name
            return engine
        try:
            client = connect.docker_client(name, settings, timeout=timeout)
            client.ping()
        except (docker.errors.DockerException, requests.exceptions.RequestException, OSError) as exc:
            raise connect.connect_failure(name, settings, exc, _connection_fix(exc)) from exc
        engine = cls(client, name)
        engine.address = settings.address
        return engine

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.close()

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
                                   f"images build {service.name})")
        return info

    # ------------------------------------------------------------- containers

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


def local_engine(context: OpenContext) -> DockerEngine | None:
    """This machine's engine, once per sweep or check (where images are built, and what their ids are checked
    against); None where it does not answer."""

    def connect() -> DockerEngine | None:
        try:
            return DockerEngine.connect()
        except GdbenchError:
            return None

    return context.shared("docker-local-engine", connect)
