"""Every registered framework × variant on CPU against the float64 reference, plus the CLI contract."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from solvers import registry, schema, timing
from solvers.base import VARIANTS
from solvers.cli import EXIT_INVALID, EXIT_OK, EXIT_UNAVAILABLE
from solvers.problem import TOLERANCE, ProblemSpec, make_data, max_rel_error, reference
from solvers.timing import Sampling, measure
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
                      sampling=Sampling.fixed(2), dtype=dtype, gpu_state=lambda: None, check_sync=False)
        assert row["status"] == "ok", (framework, variant, d, row["reason"], row["stderr_tail"])
        assert row["output_dtype"] == dtype
        assert row["max_rel_error"] <= TOLERANCE[dtype]
        assert len(row["repeat_times_s"]) == 2 and row["time_per_iter_s"] > 0


@pytest.mark.parametrize("framework", [fw for fw in registry.FRAMEWORKS if "cpu" in registry.REGISTRY[fw].devices])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_each_own_gemv_computes_x_w_in_the_dtype_asked(framework: str, dtype: str) -> None:
    """The product the bench's two-gemv bound times is X·W itself, not a cheaper stand-in (nor a downcast)."""
    fw = registry.load(framework)
    data = make_data(ProblemSpec(n=301, iters=1, dtype=dtype, seed=4), 9)
    W = np.random.default_rng(5).standard_normal(9).astype(dtype)
    run = fw.gemv(data, W)
    assert run is not None, f"{framework} offers its own gemv here"
    want = data.X.astype(np.float64) @ W.astype(np.float64)
    for k in (1, 5):
        got = run(k)
        assert got.dtype == np.dtype(dtype) and got.shape == (301,)
        assert np.max(np.abs(got - want)) <= 1e-4 * np.max(np.abs(want)) if dtype == "float32" else \
            np.allclose(got, want, rtol=1e-12, atol=1e-12)


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
    row = measure(OffByOne, data, reference(data, spec.iters), variant="loop", iters=spec.iters,
                  sampling=Sampling.fixed(3), dtype="float64", gpu_state=lambda: None)
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
    row = measure(Lazy, data, reference(data, spec.iters), variant="loop", iters=spec.iters,
                  sampling=Sampling.fixed(2), dtype="float64", gpu_state=lambda: None)
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
    row = measure(Upcast, data, reference(data, spec.iters), variant="loop", iters=spec.iters,
                  sampling=Sampling.fixed(2), dtype="float32", gpu_state=lambda: None)
    assert row["status"] == "failed" and "ran in float64" in row["reason"]


def test_cli_prints_only_one_valid_document() -> None:
    res = run_solvers("run", "--framework", "numpy", "--dims", "2,7", "--n", "300", "--iters", "20",
                      "--repeats", "3", "--max-repeats", "3", "--threads", "1")
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
                      "--repeats", "1", "--max-repeats", "1", "--out", str(out))
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
        (["--framework", "numpy", "--repeats", "0"], "--repeats must be >= 1"),
        (["--framework", "numpy", "--repeats", "5", "--max-repeats", "3"], "--max-repeats (3) must be >= --repeats"),
        (["--framework", "numpy", "--ci-width", "1.5"], "--ci-width is a fraction"),
        (["--framework", "numpy", "--ci-width", "nan"], "--ci-width is a fraction"),
        (["--framework", "numpy", "--row-budget", "0"], "--row-budget must be > 0"),
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
                      "--max-repeats", "1",
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


class _SleepClock:
    """A test double of the solver protocol whose time is a sleep: exact answers, a chosen clock.

    ``run`` sleeps ``iters × per_iter × speed`` and ``fetch`` returns the reference for the requested count,
    so the correctness checks pass and only the sync check sees the clock under test.
    """

    per_iter = 2e-6

    def __init__(self) -> None:
        self.calls = 0

    def setup(self, data) -> None:
        self.data = data

    def speed(self) -> float:
        return 1.0

    def run(self, iters: int):
        self.calls += 1
        time.sleep(iters * self.per_iter * self.speed())
        return iters

    def sync(self, out) -> None:
        """Nothing queued: ``run`` returned only when its time was spent."""

    def fetch(self, out):
        return reference(self.data, out)


class _Bistable(_SleepClock):
    """A CPU whose speed flips between two levels from one run to the next (ratio 1.13)."""

    def speed(self) -> float:
        return 1.13 if self.calls % 2 else 1.0


class _MissesQueuedWork(_SleepClock):
    """A clock that misses queued work: every run returns after the same dispatch time whatever ``iters``."""

    def run(self, iters: int):
        self.calls += 1
        time.sleep(1e-3)
        return iters


def _measure_double(solver_cls) -> dict:
    spec = ProblemSpec(n=50, iters=30)
    data = make_data(spec, 2)
    return measure(solver_cls, data, reference(data, spec.iters), variant="loop", iters=spec.iters,
                  sampling=Sampling.fixed(3), dtype="float64", gpu_state=lambda: None)


def test_bistable_clock_is_never_refused() -> None:
    """Strictly alternating k and 2k runs would phase-lock with a speed that flips per run (2 × 1.13 = 2.26,
    outside a two-sided window); the balanced k..4k order gives each length both speeds, so the row stays."""
    row = _measure_double(_Bistable)
    assert row["status"] == "ok", row["reason"]
    assert set(row["flags"]) <= {"unstable", "noisy"}, row["flags"]
    check, slope = row["sync_check"], row["slope"]
    assert check["passed"] and check["ratio"] >= timing.SYNC_RATIO[0]
    # Settled from one whole ABBA on, at the first round whose ratio is inside the bounds, else every round ran.
    assert timing.SYNC_SETTLED_ROUNDS <= check["rounds"] <= timing.SYNC_ROUNDS
    assert check["ratio"] <= timing.SYNC_RATIO[1] or check["rounds"] == timing.SYNC_ROUNDS, check
    assert slope["points"] == len(timing.SYNC_MULTIPLES) * check["rounds"]
    assert slope["low"] <= _SleepClock.per_iter * 1.13 and slope["high"] >= _SleepClock.per_iter
    assert row["time_per_iter_s"] is not None


def test_clock_missing_queued_work_fails_even_after_the_retry() -> None:
    row = _measure_double(_MissesQueuedWork)
    assert row["status"] == "failed" and row["reason"].startswith("sync check failed"), row["reason"]
    assert row["flags"] == ["retried"], "the one fresh attempt was made and is marked"
    assert row["sync_check"]["ratio"] < timing.SYNC_RATIO[0] and not row["sync_check"]["passed"]
    assert row["sync_check"]["rounds"] == timing.SYNC_ROUNDS, "a failing ratio is judged on every round"
    assert row["time_per_iter_s"] is None and row["median_s"] is None
    assert len(row["repeat_times_s"]) == 3, "a failed row keeps the repeat times it measured"
    doc = schema.not_run_document(framework="numpy", device="cpu", status="failed", reason=row["reason"],
                                  problem=schema.problem_record(n=50, dims=[2], iters=30, repeats=3,
                                                                dtype="float64", seed=0, lr=1e-3),
                                  variants=["loop"], provenance=_PROVENANCE)
    schema.validate({**doc, "results": [row]})  # the failed row with its diagnostics is a valid row


class _HonestOnSecondSolver(_SleepClock):
    """The first solver built misses queued work, the next one is honest: a burst that a retry clears."""

    built = 0

    def __init__(self) -> None:
        super().__init__()
        type(self).built += 1
        self.lazy = type(self).built == 1

    def run(self, iters: int):
        if not self.lazy:
            return super().run(iters)
        time.sleep(1e-3)
        return iters


def test_a_row_that_passes_its_fresh_attempt_is_kept_and_marked_retried() -> None:
    row = _measure_double(_HonestOnSecondSolver)
    assert row["status"] == "ok", row["reason"]
    assert "retried" in row["flags"] and row["time_per_iter_s"] > 0
    assert row["sync_check"]["first_attempt"].startswith("sync check failed")


_PROVENANCE = {"framework": {"name": "numpy", "version": None}, "python": {}, "platform": {}, "threads": {},
               "timestamp_utc": schema.utc_now(), "hostname": "h"}


def test_one_sided_rule_and_slope_fit() -> None:
    fit = timing.fit_slope([(k, 0.5 + 2.0 * k) for k in (1, 2, 3, 4) * 4])
    assert fit["time_per_iter_s"] == pytest.approx(2.0) and fit["low"] == pytest.approx(2.0)
    noisy = timing.fit_slope([(k, 2.0 * k + (0.1 if i % 2 else -0.1)) for i, k in enumerate((1, 2, 3, 4) * 4)])
    assert noisy["low"] < 2.0 < noisy["high"] and noisy["points"] == 16
    assert timing.t95(14) == pytest.approx(2.145) and timing.t95(1000) == pytest.approx(1.96)


def test_sampling_stops_on_the_interval_the_maximum_or_the_budget() -> None:
    rule = timing.Sampling(min_repeats=3, max_repeats=6, ci_width=0.02, budget_s=10.0)
    assert rule.stop([1.0, 1.0]) is None, "never below the minimum, however settled"
    assert rule.stop([1.0, 1.001, 0.999]) == "interval"
    wide = [1.0, 1.3, 0.8]
    assert timing.median_ci_rel(wide) > 0.02 and rule.stop(wide) is None
    assert rule.stop([*wide, 1.2, 0.9, 1.1]) == "max_repeats"
    assert timing.Sampling(3, 30, 0.02, budget_s=3.0).stop(wide) == "budget"  # 3.1 s of repeats
    assert timing.Sampling.fixed(4).stop([1.0, 1.3, 0.8]) is None
    assert timing.Sampling.fixed(4).stop([1.0, 1.3, 0.8, 1.1]) == "max_repeats"
    assert timing.Sampling.fixed(1).stop([1.0]) == "max_repeats", "one repeat has no interval"
    # t(2) · sqrt(pi/2) · s / sqrt(3) / median for 0.9, 1.0, 1.1: s = 0.1
    assert timing.median_ci_rel([0.9, 1.0, 1.1]) == pytest.approx(4.303 * 1.2533 * 0.1 / 3 ** 0.5, rel=1e-3)
    assert timing.median_ci_rel([1.0]) == float("inf")


def test_a_noisy_row_spends_its_budget_and_keeps_its_flag() -> None:
    """A solver whose every other run is twice as slow never settles: it stops at the budget, flagged noisy."""
    from solvers.frameworks.numpy_ import LoopSolver

    class Jumpy(LoopSolver):
        calls = 0

        def run(self, iters):
            type(self).calls += 1
            time.sleep(0.004 if type(self).calls % 2 else 0.008)
            return super().run(iters)

    spec = ProblemSpec(n=200, iters=20)
    data = make_data(spec, 2)
    row = measure(Jumpy, data, reference(data, spec.iters), variant="loop", iters=spec.iters,
                  sampling=timing.Sampling(3, 200, 0.02, budget_s=0.1), dtype="float64", gpu_state=lambda: None,
                  check_sync=False)
    assert row["status"] == "ok" and "noisy" in row["flags"]
    assert row["sampling"]["stop"] == "budget" and row["sampling"]["ci_rel"] > 0.02
    assert 3 <= row["sampling"]["repeats"] < 200 and sum(row["repeat_times_s"]) >= 0.1


def test_spread_flags_noisy_rows() -> None:
    calm = timing.spread([1.0, 1.01, 0.99, 1.0])
    assert calm["iqr_rel"] < timing.NOISY_IQR_REL and calm["cv"] < timing.NOISY_CV
    wild = timing.spread([1.0, 1.5, 0.7, 1.2])
    assert wild["iqr_rel"] > timing.NOISY_IQR_REL


def test_host_arrays_are_line_aligned_and_contiguous() -> None:
    for d in (1, 2, 3, 7, 100):
        data = make_data(ProblemSpec(n=101), d)
        for a in (data.X, data.y):
            assert a.ctypes.data % 64 == 0 and a.flags.c_contiguous
    spec = ProblemSpec(n=101, dtype="float32")
    assert make_data(spec, 3).X.dtype == np.float32 and make_data(spec, 3).X.ctypes.data % 64 == 0


def test_run_document_records_floor_spread_layout_and_host_load() -> None:
    res = run_solvers("run", "--framework", "numpy", "--dims", "2,5", "--n", "300", "--iters", "30",
                      "--repeats", "3", "--threads", "1")
    assert res.returncode == EXIT_OK, res.stderr
    doc = schema.loads(res.stdout)
    assert [f["dim"] for f in doc["floor"]] == [2, 5]
    for f in doc["floor"]:
        assert f["time_s"] == min(f["gemv_plain_s"], f["gemv_padded_s"], f["stream_s"]) > 0
        assert f["kind"] in ("gemv_plain", "gemv_padded", "stream") and isinstance(f["call_overhead_bound"], bool)
        assert f["sum_one_thread_s"] > 0, "NumPy's one-thread sum is recorded, not a candidate"
    for r in doc["results"]:
        assert r["iqr_rel"] >= 0 and r["cv"] >= 0 and set(r["flags"]) <= set(schema.FLAGS)
        assert r["layout"]["x_alignment"] == 0
        assert set(r["host_load"]) == {"loadavg_start", "steal_s", "nivcsw"}
        check = r["sync_check"]
        # The check ends early once a settled ratio is inside the bounds; otherwise it runs every round.
        assert r["slope"]["points"] == len(timing.SYNC_MULTIPLES) * check["rounds"]
        assert timing.SYNC_SETTLED_ROUNDS <= check["rounds"] <= timing.SYNC_ROUNDS
        settled = check["bounds"][0] <= check["ratio"] <= check["bounds"][1]
        assert settled or check["rounds"] == timing.SYNC_ROUNDS, check
        assert r["async_probe"]["synced_s"] > 0
        # Adaptive repeats: at least --repeats, at most --max-repeats, the reason recorded with the rule.
        sampling = r["sampling"]
        assert sampling["min_repeats"] == 3 and sampling["max_repeats"] == 30
        assert 3 <= sampling["repeats"] == len(r["repeat_times_s"]) <= 30
        assert sampling["stop"] in ("interval", "budget", "max_repeats")
        assert (sampling["stop"] == "interval") == (sampling["ci_rel"] <= sampling["ci_width"])
    assert doc["problem"]["sampling"] == {"min_repeats": 3, "max_repeats": 30, "ci_width": 0.02, "budget_s": 2.0}
    fused = [r for r in doc["results"] if r["variant"] == "fused"]
    assert [r["layout"]["extra_bytes"] for r in fused] == [300 * 2 * 8, 300 * 5 * 8]  # the copy of Xᵀ
    assert doc["provenance"]["blas"], "threadpoolctl's view after the runs"
    skipped = run_solvers("run", "--framework", "numpy", "--dims", "2", "--n", "50", "--iters", "3",
                          "--repeats", "1", "--max-repeats", "1", "--no-floor", "--no-sync-check")
    assert schema.loads(skipped.stdout)["floor"] is None


def test_bench_verdict_inside_spread_is_inconclusive() -> None:
    from solvers.targets import Row, verdict

    tight = [Row("x", "loop", 2, "ok", 1.0, spread=0.01), Row("x", "fused", 2, "ok", 0.95, spread=0.01)]
    loose = [Row("x", "loop", 2, "ok", 1.0, spread=0.01), Row("x", "fused", 2, "ok", 0.95, spread=0.2)]
    assert verdict("v", 0.95, 1.0, higher_is_better=False, rows=tight, detail="").startswith("PASS")
    assert verdict("v", 1.05, 1.0, higher_is_better=False, rows=tight, detail="").startswith("FAIL")
    assert verdict("v", 1.05, 1.0, higher_is_better=False, rows=loose, detail="").startswith("INCONCLUSIVE")


def test_bench_prints_spread_floor_and_verdicts() -> None:
    res = run_solvers("bench", "--dims", "2,5", "--n", "300", "--iters", "30", "--repeats", "3", "--max-repeats", "3",
                      "--frameworks", "numpy")
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert "spread" in out and "floor:" in out and ("x floor" in out or "x ref" in out)
    assert "x 2gemv" in out and "own gemv X·W per framework, ms" in out
    gemv_lines = [line for line in out.splitlines() if "own gemv X·W" in line]
    assert len(gemv_lines) == 2 and all(float(line.rsplit("numpy ", 1)[1]) > 0 for line in gemv_lines)
    verdicts = [line for line in out.splitlines() if "numpy fused not slower than loop" in line]
    assert len(verdicts) == 2 and all(v.split()[0] in ("PASS", "FAIL", "INCONCLUSIVE") for v in verdicts)
    assert "BLAS loaded by the end:" in out
    bad = run_solvers("bench", "--dims", "0")
    assert bad.returncode == 2 and bad.stdout.strip() == "invalid arguments: --dims must be positive, got [0]"


def test_bench_checks_every_fused_form_against_the_floor_at_d100() -> None:
    from solvers.targets import Bounds, Row, checks

    rows = [Row("numpy", "loop", 100, "ok", 4.0, spread=0.01), Row("numpy", "fused", 100, "ok", 2.0, spread=0.01),
            Row("torch", "fused", 100, "ok", 3.0, spread=0.01), Row("jax", "fused", 100, "failed", reason="x"),
            Row("numba", "fused", 100, "ok", 2.25, spread=0.05, passes=1)]
    lines = {line.split(":")[0]: line for line in checks({100: rows}, {100: Bounds(1.0)}) if "x the floor" in line}
    numpy_line = lines["PASS  d=100 numpy fused <= 2.2x the floor"]
    assert numpy_line.endswith("2.0000 ms, 2.00x (floor 1.0000 ms); spread ±1.0%")
    assert "FAIL  d=100 torch fused <= 2.2x the floor" in lines
    assert "INCONCLUSIVE  d=100 numba fused <= 2.2x the floor" in lines, "2.25 against 2.2 is inside ±5 %"
    assert not any("jax" in key for key in lines), "a failed row has no time to compare"
    assert "FAIL  d=100 numba fused (one pass) <= 1.3x the floor" in lines, "only numba's fused reads X once"
    assert not any("numpy fused (one pass)" in key for key in lines)
    own = [line for line in checks({100: rows}, {100: Bounds(1.0)}) if "its own gemv" in line]
    assert not own, "without a gemv reading there is no proposed bound to hold it to"
    for gemv, word in ((1.5, "PASS"), (1.0, "FAIL"), (1.25, "INCONCLUSIVE")):  # 1.50x, 2.25x, 1.80x (±5 %)
        own = [line for line in checks({100: rows}, {100: Bounds(1.0, gemv_ms={"numba": gemv})})
               if "its own gemv" in line]
        assert len(own) == 1 and own[0].startswith(
            f"{word}  d=100 numba fused (one pass) <= 1.75x its own gemv (proposed bound): 2.2500 ms = "), own


def test_bench_holds_two_pass_fused_forms_to_twice_their_own_gemv() -> None:
    from solvers.targets import Bounds, Row, checks

    rows = [Row("numpy", "loop", 50, "ok", 4.0, spread=0.01), Row("numpy", "fused", 50, "ok", 2.0, spread=0.01),
            Row("jax", "fused", 50, "ok", 1.1, spread=0.01), Row("torch", "compiled", 50, "ok", 1.0, spread=0.2),
            Row("numba", "fused", 50, "ok", 0.5, spread=0.01, passes=1), Row("tf", "fused", 50, "ok", 9.0)]
    bounds = Bounds(0.4, gemv_ms={"numpy": 0.5, "jax": 0.5, "torch": 0.45, "numba": 0.5})
    assert bounds.two_gemv_ratio(rows[1]) == 2.0 and bounds.two_gemv_ratio(rows[5]) is None
    lines = [line for line in checks({50: rows}, {50: bounds}) if "own gemv" in line]
    assert lines == [
        "FAIL  d=50 numpy fused <= 1.15x two of its own gemv: 2.0000 ms = 2.00x 2 x 0.5000 ms; spread ±1.0%",
        "PASS  d=50 jax fused <= 1.15x two of its own gemv: 1.1000 ms = 1.10x 2 x 0.5000 ms; spread ±1.0%",
        "INCONCLUSIVE  d=50 torch compiled <= 1.15x two of its own gemv: 1.0000 ms = 1.11x 2 x 0.4500 ms; "
        "spread ±20.0% (the difference is inside the runs' own spread)",
    ], "loop rows, one-pass rows and a framework without a gemv are not held to it"
    call_bound = Bounds(0.4, memory_bound=False, gemv_ms=bounds.gemv_ms)
    assert not [line for line in checks({50: rows}, {50: call_bound}) if "own gemv" in line], \
        "where the floor measures a call, not memory, neither is a gemv a bound"
    small = [Row(r.framework, r.variant, 39, r.status, r.ms, spread=r.spread, passes=r.passes) for r in rows]
    assert not [line for line in checks({39: small}, {39: bounds}) if "own gemv" in line], \
        "below d=40 the step's other vectors weigh too much for two gemv to bound it"
