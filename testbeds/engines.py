"""Extra real Docker engines for tests: each its own dockerd, data-root, exec-root, pidfile, socket and netns.

A fleet test needs engines other than the machine's own. Each ``Engine`` here is a real dockerd started
as root in a network namespace of its own (held by a ``sleep`` started with ``unshare -n``; ``ip netns exec``
would break dockerd's cgroups), with no bridge and no iptables rules (gdbench's containers have no network),
reachable on a unix socket and, when asked, on TCP with TLS over a veth pair into that namespace. It is
stopped by pid and everything it made is removed, also when the test fails. Certificates are real ones
made by openssl: a CA, a server certificate for the engine's address, client certificates (one expired).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

_SEQ = itertools.count(1)


def _run(*cmd: str, cwd: Path | None = None) -> str:
    return subprocess.run(cmd, cwd=cwd, check=True, capture_output=True, text=True).stdout


@dataclass
class Pki:
    """A test CA in ``root`` and the certificates it signed; ``client(name)`` is a Docker cert_path folder."""

    root: Path

    @classmethod
    def create(cls, root: Path) -> Pki:
        root.mkdir(parents=True, exist_ok=True)
        (root / "ca.cnf").write_text(
            "[ca]\ndefault_ca = t\n[t]\ndatabase = index.txt\nnew_certs_dir = .\nserial = serial\npolicy = p\n"
            "default_md = sha256\ncopy_extensions = copy\n[p]\ncommonName = supplied\n")
        (root / "index.txt").write_text("")
        (root / "serial").write_text("01\n")
        _run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca-key.pem", "-out", "ca.pem",
             "-days", "3", "-subj", "/CN=gdbench-test-ca", cwd=root)
        return cls(root)

    def _sign(self, name: str, *, days: tuple[int, int], san: str | None = None, usage: str) -> tuple[Path, Path]:
        now = dt.datetime.now(dt.UTC)
        ext = ["-addext", f"extendedKeyUsage={usage}"] + (["-addext", f"subjectAltName={san}"] if san else [])
        _run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}-key.pem", "-out", f"{name}.csr",
             "-subj", f"/CN={name}", *ext, cwd=self.root)
        _run("openssl", "ca", "-batch", "-config", "ca.cnf", "-cert", "ca.pem", "-keyfile", "ca-key.pem", "-notext",
             "-in", f"{name}.csr", "-out", f"{name}.pem",
             "-startdate", (now + dt.timedelta(days=days[0])).strftime("%Y%m%d%H%M%SZ"),
             "-enddate", (now + dt.timedelta(days=days[1])).strftime("%Y%m%d%H%M%SZ"), cwd=self.root)
        return self.root / f"{name}.pem", self.root / f"{name}-key.pem"

    def server(self, name: str, ip: str) -> tuple[Path, Path]:
        return self._sign(name, days=(-1, 2), san=f"IP:{ip}", usage="serverAuth")

    def client(self, name: str, *, expired: bool = False) -> Path:
        """A folder in Docker's layout (ca.pem, cert.pem, key.pem) for a client certificate."""
        cert, key = self._sign(name, days=(-3, -1) if expired else (-1, 2), usage="clientAuth")
        folder = self.root / f"client-{name}"
        folder.mkdir()
        shutil.copy(self.root / "ca.pem", folder / "ca.pem")
        shutil.copy(cert, folder / "cert.pem")
        shutil.copy(key, folder / "key.pem")
        return folder


@dataclass
class Engine:
    """One extra dockerd. ``socket_url`` always; ``tcp_url`` when started with TLS."""

    workdir: Path
    index: int
    socket_url: str = ""
    tcp_url: str | None = None
    pid: int | None = None
    _holder: subprocess.Popen | None = None
    _daemon: subprocess.Popen | None = None
    _veth: str | None = None
    _cmd: list[str] = field(default_factory=list)
    _log: Path = field(init=False)

    def __post_init__(self) -> None:
        self._log = self.workdir / "dockerd.log"

    @property
    def ip(self) -> str:
        # The engine's end of its own veth pair, in a namespace this test made (one /30 per engine).
        return f"10.231.{self.index}.2"

    def start(self, pki: Pki | None = None, timeout_s: float = 60) -> Engine:
        for sub in ("data", "exec"):
            (self.workdir / sub).mkdir(parents=True, exist_ok=True)
        sock = self.workdir / "docker.sock"
        self.socket_url = f"unix://{sock}"
        self._holder = subprocess.Popen(["unshare", "-n", "sleep", "infinity"], start_new_session=True)
        netns = f"/proc/{self._holder.pid}/ns/net"
        self._wait_for_own_netns(netns)
        listen = ["-H", self.socket_url]
        if pki is not None:
            self._veth = f"gdbt{os.getpid() % 10000}x{self.index}"
            _run("ip", "link", "add", self._veth, "type", "veth", "peer", "name", "eth-gdb")
            _run("ip", "link", "set", "eth-gdb", "netns", str(self._holder.pid))
            _run("ip", "addr", "add", f"10.231.{self.index}.1/30", "dev", self._veth)
            _run("ip", "link", "set", self._veth, "up")
            for cmd in (["ip", "addr", "add", f"{self.ip}/30", "dev", "eth-gdb"],
                        ["ip", "link", "set", "eth-gdb", "up"], ["ip", "link", "set", "lo", "up"]):
                _run("nsenter", f"--net={netns}", *cmd)
            cert, key = pki.server(f"engine{self.index}", self.ip)
            self.tcp_url = f"tcp://{self.ip}:2376"
            listen += ["-H", self.tcp_url, "--tlsverify", "--tlscacert", str(pki.root / "ca.pem"),
                       "--tlscert", str(cert), "--tlskey", str(key)]
        self._cmd = ["nsenter", f"--net={netns}", "dockerd", "--data-root", str(self.workdir / "data"),
                     "--exec-root", str(self.workdir / "exec"), "--pidfile", str(self.workdir / "docker.pid"),
                     "--bridge", "none", "--iptables=false", "--ip6tables=false", *listen]
        return self._spawn(timeout_s)

    def restart(self, timeout_s: float = 60) -> Engine:
        """Start dockerd again after ``kill`` (same data-root, namespace and addresses): the host is back."""
        if self._daemon is not None:
            self._daemon.wait()
        return self._spawn(timeout_s)

    def _spawn(self, timeout_s: float) -> Engine:
        with open(self._log, "a") as log:
            proc = subprocess.Popen(self._cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.pid, self._daemon = proc.pid, proc
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                break
            if subprocess.run(["docker", "-H", self.socket_url, "info"], capture_output=True).returncode == 0:
                return self
            time.sleep(0.5)
        tail = self._log.read_text()[-2000:]
        self.stop()
        raise RuntimeError(f"test engine {self.index} did not start:\n{tail}")

    def _wait_for_own_netns(self, netns: str, timeout_s: float = 10) -> None:
        """Block until the holder really is in a new network namespace.

        ``unshare`` unshares only after it starts: right after Popen, /proc/PID/ns/net can still be this
        machine's own namespace. A dockerd entered there with ``--bridge none`` deletes the machine's docker0
        at start (that is what ``none`` means to it), which breaks every other engine's default network.
        """
        ours = os.readlink("/proc/self/ns/net")
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                if os.readlink(netns) != ours:
                    return
            except FileNotFoundError:
                break
            time.sleep(0.01)
        self.stop()
        raise RuntimeError(f"test engine {self.index}: its network namespace never came up")

    def kill(self) -> None:
        """Kill dockerd abruptly (a host lost mid-sweep); ``stop`` still cleans up afterwards."""
        if self.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)

    def stop(self) -> None:
        """Stop dockerd by pid (and its containerd with it), then remove its namespace, veth and files."""
        if self._daemon is not None:
            with contextlib.suppress(ProcessLookupError):
                self._daemon.send_signal(signal.SIGTERM)
            try:
                self._daemon.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._daemon.kill()
                self._daemon.wait()
            self._daemon = None
        # Whatever dockerd left running under its exec-root (containerd, shims) goes too.
        for line in subprocess.run(["pgrep", "-f", str(self.workdir / "exec")], capture_output=True,
                                   text=True).stdout.split():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(line), signal.SIGKILL)
        if self._holder is not None:
            self._holder.kill()
            self._holder.wait()
            self._holder = None
        if self._veth:
            subprocess.run(["ip", "link", "del", self._veth], capture_output=True)
            self._veth = None
        for mount in sorted((m.split()[1] for m in Path("/proc/mounts").read_text().splitlines()
                             if m.split()[1].startswith(str(self.workdir))), reverse=True):
            subprocess.run(["umount", "-l", mount], capture_output=True)
        shutil.rmtree(self.workdir, ignore_errors=True)


@contextlib.contextmanager
def engines(count: int, *, pki: Pki | None = None) -> Iterator[list[Engine]]:
    """``count`` extra engines, all stopped and removed on the way out, whatever happened.

    Each lives in a short folder of its own under /tmp: containerd's socket sits deep inside the exec-root
    and a unix socket path may not exceed 107 bytes, which pytest's tmp_path would.
    """
    import tempfile

    started: list[Engine] = []
    try:
        for _ in range(count):
            index = (os.getpid() + next(_SEQ)) % 250 + 1
            engine = Engine(workdir=Path(tempfile.mkdtemp(prefix=f"gdbe{index}.", dir="/tmp")), index=index)
            started.append(engine)
            engine.start(pki)
        yield started
    finally:
        for engine in started:
            engine.stop()
