"""``gdbench publish``: one static site over many runs, rebuilt incrementally from a per-source extract cache.

Loading results (schema validation, pandas, parquet) is the only costly step, so the site keeps what it read:
``data/runs/<fingerprint>.json`` holds the rows of one source (a run directory or a merged file) and
``data/publish.json`` maps each source path to its content fingerprint. On a re-publish a source whose
fingerprint is cached is not read again; only new or changed sources go through ``load_runs``. The pages are
then rendered from the cached rows, which is cheap, and a page whose text did not change is not rewritten.
The site holds exactly the sources given: cached sources not given again are pruned.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import math
import os
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.errors import InvalidOptions
from orchestrator.results.merge import load_runs
from orchestrator.results.noise import ALPHA, MIN_EFFECT
from orchestrator.results.publish_model import Run
from orchestrator.results.publish_pages import write_site
from orchestrator.sweep.rundir import MANIFEST, RunDir
from solvers.schema import write_atomic

#: The cache's layout version; a site written with another is rebuilt from the results.
CACHE_FORMAT = 1
DATA_DIR = "data"
CACHE_MANIFEST = "publish.json"
#: The merged columns a page shows or the noise rule reads; everything else stays in the results.
KEEP = (
    "run_id", "framework", "framework_version", "device", "variant", "dim", "status", "reason", "flags",
    "repeat_times_s", "time_per_iter_s", "iters", "repeats", "n", "dtype", "threads", "cpu_model", "hostname",
    "timestamp_utc", "python_version", "numpy_version", "blas", "gpu_name", "gpu_driver_version",
    "cuda_driver_version", "cuda_runtime", "image_tag", "image_digest", "host", "host_hostname", "host_kernel",
    "host_os", "source",
)
Warn = Callable[[str], None]


def _warn(msg: str) -> None:
    print(msg, file=sys.stderr)


@dataclass
class Published:
    """What one publish did: the index page, and which sources were read from the results or the cache."""

    index: Path
    runs: list[Run]
    read: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    written: list[Path] = field(default_factory=list)


def _plain(value: Any) -> Any:
    """A merged value as JSON: NaN and pandas' missing values become null, arrays become lists."""
    if value is None:
        return None
    if hasattr(value, "tolist") and not isinstance(value, str):
        value = value.tolist()
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, float):
        return None if math.isnan(value) else value
    try:
        if value != value:  # pd.NA, NaT
            return None
    except (TypeError, ValueError):
        return None
    return value


def _run_files(path: Path) -> list[Path]:
    run = RunDir(path)
    return [p for p in [run.manifest_path, *run.document_paths()] if p.is_file()]


def fingerprint(path: Path) -> str:
    """A run directory's or merged file's content hash (its documents and manifest, and the directory name,
    which is the run id when no manifest names one)."""
    h = hashlib.sha256()
    if path.is_dir():
        h.update(f"dir:{path.name}\0".encode())
        for file in _run_files(path):
            h.update(f"{file.name}\0".encode())
            h.update(file.read_bytes())
    else:
        h.update(f"file:{path.suffix}\0".encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def _holds_run(path: Path) -> bool:
    return (path / MANIFEST).is_file() or any(RunDir(path).document_paths())


def sources(paths: Sequence[Path | str], out: Path) -> list[Path]:
    """Every results path as given, a directory of run directories (``results/``) opened into its runs;
    refused in one line when a path is missing or holds no run."""
    found: list[Path] = []
    site = out.resolve()
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise InvalidOptions(f"{path}: no such file or directory",
                                 fix="give run directories written by `gdbench run` or files from `gdbench merge`")
        if path.is_dir() and not _holds_run(path):
            runs = sorted(p for p in path.iterdir() if p.is_dir() and p.resolve() != site and _holds_run(p))
            if not runs:
                raise InvalidOptions(f"{path}: holds no run (no manifest.json, no result document, no run "
                                     "directory inside)", fix="give a directory written by `gdbench run` or a "
                                     "file from `gdbench merge`")
            found.extend(runs)
        elif path.is_file() and path.suffix not in (".parquet", ".csv"):
            raise InvalidOptions(f"{path}: not a run directory, .parquet or .csv file",
                                 fix="give a directory written by `gdbench run` or a file from `gdbench merge`")
        else:
            found.append(path)
    return list(dict.fromkeys(found))


def read_source(path: Path, warn: Warn = _warn) -> list[dict[str, Any]]:
    """The rows of one source through ``load_runs`` (the one reader of results), reduced to ``KEEP``; a source
    without one valid document is refused in one line, naming the first file it skipped."""
    notes: list[str] = []
    df = load_runs([path], notes.append)
    if df.empty:
        why = f"; {len(notes)} file(s) skipped, the first: {' '.join(notes[0].split())}" if notes else ""
        raise InvalidOptions(f"{path}: holds no run (no valid result document{why})",
                             fix="give a directory written by `gdbench run` or a file from `gdbench merge`")
    for note in notes:  # a source that loads says what it skipped; one that does not is one line above
        warn(note)
    return [{k: _plain(rec.get(k)) for k in KEEP} for rec in df.to_dict("records")]


# ------------------------------------------------------------------------------------------------ the cache


class Cache:
    """The site's extract cache: ``data/publish.json`` and one ``data/runs/<fingerprint>.json`` per source."""

    def __init__(self, site: Path) -> None:
        self.site = site
        self.manifest_path = site / DATA_DIR / CACHE_MANIFEST
        self.dir = site / DATA_DIR / "runs"

    def manifest(self) -> dict[str, Any]:
        try:
            data = json.loads(self.manifest_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) and data.get("format") == CACHE_FORMAT else {}

    def rows(self, digest: str) -> list[dict[str, Any]] | None:
        """The cached rows of a fingerprint, None when absent or unreadable (then the source is read again)."""
        try:
            data = json.loads((self.dir / f"{digest}.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        rows = data.get("rows") if isinstance(data, dict) else None
        return rows if isinstance(rows, list) else None

    def store(self, entries: dict[str, tuple[str, list[dict[str, Any]]]], read: list[str],
              reused: list[str]) -> None:
        """Write new extracts, drop those no source uses any more, then the manifest (last: a crash in between
        leaves extracts that the next publish simply reuses)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        wanted = {digest for digest, _ in entries.values()}
        for source, (digest, rows) in entries.items():
            path = self.dir / f"{digest}.json"
            if source in read or not path.exists():
                write_atomic(path, json.dumps({"source": source, "rows": rows}, allow_nan=False))
        for stale in self.dir.glob("*.json"):
            if stale.stem not in wanted:
                stale.unlink()
        manifest = {"format": CACHE_FORMAT, "sources": {s: d for s, (d, _) in entries.items()},
                    "read": read, "reused": reused}
        write_atomic(self.manifest_path, json.dumps(manifest, indent=1) + "\n")


def _check_out(out: Path) -> None:
    """A site directory is created here or was written by publish: never fill someone else's folder."""
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not Cache(out).manifest_path.exists())):
        raise InvalidOptions(f"{out} exists and is not a site written by gdbench publish",
                             fix="choose a new or empty --out directory")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "run"


def group_runs(entries: dict[str, tuple[str, list[dict[str, Any]]]]) -> list[Run]:
    """One ``Run`` per (source, run_id), oldest first; a run id held by two sources gets a source hash in
    its page name so that neither page hides the other."""
    pairs: list[tuple[str, str, list[dict[str, Any]]]] = []
    for source, (_, rows) in entries.items():
        by_id: dict[str, list[dict[str, Any]]] = {}
        for row in rows:
            by_id.setdefault(str(row["run_id"]), []).append(row)
        pairs.extend((source, run_id, part) for run_id, part in by_id.items())
    owners: dict[str, int] = {}
    for _, run_id, _ in pairs:
        owners[_slug(run_id)] = owners.get(_slug(run_id), 0) + 1
    runs = []
    for source, run_id, rows in pairs:
        key = _slug(run_id)
        if owners[key] > 1:
            key += "-" + hashlib.sha256(source.encode()).hexdigest()[:8]
        runs.append(Run(key, run_id, source, rows))
    return sorted(runs, key=lambda r: (r.date, r.run_id, r.key))


def publish(paths: Sequence[Path | str], out: Path, alpha: float = ALPHA, min_effect: float = MIN_EFFECT,
            warn: Warn = _warn) -> Published:
    """Build or update the site in ``out``: read only the sources the cache does not hold, render every page.

    Every check (paths, results, the out directory) runs before anything is written: a refusal builds nothing.
    """
    _check_out(out)
    cache = Cache(out)
    known = cache.manifest().get("sources", {})
    entries: dict[str, tuple[str, list[dict[str, Any]]]] = {}
    read: list[str] = []
    reused: list[str] = []
    for path in sources(paths, out):
        source, digest = str(path.resolve()), fingerprint(path)
        rows = cache.rows(digest) if digest in known.values() else None  # a moved source is found by content
        if rows is None:
            rows = read_source(path, warn)
            read.append(source)
        else:
            reused.append(source)
        entries[source] = (digest, rows)
    with _locked(out):
        cache.store(entries, read, reused)
        runs = group_runs(entries)
        written = write_site(runs, out, alpha, min_effect)
    return Published(out / "index.html", runs, read, reused, written)


@contextlib.contextmanager
def _locked(out: Path) -> Iterator[None]:
    """One publish at a time per site: a second waits for the first instead of interleaving their pages."""
    (out / DATA_DIR).mkdir(parents=True, exist_ok=True)
    fd = os.open(out / DATA_DIR / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock
