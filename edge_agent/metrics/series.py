"""Per-sensor counter and gauge families that render fast (issue 12: /metrics within 1 s at 3,000 sensors).

The agent creates ~80 series per sensor at zero (alert, problem and error counters by label and
reason), 250,000 at 3,000 sensors; prometheus_client's own ``generate_latest`` builds a sample
object and formats labels and value for each of them on every scrape (3.3 s there). A
:class:`CounterFamily` or :class:`GaugeFamily` has the same ``labels(...).inc()/.set()`` and
``remove(...)`` as prometheus_client's ``Counter``/``Gauge`` and is a collector on the same registry
(``registry.collect()`` and ``get_sample_value`` see it as before), but keeps each child's exposition
line rendered: a scrape re-renders only the children whose value changed since the last one.

:func:`exposition` writes the text format of a registry (prometheus_client's ``generate_latest``
for its other collectors, then these families' cached lines). Counters have no ``_created`` series.
"""

from __future__ import annotations

import logging
import math
import threading
import weakref
from collections.abc import Iterator, Sequence

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.utils import floatToGoString

logger = logging.getLogger(__name__)

_FAMILIES: weakref.WeakKeyDictionary[CollectorRegistry, list[_Family]] = weakref.WeakKeyDictionary()
_FAMILIES_LOCK = threading.Lock()


class _Rendering(threading.local):
    """True on a thread while :func:`exposition` renders the other collectors (the families add their own lines)."""

    active = False


_RENDERING = _Rendering()


def _escape_label(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


_ZERO = "0.0\n"  # floatToGoString(0.0): most children never leave zero (errors, alerts by reason)


class _Child:
    """One labelled series: its value and its last rendered exposition line, kept only for a value other
    than zero: ~80 of a sensor's series stay at zero, and a cached line each cost ~3 MB at 200 sensors."""

    __slots__ = ("_family", "_line", "_prefix", "_value")

    def __init__(self, family: _Family, prefix: str) -> None:
        self._family = family
        self._prefix = prefix  # 'name{a="x",b="y"} '
        self._value = 0.0
        self._line: tuple[float, str] | None = None  # (the value object rendered, its line); None at zero

    def get(self) -> float:
        return self._value

    def line(self) -> str:
        value = self._value
        cached = self._line
        if cached is not None and cached[0] is value:
            return cached[1]
        if value == 0.0 and math.copysign(1.0, value) > 0.0:  # not -0.0, which renders as "-0.0"
            self._line = None
            return self._prefix + _ZERO
        text = f"{self._prefix}{floatToGoString(value)}\n"
        self._line = (value, text)
        return text


class CounterChild(_Child):
    __slots__ = ()

    def inc(self, amount: float = 1.0) -> None:
        if amount < 0:
            raise ValueError("counters can only be incremented by non-negative amounts")
        with self._family.lock:
            self._value += amount


class GaugeChild(_Child):
    __slots__ = ()

    def set(self, value: float) -> None:
        self._value = float(value)

    def inc(self, amount: float = 1.0) -> None:
        with self._family.lock:
            self._value += amount

    def dec(self, amount: float = 1.0) -> None:
        self.inc(-amount)


class _Family:
    """A labelled family on ``registry``; its children are created by :meth:`labels`, at zero."""

    kind = ""
    suffix = ""

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str], *, registry: CollectorRegistry):
        if self.suffix and name.endswith(self.suffix):
            name = name[: -len(self.suffix)]
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self.lock = threading.Lock()
        self._children: dict[tuple[str, ...], _Child] = {}
        sample = name + self.suffix
        doc = documentation.replace("\\", r"\\").replace("\n", r"\n")
        self._header = f"# HELP {sample} {doc}\n# TYPE {sample} {self.kind}\n"
        self._sample_name = sample
        registry.register(self)
        with _FAMILIES_LOCK:
            _FAMILIES.setdefault(registry, []).append(self)

    def _child(self, prefix: str) -> _Child:
        raise NotImplementedError

    def _get(self, values: tuple[object, ...]) -> _Child:
        if len(values) != len(self.labelnames):
            raise ValueError(f"{self.name}: {len(self.labelnames)} label values expected, got {len(values)}")
        key = tuple(str(v) for v in values)
        child = self._children.get(key)
        if child is None:
            with self.lock:
                child = self._children.get(key)
                if child is None:
                    named = sorted(zip(self.labelnames, key, strict=True))  # prometheus_client's order
                    pairs = ",".join(f'{n}="{_escape_label(v)}"' for n, v in named)
                    child = self._children[key] = self._child(f"{self._sample_name}{{{pairs}}} ")
        return child

    def remove(self, *values: object) -> None:
        """Forget one child (``KeyError`` if it was never created, as prometheus_client)."""
        with self.lock:
            del self._children[tuple(str(v) for v in values)]

    def clear(self) -> None:
        with self.lock:
            self._children.clear()

    def describe(self) -> list[Metric]:
        return [self._metric()]

    def _metric(self) -> CounterMetricFamily | GaugeMetricFamily:
        raise NotImplementedError

    def collect(self) -> Iterator[Metric]:
        if _RENDERING.active:  # exposition() writes this family itself
            return
        metric = self._metric()
        with self.lock:
            children = list(self._children.items())
        for key, child in children:
            metric.add_metric(list(key), child.get())
        yield metric

    def expose(self) -> str:
        """This family in the text exposition format (0.0.4)."""
        with self.lock:
            children = list(self._children.values())
        return self._header + "".join([child.line() for child in children])


class CounterFamily(_Family):
    """A labelled counter (``name_total``), as ``prometheus_client.Counter(name, doc, labelnames)``."""

    kind = "counter"
    suffix = "_total"

    def labels(self, *values: object) -> CounterChild:
        child = self._get(values)
        assert isinstance(child, CounterChild)
        return child

    def _child(self, prefix: str) -> _Child:
        return CounterChild(self, prefix)

    def _metric(self) -> CounterMetricFamily:
        return CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)


class GaugeFamily(_Family):
    """A labelled gauge, as ``prometheus_client.Gauge(name, doc, labelnames)``."""

    kind = "gauge"

    def labels(self, *values: object) -> GaugeChild:
        child = self._get(values)
        assert isinstance(child, GaugeChild)
        return child

    def _child(self, prefix: str) -> _Child:
        return GaugeChild(self, prefix)

    def _metric(self) -> GaugeMetricFamily:
        return GaugeMetricFamily(self.name, self.documentation, labels=self.labelnames)


def exposition(registry: CollectorRegistry) -> bytes:
    """``registry`` in the text format: its other collectors by prometheus_client, then the families' cached lines."""
    with _FAMILIES_LOCK:
        families = list(_FAMILIES.get(registry, ()))
    _RENDERING.active = True
    try:
        head = generate_latest(registry)
    finally:
        _RENDERING.active = False
    return head + "".join([family.expose() for family in families]).encode()
