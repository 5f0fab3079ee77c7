"""A Docker host's own keys: how to reach its engine, the way Docker itself addresses engines.

A ``DOCKER_HOST``-style URL (``unix://``, ``tcp://``, ``ssh://``), a Docker context name, and for TLS a
``cert_path`` directory holding Docker's ``ca.pem``, ``cert.pem`` and ``key.pem`` — so an inventory is what a
user's ``docker -H``/``docker context`` already knows. Everything is checked when the file is read, before
any engine is contacted. No url and no context: the engine the environment names (``DOCKER_HOST``…).
"""

from __future__ import annotations

import datetime as dt
import os
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.errors import InventoryError

CERT_FILES = ("ca.pem", "cert.pem", "key.pem")
SCHEMES = ("unix", "tcp", "ssh")
KEYS = ("url", "context", "cert_path", "insecure")


@dataclass(frozen=True)
class Tls:
    """Client TLS material for one tcp:// engine, in Docker's file layout."""

    ca: Path
    cert: Path
    key: Path


@dataclass(frozen=True)
class Settings:
    """One Docker engine's address, checked; ``url`` and ``context`` None mean "the environment's engine"."""

    url: str | None = None
    context: str | None = None
    tls: Tls | None = None
    insecure: bool = False
    #: ``--docker-host`` (or ``DOCKER_HOST``) for a run without an inventory: the environment's engine, there.
    docker_host: str | None = None

    @property
    def address(self) -> str:
        """How a line names the engine: its URL, its context, or the environment."""
        if self.context:
            return f"context {self.context}" + (f" ({self.url})" if self.url else "")
        return self.url or self.docker_host or os.environ.get("DOCKER_HOST") or "the local engine"

    def warning(self, name: str) -> str | None:
        """The line every run prints for an engine reached without TLS over the network."""
        if self.insecure and self.url and self.url.startswith("tcp://"):
            return (f"warning: host {name}: {self.url} is plain TCP without TLS (insecure = true): anyone on "
                    "that network can drive this engine")
        return None

    def to_dict(self) -> dict[str, Any]:
        return {"url": self.url, "context": self.context, "cert_path": str(self.tls.ca.parent) if self.tls else None,
                "insecure": self.insecure}

    @classmethod
    def parse(cls, table: dict[str, Any], *, where: str, base: Path) -> Settings:
        """A hosts.toml table (or ``--backend-opt`` pairs) of a docker host; an empty one is the environment's
        engine, which a hosts file must name explicitly (``url`` or ``context``)."""
        unknown = sorted(set(table) - set(KEYS))
        if unknown:
            raise InventoryError(f"{where}: unknown key(s) {', '.join(unknown)}; a docker host knows "
                                 f"{', '.join(KEYS)} (and the common kind, cpuset, threads, gpus)")
        if not table:
            return cls()
        url, context = table.get("url"), table.get("context")
        if (url is None) == (context is None):
            raise InventoryError(f"{where}: give exactly one of url = \"tcp://…\" / \"ssh://…\" / \"unix://…\" "
                                 "or context = \"NAME\"")
        for key in ("url", "context", "cert_path"):
            if key in table and not (isinstance(table[key], str) and table[key].strip()):
                raise InventoryError(f"{where}: {key} must be a non-empty string")
        insecure = table.get("insecure", False)
        if isinstance(insecure, str) and insecure in ("true", "false"):  # --backend-opt insecure=true
            insecure = insecure == "true"
        if not isinstance(insecure, bool):
            raise InventoryError(f"{where}: insecure must be true or false")
        tls = None
        if url is not None:
            scheme = url.partition("://")[0] if "://" in url else ""
            if scheme not in SCHEMES:
                raise InventoryError(f"{where}: url {url!r} must start with {', '.join(s + '://' for s in SCHEMES)}")
            if "cert_path" in table:
                if scheme != "tcp":
                    raise InventoryError(f"{where}: cert_path applies to tcp:// only ({scheme}:// brings its own "
                                         "security)")
                tls = check_certs(Path(os.path.expanduser(table["cert_path"])), base, where)
            elif scheme == "tcp" and not insecure:
                raise InventoryError(f"{where}: {url} without TLS is refused",
                                     fix="set cert_path = DIR (with ca.pem, cert.pem, key.pem), or insecure = true "
                                         "to accept an unauthenticated engine")
        elif "cert_path" in table:
            raise InventoryError(f"{where}: a context carries its own TLS; drop cert_path")
        return cls(url=url, context=context, tls=tls, insecure=insecure)


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
