"""``gdbench compare --across AXIS`` and ``--fail-on-slower`` through the real CLI.

Documents are built as the orchestrator stores them (``solvers.schema`` rows, real ``solvers.metadata``
provenance with the pinned version, its image and Python, and the engine's host record; validated on write by
``RunDir``), from hand-chosen repeat times: those are input fixtures, every expected ratio follows from them.
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path

import pandas as pd
import pytest

from orchestrator.errors import InvalidOptions
from orchestrator.results.compare import compare
from orchestrator.results.compare_across import compare_across
from orchestrator.sweep.rundir import RunDir
from solvers.schema import empty_row
from tests.conftest import gdbench, refused
from tests.rundocs import host_record, ok_row, versioned_document, write_keyed_run


def _ms(start: float, step: float = 0.01, n: int = 7) -> list[float]:
    """Seven repeat times (seconds per 100 iterations) from ``start`` ms rising by ``step`` ms."""
    return [(start + i * step) * 1e-3 for i in range(n)]


def ratio(new: float, old: float) -> float:
    return statistics.median(_ms(new)) / statistics.median(_ms(old))


def numpy_old(scale: float = 1.0, **kw: object) -> dict:
    rows = [(2, "loop", 1.00), (2, "fused", 0.40), (5, "loop", 2.00), (5, "fused", 0.80)]
    return versioned_document("numpy", "1.26.4", [ok_row(d, v, [t * scale for t in _ms(ms)]) for d, v, ms in rows],
                              python="3.11.2", **kw)  # type: ignore[arg-type]


def numpy_new(version: str = "2.4.6", python: str = "3.13.1", scale: float = 1.0, **kw: object) -> dict:
    failed = empty_row(5, "fused", "failed", "max relative error 3.1e-02 above tolerance 1e-08")
    return versioned_document("numpy", version, [
        ok_row(2, "loop", [t * scale for t in _ms(0.50)]),  # faster
        ok_row(2, "fused", [t * scale for t in _ms(0.401)]),  # interleaved with 1.26.4's repeats: inconclusive
        ok_row(5, "loop", [t * scale for t in _ms(3.00)]),  # slower
        failed,  # not comparable
    ], python=python, **kw)  # type: ignore[arg-type]


def jax() -> dict:
    return versioned_document("jax", "0.10.2", [ok_row(2, "loop", _ms(1.5)), ok_row(5, "loop", _ms(2.5))])


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("across")
    local = host_record("local", "NVIDIA H100 80GB HBM3", "570.86.15", "12.8")
    gpu1 = host_record("gpu1", "NVIDIA L4", "550.54.14", "12.4", kernel="6.1.0-28-amd64")
    return {
        # One sweep with two numpy versions (on two Pythons) and one jax version.
        "versions": write_keyed_run(root / "versions", "versions", [numpy_old(), numpy_new(), jax()]),
        # Three runs of one version each, given newest first: the oldest is still the reference.
        "v246": write_keyed_run(root / "v246", "v246", [numpy_new()]),
        "v193": write_keyed_run(root / "v193", "v193", [versioned_document("numpy", "1.9.3", [
            ok_row(2, "loop", _ms(2.00))], python="3.11.2")]),
        "v1264": write_keyed_run(root / "v1264", "v1264", [numpy_old()]),
        # The same version on two Pythons, one run each.
        "py311": write_keyed_run(root / "py311", "py311", [numpy_new(python="3.11.2", scale=2.0)]),
        "py313": write_keyed_run(root / "py313", "py313", [numpy_new(python="3.13.1")]),
        # A fleet run: the same image on two hosts with different GPUs, drivers and kernels.
        "fleet": write_keyed_run(root / "fleet", "fleet", [numpy_old(host=local), numpy_old(2.0, host=gpu1)]),
        "jax": write_keyed_run(root / "jax", "jax", [jax()]),
        "root": root,
    }


def test_across_versions_within_one_run(runs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "cmp"
    result = gdbench("compare", str(runs["versions"]), "--across", "framework_version", "--out", str(out))
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert "numpy across framework_version: 1.26.4 vs 2.4.6 (each against 1.26.4)" in text
    ratios = [ratio(0.50, 1.00), ratio(0.401, 0.40), ratio(3.00, 2.00)]
    mean = math.exp(sum(map(math.log, ratios)) / 3)
    line = (f"numpy: 2.4.6 vs 1.26.4: geometric mean ratio {mean:.3f}× (below 1 is faster) over 3 cell(s): "
            "1 faster, 1 slower, 1 inconclusive, 1 not comparable")
    assert line in text
    assert "jax: no cells differ only in framework_version: not compared" in text
    # The provenance that differs between the sides is above the table: the Python and the image.
    assert text.index("3.13.1") < text.index("Median time per iteration") < text.index(line)
    md = (out / "compare.md").read_text()
    assert "| python | 3.11.2 | 3.13.1 |" in md
    assert "| image | gdbench/numpy:1.26.4-cpu | gdbench/numpy:2.4.6-cpu |" in md
    assert "| framework_version | 1.26.4 | 2.4.6 |" in md and f"- {line}" in md
    rows = pd.read_csv(out / "compare.csv")
    new = rows[rows.value == "2.4.6"].set_index(["variant", "dim"])
    assert new.loc[("loop", 2), "mark"] == "faster" and new.loc[("loop", 5), "mark"] == "slower"
    assert bool(new.loc[("fused", 2), "inconclusive"]) and pd.isna(new.loc[("fused", 2), "mark"])
    assert new.loc[("fused", 5), "status"] == "failed" and pd.isna(new.loc[("fused", 5), "ratio_to_first"])
    assert new.loc[("loop", 5), "ratio_to_first"] == pytest.approx(ratio(3.00, 2.00))
    assert set(rows.reference) == {"1.26.4"} and set(rows.framework) == {"numpy"}
    assert "<h1>gdbench compare --across framework_version</h1>" in (out / "compare.html").read_text()


def test_across_runs_oldest_version_first(runs: dict[str, Path]) -> None:
    c = compare_across([runs["v246"], runs["v193"], runs["v1264"]], "framework_version")
    (group,) = c.groups
    assert group.values == ["1.9.3", "1.26.4", "2.4.6"]  # PEP 440 order, not the order given or text order
    assert len(group.verdict_lines()) == 2 and all("vs 1.9.3" in line for line in group.verdict_lines())
    loop2 = next(m for m in group.matches if (m.variant, m.dim) == ("loop", 2))
    assert loop2.run == "" and loop2.verdicts["1.26.4"].ratio == pytest.approx(ratio(1.00, 2.00))
    assert loop2.verdicts["2.4.6"].ratio == pytest.approx(ratio(0.50, 2.00))


def test_across_python_and_what_else_differs(runs: dict[str, Path]) -> None:
    c = compare_across([runs["py311"], runs["py313"]], "python")
    (group,) = c.groups
    assert group.values == ["3.11.2", "3.13.1"]
    assert dict(group.provenance)["python"] == ["3.11.2", "3.13.1"]
    loop2 = next(m for m in group.matches if (m.variant, m.dim) == ("loop", 2))
    assert loop2.version == "2.4.6" and loop2.verdicts["3.13.1"].mark == "faster"
    assert loop2.verdicts["3.13.1"].ratio == pytest.approx(0.5)


def test_across_host_shows_the_hosts_that_differ(runs: dict[str, Path], tmp_path: Path) -> None:
    result = gdbench("compare", str(runs["fleet"]), "--across", "host", "--out", str(tmp_path / "cmp"))
    assert result.returncode == 0, result.stderr
    md = (tmp_path / "cmp" / "compare.md").read_text()
    for row in ("| host | local | gpu1 |", "| GPU | NVIDIA H100 80GB HBM3 | NVIDIA L4 |",
                "| NVIDIA driver | 570.86.15 | 550.54.14 |", "| CUDA (driver) | 12.8 | 12.4 |",
                "| kernel | 6.8.0-45-generic | 6.1.0-28-amd64 |", "| hostname | local-box | gpu1-box |"):
        assert row in md, row
    assert "| CPU model |" not in md  # the same on both hosts: not shown
    assert ("numpy: gpu1 vs local: geometric mean ratio 2.000× (below 1 is faster) over 4 cell(s): 0 faster, "
            "4 slower, 0 inconclusive") in result.stdout


def test_fail_on_slower_exit_codes(runs: dict[str, Path], tmp_path: Path) -> None:
    args = ["compare", str(runs["versions"]), "--across", "framework_version", "--fail-on-slower"]
    slower = gdbench(*args)
    assert slower.returncode == 1, slower.stderr
    assert "fail-on-slower: 1 of 3 matched cell(s) slower beyond the noise and ±5%" in slower.stderr
    assert "numpy: 2.4.6 vs 1.26.4" in slower.stdout  # the table still comes first
    wide = gdbench(*args, "--min-effect", "0.6")  # 1.49× is inside ±60%: not a regression
    assert wide.returncode == 0 and "none of 3 matched cell(s)" in wide.stderr, wide.stderr
    # Plain compare: a copy is never slower; the same documents with every time doubled are.
    copy = write_keyed_run(tmp_path / "copy", "copy", [numpy_old(), numpy_new(), jax()])
    assert gdbench("compare", str(runs["versions"]), str(copy), "--fail-on-slower").returncode == 0
    doubled = write_keyed_run(tmp_path / "doubled", "doubled", [numpy_old(), numpy_new(scale=2.0), jax()])
    result = gdbench("compare", str(runs["versions"]), str(doubled), "--fail-on-slower")
    assert result.returncode == 1 and "slower beyond the noise" in result.stderr, result.stderr
    # Inconclusive cells never fail it: 0.402 vs 0.401 ms, interleaved.
    near = write_keyed_run(tmp_path / "near", "near", [versioned_document("numpy", "2.4.6", [
        ok_row(2, "fused", _ms(0.402))], python="3.13.1")])
    only = write_keyed_run(tmp_path / "only", "only", [versioned_document("numpy", "2.4.6", [
        ok_row(2, "fused", _ms(0.401))], python="3.13.1")])
    assert gdbench("compare", str(only), str(near), "--fail-on-slower").returncode == 0


def test_fail_on_slower_with_nothing_matched_is_refused(runs: dict[str, Path], capsys) -> None:
    plain = gdbench("compare", str(runs["v1264"]), str(runs["jax"]))
    assert plain.returncode == 0  # without the gate: the table, nothing matched
    # The table comes first, then the refusal to gate on nothing.
    line = refused(capsys, "compare", str(runs["v1264"]), str(runs["jax"]), "--fail-on-slower", output_first=True)
    assert "no cell was timed on both sides" in line and "fix:" in line


def test_across_bad_input_is_one_line(runs: dict[str, Path], capsys) -> None:
    line = refused(capsys, "compare", str(runs["versions"]), "--across", "compiler")
    assert "framework_version" in line and "host" in line
    line = refused(capsys, "compare", str(runs["py311"]), str(runs["py313"]), "--across", "framework_version")
    assert "no cells differ only in framework_version: the runs hold one version per framework" in line
    assert "gdbench images add" in line
    line = refused(capsys, "compare", str(runs["versions"]), "--across", "host")
    assert "no cells differ only in host: the runs hold one host" in line


def test_plain_compare_keys_rows_by_version_where_a_run_holds_several(runs: dict[str, Path], tmp_path: Path) -> None:
    copy = write_keyed_run(tmp_path / "copy", "copy", [numpy_old(), numpy_new(), jax()])
    c = compare([runs["versions"], copy])
    assert ("numpy", "cpu", "loop", "1.26.4", "", 2) in c.keys and ("numpy", "cpu", "loop", "2.4.6", "", 2) in c.keys
    assert len(c.keys) == 4 + 4 + 2  # every cell of both numpy versions and of jax: none hides another
    assert c.keyer.label(("numpy", "cpu", "loop", "2.4.6", "")) == "numpy 2.4.6 (Python 3.13.1)"
    assert not any(v.mark for v in c.verdicts.values())
    # Runs with one version each still match as they always did, the version shown as differing provenance.
    one = compare([runs["v1264"], runs["v246"]])
    assert ("numpy", "cpu", "loop", 2) in one.keys
    assert one.verdicts[(("numpy", "cpu", "loop", 2), "v246")].mark == "faster"
    assert ("version [numpy/cpu]", ["1.26.4", "2.4.6"]) in one.provenance


def test_across_image_matches_the_same_version_in_two_images(runs: dict[str, Path], tmp_path: Path) -> None:
    rebuilt = numpy_new(scale=2.0)
    rebuilt["provenance"]["image"]["tag"] = "gdbench/numpy:2.4.6-cpu-rebuilt"
    other = write_keyed_run(tmp_path / "rebuilt", "rebuilt", [rebuilt])
    c = compare_across([runs["v246"], other], "image")
    (group,) = c.groups
    assert group.values == ["gdbench/numpy:2.4.6-cpu", "gdbench/numpy:2.4.6-cpu-rebuilt"]
    assert group.summary(group.values[1])[:3] == (pytest.approx(2.0), 0, 3)  # three timed cells, all slower
    # numpy 1.26.4 in another image is another version, not another image of the same cells.
    with pytest.raises(InvalidOptions, match="no cells differ only in image: cells with another image also differ"):
        compare_across([runs["v246"], runs["v1264"]], "image")


def test_plain_compare_keys_rows_by_host_where_a_run_holds_several(runs: dict[str, Path]) -> None:
    c = compare([runs["fleet"], runs["fleet"]])
    assert {k[4] for k in c.keys} == {"local", "gpu1"} and len(c.keys) == 8
    assert c.keyer.label(("numpy", "cpu", "loop", "", "gpu1")) == "numpy @gpu1"


def test_a_value_in_two_runs_is_compared_once_and_said(runs: dict[str, Path], tmp_path: Path) -> None:
    again = write_keyed_run(tmp_path / "again", "again", [numpy_new(scale=3.0)])
    c = compare_across([runs["v1264"], runs["v246"], again], "framework_version")
    (group,) = c.groups
    loop2 = next(m for m in group.matches if (m.variant, m.dim) == ("loop", 2))
    assert loop2.rows["2.4.6"]["run"] == "v246" and loop2.verdicts["2.4.6"].ratio == pytest.approx(ratio(0.50, 1.00))
    assert "numpy loop d=2: 2.4.6 is in runs v246 and again; compared: v246" in c.warnings


def test_across_reads_a_merged_csv_from_before_the_host_columns(runs: dict[str, Path], tmp_path: Path) -> None:
    merged = gdbench("merge", str(runs["versions"]), "--out", str(tmp_path / "m"))
    assert merged.returncode == 0, merged.stderr
    old = tmp_path / "old.csv"
    pd.read_csv(tmp_path / "m" / "results.csv").drop(columns=["host", "host_hostname", "image_id"]).to_csv(
        old, index=False)
    result = gdbench("compare", str(old), "--across", "framework_version")
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip().splitlines() == [
        f"{old}: no column image_id, host, host_hostname (written by an older gdbench): left empty (host: local)"]
    assert "numpy: 2.4.6 vs 1.26.4: geometric mean ratio" in result.stdout


# --------------------------------------------------------------------------- the GPU stack's axes (fixtures)
# These documents are fixtures: there is no GPU here, so their GPU, driver and CUDA provenance is written by hand
# (the shape is the orchestrator's own: provenance.host from NVML, the image's io.gdbench.cuda.version label).
def gpu_doc(scale: float, host: dict, cuda: str = "12.8", version: str = "2.13.0", device: str = "gpu") -> dict:
    doc = versioned_document("torch", version, [ok_row(2, "fused", [t * scale for t in _ms(0.20)]),
                                                ok_row(5, "fused", [t * scale for t in _ms(0.30)])],
                             host=host, device=device)
    doc["provenance"]["image"]["labels"]["io.gdbench.cuda.version"] = cuda
    doc["provenance"]["image"]["tag"] = f"gdbench/torch:{version}-cuda{cuda.split('.')[0]}"
    return doc


@pytest.fixture(scope="module")
def gpu_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("gpu-axes")
    before = host_record("gpu1", "NVIDIA H100 80GB HBM3", "550.54.14", "12.4")
    after = host_record("gpu1", "NVIDIA H100 80GB HBM3", "580.65.06", "13.0")
    l4 = host_record("gpu2", "NVIDIA L4", "580.65.06", "13.0")
    return {
        # The same host before and after a driver upgrade: two runs.
        "drv550": write_keyed_run(root / "drv550", "drv550", [gpu_doc(1.0, before), numpy_old(host=before)]),
        "drv580": write_keyed_run(root / "drv580", "drv580", [gpu_doc(0.5, after)]),
        # Two GPU models, one run over two hosts.
        "gpus": write_keyed_run(root / "gpus", "gpus", [gpu_doc(1.0, after), gpu_doc(3.0, l4)]),
        # One framework version from two CUDA builds on one host, in two runs.
        "cu12": write_keyed_run(root / "cu12", "cu12", [gpu_doc(1.0, after, cuda="12.8")]),
        "cu13": write_keyed_run(root / "cu13", "cu13", [gpu_doc(1.0, after, cuda="13.0")]),
    }


def test_across_driver_compares_one_host_before_and_after_an_upgrade(gpu_runs: dict[str, Path]) -> None:
    c = compare_across([gpu_runs["drv550"], gpu_runs["drv580"]], "driver")
    (group,) = c.groups
    assert group.framework == "torch" and group.values == ["550.54.14", "580.65.06"]
    assert all(m.verdicts["580.65.06"].mark == "faster" for m in group.matches)
    assert group.verdict_lines()[0].startswith("torch: 580.65.06 vs 550.54.14: geometric mean ratio 0.500×")
    # numpy's CPU rows ran on that host too, but not on its GPU: said, and left out.
    assert any(w.startswith("4 row(s) carry no driver") and w.endswith("(numpy cpu)") for w in c.warnings), c.warnings


def test_across_gpu_matches_cells_on_two_hosts(gpu_runs: dict[str, Path]) -> None:
    c = compare_across([gpu_runs["gpus"]], "gpu")
    (group,) = c.groups
    assert group.values == ["NVIDIA H100 80GB HBM3", "NVIDIA L4"]
    assert all(m.verdicts["NVIDIA L4"].mark == "slower" for m in group.matches)
    assert ("inventory host", ["gpu1", "gpu2"]) in group.provenance  # the hosts are shown, not matched


def test_across_cuda_compares_two_cuda_builds_of_one_version_and_fails_on_slower(gpu_runs: dict[str, Path],
                                                                                  tmp_path: Path) -> None:
    c = compare_across([gpu_runs["cu12"], gpu_runs["cu13"]], "cuda")
    (group,) = c.groups
    assert group.values == ["12.8", "13.0"] and {m.verdicts["13.0"].mark for m in group.matches} <= {"", None}
    slower = compare_across([gpu_runs["drv580"], gpu_runs["drv550"]], "driver")  # newest first: 550 is slower
    assert {m.verdicts["550.54.14"].mark for m in slower.groups[0].matches} == {"slower"}
    proc = gdbench("compare", str(gpu_runs["drv580"]), str(gpu_runs["drv550"]), "--across", "driver",
                   "--fail-on-slower", "--out", str(tmp_path / "cmp"))
    assert proc.returncode == 1, proc.stderr
    assert "torch: 550.54.14 vs 580.65.06" in proc.stdout + proc.stderr


def test_a_gpu_axis_with_one_value_is_one_line_with_the_fix(gpu_runs: dict[str, Path], capsys) -> None:
    err = refused(capsys, "compare", str(gpu_runs["cu12"]), "--across", "cuda")
    assert "no cells differ only in cuda" in err and "io.gdbench.cuda.version" in err


def test_across_cuda_compares_cpu_rows_of_two_cuda_images(tmp_path: Path) -> None:
    """Two CUDA builds of one release run on a machine without a GPU: their CPU rows carry their images' CUDA
    runtime and are compared; a CPU image's rows carry none and are said to be left out (fixture documents)."""
    run = RunDir(tmp_path / "cpu")
    run.path.mkdir()
    run.write_manifest({"run_id": "cpu"})
    local = host_record("local")
    for key, scale, cuda in (("torch@2.13.0+cuda12-cpu", 1.0, "12.9"), ("torch@2.13.0+cuda13-cpu", 2.0, "13.5")):
        run.write_document(key, gpu_doc(scale, local, cuda=cuda, device="cpu"))
    run.write_document("numpy-cpu", numpy_old(host=local))  # a CPU image: no CUDA runtime
    c = compare_across([run.path], "cuda")
    (group,) = c.groups
    assert group.values == ["12.9", "13.5"] and all(m.device == "cpu" for m in group.matches)
    assert all(m.verdicts["13.5"].mark == "slower" for m in group.matches)
    assert any("carry no cuda" in w and "(rows of CPU images)" in w and "numpy cpu" in w for w in c.warnings)
