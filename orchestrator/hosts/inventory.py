"""The hosts a sweep may run on: ``hosts.toml``, one ``[hosts.NAME]`` table per host.

A table names its backend with ``kind`` (default ``docker``; the registry lists the others) and may set the
keys every kind shares — ``cpuset``, ``threads``, ``gpus``, which describe that machine — beside the kind's
own keys (a Docker engine's ``url``, a Slurm partition), which the kind's ``Settings`` checks. Everything is
checked when the file is read, before any host is contacted: a bad table is one line naming the host, the
key and the fix. Without a hosts file there is one host, ``local``: the engine the environment names.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.backends import registry
from orchestrator.errors import InvalidOptions, InventoryError

DEFAULT_FILE = "hosts.toml"
LOCAL = "local"
#: Keys every kind of host knows; the rest of a table belongs to its kind.
COMMON_KEYS = ("kind", "cpuset", "threads", "gpus")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")


@dataclass(frozen=True)
class HostEntry:
    """One host of the inventory, checked: its name, its backend kind and that kind's settings."""

    name: str
    kind: str = registry.DEFAULT
    settings: Any = None
    cpuset: list[int] | None = None
    threads: int | None = None
    gpus: list[str] = field(default_factory=list)

    def warning(self) -> str | None:
        """A line every run prints for this host (e.g. an engine reached without TLS), or None."""
        warn = getattr(self.settings, "warning", None)
        return warn(self.name) if warn is not None else None

    @property
    def address(self) -> str:
        return str(getattr(self.settings, "address", self.kind))


def local_host(kind: str = registry.DEFAULT, opts: dict[str, str] | None = None) -> HostEntry:
    """The host of a run without ``--hosts``: this machine, through ``--backend`` and ``--backend-opt``."""
    return HostEntry(name=LOCAL, kind=kind,
                     settings=registry.parse_settings(kind, opts or {}, where="--backend-opt"))


def load(path: str | Path | None = None) -> dict[str, HostEntry]:
    """The inventory in file order: ``--hosts-file`` (must exist), else ``./hosts.toml`` if present, else ``local``."""
    explicit = path is not None
    file = Path(path) if explicit else Path(DEFAULT_FILE)
    if not file.is_file():
        if explicit:
            raise InventoryError(f"hosts file {file} does not exist",
                                 fix=f"write one [hosts.NAME] table per host in {file}, or drop --hosts-file")
        return {LOCAL: local_host()}
    try:
        raw = tomllib.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise InventoryError(f"cannot read hosts file {file}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise InventoryError(f"{file}: not valid TOML ({exc})", fix=f"fix the syntax of {file}") from None
    return parse(raw, base=file.parent, source=str(file))


def parse(raw: dict[str, Any], *, base: Path, source: str) -> dict[str, HostEntry]:
    extra = sorted(set(raw) - {"hosts"})
    if extra:
        raise InventoryError(f"{source}: unknown top-level key(s) {', '.join(extra)}; only [hosts.NAME] tables")
    tables = raw.get("hosts")
    if not isinstance(tables, dict) or not tables:
        raise InventoryError(f"{source} defines no hosts", fix='add e.g. [hosts.gpu1] with url = "ssh://me@gpu1"')
    return {name: _entry(name, table, base, source) for name, table in tables.items()}


def _entry(name: str, table: Any, base: Path, source: str) -> HostEntry:
    where = f"{source}: host {name}"
    if not _NAME.fullmatch(name) or name == "all":
        raise InventoryError(f"{where}: a host name is letters, digits, '.', '_' or '-' (and not 'all')")
    if not isinstance(table, dict):
        raise InventoryError(f"{where}: must be a table ([hosts.{name}])")
    kind = table.get("kind", registry.DEFAULT)
    if kind not in registry.names():
        raise InventoryError(f"{where}: unknown kind {kind!r}; choose from {', '.join(registry.names())}")
    own = {k: v for k, v in table.items() if k not in COMMON_KEYS}
    if kind == registry.DEFAULT and not own:
        raise InventoryError(f"{where}: give exactly one of url = \"tcp://…\" / \"ssh://…\" / \"unix://…\" "
                             "or context = \"NAME\"")
    try:
        settings = registry.parse_settings(kind, own, where=where, base=base)
    except InventoryError:
        raise
    except InvalidOptions as exc:
        raise InventoryError(exc.message, fix=exc.fix) from None
    return HostEntry(name=name, kind=kind, settings=settings, cpuset=_cpuset(table.get("cpuset"), where),
                     threads=_threads(table.get("threads"), where), gpus=_gpus(table.get("gpus"), where))


def _cpuset(value: Any, where: str) -> list[int] | None:
    if value is None:
        return None
    from orchestrator.sweep.spec import parse_cpuset

    if isinstance(value, list) and all(isinstance(v, int) and v >= 0 for v in value) and value:
        return sorted(set(value))
    if isinstance(value, str):
        try:
            return parse_cpuset(value)
        except InvalidOptions as exc:
            raise InventoryError(f"{where}: cpuset: {exc.message}") from None
    raise InventoryError(f"{where}: cpuset must be a string like \"0-3,6\" or a list of CPU numbers")


def _threads(value: Any, where: str) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise InventoryError(f"{where}: threads must be a positive integer, got {value!r}")
    return value


def _gpus(value: Any, where: str) -> list[str]:
    if value is None:
        return []
    items = [value] if isinstance(value, (int, str)) and not isinstance(value, bool) else value
    if not isinstance(items, list) or not items or not all(
            (isinstance(g, int) and not isinstance(g, bool) and g >= 0) or (isinstance(g, str) and g.strip())
            for g in items):
        raise InventoryError(f"{where}: gpus must be GPU indices or UUIDs, e.g. gpus = [0] or gpus = [\"GPU-…\"]")
    return [str(g).strip() for g in items]


def select(hosts: dict[str, HostEntry], text: str | None) -> list[HostEntry]:
    """``--hosts a,b`` (or ``all``) against the inventory. Without ``--hosts`` a sweep runs where it always
    has: the file's ``local`` table if it has one, else the environment's engine — a fleet never runs by
    accident because a hosts file lies in the current directory."""
    if text is None or not text.strip():
        return [hosts.get(LOCAL, local_host())]
    if text.strip() == "all":
        return list(hosts.values())
    names = list(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    known = {**hosts, LOCAL: hosts.get(LOCAL, local_host())}
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise InventoryError(f"unknown host(s) {', '.join(unknown) or repr(text)}; the inventory has "
                             f"{', '.join(known)}", fix="add a [hosts.NAME] table to the hosts file")
    return [known[n] for n in names]
