"""What one ``gdbench bisect`` asks for, checked before anything is declared, built or run.

Every refusal here is one line and exit 2, and happens before the first image is touched: an unknown
framework, a version PyPI does not have, a good release that is not older than the bad one, a cell the
framework cannot run, a ``--resume`` directory that holds no bisect. The releases between the two come from
PyPI's JSON, the same source ``gdbench images add`` asks.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from packaging.version import InvalidVersion, Version

from orchestrator.errors import InvalidOptions
from orchestrator.images import versions
from solvers import options, registry
from solvers.options import DEFAULTS

SUMMARY = "bisect.json"
#: The folder of the bisect's run directories, one per measured pair: what publish and compare read.
RUNS = "runs"


@dataclass(frozen=True)
class Cell:
    """One (device, variant, d) of the framework: what is compared between releases."""

    device: str
    variant: str
    dim: int

    @property
    def label(self) -> str:
        return f"{self.device}/{self.variant}/d={self.dim}"


@dataclass(frozen=True)
class BisectRequest:
    """A checked bisect: the two ends, the cells, how each release is measured and judged, where runs go."""

    framework: str
    good: str
    bad: str
    cells: list[Cell]
    flavour: str
    python: str
    out: Path
    keep: bool = False
    pre: bool = False
    alpha: float = 0.05
    min_effect: float = 0.05
    #: Repeat factors for inconclusive releases: 1 (as asked), then ×2, ×4 … up to the last.
    factors: list[int] = field(default_factory=lambda: [1, 2, 4])
    #: ``gdbench run`` options every sweep of the bisect shares (n, iters, sampling, threads, cpuset …).
    sweep: dict[str, Any] = field(default_factory=dict)
    compose: str | None = None
    docker_url: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["out"] = str(self.out)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BisectRequest:
        values = {**data, "out": Path(data["out"]), "cells": [Cell(**c) for c in data["cells"]]}
        return cls(**values)


def parse_cell(text: str, framework: str) -> Cell:
    """``device,variant,d`` (``cpu,loop,2``), each part checked against what the framework runs."""
    parts = options.split(text)
    if len(parts) != 3:
        raise InvalidOptions(f"--cell {text!r}: expected device,variant,d (e.g. cpu,loop,2)")
    device, variant, dim_text = parts
    offered = registry.REGISTRY[framework].devices
    if device not in offered:
        raise InvalidOptions(f"--cell {text!r}: {framework} has no device {device!r}; choose from {', '.join(offered)}")
    if variant not in options.ALL_VARIANTS:
        raise InvalidOptions(f"--cell {text!r}: unknown variant {variant!r}; choose from "
                             f"{', '.join(options.ALL_VARIANTS)}")
    try:
        (dim,) = options.dims(dim_text)
    except (options.OptionError, ValueError):
        raise InvalidOptions(f"--cell {text!r}: d must be one positive integer, got {dim_text!r}") from None
    return Cell(device, variant, dim)


def default_cell(framework: str) -> Cell:
    """The framework's first device, the ``loop`` variant, the smallest default d: where per-call overhead,
    which releases change most often, weighs most."""
    return Cell(registry.REGISTRY[framework].devices[0], "loop", DEFAULTS.dims[0])


def parse_release(text: str, what: str) -> Version:
    try:
        return Version(text)
    except InvalidVersion:
        raise InvalidOptions(f"{what} {text!r} is not a version number (PEP 440)", fix=f"e.g. {what} 1.26.4") from None


def flavour_for(cells: list[Cell], asked: str | None) -> str:
    """The image flavour the cells need: cuda for a GPU cell (its image runs the CPU device too), else cpu;
    ``--flavour cpu`` with a GPU cell is refused."""
    need = "cuda" if any(c.device == "gpu" for c in cells) else "cpu"
    if asked == "cpu" and need == "cuda":
        raise InvalidOptions(f"--flavour cpu: the cells {', '.join(c.label for c in cells)} need the cuda image")
    return asked or need


def check_ends(framework: str, good: str, bad: str, flavour: str, python: str | None) -> tuple[str, str, str]:
    """Both ends exist on PyPI and fit one base (the good release's); returns (good, bad, python)."""
    if parse_release(good, "--good") >= parse_release(bad, "--bad"):
        raise InvalidOptions(f"--good {good} must be older than --bad {bad}",
                             fix=f"gdbench bisect {framework} --good OLDER --bad NEWER")
    try:
        pin = versions.check_pin(framework, good, flavour, python)
        versions.check_pin(framework, bad, flavour, pin.base.python)
    except versions.VersionRefused as exc:  # images add's fix names a command; here the ends must change
        raise InvalidOptions(exc.message, fix="give --good and --bad releases PyPI has, on one Python") from None
    return good, bad, pin.base.python


def releases_between(framework: str, good: str, bad: str, pre: bool = False,
                     releases: dict[str, list[dict[str, Any]]] | None = None) -> tuple[list[str], list[str]]:
    """(candidates, left out): the releases strictly between ``good`` and ``bad`` in PEP 440 order, final ones
    unless ``pre``, wholly yanked ones never; a release with no wheel any base loads is left out with its
    reason (one with a wheel for another Python only stays, and is skipped with its reason when measured)."""
    if releases is None:
        releases = versions.project_releases(registry.REGISTRY[framework].wheel)
    low, high = Version(good), Version(bad)
    kept: list[tuple[Version, str]] = []
    left_out: list[str] = []
    for text, files in releases.items():
        try:
            v = Version(text)
        except InvalidVersion:
            continue
        if not low < v < high or (v.is_prerelease and not pre) or not files or all(f.get("yanked") for f in files):
            continue
        if not any(versions.release_fits(files, b) for b in versions.BASES.values()):
            left_out.append(f"{text}: no x86_64 Linux wheel that a gdbench base loads")
            continue
        kept.append((v, text))
    return [t for _, t in sorted(kept)], sorted(left_out, key=lambda line: Version(line.split(":")[0]))


def load_resumed(path: Path) -> BisectRequest:
    """The request of an earlier bisect in ``path`` (``--resume``): refused in one line where there is none."""
    summary = path / SUMMARY
    if not summary.is_file():
        raise InvalidOptions(f"--resume {path}: no {SUMMARY} there (not a gdbench bisect directory)",
                             fix="give the directory an earlier gdbench bisect printed")
    try:
        return BisectRequest.from_dict(json.loads(summary.read_text(encoding="utf-8"))["request"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InvalidOptions(f"--resume {path}: unreadable {SUMMARY} ({type(exc).__name__})") from None
