"""The site's history model: cells, one point per run and row, and the orders a cell's history is read in.

A cell is (framework, device, variant, d, dtype, n): what one number of one run measures. Its points are
ordered three ways — by framework version (PEP 440, then date), by run date, and by host · driver · CUDA
where those vary within the cell — and in each order every timed point is tested against the timed point
before it with the one noise rule (``orchestrator.results.noise.verdict``), so a mark on the site means
what ``compare`` means.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from orchestrator.results.noise import Sample, Verdict, sample, verdict
from orchestrator.results.rowkeys import DEVICE_ORDER, VARIANT_ORDER, rank, text, version_rank
from solvers.registry import FRAMEWORKS

CellKey = tuple[str, str, str, int, str, str]
#: The orders a history is shown in: name, axis title.
AXES = {"version": "framework version", "date": "run date", "stack": "host · NVIDIA driver · CUDA runtime"}


def parse_date(value: Any) -> datetime | None:
    """A document's ``timestamp_utc`` as an aware datetime (None when absent or unreadable)."""
    if not value:
        return None
    try:
        stamp = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)


def stack_of(rec: dict[str, Any]) -> str:
    """Where a row ran: inventory host, then the NVIDIA driver and CUDA runtime where it has them."""
    parts = [text(rec.get("host")) or "local"]
    if driver := text(rec.get("gpu_driver_version")):
        parts.append(f"driver {driver}")
    if cuda := text(rec.get("cuda_runtime")):
        parts.append(f"CUDA {cuda}")
    return " · ".join(parts)


def anchor(rec: dict[str, Any]) -> str:
    """The id of a row on its run's page: a point's link lands on it."""
    raw = "-".join(text(rec.get(k)) for k in ("framework", "framework_version", "device", "variant", "dim",
                                                "dtype", "host"))
    return "row-" + re.sub(r"[^A-Za-z0-9_.-]+", "_", raw)


def cell_key(rec: dict[str, Any]) -> CellKey | None:
    """The cell a row belongs to (None for a row without a d: it measures nothing)."""
    dim = rec.get("dim")
    if dim is None:
        return None
    return (str(rec["framework"]), str(rec["device"]), str(rec["variant"]), int(dim), text(rec.get("dtype")),
            text(rec.get("n")))


def cell_anchor(key: CellKey) -> str:
    """The id of a cell on its framework's pages (plots and tables alike)."""
    _, device, variant, dim, dtype, n = key
    return f"{device}-{variant}-d{dim}-{dtype}-n{n}"


@dataclass(frozen=True)
class Run:
    """One run of the site: its page name, where it came from and its rows (plain JSON values)."""

    key: str
    run_id: str
    source: str
    rows: list[dict[str, Any]]

    @property
    def date(self) -> str:
        """The earliest document timestamp of the run (ISO text), "" when none is recorded."""
        stamps = [str(r["timestamp_utc"]) for r in self.rows if r.get("timestamp_utc")]
        return min(stamps) if stamps else ""


@dataclass
class Point:
    """One run's row of a cell."""

    run: Run
    rec: dict[str, Any]
    sample: Sample
    version: str
    date: datetime | None
    stack: str
    #: Per axis: the verdict against the previous timed point in that order (absent for the first).
    verdicts: dict[str, Verdict] = field(default_factory=dict)

    @property
    def href(self) -> str:
        return f"runs/{self.run.key}.html#{anchor(self.rec)}"


@dataclass
class Cell:
    key: CellKey
    points: list[Point]
    #: Per axis: the points in that order (the ``stack`` axis only where the cell holds several stacks).
    orders: dict[str, list[Point]] = field(default_factory=dict)

    @property
    def framework(self) -> str:
        return self.key[0]

    @property
    def device(self) -> str:
        return self.key[1]

    @property
    def anchor(self) -> str:
        return cell_anchor(self.key)

    @property
    def changes(self) -> int:
        """Points marked slower or faster in any order."""
        return sum(1 for p in self.points if any(v.mark for v in p.verdicts.values()))


def _mark(order: list[Point], axis: str, alpha: float, min_effect: float) -> None:
    previous: Point | None = None
    for point in order:
        if not point.sample.ok:
            continue
        if previous is not None:
            point.verdicts[axis] = verdict(previous.sample, point.sample, alpha, min_effect)
        previous = point


def _date_key(point: Point) -> tuple[float, str]:
    return (point.date.timestamp() if point.date else float("inf"), point.run.key)


def build_cells(runs: list[Run], alpha: float, min_effect: float) -> list[Cell]:
    """Every cell of the runs, in registry, device, variant, d order, with its orders and their verdicts."""
    by_key: dict[CellKey, list[Point]] = {}
    for run in runs:
        for rec in run.rows:
            key = cell_key(rec)
            if key is not None:
                by_key.setdefault(key, []).append(Point(run, rec, sample(rec), text(rec.get("framework_version")),
                                                        parse_date(rec.get("timestamp_utc")), stack_of(rec)))
    cells = []
    for key, points in by_key.items():
        by_date = sorted(points, key=_date_key)
        orders = {"version": sorted(by_date, key=lambda p: version_rank(p.version)), "date": by_date}
        if len({p.stack for p in points}) > 1:
            first = {s: i for i, s in enumerate(dict.fromkeys(p.stack for p in by_date))}
            orders["stack"] = sorted(by_date, key=lambda p: first[p.stack])
        cell = Cell(key, by_date, orders)
        for axis, order in orders.items():
            _mark(order, axis, alpha, min_effect)
        cells.append(cell)
    return sorted(cells, key=lambda c: (rank(c.key[0], FRAMEWORKS), rank(c.key[1], DEVICE_ORDER),
                                        rank(c.key[2], VARIANT_ORDER), c.key[3], c.key[4], c.key[5]))


def frameworks_devices(cells: list[Cell]) -> tuple[list[str], list[str]]:
    """The frameworks and devices the cells hold, in the project's order."""
    frameworks = sorted({c.framework for c in cells}, key=lambda f: rank(f, FRAMEWORKS))
    devices = sorted({c.device for c in cells}, key=lambda d: rank(d, DEVICE_ORDER))
    return frameworks, devices
