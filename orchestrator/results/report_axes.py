"""The report's tables along an axis of one run: each version against the oldest of its framework, and each
host of a fleet against the first host, with the host provenance that differs above the latter.

Both use the one noise rule (``results.verdict`` via ``report_cells``): a value inside the two rows' own spread
is marked ``≈`` (inconclusive), never called a win.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from orchestrator.results.noise import geomean
from orchestrator.results.report_cells import Cell, ratio_cell, speedup, speedup_cell, time_cell
from orchestrator.results.report_common import Records, Table
from orchestrator.results.rowkeys import Key, Keys
from orchestrator.results.table import HOST_FIELDS, distinct

#: Host facts compared between the hosts of a fleet (the inventory name is the table's header already).
FLEET_FIELDS = [f for f in HOST_FIELDS if f[1] != "host"] + [
    ("host CPU", "host_cpu_model"), ("OS", "host_os"), ("architecture", "host_architecture"),
    ("engine id", "host_engine_id"),
]


def oldest_key(keyer: Keys, key: Key) -> Key:
    """The same row on the oldest version of its framework."""
    return (*key[:3], keyer.versions[key[0]][0], *key[4:])


def version_table(keyer: Keys, keys: list[Key], dims: list[int], recs: Records) -> Table:
    """Each version's speedup over the oldest version of its framework, per cell (the oldest reads 1.00×)."""
    rows = [k for k in keys if k[0] in keyer.versioned]

    def cell(key: Key, d: int) -> Cell:
        oldest = oldest_key(keyer, key)
        return speedup_cell(recs.get((*key, d)), recs.get((*oldest, d)), f"{keyer.label(oldest)} {key[2]}")

    def mean(key: Key) -> Cell:
        oldest = oldest_key(keyer, key)
        g = geomean(s for d in dims if (s := speedup(recs.get((*key, d)), recs.get((*oldest, d)))) is not None)
        return Cell(f"{g:.2f}×") if g is not None else Cell("—", "missing", "no timed result on both versions")

    header = [f"d={d}" for d in dims] + ["geomean"]
    table_rows = [(k, [cell(k, d) for d in dims] + [mean(k)]) for k in rows]
    return Table("Speedup of each version over the oldest version of its framework (same device, variant, host "
                 "and d; higher is faster; ≈ inside the noise)", header, table_rows, keyer)


def host_differences(df: pd.DataFrame, hosts: tuple[str, ...]) -> list[tuple[str, list[str]]]:
    """Host facts whose value is not the same on every host: (label, one value per host)."""
    parts = {h: df[df["host"].astype(str) == h] for h in hosts}
    out = []
    for name, column in FLEET_FIELDS:
        values = [distinct(parts[h][column]) for h in hosts]
        if len(set(values)) > 1:
            out.append((name, values))
    return out


def host_table(keyer: Keys, keys: list[Key], dims: list[int], recs: Records,
               differences: list[tuple[str, list[str]]]) -> Table:
    """Cell × host: the first host's time, each other host's median over it, with the noise mark."""
    first, *others = keyer.hosts
    rows = list(dict.fromkeys((*k[:4], "") for k in keys))

    def at(key: Key, host: str, d: int) -> dict[str, Any] | None:
        return recs.get((*key[:4], host, d))

    table_rows = [
        (k, [Cell(str(d)), time_cell(at(k, first, d)),
             *(ratio_cell(at(k, h, d), at(k, first, d), f"{keyer.label(k)} {k[2]} on {first}") for h in others)])
        for k in rows for d in dims if any(at(k, h, d) is not None for h in keyer.hosts)
    ]
    header = ["d", f"{first}, ms", *(f"{h}/{first}" for h in others)]
    return Table(f"Across hosts: time per iteration on {first}, and each host's median over {first}'s (same "
                 "framework version, same d; below 1 is faster; ≈ inside the noise)", header, table_rows, keyer,
                 (["", *keyer.hosts], differences) if differences else None)
