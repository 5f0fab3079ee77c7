"""A framework version whose API a solver cannot use makes those variants ``unavailable`` with the reason.

The installed versions pass their own checks (no gap), and the reason for a too-old release names what is
missing, since when, and which variant needed it.
"""

from __future__ import annotations

import importlib.util

import pytest

from solvers import base, registry


@pytest.mark.parametrize(("text", "parts"), [("2.21.0", (2, 21, 0)), ("2.13.0+cpu", (2, 13, 0)),
                                             ("0.4.38rc1", (0, 4, 38)), ("1.26", (1, 26)), ("dev", ())])
def test_release_tuple_keeps_the_leading_release_numbers(text: str, parts: tuple[int, ...]) -> None:
    assert base.release_tuple(text) == parts


def test_a_too_old_version_names_the_missing_api_per_variant() -> None:
    from solvers.frameworks.tensorflow_ import TensorflowFramework

    gaps = base.api_gaps("tensorflow", "2.4.1", TensorflowFramework.requires)
    assert gaps == {v: f"tensorflow 2.4.1 lacks tf.function(jit_compile=True) (added in tensorflow 2.5), which "
                       f"the {v} variant needs; pin tensorflow >= 2.5" for v in ("loop", "fused")}
    assert base.api_gaps("tensorflow", "2.5.0", TensorflowFramework.requires) == {}
    assert base.api_gaps("numba", "0.48.0", (("0.49", "numba.set_num_threads", ("fused",)),)) == {
        "fused": "numba 0.48.0 lacks numba.set_num_threads (added in numba 0.49), which the fused variant needs; "
                 "pin numba >= 0.49"}


@pytest.mark.parametrize("name", ["numba", "jax", "tensorflow"])
def test_installed_versions_have_no_gap(name: str) -> None:
    if importlib.util.find_spec(name) is None:
        pytest.skip(f"{name} is not installed here")
    fw = registry.load(name)
    assert fw.requires, f"{name} declares the APIs it needs"
    assert fw.api_gaps() == {}
    assert fw.variant_unavailable_reason("cpu", "nope") == f"{name} offers no nope on cpu"


def test_a_gap_turns_the_variant_into_an_unavailable_row() -> None:
    """Through the real solver CLI: the numba installed here, told its fused kernel needs a future release."""
    import json
    import subprocess
    import sys

    if importlib.util.find_spec("numba") is None:
        pytest.skip("numba is not installed here")
    code = ("import sys; from solvers.frameworks.numba_ import NumbaFramework as F; "
            "F.requires = (('999.0', 'a future API', ('fused',)),); from solvers import cli; "
            "sys.exit(cli.main(sys.argv[1:]))")
    done = subprocess.run([sys.executable, "-c", code, "run", "--framework", "numba", "--dims", "2", "--n", "200",
                           "--iters", "5", "--repeats", "1",
                           "--max-repeats", "1", "--no-sync-check", "--variant", "loop,fused"],
                          capture_output=True, text=True, check=False, timeout=300)
    doc = json.loads(done.stdout)
    rows = {r["variant"]: r for r in doc["results"]}
    assert rows["fused"]["status"] == "unavailable", rows["fused"]
    assert rows["fused"]["reason"].startswith("numba ") and "lacks a future API (added in numba 999.0)" in (
        rows["fused"]["reason"])
    assert rows["loop"]["status"] == "ok" and done.returncode == 3  # nothing failed; one variant could not run
