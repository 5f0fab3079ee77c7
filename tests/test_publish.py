"""``gdbench publish`` on documents from a real solver run: the site's structure, its marks, its incremental
cache, its refusals, and the pages in a real headless Chromium.

One real ``python -m solvers run`` (numpy on the CPU; numpy on the GPU is a deterministic ``unavailable``
document) is the source of every run here. The history is made from it by editing the real documents'
provenance (framework version, timestamp, host) and, for one run, multiplying every repeat time by 3: that
is the real slowdown the site must mark. Everything else the pages show follows from those documents.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.parse import unquote, urljoin, urlparse

import pytest

from orchestrator.results.merge import load_runs, write_merged
from orchestrator.results.noise import sample, verdict
from orchestrator.results.publish import CACHE_MANIFEST, DATA_DIR, publish, sources
from orchestrator.sweep.rundir import RunDir
from solvers.schema import loads
from tests.conftest import gdbench, refused
from tests.rundocs import host_record

REPO = Path(__file__).resolve().parents[1]
# One thread and 11 repeats of ~10 ms, as tests/test_report.py: the rank test stays decisive on a busy host.
SMALL = ["--dims", "2,5", "--n", "1000", "--iters", "2000", "--threads", "1", "--no-sync-check",
         "--repeats", "11", "--max-repeats", "11"]
SLOWDOWN = 3.0
#: run name → (framework version, date, timing factor, inventory host or None)
HISTORY = {
    "r1": ("1.26.4", "2026-11-01T10:00:00+00:00", 1.0, None),
    # An older version run later: version order (PEP 440: 1.9.3 < 1.26.4) differs from date order and from text.
    "r2": ("1.9.3", "2026-11-08T10:00:00+00:00", 1.0, "box2"),
    "r3": ("2.4.6", "2026-11-15T10:00:00+00:00", SLOWDOWN, None),
    "r4": ("2.4.6", "2026-11-22T10:00:00+00:00", SLOWDOWN, None),
}


def solve(out: Path, device: str, expect: int) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"numpy-{device}.json"
    proc = subprocess.run([sys.executable, "-m", "solvers", "run", "--framework", "numpy", "--device", device,
                           *SMALL, "--out", str(path)], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == expect, proc.stderr[-2000:]
    return loads(path.read_text())


def edited(doc: dict, version: str, date: str, factor: float, host: str | None) -> dict:
    """The real document with another version, date and host in its provenance, and its times × factor."""
    doc = copy.deepcopy(doc)
    prov = doc["provenance"]
    prov["framework"]["version"], prov["timestamp_utc"] = version, date
    if host is not None:
        prov["host"] = host_record(host)
    for r in doc["results"]:
        if r["status"] == "ok":
            r["repeat_times_s"] = [t * factor for t in r["repeat_times_s"]]
            for k in ("time_per_iter_s", "median_s", "min_s"):
                r[k] *= factor
    return doc


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("publish")
    real = root / "real"
    cpu, gpu = solve(real, "cpu", 0), solve(real, "gpu", 3)
    out: dict[str, Path] = {"root": root}
    for name, (version, date, factor, host) in HISTORY.items():
        run = RunDir(root / name)
        run.path.mkdir()
        run.write_manifest({"run_id": name})
        for doc in (cpu, gpu):
            run.write_document(f"numpy-{doc['device']}", edited(doc, version, date, factor, host))
        out[name] = run.path
    # r2 is given to publish as a merged parquet file, so the site is built from a mix of both kinds.
    write_merged(load_runs([out["r2"]]), root / "r2-merged")
    out["r2"] = root / "r2-merged" / "results.parquet"
    return out


@pytest.fixture(scope="module")
def site(runs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site") / "site"
    result = gdbench("publish", str(runs["r1"]), str(runs["r2"]), str(runs["r3"]), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(out / "index.html")  # data on stdout: the index, and nothing else
    assert "3 source(s) read from the results, 0 from the site's cache" in result.stderr
    return out


def svgs(page: str) -> list[str]:
    return re.findall(r"<svg .*?</svg>", page, re.S)


def sections(page: str) -> dict[str, str]:
    return dict(re.findall(r'<section class="cell" id="([^"]+)">(.*?)</section>', page, re.S))


def points(svg: str) -> list[tuple[str, str]]:
    """(run key, the point's markup) of every point of a plot, left to right."""
    return re.findall(r'<a class="pt" href="[^"]+" data-run="([^"]+)">(.*?)</a>', svg, re.S)


def timed_cells(runs: dict[str, Path]) -> set[str]:
    doc = loads((runs["r1"] / "numpy-cpu.json").read_text())
    return {f"cpu-{r['variant']}-d{r['dim']}-float64-n1000" for r in doc["results"] if r["status"] == "ok"}


def test_index_lists_frameworks_by_devices(site: Path) -> None:
    index = (site / "index.html").read_text()
    matrix = re.search(r'<table id="matrix">(.*?)</table>', index, re.S).group(1)  # type: ignore[union-attr]
    assert re.findall(r"<th>(cpu|gpu)</th>", matrix) == ["cpu", "gpu"]
    row = re.search(r"<tr><th><a href=\"numpy.html\">numpy</a>.*?</tr>", matrix, re.S).group(0)  # type: ignore[union-attr]
    assert 'href="numpy.html#cpu">4 of 4 cells timed</a>, 3 runs' in row
    assert 'href="numpy.html#gpu">0 of 4 cells timed</a>, 3 runs' in row
    assert re.findall(r'href="runs/(r\d).html"', index) == ["r1", "r2", "r3"]  # oldest first


def test_framework_page_has_a_plot_per_cell_and_order_with_one_point_per_run(site: Path, runs: dict[str, Path]
                                                                              ) -> None:
    page = (site / "numpy.html").read_text()
    cells = sections(page)
    assert set(cells) == {f"{dev}-{v}-d{d}-float64-n1000" for dev in ("cpu", "gpu") for v in ("loop", "fused")
                          for d in (2, 5)}
    for cell_id, body in cells.items():
        plots = {re.search(r'data-axis="(\w+)"', s).group(1): s for s in svgs(body)}  # type: ignore[union-attr]
        # r2 ran on another host: each cell also shows its history by host · driver · CUDA.
        assert set(plots) == {"version", "date", "stack"}, cell_id
        for svg in plots.values():
            ET.fromstring(svg)  # well-formed SVG
            assert sorted(run for run, _ in points(svg)) == ["r1", "r2", "r3"]
        assert [run for run, _ in points(plots["version"])] == ["r2", "r1", "r3"]  # 1.9.3 < 1.26.4 < 2.4.6
        assert [run for run, _ in points(plots["date"])] == ["r1", "r2", "r3"]
        timed = cell_id in timed_cells(runs)
        for _, markup in points(plots["date"]):
            assert ("<circle" in markup) == timed and ('class="untimed"' in markup) != timed


def test_marks_where_the_fixture_is_slower_beyond_the_noise(site: Path, runs: dict[str, Path]) -> None:
    cells = sections((site / "numpy.html").read_text())
    frames = {n: load_runs([runs[n]]) for n in ("r1", "r2", "r3")}
    for cell_id in timed_cells(runs):
        _, variant, d, *_ = cell_id.split("-")
        recs = {n: df[(df.device == "cpu") & (df.variant == variant) & (df.dim == int(d[1:]))].iloc[0].to_dict()
                for n, df in frames.items()}
        # The fixture's slowdown is beyond the noise by the one rule, and r1 → r2 (same times) is not.
        assert verdict(sample(recs["r2"]), sample(recs["r3"])).mark == "slower"
        assert verdict(sample(recs["r1"]), sample(recs["r3"])).mark == "slower"
        assert verdict(sample(recs["r1"]), sample(recs["r2"])).mark == ""
        # By version r3 follows r1, by date r2; by host r1 and r3 (local) come first, then r2 (box2), so there
        # r3 is slower than r1 and r2 is faster than r3.
        expected = {"version": [("r2", []), ("r1", []), ("r3", ["slower"])],
                    "date": [("r1", []), ("r2", []), ("r3", ["slower"])],
                    "stack": [("r1", []), ("r3", ["slower"]), ("r2", ["faster"])]}
        for svg in svgs(cells[cell_id]):
            axis = re.search(r'data-axis="(\w+)"', svg).group(1)  # type: ignore[union-attr]
            marked = [(run, re.findall(r'class="mark (\w+)"', markup)) for run, markup in points(svg)]
            assert marked == expected[axis], (cell_id, axis)
        changes = re.findall(r'<li><span class="(\w+)">', cells[cell_id])  # the changes in words, one per mark
        assert sorted(changes) == ["faster", "slower", "slower", "slower"], cell_id


def test_table_view_holds_the_same_history(site: Path, runs: dict[str, Path]) -> None:
    page = (site / "numpy-table.html").read_text()
    for cell_id in timed_cells(runs):
        table = re.search(rf'<table id="{cell_id}">(.*?)</table>', page, re.S).group(1)  # type: ignore[union-attr]
        rows = re.findall(r"<tr><td><a href=\"runs/(r\d)\.html#[^\"]+\">.*?</tr>", table, re.S)
        assert rows == ["r1", "r2", "r3"]
        r3 = table[table.index('href="runs/r3.html'):]
        assert "▲ SLOWER" in r3 and "▲ SLOWER" not in table[:table.index('href="runs/r3.html')]
    assert page.count("unavailable: GPU requested") == 12  # 4 GPU cells × 3 runs, each with its reason


def site_links(site: Path) -> list[tuple[Path, str]]:
    """Every (page, href) of the site."""
    return [(page, href) for page in site.rglob("*.html")
            for href in re.findall(r'href="([^"]+)"', page.read_text())]


def test_every_link_resolves_to_a_file_and_anchor(site: Path) -> None:
    links = site_links(site)
    assert any(h == "runs/r3.html#row-numpy-2.4.6-cpu-loop-2-float64-local" for _, h in links)
    for page, href in links:
        assert not re.match(r"^[a-z]+:", href), (page, href)  # relative only: no server, no CDN
        path, _, fragment = href.partition("#")
        target = (page.parent / unquote(path)).resolve() if path else page
        assert target.is_file(), (page, href)
        if fragment:
            assert f'id="{fragment}"' in target.read_text(), (page, href)
    run = (site / "runs" / "r2.html").read_text()
    assert "box2-box" in run and "1.9.3" in run and "results.parquet" in run  # provenance of the merged run


def test_republish_reads_only_the_new_run(runs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "site"
    first = publish([runs["r1"], runs["r2"], runs["r3"]], out)
    assert len(first.read) == 3 and first.reused == []
    again = publish([runs["r1"], runs["r2"], runs["r3"], runs["r4"]], out)
    assert again.read == [str(runs["r4"].resolve())]
    assert sorted(again.reused) == sorted(str(runs[n].resolve()) for n in ("r1", "r2", "r3"))
    manifest = json.loads((out / DATA_DIR / CACHE_MANIFEST).read_text())
    assert manifest["read"] == again.read and len(manifest["sources"]) == 4
    assert (out / "runs" / "r4.html") in again.written
    assert (out / "runs" / "r1.html") not in again.written  # unchanged pages are left as they were
    cells = sections((out / "numpy.html").read_text())
    assert all(len(points(svg)) == 4 for body in cells.values() for svg in svgs(body))
    # A source left out is pruned with its page and extract; a changed source is read again.
    doc = json.loads((runs["r4"] / "numpy-cpu.json").read_text())
    pruned = publish([runs["r1"], runs["r4"]], out)
    assert pruned.read == [] and not (out / "runs" / "r3.html").exists()
    assert len(list((out / DATA_DIR / "runs").glob("*.json"))) == 2
    try:
        (runs["r4"] / "numpy-cpu.json").write_text(json.dumps({**doc, "error": None}, indent=1))
        assert publish([runs["r1"], runs["r4"]], out).read == [str(runs["r4"].resolve())]
    finally:
        (runs["r4"] / "numpy-cpu.json").write_text(json.dumps(doc, indent=2) + "\n")


def test_a_directory_of_runs_opens_into_its_runs(runs: dict[str, Path], tmp_path: Path) -> None:
    root = runs["root"]
    # "real" holds the solver's documents without a manifest (a run all the same); r2-merged holds no run.
    assert sources([root], root / "site") == [root / n for n in ("r1", "r2", "r3", "r4", "real")]


def test_bad_input_is_one_line_and_builds_nothing(runs: dict[str, Path], tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    notes = tmp_path / "notes.txt"
    notes.write_text("not results\n")
    table = tmp_path / "table.csv"
    table.write_text("a,b\n1,2\n")
    bogus = tmp_path / "bogus"
    bogus.mkdir()
    (bogus / "numpy-cpu.json").write_text("{}\n")  # looks like a run directory, holds no valid document
    out = tmp_path / "site"
    for bad, words in [(empty, "holds no run"), (bogus, "holds no run (no valid result document; 1 file(s)"),
                       (notes, "not a run directory"), (table, "not a gdbench merged"),
                       (tmp_path / "missing", "no such file")]:
        line = refused(capsys, "publish", str(runs["r1"]), str(bad), "--out", str(out))
        assert words in line and str(bad) in line, line
        assert not out.exists()
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine\n")
    assert "not a site written by gdbench publish" in refused(capsys, "publish", str(runs["r1"]), "--out",
                                                              str(foreign))
    assert sorted(p.name for p in foreign.iterdir()) == ["keep.txt"]


# ------------------------------------------------------------------------------------------- the browser

REQUIRE_BROWSER = os.environ.get("GDBENCH_REQUIRE_BROWSER") == "1"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
browser = pytest.mark.skipif(CHROMIUM is None and not REQUIRE_BROWSER,
                             reason="chromium is not installed (make system-deps installs it)")


def load(url: str, tmp_path: Path) -> tuple[str, list[str]]:
    """The DOM Chromium builds for ``url`` and the console lines it logged (messages, uncaught errors)."""
    assert CHROMIUM is not None, "GDBENCH_REQUIRE_BROWSER=1 but no chromium: run make system-deps"
    proc = subprocess.run([CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr",
                           "--v=0", f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", url],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    console = [line for line in proc.stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]
    return proc.stdout, console


@browser
def test_browser_console_capture_sees_an_error(tmp_path: Path) -> None:
    """The check below can fail: a page with a console error is caught by the same capture."""
    bad = tmp_path / "bad.html"
    bad.write_text('<!DOCTYPE html><html><body><script>console.error("publish-probe"); nope();</script></body></html>')
    _, console = load(bad.as_uri(), tmp_path)
    assert any("publish-probe" in line for line in console) and any("Uncaught" in line for line in console)


@browser
def test_pages_load_in_chromium_with_plots_and_a_run_link_that_resolves(site: Path, tmp_path: Path) -> None:
    for name in ("index.html", "numpy.html", "numpy-table.html", "runs/r3.html"):
        dom, console = load((site / name).as_uri(), tmp_path)
        assert console == [], (name, console)
        assert "</html>" in dom and "<h1>" in dom
    dom, _ = load((site / "numpy.html").as_uri(), tmp_path)
    assert dom.count('<svg class="plot"') == 24  # 8 cells × (version, date, host stack)
    assert dom.count("<circle") == 4 * 3 * 3  # timed CPU cells × orders × runs
    href = re.search(r'<a class="pt" href="([^"]+)" data-run="r3">', dom).group(1)  # type: ignore[union-attr]
    url = urljoin((site / "numpy.html").as_uri(), href)
    run_dom, console = load(url, tmp_path)
    assert console == []
    assert Path(unquote(urlparse(url).path)).is_file()
    assert f'id="{urlparse(url).fragment}"' in run_dom and "Run r3" in run_dom
