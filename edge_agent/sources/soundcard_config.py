"""The ``soundcard`` source's section and its check (beside ``soundcard.py``; sounddevice is imported at start)."""

from __future__ import annotations

from dataclasses import dataclass

from edge_agent.config.rules import setting
from edge_agent.config.sections import SourceSection
from edge_agent.config.table import SourceContext, Table, check_rules, check_sensor

FULL_SCALE = {"float32": 1.0, "int16": 32768.0, "int32": 2147483648.0}  # the dtypes asked of the device
SOUNDCARD_DTYPES = tuple(FULL_SCALE)


@dataclass(frozen=True)
class SoundcardSection(SourceSection):
    """``sensor``, ``device`` (a unique part of the device name, or its index as digits; empty: the default
    input), ``sample_rate_hz`` (0: the device's default), ``channels``, ``dtype``, ``chunk_samples`` (frames
    per block), ``latency_s`` (0: PortAudio's safe default), ``scale`` (sensor units at full scale),
    ``silence_floor_dbfs`` / ``silence_after_s`` (the ``silent`` health alert; 0 s disables it).
    """

    sensor: str = ""  # the sensor id it captures as
    device: str = ""  # name (a unique part of it) or index as digits; empty: the default input device
    dtype: str = setting("float32", choices=SOUNDCARD_DTYPES)  # the sample format asked of the device
    chunk_samples: int = setting(1024, gt=0)  # frames per block
    latency_s: float = setting(0.0, ge=0)  # suggested input latency; 0: PortAudio's default ("high", robust)
    silence_after_s: float = setting(10.0, ge=0)  # silence this long raises a `silent` health alert; 0: off
    # a block below this level counts as silence
    silence_floor_dbfs: float = setting(-80.0, lt=0, note=" (dB below full scale, e.g. -80)")

    @property
    def known_sensors(self) -> tuple[str, ...]:
        return (self.sensor,)


def check_soundcard_source(table: Table, context: SourceContext) -> None:
    check_sensor(table, "soundcard sources need the sensor id they capture as")
    check_rules(table, SoundcardSection, inherited=False)
    rule = "a device name (or a unique part of it) or index, without surrounding spaces"
    table.check("device", lambda v: v == v.strip(), rule, reason="is not allowed")


def soundcard_rate_hz(section: SoundcardSection) -> float | None:
    """The configured capture rate (None: the device's default, known only at start)."""
    return section.sample_rate_hz or None
