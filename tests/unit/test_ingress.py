"""Issue 12: the ingress bounds of a source (pipeline/ingress.py): rates, resampler memory, ts, length."""

from __future__ import annotations

import numpy as np
import pytest

from edge_agent.pipeline.ingress import MAX_RATES_PER_SOURCE, IngressLimits, ModelShape
from edge_agent.types import Chunk

NOW = 1_795_860_000.0
SHAPE = {"bearing": ModelShape(12_000.0, 2048, 1024)}


def _chunk(rate_hz: float, *, t0: float = NOW, n: int = 1024, estimated: bool = False) -> Chunk:
    return Chunk("s", t0, rate_hz, np.zeros((1, n), np.float32), t0_estimated=estimated)


def _limits(bytes_seen: list[int] | None = None, *, real_time: bool = True) -> IngressLimits:
    sink = bytes_seen.append if bytes_seen is not None else None
    return IngressLimits(SHAPE, real_time=real_time, on_resampler_bytes=sink, clock=lambda: NOW)


@pytest.mark.parametrize("rate_hz", [11_999.0, 11_988.0, 1e-7, 1e308, 0.0, -12_000.0, 1_000.0, 200_000.0])
def test_rates_that_cannot_or_should_not_be_resampled_are_wrong_rate(rate_hz: float) -> None:
    problem = _limits().check(_chunk(rate_hz))
    assert problem is not None and problem[0] == "wrong_rate"


def test_a_source_resamples_a_bounded_number_of_rates_and_counts_their_filters() -> None:
    seen: list[int] = []
    limits = _limits(seen)
    rates = [44_100.0, 11_025.0, 48_000.0, 24_000.0, 6_000.0]
    results = [limits.check(_chunk(rate, n=256)) for rate in rates]
    assert results[:MAX_RATES_PER_SOURCE] == [None] * MAX_RATES_PER_SOURCE
    assert results[MAX_RATES_PER_SOURCE] is not None and results[MAX_RATES_PER_SOURCE][0] == "wrong_rate"
    assert limits.check(_chunk(12_000.0)) is None and limits.check(_chunk(44_100.0, n=256)) is None
    assert seen == sorted(seen) and seen[-1] == limits.resampler_bytes > 100_000  # 44.1 kHz and 11,025 Hz


@pytest.mark.parametrize("t0", [1e12, -1e12, 1e308, -1.0, NOW + 400 * 86_400, NOW - 400 * 86_400])
def test_ts_far_from_the_clock_or_unwritable_is_bad_ts(t0: float) -> None:
    problem = _limits().check(_chunk(12_000.0, t0=t0))
    assert problem is not None and problem[0] == "bad_ts"


def test_a_replay_may_be_old_but_not_unwritable_and_an_estimated_t0_is_not_judged() -> None:
    assert _limits(real_time=False).check(_chunk(12_000.0, t0=1_000.0)) is None
    assert _limits(real_time=False).check(_chunk(12_000.0, t0=1e12)) is not None
    assert _limits().check(_chunk(12_000.0, t0=NOW + 3 * 86_400)) is None  # a clock wrong by days: analysed
    assert _limits().check(_chunk(12_000.0, t0=1e12, estimated=True)) is None


def test_one_payload_may_not_hold_more_than_64_windows() -> None:
    assert _limits().check(_chunk(12_000.0, n=2048 + 63 * 1024)) is None
    problem = _limits().check(_chunk(12_000.0, n=2048 + 63 * 1024 + 1))
    assert problem is not None and problem[0] == "too_many_samples"
