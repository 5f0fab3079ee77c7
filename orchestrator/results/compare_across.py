"""``gdbench compare RUN… --across AXIS``: cells that differ only along one axis, side by side.

The axis is one of framework_version, python, image (the image tag) or host. A cell is matched with the
cells that equal it in every other key field (framework, framework_version, device, variant, d, host, minus
the axis) and in the problem (n, iters, dtype, seed); everything else (CUDA, driver, CPU, BLAS, …) is
provenance, shown above the table where it differs between the matched sides. A run holding two or more
values of the axis for a cell is compared within itself; runs holding one value each are compared with each
other, in the order given. Per framework, every value is compared with the first: the oldest version for
framework_version (PEP 440 order), else the first to appear. The test and the minimum effect are
``results.verdict``'s, as for plain ``compare``.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from orchestrator.errors import InvalidOptions
from orchestrator.results.noise import ALPHA, MIN_EFFECT, Sample, Verdict, geomean, sample, verdict
from orchestrator.results.report_axes import FLEET_FIELDS
from orchestrator.results.rowkeys import DEVICE_ORDER, VARIANT_ORDER, rank, text, version_rank
from orchestrator.results.table import DOCUMENT_FIELDS, distinct, load_labeled
from solvers.registry import FRAMEWORKS


class Axis(enum.StrEnum):
    framework_version = "framework_version"
    python = "python"
    image = "image"
    host = "host"
    cuda = "cuda"
    driver = "driver"
    gpu = "gpu"


#: The merged column of each axis.
AXIS_COLUMNS = {"framework_version": "framework_version", "python": "python_version", "image": "image_tag",
                "host": "host", "cuda": "cuda_runtime", "driver": "gpu_driver_version", "gpu": "gpu_name"}
MATCH_FIELDS = ("framework", "framework_version", "device", "variant", "dim", "host", "n", "iters", "dtype", "seed")
#: Axes whose values belong to a machine's GPU stack: two values are usually two hosts (two nodes, two drivers)
#: or one host before and after an upgrade, so cells match across hosts; the host is shown, not matched.
GPU_AXES = ("cuda", "driver", "gpu")
#: When nothing differs along the axis: what the runs hold, and the command that adds another value.
NOTHING = {
    "framework_version": ("the runs hold one version per framework",
                          "add one with gdbench images add FRAMEWORK==VERSION, then gdbench run --frameworks "
                          "FRAMEWORK@all"),
    "python": ("the runs hold one Python per framework version",
               "add the version on another Python with gdbench images add FRAMEWORK==VERSION --python 3.13 and "
               "run it"),
    "image": ("the runs hold one image per framework version and host",
              "compare runs made with different images of the same framework version"),
    "host": ("the runs hold one host", "run the sweep on several hosts with gdbench run --hosts a,b"),
    "cuda": ("the runs hold one CUDA runtime per framework version",
             "compare runs of one framework version from images built for different CUDA runtimes (their "
             "io.gdbench.cuda.version label)"),
    "driver": ("the runs hold one NVIDIA driver", "run again after a driver upgrade, or on hosts whose drivers "
               "differ (Slurm: constraint = \"drv550\" / \"drv580\")"),
    "gpu": ("the runs hold one GPU model", "run the sweep on hosts with different GPUs (--hosts a,b)"),
}
#: Facts shown where they differ between the sides; the engine's hostname is "hostname" here, "host" being an axis.
PROVENANCE_FIELDS = [("hostname" if col == "host_hostname" else name, col) for name, col in
                     [*FLEET_FIELDS[:2], ("inventory host", "host"), *FLEET_FIELDS[2:], *DOCUMENT_FIELDS]]


@dataclass
class Match:
    """One cell along the axis: what it is, the run it was compared within ("" across runs), a row per value."""

    device: str
    variant: str
    dim: int
    version: str
    host: str
    run: str
    rows: dict[str, dict[str, Any]]
    samples: dict[str, Sample] = field(default_factory=dict)
    verdicts: dict[str, Verdict] = field(default_factory=dict)


@dataclass
class Group:
    """One framework along the axis: its values (the first is the reference), matches and differing facts."""

    framework: str
    values: list[str]
    matches: list[Match]
    provenance: list[tuple[str, list[str]]]

    def summary(self, value: str) -> tuple[float | None, int, int, int, int]:
        """Geometric mean of ``value``'s ratios to the first, and cells faster, slower, inconclusive, not compared."""
        verdicts = [m.verdicts[value] for m in self.matches if value in m.verdicts]
        counts = [sum(v.mark == "faster" for v in verdicts), sum(v.mark == "slower" for v in verdicts),
                  sum(v.inconclusive for v in verdicts), sum(v.ratio is None for v in verdicts)]
        return (geomean(v.ratio for v in verdicts if v.ratio is not None), *counts)  # type: ignore[return-value]

    def verdict_lines(self) -> list[str]:
        out = []
        for value in self.values[1:]:
            g, faster, slower, unsure, none = self.summary(value)
            mean = f"geometric mean ratio {g:.3f}× (below 1 is faster)" if g is not None else "no cell timed on both"
            rest = f", {none} not comparable" if none else ""
            out.append(f"{self.framework}: {value} vs {self.values[0]}: {mean} over {faster + slower + unsure} "
                       f"cell(s): {faster} faster, {slower} slower, {unsure} inconclusive{rest}")
        return out


@dataclass
class Across:
    axis: str
    labels: list[str]
    groups: list[Group]
    warnings: list[str]
    alpha: float
    min_effect: float

    def matched(self) -> list[Verdict]:
        return [v for g in self.groups for m in g.matches for v in m.verdicts.values() if v.ratio is not None]

    @property
    def several_runs(self) -> bool:
        return len(self.labels) > 1


def _value_order(axis: str, values: Sequence[str]) -> list[str]:
    unique = list(dict.fromkeys(values))
    return sorted(unique, key=version_rank) if axis == "framework_version" else unique


def _differences(rows: dict[str, list[dict[str, Any]]], values: list[str], axis: str) -> list[tuple[str, list[str]]]:
    """The axis itself, then every provenance fact whose value is not the same on every side."""
    frames = {v: pd.DataFrame(rows[v]) for v in values}
    column = AXIS_COLUMNS[axis]
    out = [(axis, values)]
    for name, col in PROVENANCE_FIELDS:
        if col == column:
            continue
        shown = [distinct(frames[v][col], split="; " if col == "blas" else None) for v in values]
        if len(set(shown)) > 1:
            out.append((name, shown))
    return out


def compare_across(paths: Sequence[Path | str], axis: str, alpha: float = ALPHA,
                   min_effect: float = MIN_EFFECT) -> Across:
    """Load the runs, match cells along ``axis`` and compare each value with the first, per framework."""
    column = AXIS_COLUMNS[axis]
    df, labels = load_labeled(paths)
    df = df[df["dim"].notna()].copy()
    for c in (*MATCH_FIELDS, column):
        df[f"_{c}"] = df[c].map(text)
    df["_host"] = df["_host"].replace("", "local")
    warnings: list[str] = []
    if axis in GPU_AXES:  # rows without a value are said, then left out
        if axis != "cuda":  # a CPU row ran on no driver and no GPU; the CUDA runtime of its image it did load
            df.loc[df["device"].map(text) != "gpu", f"_{column}"] = ""
        none = df[df[f"_{column}"] == ""]
        if len(none):
            by = ", ".join(f"{fw} {dev}" for fw, dev in dict.fromkeys(zip(none["framework"], none["device"],
                                                                          strict=True)))
            why = "rows of CPU images" if axis == "cuda" else "CPU rows, or NVML absent"
            warnings.append(f"{len(none)} row(s) carry no {axis} in their provenance ({why}): not compared ({by})")
    match_on = [f"_{c}" for c in MATCH_FIELDS if c != column and not (axis in GPU_AXES and c == "host")]
    run_rank = {label: i for i, label in enumerate(labels)}
    units: list[tuple[tuple[str, ...], str, dict[str, dict[str, Any]]]] = []
    for key, part in df.groupby(match_on, sort=False):
        pooled: dict[str, dict[str, Any]] = {}
        for run, rows in sorted(part.groupby("run", sort=False), key=lambda kv: run_rank[kv[0]]):
            by_value = {v: r for v, r in zip(rows[f"_{column}"], rows.to_dict("records"), strict=True) if v}
            if len(by_value) > 1:
                units.append((key, str(run), by_value))
            elif by_value:
                value, rec = next(iter(by_value.items()))
                if value in pooled:
                    warnings.append(f"{rec['framework']} {rec['variant']} d={text(rec['dim'])}: {value} is in runs "
                                    f"{pooled[value]['run']} and {run}; compared: {pooled[value]['run']}")
                pooled.setdefault(value, rec)
        if len(pooled) > 1:
            units.append((key, "", pooled))
    if not units:
        values = df.groupby("framework")[f"_{column}"].nunique()
        what, fix = NOTHING[axis]
        if (values > 1).any():
            what = (f"cells with another {axis} also differ in another of "
                    f"{', '.join(c for c in MATCH_FIELDS if c != column)}")
        raise InvalidOptions(f"no cells differ only in {axis}: {what}", fix=fix)
    for framework in sorted(set(df["framework"]) - {k[0] for k, _, _ in units}, key=lambda f: rank(f, FRAMEWORKS)):
        warnings.append(f"{framework}: no cells differ only in {axis}: not compared")
    groups = []
    fields = dict(zip(match_on, range(len(match_on)), strict=True))
    for framework in sorted({k[0] for k, _, _ in units}, key=lambda f: rank(f, FRAMEWORKS)):
        mine = [u for u in units if u[0][0] == framework]
        values = _value_order(axis, [v for v in df.loc[df["framework"] == framework, f"_{column}"] if v
                                     and any(v in u[2] for u in mine)])
        matches = []
        for key, run, rows in mine:
            get = lambda name, key=key: key[fields[f"_{name}"]] if f"_{name}" in fields else ""  # noqa: E731
            m = Match(get("device"), get("variant"), int(float(get("dim"))), get("framework_version"), get("host"),
                      run, rows)
            m.samples = {v: sample(rows.get(v)) for v in values}
            m.verdicts = {v: verdict(m.samples[values[0]], m.samples[v], alpha, min_effect) for v in values[1:]
                          if v in rows}
            matches.append(m)
        matches.sort(key=lambda m: (rank(m.device, DEVICE_ORDER), version_rank(m.version), m.host,
                                    rank(m.variant, VARIANT_ORDER), m.dim, run_rank.get(m.run, -1)))
        sides = {v: [m.rows[v] for m in matches if v in m.rows] for v in values}
        groups.append(Group(framework, values, matches, _differences(sides, values, axis)))
    return Across(axis, labels, groups, list(dict.fromkeys(warnings)), alpha, min_effect)
