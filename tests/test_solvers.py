"""Every registered framework × variant on CPU against the float64 reference, plus the CLI contract."""

from __future__ import annotations

import json

import numpy as np
import pytest

from solvers import registry, schema
from solvers.base import VARIANTS
from solvers.cli import EXIT_INVALID, EXIT_OK, EXIT_UNAVAILABLE
from solvers.problem import TOLERANCE, ProblemSpec, make_data, max_rel_error, reference
from solvers.timing import measure
from tests.conftest import run_solvers

CASES = [(fw, v) for fw in registry.FRAMEWORKS if "cpu" in registry.REGISTRY[fw].devices for v in VARIANTS]


@pytest.mark.parametrize(("framework", "variant"), CASES)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_every_solver_matches_reference(framework: str, variant: str, dtype: str) -> None:
    """Each (framework, variant) on CPU reproduces the reference at several dims, in the dtype asked for."""
    fw = registry.load(framework)  # CI installs every framework: a missing one is a failure, not a skip
    spec = ProblemSpec(n=257, iters=40, lr=1e-2, dtype=dtype, seed=3)
    for d in (1, 3, 17):
        data = make_data(spec, d)
        ref = reference(data, spec.iters)
        row = measure(lambda: fw.make_solver("cpu", variant), data, ref, variant=variant, iters=spec.iters,
                      repeats=2, dtype=dtype, gpu_state=lambda: None, check_sync=False)
        assert row["status"] == "ok", (framework, variant, d, row["reason"], row["stderr_tail"])
        assert row["output_dtype"] == dtype
        assert row["max_rel_error"] <= TOLERANCE[dtype]
        assert len(row["repeat_times_s"]) == 2 and row["time_per_iter_s"] > 0


def test_reference_is_not_converged_so_iteration_count_matters() -> None:
    """With the default step size one step more or less is far outside tolerance: the check has teeth."""
    data = make_data(ProblemSpec(n=1000), 5)
    w1, b1 = reference(data, 100)
    w2, b2 = reference(data, 101)
    assert max_rel_error(w2, b2, w1, b1) > 1e3 * TOLERANCE["float64"]


def test_wrong_answer_is_failed_and_carries_no_timing() -> None:
    """A solver that runs one iteration short is marked failed, with its error but without a time."""
    from solvers.frameworks.numpy_ import LoopSolver

    class OffByOne(LoopSolver):
        def run(self, iters: int):
            return super().run(iters - 1)

    spec = ProblemSpec(n=300, iters=30)
    data = make_data(spec, 4)
    row = measure(OffByOne, data, reference(data, spec.iters), variant="loop", iters=spec.iters, repeats=3,
                  dtype="float64", gpu_state=lambda: None)
    assert row["status"] == "failed"
    assert "exceeds tolerance" in row["reason"]
    assert row["max_rel_error"] > TOLERANCE["float64"]
    assert row["time_per_iter_s"] is None and row["repeat_times_s"] == [] and row["compile_s"] is None


def test_asynchronous_timer_fails_sync_check() -> None:
    """A solver whose work is not finished when sync returns (lazy work done in fetch) fails the sync check."""
    from solvers.frameworks.numpy_ import LoopSolver

    class Lazy(LoopSolver):
        def run(self, iters: int):
            return ("pending", iters)

        def fetch(self, out):
            return super().fetch(super().run(out[1]))

    spec = ProblemSpec(n=2000, iters=50)
    data = make_data(spec, 20)
    row = measure(Lazy, data, reference(data, spec.iters), variant="loop", iters=spec.iters, repeats=2,
                  dtype="float64", gpu_state=lambda: None)
    assert row["status"] == "failed"
    assert row["reason"].startswith("sync check failed")
    assert row["time_per_iter_s"] is None


def test_float32_request_that_runs_float64_is_refused() -> None:
    from solvers.frameworks.numpy_ import LoopSolver

    class Upcast(LoopSolver):
        def fetch(self, out):
            return np.asarray(out[0], dtype=np.float64), float(out[1])

    spec = ProblemSpec(n=300, iters=10, dtype="float32")
    data = make_data(spec, 3)
    row = measure(Upcast, data, reference(data, spec.iters), variant="loop", iters=spec.iters, repeats=2,
                  dtype="float32", gpu_state=lambda: None)
    assert row["status"] == "failed" and "ran in float64" in row["reason"]


def test_cli_prints_only_one_valid_document() -> None:
    res = run_solvers("run", "--framework", "numpy", "--dims", "2,7", "--n", "300", "--iters", "20",
                      "--repeats", "3", "--threads", "1")
    assert res.returncode == EXIT_OK, res.stderr
    doc = schema.loads(res.stdout)  # the whole of stdout is exactly one document
    assert [(r["dim"], r["variant"]) for r in doc["results"]] == [(2, "loop"), (2, "fused"), (7, "loop"), (7, "fused")]
    assert all(r["status"] == "ok" and r["sync_check"]["passed"] for r in doc["results"])
    prov = doc["provenance"]
    assert prov["framework"]["name"] == "numpy" and prov["framework"]["version"] == np.__version__
    assert prov["threads"]["requested"] == 1 and len(prov["threads"]["cpus_pinned"]) == 1
    assert prov["threads"]["env"]["OMP_NUM_THREADS"] == "1"
    assert prov["gpu"] is None and prov["timestamp_utc"].endswith("Z")
    assert "numpy/cpu/loop d=2" in res.stderr  # progress goes to stderr


def test_cli_out_file(tmp_path) -> None:
    out = tmp_path / "doc.json"
    res = run_solvers("run", "--framework", "numpy", "--dims", "3", "--n", "100", "--iters", "5",
                      "--repeats", "1", "--out", str(out))
    assert res.returncode == EXIT_OK and res.stdout == ""
    assert schema.loads(out.read_text())["status"] == "ok"


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--framework", "caffe"], "unknown framework 'caffe'"),
        (["--framework", "numpy", "--dims", "2,0"], "--dims must be positive"),
        (["--framework", "numpy", "--dims", "-3"], "--dims must be positive"),
        (["--framework", "numpy", "--dims", ""], "--dims is empty"),
        (["--framework", "numpy", "--dims", "2,x"], "comma list of integers"),
        (["--framework", "numpy", "--n", "1"], "--n must be >= 2"),
        (["--framework", "numpy", "--iters", "0"], "--iters must be >= 1"),
        (["--framework", "numpy", "--variant", "turbo"], "unknown variant"),
        (["--framework", "numpy", "--device", "tpu"], "unknown device 'tpu'"),
        (["--framework", "numpy", "--dtype", "float16"], "unknown dtype"),
    ],
)
def test_invalid_input_gives_invalid_document_and_exit_2(args: list[str], needle: str) -> None:
    res = run_solvers("run", *args)
    assert res.returncode == EXIT_INVALID
    doc = schema.loads(res.stdout)
    assert doc["status"] == "invalid" and needle in doc["error"]
    assert all(r["status"] == "invalid" and r["time_per_iter_s"] is None for r in doc["results"])
    assert needle in res.stderr


def test_unparseable_command_line_still_yields_a_document() -> None:
    res = run_solvers("run", "--framework", "numpy", "--n", "many")
    assert res.returncode == EXIT_INVALID
    assert schema.loads(res.stdout)["status"] == "invalid"


def test_gpu_on_cpu_only_framework_is_unavailable() -> None:
    res = run_solvers("run", "--framework", "numpy", "--device", "gpu", "--dims", "2", "--n", "50")
    assert res.returncode == EXIT_UNAVAILABLE
    doc = schema.loads(res.stdout)
    assert doc["status"] == "unavailable" and "GPU requested" in doc["error"]
    assert [r["status"] for r in doc["results"]] == ["unavailable", "unavailable"]


def test_missing_framework_is_unavailable_with_the_fix(tmp_path) -> None:
    """Hide numba from the interpreter: the document says it is not installed and how to get it."""
    blocker = tmp_path / "numba"
    blocker.mkdir()
    (blocker / "__init__.py").write_text("raise ImportError('numba hidden for this test')\n")
    res = run_solvers("run", "--framework", "numba", "--dims", "2", "--n", "50",
                      env={"PYTHONPATH": str(tmp_path)})
    assert res.returncode == EXIT_UNAVAILABLE
    doc = schema.loads(res.stdout)
    assert "not installed" in doc["error"] and "pip install numba" in doc["error"]


def test_list_reports_every_framework() -> None:
    res = run_solvers("list")
    assert res.returncode == EXIT_OK
    listing = json.loads(res.stdout)
    assert set(listing) == set(registry.FRAMEWORKS)
    assert listing["numpy"]["installed"] and listing["numpy"]["devices"] == ["cpu"]


def test_schema_refuses_unknown_version_and_timed_failures() -> None:
    res = run_solvers("run", "--framework", "numpy", "--dims", "2", "--n", "50", "--iters", "3", "--repeats", "1",
                      "--no-sync-check")
    doc = json.loads(res.stdout)
    schema.validate(doc)
    with pytest.raises(schema.SchemaError, match="unsupported schema_version"):
        schema.validate({**doc, "schema_version": 99})
    bad = json.loads(res.stdout)
    bad["results"][0]["status"] = "failed"  # a failed row that still carries a timing is invalid
    with pytest.raises(schema.SchemaError):
        schema.validate(bad)
    with pytest.raises(schema.SchemaError, match="not JSON"):
        schema.loads(res.stdout[:-20])
