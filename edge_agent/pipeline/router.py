"""Chunks -> windows of each model of their source, sensor discovery, and the sensors' metric series.

:class:`SensorSeries` (edge_agent.pipeline.sensor_series, re-exported here) creates a source's and a
sensor's series: configured sensors at start (so a sensor whose payloads are all rejected still has
its series), a sensor a wildcard topic finds when its source admits it (its first message, before
the payload is parsed) or with its first chunk, and the per-label series again when a reload changes
a model's labels or the normal labels.

:func:`make_router` builds the :class:`Router`, the ``emit`` callback of one source (it runs on the source's
thread), which also feeds the source's stream supervision (edge_agent.pipeline.supervision).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from edge_agent.common.ratelimit import RateLimitedLog
from edge_agent.config import SourceSection, StreamsSection
from edge_agent.metrics import AgentMetrics
from edge_agent.modelmeta import ModelMeta
from edge_agent.pipeline.indicator_stage import IndicatorStage
from edge_agent.pipeline.ingress import IngressLimits, ModelShape
from edge_agent.pipeline.sensor_series import SensorSeries
from edge_agent.pipeline.supervision import StreamSpec, StreamSupervisor
from edge_agent.pipeline.windowing import WindowAssembler
from edge_agent.types import Chunk, Window

logger = logging.getLogger(__name__)

__all__ = ["Announce", "Router", "SensorSeries", "Submit", "SuspectMarks", "make_router"]

Submit = Callable[[str, Window], None]  # (model name, window) -> the inference queue


class Room(Protocol):
    """The inference queue's room for a sensor's next windows (edge_agent.pipeline.window_queue)."""

    def room(self, sensor: str) -> int | None: ...

    def count_dropped(self, sensor: str, windows: int) -> None: ...

    def free(self) -> int: ...

    @property
    def capacity(self) -> int: ...


class SuspectMarks(Protocol):
    """The inference queue's suspects, as a source's change detector marks and reads them."""

    def mark(self, sensor: str, hold_s: float, score: float) -> bool: ...

    def is_suspect(self, sensor: str) -> bool: ...

    def suspects(self) -> frozenset[str]: ...


Announce = Callable[[str, tuple[str, ...], bool], None]  # (sensor, models found live, new sensor) -> the sinks


def make_router(
    section: SourceSection,
    metas: Mapping[str, ModelMeta],
    hop_samples: Mapping[str, int | None],
    *,
    metrics: AgentMetrics,
    sensors: SensorSeries,
    submit: Submit,
    announce: Announce,
    streams: StreamsSection | None = None,
    real_time: bool = True,
    indicators: IndicatorStage | None = None,
    shed: Callable[[str], bool] | None = None,
    shed_set: Callable[[], frozenset[str]] | None = None,
    room: Room | None = None,
) -> Router:
    """The ``emit`` of ``section``'s source: chunk -> windows for each of its models -> ``submit``.

    ``hop_samples`` overrides a model's meta hop (``[[models]] hop_samples``; None: the meta's).
    Configured sensors get their series and are announced now; a new sensor when its source admits
    it (:meth:`Router.admit`) or with its first chunk. ``real_time``: the source delivers at the
    signal's own pace (the supervision's clock and arrival-rate checks apply). ``indicators``
    (``[sources.indicators]``) gets the first model's windows once they are queued. ``room``: the
    inference queue's :class:`Room` (a chunk's windows that a full queue would drop are not cut).
    """
    assemblers = {}
    supervisor = StreamSupervisor(
        _spec(section, metas, hop_samples, real_time), metrics.streams, streams or StreamsSection()
    )
    for index, name in enumerate(section.models):
        meta = metas[name]
        hop = hop_samples.get(name) or meta.hop_samples
        # per-sensor sample and gap counts (and the gaps' log) come from the first model's assembler only
        counted = metrics if index == 0 else None
        assemblers[name] = WindowAssembler(
            meta.window_samples,
            hop,
            meta.sample_rate_hz,
            meta.channels,
            metrics=counted,
            on_gap=supervisor.gap if index == 0 else None,
        )
    sensors.add_source(section.name)
    shapes = {
        name: ModelShape(metas[name].sample_rate_hz, metas[name].window_samples, a.hop_samples)
        for name, a in assemblers.items()
    }
    resampler_bytes = metrics.overload.resampler_bytes.labels(section.name)
    resampler_bytes.set(0)
    limits = IngressLimits(shapes, real_time=real_time, on_resampler_bytes=resampler_bytes.set)
    router = Router(
        section,
        assemblers,
        supervisor,
        metrics,
        sensors,
        submit,
        announce,
        indicators,
        limits,
        shed,
        shed_set,
        room,
    )
    for sensor in section.known_sensors:
        new_sensor, _ = sensors.add(sensor, section.models)
        if indicators is not None:
            indicators.init_sensor(sensor)
        if new_sensor:  # the sinks know configured sensors from the configuration
            announce(sensor, (), True)
    return router


def _spec(
    section: SourceSection, metas: Mapping[str, ModelMeta], hops: Mapping[str, int | None], real_time: bool
) -> StreamSpec:
    models = [metas[name] for name in section.models]
    window_s = max((m.window_samples / m.sample_rate_hz for m in models), default=0.0)
    hop_s = max(((hops.get(n) or metas[n].hop_samples) / metas[n].sample_rate_hz for n in section.models), default=0.0)
    rates = {name: metas[name].sample_rate_hz for name in section.models}
    return StreamSpec(section.name, section.stream_format, real_time, window_s, hop_s, rates)


class Router:
    """One source's ``emit`` (its thread): chunks to windows, and what the source knows of its sensors."""

    def __init__(
        self,
        section: SourceSection,
        assemblers: Mapping[str, WindowAssembler],
        supervisor: StreamSupervisor,
        metrics: AgentMetrics,
        sensors: SensorSeries,
        submit: Submit,
        announce: Announce,
        indicators: IndicatorStage | None = None,
        limits: IngressLimits | None = None,
        shed: Callable[[str], bool] | None = None,
        shed_set: Callable[[], frozenset[str]] | None = None,
        room: Room | None = None,
    ) -> None:
        self._room = room  # a full queue keeps this many of a sensor's next windows (None: no limit)
        self._over_share = shed  # the inference queue: is this sensor over its share of a full queue?
        self._over_share_set = shed_set  # the queue: every sensor over its share now
        self._suspects: SuspectMarks | None = None  # the queue's suspects (set by use_suspects)
        self._shed_counts: dict[str, Any] = {}
        self._models = section.models
        self._limits = limits  # rate, ts and length bounds before windowing (edge_agent.pipeline.ingress)
        self._source, self._metrics, self._warn = section.name, metrics, RateLimitedLog(logger)
        self._indicators = indicators  # fed the first model's windows
        self._assemblers = assemblers
        self.supervisor = supervisor
        self._sensors = sensors
        self._submit = submit
        self._announce = announce
        self._known = set(section.known_sensors)
        self._wrong_channels = metrics.payload_errors.labels(section.name, "wrong_channels")
        self._rejections: dict[str, Any] = {}  # ingress reason -> its payload_errors child

    def admit(self, sensor: str) -> None:
        """The source admitted ``sensor`` (before parsing its first payload): its series, the sinks told."""
        if sensor not in self._known:
            self._known.add(sensor)
            new_sensor, added = self._sensors.add(sensor, self._models)
            if self._indicators is not None:
                self._indicators.init_sensor(sensor)
            if new_sensor or added:
                self._announce(sensor, added, new_sensor)

    def shed(self, sensor: str) -> bool:
        """Overload: True if ``sensor``'s next message is to be dropped before it is parsed (counted)."""
        if self._over_share is None or not self._over_share(sensor):
            return False
        self.count_shed(sensor, 1)
        self.supervisor.after_shed(sensor)
        return True

    def shed_set(self) -> frozenset[str]:
        """The sensors whose messages are to be shed now (for a receive process; empty without shedding)."""
        return self._over_share_set() if self._over_share_set is not None else frozenset()

    def window_s(self) -> float:
        """The longest window of the source's models, in seconds."""
        return self.supervisor.spec.window_s

    def hop_s(self) -> float:
        """The longest hop of the source's models, in seconds."""
        return self.supervisor.spec.hop_s

    def queue_room(self) -> tuple[int, int] | None:
        """Hops of sensor stream (one window per model each) the inference queue has room for now, and at most
        (None without a queue: no bound). A receive process sends what this allows (edge_agent.sources.mqtt_gate)."""
        if self._room is None:
            return None
        models = max(1, len(self._assemblers))
        return self._room.free() // models, max(1, self._room.capacity // models)

    def use_suspects(self, suspects: SuspectMarks) -> None:
        """The inference queue whose suspects the source's change detector marks (set before the source starts)."""
        self._suspects = suspects

    def mark(self, sensor: str, hold_s: float, score: float) -> None:
        """The change detector saw ``sensor``'s signal change (``score`` spreads): a suspect for ``hold_s``."""
        if self._suspects is not None:
            self._suspects.mark(sensor, hold_s, score)

    def is_suspect(self, sensor: str) -> bool:
        return self._suspects is not None and self._suspects.is_suspect(sensor)

    def suspects(self) -> frozenset[str]:
        return self._suspects.suspects() if self._suspects is not None else frozenset()

    def after_shed(self, sensor: str) -> None:
        """``sensor``'s next message follows messages of its that were shed (by a receive process)."""
        self.supervisor.after_shed(sensor)

    def count_shed(self, sensor: str, n: int) -> None:
        """``n`` messages of admitted ``sensor`` shed by the source's receive process (counted as shed here)."""
        counter = self._shed_counts.get(sensor)
        if counter is None:
            counter = self._shed_counts[sensor] = self._metrics.overload.messages_shed.labels(self._source, sensor)
        counter.inc(n)

    def rejected(self, sensor: str, reason: str) -> None:
        """The source rejected a payload of admitted ``sensor`` (``reason``: a payload error reason)."""
        self.admit(sensor)
        self.supervisor.rejected(sensor, reason)

    def __call__(self, chunk: Chunk) -> None:
        self.admit(chunk.sensor)  # first samples of a sensor a wildcard topic found (a no-op once known)
        problem = self._limits.check(chunk) if self._limits is not None else None
        if problem is not None:
            reason, why = problem
            counter = self._rejections.get(reason)
            if counter is None:  # one child per reason (a handful), looked up once
                counter = self._rejections[reason] = self._metrics.payload_errors.labels(self._source, reason)
            counter.inc()
            self.supervisor.rejected(chunk.sensor, reason)
            if reason == "bad_ts":  # the supervision still names the likely cause (ts_unit, clock_offset)
                self.supervisor.observe(chunk, 0)
            self._warn.warning(
                (chunk.sensor, reason),
                "source %s: sensor %s: payload rejected (%s): %s",
                self._source,
                chunk.sensor,
                reason,
                why,
            )
            return
        count, refused = 0, 0
        keep = self._room.room(chunk.sensor) if self._room is not None else None
        for name, assembler in self._assemblers.items():
            try:
                windows = assembler.push(chunk, keep)
            except ValueError:  # wrong channel count for this model: counted, chunk skipped
                self._wrong_channels.inc()
                refused += 1
                continue
            if assembler.skipped and self._room is not None:  # cheaper than cutting them for the queue to drop
                self._room.count_dropped(chunk.sensor, assembler.skipped)
            count += len(windows) + assembler.skipped
            for window in windows:
                self._submit(name, window)
            if self._indicators is not None and name == self._models[0]:
                self._indicators.push(chunk.sensor, windows)
        if refused and refused == len(self._assemblers):
            self.supervisor.rejected(chunk.sensor, "wrong_channels")
        else:
            self.supervisor.observe(chunk, count)
