"""How the rows of merged results are told apart: one owner for row keys, their order and their labels.

A row is (framework, framework_version, device, variant) and a cell adds d; a fleet adds the host. Keys carry
only what tells rows apart in the data at hand: (framework, device, variant) while every run holds one version
of each framework on one host (so such data reads as it always did), and (framework, device, variant, version,
host) as soon as one run holds several versions of a framework (the version is filled for that framework) or
several hosts (the host is filled). The dimension is always a cell key's last item.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from solvers.registry import FRAMEWORKS

DEVICE_ORDER = ("cpu", "gpu")
VARIANT_ORDER = ("loop", "fused", "fused_cmdbuf", "compiled")

Key = tuple[str, ...]
CellKey = tuple[Any, ...]


def text(value: Any) -> str:
    """A merged value as text; "" for a missing one (None, NaN); 2.0 read back from a table is "2"."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return ""
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def rank(value: str, order: Sequence[str]) -> tuple[int, str]:
    """Sort key: known values in ``order``, unknown ones after them alphabetically."""
    return (order.index(value) if value in order else len(order), value)


def version_rank(version: str) -> tuple[int, Any, str]:
    """Oldest release first (PEP 440 order); text that is no version after every real one, alphabetically."""
    from packaging.version import InvalidVersion, Version

    try:
        return (0, Version(version), version)
    except InvalidVersion:
        return (1, (), version)


def _run_column(df: pd.DataFrame) -> str:
    return "run" if "run" in df.columns else "run_id"


@dataclass(frozen=True)
class Keys:
    """The key rule for one body of data (see the module docstring), and the labels its rows are shown by."""

    #: Frameworks that one run holds in several versions (their keys carry the version), with those versions.
    versions: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: Hosts in order of appearance; keys carry the host when one run holds more than one.
    hosts: tuple[str, ...] = ("local",)
    several_hosts: bool = False
    #: Python version per (framework, version) for frameworks whose rows ran on more than one Python.
    pythons: dict[tuple[str, str], str] = field(default_factory=dict)

    @classmethod
    def of(cls, df: pd.DataFrame) -> Keys:
        if df.empty:
            return cls()
        run = _run_column(df)
        versions = df.groupby([run, "framework"])["framework_version"].nunique()
        hosts = df.groupby(run)["host"].nunique()
        pythons: dict[tuple[str, str], str] = {}
        for framework, part in df.groupby("framework"):
            if part["python_version"].nunique() > 1:
                for version, rows in part.groupby(part["framework_version"].map(text)):
                    pythons[(str(framework), str(version))] = "/".join(sorted({text(p) for p in rows["python_version"]
                                                                               if text(p)}))
        several = {str(f) for (_, f), n in versions.items() if n > 1}
        by_framework = {f: tuple(sorted({text(v) for v in df.loc[df["framework"] == f, "framework_version"]},
                                        key=version_rank)) for f in several}
        names = tuple(dict.fromkeys(text(h) or "local" for h in df["host"]))
        return cls(by_framework, names, bool((hosts > 1).any()), pythons)

    @property
    def versioned(self) -> frozenset[str]:
        return frozenset(self.versions)

    @property
    def extended(self) -> bool:
        return bool(self.versioned) or self.several_hosts

    def row(self, rec: dict[str, Any]) -> Key:
        framework, device, variant = str(rec["framework"]), str(rec["device"]), str(rec["variant"])
        if not self.extended:
            return (framework, device, variant)
        version = text(rec.get("framework_version")) if framework in self.versioned else ""
        host = (text(rec.get("host")) or "local") if self.several_hosts else ""
        return (framework, device, variant, version, host)

    def label(self, key: Key) -> str:
        """The framework as a row shows it: "numpy", "numpy 2.4.6", "jax 0.11.0 (Python 3.13)", "torch @gpu1"."""
        out = key[0]
        if len(key) > 3 and key[3]:
            out += f" {key[3]}"
            if python := self.pythons.get((key[0], key[3])):
                out += f" (Python {python})"
        if len(key) > 4 and key[4]:
            out += f" @{key[4]}"
        return out

    def sort_key(self, key: Key) -> tuple[Any, ...]:
        version = version_rank(key[3]) if len(key) > 3 else (0, (), "")
        host = self.hosts.index(key[4]) if len(key) > 4 and key[4] in self.hosts else 0
        return (rank(key[0], FRAMEWORKS), rank(key[1], DEVICE_ORDER), version, host, rank(key[2], VARIANT_ORDER))


def row_keys(df: pd.DataFrame, keys: Keys | None = None) -> list[Key]:
    """The row keys of ``df`` in a fixed, readable order: registry order, CPU before GPU, oldest version first,
    hosts in order of appearance, loop first."""
    keys = keys or Keys.of(df)
    return sorted({keys.row(rec) for rec in df.to_dict("records")}, key=keys.sort_key)


def records(df: pd.DataFrame, keys: Keys | None = None) -> dict[CellKey, dict[str, Any]]:
    """One record per cell (row key + d); the first document wins if a run repeats one."""
    keys = keys or Keys.of(df)
    out: dict[CellKey, dict[str, Any]] = {}
    for rec in df.to_dict("records"):
        if rec["dim"] is None or pd.isna(rec["dim"]):
            continue
        out.setdefault((*keys.row(rec), int(rec["dim"])), rec)
    return out
