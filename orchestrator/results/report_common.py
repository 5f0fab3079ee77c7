"""What the report's modules share: its records, a table, a run's section and the plots' titles.

``report`` builds these, ``report_axes`` adds tables along a run's axes and ``report_pages`` renders them; all
three import this module and none imports another's, so the report has no import circle.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from orchestrator.results.report_cells import Cell
from orchestrator.results.rowkeys import CellKey, Key, Keys

if TYPE_CHECKING:
    import pandas as pd

#: One merged row per cell of a run's tables: (row key…, d) → its record.
Records = dict[CellKey, dict[str, Any]]

#: Alt text and caption of each plot, by the name its file starts with; GPU plots are ``gpu-<framework>``.
PLOT_TITLES = {"time": "time per iteration", "speedup": "speedup vs numpy loop"}


def plot_title(name: str) -> str:
    return PLOT_TITLES.get(name) or f"{name.removeprefix('gpu-')} on GPU: µs per iteration"


@dataclass
class Table:
    caption: str
    header: list[str]
    #: A row key (``orchestrator.results.rowkeys``) then one cell per remaining header column.
    rows: list[tuple[Key, list[Cell]]]
    #: How each row shows its framework: with its version, Python and host where the data needs them.
    keyer: Keys = field(default_factory=Keys)
    #: Shown above the table: a header and (label, values) rows, e.g. the host provenance that differs.
    above: tuple[list[str], list[tuple[str, list[str]]]] | None = None

    def label(self, key: Key) -> str:
        return self.keyer.label(key)


@dataclass
class RunSection:
    label: str
    df: pd.DataFrame
    dims: list[int]
    keys: list[Key]
    tables: list[Table]
    summary: str
    provenance: list[tuple[str, str]]
    documents: pd.DataFrame
    notes: list[str]
    plots: dict[str, bytes] = field(default_factory=dict)
    keyer: Keys = field(default_factory=Keys)
