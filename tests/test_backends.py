"""The backend registry, its settings and the typed run records: behaviour of each refusal and each migration.

In-process (``orchestrator.cli.app.main`` with captured stderr): a refusal is one line, exit 2, nothing made.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator.backends import registry
from orchestrator.backends.base import HostRecord
from orchestrator.errors import InvalidOptions, InventoryError
from orchestrator.hosts import inventory
from orchestrator.sweep.request import build_request
from orchestrator.sweep.rundir import MANIFEST_FORMAT, Manifest, RunDir
from tests.conftest import refused

TINY = ["-f", "numpy", "--devices", "cpu", "--dims", "2", "--n", "100", "--iters", "5", "--repeats", "1",
        "--max-repeats", "1"]


def test_every_kind_the_registry_names_is_a_plugin_with_settings_and_open() -> None:
    for kind in registry.names():
        module = registry.plugin(kind)
        assert callable(module.open) and hasattr(module.Settings, "parse")
    with pytest.raises(InvalidOptions, match="unknown backend kind 'k8s'"):
        registry.plugin("k8s")


def test_backend_opt_must_be_key_value_and_known_to_the_backend(capsys, tmp_path: Path) -> None:
    assert "--backend-opt must be KEY=VALUE" in refused(capsys, "run", *TINY, "--backend-opt", "novalue",
                                                        "--out", str(tmp_path / "a"))
    assert "local backend takes no options" in refused(capsys, "run", *TINY, "--backend", "local",
                                                       "--backend-opt", "x=1", "--out", str(tmp_path / "b"))
    assert "unknown key(s) port" in refused(capsys, "run", *TINY, "--backend-opt", "port=22",
                                            "--out", str(tmp_path / "c"))
    assert not any(tmp_path.iterdir())  # nothing made


def test_backend_local_with_hosts_of_another_kind_is_refused_not_silently_docker(capsys, tmp_path: Path) -> None:
    hosts = tmp_path / "hosts.toml"
    hosts.write_text('[hosts.a]\nurl = "unix:///nowhere/a.sock"\n')
    err = refused(capsys, "run", *TINY, "--backend", "local", "--hosts", "a", "--hosts-file", str(hosts),
                  "--out", str(tmp_path / "out"))
    assert "--backend local disagrees with the hosts of --hosts: a (kind = docker)" in err
    assert not (tmp_path / "out").exists()
    err = refused(capsys, "run", *TINY, "--backend-opt", "url=unix:///x", "--hosts", "a", "--hosts-file",
                  str(hosts), "--out", str(tmp_path / "out"))
    assert "--backend-opt sets the backend of a run without --hosts" in err


def test_a_hosts_table_names_its_kind_and_only_that_kind_s_keys(tmp_path: Path) -> None:
    file = tmp_path / "hosts.toml"
    file.write_text('[hosts.local]\nkind = "local"\nthreads = 1\n\n[hosts.b]\nurl = "ssh://b"\n')
    hosts = inventory.load(file)
    assert (hosts["local"].kind, hosts["local"].threads, hosts["b"].kind) == ("local", 1, "docker")
    for text, message in [('[hosts.a]\nkind = "k8s"\n', "unknown kind 'k8s'; choose from"),
                          ('[hosts.local]\nkind = "local"\nurl = "ssh://a"\n', "local backend takes no options"),
                          ('[hosts.a]\nkind = 3\n', "unknown kind 3")]:
        file.write_text(text)
        with pytest.raises(InventoryError, match=message) as info:
            inventory.load(file)
        assert "\n" not in str(info.value)


def test_a_local_kind_under_another_name_is_refused_at_open(tmp_path: Path) -> None:
    file = tmp_path / "hosts.toml"
    file.write_text('[hosts.box]\nkind = "local"\n')
    entry = inventory.load(file)["box"]
    with pytest.raises(InvalidOptions, match="runs on this machine only"):
        registry.open_host(entry, registry.OpenContext(fleet=True))


def test_backend_opts_are_kept_for_resume(tmp_path: Path) -> None:
    request = build_request({"backend": "docker"}, out=tmp_path / "r", resume=None, hosts=None, hosts_file=None,
                            registry_repo=None, backend_opts=["url=ssh://me@gpu1"], compose=None, docker_url=None)
    assert request.backend_opts == {"url": "ssh://me@gpu1"} and request.hosts[0].settings.url == "ssh://me@gpu1"
    run = RunDir(tmp_path / "r")
    run.path.mkdir()
    run.write_manifest(Manifest(run_id="r1", status="interrupted", backend="docker",
                                backend_opts=request.backend_opts, sweep=request.opts.to_dict()))
    again = build_request({}, out=None, resume=run.path, hosts=None, hosts_file=None, registry_repo=None,
                          backend_opts=None, compose=None, docker_url=None)
    assert again.hosts[0].settings.url == "ssh://me@gpu1" and again.resume and again.out_dir == run.path


def test_an_old_manifest_loads_and_a_newer_one_is_refused(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    run.manifest_path.write_text(json.dumps({"run_id": "old", "status": "complete", "sweep": {"threads": 2},
                                             "host": {"name": "local", "docker_version": "27.3.1"}}))
    m = run.manifest()
    assert (m.run_id, m.sweep["threads"], m.format_version) == ("old", 2, MANIFEST_FORMAT)
    assert HostRecord.from_dict(m.host).engine_version == "27.3.1"
    run.manifest_path.write_text(json.dumps({"run_id": "new", "format_version": MANIFEST_FORMAT + 1}))
    with pytest.raises(InvalidOptions, match="newer than this gdbench reads") as info:
        run.manifest()
    assert "\n" not in str(info.value)


def test_an_old_host_record_reads_as_the_engine_it_named() -> None:
    old = {"name": "gpu1", "docker_version": "28.2.2", "api_version": "1.50", "gpu_count": 1, "unknown_key": 1}
    record = HostRecord.from_dict(old)
    assert (record.engine, record.engine_version, record.name, record.gpu_count) == ("docker", "28.2.2", "gpu1", 1)
    assert "docker_version" not in record.to_dict() and "reachable" not in record.to_dict()
    down = HostRecord.unreachable("gpu2", "docker", "no route").to_dict()
    assert down["reachable"] is False and down["error"] == "no route" and down["engine"] == "docker"
