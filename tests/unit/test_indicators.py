"""Vibration indicators against signals whose values are known analytically."""

from __future__ import annotations

import itertools
import logging
import math

import numpy as np
import pytest
import scipy.stats

from edge_agent.pipeline.indicators import (
    CHUNK_SAMPLES,
    ISO_10816_3_ZONE_LIMITS_MM_S,
    IndicatorSettings,
    compute_indicators,
    make_plan,
    validate_settings,
    zone_of,
)

G = 9.80665
RATE_HZ = 12_000.0
WINDOW = 2048
BIN_HZ = RATE_HZ / WINDOW  # 5.859375 Hz


def sine(amplitude: float, frequency_hz: float, rate_hz: float = RATE_HZ, n: int = WINDOW, phase: float = 0.3):
    t = np.arange(n) / rate_hz
    return (amplitude * np.sin(2 * np.pi * frequency_hz * t + phase)).astype(np.float32)[np.newaxis]


def velocity_mm_s(amplitude_g: float, frequency_hz: float) -> float:
    """Analytic RMS velocity of ``amplitude_g * sin(2 pi f t)`` in g: A g / (2 pi f) / sqrt(2), in mm/s."""
    return amplitude_g * G / (2 * np.pi * frequency_hz) / math.sqrt(2) * 1000


def indicators(samples: np.ndarray, rate_hz: float = RATE_HZ, **settings):
    return compute_indicators(make_plan(IndicatorSettings(**settings), rate_hz, samples.shape[-1]), samples)


@pytest.mark.parametrize("periods", [3, 17, 50, 170])
def test_sine_with_whole_periods_gives_the_analytic_values(periods: int) -> None:
    amplitude_g, frequency_hz = 0.5, periods * BIN_HZ
    values = indicators(sine(amplitude_g, frequency_hz), spectral_window="rectangular")
    assert values.rms_acceleration_m_s2[0] == pytest.approx(amplitude_g * G / math.sqrt(2), rel=1e-4)
    assert values.peak_acceleration_m_s2[0] == pytest.approx(amplitude_g * G, rel=2e-3)  # sampled crest
    assert values.crest_factor[0] == pytest.approx(math.sqrt(2), rel=2e-3)
    assert values.kurtosis[0] == pytest.approx(1.5, rel=1e-3)  # a sine's Pearson kurtosis
    assert values.rms_velocity_mm_s[0] == pytest.approx(velocity_mm_s(amplitude_g, frequency_hz), rel=1e-4)


@pytest.mark.parametrize("frequency_hz", [100.0, 160.0, 321.7, 555.5, 900.0])
def test_sine_with_a_fractional_number_of_periods_is_within_half_a_percent_with_hann(frequency_hz: float) -> None:
    """The default Hann taper: >= 17 periods and >= 2 bins inside the band edges, error < 0.5 %.

    Its main lobe spreads a tone over 3 bins whose 1/f² weights differ, so it reads high by about
    1 / (2 periods²) (+6.6 % at 3 periods, +0.17 % at 17); a tone within 2 bins of a band edge
    loses part of its lobe (at 12 kHz / 2048, 997 Hz reads -13 %).
    """
    amplitude_g = 0.2
    values = indicators(sine(amplitude_g, frequency_hz))
    assert values.rms_velocity_mm_s[0] == pytest.approx(velocity_mm_s(amplitude_g, frequency_hz), rel=5e-3)
    # mean removal over a fractional period shifts the time-domain values a little
    assert values.rms_acceleration_m_s2[0] == pytest.approx(amplitude_g * G / math.sqrt(2), rel=5e-3)
    assert values.crest_factor[0] == pytest.approx(math.sqrt(2), rel=1e-2)


@pytest.mark.parametrize("periods", [3, 5, 17, 50])
def test_hann_bias_with_whole_periods_is_the_analytic_one(periods: int) -> None:
    """Hann's main lobe puts A/2 in bin p and A/4 in bins p +- 1, weighted by 1/f² there (docs/indicators.md)."""
    frequency_hz = periods * BIN_HZ
    got = indicators(sine(0.5, frequency_hz)).rms_velocity_mm_s[0] / velocity_mm_s(0.5, frequency_hz)
    lobe = (1 + ((periods / (periods - 1)) ** 2 + (periods / (periods + 1)) ** 2) / 4) / 1.5
    assert got == pytest.approx(math.sqrt(lobe), rel=1e-4)
    assert got - 1 == pytest.approx(1 / (2 * periods**2), rel=0.25)  # the rule of thumb


def test_rectangular_window_leaks_with_a_fractional_number_of_periods() -> None:
    """Why Hann is the default: without a taper, leakage into the lowest bins is amplified by 1/f²."""
    frequency_hz = 9.47 * BIN_HZ  # 55.5 Hz
    expected = velocity_mm_s(0.2, frequency_hz)
    rectangular = indicators(sine(0.2, frequency_hz), spectral_window="rectangular").rms_velocity_mm_s[0]
    hann = indicators(sine(0.2, frequency_hz)).rms_velocity_mm_s[0]
    assert rectangular / expected - 1 > 0.05
    assert hann == pytest.approx(expected, rel=1e-2)


@pytest.mark.parametrize(("frequency_hz", "window"), [(2000.0, 2048), (3000.0, 2048), (3.0, 16384), (5.0, 16384)])
def test_sine_outside_the_velocity_band_gives_almost_no_velocity(frequency_hz: float, window: int) -> None:
    values = indicators(sine(0.5, frequency_hz, n=window))
    assert values.rms_velocity_mm_s[0] < 1e-3 * velocity_mm_s(0.5, frequency_hz)
    assert values.rms_acceleration_m_s2[0] == pytest.approx(0.5 * G / math.sqrt(2), rel=2e-2)


def test_velocity_band_is_configurable() -> None:
    low_hz, high_hz = 20 * BIN_HZ, 300 * BIN_HZ  # 117 and 1758 Hz
    samples = sine(0.5, low_hz) + sine(0.5, high_hz)

    def velocity(band: tuple[float, float]) -> float:
        plan = make_plan(IndicatorSettings(velocity_band_hz=band, spectral_window="rectangular"), RATE_HZ, WINDOW)
        assert plan.velocity_band_used_hz == band
        return float(compute_indicators(plan, samples).rms_velocity_mm_s[0])

    assert velocity((10.0, 1000.0)) == pytest.approx(velocity_mm_s(0.5, low_hz), rel=1e-4)
    assert velocity((500.0, 2000.0)) == pytest.approx(velocity_mm_s(0.5, high_hz), rel=1e-4)
    both = math.hypot(velocity_mm_s(0.5, low_hz), velocity_mm_s(0.5, high_hz))
    assert velocity((10.0, 2000.0)) == pytest.approx(both, rel=1e-4)


def test_gaussian_noise_has_kurtosis_three_and_impulses_much_more() -> None:
    rng = np.random.default_rng(11)
    noise = rng.standard_normal((64, 1, WINDOW)).astype(np.float32)
    values = indicators(noise)
    # the sample kurtosis of n normal values has a standard deviation of about sqrt(24 / n) = 0.108
    assert values.kurtosis.shape == (64, 1)
    assert abs(float(values.kurtosis.mean()) - 3.0) < 4 * math.sqrt(24 / WINDOW) / math.sqrt(64)
    assert np.all(np.abs(values.kurtosis - 3.0) < 5 * math.sqrt(24 / WINDOW))
    np.testing.assert_allclose(values.kurtosis[:, 0], scipy.stats.kurtosis(noise[:, 0], axis=-1, fisher=False), 1e-4)
    impulses = 0.01 * rng.standard_normal((1, WINDOW)).astype(np.float32)
    impulses[0, ::256] += 1.0  # 8 impacts per window (a bearing defect's train)
    spiky = indicators(impulses)
    assert spiky.kurtosis[0] > 100
    assert spiky.crest_factor[0] > 10


def test_band_levels_of_a_two_tone_signal() -> None:
    low_hz, high_hz = 50 * BIN_HZ, 400 * BIN_HZ  # 293 and 2344 Hz
    samples = sine(0.3, low_hz) + sine(0.1, high_hz, phase=1.1)
    bands = ((200.0, 400.0), (2000.0, 2500.0), (4000.0, 5000.0))
    for window in ("rectangular", "hann"):
        rms = indicators(samples, bands_hz=bands, spectral_window=window).band_levels[0]
        np.testing.assert_allclose(rms[:2], [0.3 * G / math.sqrt(2), 0.1 * G / math.sqrt(2)], rtol=1e-3)
        assert rms[2] < 1e-4
    energy = indicators(samples, bands_hz=bands, band_measure="energy", spectral_window="rectangular")
    np.testing.assert_allclose(energy.band_levels[0, :2], [(0.3 * G) ** 2 / 2, (0.1 * G) ** 2 / 2], rtol=1e-3)
    assert energy.to_dict()["band_energy"] == energy.band_levels.tolist()  # per channel: [[b0, b1, b2]]


def test_band_energies_covering_the_spectrum_add_up_to_the_mean_square() -> None:
    noise = np.random.default_rng(5).standard_normal((4, 3, WINDOW)).astype(np.float32)
    edges = np.linspace(BIN_HZ / 2, RATE_HZ / 2, 7)
    bands = tuple((float(a), float(b) - 1e-6) for a, b in itertools.pairwise(edges))
    bands = (*bands[:-1], (bands[-1][0], RATE_HZ / 2))
    values = indicators(noise, bands_hz=bands, band_measure="energy", spectral_window="rectangular", unit="m/s2")
    assert values.band_levels.shape == (4, 3, 6)
    np.testing.assert_allclose(values.band_levels.sum(axis=-1), values.rms_acceleration_m_s2**2, rtol=1e-4)


def test_unit_m_s2_and_g_give_the_same_physical_values() -> None:
    in_g = sine(0.5, 100 * BIN_HZ)
    in_m_s2 = in_g * np.float32(G)
    by_g = indicators(in_g, unit="g", bands_hz=((500.0, 700.0),))
    by_m_s2 = indicators(in_m_s2, unit="m/s2", bands_hz=((500.0, 700.0),))
    for name in ("rms_acceleration_m_s2", "peak_acceleration_m_s2", "crest_factor", "kurtosis", "rms_velocity_mm_s"):
        assert getattr(by_g, name)[0] == pytest.approx(getattr(by_m_s2, name)[0], rel=1e-5), name
    assert by_g.band_levels[0, 0] == pytest.approx(by_m_s2.band_levels[0, 0], rel=1e-5)
    assert indicators(in_m_s2, unit="g").rms_velocity_mm_s[0] == pytest.approx(G * by_g.rms_velocity_mm_s[0], rel=1e-5)


def test_dc_offset_is_removed() -> None:
    ac = sine(0.5, 50 * BIN_HZ)
    plain, offset = indicators(ac), indicators(ac + np.float32(1.0))  # + 1 g of gravity
    for name in ("rms_acceleration_m_s2", "peak_acceleration_m_s2", "crest_factor", "kurtosis", "rms_velocity_mm_s"):
        assert getattr(offset, name)[0] == pytest.approx(getattr(plain, name)[0], rel=1e-4), name
    constant = indicators(np.full((1, WINDOW), 3.0, dtype=np.float32))
    assert constant.rms_acceleration_m_s2[0] == 0 and constant.rms_velocity_mm_s[0] == 0
    assert math.isnan(constant.crest_factor[0]) and math.isnan(constant.kurtosis[0])
    inexact = indicators(np.full((3, WINDOW), [[0.1], [0.7], [123.4]], dtype=np.float32))  # mean rounds
    assert np.all(inexact.rms_acceleration_m_s2 < 1e-3) and np.all(inexact.rms_acceleration_m_s2 > 0)
    assert np.all(np.isnan(inexact.crest_factor)) and np.all(np.isnan(inexact.kurtosis))
    small = indicators(1.0 + 1e-4 * sine(1.0, 50 * BIN_HZ))  # 0.1 mg of vibration on 1 g: still measured
    assert small.crest_factor[0] == pytest.approx(math.sqrt(2), rel=1e-2)


def test_batch_and_channels_match_single_windows() -> None:
    rng = np.random.default_rng(2)
    batch = rng.standard_normal((5, 2, WINDOW)).astype(np.float32)
    plan = make_plan(IndicatorSettings(bands_hz=((100.0, 900.0),), machine_group=1), RATE_HZ, WINDOW)
    together = compute_indicators(plan, batch)
    assert together.rms_velocity_mm_s.shape == (5, 2) and together.band_levels.shape == (5, 2, 1)
    for index in range(5):
        alone = compute_indicators(plan, batch[index])
        np.testing.assert_allclose(alone.rms_velocity_mm_s, together.rms_velocity_mm_s[index], rtol=1e-5)
        np.testing.assert_allclose(alone.kurtosis, together.kurtosis[index], rtol=1e-5)
        np.testing.assert_array_equal(alone.zone, together.zone[index])
        assert alone.to_dict()["iso_zone"] == together.to_dict()["iso_zone"][index]
    np.testing.assert_allclose(compute_indicators(plan, batch.astype(np.float64)).kurtosis, together.kurtosis)
    many = rng.standard_normal((3, 13, WINDOW)).astype(np.float32)  # 39 rows: more than one internal chunk
    assert many[0].size < CHUNK_SAMPLES < many.size
    chunked = compute_indicators(plan, many)
    for index in range(3):
        alone = compute_indicators(plan, many[index])
        np.testing.assert_allclose(alone.band_levels, chunked.band_levels[index], rtol=1e-5)
        np.testing.assert_allclose(alone.crest_factor, chunked.crest_factor[index], rtol=1e-5)
    assert make_plan(IndicatorSettings(bands_hz=[[100, 900]], machine_group=1), RATE_HZ, WINDOW) is not None
    with pytest.raises(ValueError, match="2048 samples"):
        compute_indicators(plan, batch[..., :1024])


@pytest.mark.parametrize(
    ("group", "foundation", "limits"),
    [(1, "rigid", (2.3, 4.5, 7.1)), (1, "flexible", (3.5, 7.1, 11.0)), (2, "rigid", (1.4, 2.8, 4.5)),
     (2, "flexible", (2.3, 4.5, 7.1))],
)  # fmt: skip
def test_iso_10816_3_zone_boundaries(group: int, foundation: str, limits: tuple[float, float, float]) -> None:
    assert ISO_10816_3_ZONE_LIMITS_MM_S[(group, foundation)] == limits
    a_b, b_c, c_d = limits
    velocities = [0.0, a_b, a_b + 1e-6, b_c, b_c + 1e-6, c_d, c_d + 1e-6, 50.0]
    assert zone_of(np.array(velocities), limits).tolist() == [0, 0, 1, 1, 2, 2, 3, 3]  # boundaries: lower zone


def test_zone_of_a_sine_for_a_machine_class() -> None:
    frequency_hz = 100 * BIN_HZ  # 585.9 Hz; velocity 0.1 g: 0.1 * 9.80665 / (2 pi f) / sqrt(2) = 0.188 mm/s
    scale = 3.6 / velocity_mm_s(1.0, frequency_hz)  # amplitude for 3.6 mm/s: B/C for group 2 rigid is 2.8
    samples = sine(scale, frequency_hz)
    values = indicators(samples, machine_group=2, foundation="rigid")
    assert values.rms_velocity_mm_s[0] == pytest.approx(3.6, rel=1e-3)
    assert values.zone.tolist() == [2]
    assert values.to_dict()["iso_zone"] == ["C"]
    assert indicators(samples, machine_group=1, foundation="flexible").to_dict()["iso_zone"] == ["B"]
    assert indicators(samples).to_dict()["iso_zone"] == [None]  # no machine class: no zone


def test_validation_names_each_key_and_value() -> None:
    assert validate_settings(IndicatorSettings()) == []
    bad = IndicatorSettings(
        unit="mm/s",
        velocity_band_hz=(1000.0, 10.0),
        bands_hz=((100.0, 200.0), (300.0,), ("a", 5.0), (0.0, 50.0)),  # type: ignore[arg-type]
        band_measure="peak",
        spectral_window="flattop",
        machine_group=3,
        foundation="soft",
    )
    errors = validate_settings(bad, key="sources[0].indicators")
    assert errors == [
        "sources[0].indicators.unit: 'mm/s' is not allowed; one of g, m/s2",
        "sources[0].indicators.velocity_band_hz: (1000.0, 10.0) is out of range; expected 0 < low_hz < high_hz",
        "sources[0].indicators.bands_hz[1]: (300.0,) is not a band; expected [low_hz, high_hz]",
        "sources[0].indicators.bands_hz[2]: ('a', 5.0) has the wrong type; expected two numbers [low_hz, high_hz]",
        "sources[0].indicators.bands_hz[3]: (0.0, 50.0) is out of range; expected 0 < low_hz < high_hz",
        "sources[0].indicators.band_measure: 'peak' is not allowed; one of rms, energy",
        "sources[0].indicators.spectral_window: 'flattop' is not allowed; one of hann, rectangular",
        "sources[0].indicators.machine_group: 3 is not allowed; 1 (large machines, > 300 kW), 2 (medium, 15-300 kW) "
        "or 0 (no ISO zone)",
        "sources[0].indicators.foundation: 'soft' is not allowed; one of rigid, flexible",
    ]
    with pytest.raises(ValueError, match=r"indicators\.unit: 'mm/s'"):
        make_plan(bad, RATE_HZ, WINDOW)
    with pytest.raises(ValueError, match=r"machine_group: True is not allowed"):
        make_plan(IndicatorSettings(machine_group=True), RATE_HZ, WINDOW)


def test_plan_rejects_bands_that_do_not_fit_the_stream(caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(ValueError) as raised:
        make_plan(IndicatorSettings(bands_hz=((5000.0, 7000.0), (100.0, 101.0))), RATE_HZ, WINDOW)
    assert str(raised.value).splitlines() == [
        "indicators.bands_hz[0]: [5000.0, 7000.0] does not fit a 2048-sample window at 12000 Hz; expected within "
        "0-6000 Hz (Nyquist) and at least one FFT bin (bins every 5.85938 Hz)",
        "indicators.bands_hz[1]: [100.0, 101.0] does not fit a 2048-sample window at 12000 Hz; expected within "
        "0-6000 Hz (Nyquist) and at least one FFT bin (bins every 5.85938 Hz)",
    ]
    with pytest.raises(ValueError, match=r"indicators\.velocity_band_hz: \(10.0, 11.0\) holds no FFT bin"):
        make_plan(IndicatorSettings(velocity_band_hz=(10.0, 11.0)), RATE_HZ, 1024)  # bins 0, 11.7, ... Hz
    with pytest.raises(ValueError, match="sample_rate_hz: 0 is out of range"):
        make_plan(IndicatorSettings(), 0, WINDOW)
    with caplog.at_level(logging.WARNING, logger="edge_agent.pipeline.indicators"):
        plan = make_plan(IndicatorSettings(), 1600.0, 1024)
    assert plan.velocity_band_used_hz == (10.0, 800.0)
    assert "past the Nyquist frequency of a 1600 Hz stream; integrating 10-800 Hz" in caplog.text
