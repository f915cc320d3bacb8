"""Health of an audio input: its RMS level in dBFS and whether it has gone silent.

Pure code: no I/O, no threads; times are ``time.monotonic()`` seconds passed in by the caller.

- Level: RMS of the samples relative to full scale (``1.0`` for float input, 32768 for int16),
  in dB: ``20 log10(rms)``. A full-scale square wave is 0 dBFS, a full-scale sine about -3 dBFS,
  digital silence is clamped to :data:`MIN_DBFS`. :class:`LevelMeter` averages the power over
  an interval (about one second) for the gauge, so a scrape sees a steady value, not one block.
- Silence: the input is *silent* when no block at or above ``floor_dbfs`` arrived for
  ``after_s``: that covers both "no samples at all" (device missing, stream stalled) and
  "samples, but below the floor" (a dead microphone, a broken IEPE cable). The clock starts
  when the detector is made, so a device that never opens is reported too.
"""

from __future__ import annotations

import math

import numpy as np

MIN_DBFS = -200.0  # what digital silence reads as (log of zero)
LEVEL_INTERVAL_S = 1.0


def power(samples: np.ndarray) -> float:
    """Mean square of ``samples`` (any shape), full scale 1.0; 0.0 for an empty array."""
    if samples.size == 0:
        return 0.0
    flat = samples.reshape(-1).astype(np.float64, copy=False)
    return float(np.dot(flat, flat) / flat.size)


def dbfs(mean_square: float) -> float:
    """``10 log10(mean_square)``, i.e. the RMS level in dB relative to full scale, at least MIN_DBFS."""
    if not mean_square > 10.0 ** (MIN_DBFS / 10.0):  # also NaN
        return MIN_DBFS
    return 10.0 * math.log10(mean_square)


class LevelMeter:
    """Averages block powers over ``interval_s`` of audio; ``add`` returns the level when one completes."""

    def __init__(self, interval_s: float = LEVEL_INTERVAL_S) -> None:
        if not interval_s > 0:
            raise ValueError(f"interval_s must be > 0, got {interval_s!r}")
        self.interval_s = interval_s
        self._energy = 0.0
        self._duration_s = 0.0

    def add(self, mean_square: float, duration_s: float) -> float | None:
        """Add one block (its mean square and length); the interval's level in dBFS when it is complete."""
        self._energy += mean_square * duration_s
        self._duration_s += duration_s
        if self._duration_s < self.interval_s:
            return None
        level = dbfs(self._energy / self._duration_s)
        self._energy = self._duration_s = 0.0
        return level

    def reset(self) -> None:
        self._energy = self._duration_s = 0.0


class SilenceDetector:
    """Silent once no block at or above ``floor_dbfs`` has arrived for ``after_s`` (0 disables it)."""

    def __init__(self, floor_dbfs: float, after_s: float, *, now: float) -> None:
        if not (math.isfinite(after_s) and after_s >= 0):
            raise ValueError(f"after_s must be a finite number >= 0, got {after_s!r}")
        if math.isnan(floor_dbfs):
            raise ValueError("floor_dbfs must be a number, got nan")
        self.floor_dbfs = floor_dbfs
        self.after_s = after_s
        self._last_sound = now

    @property
    def enabled(self) -> bool:
        return self.after_s > 0

    def block(self, level_dbfs: float, now: float) -> None:
        """Record one block's level at ``now``."""
        if level_dbfs >= self.floor_dbfs:
            self._last_sound = max(self._last_sound, now)

    def silent(self, now: float) -> bool:
        return self.enabled and now - self._last_sound >= self.after_s
