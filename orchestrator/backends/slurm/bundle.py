"""``runtime = "oci"``: an OCI bundle made from a gdbench image, for Slurm's own ``srun --container`` (runc).

The bundle is the image's filesystem (``docker export`` of a container never started) and a config.json with the
same hardening as a Docker container where rootless runc can give it: read-only root with a tmpfs /tmp, a network
namespace with only loopback, no capabilities, no-new-privileges, and a user namespace that maps the container's
root to one unprivileged user outside (the job's own user; ``nobody`` when gdbench submits as root), so nothing
runs as root on the node. Memory and pids limits need cgroup delegation that rootless runc does not get here: the
job's own cgroup (``mem`` in the host's table) bounds the container instead, and the document says so.

A bundle lives in ``image_dir`` (a directory every node can read) under the image id, with ``IMAGE`` beside it:
the image's tag, id and digest, checked against this machine's image before every sweep, like the Docker fleet's
image-id check.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import os
import shutil
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.errors import GdbenchError

if TYPE_CHECKING:
    from orchestrator.backends.docker.engine import DockerEngine

NOBODY = 65534
#: What the config.json says about limits (recorded in each row's host record).
LIMITS = "rootless runc: no cgroup of its own; the Slurm job's cgroup (--mem) bounds it"


@dataclass(frozen=True)
class Bundle:
    path: Path
    image_id: str
    env: list[str]
    entrypoint: list[str]
    workdir: str


def bundle_user() -> tuple[int, int]:
    """Who the container's root is outside: the submitting user, or nobody when that is root."""
    uid, gid = os.getuid(), os.getgid()
    return (NOBODY, NOBODY) if uid == 0 else (uid, gid)


def ensure_bundle(engine: DockerEngine, image_dir: Path, tag: str) -> Bundle:
    """The bundle of this machine's ``tag`` in ``image_dir``, made once per image id (rootfs + config.json +
    IMAGE)."""
    uid, gid = bundle_user()
    image = engine.client.images.get(tag)
    image_id, config = image.id, image.attrs.get("Config") or {}
    path = image_dir / "oci" / f"{image_id.removeprefix('sha256:')[:24]}-u{uid}"
    env = list(config.get("Env") or [])
    entrypoint = list(config.get("Entrypoint") or [])
    workdir = config.get("WorkingDir") or "/"
    stamp = path / "IMAGE"
    (image_dir / "oci").mkdir(parents=True, exist_ok=True)
    with _locked(image_dir / "oci" / ".lock"):  # hosts of one sweep (and other sweeps) share the bundles
        if not (stamp.is_file() and json.loads(stamp.read_text()).get("id") == image_id):
            _make(engine, path, tag, image_id, uid, gid, workdir)
    return Bundle(path, image_id, env, entrypoint, workdir)


@contextlib.contextmanager
def _locked(lock: Path) -> Iterator[None]:
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _make(engine: DockerEngine, path: Path, tag: str, image_id: str, uid: int, gid: int, workdir: str) -> None:
    image_dir = path.parent.parent
    partial = path.with_name(path.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    (partial / "rootfs").mkdir(parents=True)
    try:
        _export(engine, tag, partial / "rootfs")
        (partial / "config.json").write_text(json.dumps(runtime_config(uid, gid, workdir), indent=1))
        (partial / "IMAGE").write_text(json.dumps({"tag": tag, "id": image_id}) + "\n")
        for p in (image_dir / "oci", partial):
            p.chmod(0o755)
        shutil.rmtree(path, ignore_errors=True)
        partial.rename(path)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise


def _export(engine: DockerEngine, tag: str, rootfs: Path) -> None:
    """A container created (never started) and exported into ``rootfs``; the container is removed after."""
    container = engine.client.containers.create(tag, command=["true"])
    try:
        stream = io.BufferedReader(_ChunkReader(container.export()), buffer_size=1 << 20)
        with tarfile.open(fileobj=stream, mode="r|") as tar:
            # This machine's own image, built from its locks: absolute symlinks (dev/fd → /proc/self/fd) are
            # part of any root filesystem, so the "tar" filter's refusal of them does not apply.
            tar.extractall(rootfs, filter="fully_trusted")
    except (OSError, tarfile.TarError) as exc:
        raise GdbenchError(f"cannot make an OCI bundle of {tag}: {exc}") from exc
    finally:
        container.remove(force=True)


class _ChunkReader(io.RawIOBase):
    """A file-like reader over the SDK's chunk iterator (what tarfile's stream mode reads)."""

    def __init__(self, chunks: Any) -> None:
        super().__init__()
        self._chunks = iter(chunks)
        self._buf = b""

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        while not self._buf:
            try:
                self._buf = next(self._chunks)
            except StopIteration:
                return 0
        n = min(len(b), len(self._buf))
        b[:n], self._buf = self._buf[:n], self._buf[n:]
        return n


def runtime_config(uid: int, gid: int, workdir: str) -> dict[str, Any]:
    """config.json for rootless runc: Slurm replaces args, env and cwd per step; the rest is the hardening."""
    return {
        "ociVersion": "1.0.2-dev",
        "process": {"terminal": False, "user": {"uid": 0, "gid": 0}, "args": ["true"], "env": [], "cwd": workdir,
                    "capabilities": {k: [] for k in ("bounding", "effective", "permitted", "ambient")},
                    "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}], "noNewPrivileges": True},
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "gdbench",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            # The only writable path, as in the Docker container (exec: JIT caches load from there).
            {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "nodev", "mode=1777", "size=512m"]},
            {"destination": "/sys", "type": "none", "source": "/sys", "options": ["rbind", "nosuid", "noexec", "nodev",
                                                                               "ro"]},
        ],
        "linux": {
            "uidMappings": [{"containerID": 0, "hostID": uid, "size": 1}],
            "gidMappings": [{"containerID": 0, "hostID": gid, "size": 1}],
            # A network namespace of its own: only loopback, as Docker's --network none.
            "namespaces": [{"type": t} for t in ("pid", "ipc", "uts", "mount", "user", "network")],
            "maskedPaths": ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                            "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware",
                            "/proc/scsi"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"],
        },
    }
