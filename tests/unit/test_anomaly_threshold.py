"""Thresholds from healthy scores: a known distribution gives the requested false-window rate."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from edge_agent.training.anomaly_threshold import METHODS, calibration, false_rate, fit_threshold


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("rate", [0.01, 0.05])
def test_a_known_distribution_gives_the_requested_false_rate(method: str, rate: float) -> None:
    law = stats.gamma(a=3.0, scale=0.5)
    fit = fit_threshold(law.rvs(size=20_000, random_state=1), rate, method)
    assert law.sf(fit.threshold) == pytest.approx(rate, rel=0.2)  # the true false rate of that threshold
    fresh = law.rvs(size=200_000, random_state=2)
    assert false_rate(fresh, fit.threshold) == pytest.approx(rate, rel=0.2)


def test_pot_extrapolates_past_the_largest_score() -> None:
    scores = stats.expon.rvs(size=500, random_state=3)
    fit = fit_threshold(scores, 1e-4, "pot")
    assert fit.threshold > scores.max()
    assert 1e-4 / 3 < stats.expon.sf(fit.threshold) < 1e-4 * 3  # 50 exceedances: a factor of a few


def test_too_few_scores_for_a_tail_fit_fall_back_to_gamma() -> None:
    assert fit_threshold(np.linspace(1.0, 2.0, 30), 0.01, "pot").method == "gamma"


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="target false-window rate"):
        fit_threshold(np.ones(10), 1.5)
    with pytest.raises(ValueError, match="at least 2 finite"):
        fit_threshold(np.array([1.0, np.nan]), 0.01)
    with pytest.raises(ValueError, match="threshold method"):
        fit_threshold(np.arange(10.0), 0.01, "magic")


def test_calibration_stores_quantiles_and_the_held_back_rate() -> None:
    scores = np.arange(1, 1001, dtype=float)
    fit = fit_threshold(scores, 0.01, "empirical")
    stored = calibration(scores, fit)
    assert stored["windows"] == 1000
    assert stored["quantiles"]["0.5"] == pytest.approx(500.5)
    assert stored["held_back_false_rate"] == pytest.approx(0.01, abs=0.001)
