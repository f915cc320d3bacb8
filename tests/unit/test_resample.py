"""StreamResampler: rational factors, chunking invariance, pass band, stop band, alignment."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from edge_agent.pipeline.resample import StreamResampler, rational_factors


def tone(freq_hz: float, rate_hz: float, seconds: float, channels: int = 1) -> np.ndarray:
    """``(channels, n)`` float32 sine at ``freq_hz``, channel ``c`` scaled by ``1 / (c + 1)``."""
    t = np.arange(int(rate_hz * seconds)) / rate_hz
    x = np.sin(2 * np.pi * freq_hz * t)
    return np.stack([x / (c + 1) for c in range(channels)]).astype(np.float32)


def fit_sine(y: np.ndarray, freq_hz: float, rate_hz: float) -> float:
    """Least-squares amplitude of a ``freq_hz`` sine in the 1-D signal ``y``."""
    t = np.arange(y.size) / rate_hz
    basis = np.stack([np.sin(2 * np.pi * freq_hz * t), np.cos(2 * np.pi * freq_hz * t)], axis=1)
    coef, *_ = np.linalg.lstsq(basis, y.astype(np.float64), rcond=None)
    return float(np.hypot(*coef))


def peak_hz(y: np.ndarray, rate_hz: float) -> float:
    """Frequency of the largest FFT bin (Hann window, parabolic interpolation)."""
    spectrum = np.abs(np.fft.rfft(y * np.hanning(y.size)))
    k = int(np.argmax(spectrum[1:-1])) + 1
    a, b, c = np.log(spectrum[k - 1 : k + 2])
    return (k + 0.5 * (a - c) / (a - 2 * b + c)) * rate_hz / y.size


@pytest.mark.parametrize(
    ("in_hz", "out_hz", "up", "down"),
    [
        (16_000, 12_000, 3, 4),
        (48_000, 12_000, 1, 4),
        (44_100, 12_000, 40, 147),
        (12_000, 16_000, 4, 3),
        (25_600, 12_000, 15, 32),
        (12_000, 12_000, 1, 1),
        (11_025.0, 12_000.0, 160, 147),
    ],
)
def test_rational_factors(in_hz: float, out_hz: float, up: int, down: int) -> None:
    assert rational_factors(in_hz, out_hz) == (up, down)


@pytest.mark.parametrize(
    ("in_hz", "out_hz", "match"),
    [
        (0, 12_000, "in_rate_hz"),
        (16_000, -1, "out_rate_hz"),
        (float("nan"), 12_000, "in_rate_hz"),
        (12_001, 12_000, "factors"),
    ],
)
def test_bad_rates_raise(in_hz: float, out_hz: float, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        StreamResampler(in_hz, out_hz, 1)


def test_identity_is_pass_through() -> None:
    r = StreamResampler(12_000, 12_000, 2)
    x = np.random.default_rng(0).standard_normal((2, 100)).astype(np.float32)
    assert r.process(x) is x


def test_wrong_shape_raises() -> None:
    r = StreamResampler(16_000, 12_000, 2)
    with pytest.raises(ValueError, match=r"\(2, n\)"):
        r.process(np.zeros((1, 10), np.float32))
    with pytest.raises(ValueError, match=r"\(2, n\)"):
        r.process(np.zeros(10, np.float32))


@pytest.mark.parametrize(("in_hz", "out_hz"), [(16_000, 12_000), (48_000, 12_000), (44_100, 12_000), (8_000, 12_000)])
@pytest.mark.parametrize("chunking", ["ones", "small", "random", "large"])
def test_chunked_equals_whole(in_hz: float, out_hz: float, chunking: str) -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3000)).astype(np.float32)
    whole = StreamResampler(in_hz, out_hz, 2).process(x)
    sizes = {
        "ones": [1] * 400 + [2600],
        "small": [7] * 428 + [4],
        "random": list(rng.integers(0, 300, 40)),
        "large": [2999, 1],
    }[chunking]
    edges = np.cumsum([0, *sizes])
    assert edges[-1] >= x.shape[1]
    r = StreamResampler(in_hz, out_hz, 2)
    parts = [r.process(x[:, a:b]) for a, b in itertools.pairwise(edges)]
    chunked = np.concatenate(parts, axis=1)
    assert chunked.dtype == np.float32
    assert chunked.shape == whole.shape
    np.testing.assert_allclose(chunked, whole, atol=1e-5)


def test_sine_keeps_frequency_amplitude_and_phase() -> None:
    x = tone(1000, 16_000, 1.0, channels=2)
    y = StreamResampler(16_000, 12_000, 2).process(x)
    assert abs(y.shape[1] - 12_000) < 50
    steady = y[:, 100:]
    for c in range(2):
        assert peak_hz(steady[c], 12_000) == pytest.approx(1000, rel=0.01)
        assert fit_sine(steady[c], 1000, 12_000) == pytest.approx(1 / (c + 1), rel=0.01)
    # zero-phase: output m is the input signal at m / 12 kHz after the first input sample
    ideal = np.sin(2 * np.pi * 1000 * np.arange(y.shape[1]) / 12_000)
    np.testing.assert_allclose(y[0, 100:], ideal[100:], atol=0.01)


@pytest.mark.parametrize(
    ("in_hz", "out_hz", "freq_hz"), [(16_000, 12_000, 6_500), (16_000, 12_000, 7_500), (48_000, 12_000, 9_000)]
)
def test_tone_above_new_nyquist_is_attenuated(in_hz: float, out_hz: float, freq_hz: float) -> None:
    y = StreamResampler(in_hz, out_hz, 1).process(tone(freq_hz, in_hz, 1.0))[0, 200:]
    rms_db = 20 * np.log10(np.sqrt(2) * np.sqrt(np.mean(y.astype(np.float64) ** 2)))
    assert rms_db <= -40


def test_reset_restarts_the_stream() -> None:
    x = tone(440, 16_000, 0.1)
    r = StreamResampler(16_000, 12_000, 1)
    first = r.process(x)
    r.process(tone(3000, 16_000, 0.05))
    r.reset()
    np.testing.assert_array_equal(r.process(x), first)
