"""Running a bisect: declare and build each release it needs, sweep its cells beside the good release's, judge.

Each release is declared the way ``gdbench images add`` declares it (PyPI, hash lock, compose service) unless
compose.yaml already has it, and built the way ``gdbench images build`` builds it. Each measurement is one
sweep of the good release and the candidate, back to back, into a run directory of its own under the
bisect's ``runs/`` (``DIR/runs/2.4.5``, ``DIR/runs/2.4.5-x2`` when measured again with twice the repeats),
versions as keys (``numpy@2.4.5-cpu``): a pair measured minutes apart would compare the host's load, not the
releases. ``gdbench compare DIR/runs/2.4.5 --across framework_version`` reads one pair as the bisect did,
``gdbench publish DIR/runs`` all of them; ``bisect.json`` stays beside ``runs/``, out of the runs' way. Whatever
stops the bisect (the end, an error, Ctrl-C), the declarations it made are removed unless ``--keep``, and the
runs it finished stay.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.bisect.plan import RUNS, SUMMARY, BisectRequest, releases_between
from orchestrator.bisect.search import BAD, MISSING, SKIPPED, CellVerdict, Step, classify, combine, judge, search
from orchestrator.errors import EXIT_INTERRUPTED, GdbenchError, Interrupted, InvalidOptions
from orchestrator.images.compose import ComposeFile, Service, find_compose, load_compose
from orchestrator.results.noise import sample, verdict
from orchestrator.sweep.rundir import RunDir, write_json_atomic
from orchestrator.sweep.signals import signals_as_interrupts
from orchestrator.sweep.spec import run_key
from solvers import schema
from solvers.options import DEFAULTS

Note = Callable[[str], None]


@dataclass
class Report:
    """What a bisect found and did: the path, the first bad release, what it built, how long it took."""

    request: BisectRequest
    status: str = "running"
    candidates: list[str] = field(default_factory=list)
    left_out: list[str] = field(default_factory=list)
    path: list[Step] = field(default_factory=list)
    first_bad: str | None = None
    unresolved: list[str] = field(default_factory=list)
    built: list[str] = field(default_factory=list)
    #: Releases whose image existed and was rebuilt from the layer cache (its gdbench layer brought up to date).
    refreshed: list[str] = field(default_factory=list)
    declared: list[str] = field(default_factory=list)
    runs: list[str] = field(default_factory=list)
    started_utc: str = field(default_factory=schema.utc_now)
    wall_s: float = 0.0
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["request"] = self.request.to_dict()
        return out


class Bisection:
    """One bisect's images and sweeps; ``measure(release, factor)`` is the search's callback."""

    def __init__(self, req: BisectRequest, report: Report, note: Note) -> None:
        from orchestrator.backends.docker.engine import DockerEngine

        self.req, self.report, self.note = req, report, note
        self.compose_path = find_compose(req.compose)
        self.engine = DockerEngine.connect(req.docker_url)
        self.keys: dict[str, str] = {}  # release → its compose version key (``2.4.5``, ``0.11.0-py3.13``)
        self.refused: dict[str, str] = {}  # release → the one line why it cannot be declared or built

    # ------------------------------------------------------------------------------------------------ images
    def _service(self, compose: ComposeFile, release: str) -> Service | None:
        """The release's service on the bisect's Python, in the flavour's default build (not a named CUDA one)."""
        return next((s for s in compose.versions_of(self.req.framework, self.req.flavour)
                     if s.framework_version == release and s.python == self.req.python and not s.cuda_build),
                    None)

    def ready(self, release: str) -> str:
        """The release declared and built (each at most once per bisect); its version key, or ``GdbenchError``."""
        if release in self.keys:
            return self.keys[release]
        if release in self.refused:
            raise GdbenchError(self.refused[release])
        try:
            svc = self._service(load_compose(self.compose_path), release)
            if svc is None:
                from orchestrator.images.locks import add_pin

                self.report.declared.append(release)  # before: an interrupt inside add_pin still gets cleaned up
                try:
                    add_pin(self.req.framework, release, self.req.flavour, self.req.python,
                            self.compose_path.parent, self.compose_path, on_line=self.note)
                except GdbenchError:
                    self.report.declared.remove(release)  # a refused add leaves nothing behind
                    raise
                svc = self._service(load_compose(self.compose_path), release)
                assert svc is not None, "add_pin declared the service"
            from orchestrator.images.build import build_declared

            # Built even where the tag exists: an image from an older gdbench cannot run this one's solver
            # options, and a current one rebuilds from the layer cache in seconds.
            existed = self.engine.image(svc.image) is not None
            build_declared(load_compose(self.compose_path), [svc])
            (self.report.refreshed if existed else self.report.built).append(release)
        except GdbenchError as exc:
            self.refused[release] = exc.message
            raise
        self.keys[release] = svc.version_key or release
        return self.keys[release]

    def cleanup(self) -> list[str]:
        """Remove the declarations this bisect made (unless ``--keep``); returns a line per one that resisted."""
        if self.req.keep:
            return []
        from orchestrator.images.locks import remove_pin

        problems = []
        for release in reversed(self.report.declared):
            try:
                remove_pin(self.req.framework, release, self.req.flavour, self.req.python, self.compose_path.parent,
                           self.compose_path)
            except InvalidOptions:
                pass  # interrupted before add_pin wrote anything: nothing to remove
            except (GdbenchError, OSError) as exc:
                problems.append(f"could not remove {self.req.framework} {release}'s declaration: {exc}")
        return problems

    # ------------------------------------------------------------------------------------------------ sweeps
    def _given(self, factor: int, keys: list[str]) -> dict[str, Any]:
        """``gdbench run``'s options for one sweep at ``factor``: more repeats, a longer budget, a narrower CI."""
        s, cells = self.req.sweep, self.req.cells
        return {
            **{k: v for k, v in s.items() if k not in ("repeats", "max_repeats", "row_budget_s", "ci_width")},
            "frameworks": [f"{self.req.framework}@{k}" for k in keys],
            "devices": list(dict.fromkeys(c.device for c in cells)),
            "variants": list(dict.fromkeys(c.variant for c in cells)),
            "dims": list(dict.fromkeys(c.dim for c in cells)),
            "flavour": self.req.flavour,
            "repeats": (s.get("repeats") or DEFAULTS.repeats) * factor,
            "max_repeats": (s.get("max_repeats") or DEFAULTS.max_repeats) * factor,
            "row_budget_s": (s.get("row_budget_s") or DEFAULTS.row_budget_s) * factor,
            "ci_width": (s.get("ci_width") if s.get("ci_width") is not None else DEFAULTS.ci_width) / factor,
        }

    def sweep(self, release: str, factor: int, keys: list[str]) -> RunDir:
        """One sweep of ``keys`` (the good release, then the candidate) into the pair's own run directory; a
        directory an interrupted bisect left is resumed (what it holds is not run again)."""
        from orchestrator.sweep.progress import SweepProgress
        from orchestrator.sweep.request import build_request
        from orchestrator.sweep.runner import run_sweep

        run_dir = RunDir(self.req.out / RUNS / (release if factor == 1 else f"{release}-x{factor}"))
        if str(run_dir.path) not in self.report.runs:
            self.report.runs.append(str(run_dir.path))
        resume = run_dir.holds_run()
        request = build_request(self._given(factor, keys), out=None if resume else run_dir.path,
                                resume=run_dir.path if resume else None, hosts=None, hosts_file=None,
                                registry_repo=None, backend_opts=None, compose=str(self.compose_path),
                                docker_url=self.req.docker_url)
        code, _ = run_sweep(request, SweepProgress())
        if code == EXIT_INTERRUPTED:
            raise KeyboardInterrupt
        return run_dir

    def _row(self, run_dir: RunDir, key: str, cell: Any) -> dict[str, Any] | None:
        path = run_dir.document_path(run_key(self.req.framework, cell.device, key))
        if not path.is_file():
            return None
        doc = run_dir.read_document(path.stem)
        row = next((r for r in doc["results"] if r["variant"] == cell.variant and r["dim"] == cell.dim), None)
        if row is None:
            return {"status": doc["status"], "reason": doc.get("error") or "the cell is not in the document"}
        return {**row, "iters": doc["problem"]["iters"]}

    def measure(self, release: str, factor: int) -> Step:
        """The release's cells against the good release's, both swept at ``factor`` in the same run directory."""
        try:
            key = self.ready(release)
        except GdbenchError as exc:
            return Step(release, SKIPPED, factor, note=exc.message)
        good_key = self.ready(self.req.good)
        run_dir = self.sweep(release, factor, [good_key, key])
        cells, reasons = [], []
        for cell in self.req.cells:
            good_row, row = self._row(run_dir, good_key, cell), self._row(run_dir, key, cell)
            a, b = sample(good_row), sample(row)
            if not a.ok:
                raise GdbenchError(f"the good release {self.req.good} has no times for {cell.label} at ×{factor} "
                                   f"({a.status}: {a.reason})", fix=f"look at {run_dir.path}")
            v = verdict(a, b, self.req.alpha, self.req.min_effect)
            outcome = classify(v, self.req.min_effect) if b.ok else MISSING
            warnings = ", ".join(f"{side} {'/'.join(x.flags)}" for side, x in ((self.req.good, a), (release, b))
                                 if x.flags)
            cells.append(CellVerdict(cell.label, a.median, b.median if b.ok else None, v, outcome, warnings))
            if outcome == MISSING:
                reasons.append(f"{cell.label} {b.status}: {b.reason or 'no times'}"[:200])
        return Step(release, combine([c.outcome for c in cells]), factor, tuple(cells), "; ".join(reasons))


def write_summary(report: Report) -> None:
    report.request.out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(report.request.out / SUMMARY, report.to_dict())


def run_bisect(req: BisectRequest, note: Note) -> Report:
    """The whole bisect: confirm the bad release is slower, then search the releases between; always clean up."""
    start = time.monotonic()
    report = Report(req)
    bisection: Bisection | None = None
    with signals_as_interrupts() as guard:
        try:
            bisection = Bisection(req, report, note)
            report.candidates, report.left_out = releases_between(req.framework, req.good, req.bad, req.pre)
            write_summary(report)
            for release in (req.good, req.bad):
                bisection.ready(release)

            def step(release: str) -> Step:
                assert bisection is not None
                done = judge(release, bisection.measure, req.factors)
                report.path.append(done)
                write_summary(report)
                return done

            first = step(req.bad)
            if first.outcome == SKIPPED:
                raise GdbenchError(f"the bad release {req.bad} could not be measured: {first.note}")
            if first.outcome == BAD:
                found = search(report.candidates, req.bad, step)
                report.first_bad, report.unresolved = found.first_bad, found.unresolved
            report.status = "complete"
        except (KeyboardInterrupt, Interrupted):
            report.status = "interrupted"
        except GdbenchError as exc:
            report.status, report.error = "failed", exc.message
            raise
        finally:
            guard.armed = False  # from here on a signal cannot cut the cleanup short
            if bisection is not None:
                for line in bisection.cleanup():
                    note(line)
            report.wall_s = round(time.monotonic() - start, 1)
            if (req.out / SUMMARY).is_file():
                write_summary(report)
    return report


def load_summary(path: Path) -> dict[str, Any]:
    return json.loads((path / SUMMARY).read_text(encoding="utf-8"))
