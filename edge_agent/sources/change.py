"""A change detector at ingress: a cheap first signal that makes a changing sensor a suspect at once.

Under overload each sensor gets a window analysed only every turn of the fair round-robin (about
1.6 s at 9x), longer than a short fault lasts; a sensor becomes a suspect (never shed, served first:
edge_agent.pipeline.suspects) only once the model saw a fault. This detector looks at *every*
message, shed or not, for a few microseconds: two numbers of its samples (all channels together),

- ``log RMS``: the level (0.5 log of the variance about the message's mean), and
- ``log kurtosis``: the impulsiveness (m4 / m2^2), which a bearing fault raises at any level,

compared with the sensor's own healthy baseline: an exponentially weighted mean and spread of each
(weight ``ALPHA`` per message, so a memory of ~50 messages), after a warm-up of ``WARMUP_MESSAGES``
(Welford's mean and variance; no marks before). A message whose largest ``|x - mean| / spread``
(the spread floored at ``SPREAD_FLOOR``, so that a very steady stream does not turn noise into a
change) exceeds the threshold is a *mark*: the source tells the window queue, which makes the sensor
a suspect for ``HOLD_S`` (each mark extends it) if the bound on suspects allows. The model still
decides every alert; the detector never raises one.

The baseline does not learn while the sensor is a suspect (its own hold, or the queue says so:
a fault window), so a fault is not learnt as healthy. A change that lasts ``REBASE_S`` of
continuous marks (a new operating point: speed, load) restarts the warm-up on the new signal; a
sensor the model calls faulty stays a suspect through its ``fault`` verdicts meanwhile.

The threshold is chosen on healthy streams only (docs/benchmarks.md, "Overload": CWRU normal data
and the benchmark's healthy sensors), for a false-suspect rate far below 1 % of sensor-seconds.
"""

from __future__ import annotations

import logging
import math

import msgspec
import numpy as np

logger = logging.getLogger(__name__)

DEFAULT_THRESHOLD = 10.0  # in baseline spreads; chosen on healthy streams only (benchmarks/change_false_suspects.py)
WARMUP_MESSAGES = 20
ALPHA = 0.02
SPREAD_FLOOR = (0.02, 0.04)  # log RMS (2 % of the level), log kurtosis
HOLD_S = 1.0  # a mark makes the sensor a suspect this long (12 windows of a 12 kHz stream at hop 1024)
REBASE_S = 10.0
MIN_SAMPLES = 16  # shorter messages are not looked at (their kurtosis means little)

_BINARY = {"f32le": np.dtype("<f4"), "i16le": np.dtype("<i2")}
_decode_json = msgspec.json.Decoder().decode


def features(samples: np.ndarray) -> tuple[float, float] | None:
    """``(log RMS, log kurtosis)`` of ``samples`` (any shape, all values together); None if flat or not finite.

    Few numpy calls (each costs ~0.3-1 us on 1,024 samples, more than its arithmetic): NaN / inf are
    found by one BLAS ``dot`` of the raw values (not a ufunc: no floating-point warning to silence,
    cheaper than ``np.errstate``); past it every value is finite, so no later step can overflow.
    """
    flat = samples if samples.ndim == 1 else samples.reshape(-1)
    n = flat.size
    if n < MIN_SAMPLES:
        return None
    centred = flat.astype(np.float64)  # float64: the 4th power of any float32 fits
    if not math.isfinite(centred.dot(centred)):  # NaN / inf in a hostile payload (the parser rejects it)
        return None
    centred -= centred.sum() / n
    m2 = float(centred.dot(centred)) / n
    centred *= centred
    m4 = float(centred.dot(centred)) / n
    if not (m2 > 0.0 and m4 < math.inf):  # flat
        return None
    return 0.5 * math.log(m2), math.log(m4 / (m2 * m2))


def payload_samples(payload: bytes, fmt: str) -> np.ndarray | None:
    """The samples of one payload, decoded as cheaply as the format allows; None if it is not decodable.

    f32le / i16le: a view of the bytes (frames interleaved: channels need no split for these features);
    JSON: ``msgspec`` (~30-50 us for 1,024 samples); the parser proper still validates everything.
    """
    dtype = _BINARY.get(fmt)
    if dtype is not None:
        usable = len(payload) - len(payload) % dtype.itemsize
        return np.frombuffer(payload, dtype=dtype, count=usable // dtype.itemsize)
    try:
        doc = _decode_json(payload)
        values = doc.get("samples") if isinstance(doc, dict) else None
        if not isinstance(values, list):
            return None
        samples = np.asarray(values, dtype=np.float32)
    except (msgspec.DecodeError, ValueError, TypeError, OverflowError, RecursionError):
        return None
    return samples


class _Baseline:
    __slots__ = ("count", "marked_at", "marks_since", "mean", "var")

    def __init__(self) -> None:
        self.count = 0  # messages learnt (the warm-up ends at WARMUP_MESSAGES)
        self.mean = [0.0, 0.0]
        self.var = [0.0, 0.0]
        self.marked_at = -math.inf  # the last mark (clock seconds)
        self.marks_since = math.inf  # start of the current run of marks (gaps shorter than the hold)


class ChangeDetector:
    """Per-sensor baselines of one source (one thread calls :meth:`observe`; bounded by its admitted sensors)."""

    def __init__(self, threshold: float = DEFAULT_THRESHOLD, *, hold_s: float = HOLD_S) -> None:
        if not threshold > 0:
            raise ValueError(f"threshold must be > 0, got {threshold}")
        self.threshold = threshold
        self.hold_s = hold_s
        self._sensors: dict[str, _Baseline] = {}
        self.last_score: float | None = None  # the latest message's score after a warm-up (benchmarks read it)
        self.rebases = 0  # changes that lasted REBASE_S and became the new baseline

    def observe(self, sensor: str, samples: np.ndarray, now_s: float, *, suspect: bool = False) -> float | None:
        """The score of a message that is a mark (> threshold), else None; ``suspect``: the queue's view."""
        found = features(samples)
        if found is None:
            return None
        base = self._sensors.get(sensor)
        if base is None:
            base = self._sensors[sensor] = _Baseline()
        if base.count < WARMUP_MESSAGES:
            _welford(base, found)
            return None
        (rms, kurtosis), mean, var = found, base.mean, base.var
        diff_rms, diff_kurtosis = rms - mean[0], kurtosis - mean[1]
        score = max(
            abs(diff_rms) / max(math.sqrt(var[0]), SPREAD_FLOOR[0]),
            abs(diff_kurtosis) / max(math.sqrt(var[1]), SPREAD_FLOOR[1]),
        )
        self.last_score = score
        held = now_s - base.marked_at < self.hold_s
        if score > self.threshold:
            if not held:
                base.marks_since = now_s
            base.marked_at = now_s
            if now_s - base.marks_since >= REBASE_S:  # a lasting change: learn it anew
                self._sensors[sensor] = _Baseline()
                self.rebases += 1
                logger.info("sensor %s: its signal changed for %.0f s: a new baseline is learnt", sensor, REBASE_S)
                return None
            return score
        if not (held or suspect):  # the exponentially weighted mean and spread learn this message
            mean[0] += ALPHA * diff_rms
            mean[1] += ALPHA * diff_kurtosis
            var[0] = (1.0 - ALPHA) * (var[0] + ALPHA * diff_rms * diff_rms)
            var[1] = (1.0 - ALPHA) * (var[1] + ALPHA * diff_kurtosis * diff_kurtosis)
        return None

    def forget(self, sensor: str) -> None:
        self._sensors.pop(sensor, None)


def _welford(base: _Baseline, found: tuple[float, float]) -> None:
    base.count += 1
    for i, x in enumerate(found):
        diff = x - base.mean[i]
        base.mean[i] += diff / base.count
        base.var[i] += (diff * (x - base.mean[i]) - base.var[i]) / base.count  # population variance


class SourceChange:
    """One source's detector on raw payloads (its format), for the receive process or paho's thread."""

    def __init__(self, fmt: str, threshold: float) -> None:
        self._format = fmt
        self._dtype = _BINARY.get(fmt)  # f32le / i16le: a view of the bytes, without payload_samples' call
        self.detector = ChangeDetector(threshold)

    def check(self, sensor: str, payload: bytes, now_s: float, *, suspect: bool) -> float | None:
        """The mark's score if this message is a change for ``sensor``, else None (never raises on bad input)."""
        dtype = self._dtype
        if dtype is None:
            samples = payload_samples(payload, self._format)
            if samples is None or not samples.size:
                return None
        else:
            count = len(payload) // dtype.itemsize
            if count < MIN_SAMPLES:  # what features() says of it: None, before any numpy call
                return None
            samples = np.frombuffer(payload, dtype=dtype, count=count)
        return self.detector.observe(sensor, samples, now_s, suspect=suspect)
