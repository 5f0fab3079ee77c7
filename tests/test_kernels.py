"""Which code path a row ran on: the readers of solvers.kernels and each CPU framework's answer in a document."""

from __future__ import annotations

import os
import re

import pytest

from solvers import kernels, schema
from tests.conftest import run_solvers

GENERIC = ("MKL_VERBOSE oneMKL 2024.0 Update 2 Product build 20240605 for Intel(R) 64 architecture Intel(R) "
           "Architecture processors, Lnx 2.60GHz lp64 gnu_thread\nMKL_VERBOSE DGEMV(t,8,64,...) 2.39ms CNR:OFF\n")
AVX2 = ("MKL_VERBOSE Intel(R) MKL 2020.0 Product build 20191122 for Intel(R) 64 architecture Intel(R) Advanced "
        "Vector Extensions 2 (Intel(R) AVX2) enabled processors, Lnx 3.00GHz lp64 gnu_thread\n")


def test_mkl_banner_names_its_path() -> None:
    assert kernels.mkl_summary(GENERIC) == "MKL 2024.0 generic path (Intel(R) Architecture processors)"
    assert kernels.mkl_summary(AVX2) == ("MKL 2020.0 Intel(R) Advanced Vector Extensions 2 (Intel(R) AVX2) path")
    assert kernels.mkl_summary("MKL_VERBOSE DGEMV(t,8,64) 2ms\n") is None, "no banner: nothing to name"


def test_c_level_output_is_captured_and_kept_off_stdout(capfd: pytest.CaptureFixture[str]) -> None:
    got = kernels.captured_c_stdout(lambda: os.write(1, b"from C\n"))
    assert got == "from C\n"
    assert "from C" not in capfd.readouterr().out


@pytest.mark.parametrize("framework", ["numpy", "numba", "torch", "jax", "tensorflow"])
def test_every_row_of_a_document_names_its_code_path(framework: str) -> None:
    res = run_solvers("run", "--framework", framework, "--dims", "3", "--n", "300", "--iters", "20", "--repeats",
                      "1", "--max-repeats", "1", "--no-sync-check", "--threads", "1", "--no-floor")
    assert res.returncode == 0, res.stderr
    doc = schema.loads(res.stdout)  # whatever a library printed while its path was read, stdout is one document
    paths = {r["variant"]: r["kernel_path"] for r in doc["results"]}
    if framework == "numpy":
        assert all(re.fullmatch(r"OpenBLAS \S+ \S+", p) for p in paths.values()), paths
    elif framework == "numba":
        assert "SciPy's" in paths["loop"] and paths["fused"].endswith("(no BLAS)"), paths
    elif framework == "torch":
        import torch

        want = "MKL " if torch.backends.mkl.is_available() else "OpenBLAS"
        assert all(p.startswith(want) and "; ATen " in p for p in paths.values()), paths
        assert all("not read" not in p and "names no path" not in p for p in paths.values()), paths
    else:
        assert all(p.startswith("XLA:CPU") for p in paths.values()), paths
