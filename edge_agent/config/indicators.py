"""``[sources.indicators]``: the vibration indicators of one ``[[sources]]`` entry (off without the table).

The keys that say what to compute are :class:`~edge_agent.pipeline.indicator_settings.IndicatorSettings`'
fields, checked by its ``validate_settings`` (one message per bad key, ``sources[i].indicators.<key>``);
the agent's own keys (``enabled``, ``alarm_zone``) carry their rules on the field.
What depends on the models (a band past the Nyquist frequency of the model's rate, a band without an
FFT bin of its window) is checked before start by ``edge_agent.service.preflight``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from edge_agent.config.rules import setting
from edge_agent.config.table import check_rules, read_table
from edge_agent.pipeline.indicator_settings import ZONES, IndicatorSettings, validate_settings

ALARM_ZONES = ("", "C", "D")  # "": no alarm; C: plan maintenance; D: damage likely (ISO 10816-3)
_LISTS = ("velocity_band_hz", "bands_hz")  # lists of numbers: validate_settings checks them as written


@dataclass(frozen=True)
class IndicatorsSection:
    """What the table holds; :meth:`settings` is the part ``edge_agent.pipeline.indicators`` computes from."""

    enabled: bool = True  # the table's presence turns them on; false keeps the settings but computes nothing
    unit: str = "g"
    velocity_band_hz: tuple[float, float] = (10.0, 1000.0)
    bands_hz: tuple[tuple[float, float], ...] = ()
    band_measure: str = "rms"
    spectral_window: str = "hann"
    machine_group: int = 0
    foundation: str = "rigid"
    alarm_zone: str = setting("", choices=ALARM_ZONES, allowed='choose C, D or "" (no alarm)')

    def settings(self) -> IndicatorSettings:
        return IndicatorSettings(
            unit=self.unit,
            velocity_band_hz=self.velocity_band_hz,
            bands_hz=self.bands_hz,
            band_measure=self.band_measure,
            spectral_window=self.spectral_window,
            machine_group=self.machine_group,
            foundation=self.foundation,
        )

    @property
    def alarm_zone_index(self) -> int | None:
        """0-3 of ``alarm_zone`` (C: 2, D: 3), None without an alarm."""
        return ZONES.index(self.alarm_zone) if self.alarm_zone else None


def _as_tuple(value: Any) -> Any:
    """TOML lists to (nested) tuples, so the section stays hashable; anything else as written."""
    if isinstance(value, list):
        return tuple(_as_tuple(item) for item in value)
    return value


def read_indicators(raw: Any, prefix: str, errors: list[str]) -> IndicatorsSection | None:
    """``raw`` (the ``indicators`` table of a source) as a section; appends every problem to ``errors``."""
    scalars = {k: v for k, v in raw.items() if k not in _LISTS} if isinstance(raw, dict) else raw
    what = "a table ([sources.indicators] or indicators = { ... })"
    table = read_table(IndicatorsSection, scalars, prefix, errors, what=what, rules=False)
    if table is None:
        return None
    for name in _LISTS:
        if name in raw:
            table.values[name] = raw[name]  # as written, for the messages; tuples once valid
    check_rules(table, IndicatorsSection)
    found = len(errors)
    if table.ok(*(spec.name for spec in dataclasses.fields(IndicatorSettings))):
        errors += validate_settings(IndicatorsSection(**table.values).settings(), prefix)
    if table.ok("alarm_zone", "machine_group") and table.values["alarm_zone"] and not table.values["machine_group"]:
        table.fail("alarm_zone", "is not allowed without a machine class", "set machine_group = 1 or 2 (ISO 10816-3)")
    if table.bad or len(errors) > found:
        return None
    return IndicatorsSection(**{name: _as_tuple(value) for name, value in table.values.items()})
