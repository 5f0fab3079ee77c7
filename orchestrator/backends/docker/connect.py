"""A Docker client for one inventory entry, and the one line that says why it could not connect.

Engines are reached the way Docker reaches them: a unix socket, tcp:// with Docker's TLS files, ssh:// (the
``ssh`` binary when there is one, else paramiko, as docker-py offers both), or a Docker context read with
``docker.context.ContextAPI``. A failed TLS handshake is classified by the fragments OpenSSL puts in its
messages, so a wrong, expired or refused client certificate reads as that, with the host's name.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import docker
import docker.context
import docker.tls

from orchestrator.errors import DockerUnavailable

if TYPE_CHECKING:
    from orchestrator.backends.docker.settings import Settings


class NoEnvAPIClient(docker.APIClient):
    """An API client that trusts only its own TLS configuration.

    requests replaces a session's CA with ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE`` whenever the session trusts
    the environment — even on the API-version probe inside ``APIClient.__init__`` — so an engine's own CA
    (``ca.pem``) would silently be ignored in any shell that sets those. ``trust_env`` cannot simply be set
    before ``__init__`` runs, hence a read-only property whose setter drops what requests assigns.
    """

    trust_env = property(lambda self: False, lambda self, value: None)


def docker_client(name: str, settings: Settings, timeout: int = 120) -> docker.DockerClient:
    """A client for ``entry`` (not yet pinged); ``url`` None is the environment's engine (``docker.from_env``)."""
    url, tls = settings.url, None
    if settings.context:
        url, tls = _context(name, settings)
    elif settings.tls is not None:
        t = settings.tls
        tls = docker.tls.TLSConfig(client_cert=(str(t.cert), str(t.key)), ca_cert=str(t.ca), verify=True)
    if url is None:
        return docker.from_env(timeout=timeout)
    if url.startswith("ssh://"):
        # docker-py's paramiko transport needs the paramiko package; the ssh binary uses the user's ssh config.
        use_ssh_client = shutil.which("ssh") is not None
        if not use_ssh_client:
            try:
                import paramiko  # noqa: F401
            except ImportError:
                raise DockerUnavailable(f"host {name}: {url} needs the ssh client or paramiko",
                                        fix="install openssh-client (or: pip install paramiko)") from None
        return docker.DockerClient(base_url=url, timeout=timeout, use_ssh_client=use_ssh_client)
    if tls is not None:
        client = docker.DockerClient.__new__(docker.DockerClient)
        client.api = NoEnvAPIClient(base_url=url, tls=tls, timeout=timeout)
        return client
    return docker.DockerClient(base_url=url, timeout=timeout)


def _context(name: str, settings: Settings) -> tuple[str, docker.tls.TLSConfig | None]:
    """A Docker context's engine URL and TLS, as ``docker context create`` stored them.

    docker-py finds the contexts folder next to ``config.json`` and sees none when that file does not exist
    (``docker context create`` does not write it), so the folder under ``$DOCKER_CONFIG`` (or ~/.docker) is
    read directly in that case: ``contexts/meta/<sha256 of name>/meta.json`` and ``contexts/tls/<same>/docker``.
    """
    assert settings.context is not None
    context = docker.context.ContextAPI.get_context(settings.context)
    if context is not None and context.Host:
        return context.Host, context.TLSConfig or None
    base = Path(os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker") / "contexts"
    digest = hashlib.sha256(settings.context.encode()).hexdigest()
    try:
        meta = json.loads((base / "meta" / digest / "meta.json").read_text(encoding="utf-8"))
        endpoint = meta["Endpoints"]["docker"]
    except (OSError, ValueError, KeyError, TypeError):
        raise DockerUnavailable(f"host {name}: Docker context {settings.context!r} does not exist",
                                fix="list contexts with: docker context ls") from None
    certs = base / "tls" / digest / "docker"
    tls = None
    if (certs / "cert.pem").is_file():
        tls = docker.tls.TLSConfig(client_cert=(str(certs / "cert.pem"), str(certs / "key.pem")),
                                   ca_cert=str(certs / "ca.pem") if (certs / "ca.pem").is_file() else None,
                                   verify=not endpoint.get("SkipTLSVerify", False))
    return endpoint["Host"], tls


class TlsFragment(NamedTuple):
    """A fragment of OpenSSL's message and what it means for this host's certificates."""

    fragment: str
    meaning: str
    fix: str


#: Checked in order; the engine's alerts first (they say what it thinks of our certificate), then our own
#: verification of the engine's certificate.
TLS_FRAGMENTS = (
    TlsFragment("CERTIFICATE_EXPIRED", "the engine refused the client certificate {cert}: expired",
                "issue a new client certificate for this engine"),
    TlsFragment("UNKNOWN_CA", "the engine refused the client certificate {cert}: not signed by a CA it trusts",
                "use a client certificate signed by the CA in the engine's --tlscacert"),
    TlsFragment("CERTIFICATE_REQUIRED", "the engine requires a client certificate and got none",
                "set cert_path to a folder with ca.pem, cert.pem and key.pem"),
    TlsFragment("BAD_CERTIFICATE", "the engine refused the client certificate {cert} (bad certificate: wrong CA, "
                "expired or not for client auth)", "use a client certificate signed by the engine's CA"),
    TlsFragment("CERTIFICATE_UNKNOWN", "the engine refused the client certificate {cert}",
                "use a client certificate signed by the engine's CA"),
    TlsFragment("mismatch", "the engine's certificate does not name this address",
                "use the address in the engine certificate's subjectAltName, or reissue it"),
    TlsFragment("certificate has expired", "the engine's own certificate has expired",
                "renew the engine's server certificate (--tlscert)"),
    TlsFragment("CERTIFICATE_VERIFY_FAILED", "the engine's certificate is not signed by {ca}",
                "put the CA that signed the engine's certificate in ca.pem"),
    TlsFragment("WRONG_VERSION_NUMBER", "the engine does not speak TLS on this port",
                "use the engine's TLS port (2376), or insecure = true for a plain-TCP engine"),
)


def connect_failure(name: str, settings: Settings, exc: BaseException, fallback: tuple[str, str]) -> DockerUnavailable:
    """One line naming the host: its certificate problem when the TLS handshake failed, else ``fallback``."""
    text = _chain_text(exc)
    tls = settings.tls
    if tls is not None or "SSL" in text:
        for f in TLS_FRAGMENTS:
            if f.fragment.lower() in text.lower():
                what = f.meaning.format(cert=tls.cert if tls else "(none)", ca=tls.ca if tls else "the CA")
                return DockerUnavailable(f"host {name} ({settings.address}): {what}", fix=f.fix)
        if tls is not None and ("EOF occurred" in text or "Connection reset" in text):
            # TLS 1.3: the engine checks our certificate after the handshake and just closes the connection.
            return DockerUnavailable(f"host {name} ({settings.address}): the engine closed the TLS connection "
                                     f"(it refused the client certificate {tls.cert}?)",
                                     fix="use a client certificate signed by the engine's CA")
    what, fix = fallback
    return DockerUnavailable(f"host {name} ({settings.address}): cannot reach the Docker daemon: {what}",
                             fix=f"{fix}; or correct [hosts.{name}] in the hosts file")


def _chain_text(exc: BaseException | None) -> str:
    """Messages of an exception and its causes (requests wraps urllib3 wraps ssl)."""
    parts: list[str] = []
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        parts.append(f"{exc.__class__.__name__}: {exc}")
        for arg in getattr(exc, "args", ()):
            if isinstance(arg, BaseException):
                parts.append(_chain_text(arg))
        exc = exc.__cause__ or exc.__context__
    return " | ".join(parts)

