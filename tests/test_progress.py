"""Progress on stderr without a terminal: one plain line when a container starts and one when it ends.

In this process, on a rich console writing to a string: a console that is not a terminal (CI, nohup, a log
file) gets the lines as the sweep goes; a terminal gets the bars and none of those lines.
"""

from __future__ import annotations

import io
import re
import threading

from rich.console import Console

from orchestrator.sweep.progress import SweepProgress

#: What the solver prints on stderr while it measures (the lines ``parse_line`` reads).
ROWS = ["numpy/cpu/loop d=2 n=500", "  ok: 0.0123 ms/iter, err 1.0e-12",
        "numpy/cpu/fused d=2 n=500", "  failed: max relative error 3e-2 above 1e-6",
        "numpy/cpu/loop d=5 n=500", "  ok: 0.0200 ms/iter, err 2.0e-12",
        "a warning the solver's framework printed"]
END = re.compile(r"^end   (?P<key>\S+) (?P<status>\w+) (?P<ok>\d+)/(?P<rows>\d+) rows ok, (?P<failed>\d+) failed, "
                 r"(?P<seconds>\d+\.\d) s(?:: (?P<reason>.*))?$")


def console(terminal: bool) -> tuple[Console, io.StringIO]:
    text = io.StringIO()
    return Console(file=text, width=160, force_terminal=terminal, highlight=False), text


def lines(text: io.StringIO) -> list[str]:
    return [ln for ln in text.getvalue().splitlines() if ln.strip()]


def test_without_a_terminal_each_container_prints_a_start_and_an_end_line() -> None:
    out, text = console(terminal=False)
    with SweepProgress(console=out) as progress:
        view = progress.view("gpu1")
        view.start("numpy@1.26.4-cpu@gpu1", 4)
        assert lines(text) == ["start numpy@1.26.4-cpu@gpu1"]  # said when it starts, not at the end
        for line in ROWS:
            view.line(line)
        view.finish("failed", "1 of 4 rows failed")
        progress.start("jax-cpu", 2)
        progress.finish("unavailable")
    said = lines(text)
    assert said[0] == "start numpy@1.26.4-cpu@gpu1" and said[2] == "start jax-cpu"
    first, second = END.match(said[1]), END.match(said[3])
    assert first and second, said
    assert first.group("key", "status", "ok", "rows", "failed", "reason") == (
        "numpy@1.26.4-cpu@gpu1", "failed", "2", "4", "1", "1 of 4 rows failed")
    assert second.group("key", "status", "ok", "rows", "failed", "reason") == ("jax-cpu", "unavailable", "0", "2",
                                                                                "0", None)
    assert len(said) == 4  # no bars drawn at the end, and the reason only on the end line


def test_the_solver_lines_are_not_copied_unless_verbose() -> None:
    for verbose in (False, True):
        out, text = console(terminal=False)
        with SweepProgress(console=out, verbose=verbose) as progress:
            progress.start("numpy-cpu", 3)
            for line in ROWS:
                progress.line(line)
            progress.finish("ok")
        said = lines(text)
        assert said[0] == "start numpy-cpu" and said[-1].startswith("end   numpy-cpu ok 2/3 rows ok, 1 failed, ")
        assert len(said) == (2 + len(ROWS) if verbose else 2), said


def test_a_finish_without_a_start_prints_nothing() -> None:
    out, text = console(terminal=False)
    with SweepProgress(console=out) as progress:
        progress.start("numpy-cpu", 1)
        progress.finish("ok")
        progress.finish("interrupted")  # the worker's interrupt after its container was recorded
    assert [ln.split()[:3] for ln in lines(text)] == [["start", "numpy-cpu"], ["end", "numpy-cpu", "ok"]]


def test_hosts_in_parallel_count_their_own_rows() -> None:
    """One worker thread per host: each view's end line has the rows of its own container only."""
    out, text = console(terminal=False)
    hosts = [f"h{i}" for i in range(8)]
    barrier = threading.Barrier(len(hosts))

    def work(host: str, ok: int) -> None:
        view = progress.view(host)
        view.start(f"numpy-cpu@{host}", 10)
        barrier.wait()  # every host has started before any feeds a line
        for i in range(10):
            view.line(f"numpy/cpu/loop d={i + 1}")
            view.line("  ok: fine" if i < ok else "  failed: wrong")
        view.finish("ok" if ok == 10 else "failed")

    with SweepProgress(console=out) as progress:
        workers = [threading.Thread(target=work, args=(host, i + 3)) for i, host in enumerate(hosts)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
    ends = {m["key"]: m for m in map(END.match, lines(text)) if m}
    assert sorted(ln for ln in lines(text) if ln.startswith("start")) == [f"start numpy-cpu@{h}" for h in hosts]
    for i, host in enumerate(hosts):
        ok = min(i + 3, 10)
        assert ends[f"numpy-cpu@{host}"].group("ok", "failed") == (str(ok), str(10 - ok)), host


def test_a_terminal_gets_the_bars_and_no_plain_lines() -> None:
    out, text = console(terminal=True)
    with SweepProgress(console=out) as progress:
        progress.start("numpy-cpu", 3)
        for line in ROWS:
            progress.line(line)
        progress.finish("failed", "1 of 3 rows failed")
    said = text.getvalue()
    assert "numpy-cpu" in said and "  numpy-cpu: 1 of 3 rows failed" in said  # the bar, and the reason as a note
    assert "start numpy-cpu" not in said and "end   numpy-cpu" not in said and "rows ok" not in said, said
