"""Bounds a chunk must meet before windowing (issue 12: one sender cannot silence the others).

Checked by each source's :class:`~edge_agent.pipeline.router.Router` before any assembler sees the
chunk; a rejection is a payload error reason, counted by source and by sensor and logged at most
once a minute per (sensor, reason):

- ``wrong_rate``: an announced rate that is not a model's rate must lie within ``MAX_RATE_RATIO`` of
  each model's rate and be resamplable (factors <= ``resample.MAX_FACTOR``: 11,999 Hz to 12 kHz is
  not) with a filter of at most ``MAX_FILTER_BYTES`` (11,988 Hz would take 4 MB), and a source
  resamples from at most ``MAX_RATES_PER_SOURCE`` distinct rates (the filters are
  shared by its sensors; their memory is ``edge_agent_resampler_bytes{source}``).
- ``bad_ts``: a sender's ``ts`` (not one estimated from the arrival) more than ``MAX_CLOCK_OFFSET_S``
  from the agent's clock for a real-time source; for any source outside ``[0, MAX_EPOCH_S]``, where
  an alert's time could not be written (1e12, -1e12, 1e308).
- ``too_many_samples``: a chunk longer than ``MAX_WINDOWS_PER_CHUNK`` windows of a model at its rate
  (a 4 MiB payload would queue thousands of windows at once and push out every other sensor's).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from edge_agent.pipeline.resample import block_matrix, filter_bytes, rational_factors
from edge_agent.types import Chunk

MAX_RATE_RATIO = 8.0
MAX_RATES_PER_SOURCE = 4
MAX_FILTER_BYTES = 1 << 20  # per accepted rate and model (shared by the source's sensors)
MAX_CLOCK_OFFSET_S = 366 * 86_400.0  # a clock wrong by days is still analysed (the supervision warns: clock_offset)
MAX_EPOCH_S = 4_102_444_800.0  # 2100-01-01: every alert time up to it is publishable
MAX_WINDOWS_PER_CHUNK = 64


@dataclass(frozen=True)
class ModelShape:
    """What the bounds need of one model of the source."""

    sample_rate_hz: float
    window_samples: int
    hop_samples: int


class IngressLimits:
    """The bounds of one source (thread-safe: a source may emit from more than one thread)."""

    def __init__(
        self,
        models: Mapping[str, ModelShape],
        *,
        real_time: bool,
        on_resampler_bytes: Callable[[int], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._models = dict(models)
        self._real_time = real_time
        self._clock = clock
        self._on_bytes = on_resampler_bytes
        self._native = {shape.sample_rate_hz for shape in self._models.values()}
        self._rates: dict[float, int] = {}  # accepted foreign rate -> bytes of its filters
        self._lock = threading.Lock()

    def check(self, chunk: Chunk) -> tuple[str, str] | None:
        """``(reason, why)`` if ``chunk`` breaks a bound, else None."""
        rate = float(chunk.sample_rate_hz)
        why = self._rate_problem(rate)
        if why is not None:
            return "wrong_rate", why
        why = self._ts_problem(chunk, rate)
        if why is not None:
            return "bad_ts", why
        for shape in self._models.values():
            model_samples = chunk.n_samples * shape.sample_rate_hz / rate
            limit = shape.window_samples + (MAX_WINDOWS_PER_CHUNK - 1) * shape.hop_samples
            if model_samples > limit:
                why = f"{chunk.n_samples} samples at {rate:g} Hz exceed {MAX_WINDOWS_PER_CHUNK} windows in one payload"
                return "too_many_samples", why
        return None

    @property
    def resampler_bytes(self) -> int:
        with self._lock:
            return sum(self._rates.values())

    def _rate_problem(self, rate: float) -> str | None:
        if rate in self._native or rate in self._rates:
            return None
        if not (math.isfinite(rate) and rate > 0):
            return f"sample rate {rate!r} Hz is not a positive number"
        for model_rate in self._native:
            if not model_rate / MAX_RATE_RATIO <= rate <= model_rate * MAX_RATE_RATIO:
                return f"sample rate {rate:g} Hz is more than {MAX_RATE_RATIO:g}x from the model's {model_rate:g} Hz"
        with self._lock:
            if rate in self._rates:
                return None
            if len(self._rates) >= MAX_RATES_PER_SOURCE:
                return f"sample rate {rate:g} Hz: this source already resamples {MAX_RATES_PER_SOURCE} rates"
            size = 0
            for model_rate in self._native:
                try:
                    up, down = rational_factors(rate, model_rate)
                except ValueError as err:
                    return str(err)
                if (up, down) == (1, 1):
                    continue
                if filter_bytes(up, down) > MAX_FILTER_BYTES:  # e.g. 11,988 Hz -> 12 kHz: 1000/999, 4 MB
                    return f"sample rate {rate:g} Hz: resampling by {up}/{down} needs a filter of more than 1 MiB"
                size += int(block_matrix(up, down)[0].nbytes)
            self._rates[rate] = size
            total = sum(self._rates.values())
        if self._on_bytes is not None:
            self._on_bytes(total)
        return None

    def _ts_problem(self, chunk: Chunk, rate: float) -> str | None:
        if chunk.t0_estimated:
            return None
        end_s = chunk.t0 + chunk.n_samples / rate
        if not (chunk.t0 >= 0.0 and end_s <= MAX_EPOCH_S):
            return f"ts {chunk.t0:g} is outside the years 1970-2100"
        if self._real_time:
            offset_s = chunk.t0 - self._clock()
            if abs(offset_s) > MAX_CLOCK_OFFSET_S:
                return f"ts is {offset_s:+.0f} s from the agent's clock (more than {MAX_CLOCK_OFFSET_S:.0f} s)"
        return None
