"""Vibration indicators per window: RMS, peak, crest factor, kurtosis, RMS velocity, band levels, ISO zone.

Every indicator is computed per channel of a window ``(channels, samples)``, or of a batch
``(..., channels, samples)`` in one call (leading dimensions are kept). The window mean is removed
first (an accelerometer's DC offset, e.g. 1 g of gravity on a MEMS sensor's vertical axis, is not
vibration), so every value below is of the AC part ``x = s - mean(s)``, in m/s² (a sensor in ``g`` is
scaled by 9.80665 m/s² per g):

- ``rms_acceleration_m_s2 = sqrt(mean(x²))``; ``peak_acceleration_m_s2 = max|x|``;
  ``crest_factor = peak / rms`` (a sine gives sqrt(2)); ``kurtosis = mean(x⁴) / mean(x²)²``
  (Pearson's, not the excess: Gaussian noise gives 3, a sine 1.5, impacts from a damaged bearing
  more). Computed from the same ``x²`` as the RMS instead of calling ``scipy.stats.kurtosis``
  (the tests check both agree). A constant window (rms 0) gives NaN crest factor and kurtosis.
- ``rms_velocity_mm_s``: the RMS of the vibration velocity over ``velocity_band_hz`` (10-1000 Hz,
  the band of ISO 10816-3 / ISO 20816-3 for machines above 600 rpm), integrated in the frequency
  domain: ``V(f) = A(f) / (j 2 pi f)`` on the one-sided spectrum ``A = rfft(w x)`` of the tapered
  window, bins outside the band set to zero, and the mean square from Parseval,
  ``sum_k c_k |A_k|² / (2 pi f_k)²`` with ``c_k = 2 / n²`` (1 / n² for the DC and Nyquist bins),
  divided by ``mean(w²)`` so that the taper ``w`` keeps the power of a stationary signal. The band
  edges are sharp (whole FFT bins, ``low <= f_k <= high``), not the filter slopes of ISO 2954.
- ``band_levels``: per configured band ``(low_hz, high_hz)`` the same Parseval sum on the
  acceleration (no 1/f weight): ``band_measure = "rms"`` gives the band's RMS acceleration in m/s²,
  ``"energy"`` its mean square in (m/s²)², the band's share of ``rms_acceleration²`` (disjoint bands
  that cover the whole spectrum but DC add up to it).
- ``zone``: the ISO 10816-3 evaluation zone of ``rms_velocity_mm_s`` for the configured machine
  class (0-3 for A-D; -1 without one; the table and its source are in ``indicator_settings``). A
  boundary value belongs to the lower zone. ISO judges a machine by the highest value over its
  measuring points: take the maximum over channels.

Window taper: ``spectral_window = "hann"`` (default) keeps leakage from a non-integer number of
periods out of the low bins, where ``1/f²`` would amplify it; ``"rectangular"`` is exact for a
whole number of periods but can be several percent off otherwise (tests/unit/test_indicators.py
measures both). Either way the velocity of one short window is noisy; trend an average.

A :class:`IndicatorPlan` (``make_plan``, cached per settings, rate and window length) holds the
taper and the per-bin weights, so a call costs one real FFT and a few reductions (no BLAS call).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
from typing import Any

import numpy as np

from edge_agent.pipeline.indicator_settings import (
    ISO_10816_3_ZONE_LIMITS_MM_S,
    UNIT_SCALE_M_S2,
    ZONES,
    IndicatorSettings,
    validate_settings,
    zone_limits_mm_s,
    zone_of,
)

logger = logging.getLogger(__name__)

CHUNK_SAMPLES = 65_536  # samples per internal step (see compute_indicators)
_ZONE_NAMES = np.array([*ZONES, None], dtype=object)
_RESOLUTION = np.float32(8 * np.finfo(np.float32).eps)  # rounding noise of x - mean(x), relative to mean(x)


@dataclasses.dataclass(frozen=True, eq=False)
class IndicatorPlan:
    """Precomputed for one (settings, sample rate, window length): the taper and the spectral weights.

    ``spectral_weights`` has one row per spectral result and one column per rfft bin: the weights that
    turn ``|A_k|²`` into a mean square, the velocity's in (mm/s)² first, then each band's in (m/s²)²
    (zero outside the band). ``velocity_band_used_hz`` is the band actually integrated (its
    upper edge is cut to the Nyquist frequency when the rate is too low, with a warning).
    """

    settings: IndicatorSettings
    sample_rate_hz: float
    window_samples: int
    taper: np.ndarray | None  # float32 (window_samples,), None for rectangular
    spectral_weights: np.ndarray  # float32 (1 + len(bands_hz), window_samples // 2 + 1)
    velocity_band_used_hz: tuple[float, float]
    zone_limits_mm_s: tuple[float, float, float] | None


def make_plan(
    settings: IndicatorSettings, sample_rate_hz: float, window_samples: int, key: str = "indicators"
) -> IndicatorPlan:
    """The (cached) plan for windows of ``window_samples`` at ``sample_rate_hz``; ``ValueError`` names misfits."""
    errors = validate_settings(settings, key)
    if not (isinstance(sample_rate_hz, int | float) and math.isfinite(sample_rate_hz) and sample_rate_hz > 0):
        errors.append(f"sample_rate_hz: {sample_rate_hz!r} is out of range; expected > 0")
    if not isinstance(window_samples, int) or window_samples < 4:
        errors.append(f"window_samples: {window_samples!r} is out of range; expected an integer >= 4")
    if errors:
        raise ValueError("\n".join(errors))
    settings = dataclasses.replace(  # lists (as TOML gives them) to tuples: hashable for the cache
        settings,
        velocity_band_hz=(float(settings.velocity_band_hz[0]), float(settings.velocity_band_hz[1])),
        bands_hz=tuple((float(low), float(high)) for low, high in settings.bands_hz),
    )
    return _make_plan(settings, float(sample_rate_hz), int(window_samples), key)


@functools.lru_cache(maxsize=64)
def _make_plan(settings: IndicatorSettings, sample_rate_hz: float, window_samples: int, key: str) -> IndicatorPlan:
    errors: list[str] = []
    n = window_samples
    nyquist_hz = sample_rate_hz / 2
    # scipy.fft: 7x numpy.fft on float32 batches here (1.9 against 14 us per 2048-sample window), imported
    # by the first plan, so only an agent whose sensors have indicators pays its ~14 MB of RSS
    import scipy.fft

    freqs_hz = scipy.fft.rfftfreq(n, 1.0 / sample_rate_hz)
    parseval = np.full(freqs_hz.shape, 2.0 / n**2)
    parseval[0] = 1.0 / n**2
    if n % 2 == 0:
        parseval[-1] = 1.0 / n**2
    if settings.spectral_window == "hann":
        # periodic Hann, as scipy.signal.get_window("hann", n): importing scipy.signal costs ~49 MB of RSS
        taper = np.hanning(n + 1)[:-1]
        parseval /= np.mean(taper**2)
    else:
        taper = None
    scale_m_s2 = UNIT_SCALE_M_S2[settings.unit]

    def in_band(low_hz: float, high_hz: float) -> np.ndarray:
        return (freqs_hz >= low_hz) & (freqs_hz <= high_hz)

    low_hz, high_hz = (float(edge) for edge in settings.velocity_band_hz)
    if high_hz > nyquist_hz:
        logger.warning(
            "%s: velocity band %g-%g Hz reaches past the Nyquist frequency of a %g Hz stream; "
            "integrating %g-%g Hz (the RMS velocity is then lower than ISO's)",
            key,
            low_hz,
            high_hz,
            sample_rate_hz,
            low_hz,
            nyquist_hz,
        )
        high_hz = nyquist_hz
    columns: list[np.ndarray] = []
    velocity_mask = in_band(low_hz, high_hz)
    if not velocity_mask.any() or low_hz >= high_hz:
        errors.append(
            f"{key}.velocity_band_hz: {settings.velocity_band_hz!r} holds no FFT bin of a {n}-sample window "
            f"at {sample_rate_hz:g} Hz (bins every {sample_rate_hz / n:g} Hz up to {nyquist_hz:g} Hz)"
        )
    with np.errstate(divide="ignore", over="ignore"):
        velocity_scale = np.where(velocity_mask, (1000.0 * scale_m_s2 / (2 * np.pi * freqs_hz)) ** 2, 0.0)
    columns.append(parseval * velocity_scale)
    for index, (band_low_hz, band_high_hz) in enumerate(settings.bands_hz):
        mask = in_band(band_low_hz, band_high_hz)
        if band_high_hz > nyquist_hz or not mask.any():
            errors.append(
                f"{key}.bands_hz[{index}]: {[band_low_hz, band_high_hz]!r} does not fit a {n}-sample window "
                f"at {sample_rate_hz:g} Hz; expected within 0-{nyquist_hz:g} Hz (Nyquist) and at least one "
                f"FFT bin (bins every {sample_rate_hz / n:g} Hz)"
            )
        columns.append(np.where(mask, parseval * scale_m_s2**2, 0.0))
    if errors:
        raise ValueError("\n".join(errors))
    return IndicatorPlan(
        settings=settings,
        sample_rate_hz=float(sample_rate_hz),
        window_samples=n,
        taper=None if taper is None else taper.astype(np.float32),
        spectral_weights=np.stack(columns).astype(np.float32),
        velocity_band_used_hz=(low_hz, high_hz),
        zone_limits_mm_s=zone_limits_mm_s(settings),
    )


@dataclasses.dataclass(frozen=True)
class Indicators:
    """Indicators of one window or a batch: arrays shaped like the input without its sample axis.

    ``band_levels`` has one more axis, the bands in the order of ``bands_hz`` (``band_measure`` says
    whether they are RMS in m/s² or mean squares in (m/s²)²). ``zone`` is 0-3 (A-D), -1 without a class.
    """

    rms_acceleration_m_s2: np.ndarray
    peak_acceleration_m_s2: np.ndarray
    crest_factor: np.ndarray
    kurtosis: np.ndarray
    rms_velocity_mm_s: np.ndarray
    band_levels: np.ndarray
    zone: np.ndarray
    band_measure: str = "rms"

    def to_dict(self) -> dict[str, Any]:
        """Plain (nested) lists for JSON, one entry per channel; zones as letters, None without a class."""
        zones = _ZONE_NAMES[self.zone].tolist()  # index -1 (no class) picks the trailing None
        return {
            "rms_acceleration_m_s2": self.rms_acceleration_m_s2.tolist(),
            "peak_acceleration_m_s2": self.peak_acceleration_m_s2.tolist(),
            "crest_factor": self.crest_factor.tolist(),
            "kurtosis": self.kurtosis.tolist(),
            "rms_velocity_mm_s": self.rms_velocity_mm_s.tolist(),
            f"band_{self.band_measure}": self.band_levels.tolist(),
            "iso_zone": zones,
        }


def compute_indicators(plan: IndicatorPlan, windows: np.ndarray) -> Indicators:
    """All indicators of ``windows`` (``(..., channels, window_samples)``, any float dtype; float32 is fastest)."""
    samples = np.asarray(windows)
    if samples.ndim < 1 or samples.shape[-1] != plan.window_samples:
        raise ValueError(f"windows of shape {samples.shape} do not end in the plan's {plan.window_samples} samples")
    flat = samples.reshape(-1, plan.window_samples).astype(np.float32, copy=False)
    # chunks of at most CHUNK_SAMPLES keep each temporary below 512 KiB: larger ones made glibc
    # map and trim memory on every call (32 audio windows at once: 34 instead of 11 us per window)
    rows = max(1, CHUNK_SAMPLES // plan.window_samples)
    table = np.concatenate([_table(plan, flat[start : start + rows]) for start in range(0, len(flat), rows)])
    table = table.astype(np.float64)
    scale_m_s2 = UNIT_SCALE_M_S2[plan.settings.unit]
    velocity = np.sqrt(table[:, 4])
    bands = table[:, 5:] if plan.settings.band_measure == "energy" else np.sqrt(table[:, 5:])
    if plan.zone_limits_mm_s is None:
        zone = np.full(velocity.shape, -1, dtype=np.int64)
    else:
        zone = zone_of(velocity, plan.zone_limits_mm_s)
    lead = samples.shape[:-1]
    return Indicators(
        rms_acceleration_m_s2=(table[:, 0] * scale_m_s2).reshape(lead),
        peak_acceleration_m_s2=(table[:, 1] * scale_m_s2).reshape(lead),
        crest_factor=table[:, 2].reshape(lead),
        kurtosis=table[:, 3].reshape(lead),
        rms_velocity_mm_s=velocity.reshape(lead),
        band_levels=bands.reshape((*lead, bands.shape[1])),
        zone=zone.reshape(lead),
        band_measure=plan.settings.band_measure,
    )


def _table(plan: IndicatorPlan, flat: np.ndarray) -> np.ndarray:
    """Per row of ``flat`` (float32): RMS, peak (sensor units), crest, kurtosis, then the spectral mean squares."""
    mean = flat.mean(axis=1, keepdims=True)
    centred = flat - mean
    squared = centred * centred
    mean_square = squared.mean(axis=1)
    fourth = np.einsum("ij,ij->i", squared, squared) / plan.window_samples
    peak = np.maximum(centred.max(axis=1), -centred.min(axis=1))
    rms = np.sqrt(mean_square)
    # a constant window leaves only float32 rounding of its mean: no crest factor or kurtosis (NaN);
    # np.divide's where= instead of np.errstate, which costs more than the division
    defined = rms > np.maximum(_RESOLUTION * np.abs(mean[:, 0]), np.finfo(np.float32).tiny)
    crest = np.divide(peak, rms, out=np.full_like(rms, np.nan), where=defined)
    kurtosis = np.divide(fourth, mean_square * mean_square, out=np.full_like(rms, np.nan), where=defined)
    tapered = centred if plan.taper is None else centred * plan.taper
    import scipy.fft  # loaded by make_plan already: a dictionary lookup

    power = np.abs(scipy.fft.rfft(tapered, axis=1))
    power *= power
    # einsum (numpy's own loops), not a matrix product: OpenBLAS threads those past a size, and on a
    # busy 2-core gateway that made a batch of 32 audio windows 20x slower per window than one of 16
    spectral = np.einsum("ij,kj->ik", power, plan.spectral_weights)
    return np.concatenate([np.stack([rms, peak, crest, kurtosis], axis=1), spectral], axis=1)


__all__ = [
    "CHUNK_SAMPLES",
    "ISO_10816_3_ZONE_LIMITS_MM_S",
    "IndicatorPlan",
    "IndicatorSettings",
    "Indicators",
    "compute_indicators",
    "make_plan",
    "validate_settings",
    "zone_limits_mm_s",
    "zone_of",
]
