"""The GPU half up to the device boundary, on a host without a GPU.

What runs here is real: numba-cuda's kernels execute in numba's CUDA simulator and are checked against the
float64 reference; CuPy, JAX command buffers, NVML and ``gdbench gpu`` are exercised on their no-GPU paths,
which must end in a clear ``unavailable`` (or exit 5), never a crash. Nothing here measures a GPU: no GPU
number exists until these paths run on one. Tests of a no-GPU path skip where a GPU is in fact visible.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from solvers import base, metadata, nvml, options, registry, schema
from solvers.problem import TOLERANCE, ProblemSpec, make_data, max_rel_error, reference
from solvers.timing import Sampling, measure
from tests import imagechecks
from tests.conftest import ROOT

TINY = ["--n", "64", "--iters", "3", "--repeats", "1", "--max-repeats", "1", "--no-sync-check"]


def _nvml_usable() -> bool:
    return nvml.device_handle() is not None


def _rows(doc: dict) -> list[dict]:
    return doc["results"]


# ----------------------------------------------------------------------------------------------- CuPy


@pytest.mark.skipif(importlib.util.find_spec("cupy") is None,
                    reason="cupy-cuda12x is not installed here (pip install cupy-cuda12x)")
def test_cupy_imports_without_cuda_and_every_row_is_unavailable(solvers_cli) -> None:
    fw = registry.load("cupy")  # the import itself must not need CUDA
    if fw.devices():
        pytest.skip("a GPU is visible: the unavailable path does not apply")
    assert registry.REGISTRY["cupy"].devices == ("gpu",) and "cpu" not in fw.variants
    res = solvers_cli("run", "--framework", "cupy", "--device", "gpu", "--dims", "2,5", *TINY)
    assert res.returncode == 3, res.stderr
    doc = schema.loads(res.stdout)
    assert doc["status"] == "unavailable" and "CuPy found no usable GPU" in doc["error"]
    assert [(r["dim"], r["variant"]) for r in _rows(doc)] == [(2, "loop"), (2, "fused"), (5, "loop"), (5, "fused")]
    assert all(r["status"] == "unavailable" and r["time_per_iter_s"] is None for r in _rows(doc))
    res = solvers_cli("run", "--framework", "cupy", "--device", "cpu", "--dims", "2", *TINY)
    assert res.returncode == 3 and "no cpu backend" in schema.loads(res.stdout)["error"]


def _nvrtc():
    """CuPy's binding of NVRTC where the library loads (nvidia-cuda-nvrtc-cu12); compiling needs no GPU."""
    try:
        from cupy_backends.cuda.libs import nvrtc

        nvrtc.getVersion()
    except Exception as exc:  # cupy absent, or libnvrtc not found
        pytest.skip(f"NVRTC is not loadable here ({exc}); pip install nvidia-cuda-nvrtc-cu12")
    return nvrtc


@pytest.mark.skipif(importlib.util.find_spec("cupy") is None, reason="cupy-cuda12x is not installed here")
def test_cupy_fused_kernel_compiles_to_ptx_with_nvrtc() -> None:
    """The RawKernel's source, for both dtypes, through the compiler CuPy itself uses (to PTX: no device)."""
    from solvers.frameworks import cupy_

    nvrtc = _nvrtc()

    def ptx(source: str) -> str:
        prog = nvrtc.createProgram(source, "residual.cu", [], [])
        try:
            nvrtc.compileProgram(prog, ["-arch=compute_90"])
            out = nvrtc.getPTX(prog)
            return out.decode() if isinstance(out, bytes) else out
        except nvrtc.NVRTCError as exc:
            raise AssertionError(nvrtc.getProgramLog(prog)) from exc
        finally:
            nvrtc.destroyProgram(prog)

    for dtype, reg in (("float64", ".f64"), ("float32", ".f32")):
        text = ptx(cupy_.kernel_source(dtype))
        assert ".entry residual(" in text and f"fma.rn{reg}" in text
    with pytest.raises(AssertionError, match="undefined"):
        ptx(cupy_.kernel_source("float64").replace("r[i] =", "rr[i] ="))


# ----------------------------------------------------------------------------------- numba-cuda (simulator)

needs_numba_cuda = pytest.mark.skipif(importlib.util.find_spec("numba_cuda") is None,
                                      reason="numba-cuda is not installed here (pip install numba-cuda)")


@needs_numba_cuda
def test_numba_cuda_kernels_are_correct_under_the_simulator(solvers_cli) -> None:
    """d=100 on n=200 runs 4 blocks of 32 threads with a grid-stride loop; d=2 one block: both reductions."""
    res = solvers_cli("run", "--framework", "numba", "--device", "gpu", "--dims", "2,100", "--n", "200",
                      "--iters", "3", "--repeats", "1", "--max-repeats", "1", env={"NUMBA_ENABLE_CUDASIM": "1"})
    assert res.returncode == 0, res.stderr
    doc = schema.loads(res.stdout)
    assert doc["status"] == "simulated" and doc["provenance"]["framework"]["simulator"] is True
    assert [(r["dim"], r["variant"]) for r in _rows(doc)] == [(2, "loop"), (2, "fused"), (100, "loop"),
                                                              (100, "fused")]
    for r in _rows(doc):
        assert r["status"] == "simulated", r["reason"]
        assert r["max_rel_error"] <= TOLERANCE["float64"] and r["output_dtype"] == "float64"
        # A simulator's clock says nothing about a GPU: no timing of any kind, not even compile or sync.
        assert r["time_per_iter_s"] is None and r["repeat_times_s"] == [] and r["compile_s"] is None
        assert r["sync_check"] is None and r["energy"] is None


@needs_numba_cuda
def test_numba_gpu_without_simulator_or_gpu_is_unavailable(solvers_cli) -> None:
    fw = registry.load("numba")
    if "gpu" in fw.devices():
        pytest.skip("a GPU is visible")
    res = solvers_cli("run", "--framework", "numba", "--device", "gpu", "--dims", "2", *TINY)
    assert res.returncode == 3
    doc = schema.loads(res.stdout)
    assert doc["status"] == "unavailable" and "numba-cuda found no usable CUDA GPU" in doc["error"]
    assert registry.REGISTRY["numba"].devices == ("cpu", "gpu")


@needs_numba_cuda
def test_fused_block_size_fits_shared_memory() -> None:
    from solvers.frameworks.numba_cuda import SHARED_BYTES, threads_per_block

    for d in (1, 2, 10, 50, 100, 500):
        tpb = threads_per_block(d, 8, 10_000)
        assert tpb >= 32 and tpb & (tpb - 1) == 0, "the tree reduction needs a power of two"
        assert tpb == 32 or ((d + 1) * tpb + d + 1) * 8 <= SHARED_BYTES
    assert threads_per_block(2, 8, 10_000) == 256 and threads_per_block(100, 8, 10_000) == 32


# --------------------------------------------------------------------------------- JAX command buffers


def test_extra_variants_are_accepted_by_name_but_never_defaults(solvers_cli) -> None:
    assert base.VARIANTS == ("loop", "fused") == options.DEFAULTS.variants
    assert options.variants("fused,fused_cmdbuf") == ["fused", "fused_cmdbuf"]
    res = solvers_cli("run", "--framework", "numpy", "--variant", "fused_cmdbuf", "--dims", "2", *TINY)
    assert res.returncode == 3
    (row,) = _rows(schema.loads(res.stdout))
    assert row["status"] == "unavailable" and row["reason"] == "numpy offers no fused_cmdbuf on cpu"


def test_jax_cmdbuf_is_unavailable_on_cpu_with_its_reason_and_flags_are_recorded(solvers_cli) -> None:
    flags = "--xla_gpu_enable_command_buffer=+WHILE,+CONDITIONAL"
    res = solvers_cli("run", "--framework", "jax", "--device", "cpu", "--variant", "fused,fused_cmdbuf",
                      "--dims", "2", *TINY, env={"XLA_FLAGS": flags})
    assert res.returncode == 3, res.stderr  # one row ran, one could not: unavailable overall
    doc = schema.loads(res.stdout)
    fused, cmdbuf = _rows(doc)
    assert fused["status"] == "ok"
    assert cmdbuf["status"] == "unavailable" and "command buffers" in cmdbuf["reason"]
    fw = doc["provenance"]["framework"]
    assert fw["xla_flags"] == flags
    assert "WHILE" in fw["compiler_options"]["fused_cmdbuf"]["xla_gpu_enable_command_buffer"]


def test_jax_cmdbuf_options_are_valid_for_the_pinned_xla_and_change_no_result() -> None:
    """The options are checked by name and value even when compiling for the CPU, where they do nothing."""
    import jax

    from solvers.frameworks import jax_

    spec = ProblemSpec(n=64, iters=5, lr=1e-3, dtype="float64", seed=0)
    data = make_data(spec, 3)
    solver = jax_.CmdbufSolver(jax.devices("cpu")[0])
    solver.setup(data)
    out = solver.run(5)
    solver.sync(out)
    W, b = solver.fetch(out)
    assert max_rel_error(W, b, *reference(data, 5)) <= TOLERANCE["float64"]
    bad = {**jax_.CMDBUF_OPTIONS, "xla_gpu_enable_command_buffer": "+WHILE"}  # XLA_FLAGS syntax only
    with pytest.raises(Exception, match="not a valid enum value"):
        jax_._fused.lower(np.int32(1), solver.A, solver.y, solver.theta0, solver.step).compile(compiler_options=bad)


# -------------------------------------------------------------------------------------------------- NVML


def test_without_nvml_rows_have_no_energy_and_nothing_crashes() -> None:
    if _nvml_usable():
        pytest.skip("NVML works here: the absent path does not apply")
    assert nvml.open_window() is None and metadata.collect_gpu() is None and metadata.collect_gpu_state() is None
    from solvers.frameworks.numpy_ import FRAMEWORK

    spec = ProblemSpec(n=64, iters=5, lr=1e-3, dtype="float64", seed=0)
    data = make_data(spec, 2)
    row = measure(lambda: FRAMEWORK.make_solver("cpu", "fused"), data, reference(data, 5), variant="fused",
                  iters=5, sampling=Sampling.fixed(2), dtype="float64", gpu_state=metadata.collect_gpu_state,
                  check_sync=False, sampler=nvml.open_window)
    assert row["status"] == "ok" and row["energy"] is None and row["gpu_samples"] is None


@pytest.mark.skipif(importlib.util.find_spec("pynvml") is None, reason="nvidia-ml-py is not installed")
def test_every_nvml_name_the_code_uses_exists_in_nvidia_ml_py() -> None:
    """A misspelt NVML function would raise AttributeError on a GPU host, where no test here runs."""
    import re

    import pynvml

    for path in ("solvers/nvml.py", "solvers/metadata.py", "orchestrator/hosts/gpuclocks.py"):
        names = set(re.findall(r"\b(?:nv|pynvml|self\.nv)\.(nvml\w+|NVML_\w+)", (ROOT / path).read_text()))
        assert names, path
        assert not [n for n in names if not hasattr(pynvml, n)], path


def test_energy_and_sample_summaries_from_counter_readings() -> None:
    e = nvml.energy_record(10_000, 12_500, 2.0, 500)  # 2.5 J over 2 s and 500 steps
    assert e["joules_per_iter"] == pytest.approx(0.005) and e["avg_power_w"] == pytest.approx(1.25)
    assert e["window_s"] == 2.0 and "20-100 ms" in e["counter_resolution_note"]
    assert nvml.energy_record(None, 12_500, 2.0, 500) is None and nvml.energy_record(5, 4, 1.0, 1) is None
    assert nvml.decode_throttle(0x4 | 0x40 | 0x1000) == ["sw_power_cap", "hw_thermal_slowdown", "0x1000"]
    samples = [{"sm_clock_mhz": c, "mem_clock_mhz": 2619, "power_w": None, "temperature_c": 40,
                "throttle_mask": m} for c, m in ((1980, 0), (1755, 0x4), (1980, 0))]
    s = nvml.summarise(samples)
    assert s["count"] == 3 and s["sm_clock_mhz"] == {"min": 1755, "median": 1980, "max": 1980}
    assert s["power_w"] is None and s["throttle_reasons_seen"] == ["sw_power_cap"]
    assert nvml.summarise([]) is None


# -------------------------------------------------------------------------------------------- gdbench gpu


@pytest.mark.parametrize("args", [["gpu"], ["gpu", "lock", "--sm", "1200", "--mem", "2600"], ["gpu", "unlock"]])
def test_gdbench_gpu_without_a_gpu_is_one_line_and_exit_5(args: list[str], tmp_path: Path, capfd,
                                                          monkeypatch) -> None:
    if shutil.which("nvidia-smi") or _nvml_usable():
        pytest.skip("nvidia-smi or NVML is present here")
    from orchestrator.cli.app import main

    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    monkeypatch.setenv("COLUMNS", "400")  # one line, however long the fix
    assert main(args) == 5
    out, err = capfd.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: no NVIDIA GPU visible") and "fix:" in lines[0]
    assert "Traceback" not in err and out == ""
    assert not list(tmp_path.iterdir()), "nothing is recorded when nothing ran"


def test_clock_record_reaches_a_run_through_the_environment(tmp_path: Path, monkeypatch) -> None:
    from orchestrator.hosts import gpuclocks

    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    assert gpuclocks.record_env() == {}
    record = {"action": "lock", "asked": {"sm_mhz": 1200, "mem_mhz": 2600, "index": None}, "steps": []}
    gpuclocks.write_json_atomic(gpuclocks.record_path(), record)
    env = gpuclocks.record_env()
    assert list(env) == [nvml.CLOCKS_ENV] and json.loads(env[nvml.CLOCKS_ENV]) == record


# --------------------------------------------------------------------------------------- images, compose

NEW_SERVICES = {"numba-gpu": ("numba", "numba"), "cupy-gpu": ("cupy", "cupy-cuda12x")}


def _build_image():
    spec = importlib.util.spec_from_file_location("build_image", ROOT / "scripts" / "build_image.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("service", sorted(NEW_SERVICES))
def test_new_gpu_services_parse_and_match_their_locks(service: str) -> None:
    from orchestrator.images.compose import load_compose

    svc = load_compose(ROOT / "compose.yaml", env={}).service(service)
    fw, dist = NEW_SERVICES[service]
    lock = imagechecks.lock_path(fw, "cuda")
    pins = imagechecks.pins(lock)
    args = svc.build.args
    assert (svc.framework, svc.flavour, svc.profiles) == (fw, "cuda", ("gpu",))
    assert args["FRAMEWORK_VERSION"] == pins[dist] and svc.image == f"gdbench/{fw}:{pins[dist]}-cuda"
    runtime = pins["nvidia-cuda-runtime-cu12"]
    assert args["CUDA_VERSION"] == ".".join(runtime.split(".")[:2])
    assert _build_image().check(service, svc.image, args) == lock  # the image build's own agreement check
    imagechecks.check_lock(fw, "cuda")
    devices = imagechecks.raw_compose()["services"][service]["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "capabilities": ["gpu"], "count": "all"}]
    if fw == "numba":
        assert pins["numba"] == imagechecks.framework_pin("numba", "cpu"), "CPU and GPU numba are one release"
        assert "numba-cuda" in pins and "cuda-bindings" in pins


@pytest.mark.parametrize("framework", ["numba", "cupy"])
def test_new_cuda_locks_resolve_to_files_on_pypi(framework: str) -> None:
    imagechecks.check_cuda_lock(imagechecks.lock_path(framework, "cuda"))
