"""Where the project lives (compose.yaml, recipes, locks, build scripts), why there, and making one.

An installed gdbench has none of these beside its code, so one place says where they are, in this order:
``--project`` or ``$GDBENCH_PROJECT`` (it must be a project), the current directory when it is one, the checkout
this gdbench runs from, else the user data dir (``$XDG_DATA_HOME/gdbench/project``). The user data dir, and any
directory ``gdbench init`` made, is written from the files the installed package carries (``gdbench_project``
and ``solvers``) and refreshed when another gdbench carries other ones; a file the user changed stays as it is.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from orchestrator.errors import ComposeError, GdbenchError, InvalidOptions

PROJECT_ENV = "GDBENCH_PROJECT"
COMPOSE_ENV = "GDBENCH_COMPOSE"
#: What makes a directory a project: the declarations, the recipes and locks, the build scripts, and the
#: solvers sources every image's wheel is built from.
MARKERS = ("compose.yaml", "images", "scripts", "solvers")
#: In a project this gdbench wrote: which version wrote it, and the hash of every file as it was written.
MANIFEST = ".gdbench-project.json"
WHAT = "a directory with compose.yaml, images/, scripts/ and solvers/"


@dataclass(frozen=True)
class Project:
    """A project directory and why it is the one in use (said by ``gdbench doctor``)."""

    root: Path
    source: str
    #: ``compose.yaml`` in ``root``, or the file ``--compose`` named (then ``root`` is its folder).
    compose_file: Path | None = None

    @property
    def compose(self) -> Path:
        return self.compose_file or self.root / "compose.yaml"


def missing_markers(path: Path) -> list[str]:
    return [m for m in MARKERS if not (path / m).exists()]


def user_dir() -> Path:
    """``$XDG_DATA_HOME/gdbench/project``; a relative XDG_DATA_HOME is ignored, as the XDG spec says."""
    data = os.environ.get("XDG_DATA_HOME", "")
    base = Path(data) if os.path.isabs(data) else Path.home() / ".local" / "share"
    return base / "gdbench" / "project"


def checkout() -> Path:
    """The tree this module lies in: a gdbench checkout when run from one, site-packages when installed."""
    return Path(__file__).resolve().parents[1]


def locate(compose: str | Path | None = None, project: str | Path | None = None,
           note: Callable[[str], None] | None = None) -> Project:
    """What a command works in: ``--compose``'s folder, ``--project``, ``$GDBENCH_COMPOSE``'s folder, then
    ``resolve``'s order. A named compose file is taken as it is (its folder need not be a whole project)."""
    if compose or (project is None and os.environ.get(COMPOSE_ENV)):
        path = Path(compose or os.environ[COMPOSE_ENV])
        if not path.is_file():
            raise ComposeError(f"compose file {path} does not exist",
                               fix="pass --compose PATH to the project's compose.yaml")
        return Project(path.resolve().parent, "--compose" if compose else f"${COMPOSE_ENV}", path)
    return resolve(project, note)


def resolve(explicit: str | Path | None = None, note: Callable[[str], None] | None = None) -> Project:
    """The project directory in use; one line with its fix (exit 2) for a named one that is not a project."""
    if explicit is not None or os.environ.get(PROJECT_ENV):
        where = "--project" if explicit is not None else f"${PROJECT_ENV}"
        root = Path(explicit if explicit is not None else os.environ[PROJECT_ENV]).expanduser()
        _check_named(root, where)
        refresh_if_managed(root, note)
        return Project(root.resolve(), where)
    for root, source in ((Path.cwd(), "the current directory"), (checkout(), "the gdbench checkout")):
        if not missing_markers(root):
            refresh_if_managed(root, note)
            return Project(root.resolve(), source)
    root = user_dir()
    materialise(root, note)
    return Project(root, "the user data dir")


def _check_named(root: Path, where: str) -> None:
    if not root.is_dir():
        raise InvalidOptions(f"{where} {root}: no such directory",
                             fix=f"gdbench init {root} (copies this gdbench's project files there), or name {WHAT}")
    missing = missing_markers(root)
    if missing:
        raise InvalidOptions(f"{where} {root} is not a gdbench project: it lacks {', '.join(missing)}",
                             fix=f"name {WHAT} (gdbench init DIR makes one)")


def init(dest: Path, note: Callable[[str], None] | None = None) -> Project:
    """``gdbench init DIR``: a project of the user's own, written from this gdbench's files."""
    if dest.exists() and not (dest / MANIFEST).is_file() and any(dest.iterdir()):
        what = "already a gdbench project" if not missing_markers(dest) else "not empty"
        raise InvalidOptions(f"gdbench init {dest}: it is {what}",
                             fix="use it with --project, or give a new or empty directory")
    materialise(dest, note)
    return Project(dest.resolve(), "gdbench init")


# ------------------------------------------------------------------------------ the files the package carries


def shipped() -> dict[str, Path]:
    """Project-relative path → the file this gdbench carries: ``gdbench_project``'s files and ``solvers``."""
    try:
        import gdbench_project
    except ImportError as exc:
        raise GdbenchError("this gdbench carries no project files (its gdbench_project package is missing)",
                           fix="reinstall gdbench from its wheel, or pass --project with a gdbench checkout") from exc
    import solvers

    files = dict(_walk(gdbench_project.FILES, ""))
    files.pop("__init__.py", None)
    files.update(_walk(Path(solvers.__file__).resolve().parent, "solvers/"))
    return files


def _walk(top: Path, prefix: str) -> Iterator[tuple[str, Path]]:
    """Every file under ``top`` (links followed: in a checkout gdbench_project links to the tree), no bytecode."""
    for folder, dirs, names in os.walk(top, followlinks=True):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        rel = Path(folder).relative_to(top)
        for name in sorted(names):
            if not name.endswith(".pyc"):
                yield prefix + (rel / name).as_posix(), Path(folder) / name


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def refresh_if_managed(root: Path, note: Callable[[str], None] | None) -> None:
    """A directory gdbench wrote follows the installed gdbench; a checkout or a hand-made one is never touched."""
    if (root / MANIFEST).is_file():
        materialise(root, note)


def materialise(dest: Path, note: Callable[[str], None] | None = None) -> list[str]:
    """Write the carried files into ``dest`` where they are absent or still as an earlier gdbench wrote them;
    keep the ones the user changed. Returns those kept. A no-op when nothing carried has changed."""
    files = {rel: path.read_bytes() for rel, path in shipped().items()}
    hashes = {rel: _sha(data) for rel, data in files.items()}
    digest = _sha(json.dumps(hashes, sort_keys=True).encode())
    manifest = dest / MANIFEST
    try:
        before = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        before = {}
    if before.get("digest") == digest:
        return []
    written_before: dict[str, str] = before.get("files") or {}
    kept, wrote = [], 0
    for rel, data in files.items():
        target = dest / rel
        if target.is_file():
            now = _sha(target.read_bytes())
            if now == hashes[rel]:
                continue
            if now != written_before.get(rel):  # the user's change (or a file gdbench never wrote): theirs
                kept.append(rel)
                continue
        _write(target, data)
        wrote += 1
    _write(manifest, (json.dumps({"gdbench": _version(), "digest": digest, "files": hashes}, indent=1,
                                 sort_keys=True) + "\n").encode())
    say = note or (lambda line: print(line, file=sys.stderr))
    verb = "refreshed" if before else "made"
    say(f"gdbench: {verb} the project directory {dest} from gdbench {_version()} ({wrote} files)"
        + (f"; kept your changes to {', '.join(kept)}" if kept else ""))
    return kept


def _write(target: Path, data: bytes) -> None:
    """Whole files only: another gdbench reading the project at the same time sees the old or the new one."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, target)


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("gdbench")
    except metadata.PackageNotFoundError:
        return "unknown"
