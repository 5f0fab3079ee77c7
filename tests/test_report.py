"""``gdbench report`` and ``gdbench compare`` on documents from real solver runs, through the real CLI.

Runs are produced by ``python -m solvers run`` at tiny sizes; the only derived data is the compare test's
synthetic slowdown (a real run with every per-repeat time doubled), which is the point of that test. The
diagnostics tests (flags, floor, energy, GPU rows) build schema-valid documents with ``solvers.schema`` and
``solvers.metadata`` from hand-chosen timings: those are input fixtures, the expected cells follow from them.
"""

from __future__ import annotations

import base64
import io
import json
import math
import re
import shutil
import statistics
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from orchestrator.results.compare import compare, render_csv, table_rows
from orchestrator.results.merge import MERGED_PARQUET, load_runs
from orchestrator.results.noise import min_p_value
from orchestrator.results.report import plot_series
from orchestrator.results.report_cells import MARKS
from orchestrator.results.rowkeys import records, row_keys
from orchestrator.results.table import dims_of
from solvers.schema import dumps, loads
from tests.conftest import gdbench, refused
from tests.rundocs import (  # the shared document builders
    ITERS,
    host_record,
    make_document,
    ok_row,
    versioned_document,
    write_keyed_run,
    write_run,
)

REPO = Path(__file__).resolve().parents[1]
# One thread: on a shared, busy host two BLAS threads contend and repeats become bimodal, burying even a 2x
# difference in the run's own noise (which compare would then rightly refuse to flag).
# Repeats of ~10 ms and 11 of them keep the rank test decisive when a busy host adds the odd outlier.
SMALL = ["--n", "1000", "--iters", "2000", "--threads", "1", "--no-sync-check"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
CPU_BG, GPU_BG = (0xDF, 0xF0, 0xD8), (0xD9, 0xE8, 0xFB)


def solve(out: Path, framework: str, *args: str, device: str = "cpu", expect: tuple[int, ...] = (0,)) -> dict:
    """One real ``python -m solvers run`` into ``out/<framework>-<device>.json``; returns the document."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{framework}-{device}.json"
    proc = subprocess.run(
        [sys.executable, "-m", "solvers", "run", "--framework", framework, "--device", device, *args,
         "--out", str(path)],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode in expect, f"exit {proc.returncode}: {proc.stderr[-2000:]}"
    return loads(path.read_text())


@pytest.fixture(scope="session")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("runs")
    a = root / "run-a"
    solve(a, "numpy", "--dims", "2,5", "--repeats", "11", "--max-repeats", "11", *SMALL)
    # numba is ok, failed or unavailable depending on the install; each must render as what it is.
    solve(a, "numba", "--dims", "2,5", "--repeats", "11", "--max-repeats", "11", *SMALL, expect=(0, 1, 3))
    # numpy has no GPU backend on any machine: a deterministic `unavailable` document.
    solve(a, "numpy", "--dims", "2,5", *SMALL, device="gpu", expect=(3,))
    # A learning rate this large diverges to inf at d=10 (deterministic), so that row fails correctness.
    diverging = root / "diverging"
    solve(diverging, "numpy", "--dims", "2,10", "--n", "200", "--iters", "2000", "--repeats", "3",
          "--max-repeats", "3", "--lr", "0.99",
          "--no-sync-check", expect=(1,))
    two_threads = root / "two-threads"
    solve(two_threads, "numpy", "--dims", "2,5", "--repeats", "11", "--max-repeats", "11", *SMALL, "--threads", "2")
    return {"a": a, "diverging": diverging, "two_threads": two_threads, "root": root}


def scaled_copy(src: Path, dst: Path, factor: float) -> Path:
    """A copy of a real run with every timing multiplied by ``factor`` (schema-validated on write)."""
    dst.mkdir(parents=True, exist_ok=True)
    for path in src.glob("*.json"):
        doc = loads(path.read_text())
        for r in doc["results"]:
            if r["status"] == "ok":
                r["repeat_times_s"] = [t * factor for t in r["repeat_times_s"]]
                for k in ("time_per_iter_s", "median_s", "min_s"):
                    r[k] *= factor
        (dst / path.name).write_text(dumps(doc))
    return dst


def lead(cell: str) -> float:
    """The number a table cell starts with (after an optional ≈), ignoring its marks, spread and floor."""
    match = re.match(r"≈?([-+0-9.e]+)", cell)
    assert match, cell
    return float(match.group(1))


def md_rows(md: str, caption_start: str) -> dict[tuple[str, str, str], list[str]]:
    """The markdown table under the caption that starts with ``caption_start`` (first match)."""
    lines = md.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"**{caption_start}"))
    rows = {}
    for line in lines[start + 4:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split(" | ")]
        rows[(cells[0], cells[1].split()[-1], cells[2])] = cells[3:]
    return rows


def doc_rows(path: Path) -> dict[tuple[str, int], dict]:
    return {(r["variant"], r["dim"]): r for r in loads(path.read_text())["results"]}


@pytest.fixture(scope="session")
def report_dir(runs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report")
    result = gdbench("report", str(runs["a"]), str(runs["diverging"]), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "geometric mean speedup" in result.stdout
    return out


# ------------------------------------------------------------------------------------------------- report


def test_report_tables_show_numbers_only_for_rows_that_passed(runs: dict[str, Path], report_dir: Path) -> None:
    md = (report_dir / "report.md").read_text()
    assert md.index("## Run run-a") < md.index("## Run diverging")
    times = md_rows(md, "Time per iteration")
    numpy = doc_rows(runs["a"] / "numpy-cpu.json")
    for variant in ("loop", "fused"):
        *cells, path = times[("numpy", "cpu", variant)]  # the last column: the code path the rows ran on
        assert path == numpy[(variant, 2)]["kernel_path"] and path.startswith("OpenBLAS ")
        for cell, d in zip(cells, (2, 5), strict=True):
            assert math.isclose(lead(cell), numpy[(variant, d)]["time_per_iter_s"] * 1e3, rel_tol=1e-3)
            assert f"±{numpy[(variant, d)]['cv']:.1%}" in cell
    *unavailable, no_path = times[("numpy", "gpu", "loop")]
    assert all(re.fullmatch(r"unavailable \[\d+\]", c) for c in unavailable) and no_path == "—"
    numba = loads((runs["a"] / "numba-cpu.json").read_text())
    for r in numba["results"]:
        cell = times[("numba", "cpu", r["variant"])][[2, 5].index(r["dim"])]
        if r["status"] == "ok":
            assert math.isclose(lead(cell), r["time_per_iter_s"] * 1e3, rel_tol=1e-3)
        else:
            assert cell.startswith(r["status"]), cell
    # Speedup against numpy loop, same run and dim; ≈ exactly where the repeats do not tell the two apart.
    speed = md_rows(md, "Speedup vs numpy loop")
    iters = loads((runs["a"] / "numpy-cpu.json").read_text())["problem"]["iters"]
    for d_index, d in enumerate((2, 5)):
        loop, fused = (np.array(numpy[(v, d)]["repeat_times_s"]) / iters for v in ("loop", "fused"))
        expected = numpy[("loop", d)]["time_per_iter_s"] / numpy[("fused", d)]["time_per_iter_s"]
        clear = (fused.max() < loop.min() or fused.min() > loop.max()) and abs(expected - 1) > 0.06
        cell = speed[("numpy", "cpu", "fused")][d_index]

        # A row the solver flagged (noisy †, unstable ‡: a busy host) carries its own marks after its number.
        marks = {v: "".join(MARKS[f] for f in ("noisy", "unstable") if f in numpy[(v, d)]["flags"])
                 for v in ("loop", "fused")}
        assert cell.lstrip("≈") == f"{expected:.2f}×{marks['fused']}"
        if clear:  # every fused repeat beats (or loses to) every loop repeat by more than the effect band
            assert not cell.startswith("≈"), cell
        assert speed[("numpy", "cpu", "loop")][d_index] == f"1.00×{marks['loop']}"
    assert "🟩 cpu" in md and "🟦 gpu" in md
    assert "run-a: geometric mean speedup vs numpy loop on CPU — CPU" in md
    assert "GPU no timed result with a baseline" in md


def test_report_failed_rows_show_reason_never_a_number(report_dir: Path) -> None:
    md = (report_dir / "report.md").read_text()
    section = md[md.index("## Run diverging"):]
    for caption in ("Time per iteration", "Speedup vs numpy loop", "First call", "Max relative error"):
        rows = md_rows(section, caption)
        for variant in ("loop", "fused"):
            cell = rows[("numpy", "cpu", variant)][1]
            assert re.fullmatch(r"failed \[\d\](: max relative error inf.*)?", cell), (caption, cell)
            lead(rows[("numpy", "cpu", variant)][0])  # d=2 converged: a number
    assert re.search(r"\[\d\] numpy/cpu \(loop, fused\) d=10: failed: max relative error inf exceeds tolerance",
                     section)
    assert md_rows(section, "Time per iteration")[("numpy", "cpu", "loop")][1].startswith("failed [1]: max rel")


def test_report_exports_every_repeat_time(runs: dict[str, Path], report_dir: Path) -> None:
    df = pd.read_parquet(report_dir / MERGED_PARQUET)
    numpy = doc_rows(runs["a"] / "numpy-cpu.json")
    for (variant, d), r in numpy.items():
        row = df[(df.run_id == "run-a") & (df.framework == "numpy") & (df.device == "cpu") & (df.variant == variant)
                 & (df.dim == d)]
        assert list(row["repeat_times_s"].iloc[0]) == r["repeat_times_s"]
        assert len(r["repeat_times_s"]) == 11
    csv = pd.read_csv(report_dir / "results.csv")
    assert len(csv) == len(df)
    # The merged file is itself a valid input and reproduces the same tables.
    again = report_dir / "again"
    result = gdbench("report", str(report_dir / MERGED_PARQUET), "--out", str(again))
    assert result.returncode == 0, result.stderr
    first, second = (report_dir / "report.md").read_text(), (again / "report.md").read_text()
    assert md_rows(first, "Time per iteration") == md_rows(second, "Time per iteration")


def test_report_plots_are_real_pngs(report_dir: Path) -> None:
    import matplotlib.image as mpimg

    for name in ("time-run-a.png", "speedup-run-a.png", "time-diverging.png", "speedup-diverging.png"):
        path = report_dir / name
        assert path.read_bytes()[:8] == PNG_MAGIC
        img = mpimg.imread(path)
        assert img.shape[0] > 300 and img.shape[1] > 600
        assert np.unique(img.reshape(-1, img.shape[-1]), axis=0).shape[0] > 20, f"{name} looks blank"
    assert "![time per iteration](time-run-a.png)" in (report_dir / "report.md").read_text()


class _Dom(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.rows: list[dict[str, str]] = []
        self.imgs: list[dict[str, str]] = []
        self.links: list[str] = []
        self.cells: list[tuple[str, str]] = []
        self._cell: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "tr" and "data-framework" in a:
            self.rows.append(a)
        elif tag == "img":
            self.imgs.append(a)
        elif tag in ("td", "th"):
            self._cell = a.get("class", "")
            self.cells.append((self._cell, ""))
        for key in ("href", "src"):
            if key in a:
                self.links.append(a[key])

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            cls, text = self.cells[-1]
            self.cells[-1] = (cls, text + data)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th"):
            self._cell = None


def chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.skip("chromium is not installed (apt-get install chromium); the HTML render check needs it")
    return exe


def browse(page: Path, tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # --no-sandbox: the test may run as root in a container, where Chromium's sandbox cannot start.
    return subprocess.run(
        [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
         f"--user-data-dir={tmp / 'profile'}", *args, page.resolve().as_uri()],
        capture_output=True, text=True, timeout=180,
    )


def test_report_html_renders_in_chromium(report_dir: Path, tmp_path: Path) -> None:
    page = report_dir / "report.html"
    text = page.read_text()
    assert "http://" not in text and "https://" not in text, "the report must not reach the network"
    dom = browse(page, tmp_path, "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    parsed = _Dom()
    parsed.feed(dom.stdout)
    keys = {(r["data-framework"], r["data-device"], r["data-variant"], r["class"]) for r in parsed.rows}
    for key in [("numpy", "cpu", "loop", "dev-cpu"), ("numpy", "cpu", "fused", "dev-cpu"),
                ("numpy", "gpu", "loop", "dev-gpu"), ("numba", "cpu", "loop", "dev-cpu")]:
        assert key in keys
    assert any(cls == "unavailable" and text.startswith("unavailable [") for cls, text in parsed.cells)
    assert any(cls == "failed" and re.fullmatch(r"failed \[\d\]: max relative error inf.*", text)
               for cls, text in parsed.cells)
    # 2 runs × (time, speedup), each a PNG inlined as a data URI.
    assert len(parsed.imgs) == 4
    for img in parsed.imgs:
        assert img["src"].startswith("data:image/png;base64,")
        assert base64.b64decode(img["src"].split(",", 1)[1])[:8] == PNG_MAGIC
    assert all(not link.startswith(("http:", "https:", "//")) for link in parsed.links)

    shot = tmp_path / "report.png"
    proc = browse(page, tmp_path, f"--screenshot={shot}", "--window-size=1280,1600")
    assert proc.returncode == 0 and shot.exists(), proc.stderr[-2000:]
    import matplotlib.image as mpimg

    pixels = (mpimg.imread(shot)[..., :3] * 255).round().astype(int).reshape(-1, 3)
    assert pixels.shape[0] == 1280 * 1600
    colours = {tuple(p) for p in np.unique(pixels, axis=0)}
    assert CPU_BG in colours, "CPU rows are not shaded green"
    assert GPU_BG in colours, "GPU rows are not shaded blue"


# ------------------------------------------------------------------------------------------------ compare


def test_min_p_value_bounds() -> None:
    assert min_p_value(3, 3) == pytest.approx(0.1)
    assert min_p_value(7, 7) == pytest.approx(2 / 3432)


def test_compare_flags_a_2x_slowdown(runs: dict[str, Path], tmp_path: Path) -> None:
    slow = scaled_copy(runs["a"], tmp_path / "run-b", 2.0)
    c = compare([runs["a"], slow])
    ok = [k for k in c.keys if c.samples[(k, "run-a")].ok]
    assert {k[:3] for k in ok} >= {("numpy", "cpu", "loop"), ("numpy", "cpu", "fused")}
    flagged = 0
    for k in ok:
        a = c.samples[(k, "run-a")].times
        v = c.verdicts[(k, "run-b")]
        assert v.ratio == pytest.approx(2.0)
        assert v.mark in ("slower", ""), (k, v)
        if a.max() / a.min() < 2.0:
            # Run A's own spread is smaller than the slowdown: every B repeat is slower than every A repeat.
            assert v.mark == "slower", (k, v, a)
            assert v.p_value == pytest.approx(min_p_value(a.size, a.size))
        else:
            # A busy host can make a run's noise as large as the change; compare must then not claim it.
            assert v.mark == "slower" or v.text == "no significant difference", (k, v)
        flagged += v.mark == "slower"
    assert flagged >= 1, "not one cell of a 2x slowdown was flagged"
    for k in c.keys:
        if not c.samples[(k, "run-a")].ok:
            assert c.verdicts[(k, "run-b")].mark == ""
            assert c.verdicts[(k, "run-b")].text == "not comparable"
    faster = compare([slow, runs["a"]])
    assert {faster.verdicts[(k, "run-a")].mark for k in ok} <= {"faster", ""}
    assert sum(faster.verdicts[(k, "run-a")].mark == "faster" for k in ok) == flagged


def test_compare_identical_runs_are_not_flagged(runs: dict[str, Path], tmp_path: Path) -> None:
    twin = tmp_path / "twin"
    shutil.copytree(runs["a"], twin)
    c = compare([runs["a"], twin])
    verdicts = [c.verdicts[(k, "twin")] for k in c.keys]
    assert not any(v.mark for v in verdicts)
    assert any(v.text == "no significant difference" and v.ratio == 1.0 for v in verdicts)
    assert c.provenance == []


def test_compare_with_three_repeats_says_too_few(runs: dict[str, Path], tmp_path: Path) -> None:
    slow = scaled_copy(runs["diverging"], tmp_path / "diverging-slow", 2.0)
    c = compare([runs["diverging"], slow])
    v = c.verdicts[(("numpy", "cpu", "loop", 2), "diverging-slow")]
    assert v.mark == "" and v.ratio == pytest.approx(2.0)
    assert v.text.startswith("too few repeats to decide (3 vs 3")
    failed = c.verdicts[(("numpy", "cpu", "loop", 10), "diverging-slow")]
    assert failed.mark == "" and failed.ratio is None
    assert c.samples[(("numpy", "cpu", "loop", 10), "diverging")].status == "failed"


def test_compare_cli_terminal_and_files(runs: dict[str, Path], tmp_path: Path) -> None:
    slow = scaled_copy(runs["a"], tmp_path / "run-b", 2.0)
    out = tmp_path / "cmp"
    result = gdbench("compare", str(runs["a"]), str(slow), str(runs["two_threads"]), "--out", str(out))
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert "Mann-Whitney U" in text and "▲ SLOWER" in text and "2.000×" in text
    assert "unavailable" in text
    # The two-thread run differs in provenance: shown at the top, before the table.
    assert text.index("threads") < text.index("Median time per iteration")
    rows = pd.read_csv(out / "compare.csv")
    b = rows[(rows.run == "run-b") & (rows.framework == "numpy") & (rows.device == "cpu")]
    assert "slower" in set(b["mark"].fillna("")) and "faster" not in set(b["mark"].fillna(""))
    a_doc = doc_rows(runs["a"] / "numpy-cpu.json")
    loop2 = rows[(rows.run == "run-a") & (rows.framework == "numpy") & (rows.variant == "loop") & (rows.dim == 2)
                 & (rows.device == "cpu")]
    iters = loads((runs["a"] / "numpy-cpu.json").read_text())["problem"]["iters"]
    assert json.loads(loop2["repeat_times_per_iter_s"].iloc[0]) == pytest.approx(
        [t / iters for t in a_doc[("loop", 2)]["repeat_times_s"]])
    md = (out / "compare.md").read_text()
    assert "| threads | 1 | 1 | 2 |" in md and "**▲ SLOWER**" in md
    page = out / "compare.html"
    if shutil.which("chromium") or shutil.which("chromium-browser"):
        dom = browse(page, tmp_path, "--dump-dom")
        parsed = _Dom()
        parsed.feed(dom.stdout)
        assert ("slower", "▲ SLOWER") in parsed.cells


def test_same_run_id_is_told_apart_by_path(runs: dict[str, Path], tmp_path: Path) -> None:
    other = tmp_path / "elsewhere" / "run-a"
    shutil.copytree(runs["a"], other)
    c = compare([runs["a"], other])
    assert c.labels == [f"run-a ({runs['a']})", f"run-a ({other})"]
    same = compare([runs["a"], runs["a"]])
    assert len(set(same.labels)) == 2
    assert "run-a" in render_csv(same)


def test_compare_needs_two_runs(runs: dict[str, Path], capsys) -> None:
    line = refused(capsys, "compare", str(runs["a"]))
    assert "at least two runs" in line and "fix:" in line


# ------------------------------------------------------------------------------------- timing diagnostics


def _ms(start: float, step: float = 0.01, n: int = 7) -> list[float]:
    """Seven repeat times (seconds per ITERS iterations) from ``start`` ms rising by ``step`` ms."""
    return [(start + i * step) * 1e-3 for i in range(n)]


@pytest.fixture(scope="module")
def diag(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One run with every diagnostic: flags, floors (one call-overhead bound), fused transfer, GPU energy."""
    root = tmp_path_factory.mktemp("diag")
    numpy = make_document("numpy", "cpu", [
        ok_row(2, "loop", _ms(1.00)), ok_row(2, "fused", _ms(0.50)),
    ], floor=[{"dim": 2, "time_s": 2e-6, "call_overhead_bound": True}])
    numba = make_document("numba", "cpu", [
        ok_row(2, "loop", _ms(1.005), flags=["noisy"]),  # interleaved with numpy loop's repeats: inside the noise
        ok_row(2, "fused", _ms(0.20), flags=["unstable", "retried"]),
    ], floor=[{"dim": 2, "time_s": 1e-6, "call_overhead_bound": False}])
    torch = make_document("torch", "gpu", [
        ok_row(2, "loop", _ms(0.80)), ok_row(5, "loop", _ms(0.90)),
        ok_row(2, "fused", _ms(0.30), transfer_s=5e-4, layout={"x_alignment": 0, "extra_bytes": 2**20},
               energy={"joules_per_iter": 2.5e-5, "avg_power_w": 80.0}),
        ok_row(5, "fused", _ms(0.40), energy={"avg_power_w": 90.0}),
    ], floor=[{"dim": 5, "time_s": 1e-6, "call_overhead_bound": False}])
    run = write_run(root / "diag", "diag", [numpy, numba, torch])
    out = root / "report"
    result = gdbench("report", str(run), "--out", str(out))
    assert result.returncode == 0, result.stderr
    return {"run": run, "out": out, "root": root}


def test_report_marks_flags_spread_and_floor(diag: dict[str, Path]) -> None:
    md = (diag["out"] / "report.md").read_text()
    assert "† noisy" in md and "‡ unstable" in md and "≈ marks a speedup inside the runs' own noise" in md
    times = md_rows(md, "Time per iteration")
    numpy_loop = statistics.median(_ms(1.00)) / ITERS
    cv = statistics.stdev(_ms(1.00)) / statistics.mean(_ms(1.00))
    assert times[("numpy", "cpu", "loop")][0] == (f"{numpy_loop * 1e3:.4g} ±{cv:.1%} · {numpy_loop / 2e-6:.3g}× floor "
                                                  "(reference)")
    numba = times[("numba", "cpu", "loop")][0]
    assert re.fullmatch(r"[0-9.]+† ±[0-9.]+% · [0-9.]+× floor", numba), numba
    assert re.fullmatch(r"[0-9.]+‡ ±.*", times[("numba", "cpu", "fused")][0])  # retried alone is no warning
    assert "floor" not in times[("torch", "gpu", "loop")][0]  # no floor measured for that document
    for caption in ("Speedup vs numpy loop", "First call", "Max relative error"):
        assert "†" in md_rows(md, caption)[("numba", "cpu", "loop")][0], caption
        assert "‡" in md_rows(md, caption)[("numba", "cpu", "fused")][0], caption
    speed = md_rows(md, "Speedup vs numpy loop")
    fused = numpy_loop / (statistics.median(_ms(0.50)) / ITERS)
    assert speed[("numpy", "cpu", "fused")][0] == f"{fused:.2f}×"  # every repeat apart: a clear win
    inside = numpy_loop / (statistics.median(_ms(1.005)) / ITERS)
    assert speed[("numba", "cpu", "loop")][0] == f"≈{inside:.2f}×†"  # interleaved repeats: inconclusive
    html = (diag["out"] / "report.html").read_text()
    assert "class='flagged' title='noisy" in html and "Marks: † noisy" in html


def test_report_fused_transfer_energy_and_gpu_plot(diag: dict[str, Path]) -> None:
    md = (diag["out"] / "report.md").read_text()
    fused = md_rows(md, "Fused rows: host↔device transfer")
    assert fused[("torch", "gpu", "fused")] == ["transfer 0.5 ms · re-layout +1 MiB", "—"]
    assert set(fused) == {("numpy", "cpu", "fused"), ("numba", "cpu", "fused"), ("torch", "gpu", "fused")}
    energy = md_rows(md, "GPU energy per iteration")
    assert energy[("torch", "gpu", "fused")] == ["25 µJ · 80 W", "90 W"]
    assert energy[("torch", "gpu", "loop")] == ["—", "—"] and set(energy) == {("torch", "gpu", "loop"),
                                                                               ("torch", "gpu", "fused")}
    plot = diag["out"] / "gpu-torch-diag.png"
    assert "![torch on GPU: µs per iteration](gpu-torch-diag.png)" in md
    assert plot.read_bytes()[:8] == PNG_MAGIC
    assert not (diag["out"] / "gpu-numpy-diag.png").exists()
    import matplotlib.image as mpimg

    assert np.unique(mpimg.imread(plot).reshape(-1, 4), axis=0).shape[0] > 20, "GPU plot looks blank"


def test_gpu_plot_series_hold_each_variant_and_its_floor(diag: dict[str, Path]) -> None:
    df = load_runs([diag["run"]])
    series = plot_series(dims_of(df), row_keys(df), records(df))
    assert set(series) == {"time", "speedup", "gpu-torch"}  # no GPU row of numpy or numba
    gpu = series["gpu-torch"]
    us = lambda start: statistics.median(_ms(start)) / ITERS * 1e6  # noqa: E731
    assert gpu[("torch", "gpu", "loop")] == [(2, pytest.approx(us(0.80))), (5, pytest.approx(us(0.90)))]
    assert gpu[("torch", "gpu", "fused")] == [(2, pytest.approx(us(0.30))), (5, pytest.approx(us(0.40)))]
    assert gpu[("torch", "gpu", "floor")] == [(5, pytest.approx(1.0))]
    assert series["time"][("numba", "cpu", "loop")] == [(2, pytest.approx(us(1.005) / 1e3))]


def test_report_real_runs_show_what_their_documents_hold(runs: dict[str, Path], report_dir: Path) -> None:
    """Marks, floors and transfer appear exactly where the solver's documents recorded them."""
    md = (report_dir / "report.md").read_text()
    doc = loads((runs["a"] / "numpy-cpu.json").read_text())
    floors = {f["dim"] for f in doc.get("floor") or [] if isinstance(f.get("time_s"), float)}
    times = md_rows(md, "Time per iteration")
    fused = md_rows(md, "Fused rows: host↔device transfer")  # the solver times the fused setup's transfer
    for r in doc["results"]:
        cell = times[("numpy", "cpu", r["variant"])][[2, 5].index(r["dim"])]
        assert ("× floor" in cell) == (r["dim"] in floors), cell
        flags = r.get("flags") or []
        assert ("†" in cell) == ("noisy" in flags) and ("‡" in cell) == ("unstable" in flags), cell
        if r["variant"] == "fused":
            assert fused[("numpy", "cpu", "fused")][[2, 5].index(r["dim"])].startswith(
                f"transfer {r['transfer_s'] * 1e3:.4g} ms")
    assert "GPU energy" not in md  # no GPU row has a time here
    assert not list(report_dir.glob("gpu-*.png"))  # numpy/gpu is unavailable: no GPU timings to plot


def test_report_bad_inputs_are_one_line(diag: dict[str, Path], tmp_path: Path, capsys) -> None:
    doc = make_document("numpy", "cpu", [ok_row(2, "loop", _ms(1.0))], floor=[{"dim": 2, "time_s": -1}])
    run = write_run(tmp_path / "badfloor", "badfloor", [doc])
    result = gdbench("report", str(run), "--out", str(tmp_path / "r1"))
    assert result.returncode == 0, result.stderr
    assert [line for line in result.stderr.splitlines() if "floor" in line] == result.stderr.strip().splitlines()
    assert len(result.stderr.strip().splitlines()) == 1 and "without × floor" in result.stderr
    assert lead(md_rows((tmp_path / "r1" / "report.md").read_text(), "Time per iteration")[
        ("numpy", "cpu", "loop")][0]) == pytest.approx(statistics.median(_ms(1.0)) / ITERS * 1e3, rel=1e-3)

    table = pd.read_csv(diag["out"] / "results.csv")
    old = tmp_path / "old.csv"
    table.drop(columns=["flags", "energy" if "energy" in table else "avg_power_w"]).to_csv(old, index=False)
    result = gdbench("report", str(old), "--out", str(tmp_path / "r2"))
    assert result.returncode == 0, result.stderr
    assert "no column flags, avg_power_w" in result.stderr
    broken = tmp_path / "broken.csv"
    table.drop(columns=["status"]).to_csv(broken, index=False)
    for args in (["report", str(broken), "--out", str(tmp_path / "r3")], ["compare", str(broken), str(old)]):
        line = refused(capsys, *args)
        assert "no column status" in line and "fix: regenerate it with `gdbench merge" in line
    assert not (tmp_path / "r3").exists() and broken.read_text()  # nothing written, the input untouched


# ------------------------------------------------------------------------------------ compare diagnostics


def test_compare_says_when_a_side_is_flagged_and_when_inconclusive(diag: dict[str, Path], tmp_path: Path) -> None:
    doc = make_document("numba", "cpu", [ok_row(2, "loop", _ms(2.0)), ok_row(2, "fused", _ms(0.205), flags=["noisy"])])
    later = write_run(tmp_path / "later", "later", [doc])
    c = compare([diag["run"], later])
    slower, fused = (("numba", "cpu", v, 2) for v in ("loop", "fused"))
    assert c.samples[(slower, "diag")].flags == ["noisy"] and c.samples[(fused, "later")].flags == ["noisy"]
    _, rows = table_rows(c)
    by_key = {tuple(r[:3]): r for r in rows}
    loop, fused_row = by_key[("numba", "cpu", "loop")], by_key[("numba", "cpu", "fused")]
    assert loop[4].endswith("⚠ noisy") and loop[-1] == "▲ SLOWER (A noisy)"
    # A unstable, B noisy; 0.205 vs 0.20 ms with interleaved repeats: inside the noise.
    assert c.verdicts[(fused, "later")].inconclusive and not c.verdicts[(fused, "later")].mark
    assert fused_row[4].endswith("⚠ unstable") and fused_row[5].endswith("⚠ noisy")
    assert fused_row[-1] == "≈ inconclusive: no significant difference (A unstable; B noisy)"
    assert "not comparable" in by_key[("numpy", "cpu", "loop")][-1]
    out = pd.read_csv(io.StringIO(render_csv(c)))
    row = out[(out.variant == "fused") & (out.framework == "numba") & (out.run == "later")].iloc[0]
    assert row["flags"] == "noisy" and bool(row.inconclusive)


def test_compare_bad_options_are_one_line(diag: dict[str, Path], capsys) -> None:
    for option in (["--alpha", "1.5"], ["--min-effect", "-0.1"]):
        line = refused(capsys, "compare", str(diag["run"]), str(diag["run"]), *option)  # nothing on stdout
        assert "out of range" in line and "fix:" in line


# ------------------------------------------------------------------------------------- versions and hosts


def _ratio(new: float, old: float) -> float:
    return statistics.median(_ms(new)) / statistics.median(_ms(old))


@pytest.fixture(scope="module")
def versions(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One sweep with numpy 1.26.4 (Python 3.11) and 2.4.6 (Python 3.13) and one jax, on the local engine."""
    root = tmp_path_factory.mktemp("versions")
    local = host_record("local")
    old = versioned_document("numpy", "1.26.4", [ok_row(2, "loop", _ms(1.00)), ok_row(2, "fused", _ms(0.40)),
                                                 ok_row(5, "loop", _ms(2.00))], python="3.11.2", host=local)
    new = versioned_document("numpy", "2.4.6", [ok_row(2, "loop", _ms(0.50)), ok_row(2, "fused", _ms(0.401)),
                                                ok_row(5, "loop", _ms(3.00))], python="3.13.1", host=local)
    jax = versioned_document("jax", "0.10.2", [ok_row(2, "loop", _ms(1.50)), ok_row(5, "loop", _ms(2.50))],
                             host=local)
    run = write_keyed_run(root / "run", "versions", [old, new, jax])
    out = root / "report"
    result = gdbench("report", str(run), "--out", str(out))
    assert result.returncode == 0, result.stderr
    return {"run": run, "out": out}


def test_report_has_one_row_per_version_with_its_python(versions: dict[str, Path]) -> None:
    md = (versions["out"] / "report.md").read_text()
    old, new = "numpy 1.26.4 (Python 3.11.2)", "numpy 2.4.6 (Python 3.13.1)"
    times = md_rows(md, "Time per iteration")
    assert set(times) == {(old, "cpu", "loop"), (old, "cpu", "fused"), (new, "cpu", "loop"), (new, "cpu", "fused"),
                          ("jax", "cpu", "loop")}
    assert lead(times[(new, "cpu", "loop")][0]) == pytest.approx(statistics.median(_ms(0.50)) / ITERS * 1e3,
                                                                 rel=1e-3)
    assert times[(new, "cpu", "fused")][1] == "—"  # not run at d=5
    # The baseline is numpy's newest version in the run, and the caption says which.
    speed = md_rows(md, "Speedup vs numpy 2.4.6 loop on CPU")
    assert speed[("jax", "cpu", "loop")][0] == f"{1 / _ratio(1.50, 0.50):.2f}×"
    ver = md_rows(md, "Speedup of each version over the oldest version of its framework")
    assert set(ver) == {(old, "cpu", "loop"), (old, "cpu", "fused"), (new, "cpu", "loop"), (new, "cpu", "fused")}
    up, down = 1 / _ratio(0.50, 1.00), 1 / _ratio(3.00, 2.00)
    assert ver[(new, "cpu", "loop")] == [f"{up:.2f}×", f"{down:.2f}×", f"{math.sqrt(up * down):.2f}×"]
    assert ver[(new, "cpu", "fused")][0] == f"≈{1 / _ratio(0.401, 0.40):.2f}×"  # interleaved repeats: inconclusive
    assert ver[(old, "cpu", "loop")][:2] == ["1.00×", "1.00×"]
    assert "| numpy | cpu | 1.26.4 | 3.11.2 |" in md and "| numpy | cpu | 2.4.6 | 3.13.1 |" in md
    assert "| host | local-box (the Docker engine's hostname) |" in md
    assert "data-framework='numpy'" in (versions["out"] / "report.html").read_text()


def test_version_plot_lines_are_told_apart(versions: dict[str, Path]) -> None:
    from orchestrator.results.plots import line_style, shades
    from orchestrator.results.rowkeys import Keys

    df = load_runs([versions["run"]])
    keyer = Keys.of(df)
    series = plot_series(dims_of(df), row_keys(df, keyer), records(df, keyer), keyer)["time"]
    shade = shades(list(series))
    colors = {k[0]: line_style(k, shade[k[0]])["color"] for k in series}
    assert len(set(colors.values())) == 3, colors  # two numpy versions and jax
    assert series[("numpy 2.4.6 (Python 3.13.1)", "cpu", "loop")] == [
        (2, pytest.approx(statistics.median(_ms(0.50)) / ITERS * 1e3)),
        (5, pytest.approx(statistics.median(_ms(3.00)) / ITERS * 1e3))]
    assert (versions["out"] / "time-versions.png").read_bytes()[:8] == PNG_MAGIC


def test_report_host_row_says_when_it_falls_back_to_the_solver_hostname(diag: dict[str, Path]) -> None:
    md = (diag["out"] / "report.md").read_text()
    row = next(line for line in md.splitlines() if line.startswith("| host |"))
    hostname = loads(next(diag["run"].glob("numpy-cpu.json")).read_text())["provenance"]["hostname"]
    assert row == f"| host | {hostname} (the solver process's hostname: the document names no engine hostname) |"


def test_fleet_report_has_a_cross_host_table(tmp_path: Path) -> None:
    local = host_record("local", "NVIDIA H100 80GB HBM3", "570.86.15", "12.8")
    gpu1 = host_record("gpu1", "NVIDIA L4", "550.54.14", "12.4", kernel="6.1.0-28-amd64")
    docs = [versioned_document("numpy", "1.26.4", [ok_row(2, "loop", _ms(1.00)), ok_row(5, "loop", _ms(2.00))],
                               host=local),
            versioned_document("numpy", "1.26.4", [ok_row(2, "loop", _ms(2.00)), ok_row(5, "loop", _ms(2.005))],
                               host=gpu1)]
    run = write_keyed_run(tmp_path / "fleet", "fleet", docs)
    out = tmp_path / "report"
    result = gdbench("report", str(run), "--out", str(out))
    assert result.returncode == 0, result.stderr
    md = (out / "report.md").read_text()
    times = md_rows(md, "Time per iteration")
    assert set(times) == {("numpy @local", "cpu", "loop"), ("numpy @gpu1", "cpu", "loop")}
    lines = md.splitlines()
    start = lines.index("| | local | gpu1 |")
    above = lines[start + 2:lines.index("", start)]
    assert "| GPU | NVIDIA H100 80GB HBM3 | NVIDIA L4 |" in above
    assert "| NVIDIA driver | 570.86.15 | 550.54.14 |" in above
    assert "| CUDA (driver) | 12.8 | 12.4 |" in above and "| kernel | 6.8.0-45-generic | 6.1.0-28-amd64 |" in above
    assert not any(line.startswith(("| CPU model", "| Docker")) for line in above)  # the same on both hosts
    caption = next(i for i, line in enumerate(lines) if line.startswith("**Across hosts"))
    assert caption > start
    rows = [line.strip("|").split(" | ") for line in lines[caption + 4:caption + 6]]
    assert [r[3].strip() for r in rows] == ["2", "5"]
    assert rows[0][5].strip() == f"{_ratio(2.00, 1.00):.3f}×"  # every gpu1 repeat slower: marked as a number
    assert rows[1][5].strip() == f"≈{_ratio(2.005, 2.00):.3f}×"  # interleaved: inconclusive
    assert "| numpy | cpu | local | 1.26.4 |" in md and "| numpy | cpu | gpu1 | 1.26.4 |" in md
