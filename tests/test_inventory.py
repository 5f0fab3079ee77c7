"""hosts.toml: every table checked before any engine is contacted, each bad input one line naming the host.

Certificates are real ones, made by openssl for each test (a CA, a client certificate it signed, an expired
one, a key that belongs to another certificate).
"""

from __future__ import annotations

import datetime as dt
import subprocess
from pathlib import Path

import pytest

from orchestrator.backends.docker.settings import certificate_expiry
from orchestrator.errors import InventoryError
from orchestrator.hosts import inventory


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """good/ (valid client cert), expired/ (notAfter in the past), mismatched/ (key of another cert)."""
    root = tmp_path_factory.mktemp("pki")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca-key.pem", "-out", "ca.pem",
             "-days", "2", "-subj", "/CN=gdbench-test-ca", cwd=root)
    # `openssl ca` sets exact validity dates (x509 -req cannot backdate on OpenSSL 3.0).
    (root / "ca.cnf").write_text("[ca]\ndefault_ca = t\n[t]\ndatabase = index.txt\nnew_certs_dir = .\n"
                                 "serial = serial\npolicy = p\ndefault_md = sha256\n[p]\ncommonName = supplied\n")
    (root / "index.txt").write_text("")
    (root / "serial").write_text("01\n")
    now = dt.datetime.now(dt.UTC)
    for name, start, end in (("good", -1, 1), ("expired", -3, -1), ("other", -1, 1)):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}-key.pem", "-out", f"{name}.csr",
                 "-subj", f"/CN={name}", cwd=root)
        _openssl("ca", "-batch", "-config", "ca.cnf", "-cert", "ca.pem", "-keyfile", "ca-key.pem", "-notext",
                 "-in", f"{name}.csr", "-out", f"{name}.pem",
                 "-startdate", (now + dt.timedelta(days=start)).strftime("%Y%m%d%H%M%SZ"),
                 "-enddate", (now + dt.timedelta(days=end)).strftime("%Y%m%d%H%M%SZ"), cwd=root)
    for folder, cert, key in (("good", "good", "good"), ("expired", "expired", "expired"),
                              ("mismatched", "good", "other")):
        d = root / folder
        d.mkdir()
        (d / "ca.pem").write_bytes((root / "ca.pem").read_bytes())
        (d / "cert.pem").write_bytes((root / f"{cert}.pem").read_bytes())
        (d / "key.pem").write_bytes((root / f"{key}-key.pem").read_bytes())
    return root


def _load(tmp_path: Path, text: str) -> dict[str, inventory.HostEntry]:
    path = tmp_path / "hosts.toml"
    path.write_text(text)
    return inventory.load(path)


def test_no_hosts_file_means_the_local_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    hosts = inventory.load()
    assert list(hosts) == ["local"] and hosts["local"].settings.url is None
    assert inventory.select(hosts, None) == [hosts["local"]]


def test_a_full_inventory(tmp_path: Path, pki: Path) -> None:
    hosts = _load(tmp_path, f"""
[hosts.box]
url = "unix:///var/run/docker.sock"
cpuset = "0-1"
threads = 2

[hosts.gpu1]
url = "tcp://gpu1.example:2376"
cert_path = "{pki / 'good'}"
gpus = [0, "GPU-1234"]

[hosts.ssh]
url = "ssh://me@builder"

[hosts.ctx]
context = "remote"

[hosts.lab]
url = "tcp://lab:2375"
insecure = true
""")
    assert list(hosts) == ["box", "gpu1", "ssh", "ctx", "lab"]
    assert hosts["box"].cpuset == [0, 1] and hosts["box"].threads == 2
    assert hosts["gpu1"].settings.tls is not None and hosts["gpu1"].settings.tls.key.name == "key.pem"
    assert hosts["gpu1"].gpus == ["0", "GPU-1234"]
    assert hosts["ctx"].settings.context == "remote" and hosts["ctx"].settings.url is None
    assert hosts["lab"].warning() and "without TLS" in hosts["lab"].warning()
    assert hosts["gpu1"].warning() is None
    assert [h.name for h in inventory.select(hosts, "all")] == list(hosts)
    assert [h.name for h in inventory.select(hosts, "lab,box,lab")] == ["lab", "box"]
    assert inventory.select(hosts, None)[0].name == "local"  # no --hosts: where a sweep always ran


def test_a_relative_cert_path_is_relative_to_the_hosts_file(tmp_path: Path, pki: Path) -> None:
    import shutil

    shutil.copytree(pki / "good", tmp_path / "certs")
    hosts = _load(tmp_path, '[hosts.a]\nurl = "tcp://a:2376"\ncert_path = "certs"\n')
    assert hosts["a"].settings.tls is not None and hosts["a"].settings.tls.ca == tmp_path / "certs" / "ca.pem"


@pytest.mark.parametrize(("text", "message"), [
    ("[hosts.a\n", "not valid TOML"),
    ("", "defines no hosts"),
    ("[other]\nx = 1\n", "unknown top-level key"),
    ('[hosts.a]\nurl = "tcp://a:2375"\n', "without TLS is refused"),
    ('[hosts.a]\nurl = "http://a"\n', "must start with unix://, tcp://, ssh://"),
    ('[hosts.a]\ncontext = "x"\nurl = "ssh://a"\n', "exactly one of url"),
    ("[hosts.a]\nthreads = 2\n", "exactly one of url"),
    ('[hosts.a]\nurl = "ssh://a"\nport = 22\n', "unknown key(s) port"),
    ('[hosts.a]\nurl = "ssh://a"\nthreads = 0\n', "threads must be a positive integer"),
    ('[hosts.a]\nurl = "ssh://a"\ncpuset = "3-1"\n', "cpuset"),
    ('[hosts.a]\nurl = "ssh://a"\ngpus = [true]\n', "gpus must be GPU indices or UUIDs"),
    ('[hosts.a]\nurl = "ssh://a"\ninsecure = "yes"\n', "insecure must be true or false"),
    ('[hosts.a]\nurl = "ssh://a"\ncert_path = "/tmp"\n', "cert_path applies to tcp:// only"),
    ('[hosts.a]\ncontext = "x"\ncert_path = "/tmp"\n', "a context carries its own TLS"),
    ('[hosts.all]\nurl = "ssh://a"\n', "not 'all'"),
    ('[hosts.a]\nurl = ""\n', "url must be a non-empty string"),
])
def test_bad_tables_are_one_line_naming_the_host(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(InventoryError) as info:
        _load(tmp_path, text)
    assert message in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(("folder", "message"), [
    ("expired", "expired on"),
    ("mismatched", "are not a matching certificate and key"),
    ("missing", "is not a directory"),
])
def test_certificate_problems_name_the_host_and_the_problem(tmp_path: Path, pki: Path, folder: str,
                                                            message: str) -> None:
    with pytest.raises(InventoryError, match=message) as info:
        _load(tmp_path, f'[hosts.gpu2]\nurl = "tcp://gpu2:2376"\ncert_path = "{pki / folder}"\n')
    assert "host gpu2" in str(info.value)


def test_a_cert_path_missing_a_file_names_it(tmp_path: Path, pki: Path) -> None:
    import shutil

    shutil.copytree(pki / "good", tmp_path / "certs")
    (tmp_path / "certs" / "key.pem").unlink()
    with pytest.raises(InventoryError, match=r"lacks key\.pem"):
        _load(tmp_path, '[hosts.a]\nurl = "tcp://a:2376"\ncert_path = "certs"\n')


def test_a_ca_that_is_not_a_certificate(tmp_path: Path, pki: Path) -> None:
    import shutil

    shutil.copytree(pki / "good", tmp_path / "certs")
    (tmp_path / "certs" / "ca.pem").write_text("not a certificate\n")
    with pytest.raises(InventoryError, match="not a usable CA certificate"):
        _load(tmp_path, '[hosts.a]\nurl = "tcp://a:2376"\ncert_path = "certs"\n')


def test_certificate_expiry_is_read(pki: Path) -> None:
    expires = certificate_expiry(pki / "good" / "cert.pem")
    assert expires is not None and dt.datetime.now(dt.UTC) < expires < dt.datetime.now(dt.UTC) + dt.timedelta(days=2)


def test_explicit_missing_file_and_unknown_selection(tmp_path: Path) -> None:
    with pytest.raises(InventoryError, match="does not exist"):
        inventory.load(tmp_path / "nope.toml")
    hosts = _load(tmp_path, '[hosts.a]\nurl = "ssh://a"\n')
    with pytest.raises(InventoryError, match=r"unknown host.*b; the inventory has a, local"):
        inventory.select(hosts, "a,b")
    assert [h.name for h in inventory.select(hosts, "local")] == ["local"]
