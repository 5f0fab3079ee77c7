"""The run directory, owned here alone: its layout, its lock, its manifest and the walk over its documents.

A run directory holds ``manifest.json`` (what was asked, what each container did), one validated solver
document per container (``<key>.json``) and a lock file while a sweep writes it. Every reader and writer
(the runner, resume, merge, report) asks this module; nobody else spells a file name or parses the manifest.
The manifest is a typed, versioned ``Manifest`` with one loader: an older one is read and migrated, a newer
one is refused in one line.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from orchestrator.errors import InvalidOptions, RunDirLocked
from solvers import schema

MANIFEST = "manifest.json"
LOCK_NAME = ".gdbench.lock"
#: The manifest's format. 1: no version key. 2: ``format_version``, ``backend_opts`` (what --resume reopens a
#: run's backend with) and host records with ``engine``/``engine_version`` in place of ``docker_version``.
MANIFEST_FORMAT = 2


@dataclass(frozen=True)
class Manifest:
    """What a run asked for and what each of its containers did; rewritten after every container.

    ``sweep`` is the options the containers ran with where every host runs the same (one host: threads and
    cpuset resolved), else as asked; ``hosts`` then holds each host's own record, threads and cpuset.
    """

    run_id: str | None = None
    status: str | None = None
    started_utc: str | None = None
    resumed_utc: str | None = None
    finished_utc: str | None = None
    backend: str | None = None
    backend_opts: dict[str, Any] = field(default_factory=dict)
    compose: str | None = None
    sweep: dict[str, Any] = field(default_factory=dict)
    host: dict[str, Any] | None = None
    hosts: dict[str, Any] | None = None
    fleet: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)
    containers: list[dict[str, Any]] = field(default_factory=list)
    overhead: dict[str, Any] | None = None
    format_version: int = MANIFEST_FORMAT

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("resumed_utc", "hosts", "fleet"):  # present only where they mean something, as always
            if out[key] is None:
                out.pop(key)
        return out

    def with_(self, **changes: Any) -> Manifest:
        return replace(self, **changes)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = MANIFEST) -> Manifest:
        """Any manifest gdbench wrote: version 1 is migrated (its ``sweep`` is what was asked), a newer format
        than this gdbench knows is refused in one line."""
        version = data.get("format_version", 1)
        if not isinstance(version, int) or version > MANIFEST_FORMAT:
            raise InvalidOptions(f"{where}: manifest format {version!r} is newer than this gdbench reads "
                                 f"(format {MANIFEST_FORMAT})", fix="upgrade gdbench to read this run")
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known and v is not None}
        values["format_version"] = MANIFEST_FORMAT
        return cls(**values)


def _warn(msg: str) -> None:
    print(msg, file=sys.stderr)


@dataclass(frozen=True)
class RunDir:
    """One run directory on disk (it may not exist yet)."""

    path: Path

    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST

    def holds_run(self) -> bool:
        """True once a sweep has written its manifest here."""
        return self.manifest_path.exists()

    def manifest(self) -> Manifest:
        """The manifest (empty where there is none): the one loader; an unreadable one is one clear error."""
        if not self.manifest_path.exists():
            return Manifest()
        try:
            data = json.loads(self.manifest_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InvalidOptions(f"{self.manifest_path}: unreadable manifest ({exc})",
                                 fix=f"restore or remove {self.manifest_path}") from None
        if not isinstance(data, dict):
            raise InvalidOptions(f"{self.manifest_path}: manifest is not a JSON object")
        return Manifest.from_dict(data, str(self.manifest_path))

    def write_manifest(self, manifest: Manifest | Mapping[str, Any]) -> None:
        if not isinstance(manifest, Manifest):
            manifest = Manifest.from_dict(manifest, str(self.manifest_path))
        write_json_atomic(self.manifest_path, manifest.to_dict())

    def run_id(self) -> str:
        return str(self.manifest().run_id or self.path.name)

    def document_path(self, key: str) -> Path:
        return self.path / f"{key}.json"

    def document_paths(self) -> list[Path]:
        return sorted(p for p in self.path.glob("*.json") if p.name != MANIFEST)

    def documents(self, warn: Callable[[str], None] | None = _warn) -> list[tuple[Path, dict[str, Any]]]:
        """Every valid document in name order; an invalid file is reported through ``warn`` and skipped."""
        docs = []
        for path in self.document_paths():
            try:
                docs.append((path, schema.loads(path.read_text(encoding="utf-8"))))
            except (schema.SchemaError, OSError, UnicodeDecodeError) as exc:
                if warn is not None:
                    warn(f"skipping {path}: {exc}")
        return docs

    def documents_by_key(self) -> dict[str, dict[str, Any]]:
        """Valid documents keyed by file stem (what resume compares with the plan); invalid ones are absent."""
        return {path.stem: doc for path, doc in self.documents(warn=None)}

    def done_keys(self) -> set[str]:
        """Keys of the valid documents that did not fail: what a resumed run keeps instead of running again.

        A host that did not answer at start left ``unavailable`` documents that say nothing about the host
        (``provenance.host.reachable`` false): a resume tries those again, once the host may be back.
        """
        def done(doc: dict[str, Any]) -> bool:
            host = doc["provenance"].get("host") or {}
            return doc["status"] != "failed" and host.get("reachable", True) is not False

        return {key for key, doc in self.documents_by_key().items() if done(doc)}

    def read_document(self, key: str) -> dict[str, Any]:
        """One stored document, checked on the way in like any other input."""
        return schema.loads(self.document_path(key).read_text(encoding="utf-8"))

    def write_document(self, key: str, doc: dict[str, Any]) -> Path:
        """Validate (nothing invalid is ever stored), then write atomically."""
        schema.validate(doc)
        path = self.document_path(key)
        write_json_atomic(path, doc)
        return path

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold an exclusive flock on the directory: two orchestrators never write the same run."""
        self.path.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
                raise RunDirLocked(f"{self.path} is in use by another gdbench run (pid {holder})",
                                   fix="wait for it to finish or choose another --out") from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
            yield
        finally:
            os.close(fd)  # closing releases the lock


def write_json_atomic(path: Path, data: Any) -> None:
    """JSON through ``solvers.schema.write_atomic``: temp file + rename, so readers never see half a file."""
    schema.write_atomic(path, json.dumps(data, indent=2, allow_nan=False) + "\n")
