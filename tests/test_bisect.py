"""``gdbench bisect``: the search on real release lists, refusals before anything is declared, one real bisect.

The search tests feed the real noise rule synthetic per-repeat times: these are synthetic verdict sequences
for the search logic (which release is measured next, what a skip or an inconclusive release does), not
measurements. The release lists are numpy's real ones from PyPI. The Docker test runs a real bisect of two
adjacent numpy releases in a scratch copy of the checkout, so the declarations it makes and removes never
touch this one.
"""

from __future__ import annotations

import json
import math
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from orchestrator.bisect import plan
from orchestrator.bisect.search import (
    BAD,
    GOOD,
    INCONCLUSIVE,
    MISSING,
    SKIPPED,
    CellVerdict,
    Step,
    classify,
    combine,
    judge,
    search,
)
from orchestrator.bisect.session import Report
from orchestrator.bisect.text import render
from orchestrator.results.noise import Sample, verdict
from tests.conftest import ROOT, gdbench, refused

#: numpy's final releases strictly between 1.26.4 and 2.4.6, as PyPI lists them (2.4.0 is yanked there).
NUMPY_1264_TO_246 = ["2.0.0", "2.0.1", "2.0.2", "2.1.0", "2.1.1", "2.1.2", "2.1.3", "2.2.0", "2.2.1", "2.2.2",
                     "2.2.3", "2.2.4", "2.2.5", "2.2.6", "2.3.0", "2.3.1", "2.3.2", "2.3.3", "2.3.4", "2.3.5",
                     "2.4.1", "2.4.2", "2.4.3", "2.4.4", "2.4.5"]
GOOD_RELEASE, BAD_RELEASE = "1.26.4", "2.4.6"
CELL = "cpu/loop/d=2"


# --------------------------------------------------------------------------------------------- synthetic times

def times(median_us: float, n: int = 10, seed: int = 0) -> Sample:
    """Synthetic per-iteration repeat times around ``median_us`` with a ±1 % spread (no ties)."""
    rng = np.random.default_rng(seed)
    return Sample("ok", "", median_us * 1e-6 * (1 + 0.01 * rng.standard_normal(n)))


def synthetic_measure(medians: dict[str, float], calls: list[tuple[str, int]], *, skip: dict[str, str] | None = None,
                      noisy: dict[str, int] | None = None):
    """``measure(release, factor)`` over synthetic medians, judged by the real noise rule against 10 µs.

    ``skip``: releases whose build "fails" with that reason. ``noisy``: releases whose times are too few to
    decide below the given factor (2 vs 2 repeats reach no p < 0.05), as a noisy host gives at first."""
    def measure(release: str, factor: int) -> Step:
        calls.append((release, factor))
        if skip and release in skip:
            return Step(release, SKIPPED, factor, note=skip[release])
        n = 2 if noisy and factor < noisy.get(release, 0) else 10 * factor
        a, b = times(10.0, n, seed=factor), times(medians[release], n, seed=factor + 100)
        v = verdict(a, b)
        outcome = classify(v, 0.05)
        return Step(release, combine([outcome]), factor, (CellVerdict(CELL, a.median, b.median, v, outcome),))
    return measure


def slow_from(first_bad: str, releases: list[str], slow: float = 12.0) -> dict[str, float]:
    """Every release from ``first_bad`` on runs at ``slow`` µs, the ones before at the good release's 10 µs."""
    index = releases.index(first_bad)
    return {r: (slow if i >= index else 10.0) for i, r in enumerate(releases)}


def run_search(medians: dict[str, float], calls: list[tuple[str, int]], **kwargs):
    measure = synthetic_measure(medians, calls, **kwargs)
    return search(NUMPY_1264_TO_246, BAD_RELEASE, lambda r: judge(r, measure, [1, 2, 4]))


# ------------------------------------------------------------------------------------------------ the search

@pytest.mark.parametrize("first_bad", ["2.0.0", "2.2.0", "2.3.3", "2.4.5", BAD_RELEASE])
def test_the_first_bad_release_is_found_in_log2_steps(first_bad: str) -> None:
    releases = [*NUMPY_1264_TO_246, BAD_RELEASE]
    calls: list[tuple[str, int]] = []
    found = run_search(slow_from(first_bad, releases), calls)
    assert found.first_bad == first_bad and not found.unresolved
    assert len(found.path) <= math.ceil(math.log2(len(releases))) + 1
    assert all(f == 1 for _, f in calls)  # ±1 % spread against a 20 % step: every verdict is clear at once
    for step in found.path:
        expected = BAD if releases.index(step.release) >= releases.index(first_bad) else GOOD
        assert step.outcome == expected, step


def test_no_release_slower_leaves_the_bad_end_as_the_answer_and_a_faster_release_is_good() -> None:
    """The search assumes its bad end is bad (the bisect checks that first); faster releases read as good."""
    medians = {r: 8.0 for r in NUMPY_1264_TO_246}
    calls: list[tuple[str, int]] = []
    found = run_search(medians, calls)
    assert found.first_bad == BAD_RELEASE and {s.outcome for s in found.path} == {GOOD}
    assert {s.cells[0].verdict.mark for s in found.path} == {"faster"}


def test_the_bad_end_not_slower_is_good_so_the_bisect_stops() -> None:
    calls: list[tuple[str, int]] = []
    measure = synthetic_measure({BAD_RELEASE: 10.2}, calls)
    step = judge(BAD_RELEASE, measure, [1, 2, 4])
    assert step.outcome == GOOD and calls == [(BAD_RELEASE, 1)]  # within ±5 %: conclusive, not re-measured


def test_an_inconclusive_release_is_measured_again_with_more_repeats_before_it_counts() -> None:
    releases = [*NUMPY_1264_TO_246, BAD_RELEASE]
    calls: list[tuple[str, int]] = []
    mid = NUMPY_1264_TO_246[(len(releases) - 1) // 2]  # the first release the search measures
    found = run_search(slow_from("2.0.0", releases), calls, noisy={mid: 4})
    assert [c for c in calls if c[0] == mid] == [(mid, 1), (mid, 2), (mid, 4)]
    step = next(s for s in found.path if s.release == mid)
    assert step.outcome == BAD and step.factor == 4 and "re-measured" in step.note
    assert found.first_bad == "2.0.0"


def test_still_inconclusive_at_the_last_factor_is_taken_as_not_slower_and_says_so() -> None:
    calls: list[tuple[str, int]] = []
    measure = synthetic_measure({"2.2.0": 12.0}, calls, noisy={"2.2.0": 99})
    step = judge("2.2.0", measure, [1, 2, 4])
    assert calls == [("2.2.0", 1), ("2.2.0", 2), ("2.2.0", 4)]
    assert step.outcome == GOOD and "taken as not slower" in step.note and step.cells[0].verdict.p_value is None


def test_a_release_that_fails_to_build_is_skipped_with_its_reason_and_its_neighbour_measured() -> None:
    releases = [*NUMPY_1264_TO_246, BAD_RELEASE]
    calls: list[tuple[str, int]] = []
    mid = NUMPY_1264_TO_246[(len(releases) - 1) // 2]
    reason = f"numpy {mid} (cpu, Python 3.11) does not resolve: lock conflict"
    found = run_search(slow_from("2.2.0", releases), calls, skip={mid: reason})
    assert found.first_bad == "2.2.0" and not found.unresolved
    skipped = [s for s in found.path if s.outcome == SKIPPED]
    assert [s.release for s in skipped] == [mid] and skipped[0].note == reason
    assert calls.count((mid, 1)) == 1  # a skipped release is never tried twice


def test_skipped_releases_next_to_the_first_bad_are_unresolved_not_guessed() -> None:
    releases = [*NUMPY_1264_TO_246, BAD_RELEASE]
    calls: list[tuple[str, int]] = []
    skip = {"2.1.3": "no wheel", "2.2.0": "no wheel"}
    found = run_search(slow_from("2.2.0", releases), calls, skip=skip)
    assert found.first_bad == "2.2.1" and found.unresolved == ["2.1.3", "2.2.0"]


def test_a_release_whose_cell_failed_is_skipped_with_the_cells_reason() -> None:
    reason = "cpu/loop/d=2 failed: container exited 137 (OOM)"
    step = judge("2.2.0", lambda r, f: Step(r, MISSING, f, note=reason), [1, 2, 4])
    assert step.outcome == SKIPPED and step.note == reason and step.factor == 1  # not re-measured


@pytest.mark.parametrize(("ratio", "p", "mark", "outcome"), [
    (1.20, 0.001, "slower", BAD),
    (0.80, 0.001, "faster", GOOD),
    (1.03, 0.001, "", GOOD),  # significant, inside the effect band
    (1.02, 0.40, "", GOOD),  # no significant difference, inside the band
    (1.30, 0.40, "", INCONCLUSIVE),  # above the band, not told from noise
    (1.30, None, "", INCONCLUSIVE),  # too few repeats to decide
    (None, None, "", MISSING),  # a side failed
])
def test_classify_reads_the_noise_rule(ratio, p, mark, outcome) -> None:
    from orchestrator.results.noise import Verdict

    assert classify(Verdict(ratio, p, mark, "x"), 0.05) == outcome


def test_combine_needs_every_cell_good_and_one_bad_cell_is_enough() -> None:
    assert combine([GOOD, BAD, INCONCLUSIVE]) == BAD
    assert combine([GOOD, INCONCLUSIVE]) == INCONCLUSIVE
    assert combine([GOOD, GOOD]) == GOOD
    assert combine([GOOD, MISSING]) == MISSING


# -------------------------------------------------------------------------------------------- release lists

def test_releases_between_reads_pypi_in_pep440_order() -> None:
    candidates, left_out = plan.releases_between("numpy", GOOD_RELEASE, BAD_RELEASE)
    assert candidates == NUMPY_1264_TO_246 and left_out == []


def test_releases_between_leaves_out_pre_releases_yanked_and_wheelless_ones() -> None:
    wheel = {"packagetype": "bdist_wheel", "filename": "numpy-{v}-cp311-cp311-manylinux_2_17_x86_64.whl"}
    def files(v: str, **extra) -> list[dict]:
        return [{**wheel, "filename": wheel["filename"].format(v=v), **extra}]
    releases = {"1.9.3": files("1.9.3"), "1.10.0": files("1.10.0"), "1.10.1rc1": files("1.10.1rc1"),
                "1.10.1": files("1.10.1", yanked=True), "1.11.0": [{"packagetype": "sdist", "filename": "x.tar.gz"}],
                "1.12.0": files("1.12.0"), "1.26.4": files("1.26.4")}
    candidates, left_out = plan.releases_between("numpy", "1.9.3", "1.26.4", releases=releases)
    assert candidates == ["1.10.0", "1.12.0"]  # 1.10.0 after 1.9.3: PEP 440 order, not text order
    assert left_out == ["1.11.0: no x86_64 Linux wheel that a gdbench base loads"]
    with_pre, _ = plan.releases_between("numpy", "1.9.3", "1.26.4", pre=True, releases=releases)
    assert with_pre == ["1.10.0", "1.10.1rc1", "1.12.0"]


def test_the_path_printed_names_each_release_its_median_and_verdict(tmp_path: Path) -> None:
    calls: list[tuple[str, int]] = []
    measure = synthetic_measure({BAD_RELEASE: 12.0, "2.4.5": 10.0}, calls)
    req = plan.BisectRequest("numpy", "2.4.4", BAD_RELEASE, [plan.Cell("cpu", "loop", 2)], "cpu", "3.11", tmp_path)
    report = Report(req, status="complete", candidates=["2.4.5"], first_bad=BAD_RELEASE,
                    path=[judge(BAD_RELEASE, measure, [1]), judge("2.4.5", measure, [1])])
    lines = render(report)
    assert lines[0].endswith("1 release(s) between; each measured right after 2.4.4")
    assert lines[1].split()[:3] == [BAD_RELEASE, "bad", CELL] and "µs/iter (2.4.4: 10 µs)" in lines[1]
    assert "slower" in lines[1] and lines[2].split()[:2] == ["2.4.5", "good"]
    assert f"first bad release: numpy {BAD_RELEASE}" in lines


# ------------------------------------------------------------------------------------------------ refusals

def _declarations() -> tuple[bytes, list[str]]:
    return (ROOT / "compose.yaml").read_bytes(), sorted(p.name for p in (ROOT / "images/numpy").iterdir())


@pytest.mark.parametrize(("args", "message"), [
    (["nope", "--good", "1.0", "--bad", "2.0"], "unknown framework 'nope'"),
    (["numpy", "--good", "1.26.4", "--bad", "99.0"], "numpy 99.0 does not exist on PyPI"),
    (["numpy", "--good", "2.4.6", "--bad", "1.26.4"], "--good 2.4.6 must be older than --bad 1.26.4"),
    (["numpy", "--good", "2.4.6", "--bad", "2.4.6"], "must be older than"),
    (["numpy", "--good", "x.y", "--bad", "2.4.6"], "is not a version number"),
    (["numpy", "--good", "1.26.4", "--bad", "2.4.6", "--cell", "cpu,nope,2"], "unknown variant 'nope'"),
    (["numpy", "--good", "1.26.4", "--bad", "2.4.6", "--cell", "gpu,loop,2"], "numpy has no device 'gpu'"),
    (["numpy", "--good", "1.26.4", "--bad", "2.4.6", "--cell", "cpu,loop,0"], "d must be one positive integer"),
    (["numpy", "--good", "1.26.4", "--bad", "2.4.6", "--cell", "cpu,loop"], "expected device,variant,d"),
    (["numpy", "--good", "1.26.4"], "give FRAMEWORK --good V1 --bad V2"),
])
def test_bad_input_is_one_line_and_declares_nothing(capsys, tmp_path: Path, args: list[str], message: str) -> None:
    before = _declarations()
    line = refused(capsys, "bisect", *args, "--out", str(tmp_path / "b"))
    assert message in line
    assert _declarations() == before and not (tmp_path / "b").exists()


def test_resume_of_a_folder_that_holds_no_bisect_is_refused(capsys, tmp_path: Path) -> None:
    line = refused(capsys, "bisect", "--resume", str(tmp_path))
    assert f"--resume {tmp_path}: no bisect.json there" in line


# ------------------------------------------------------------------------------------------- a real bisect

@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A scratch copy of what declaring, building and running needs, so this checkout's files stay untouched;
    the lock tool is reused from here."""
    (tmp_path / "co").mkdir()
    for rel in ("Makefile", "compose.yaml", "pyproject.toml", "README.md", "images", "scripts", "solvers",
                "orchestrator"):
        src = ROOT / rel
        if src.is_dir():
            shutil.copytree(src, tmp_path / "co" / rel, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(src, tmp_path / "co" / rel)
    (tmp_path / "co/.cache").mkdir()
    if (ROOT / ".cache/tools").exists():
        (tmp_path / "co/.cache/tools").symlink_to((ROOT / ".cache/tools").resolve())
    return tmp_path / "co"


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.docker
@pytest.mark.slow
def test_a_real_bisect_of_adjacent_numpy_releases(engine, checkout: Path, tmp_path: Path) -> None:
    """2.4.4 → 2.4.6 with 2.4.5 between: 2.4.4 is declared and built for the bisect, 2.4.5 only if 2.4.6 is
    slower; whatever the host's noise decides, the path, the runs and the clean-up are checked."""
    compose_path = checkout / "compose.yaml"
    before = (compose_path.read_bytes(), _tree(checkout / "images"))
    out = tmp_path / "bisect"
    done = gdbench("bisect", "numpy", "--good", "2.4.4", "--bad", "2.4.6", "--n", "500", "--iters", "50",
                   "--repeats", "5", "--max-repeats", "10", "--row-budget", "0.5", "--max-factor", "2",
                   "--no-sync-check", "--out", str(out), "--compose", str(compose_path), timeout=1500)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert lines[0].startswith("numpy bisect 2.4.4 → 2.4.6 (cpu image, Python 3.11): 1 release(s) between")
    assert lines[1].split()[0] == "2.4.6" and lines[1].split()[1] in ("good", "bad")
    assert lines[1].split()[2] == "cpu/loop/d=2" and "µs/iter (2.4.4: " in lines[1]
    summary = json.loads((out / "bisect.json").read_text())
    assert summary["status"] == "complete" and summary["candidates"] == ["2.4.5"]
    assert summary["declared"][:1] == ["2.4.4"] and len(summary["built"]) <= 2
    if summary["path"][0]["outcome"] == "bad":
        assert summary["first_bad"] in ("2.4.5", "2.4.6") and f"first bad release: numpy {summary['first_bad']}" \
            in done.stdout
        assert [s["release"] for s in summary["path"]] == ["2.4.6", "2.4.5"]
    else:
        assert summary["first_bad"] is None
        assert "no release between 2.4.4 and 2.4.6 is slower beyond the noise" in lines
    # The declarations it made are gone, byte for byte; the images it built may stay cached.
    assert (compose_path.read_bytes(), _tree(checkout / "images")) == before
    # Each measured pair is a run directory compare reads, the release against the good one; publish reads
    # the folder of them.
    assert summary["runs"][0] == str(out / "runs/2.4.6")
    compared = gdbench("compare", str(out / "runs/2.4.6"), "--across", "framework_version")
    assert compared.returncode == 0, compared.stderr[-2000:]
    assert "numpy across framework_version: 2.4.4 vs 2.4.6" in compared.stdout + compared.stderr
    published = gdbench("publish", str(out / "runs"), "--out", str(tmp_path / "site"))
    assert published.returncode == 0, published.stderr[-2000:]
    assert (tmp_path / "site/index.html").is_file()


@pytest.mark.docker
@pytest.mark.slow
def test_ctrl_c_removes_the_declarations_and_containers_and_keeps_the_runs(engine, checkout: Path,
                                                                            tmp_path: Path) -> None:
    compose_path = checkout / "compose.yaml"
    before = (compose_path.read_bytes(), _tree(checkout / "images"))
    out = tmp_path / "bisect"
    proc = subprocess.Popen([sys.executable, "-m", "orchestrator", "bisect", "numpy", "--good", "2.4.4", "--bad",
                             "2.4.6", "--n", "500", "--iters", "5000", "--no-sync-check", "--out", str(out),
                             "--compose", str(compose_path)], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        for line in proc.stderr:  # the first container of the first pair has started
            if line.startswith("start numpy@2.4.4-cpu"):
                break
        time.sleep(1)
        proc.send_signal(signal.SIGINT)
        stdout, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stdout
    assert f"interrupted: the runs it finished are kept; continue with gdbench bisect --resume {out}" in stdout
    assert (compose_path.read_bytes(), _tree(checkout / "images")) == before
    summary = json.loads((out / "bisect.json").read_text())
    assert summary["status"] == "interrupted" and summary["declared"] == ["2.4.4"]
    manifest = json.loads((out / "runs/2.4.6/manifest.json").read_text())
    assert manifest["status"] == "interrupted"
    assert engine.managed_containers(manifest["run_id"]) == [], "a container of the bisect is left"
