"""When a sound-card block was sampled: PortAudio's ADC time, else a sample clock (no I/O, no threads).

``t0`` is the epoch time of the block's first frame: the wall clock minus the stream's own delay
(``currentTime - inputBufferAdcTime``), which stays within a few ms where the callback itself
jitters by tens. A host API that gives no ADC time gets a sample clock instead, which continues
from block to block and restarts from the wall clock after a gap (a ``seq`` that skipped).
"""

from __future__ import annotations

import time
from typing import Any

MAX_ADC_DELAY_S = 10.0  # a larger currentTime - inputBufferAdcTime is not believed


def adc_epoch(time_info: Any, now: float) -> float | None:
    """Epoch time of the block's first frame from PortAudio's stream clock, None if it has none."""
    adc, current = float(time_info.inputBufferAdcTime), float(time_info.currentTime)
    delay_s = current - adc
    if adc <= 0 or not 0 <= delay_s < MAX_ADC_DELAY_S:
        return None
    return now - delay_s


class BlockClock:
    """``t0`` of each block: its ADC time when known, else the sample clock."""

    def __init__(self) -> None:
        self._last: tuple[int, float] | None = None  # (seq, t0) the sample clock continues from

    def t0(self, seq: int, adc_t0: float | None, frames: int, rate_hz: float) -> float:
        if adc_t0 is not None:
            self._last = None
            return adc_t0
        if self._last is None or self._last[0] != seq - 1:
            self._last = (seq, time.time() - frames / rate_hz)
        else:
            self._last = (seq, self._last[1] + frames / rate_hz)
        return self._last[1]
