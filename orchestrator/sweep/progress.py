"""Progress and summary on stderr (rich): stdout stays for data.

Progress is driven by the solver's own stderr lines (``fw/device/variant d=N …`` when a measurement starts,
``  ok: …``/``  failed: …`` when it ends), read live from the container's log stream.

On a terminal that is a rich progress bar per container. Elsewhere (CI, nohup, a log file) a bar cannot redraw:
rich would print the bars once, when the sweep ends, and nothing before. There the bars are off and the console
gets one plain line when a container starts (``start KEY``; the key names framework, version, device and host)
and one when it ends (``end   KEY STATUS R/N rows ok, F failed, S s: reason``).
"""

from __future__ import annotations

import re
import time
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

_START = re.compile(r"^(?P<fw>[\w.-]+)/(?P<device>\w+)/(?P<variant>\w+) d=(?P<dim>\d+)")
_END = re.compile(r"^\s+(?P<status>ok|failed|unavailable|invalid):")

STATUS_STYLE = {"ok": "green", "failed": "red", "unavailable": "yellow", "invalid": "red", "skipped": "cyan",
                "interrupted": "magenta"}


def stderr_console() -> Console:
    """Rich console on stderr; wide when not a terminal so logs and CI output keep whole table rows."""
    console = Console(stderr=True, highlight=False, soft_wrap=False)
    if not console.is_terminal:
        console.width = 160
    return console


def parse_line(line: str) -> tuple[str, dict[str, str]] | None:
    """("start", {fw, device, variant, dim}) or ("end", {status}) for a solver progress line, else None."""
    if m := _START.match(line):
        return "start", m.groupdict()
    if m := _END.match(line):
        return "end", m.groupdict()
    return None


class SweepProgress:
    """One bar per container, advanced once per finished (dim, variant); one ``HostView`` per host of a fleet.

    The bars share one rich ``Progress`` (safe across threads); each host's view keeps its own current bar, so
    hosts running in parallel never advance each other's.
    """

    def __init__(self, console: Console | None = None, verbose: bool = False) -> None:
        self.console = console or stderr_console()
        self.verbose = verbose
        #: Not a terminal: one plain line per container start and end instead of bars.
        self.plain = not self.console.is_terminal
        self.progress = Progress(TextColumn("{task.fields[key]:<24}"), TextColumn("{task.description:<16}"),
                                 BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=self.console,
                                 transient=False, disable=self.plain)
        self._default = HostView(self, None)

    def __enter__(self) -> SweepProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def note(self, message: str, style: str = "yellow") -> None:
        self.console.print(message, style=style, highlight=False, soft_wrap=True, markup=False)

    def view(self, host: str | None) -> HostView:
        """The progress of one host (``None``: a single-host sweep, lines unprefixed)."""
        return HostView(self, host) if host is not None else self._default

    def start(self, key: str, total: int, what: str = "starting") -> None:
        self._default.start(key, total, what)

    def line(self, line: str) -> None:
        self._default.line(line)

    def finish(self, status: str, detail: str = "") -> None:
        self._default.finish(status, detail)


class HostView:
    """The bars and notes of one host; its lines start with ``[host]`` when several hosts run at once.

    One worker thread drives a view, so the running container's state (bar, start time, row counts) lives here,
    per view; what several views share is the console and the ``Progress``, both safe across threads.
    """

    def __init__(self, parent: SweepProgress, host: str | None) -> None:
        self.parent = parent
        self.host = host
        self._task: TaskID | None = None
        self._started = 0.0  # time.monotonic() at start()
        self._ok = 0  # rows of the running container that ended ``ok:`` / ``failed:``
        self._failed = 0

    @property
    def progress(self) -> Progress:
        return self.parent.progress

    def _prefix(self) -> str:
        return f"[{self.host}] " if self.host else ""

    def note(self, message: str, style: str = "yellow") -> None:
        self.parent.note(self._prefix() + message, style)

    def _plain(self, text: str) -> None:
        self.parent.console.print(text, highlight=False, soft_wrap=True, markup=False)

    def start(self, key: str, total: int, what: str = "starting") -> None:
        self._task = self.progress.add_task(what, total=total, key=key)
        self._started, self._ok, self._failed = time.monotonic(), 0, 0
        if self.parent.plain:
            self._plain(f"start {key}")  # the key names framework, version, device and host

    def line(self, line: str) -> None:
        """Feed one stderr line of the running container."""
        if self.parent.verbose:
            self.progress.console.print(f"  {self._prefix()}{line}", style="dim", highlight=False, soft_wrap=True,
                                        markup=False)
        parsed = parse_line(line)
        if parsed is None or self._task is None:
            return
        kind, fields = parsed
        if kind == "start":
            self.progress.update(self._task, description=f"{fields['variant']} d={fields['dim']}")
        else:
            self._ok += fields["status"] == "ok"
            self._failed += fields["status"] == "failed"
            self.progress.advance(self._task)

    def finish(self, status: str, detail: str = "") -> None:
        if self._task is None:
            return
        task = self.progress.tasks[[t.id for t in self.progress.tasks].index(self._task)]
        style = STATUS_STYLE.get(status, "white")
        self.progress.update(self._task, description=f"[{style}]{status}[/{style}]", completed=task.total)
        if self.parent.plain:  # one line, the reason on it
            rows = f"{self._ok}/{int(task.total or 0)} rows ok, {self._failed} failed"
            reason = f": {detail}" if detail else ""
            self._plain(f"end   {task.fields['key']} {status} {rows}, {time.monotonic() - self._started:.1f} s{reason}")
        elif detail:
            self.parent.note(f"  {task.fields['key']}: {detail}", style=style)
        self._task = None


def _fmt(value: float | None, scale: float = 1.0, digits: int = 2) -> str:
    return "-" if value is None else f"{value * scale:.{digits}f}"


def summary_table(records: list[dict[str, Any]]) -> Table:
    """Per container: status, rows ok, fastest ms/iter at the largest dim, wall time and container overhead."""
    table = Table(title="gdbench run", title_justify="left")
    for col, justify in (("container", "left"), ("image", "left"), ("status", "left"), ("rows ok", "right"),
                         ("best ms/iter @ max d", "right"), ("wall s", "right"), ("overhead s", "right"),
                         ("to 1st line s", "right")):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for r in records:
        t = r.get("timings") or {}
        style = STATUS_STYLE.get(r["status"], "white")
        best = r.get("best_time_per_iter_s")
        tag = (r.get("image") or {}).get("tag") or "-"
        table.add_row(escape(r["key"]), escape(tag), f"[{style}]{r['status']}[/{style}]",
                      f"{r.get('rows_ok', 0)}/{r.get('rows', 0)}",
                      "-" if best is None else f"{best * 1e3:.4f} (d={r.get('best_dim')})",
                      _fmt(t.get("wall_s")), _fmt(t.get("overhead_s")), _fmt(t.get("first_line_s")))
    return table
