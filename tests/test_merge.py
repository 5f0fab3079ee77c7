"""``orchestrator.results.merge``: documents → merged rows, the diagnostic columns, and bad input as one clear line.

Documents are built as the solver writes them by tests/rundocs.py (``solvers.schema`` row and problem helpers,
real ``solvers.metadata`` provenance, validated on write by ``RunDir.write_document``); the timings in them are
hand-chosen input fixtures.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from orchestrator.errors import InvalidOptions
from orchestrator.results.merge import (
    COLUMNS,
    DOCUMENT_ONLY,
    FLATTENED,
    LISTS,
    REQUIRED,
    ROW_COLUMNS,
    load_runs,
    write_merged,
)
from solvers.schema import RESULT, ROW_FIELDS, dumps, empty_row, loads
from tests.conftest import refused
from tests.rundocs import host_record, make_document, ok_row, versioned_document, write_keyed_run, write_run


def diagnostic_run(path: Path) -> Path:
    """numpy/cpu with flags, a slope and a floor; torch/gpu fused with transfer, re-layout and energy."""
    numpy = make_document("numpy", "cpu", [
        ok_row(2, "loop", [1.0e-3, 1.1e-3, 1.2e-3], flags=["noisy", "retried"], iqr_rel=0.1,
               slope={"time_per_iter_s": 1.1e-5, "low": 1.0e-5, "high": 1.2e-5, "points": 4},
               sync_check={"iters": 200, "ratio": 2.01, "passed": True}),
        ok_row(5, "loop", [2.0e-3, 2.0e-3, 2.1e-3]),
    ], floor=[{"dim": 2, "time_s": 2.0e-6, "call_overhead_bound": True}, {"dim": 5, "time_s": 4.0e-6}])
    torch = make_document("torch", "gpu", [
        ok_row(2, "fused", [3.0e-4, 3.1e-4, 3.2e-4], transfer_s=5e-4,
               layout={"x_alignment": 16, "extra_bytes": 2**20, "what": "padded copy"},
               energy={"joules_per_iter": 2.5e-5, "avg_power_w": 80.0}),
    ])
    return write_run(path, "diag", [numpy, torch])


def test_row_columns_come_from_the_schema() -> None:
    """Every row field is a column, flattened on purpose, or kept in the documents only: none is forgotten."""
    for name in ROW_FIELDS:
        types = RESULT["properties"][name].get("type", [])
        nested = {"object", "array"} & set([types] if isinstance(types, str) else types)
        if name in DOCUMENT_ONLY:
            assert name not in ROW_COLUMNS
        elif name in FLATTENED:
            assert set(FLATTENED[name]) <= set(ROW_COLUMNS) and name not in ROW_COLUMNS
        elif nested:
            assert name in LISTS, f"{name} holds an object or list: flatten it or keep it in the documents"
        else:
            assert name in ROW_COLUMNS
    assert len(COLUMNS) == len(set(COLUMNS)) and set(REQUIRED) <= set(COLUMNS)


def test_diagnostics_are_merged_and_survive_parquet_and_csv(tmp_path: Path) -> None:
    df = load_runs([diagnostic_run(tmp_path / "run")])
    row = df[(df.framework == "numpy") & (df.dim == 2)].iloc[0]
    assert row["flags"] == "noisy;retried" and row.iqr_rel == 0.1 and row.sync_ratio == 2.01
    assert (row.slope_time_per_iter_s, row.slope_low, row.slope_high) == (1.1e-5, 1.0e-5, 1.2e-5)
    assert row.floor_s == 2.0e-6 and row.floor_call_overhead_bound is True
    assert row.x_floor == pytest.approx(row.time_per_iter_s / 2.0e-6)
    five = df[(df.framework == "numpy") & (df.dim == 5)].iloc[0]
    assert five["flags"] == "" and five.floor_s == 4.0e-6 and pd.isna(five.floor_call_overhead_bound)
    gpu = df[df.framework == "torch"].iloc[0]
    assert (gpu.transfer_s, gpu.layout_extra_bytes, gpu.x_alignment) == (5e-4, 2**20, 16)
    assert (gpu.joules_per_iter, gpu.avg_power_w) == (2.5e-5, 80.0)
    assert pd.isna(gpu.floor_s) and pd.isna(gpu.x_floor)  # torch measured no floor
    parquet, csv = write_merged(df, tmp_path / "merged")
    for again in (load_runs([parquet]), load_runs([csv])):
        assert list(again.columns) == COLUMNS
        back = again[(again.framework == "numpy") & (again.dim == 2)].iloc[0]
        assert back["flags"] == "noisy;retried" and back.x_floor == pytest.approx(row.x_floor)
        assert bool(back.floor_call_overhead_bound) is True and list(back.repeat_times_s) == [1.0e-3, 1.1e-3, 1.2e-3]
        assert again[again.framework == "torch"].iloc[0].joules_per_iter == 2.5e-5


def test_version_1_documents_merge_without_diagnostics(tmp_path: Path) -> None:
    doc = make_document("numpy", "cpu", [ok_row(2, "loop", [1e-3, 1e-3, 1.1e-3])])
    new = set(ROW_FIELDS) - {"dim", "variant", "status", "reason", "stderr_tail", "time_per_iter_s", "median_s",
                             "min_s", "cv", "repeat_times_s", "compile_s", "transfer_s", "max_rel_error",
                             "tolerance", "output_dtype", "sync_check", "peak_rss_bytes", "peak_device_bytes"}
    v1 = {**doc, "schema_version": 1, "results": [{k: v for k, v in r.items() if k not in new} for r in doc["results"]]}
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "numpy-cpu.json").write_text(json.dumps(v1))
    df = load_runs([tmp_path / "run"])
    assert len(df) == 1 and df.iloc[0]["flags"] == "" and pd.isna(df.iloc[0].iqr_rel) and pd.isna(df.iloc[0].x_floor)
    assert df.iloc[0].time_per_iter_s == pytest.approx(1e-5)


def test_malformed_floor_is_one_line_and_loses_no_row(tmp_path: Path) -> None:
    doc = make_document("numpy", "cpu", [ok_row(2, "loop", [1e-3, 1e-3, 1.1e-3]), ok_row(5, "loop", [2e-3] * 3)],
                        floor=[{"dim": 2, "time_s": "fast"}, {"dim": 5, "time_s": 4e-6}, {"dim": 5, "time_s": 1e-6}])
    assert loads(dumps(doc))  # the schema lets the floor's content be anything but dim-less
    lines: list[str] = []
    df = load_runs([write_run(tmp_path / "run", "r", [doc])], warn=lines.append)
    assert len(lines) == 1 and "2 floor entries" in lines[0] and "numpy-cpu.json" in lines[0], lines
    assert len(df) == 2 and df.time_per_iter_s.notna().all()
    assert pd.isna(df[df.dim == 2].iloc[0].floor_s) and df[df.dim == 5].iloc[0].floor_s == 4e-6


def test_host_and_image_columns_come_from_provenance(tmp_path: Path) -> None:
    rows = [ok_row(2, "loop", [1e-3, 1.1e-3, 1.2e-3])]
    fleet = versioned_document("numpy", "2.4.6", rows, host=host_record("gpu1", "NVIDIA H100", "570.1", "12.8"))
    plain = versioned_document("numpy", "1.26.4", rows)  # a document that names no host: the local engine
    df = load_runs([write_keyed_run(tmp_path / "run", "r", [fleet, plain])])
    one = df[df.framework_version == "2.4.6"].iloc[0]
    assert (one.host, one.host_hostname, one.host_kernel, one.host_cpu_model, one.host_engine_id) == (
        "gpu1", "gpu1-box", "6.8.0-45-generic", "AMD EPYC 7B13", "GPU1:ENGINE:ID")
    assert (one.gpu_name, one.gpu_driver_version, one.cuda_driver_version) == ("NVIDIA H100", "570.1", "12.8")
    assert one.image_id == fleet["provenance"]["image"]["id"] and one.image_tag == "gdbench/numpy:2.4.6-cpu"
    other = df[df.framework_version == "1.26.4"].iloc[0]
    assert other.host == "local" and pd.isna(other.host_hostname) and other.python_version == "3.11.2"
    assert other.hostname == plain["provenance"]["hostname"]  # the solver's own, kept as it was
    never_ran = versioned_document("numpy", "2.4.6", [empty_row(2, "loop", "unavailable", "no GPU")], python="3.13.1")
    never_ran["provenance"]["python"] = {}  # written by the orchestrator: no interpreter ran
    df = load_runs([write_keyed_run(tmp_path / "unrun", "u", [never_ran])])
    assert df.iloc[0].python_version == "3.13.1"  # the image's label


def test_merged_csv_from_before_the_host_columns_loads(tmp_path: Path) -> None:
    df = load_runs([diagnostic_run(tmp_path / "run")])
    _, csv = write_merged(df, tmp_path / "merged")
    new = ["image_id", "host", "host_engine_id", "host_hostname", "host_kernel", "host_os", "host_cpu_model",
           "host_architecture"]
    old = tmp_path / "old.csv"
    pd.read_csv(csv).drop(columns=new).to_csv(old, index=False)
    lines: list[str] = []
    again = load_runs([old], warn=lines.append)
    assert len(again) == len(df) and list(again.columns) == COLUMNS
    assert (again.host == "local").all() and again.host_hostname.isna().all() and again.image_id.isna().all()
    assert len(lines) == 1 and ", ".join(new) in lines[0] and "(host: local)" in lines[0], lines
    assert again.time_per_iter_s.tolist() == pytest.approx(df.time_per_iter_s.tolist())


def test_merged_file_missing_columns(tmp_path: Path) -> None:
    df = load_runs([diagnostic_run(tmp_path / "run")])
    _, csv = write_merged(df, tmp_path / "merged")
    table = pd.read_csv(csv)
    old = tmp_path / "old.csv"
    table.drop(columns=["flags", "x_floor"]).to_csv(old, index=False)
    lines: list[str] = []
    again = load_runs([old], warn=lines.append)
    assert len(again) == len(df) and list(again.columns) == COLUMNS and again["flags"].isna().all()
    assert len(lines) == 1 and "flags, x_floor" in lines[0], lines
    broken = tmp_path / "broken.csv"
    table.drop(columns=["time_per_iter_s"]).to_csv(broken, index=False)
    with pytest.raises(InvalidOptions, match=r"not a gdbench merged table \(no column time_per_iter_s\)") as exc:
        load_runs([broken])
    assert exc.value.fix and "gdbench merge" in exc.value.fix
    garbage = tmp_path / "garbage.csv"
    garbage.write_text(csv.read_text().replace("[0.001, 0.0011, 0.0012]", "[0.001,"))
    with pytest.raises(InvalidOptions, match="not a JSON list"):
        load_runs([garbage])


def test_unknown_input_is_refused_with_a_fix(tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    with pytest.raises(InvalidOptions, match="not a run directory") as exc:
        load_runs([notes])
    assert exc.value.exit_code == 2 and exc.value.fix


def test_non_numeric_diagnostics_are_one_line(tmp_path: Path) -> None:
    doc = make_document("torch", "gpu", [
        ok_row(2, "fused", [3e-4] * 3, energy={"joules_per_iter": "n/a", "avg_power_w": 80.0}),
        ok_row(5, "fused", [4e-4] * 3, slope={"time_per_iter_s": None, "low": "fast"}),
    ])
    lines: list[str] = []
    df = load_runs([write_run(tmp_path / "run", "r", [doc])], warn=lines.append)
    assert len(lines) == 1 and "2 non-numeric value(s) in energy.joules_per_iter, slope.low" in lines[0], lines
    assert len(df) == 2 and df.time_per_iter_s.notna().all() and df.avg_power_w.tolist()[0] == 80.0
    assert df.joules_per_iter.isna().all() and df.slope_low.isna().all()


def test_merge_cli_refuses_bad_input_in_one_line(tmp_path: Path, capsys) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    line = refused(capsys, "merge", str(notes), "--out", str(tmp_path / "m"))
    assert "not a run directory" in line and "fix:" in line
    assert not (tmp_path / "m").exists() and notes.read_text() == "hello"
