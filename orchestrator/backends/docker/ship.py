"""Images reach the hosts of a fleet without a registry: streamed from this machine's engine into theirs.

The source of truth is the local engine's image under the compose tag. A host that lacks it, or holds
another id under that tag, gets it by ``docker save`` → ``docker load`` streamed chunk by chunk over the two
API connections (no temporary file, nothing held in memory beyond a chunk), and the id it ends up with
must equal the local one — otherwise the host would time a different image than the one recorded. A host
whose CPU architecture differs from the image's is refused before a byte moves. With ``--registry REPO``
the image is pushed there once and each host pulls it (for users with a registry; the same id check holds).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import docker.errors
import requests.exceptions

from orchestrator.backends.docker.engine import DockerEngine, ImageInfo
from orchestrator.errors import GdbenchError, ImageMissing

#: uname's machine names → the architectures image configs carry (``docker image inspect -f {{.Architecture}}``).
ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64", "armv7l": "arm",
        "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}
CHUNK_BYTES = 1 << 20


class ShipRefused(GdbenchError):
    """An image that cannot run on (or reach) a host: that host's containers are ``unavailable``."""


@dataclass(frozen=True)
class Shipped:
    tag: str
    host: str
    how: str  # "present", "streamed", "registry"
    bytes: int = 0
    seconds: float = 0.0

    def line(self) -> str:
        if self.how == "present":
            return f"{self.host}: {self.tag} already there (same id)"
        rate = self.bytes / self.seconds / 1e6 if self.seconds > 0 else 0.0
        return (f"{self.host}: shipped {self.tag} ({self.how}): {self.bytes / 1e6:.1f} MB in {self.seconds:.1f} s "
                f"({rate:.1f} MB/s)")


def image_architecture(engine: DockerEngine, tag: str) -> str | None:
    try:
        return engine.client.api.inspect_image(tag).get("Architecture") or None
    except docker.errors.ImageNotFound:
        return None


class Shipper:
    """Ships images from ``source`` (this machine's engine) to the other hosts; one per sweep."""

    def __init__(self, source: DockerEngine, registry: str | None = None,
                 note: Callable[[str], None] = lambda _line: None) -> None:
        self.source = source
        self.registry = registry.rstrip("/") if registry else None
        self.note = note
        self._pushed: set[str] = set()
        self._lock = threading.Lock()

    def same_engine(self, target: DockerEngine) -> bool:
        """The same daemon: its ID alone is not enough (engines sharing /etc/docker/key.json share it)."""
        a, b = self.source.facts(), target.facts()
        return a.engine_id is not None and (a.engine_id, a.root_dir, a.hostname) == (b.engine_id, b.root_dir,
                                                                                     b.hostname)

    def ensure(self, target: DockerEngine, tag: str) -> ImageInfo:
        """The image under ``tag`` on ``target`` with the local id, shipping it if needed."""
        local = self.source.image(tag)
        if local is None:
            raise ImageMissing(f"image {tag} is not built on this machine, so it cannot be shipped to "
                               f"host {target.name}", fix=f"make images (or: gdbench images build FRAMEWORK for {tag})")
        there = target.image(tag)
        if there is not None and there.id == local.id:
            return there
        want = ARCH.get(target.facts().architecture or "", target.facts().architecture)
        have = image_architecture(self.source, tag)
        if want and have and want != have:
            raise ShipRefused(f"host {target.name} is {target.facts().architecture} but image {tag} is built for "
                              f"{have}; it cannot run there",
                              fix=f"build the image on {target.name} (or a {want} image), or leave the host out")
        shipped = self._via_registry(target, tag) if self.registry else self._stream(target, tag)
        now = target.image(tag)
        if now is None or now.id != local.id:
            raise ShipRefused(f"host {target.name}: after {shipped.how} shipping, {tag} has id "
                              f"{now.id if now else 'none'}, not the local {local.id}",
                              fix=f"remove the tag on {target.name} (docker rmi {tag}) and run again")
        self.note(shipped.line())
        return now

    def _stream(self, target: DockerEngine, tag: str) -> Shipped:
        sent = [0]

        def chunks() -> Iterator[bytes]:
            for chunk in self.source.client.api.get_image(tag, chunk_size=CHUNK_BYTES):
                sent[0] += len(chunk)
                yield chunk

        t0 = time.perf_counter()
        try:
            for message in target.client.api.load_image(chunks()):
                if isinstance(message, dict) and message.get("error"):
                    raise ShipRefused(f"host {target.name} could not load {tag}: {message['error']}")
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            raise ShipRefused(f"shipping {tag} to host {target.name} failed after {sent[0] / 1e6:.1f} MB: "
                              f"{str(exc).splitlines()[0][:300]}") from exc
        return Shipped(tag, target.name, "streamed", sent[0], time.perf_counter() - t0)

    def _via_registry(self, target: DockerEngine, tag: str) -> Shipped:
        """Push ``tag`` once as ``REPO/name:tag``, pull it on the host and tag it as the compose tag."""
        name, _, version = tag.rpartition(":")
        remote = f"{self.registry}/{name.rpartition('/')[2]}"
        t0 = time.perf_counter()
        try:
            with self._lock:
                if tag not in self._pushed:
                    self.source.client.images.get(tag).tag(remote, version)
                    for message in self.source.client.api.push(remote, tag=version, stream=True, decode=True):
                        if message.get("error"):
                            raise ShipRefused(f"pushing {tag} to {self.registry} failed: {message['error']}",
                                              fix=f"docker login {self.registry.split('/')[0]}")
                    self._pushed.add(tag)
            target.client.images.pull(remote, tag=version)
            target.client.images.get(f"{remote}:{version}").tag(name, version)
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            raise ShipRefused(f"host {target.name}: getting {tag} through {self.registry} failed: "
                              f"{str(exc).splitlines()[0][:300]}",
                              fix="check that the host can reach the registry and is logged in") from exc
        size = (target.image(tag).size_bytes if target.image(tag) else 0)
        return Shipped(tag, target.name, "registry", size, time.perf_counter() - t0)
