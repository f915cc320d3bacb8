"""The vibration indicators' Prometheus gauges (``[sources.indicators]``), on the agent's registry.

Names carry Prometheus' base units (``promtool check metrics``): the velocity is in m/s (ISO's mm/s
divided by 1000). Every family is labelled by ``sensor`` and ``channel``; a one-channel sensor has ``channel=""``, which
Prometheus drops, so its series read ``{sensor="..."}``. The ISO zone is per sensor (the maximum over
channels, as ISO 10816-3 judges a machine by its worst measuring point). Values are those of the newest
window of each batch the agent computes (edge_agent.pipeline.indicator_stage); NaN until the first one.
The series of a sensor are created by the router (edge_agent.pipeline.router).
"""

from __future__ import annotations

import logging

from prometheus_client import CollectorRegistry

from edge_agent.metrics.series import CounterFamily, GaugeFamily

logger = logging.getLogger(__name__)

SENSOR_CHANNEL = ["sensor", "channel"]


class VibrationMetrics:
    """Gauges of the vibration indicators (one set per agent registry)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.rms = GaugeFamily(
            "edge_agent_vibration_acceleration_rms_meters_per_second_squared",
            "RMS acceleration of the last window, m/s².",
            SENSOR_CHANNEL,
            registry=r,
        )
        self.peak = GaugeFamily(
            "edge_agent_vibration_acceleration_peak_meters_per_second_squared",
            "Peak acceleration (max |x|, mean removed) of the last window, m/s².",
            SENSOR_CHANNEL,
            registry=r,
        )
        self.crest = GaugeFamily(
            "edge_agent_vibration_crest_factor",
            "Peak over RMS of the last window (a sine: 1.41).",
            SENSOR_CHANNEL,
            registry=r,
        )
        self.kurtosis = GaugeFamily(
            "edge_agent_vibration_kurtosis",
            "Pearson kurtosis of the last window (Gaussian noise 3, a sine 1.5; impacts more).",
            SENSOR_CHANNEL,
            registry=r,
        )
        self.velocity = GaugeFamily(
            "edge_agent_vibration_velocity_rms_meters_per_second",
            "RMS vibration velocity over the configured band (ISO 10816-3: 10-1000 Hz) of the last window, m/s "
            "(x 1000: ISO's mm/s).",
            SENSOR_CHANNEL,
            registry=r,
        )
        self.band_rms = GaugeFamily(
            "edge_agent_vibration_band_acceleration_rms_meters_per_second_squared",
            "RMS acceleration in a configured band (band_measure = rms) of the last window, m/s².",
            [*SENSOR_CHANNEL, "band"],
            registry=r,
        )
        self.band_energy = GaugeFamily(
            "edge_agent_vibration_band_acceleration_mean_square",
            "Mean square acceleration in a configured band (band_measure = energy) of the last window, (m/s²)².",
            [*SENSOR_CHANNEL, "band"],
            registry=r,
        )
        self.zone = GaugeFamily(
            "edge_agent_vibration_iso_zone",
            "ISO 10816-3 zone of the last window's RMS velocity, worst channel: 0 A, 1 B, 2 C, 3 D "
            "(only for a configured machine class).",
            ["sensor"],
            registry=r,
        )
        self.windows = CounterFamily(
            "edge_agent_vibration_windows_total", "Windows whose indicators were computed.", ["sensor"], registry=r
        )
