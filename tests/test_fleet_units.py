"""The fleet's rules that need no engine: document keys, container names, per-host options, resumed hosts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator.backends.docker.engine import container_name
from orchestrator.hosts import inventory
from orchestrator.hosts.inventory import HostEntry
from orchestrator.sweep import fleet
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
    assert fleet.host_options(opts, HostEntry(name="a")) == opts
    mine = fleet.host_options(opts, HostEntry(name="b", cpuset=[4, 5, 6], threads=3, gpus=["GPU-1"]))
    assert (mine.cpuset, mine.threads, mine.gpus) == ([4, 5, 6], 3, ["GPU-1"])


def test_resume_reopens_the_hosts_the_run_had(tmp_path: Path) -> None:
    hosts = tmp_path / "hosts.toml"
    hosts.write_text('[hosts.a]\nurl = "unix:///tmp/a.sock"\n\n[hosts.b]\nurl = "unix:///tmp/b.sock"\n')
    entries, record = fleet.resolve("b", hosts, None)
    assert [e.name for e in entries] == ["b"] and record["hosts_file"] == str(hosts.resolve())
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    run.write_manifest({"run_id": "r", "status": "complete", "fleet": record})
    again, _ = fleet.resolve(None, None, None, resume_dir=run.path)
    assert [e.name for e in again] == ["b"]
    assert fleet.resolve(None, None, None) == (None, None)  # no --hosts: today's single engine
    with pytest.raises(inventory.InventoryError):
        fleet.resolve("c", hosts, None)
    assert json.loads(run.manifest_path.read_text())["fleet"]["hosts"] == ["b"]
