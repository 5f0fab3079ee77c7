"""The one place a backend's name becomes a backend: a lazy registry of plugin modules.

A plugin is one module that exports ``Settings`` (a frozen dataclass whose ``parse`` checks its own keys,
one line per bad key with the fix) and ``open(name, settings, context) -> Backend``. ``--backend NAME``,
``--backend-opt KEY=VALUE`` and a hosts.toml table's ``kind = "…"`` all come here; so does every host of a
fleet. A host that cannot be reached at start becomes an ``Unreachable`` backend of its kind, so its
containers are recorded ``unavailable`` with the reason while the other hosts run.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Protocol

from orchestrator.errors import GdbenchError, InvalidOptions

if TYPE_CHECKING:
    from orchestrator.backends.base import Backend
    from orchestrator.hosts.gpus import HostGpus
    from orchestrator.hosts.inventory import HostEntry

#: Backend kind → the module that implements it. Adding a backend is one module and one line here.
PLUGINS: dict[str, str] = {
    "docker": "orchestrator.backends.docker",
    "local": "orchestrator.backends.local",
    "slurm": "orchestrator.backends.slurm",
}
DEFAULT = "docker"


class Settings(Protocol):
    """A backend's own keys (hosts.toml table or ``--backend-opt``), checked."""

    def to_dict(self) -> dict[str, Any]: ...


@dataclass
class OpenContext:
    """What opening a backend may need beyond its settings; one per sweep, shared by its hosts."""

    compose_path: str | None = None
    note: Callable[[str], None] = lambda _line: None
    #: The registry repository images are shipped through (``--registry``), where the backend ships images.
    registry: str | None = None
    #: True when the hosts come from the inventory (``--hosts``): a host that does not answer is then recorded
    #: ``unavailable`` while the others run; without it, the one backend that cannot open stops the run.
    fleet: bool = False
    #: How many hosts the sweep has.
    host_count: int = 1
    _local_gpus: HostGpus | None = None
    _shared: dict[str, Any] = field(default_factory=dict)

    @property
    def local_gpus(self) -> HostGpus:
        """NVML's answer for this machine, asked once per sweep."""
        if self._local_gpus is None:
            from orchestrator.hosts.gpus import probe

            self._local_gpus = probe()
        return self._local_gpus

    def shared(self, key: str, make: Callable[[], Any]) -> Any:
        """One object per sweep that several hosts of one kind use (e.g. the engine images are shipped from)."""
        if key not in self._shared:
            self._shared[key] = make()
        return self._shared[key]

    def close(self) -> None:
        """Close what the hosts shared (an engine connection), once the sweep or the check is over."""
        for value in self._shared.values():
            with contextlib.suppress(Exception):
                getattr(value, "close", lambda: None)()


def names() -> tuple[str, ...]:
    return tuple(PLUGINS)


def plugin(kind: str, where: str = "--backend") -> ModuleType:
    if kind not in PLUGINS:
        raise InvalidOptions(f"{where}: unknown backend kind {kind!r}; choose from {', '.join(PLUGINS)}")
    return importlib.import_module(PLUGINS[kind])


def parse_settings(kind: str, raw: Mapping[str, Any], *, where: str, base: Path | None = None) -> Settings:
    """``kind``'s settings from a hosts.toml table or ``--backend-opt`` pairs (strings); one line per bad key."""
    return plugin(kind, where).Settings.parse(dict(raw), where=where, base=base or Path.cwd())


def parse_opts(items: list[str] | None) -> dict[str, str]:
    """``--backend-opt KEY=VALUE`` (repeatable) → a mapping the backend's ``Settings.parse`` checks."""
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InvalidOptions(f"--backend-opt must be KEY=VALUE, got {item!r}")
        out[key.strip()] = value
    return out


def open_host(entry: HostEntry, context: OpenContext) -> Backend:
    """The backend of one inventory host; a host that does not answer becomes ``Unreachable`` (never raises
    for that: the rest of the sweep goes on)."""
    from orchestrator.backends.unreachable import Unreachable

    module = plugin(entry.kind, f"host {entry.name}")
    try:
        return module.open(entry.name, entry.settings, context)
    except GdbenchError as exc:
        if not context.fleet or isinstance(exc, InvalidOptions):
            raise
        return Unreachable(entry.name, entry.kind, exc.message + (f" — fix: {exc.fix}" if exc.fix else ""),
                           context.compose_path)


def open_hosts(entries: list[HostEntry], context: OpenContext) -> list[Backend]:
    """One backend per host, in inventory order; closes what it opened if one of them fails."""
    backends: list[Backend] = []
    try:
        for entry in entries:
            backends.append(open_host(entry, context))
    except BaseException:
        for b in backends:
            with contextlib.suppress(Exception):
                b.close()
        raise
    return backends


def clean_host(entry: HostEntry) -> str:
    """What a killed orchestrator left on one host, removed (its kind's ``clean``): one line saying what."""
    clean = getattr(plugin(entry.kind, f"host {entry.name}"), "clean", None)
    return clean(entry.name, entry.settings) if clean is not None else f"kind {entry.kind} leaves nothing behind"
