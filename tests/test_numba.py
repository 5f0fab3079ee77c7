"""The Numba plugin against the float64 reference: both variants, both fused paths, awkward shapes, float32.

No timings are asserted here; speed is the bench command's job. Sizes are small so compilation dominates.
"""

from __future__ import annotations

import numpy as np
import pytest

numba = pytest.importorskip("numba")

from solvers.frameworks import numba_  # noqa: E402
from solvers.problem import TOLERANCE, ProblemSpec, make_data, max_rel_error, reference  # noqa: E402

FW = numba_.FRAMEWORK
ITERS = 40


def _solve(variant: str, data, iters: int = ITERS) -> tuple[np.ndarray, float]:
    solver = FW.make_solver("cpu", variant)
    solver.setup(data)
    out = solver.run(iters)
    solver.sync(out)
    return solver.fetch(out)


def _data(n: int, d: int, dtype: str = "float64"):
    # A larger learning rate than the default so 40 steps move the parameters far from W0 = 0.
    return make_data(ProblemSpec(n=n, iters=ITERS, lr=0.05, dtype=dtype, seed=3), d)


@pytest.mark.parametrize("variant", ["loop", "fused"])
@pytest.mark.parametrize(("n", "d"), [(1001, 1), (999, 2), (1003, 5), (1001, 7), (1001, 8), (777, 33), (401, 100)])
# d covers every kernel family: generated (d <= SMALL_D), four-row for runtime d, four-row for the exact d
def test_matches_reference(variant: str, n: int, d: int) -> None:
    if variant not in FW.variants["cpu"]:
        pytest.skip(f"{variant} not offered here (needs SciPy)")
    data = _data(n, d)
    W, b = _solve(variant, data)
    W_ref, b_ref = reference(data, ITERS)
    assert W.dtype == np.float64
    assert max_rel_error(W, b, W_ref, b_ref) <= TOLERANCE["float64"]
    assert np.max(np.abs(W_ref)) > 0.1  # the check above compares parameters that actually moved


@pytest.mark.parametrize("d", [1, 3, 7, 8, 33])
@pytest.mark.parametrize("chunks", [1, 2, 3, 8])
def test_fused_paths_and_chunking(d: int, chunks: int) -> None:
    """Serial and parallel drivers, generated and generic kernels, chunks that do not divide n or exceed it."""
    n = 7  # with 8 chunks of ceil(7/8) = 1 row, the last chunk is empty
    data = _data(n, d)
    W_ref, b_ref = reference(data, ITERS)
    step = 2.0 * data.lr / n
    kernels = {numba_.row_kernel(d), numba_.blocked_kernel(d)}
    for kernel in kernels:
        for descend in (numba_.descend_serial, numba_.descend_parallel):
            parts = np.full((chunks if descend is numba_.descend_parallel else 1, 48), np.nan)
            W = data.W0.copy()
            b = descend(kernel, data.X, data.y, W, 0.0, step, ITERS, parts)
            err = max_rel_error(W, b, W_ref, b_ref)
            assert err <= TOLERANCE["float64"], (kernel, descend, err)


def test_row_kernels_compute_the_partial_gradient() -> None:
    """Both kernel families against NumPy on a row range that is not a multiple of the four-row block."""
    rng = np.random.default_rng(1)
    for d in [*range(1, numba_.SMALL_D + 3), 33]:
        X = rng.standard_normal((37, d))
        y = rng.standard_normal(37)
        W = rng.standard_normal(d)
        r = y[3:34] - (X[3:34] @ W + 0.25)
        expected = np.append(X[3:34].T @ r, r.sum())
        kernels = [numba_.blocked_kernel(d), numba_.blocked_kernel(None)]
        kernels += [numba_.blocked_kernel(d, rows) for rows in (1, 2, 3, 8)]  # blocks that do not divide 31 rows
        kernels += [numba_.small_kernel(d)] if d <= numba_.SMALL_D else []
        for kernel in kernels:
            out = np.full(d + 1, np.nan)
            kernel(X, y, W, 0.25, 3, 34, out)
            np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError):
        numba_.small_kernel(numba_.SMALL_D + 1)
    with pytest.raises(ValueError):
        numba_.blocked_kernel(0)
    with pytest.raises(ValueError):
        numba_.blocked_kernel(5, rows=0)


@pytest.mark.parametrize("variant", ["loop", "fused"])
@pytest.mark.parametrize("d", [2, 20])
def test_float32_stays_float32(variant: str, d: int) -> None:
    if variant not in FW.variants["cpu"]:
        pytest.skip(f"{variant} not offered here (needs SciPy)")
    data = _data(501, d, "float32")
    W, b = _solve(variant, data)
    assert W.dtype == np.float32  # a silent upcast would make the float32 timing a float64 one
    assert max_rel_error(W, b, *reference(data, ITERS)) <= TOLERANCE["float32"]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_fused_layout_is_aligned_and_zero_padded(dtype: str) -> None:
    data = _data(301, 100, dtype)
    solver = FW.make_solver("cpu", "fused")
    solver.setup(data)
    X = solver.X
    assert X.ctypes.data % 64 == 0 and X.strides[0] % 64 == 0 and X.shape[1] > 100
    np.testing.assert_array_equal(X[:, :100], data.X)
    assert not X[:, 100:].any()
    W, _ = solver.fetch(solver.run(3))
    assert W.shape == (100,) and not solver.W[100:].any()  # the padding's gradient is exactly zero


def test_repeated_runs_start_from_w0() -> None:
    data = _data(503, 4)
    solver = FW.make_solver("cpu", "fused")
    solver.setup(data)
    first = solver.fetch(solver.run(ITERS))
    first = (first[0].copy(), first[1])
    second = solver.fetch(solver.run(ITERS))
    np.testing.assert_array_equal(first[0], second[0])
    assert first[1] == second[1]


def _allocations(solver, iters: int) -> int:
    """Heap allocations Numba's runtime makes during one run (its own counter, enabled only here)."""
    from numba.core.runtime import _nrt_python, rtsys

    _nrt_python.memsys_enable_stats()
    try:
        before = rtsys.get_allocation_stats().alloc
        solver.run(iters)
        return rtsys.get_allocation_stats().alloc - before
    finally:
        _nrt_python.memsys_disable_stats()


@pytest.mark.parametrize("parallel", [False, True])
def test_fused_does_not_allocate_per_iteration(monkeypatch: pytest.MonkeyPatch, parallel: bool) -> None:
    FW.configure_threads(2)
    monkeypatch.setattr(numba_, "PARALLEL_MIN_ELEMENTS", 0 if parallel else 1 << 62)
    data = _data(2001, 12)
    solver = FW.make_solver("cpu", "fused")
    solver.setup(data)
    assert solver.parallel is (parallel and numba.get_num_threads() > 1)
    solver.run(1)  # compile outside the count
    assert _allocations(solver, 300) == _allocations(solver, 1)


def test_allocation_counter_sees_the_loop_variant() -> None:
    """The counter above is live: the textbook loop allocates temporaries every iteration."""
    if "loop" not in FW.variants["cpu"]:
        pytest.skip("loop not offered here (needs SciPy)")
    solver = FW.make_solver("cpu", "loop")
    solver.setup(_data(2001, 12))
    solver.run(1)
    assert _allocations(solver, 300) > _allocations(solver, 1) + 300


def test_threads_and_details() -> None:
    info = FW.configure_threads(1)
    assert info["num_threads"] == 1 == numba.get_num_threads()
    info = FW.configure_threads(10_000)  # never more than the pool Numba started with
    assert info["num_threads"] == numba.config.NUMBA_NUM_THREADS
    assert info["threading_layer"] in {"omp", "tbb", "workqueue"}
    details = FW.details("cpu")
    assert details["threading_layer"] == info["threading_layer"]
    assert set(details["fastmath"]) == {"reassoc", "contract"}
    assert FW.version() == numba.__version__
