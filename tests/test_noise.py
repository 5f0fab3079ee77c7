"""The noise rule's Mann-Whitney U test against SciPy's (the dev environment has SciPy; the host one does not)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from orchestrator.results.noise import Sample, mann_whitney_p, min_p_value, verdict
from tests.conftest import ROOT

scipy_stats = pytest.importorskip("scipy.stats")


@pytest.mark.parametrize(("n1", "n2"), [(3, 3), (4, 4), (5, 5), (5, 7), (7, 11), (11, 11), (30, 30), (2, 9)])
def test_exact_p_equals_scipys_exact(n1: int, n2: int) -> None:
    rng = np.random.default_rng(n1 * 100 + n2)
    for shift in (0.0, 0.3, 1.0, 3.0):
        x, y = rng.normal(shift, 1, n1), rng.normal(0, 1, n2)
        want = scipy_stats.mannwhitneyu(x, y, alternative="two-sided", method="exact").pvalue
        assert mann_whitney_p(x, y) == pytest.approx(want, rel=1e-9, abs=1e-15), (n1, n2, shift)


@pytest.mark.parametrize(("n1", "n2"), [(5, 5), (11, 7), (60, 60), (80, 45)])
def test_ties_and_large_samples_use_scipys_normal_approximation(n1: int, n2: int) -> None:
    rng = np.random.default_rng(n1 + n2)
    for shift in (0.0, 0.5, 2.0):
        for tied in (True, False):
            x, y = rng.normal(shift, 1, n1), rng.normal(0, 1, n2)
            if tied:
                x, y = np.round(x, 1), np.round(y, 1)
            both = np.concatenate([x, y])
            exact = np.unique(both).size == both.size and n1 * n2 <= 2500  # no tie after all: exact
            want = scipy_stats.mannwhitneyu(x, y, alternative="two-sided",
                                            method="exact" if exact else "asymptotic").pvalue
            assert mann_whitney_p(x, y) == pytest.approx(want, rel=1e-9), (n1, n2, shift, tied)


def test_verdict_needs_both_significance_and_effect() -> None:
    a = Sample("ok", "", np.linspace(1.0, 1.01, 7))
    assert verdict(a, Sample("ok", "", np.linspace(1.2, 1.21, 7))).mark == "slower"
    assert verdict(a, Sample("ok", "", np.linspace(0.8, 0.81, 7))).mark == "faster"
    inside = verdict(a, Sample("ok", "", np.linspace(1.02, 1.03, 7)))
    assert not inside.mark and inside.text == "within ±5%" and inside.inconclusive
    few = verdict(Sample("ok", "", np.array([1.0, 1.0, 1.0])), Sample("ok", "", np.array([2.0, 2.0, 2.0])))
    assert few.text.startswith("too few repeats to decide (3 vs 3") and min_p_value(3, 3) == pytest.approx(0.1)
    assert verdict(a, Sample("failed", "boom")).text == "not comparable"


def test_the_results_modules_run_without_scipy() -> None:
    """Nothing the orchestrator imports for report, compare or publish needs SciPy (the host env has none)."""
    code = ("import sys; sys.modules['scipy'] = None\n"
            "import orchestrator.cli.app, orchestrator.results.report, orchestrator.results.compare\n"
            "import orchestrator.results.compare_across, orchestrator.results.noise\n"
            "from orchestrator.results.noise import Sample, verdict\n"
            "import numpy as np\n"
            "print(verdict(Sample('ok', '', np.arange(1, 8.0)), Sample('ok', '', np.arange(3, 10.0))).text)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() in ("slower", "no significant difference")
