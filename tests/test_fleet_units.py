"""The fleet's rules that need no engine: document keys, container names, per-host options, resumed hosts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator.backends.docker.container import container_name
from orchestrator.errors import InventoryError
from orchestrator.hosts.inventory import HostEntry
from orchestrator.sweep.planner import host_options
from orchestrator.sweep.request import build_request
from orchestrator.sweep.rundir import RunDir
from orchestrator.sweep.spec import RunSpec, SweepOptions


def _spec(host: str = "local") -> RunSpec:
    opts = SweepOptions(frameworks=["numpy"], devices=["cpu"]).with_cpus([0, 1])
    return RunSpec.from_sweep(opts, "numpy", "cpu", "gdbench/numpy:x", "cpu", "20260101T000000Z-abcdef", host=host)


def test_a_host_other_than_local_suffixes_the_key_and_the_container_name_stays_valid() -> None:
    assert _spec().key == "numpy-cpu"  # single-host runs keep today's file names
    remote = _spec("gpu1")
    assert remote.key == "numpy-cpu@gpu1"
    name = container_name(remote)
    assert "@" not in name and name.endswith("numpy-cpu-at-gpu1")


def test_the_inventory_sets_cpuset_threads_and_gpus_for_its_host_only() -> None:
    opts = SweepOptions(threads=2, gpus=["0"])
    assert host_options(opts, HostEntry(name="a")) == opts
    mine = host_options(opts, HostEntry(name="b", cpuset=[4, 5, 6], threads=3, gpus=["GPU-1"]))
    assert (mine.cpuset, mine.threads, mine.gpus) == ([4, 5, 6], 3, ["GPU-1"])


def _request(hosts: str | None, hosts_file: Path | None, resume: Path | None = None, **given):
    return build_request(given, out=None, resume=resume, hosts=hosts, hosts_file=hosts_file, registry_repo=None,
                         backend_opts=None, compose=None, docker_url=None)


def test_resume_reopens_the_hosts_the_run_had(tmp_path: Path) -> None:
    hosts = tmp_path / "hosts.toml"
    hosts.write_text('[hosts.a]\nurl = "unix:///tmp/a.sock"\n\n[hosts.b]\nurl = "unix:///tmp/b.sock"\n')
    request = _request("b", hosts)
    assert [e.name for e in request.hosts] == ["b"] and request.fleet["hosts_file"] == str(hosts.resolve())
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    run.write_manifest({"run_id": "r", "status": "complete", "fleet": request.fleet,
                        "sweep": request.opts.to_dict()})
    again = _request(None, None, resume=run.path)
    assert [e.name for e in again.hosts] == ["b"]
    alone = _request(None, None)  # no --hosts: the single engine, with no inventory record
    assert alone.fleet is None and [(e.name, e.kind) for e in alone.hosts] == [("local", "docker")]
    with pytest.raises(InventoryError):
        _request("c", hosts)
    assert json.loads(run.manifest_path.read_text())["fleet"]["hosts"] == ["b"]
