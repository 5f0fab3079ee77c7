"""The hosts a sweep may run on: ``hosts.toml``, one ``[hosts.NAME]`` table per Docker engine.

Engines are addressed the way Docker itself addresses them — a ``DOCKER_HOST``-style URL (``unix://``,
``tcp://``, ``ssh://``), a Docker context name, and for TLS a ``cert_path`` directory holding Docker's
``ca.pem``, ``cert.pem`` and ``key.pem`` — so an inventory is what a user's ``docker -H``/``docker context``
already knows. Everything is checked when the file is read, before any engine is contacted: a bad table is
one line naming the host, the key and the fix. Without a hosts file there is one host, ``local``: the engine
the environment names (``DOCKER_HOST``, ``DOCKER_TLS_VERIFY``, ``DOCKER_CERT_PATH``), as ``docker`` uses.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import ssl
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.errors import InvalidOptions

DEFAULT_FILE = "hosts.toml"
LOCAL = "local"
CERT_FILES = ("ca.pem", "cert.pem", "key.pem")
SCHEMES = ("unix", "tcp", "ssh")
KEYS = {"url", "context", "cert_path", "cpuset", "threads", "gpus", "insecure"}
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")


class InventoryError(InvalidOptions):
    """A hosts file (or a ``--hosts`` choice) that cannot be used as written."""


@dataclass(frozen=True)
class Tls:
    """Client TLS material for one tcp:// engine, in Docker's file layout."""

    ca: Path
    cert: Path
    key: Path


@dataclass(frozen=True)
class HostEntry:
    """One engine of the inventory, checked; ``url`` None means "the environment's engine" (``local``)."""

    name: str
    url: str | None = None
    context: str | None = None
    tls: Tls | None = None
    insecure: bool = False
    cpuset: list[int] | None = None
    threads: int | None = None
    gpus: list[str] = field(default_factory=list)

    @property
    def address(self) -> str:
        """How a line names the engine: its URL, its context, or the environment."""
        if self.context:
            return f"context {self.context}" + (f" ({self.url})" if self.url else "")
        return self.url or os.environ.get("DOCKER_HOST") or "the local engine"

    def warning(self) -> str | None:
        """The line every run prints for an engine reached without TLS over the network."""
        if self.insecure and self.url and self.url.startswith("tcp://"):
            return (f"warning: host {self.name}: {self.url} is plain TCP without TLS (insecure = true): anyone on "
                    "that network can drive this engine")
        return None


def local_host() -> HostEntry:
    return HostEntry(name=LOCAL)


def load(path: str | Path | None = None) -> dict[str, HostEntry]:
    """The inventory in file order: ``--hosts-file`` (must exist), else ``./hosts.toml`` if present, else ``local``."""
    explicit = path is not None
    file = Path(path) if explicit else Path(DEFAULT_FILE)
    if not file.is_file():
        if explicit:
            raise InventoryError(f"hosts file {file} does not exist",
                                 fix=f"write one [hosts.NAME] table per engine in {file}, or drop --hosts-file")
        return {LOCAL: local_host()}
    try:
        raw = tomllib.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise InventoryError(f"cannot read hosts file {file}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise InventoryError(f"{file}: not valid TOML ({exc})", fix=f"fix the syntax of {file}") from None
    return parse(raw, base=file.parent, source=str(file))


def parse(raw: dict[str, Any], *, base: Path, source: str) -> dict[str, HostEntry]:
    extra = sorted(set(raw) - {"hosts"})
    if extra:
        raise InventoryError(f"{source}: unknown top-level key(s) {', '.join(extra)}; only [hosts.NAME] tables")
    tables = raw.get("hosts")
    if not isinstance(tables, dict) or not tables:
        raise InventoryError(f"{source} defines no hosts", fix='add e.g. [hosts.gpu1] with url = "ssh://me@gpu1"')
    hosts: dict[str, HostEntry] = {}
    for name, table in tables.items():
        hosts[name] = _entry(name, table, base, source)
    return hosts


def _entry(name: str, table: Any, base: Path, source: str) -> HostEntry:
    where = f"{source}: host {name}"
    if not _NAME.fullmatch(name) or name == "all":
        raise InventoryError(f"{where}: a host name is letters, digits, '.', '_' or '-' (and not 'all')")
    if not isinstance(table, dict):
        raise InventoryError(f"{where}: must be a table ([hosts.{name}])")
    unknown = sorted(set(table) - KEYS)
    if unknown:
        raise InventoryError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(KEYS))}")
    url, context = table.get("url"), table.get("context")
    if (url is None) == (context is None):
        raise InventoryError(f"{where}: give exactly one of url = \"tcp://…\" / \"ssh://…\" / \"unix://…\" "
                             "or context = \"NAME\"")
    for key in ("url", "context", "cert_path"):
        if key in table and not (isinstance(table[key], str) and table[key].strip()):
            raise InventoryError(f"{where}: {key} must be a non-empty string")
    insecure = table.get("insecure", False)
    if not isinstance(insecure, bool):
        raise InventoryError(f"{where}: insecure must be true or false")
    tls = None
    if url is not None:
        scheme = url.partition("://")[0] if "://" in url else ""
        if scheme not in SCHEMES:
            raise InventoryError(f"{where}: url {url!r} must start with {', '.join(s + '://' for s in SCHEMES)}")
        if "cert_path" in table:
            if scheme != "tcp":
                raise InventoryError(f"{where}: cert_path applies to tcp:// only ({scheme}:// brings its own security)")
            tls = check_certs(Path(os.path.expanduser(table["cert_path"])), base, where)
        elif scheme == "tcp" and not insecure:
            raise InventoryError(f"{where}: {url} without TLS is refused",
                                 fix="set cert_path = DIR (with ca.pem, cert.pem, key.pem), or insecure = true "
                                     "to accept an unauthenticated engine")
    elif "cert_path" in table:
        raise InventoryError(f"{where}: a context carries its own TLS; drop cert_path")
    return HostEntry(name=name, url=url, context=context, tls=tls, insecure=insecure,
                     cpuset=_cpuset(table.get("cpuset"), where), threads=_threads(table.get("threads"), where),
                     gpus=_gpus(table.get("gpus"), where))


def check_certs(folder: Path, base: Path, where: str) -> Tls:
    """Docker's three PEM files, present, parseable, the key matching the certificate, not expired."""
    folder = folder if folder.is_absolute() else base / folder
    if not folder.is_dir():
        raise InventoryError(f"{where}: cert_path {folder} is not a directory",
                             fix="point cert_path at the directory holding ca.pem, cert.pem and key.pem")
    missing = [f for f in CERT_FILES if not (folder / f).is_file()]
    if missing:
        raise InventoryError(f"{where}: cert_path {folder} lacks {', '.join(missing)}",
                             fix="copy the client certificate files there (Docker's layout: ca.pem, cert.pem, key.pem)")
    tls = Tls(ca=folder / "ca.pem", cert=folder / "cert.pem", key=folder / "key.pem")
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    try:
        ctx.load_verify_locations(cafile=str(tls.ca))
    except (ssl.SSLError, OSError) as exc:
        raise InventoryError(f"{where}: {tls.ca} is not a usable CA certificate "
                             f"({exc.__class__.__name__}: {exc})") from None
    try:
        ctx.load_cert_chain(certfile=str(tls.cert), keyfile=str(tls.key))
    except (ssl.SSLError, OSError) as exc:
        raise InventoryError(f"{where}: {tls.cert} and {tls.key} are not a matching certificate and key "
                             f"({exc.__class__.__name__}: {exc})") from None
    expires = certificate_expiry(tls.cert)
    if expires is not None and expires <= dt.datetime.now(dt.UTC):
        raise InventoryError(f"{where}: client certificate {tls.cert} expired on {expires:%Y-%m-%d %H:%M} UTC",
                             fix="issue a new client certificate for this engine")
    return tls


def certificate_expiry(cert: Path) -> dt.datetime | None:
    """notAfter of a PEM certificate, or None where this Python cannot decode it without a TLS peer."""
    decode = getattr(getattr(ssl, "_ssl", None), "_test_decode_cert", None)  # CPython's own PEM decoder
    if decode is None:
        return None
    try:
        not_after = decode(str(cert))["notAfter"]
    except (ssl.SSLError, OSError, KeyError, ValueError):
        return None
    return dt.datetime.fromtimestamp(ssl.cert_time_to_seconds(not_after), dt.UTC)


def _cpuset(value: Any, where: str) -> list[int] | None:
    if value is None:
        return None
    from orchestrator.sweep.spec import parse_cpuset

    if isinstance(value, list) and all(isinstance(v, int) and v >= 0 for v in value) and value:
        return sorted(set(value))
    if isinstance(value, str):
        try:
            return parse_cpuset(value)
        except InvalidOptions as exc:
            raise InventoryError(f"{where}: cpuset: {exc.message}") from None
    raise InventoryError(f"{where}: cpuset must be a string like \"0-3,6\" or a list of CPU numbers")


def _threads(value: Any, where: str) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise InventoryError(f"{where}: threads must be a positive integer, got {value!r}")
    return value


def _gpus(value: Any, where: str) -> list[str]:
    if value is None:
        return []
    items = [value] if isinstance(value, (int, str)) and not isinstance(value, bool) else value
    if not isinstance(items, list) or not items or not all(
            (isinstance(g, int) and not isinstance(g, bool) and g >= 0) or (isinstance(g, str) and g.strip())
            for g in items):
        raise InventoryError(f"{where}: gpus must be GPU indices or UUIDs, e.g. gpus = [0] or gpus = [\"GPU-…\"]")
    return [str(g).strip() for g in items]


def select(hosts: dict[str, HostEntry], text: str | None) -> list[HostEntry]:
    """``--hosts a,b`` (or ``all``) against the inventory. Without ``--hosts`` a sweep runs where it always
    has: the file's ``local`` table if it has one, else the environment's engine — a fleet never runs by
    accident because a hosts file lies in the current directory."""
    if text is None or not text.strip():
        return [hosts.get(LOCAL, local_host())]
    if text.strip() == "all":
        return list(hosts.values())
    names = list(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    known = {**hosts, LOCAL: hosts.get(LOCAL, local_host())}
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise InventoryError(f"unknown host(s) {', '.join(unknown) or repr(text)}; the inventory has "
                             f"{', '.join(known)}", fix="add a [hosts.NAME] table to the hosts file")
    return [known[n] for n in names]
