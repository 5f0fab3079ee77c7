"""The run directory, owned here alone: its layout, its lock, its manifest and the walk over its documents.

A run directory holds ``manifest.json`` (what was asked, what each container did), one validated solver
document per container (``<key>.json``) and a lock file while a sweep writes it. Every reader and writer
(the runner, resume, merge, report) asks this module; nobody else spells a file name or parses the manifest.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.errors import InvalidOptions, RunDirLocked
from solvers import schema

MANIFEST = "manifest.json"
LOCK_NAME = ".gdbench.lock"


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

    def read_manifest(self) -> dict[str, Any]:
        """The manifest, or ``{}`` where there is none; an unreadable one is one clear error."""
        if not self.manifest_path.exists():
            return {}
        try:
            data = json.loads(self.manifest_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InvalidOptions(f"{self.manifest_path}: unreadable manifest ({exc})",
                                 fix=f"restore or remove {self.manifest_path}") from None
        if not isinstance(data, dict):
            raise InvalidOptions(f"{self.manifest_path}: manifest is not a JSON object")
        return data

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        write_json_atomic(self.manifest_path, manifest)

    def run_id(self) -> str:
        return str(self.read_manifest().get("run_id") or self.path.name)

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
