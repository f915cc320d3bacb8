"""Streaming polyphase resampling (numpy only) for streams whose rate differs from the model's.

The rate ratio ``out/in`` is reduced to ``up/down``; the signal is (conceptually) upsampled by
``up``, low-pass filtered by a Kaiser-windowed sinc designed once, and downsampled by ``down``.
Only the outputs that are kept are computed: every block of ``up`` outputs is one small matrix
product over ``down``-spaced input windows, so a chunk costs one BLAS call.

The filter is zero-phase: output sample ``m`` is the signal at time ``m / out_rate_hz`` after
the first input sample, so a resampled stream keeps the first chunk's ``t0``. Filter history is
kept between calls; outputs are emitted as soon as all the inputs they need have arrived, so
feeding a signal in any chunking yields the same output as feeding it at once. The stream starts
from zero history (a transient of about half the filter length at the start and after ``reset``).
"""

from __future__ import annotations

import functools
import math
from fractions import Fraction

import numpy as np

MAX_FACTOR = 1024  # largest up or down factor accepted (the block matrix is up x (taps/up + down))
STOPBAND_ATTENUATION_DB = 60.0
MAX_DESIGNS = 16  # filters kept (shared by every stream at the same factors; callers bound distinct rates)
PASSBAND_FRACTION = 0.8  # passband edge as a fraction of the lower Nyquist; the stopband starts at it


def rational_factors(in_rate_hz: float, out_rate_hz: float) -> tuple[int, int]:
    """``(up, down)`` with ``out/in == up/down`` reduced; ValueError naming the rates if too large."""
    for name, rate in (("in_rate_hz", in_rate_hz), ("out_rate_hz", out_rate_hz)):
        if not (math.isfinite(rate) and rate > 0):
            raise ValueError(f"{name} must be a positive finite number, got {rate!r}")
    in_fraction = Fraction(in_rate_hz).limit_denominator(1_000_000)
    if in_fraction == 0:  # e.g. 1e-7 Hz: rounds to 0 (was a ZeroDivisionError)
        raise ValueError(f"cannot resample from {in_rate_hz!r} Hz: below the resolution of 1e-6 Hz")
    ratio = Fraction(out_rate_hz).limit_denominator(1_000_000) / in_fraction
    if ratio == 0:
        raise ValueError(f"cannot resample to {out_rate_hz!r} Hz: below the resolution of 1e-6 Hz")
    up, down = ratio.numerator, ratio.denominator
    if max(up, down) > MAX_FACTOR:
        raise ValueError(
            f"cannot resample {in_rate_hz!r} Hz to {out_rate_hz!r} Hz: reduced ratio {up}/{down} "
            f"needs factors <= {MAX_FACTOR}"
        )
    return up, down


def design_lowpass(up: int, down: int) -> np.ndarray:
    """Kaiser-windowed sinc at the upsampled rate, odd length, gain ``up`` (unity after zero-stuffing).

    Frequencies are relative to the upsampled rate ``in * up``. The stopband starts at the lower
    of the two Nyquist frequencies (``0.5 / max(up, down)``) with ``STOPBAND_ATTENUATION_DB``;
    the passband ends at ``PASSBAND_FRACTION`` of it.
    """
    f_stop = 0.5 / max(up, down)
    f_pass = PASSBAND_FRACTION * f_stop
    f_cut = 0.5 * (f_pass + f_stop)
    a = STOPBAND_ATTENUATION_DB
    beta = 0.1102 * (a - 8.7) if a > 50 else 0.5842 * (a - 21) ** 0.4 + 0.07886 * (a - 21)
    taps = math.ceil((a - 7.95) / (2.285 * 2 * math.pi * (f_stop - f_pass))) + 1
    taps += 1 - taps % 2  # odd: the delay (taps - 1) / 2 is an integer number of upsampled samples
    n = np.arange(taps) - (taps - 1) / 2
    h = 2 * f_cut * np.sinc(2 * f_cut * n) * np.kaiser(taps, beta)
    return h * (up / h.sum())


def filter_bytes(up: int, down: int) -> int:
    """About how many bytes :func:`block_matrix` takes for these factors, without designing it."""
    f_stop = 0.5 / max(up, down)
    taps = math.ceil((STOPBAND_ATTENUATION_DB - 7.95) / (2.285 * 2 * math.pi * (1 - PASSBAND_FRACTION) * f_stop)) + 2
    return 4 * up * (taps // up + down + 2)  # float32 (span, up), span ~ taps / up + down


@functools.lru_cache(maxsize=MAX_DESIGNS)
def block_matrix(up: int, down: int) -> tuple[np.ndarray, int]:
    """Weights ``(span, up)`` mapping ``span`` inputs to a block of ``up`` outputs, and ``lead``.

    Output ``b * up + r`` is ``sum_s W[s, r] * x[b * down - lead + s]`` (zero-phase polyphase).
    """
    h = design_lowpass(up, down)
    delay = (h.size - 1) // 2
    # output r of a block sits at upsampled index r*down + delay; input o at upsampled o*up
    newest = (np.arange(up) * down + delay) // up  # newest input offset each output needs
    oldest = -((h.size - 1 - delay) // up) - 1  # oldest offset any output may touch (<= 0)
    offsets = np.arange(oldest, int(newest.max()) + 1)
    tap = (np.arange(up) * down + delay)[None, :] - offsets[:, None] * up  # (span, up)
    inside = (tap >= 0) & (tap < h.size)
    weights = np.where(inside, h[np.clip(tap, 0, h.size - 1)], 0.0)
    used = np.flatnonzero(inside.any(axis=1))  # trim rows no output touches
    weights = weights[used[0] : used[-1] + 1]
    weights = np.ascontiguousarray(weights, dtype=np.float32)
    weights.flags.writeable = False  # shared by every stream at these factors
    return weights, -(int(offsets[used[0]]))


class StreamResampler:
    """Resample a ``(channels, n)`` float32 stream from ``in_rate_hz`` to ``out_rate_hz`` in chunks.

    ``process`` returns ``(channels, m)`` float32; the total output after ``N`` input samples
    depends only on ``N`` (about ``N * out/in`` minus half the filter length). Same rates: the
    input is passed through unchanged. The filter weights (:func:`block_matrix`, :attr:`weights_bytes`)
    are shared by every stream with the same factors; each stream holds only its history.
    """

    def __init__(self, in_rate_hz: float, out_rate_hz: float, channels: int) -> None:
        if channels < 1:
            raise ValueError(f"channels must be >= 1, got {channels!r}")
        self.in_rate_hz = float(in_rate_hz)
        self.out_rate_hz = float(out_rate_hz)
        self.channels = int(channels)
        self.up, self.down = rational_factors(self.in_rate_hz, self.out_rate_hz)
        self.identity = self.up == self.down == 1
        self._weights, self._lead = (
            (np.empty((0, 0), np.float32), 0) if self.identity else block_matrix(self.up, self.down)
        )
        self._span = self._weights.shape[0]
        self.weights_bytes = int(self._weights.nbytes)
        self.reset()

    def reset(self) -> None:
        """Forget the history: the next sample starts a new stream (zero history before it)."""
        self._buf = np.zeros((self.channels, self._lead), dtype=np.float32)

    def process(self, samples: np.ndarray) -> np.ndarray:
        """Feed ``(channels, n)`` samples; return the ``(channels, m)`` float32 outputs now complete."""
        x = np.asarray(samples, dtype=np.float32)
        if x.ndim != 2 or x.shape[0] != self.channels:
            raise ValueError(f"samples must have shape ({self.channels}, n), got {x.shape}")
        if self.identity:
            return x
        buf = np.concatenate((self._buf, x), axis=1)
        blocks = (buf.shape[1] - self._span) // self.down + 1 if buf.shape[1] >= self._span else 0
        if blocks == 0:
            self._buf = buf
            return np.empty((self.channels, 0), dtype=np.float32)
        # (channels, blocks, span) view: window b starts at b * down (np.ndarray is cheaper than as_strided)
        step = buf.strides[1]
        views = np.ndarray(
            (self.channels, blocks, self._span),
            np.float32,
            buffer=buf,
            strides=(buf.strides[0], step * self.down, step),
        )
        rows = np.ascontiguousarray(views).reshape(self.channels * blocks, self._span)
        out = (rows @ self._weights).reshape(self.channels, blocks * self.up)
        self._buf = buf[:, blocks * self.down :].copy()
        return out
