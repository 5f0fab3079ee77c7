"""The extra-engine harness itself: a second real dockerd over TLS, and nothing of it left afterwards."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from testbeds.engines import Pki, engines


def _client(url: str, cert_dir: Path | None):
    import docker
    import docker.tls

    tls = None
    if cert_dir is not None:
        tls = docker.tls.TLSConfig(client_cert=(str(cert_dir / "cert.pem"), str(cert_dir / "key.pem")),
                                   ca_cert=str(cert_dir / "ca.pem"), verify=True)
    else:
        tls = docker.tls.TLSConfig(ca_cert=None, verify=False)
    class NoEnvClient(docker.APIClient):
        # requests swaps a session's CA for REQUESTS_CA_BUNDLE when that is set, even on the first request
        # (the API version probe in __init__): this client trusts only its TLS config.
        trust_env = property(lambda self: False, lambda self, value: None)

    client = docker.DockerClient.__new__(docker.DockerClient)
    client.api = NoEnvClient(base_url=url.replace("tcp://", "https://"), tls=tls, timeout=10)
    return client


@pytest.mark.skipif(os.geteuid() != 0, reason="starting a dockerd needs root")
def test_a_second_engine_over_tls_and_its_cleanup(tmp_path: Path) -> None:
    def bridge_present() -> bool:
        return subprocess.run(["ip", "link", "show", "docker0"], capture_output=True).returncode == 0

    bridge_before = bridge_present()
    pki = Pki.create(tmp_path / "pki")
    good, expired = pki.client("good"), pki.client("old", expired=True)
    with engines(1, pki=pki) as (engine,):
        assert engine.tcp_url is not None
        info = _client(engine.tcp_url, good).info()
        assert info["DockerRootDir"] == str(engine.workdir / "data")
        import docker.errors
        import requests.exceptions

        for certs in (expired, None):
            with pytest.raises((requests.exceptions.SSLError, requests.exceptions.ConnectionError,
                                docker.errors.DockerException)):
                _client(engine.tcp_url, certs).info()
        workdir, pid, ip = engine.workdir, engine.pid, engine.ip
    assert not workdir.exists()
    assert pid is not None and not Path(f"/proc/{pid}").exists()
    links = subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True).stdout
    assert ip.rpartition(".")[0] + ".1/30" not in links
    # An engine that started in this machine's namespace by mistake would have deleted its docker0.
    assert bridge_present() == bridge_before
