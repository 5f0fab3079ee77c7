"""JAX and TensorFlow plugins against the float64 reference, on the real frameworks.

Correctness runs through ``timing.measure`` (the protocol the CLI uses) without the sync check, whose
pass/fail is a timing ratio; the dtype that really runs is read from the compiled HLO; recompiles are
counted with JAX's compile log and TF's tracing counter; a GPU request on a host without one must end as
an ``unavailable`` document with exit code 3.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from solvers import registry
from solvers.base import Framework
from solvers.problem import TOLERANCE, ProblemSpec, make_data, reference
from solvers.timing import Sampling, measure
from tests.conftest import ROOT

FRAMEWORKS = ("jax", "tensorflow")
VARIANTS = ("loop", "fused")
#: 275 = 256 + 16 + 3 runs every level of the fused loop's blocks.
SPEC = {"n": 2_000, "iters": 275}


def _load(name: str) -> Framework:
    pytest.importorskip(name)
    return registry.load(name)


@pytest.fixture(scope="module", params=FRAMEWORKS)
def fw(request: pytest.FixtureRequest) -> Framework:
    framework = _load(request.param)
    if request.param == "tensorflow":
        framework.configure_threads(2)  # before any TF op in this process, as the CLI does
    return framework


def _device(fw: Framework) -> str:
    return "gpu" if "gpu" in fw.devices() else "cpu"


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_matches_reference(fw: Framework, variant: str, dtype: str) -> None:
    spec = ProblemSpec(dtype=dtype, **SPEC)
    for d in (1, 2, 17, 100):
        data = make_data(spec, d)
        row = measure(lambda: fw.make_solver("cpu", variant), data, reference(data, spec.iters), variant=variant,
                      iters=spec.iters, sampling=Sampling.fixed(1), dtype=dtype, gpu_state=lambda: None,
                      check_sync=False)
        assert row["status"] == "ok", (d, row["reason"], row["stderr_tail"])
        assert row["output_dtype"] == dtype
        assert row["max_rel_error"] <= TOLERANCE[dtype]


def test_wrong_iteration_count_is_caught(fw: Framework) -> None:
    """One step too few must miss the reference, else the correctness tests above prove nothing."""
    spec = ProblemSpec(dtype="float32", **SPEC)
    data = make_data(spec, 5)
    ref = reference(data, spec.iters)
    for variant in VARIANTS:
        solver = fw.make_solver("cpu", variant)
        solver.setup(data)
        out = solver.run(spec.iters - 1)
        solver.sync(out)
        W, b = solver.fetch(out)
        err = np.max(np.abs(np.append(W, b) - np.append(*ref))) / np.max(np.abs(np.append(*ref)))
        assert err > TOLERANCE["float32"], variant


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_compiled_program_runs_in_requested_dtype(fw: Framework, variant: str, dtype: str) -> None:
    """No silent float32 for float64 (x64 off) and no float64 for float32 (a promoting constant)."""
    data = make_data(ProblemSpec(dtype=dtype, **SPEC), 4)
    solver = fw.make_solver("cpu", variant)
    solver.setup(data)
    hlo = solver.hlo(SPEC["iters"])
    want, other = ("f64", "f32") if dtype == "float64" else ("f32", "f64")
    assert re.search(rf"\b{want}\[", hlo)
    assert not re.search(rf"\b{other}\[", hlo), f"{variant} {dtype} program contains {other}"


def test_fused_inner_loops_have_static_trip_counts(fw: Framework) -> None:
    """XLA:GPU waits on the host for every step of a loop whose trip count it cannot see; the blocks it can."""
    solver = fw.make_solver("cpu", "fused")
    solver.setup(make_data(ProblemSpec(n=300), 3))
    known = re.findall(r'"known_trip_count":\{"n":"(\d+)"\}', solver.hlo(1000))
    assert sorted(map(int, known)) == [16, 256]


_COMPUTATION = re.compile(r"^(?:ENTRY )?%?([\w.\-]+) \(.*?\{\n(.*?)^\}", re.S | re.M)
_INSTRUCTION = re.compile(r"^\s*(?:ROOT )?%([\w.\-]+) = (.*?) ([a-z][\w\-]*)\((.*)$", re.M)


def while_bodies(hlo: str) -> dict[str, list[tuple[str, str, str, list[str]]]]:
    """Each while body of an HLO module: its instructions as (name, shape, opcode, operand names)."""
    comps = {name: text for name, text in _COMPUTATION.findall(hlo)}
    bodies = set(re.findall(r"\bbody=%?([\w.\-]+)", hlo))
    return {b: [(n, re.sub(r"\{[^}]*\}", "", shape), op, re.findall(r"%([\w.\-]+)", args))
                for n, shape, op, args in _INSTRUCTION.findall(comps[b])] for b in bodies}


@pytest.mark.parametrize("d", [2, 17])
def test_fused_loop_body_is_two_dots_over_the_augmented_matrix(fw: Framework, d: int) -> None:
    """The honesty of ``fused``: each step is two products over A = [Xᵀ; 1ᵀ] and nothing else touches A.

    Read from the optimised HLO: inside every while body, A (f64[d+1,n]) may only be passed on (tuple,
    get-tuple-element, an inner while) or be an operand of a dot; the innermost bodies hold exactly two dots,
    both over A. A copy or transpose of A per step, an extra product, or a dot folded into a fusion fails.
    """
    n = 300
    solver = fw.make_solver("cpu", "fused")
    solver.setup(make_data(ProblemSpec(n=n), d))
    bodies = while_bodies(solver.hlo(275))
    a_shape = f"f64[{d + 1},{n}]"
    leaves = 0
    for name, instrs in bodies.items():
        holds_a = {n_ for n_, shape, op, _ in instrs if shape == a_shape}
        assert all(op in ("get-tuple-element", "parameter") for _, shape, op, _ in instrs if shape == a_shape), name
        assert not any(shape in (a_shape, f"f64[{n},{d + 1}]") and op not in ("get-tuple-element", "parameter")
                       for _, shape, op, _ in instrs), f"{name} makes a new copy of A"
        users = [(op, args) for _, _, op, args in instrs if holds_a & set(args)]
        assert all(op in ("dot", "tuple", "while") for op, _ in users), (name, users)
        if not any(op == "while" for _, _, op, _ in instrs):
            dots = [args for _, _, op, args in instrs if op == "dot"]
            assert len(dots) == 2 and all(holds_a & set(a) for a in dots), (name, dots)
            leaves += 1
    assert leaves >= 2, "expected the 16- and 1-step bodies at least"


def test_jax_x64_enabled() -> None:
    _load("jax")
    import jax
    import jax.numpy as jnp

    assert jax.config.jax_enable_x64
    assert jnp.asarray(1.0).dtype == np.float64
    assert jax.config.jax_default_matmul_precision == "highest"


@pytest.mark.parametrize("variant", VARIANTS)
def test_jax_twice_the_iterations_does_not_recompile(variant: str, caplog: pytest.LogCaptureFixture) -> None:
    fw = _load("jax")
    import jax

    data = make_data(ProblemSpec(n=1_237, iters=10), 3)  # a shape no other test uses: the first run compiles
    solver = fw.make_solver("cpu", variant)
    solver.setup(data)
    compiles = lambda: [r.getMessage() for r in caplog.records if "Compiling" in r.getMessage()]  # noqa: E731
    with jax.log_compiles(True), caplog.at_level(logging.WARNING):
        solver.sync(solver.run(10))
        assert any(("_fused" if variant == "fused" else "_step") in m for m in compiles())
        caplog.clear()
        solver.sync(solver.run(20))
        solver.sync(solver.run(7))
        assert compiles() == []


@pytest.mark.parametrize("variant", VARIANTS)
def test_tensorflow_twice_the_iterations_does_not_retrace(variant: str) -> None:
    fw = _load("tensorflow")
    from solvers.frameworks import tensorflow_

    fn = tensorflow_._fused if variant == "fused" else tensorflow_._step
    data = make_data(ProblemSpec(n=1_237, iters=10), 3)
    solver = fw.make_solver("cpu", variant)
    solver.setup(data)
    before = fn.experimental_get_tracing_count()
    solver.sync(solver.run(10))
    traced = fn.experimental_get_tracing_count()
    assert traced == before + 1  # a new shape traces once
    solver.sync(solver.run(20))
    solver.sync(solver.run(7))
    assert fn.experimental_get_tracing_count() == traced


def _cli(*args: str) -> tuple[int, dict]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "solvers", "run", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    return proc.returncode, json.loads(proc.stdout)


@pytest.mark.parametrize("name", FRAMEWORKS)
def test_cli_run_records_precision_and_threads(name: str) -> None:
    """The whole CLI path on CPU: x64 on, TF32 off, TF pools set before its context started."""
    _load(name)
    rc, doc = _cli("--framework", name, "--dims", "3", "--n", "1000", "--iters", "40", "--repeats", "1",
                   "--max-repeats", "1",
                   "--threads", "1", "--dtype", "float32", "--no-sync-check")
    assert rc == 0, doc
    assert [r["status"] for r in doc["results"]] == ["ok", "ok"]
    assert {r["output_dtype"] for r in doc["results"]} == {"float32"}
    info, threads = doc["provenance"]["framework"], doc["provenance"]["threads"]["framework"]
    if name == "jax":
        assert info["x64"] is True
        assert info["backend"] == "cpu"
    else:
        assert info["tf32_enabled"] is False
        assert threads == {"intra_op": 1, "inter_op": 1, "gpu_memory_growth": [], "errors": []}


@pytest.mark.parametrize("name", FRAMEWORKS)
def test_gpu_request_without_gpu_is_unavailable(name: str) -> None:
    if "gpu" in _load(name).devices():
        pytest.skip("a GPU is visible here; test_gpu_matches_reference covers it")
    rc, doc = _cli("--framework", name, "--device", "gpu", "--dims", "2,5", "--repeats", "1", "--max-repeats", "1")
    assert rc == 3
    assert doc["status"] == "unavailable"
    assert "GPU requested" in doc["error"]
    assert ("jax reported" if name == "jax" else "CUDA") in doc["error"]
    assert [r["status"] for r in doc["results"]] == ["unavailable"] * 4


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_gpu_matches_reference(fw: Framework, dtype: str) -> None:
    if _device(fw) != "gpu":
        pytest.skip("no GPU visible")
    spec = ProblemSpec(dtype=dtype, **SPEC)
    data = make_data(spec, 17)
    for variant in VARIANTS:
        row = measure(lambda v=variant: fw.make_solver("gpu", v), data, reference(data, spec.iters),
                      variant=variant, iters=spec.iters, sampling=Sampling.fixed(1), dtype=dtype,
                      gpu_state=lambda: None, check_sync=False)
        assert row["status"] == "ok", (variant, row["reason"], row["stderr_tail"])
        assert row["max_rel_error"] <= TOLERANCE[dtype]


def test_xla_dims_reproducer_reads_the_partition_and_checks_the_split_form() -> None:
    """scripts/xla_dims.py (docs/frameworks.md): one row per d, each product's workgroups read from XLA's dump."""
    proc = subprocess.run([sys.executable, "scripts/xla_dims.py", "--dims", "3,9", "--rounds", "1", "--steps", "5",
                           "--n", "64", "--threads", "1"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [line for line in proc.stdout.splitlines() if re.match(r"\| \d+ \|", line)]
    assert [r.split("|")[1].strip() for r in rows] == ["3", "9"]
    for row in rows:
        assert re.search(r"θ·A: \d+ × \d+ \(busiest 100%\); A·r: \d+ × \d+ \(busiest 100%\)", row), row
