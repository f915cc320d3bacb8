"""Settings of the vibration indicators (``edge_agent.pipeline.indicators``) and the ISO 10816-3 zone table.

:class:`IndicatorSettings` is frozen and its field names are meant as the keys of a config section;
:func:`validate_settings` reports every problem at once, one line each in the form the config loader
uses: ``<key>.<field>: <value> <what is wrong>; <what is allowed>``.

Zone boundaries (``ISO_10816_3_ZONE_LIMITS_MM_S``): ISO 10816-3:2009 "Mechanical vibration -
Evaluation of machine vibration by measurements on non-rotating parts - Part 3: Industrial machines
with nominal power above 15 kW and nominal speeds between 120 r/min and 15 000 r/min", Annex A,
Table A.1 (group 1, large machines: 300 kW to 50 MW, or electrical machines with shaft height
H >= 315 mm) and Table A.2 (group 2, medium machines: 15 kW to 300 kW, or 160 mm <= H < 315 mm),
RMS velocity 10-1000 Hz. ISO 20816-3:2022, which replaces it, keeps the B/C and C/D boundaries and
merges zones A and B into one acceptance region; the four zones A-D are kept here because they are
what maintenance teams know. Zone A: newly commissioned; B: unrestricted long-term operation;
C: not for long-term operation (plan maintenance); D: severe enough to cause damage.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

STANDARD_GRAVITY_M_S2 = 9.80665
UNIT_SCALE_M_S2 = {"g": STANDARD_GRAVITY_M_S2, "m/s2": 1.0}
SPECTRAL_WINDOWS = ("hann", "rectangular")
BAND_MEASURES = ("rms", "energy")
FOUNDATIONS = ("rigid", "flexible")
MACHINE_GROUPS = (0, 1, 2)  # 0: no ISO zone
ZONES = "ABCD"
# (machine group, foundation) -> upper limits of zones A, B and C, mm/s RMS 10-1000 Hz (see the module doc)
ISO_10816_3_ZONE_LIMITS_MM_S: dict[tuple[int, str], tuple[float, float, float]] = {
    (1, "rigid"): (2.3, 4.5, 7.1),
    (1, "flexible"): (3.5, 7.1, 11.0),
    (2, "rigid"): (1.4, 2.8, 4.5),
    (2, "flexible"): (2.3, 4.5, 7.1),
}


@dataclasses.dataclass(frozen=True)
class IndicatorSettings:
    """What to compute for one sensor; the field names are meant as the keys of a config section."""

    unit: str = "g"  # the sensor's acceleration unit: g | m/s2
    velocity_band_hz: tuple[float, float] = (10.0, 1000.0)  # ISO 10816-3 / 20816-3 band
    bands_hz: tuple[tuple[float, float], ...] = ()  # (low_hz, high_hz) per band level
    band_measure: str = "rms"  # rms (m/s²) | energy (mean square, (m/s²)²)
    spectral_window: str = "hann"  # hann | rectangular
    machine_group: int = 0  # ISO 10816-3 group: 1 (large), 2 (medium); 0: no zone
    foundation: str = "rigid"  # rigid | flexible (ISO 10816-3)


def _band_errors(key: str, band: Any) -> list[str]:
    shown = repr(band)
    if not isinstance(band, list | tuple) or len(band) != 2:
        return [f"{key}: {shown} is not a band; expected [low_hz, high_hz]"]
    if not all(isinstance(edge, int | float) and not isinstance(edge, bool) for edge in band):
        return [f"{key}: {shown} has the wrong type; expected two numbers [low_hz, high_hz]"]
    low, high = band
    if not (math.isfinite(low) and math.isfinite(high) and 0 < low < high):
        return [f"{key}: {shown} is out of range; expected 0 < low_hz < high_hz"]
    return []


def validate_settings(settings: IndicatorSettings, key: str = "indicators") -> list[str]:
    """Every problem of ``settings``, one line each: ``<key>.<field>: <value> <what is wrong>; <allowed>``."""
    errors: list[str] = []
    if settings.unit not in UNIT_SCALE_M_S2:
        errors.append(f"{key}.unit: {settings.unit!r} is not allowed; one of {', '.join(UNIT_SCALE_M_S2)}")
    errors += _band_errors(f"{key}.velocity_band_hz", settings.velocity_band_hz)
    if not isinstance(settings.bands_hz, list | tuple):
        errors.append(f"{key}.bands_hz: {settings.bands_hz!r} has the wrong type; expected a list of [low_hz, high_hz]")
    else:
        for index, band in enumerate(settings.bands_hz):
            errors += _band_errors(f"{key}.bands_hz[{index}]", band)
    if settings.band_measure not in BAND_MEASURES:
        errors.append(
            f"{key}.band_measure: {settings.band_measure!r} is not allowed; one of {', '.join(BAND_MEASURES)}"
        )
    if settings.spectral_window not in SPECTRAL_WINDOWS:
        errors.append(
            f"{key}.spectral_window: {settings.spectral_window!r} is not allowed; one of {', '.join(SPECTRAL_WINDOWS)}"
        )
    if isinstance(settings.machine_group, bool) or settings.machine_group not in MACHINE_GROUPS:
        errors.append(
            f"{key}.machine_group: {settings.machine_group!r} is not allowed; 1 (large machines, > 300 kW), "
            "2 (medium, 15-300 kW) or 0 (no ISO zone)"
        )
    if settings.foundation not in FOUNDATIONS:
        errors.append(f"{key}.foundation: {settings.foundation!r} is not allowed; one of {', '.join(FOUNDATIONS)}")
    return errors


def zone_limits_mm_s(settings: IndicatorSettings) -> tuple[float, float, float] | None:
    """Upper limits of zones A, B, C for the settings' machine class (ISO 10816-3), or None without one."""
    if settings.machine_group == 0:
        return None
    return ISO_10816_3_ZONE_LIMITS_MM_S[(settings.machine_group, settings.foundation)]


def zone_of(rms_velocity_mm_s: np.ndarray | float, limits_mm_s: tuple[float, float, float]) -> np.ndarray:
    """Zone index 0-3 (A-D) of each velocity; a value on a boundary belongs to the lower zone."""
    return np.searchsorted(np.asarray(limits_mm_s), rms_velocity_mm_s, side="left")
