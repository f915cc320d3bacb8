"""Stream supervision: per sensor, say when data arrives but cannot be analysed, and why.

The router feeds one :class:`StreamSupervisor` per source once per chunk (:meth:`~StreamSupervisor.observe`, after the
windowing, with the number of windows the chunk completed), once per rejected payload of an admitted sensor
(:meth:`~StreamSupervisor.rejected`) and once per stream gap (:meth:`~StreamSupervisor.gap`). A gap after messages the
agent shed (overload, :meth:`~StreamSupervisor.after_shed`) is the agent's doing: not logged, and the arrival rate and
the signal without a window are measured afresh. No per-sample Python: a few comparisons and a deque entry per chunk.

Problems (:data:`edge_agent.metrics.streams.STREAM_PROBLEM_REASONS`), each a 0/1 gauge
``edge_agent_stream_problem{sensor,reason}``, a counter of onsets and one WARNING naming the sensor, the field and the
likely cause (rate-limited per (sensor, reason), with the count suppressed); the end of a problem is logged at INFO.

- ``ts_unit``: ``ts`` divided by 1e3, 1e6 or 1e9 is within a day of the agent's clock (ms, µs, ns);
- ``clock_offset``: ``ts`` (seconds) plus the chunk's duration (its last sample's time) is more than
  ``streams.clock_offset_max_s`` from the agent's clock at arrival;
- ``seq_samples``: ``seq`` advanced by the previous chunk's sample count instead of 1 (every chunk a gap);
- ``rate_mismatch``: samples arrived over the last ``streams.rate_interval_s`` at a rate that differs from
  the declared one (``sample_rate_hz`` of the payload or the source) by more than ``streams.rate_tolerance``;
- ``all_rejected``: the last :data:`ALL_REJECTED_MIN` payloads of the sensor were all rejected;
- ``no_windows``: more signal than a window's duration beyond the longest expected wait (the longer of
  window and hop) arrived since the last window (or the first sample), and no window was cut.

``ts`` and arrival-rate checks apply to real-time sources only (not a replay faster than real time) and
the ``ts`` checks only to chunks whose ``t0`` the sender gave (``Chunk.t0_estimated`` False).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from edge_agent.common.ratelimit import RateLimitedLog
from edge_agent.config import StreamsSection
from edge_agent.metrics.streams import STREAM_PROBLEM_REASONS, StreamMetrics
from edge_agent.types import Chunk

logger = logging.getLogger(__name__)

ALL_REJECTED_MIN = 5  # consecutive rejected payloads (none accepted in between): one bad message is no pattern
UNIT_MATCH_S = 86_400.0  # ts / 1e3 (1e6, 1e9) within a day of the agent's clock: ts is in ms (µs, ns)
UNITS = ((1e3, "milliseconds"), (1e6, "microseconds"), (1e9, "nanoseconds"))


@dataclass(frozen=True)
class StreamSpec:
    """What the router knows of one source: its name, payload format, whether it runs in real time, its models."""

    source: str
    fmt: str
    real_time: bool
    window_s: float  # the longest window of the source's models
    hop_s: float  # the longest hop
    model_rates_hz: Mapping[str, float] = field(default_factory=dict)


@dataclass
class _Sensor:
    problems: dict[str, bool] = field(default_factory=dict)
    rejected_run: int = 0
    last_reason: str = ""
    rate_hz: float = 0.0  # declared rate of the last accepted chunk (0: none yet)
    last_seq: int | None = None
    last_n: int = 0
    arrivals: deque[tuple[float, int]] = field(default_factory=deque)
    arrived_samples: int = 0  # samples in ``arrivals`` after its first entry
    since_window_s: float = 0.0  # seconds of signal accepted since the last window
    gaps: int = 0
    last_gap: str = ""
    after_shed: bool = False  # messages of it were shed (overload) since its last accepted chunk


class StreamSupervisor:
    """The supervision of one source's sensors (the source's thread calls it; not shared between sources)."""

    def __init__(
        self,
        spec: StreamSpec,
        metrics: StreamMetrics,
        settings: StreamsSection,
        *,
        wall_clock: Callable[[], float] = time.time,
        clock: Callable[[], float] = time.monotonic,
        log_interval_s: float = 60.0,
    ) -> None:
        self.spec = spec
        self._metrics = metrics
        self._settings = settings
        self._wall_clock = wall_clock
        self._sensors: dict[str, _Sensor] = {}
        self.active: set[tuple[str, str]] = set()  # (sensor, reason) on now; read by the supervisor's tick
        self._log = RateLimitedLog(logger, log_interval_s, clock)
        self._no_windows_s = max(spec.window_s, spec.hop_s) + spec.window_s

    def problems(self, sensor: str) -> set[str]:
        """The problems active now for ``sensor``."""
        state = self._sensors.get(sensor)
        return set() if state is None else {reason for reason, on in state.problems.items() if on}

    def rejected(self, sensor: str, reason: str) -> None:
        """A payload of admitted ``sensor`` was rejected (``reason``: a payload error reason)."""
        state = self._state(sensor)
        self._metrics.payload_errors.labels(sensor, reason).inc()
        state.rejected_run += 1
        state.last_reason = reason
        if state.rejected_run >= ALL_REJECTED_MIN:
            self._set(
                sensor,
                "all_rejected",
                True,
                "sensor %s (source %s): its last %d payloads were all rejected (last reason: %s), "
                "nothing of it is analysed; see edge_agent_sensor_payload_errors_total and the rejections logged",
                sensor,
                self.spec.source,
                state.rejected_run,
                reason,
            )

    def gap(self, sensor: str, cause: str) -> None:
        """The windowing reset ``sensor``'s stream (``cause``: what did not follow); logged rate-limited."""
        state = self._state(sensor)
        state.gaps += 1
        state.last_gap = f"messages shed under overload ({cause})" if state.after_shed else cause
        if not state.after_shed:  # else the agent shed the messages in between: counted as shed, not logged here
            self._log.log(
                logging.INFO, (sensor, "gap"), "sensor %s: stream gap (%s), window buffer reset", sensor, cause
            )

    def after_shed(self, sensor: str) -> None:
        """Messages of ``sensor`` were shed (overload): its next chunk may jump, and its arrival rate is not its own."""
        self._state(sensor).after_shed = True

    def observe(self, chunk: Chunk, windows: int) -> None:
        """An accepted chunk of ``chunk.sensor`` that completed ``windows`` windows."""
        sensor, n, rate = chunk.sensor, chunk.n_samples, chunk.sample_rate_hz
        state = self._sensors.get(sensor)
        first = state is None or state.rate_hz == 0.0
        state = self._state(sensor)
        if first or rate != state.rate_hz:
            self._describe(chunk, first)
        if first or rate != state.rate_hz or state.after_shed:  # after shed messages: not the sender's rate ...
            state.arrivals.clear()
        if state.after_shed:  # ... nor its fault that no window was cut of what came before them
            state.since_window_s = 0.0
        state.rate_hz, state.after_shed = rate, False
        if state.rejected_run:
            state.rejected_run = 0
            self._set(sensor, "all_rejected", False)
        if chunk.seq is not None:
            self._check_seq(state, sensor, chunk.seq)
        state.last_seq, state.last_n = chunk.seq, n
        if self.spec.real_time:
            if not chunk.t0_estimated:
                self._check_ts(sensor, chunk.t0, n / rate)
            self._check_rate(state, sensor, chunk.received_at, n, rate)
        state.since_window_s = 0.0 if windows else state.since_window_s + n / rate
        self._check_windows(state, sensor)

    # ------------------------------------------------------------------ checks

    def _check_seq(self, state: _Sensor, sensor: str, seq: int) -> None:
        if state.last_seq is None:
            return
        step = seq - state.last_seq
        if step == 1:
            self._set(sensor, "seq_samples", False)
        elif step == state.last_n and step > 1:
            self._set(
                sensor,
                "seq_samples",
                True,
                "sensor %s (source %s): field seq advances by %d, the previous chunk's sample count, instead of 1 "
                'per message: every chunk counts as a gap; send a message counter or set seq_counts = "samples"',
                sensor,
                self.spec.source,
                step,
            )

    def _check_ts(self, sensor: str, ts: float, duration_s: float) -> None:
        now = self._wall_clock()
        offset_s = ts + duration_s - now  # the chunk's last sample was recorded just before it arrived
        for scale, unit in UNITS:
            if abs(ts / scale - now) <= UNIT_MATCH_S:
                self._set(
                    sensor,
                    "ts_unit",
                    True,
                    "sensor %s (source %s): field ts = %.0f looks like %s since the epoch, not seconds: "
                    "every chunk counts as a gap and no window is cut; send ts in seconds (ts / %.0e)",
                    sensor,
                    self.spec.source,
                    ts,
                    unit,
                    scale,
                )
                self._set(sensor, "clock_offset", False)
                return
        self._set(sensor, "ts_unit", False)
        self._set(
            sensor,
            "clock_offset",
            abs(offset_s) > self._settings.clock_offset_max_s,
            "sensor %s (source %s): field ts (+ the chunk's duration) is %+.0f s from the agent's clock (more than "
            "streams.clock_offset_max_s = %g): the sender's clock is not set (NTP) or ts is not epoch seconds; "
            "alert times will be off",
            sensor,
            self.spec.source,
            offset_s,
            self._settings.clock_offset_max_s,
        )

    def _check_rate(self, state: _Sensor, sensor: str, at: float, n: int, rate: float) -> None:
        interval_s = self._settings.rate_interval_s
        arrivals = state.arrivals
        if arrivals and at - arrivals[-1][0] > interval_s / 2:  # an outage: measure afresh
            arrivals.clear()
        if arrivals:
            state.arrived_samples += n
        else:
            state.arrived_samples = 0
        arrivals.append((at, n))
        while len(arrivals) > 2 and at - arrivals[1][0] >= interval_s:
            arrivals.popleft()
            state.arrived_samples -= arrivals[0][1]
        span_s = at - arrivals[0][0]
        if span_s < interval_s:
            return
        measured_hz = state.arrived_samples / span_s
        tolerance = self._settings.rate_tolerance
        self._set(
            sensor,
            "rate_mismatch",
            abs(measured_hz / rate - 1.0) > tolerance,
            "sensor %s (source %s): samples arrive at %.0f Hz (over %.0f s) but the stream declares sample_rate_hz "
            "= %g (the payload's field or the source's): more than %.0f %% apart, so windows are analysed at the "
            "wrong rate; set the sensor's real rate",
            sensor,
            self.spec.source,
            measured_hz,
            span_s,
            rate,
            100 * tolerance,
        )

    def _check_windows(self, state: _Sensor, sensor: str) -> None:
        stuck = state.since_window_s > self._no_windows_s
        why = f"last gap: {state.last_gap}; {state.gaps} gaps so far" if state.gaps else "no gap seen"
        self._set(
            sensor,
            "no_windows",
            stuck,
            "sensor %s (source %s): %.1f s of signal arrived without a window being cut (a window is %.3f s; %s): "
            "the samples are received but not analysed",
            sensor,
            self.spec.source,
            state.since_window_s,
            self.spec.window_s,
            why,
        )

    # ------------------------------------------------------------------ state

    def _describe(self, chunk: Chunk, first: bool) -> None:
        what = "first samples" if first else "sample rate changed"
        sensor, rate = chunk.sensor, chunk.sample_rate_hz
        logger.info(
            "sensor %s (source %s): %s: %g Hz, %d channel(s), format %s",
            sensor,
            self.spec.source,
            what,
            rate,
            chunk.channels,
            self.spec.fmt,
        )
        for model, model_rate_hz in self.spec.model_rates_hz.items():
            if model_rate_hz != rate:
                logger.info("sensor %s: resampling %g -> %g Hz for model %s", sensor, rate, model_rate_hz, model)

    def _state(self, sensor: str) -> _Sensor:
        state = self._sensors.get(sensor)
        if state is None:
            state = self._sensors[sensor] = _Sensor(problems=dict.fromkeys(STREAM_PROBLEM_REASONS, False))
        return state

    def _set(self, sensor: str, reason: str, active: bool, msg: str = "", *args: object) -> None:
        """Turn ``reason`` on or off for ``sensor``: gauge, onset counter, a WARNING at onset, INFO at the end."""
        problems = self._sensors[sensor].problems
        if problems[reason] == active:
            return
        problems[reason] = active
        (self.active.add if active else self.active.discard)((sensor, reason))
        self._metrics.problem.labels(sensor, reason).set(1 if active else 0)
        if active:
            self._metrics.problems.labels(sensor, reason).inc()
            self._log.warning((sensor, reason), msg + " [%s]", *args, reason)
        else:
            logger.info("sensor %s: stream problem %s is over", sensor, reason)
