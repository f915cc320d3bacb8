"""The vibration indicators of one source's windows (``[sources.indicators]``): batched, exported, judged.

The router hands the stage the windows of the source's first model (at that model's rate and window
length), on the source's thread, after it has queued them for inference. The stage keeps them per
sensor and computes a batch (``edge_agent.pipeline.indicators``) when it holds ``FLUSH_WINDOWS`` windows
or ``FLUSH_SIGNAL_S`` of signal, whichever comes first: numpy's per-call overhead makes one window at
a time cost 5-7 times more per window than a batch (docs/benchmarks.md), and the inference worker, the
busiest thread under load, never runs them. The gauges then show the batch's newest window.

ISO zone alarm (``alarm_zone = "C"`` or ``"D"``): the batch's RMS velocity (the root of the mean
square over its windows, about one second of signal, the worst channel) above the lower boundary of
the alarm zone asserts the health condition ``vibration_zone`` of the sensor; it is cleared once that
velocity falls ``ALARM_HYSTERESIS`` (10 %) below the boundary, so a machine running on a boundary does
not flap. The decision engine's health path turns that into ``new`` and ``end`` events with its
cooldown (polled by ``DataPath.tick``). One window's velocity is noisy; ISO practice trends an average.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import numpy as np

from edge_agent.common.ratelimit import RateLimitedLog
from edge_agent.config.indicators import IndicatorsSection
from edge_agent.metrics.vibration import VibrationMetrics
from edge_agent.pipeline.indicator_settings import ZONES
from edge_agent.pipeline.indicators import IndicatorPlan, Indicators, compute_indicators, make_plan
from edge_agent.types import Window

logger = logging.getLogger(__name__)

FLUSH_WINDOWS = 32  # windows per batch at most
FLUSH_SIGNAL_S = 1.0  # or this much signal (first window's start to last window's end)
ZONE_ALARM_LABEL = "vibration_zone"
ALARM_HYSTERESIS = 0.1  # an asserted alarm clears below (1 - this) x the alarm zone's lower boundary
HealthCondition = tuple[str, str, bool]


def band_label(band_hz: tuple[float, float]) -> str:
    return f"{band_hz[0]:g}-{band_hz[1]:g}Hz"


class IndicatorStage:
    """One source's indicator computation; ``push`` on the source's thread, the rest from any thread."""

    def __init__(
        self,
        section: IndicatorsSection,
        sample_rate_hz: float,
        window_samples: int,
        channels: int,
        metrics: VibrationMetrics,
        key: str = "indicators",
    ) -> None:
        self.section = section
        self.plan: IndicatorPlan = make_plan(section.settings(), sample_rate_hz, window_samples, key)
        self._metrics = metrics
        self._channels = [""] if channels == 1 else [str(index) for index in range(channels)]
        self._bands = [band_label(band) for band in self.plan.settings.bands_hz]
        self._alarm = section.alarm_zone_index
        self._pending: dict[str, list[Window]] = {}
        self._lock = threading.Lock()
        self._conditions: dict[str, bool] = {}  # sensor -> zone alarm asserted
        self._latest: dict[str, dict[str, Any]] = {}  # sensor -> newest values (the state topic)
        self._errors = RateLimitedLog(logger)

    def init_sensor(self, sensor: str) -> None:
        """Create ``sensor``'s series at NaN (no value yet), the window count at zero."""
        m = self._metrics
        for channel in self._channels:
            for family in (m.rms, m.peak, m.crest, m.kurtosis, m.velocity):
                family.labels(sensor, channel).set(float("nan"))
            bands = m.band_energy if self.plan.settings.band_measure == "energy" else m.band_rms
            for band in self._bands:
                bands.labels(sensor, channel, band).set(float("nan"))
        if self.plan.zone_limits_mm_s is not None:
            m.zone.labels(sensor).set(float("nan"))
        m.windows.labels(sensor)

    def push(self, sensor: str, windows: list[Window]) -> None:
        """Take a chunk's windows of ``sensor``; computes a batch once enough are held."""
        if not self.section.enabled or not windows:
            return
        pending = self._pending.setdefault(sensor, [])
        pending.extend(windows)
        if len(pending) >= FLUSH_WINDOWS or pending[-1].t_end - pending[0].t_start >= FLUSH_SIGNAL_S:
            self._pending[sensor] = []
            try:
                self._compute(sensor, pending)
            except Exception:  # an indicator bug must not stop the source; counted in the log
                self._errors.warning(sensor, "vibration indicators of sensor %s failed", sensor, exc_info=True)

    def conditions(self) -> list[HealthCondition]:
        """The zone alarm of every sensor computed so far (empty without ``alarm_zone``)."""
        with self._lock:
            return [(sensor, ZONE_ALARM_LABEL, active) for sensor, active in self._conditions.items()]

    def latest(self, sensor: str) -> dict[str, Any] | None:
        """The newest window's values as plain JSON (``Indicators.to_dict`` plus its end time), or None."""
        with self._lock:
            return self._latest.get(sensor)

    def _compute(self, sensor: str, windows: list[Window]) -> None:
        values = compute_indicators(self.plan, np.stack([window.samples for window in windows]))
        self._export(sensor, values)
        newest = {"window_end": windows[-1].t_end, **_last(values).to_dict()}
        alarm, limits = None, self.plan.zone_limits_mm_s
        if self._alarm is not None and limits is not None:
            mean_velocity = float(np.sqrt(np.mean(values.rms_velocity_mm_s**2, axis=0)).max())
            boundary_mm_s = limits[self._alarm - 1]  # upper limit of the zone below the alarm zone
            was = self._conditions.get(sensor, False)
            alarm = mean_velocity > boundary_mm_s * ((1 - ALARM_HYSTERESIS) if was else 1.0)
        with self._lock:
            self._latest[sensor] = newest
            if alarm is not None:
                if alarm != self._conditions.get(sensor, False):
                    logger.info(
                        "sensor %s: RMS velocity %.2f mm/s over the last %d windows is %s zone %s",
                        sensor,
                        mean_velocity,
                        len(windows),
                        "in" if alarm else "below",
                        ZONES[self._alarm],
                    )
                self._conditions[sensor] = alarm

    def _export(self, sensor: str, values: Indicators) -> None:
        m, last = self._metrics, _last(values)
        bands = m.band_energy if last.band_measure == "energy" else m.band_rms
        for index, channel in enumerate(self._channels):
            m.rms.labels(sensor, channel).set(float(last.rms_acceleration_m_s2[index]))
            m.peak.labels(sensor, channel).set(float(last.peak_acceleration_m_s2[index]))
            m.crest.labels(sensor, channel).set(float(last.crest_factor[index]))
            m.kurtosis.labels(sensor, channel).set(float(last.kurtosis[index]))
            m.velocity.labels(sensor, channel).set(float(last.rms_velocity_mm_s[index]) / 1000)  # m/s
            for band_index, band in enumerate(self._bands):
                bands.labels(sensor, channel, band).set(float(last.band_levels[index, band_index]))
        if self.plan.zone_limits_mm_s is not None:
            m.zone.labels(sensor).set(int(last.zone.max()))
        m.windows.labels(sensor).inc(len(values.zone))


def _last(values: Indicators) -> Indicators:
    """The batch's newest window (index -1 of every array)."""
    return Indicators(
        rms_acceleration_m_s2=values.rms_acceleration_m_s2[-1],
        peak_acceleration_m_s2=values.peak_acceleration_m_s2[-1],
        crest_factor=values.crest_factor[-1],
        kurtosis=values.kurtosis[-1],
        rms_velocity_mm_s=values.rms_velocity_mm_s[-1],
        band_levels=values.band_levels[-1],
        zone=values.zone[-1],
        band_measure=values.band_measure,
    )


__all__ = ["ALARM_HYSTERESIS", "FLUSH_SIGNAL_S", "FLUSH_WINDOWS", "ZONE_ALARM_LABEL", "IndicatorStage", "band_label"]
