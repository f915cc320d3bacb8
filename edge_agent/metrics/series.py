"""Per-sensor counter and gauge families that render fast (issue 12: /metrics within 1 s at 3,000 sensors).

The agent creates ~80 series per sensor at zero (alert, problem and error counters by label and
reason), 250,000 at 3,000 sensors; prometheus_client's own ``generate_latest`` builds a sample
object and formats labels and value for each of them on every scrape (3.3 s there). A
:class:`CounterFamily` or :class:`GaugeFamily` has the same ``labels(...).inc()/.set()`` and
``remove(...)`` as prometheus_client's ``Counter``/``Gauge`` and is a collector on the same registry
(``registry.collect()`` and ``get_sample_value`` see it as before), but keeps each child's exposition
line rendered: a scrape re-renders only the children whose value changed since the last one.

Series that start at zero and mostly stay there (a sensor's error, problem and alert counters) are
*declared* (:meth:`_Family.declare`) instead of created: the family keeps, per first label value (the
sensor), one tuple of the other label values, shared by every sensor declared alike, and exports each
such series at 0 until ``labels(...)`` creates its child (~280 B per created series, ~80 of a sensor's
~97 stay at zero: ~23 kB per sensor).

:func:`exposition_parts` writes the text format of a registry (prometheus_client's ``generate_latest``
for its other collectors, then these families' cached lines), a part per family. Counters have no ``_created`` series.
"""

from __future__ import annotations

import math
import threading
import weakref
from collections.abc import Iterator, Sequence

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.utils import floatToGoString

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
        self._declared: dict[str, tuple[tuple[str, ...], ...]] = {}  # first label value -> the others' values
        self._shared: dict[tuple[tuple[str, ...], ...], tuple[tuple[str, ...], ...]] = {}  # one object per set
        self._zero_lines: dict[tuple[str, ...], tuple[str, str]] = {}  # other values -> line around the first
        self._templates: dict[int, tuple[tuple[tuple[str, ...], ...], list[str]]] = {}  # id(set) -> (set, pieces)
        self._zeroed: dict[str, tuple[tuple[str, ...], ...]] = {}  # first -> its declared values without a child
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
                    zeroed = self._zeroed.get(key[0], ())
                    if key[1:] in zeroed:
                        self._set_zeroed(key[0], tuple(rest for rest in zeroed if rest != key[1:]))
        return child

    def declare(self, first: str, others: Sequence[tuple[str, ...]]) -> None:
        """Export the series ``(first, *rest)`` for each ``rest`` of ``others`` at zero, without creating
        their children (``labels(...)`` creates one when its value first changes)."""
        rests = tuple(tuple(str(v) for v in rest) for rest in others)
        if any(len(rest) != len(self.labelnames) - 1 for rest in rests):
            raise ValueError(f"{self.name}: {len(self.labelnames) - 1} label values expected after the first")
        first = str(first)
        with self.lock:
            merged = tuple(dict.fromkeys(self._declared.get(first, ()) + rests))
            self._declared[first] = self._shared.setdefault(merged, merged)
            self._set_zeroed(first, tuple(rest for rest in merged if (first, *rest) not in self._children))

    def _set_zeroed(self, first: str, rests: tuple[tuple[str, ...], ...]) -> None:
        """``first``'s declared series without a child are now ``rests`` (under the lock; one object per set)."""
        self._zeroed[first] = self._shared.setdefault(rests, rests)

    def remove(self, *values: object) -> None:
        """Forget one series, created or declared (``KeyError`` if it was neither, as prometheus_client)."""
        key = tuple(str(v) for v in values)
        with self.lock:
            declared = self._declared.get(key[0], ()) if key else ()
            if key[1:] in declared:
                rests = tuple(rest for rest in declared if rest != key[1:])
                self._declared[key[0]] = self._shared.setdefault(rests, rests)
                self._children.pop(key, None)
                self._set_zeroed(key[0], tuple(rest for rest in self._zeroed[key[0]] if rest != key[1:]))
            else:
                del self._children[key]

    def clear(self) -> None:
        with self.lock:
            self._children.clear()
            self._declared.clear()
            self._shared.clear()
            self._templates.clear()
            self._zeroed.clear()

    def _zero_line(self, rest: tuple[str, ...]) -> tuple[str, str]:
        """The exposition line of a declared series at zero, split where the first label's value goes."""
        found = self._zero_lines.get(rest)
        if found is None:
            head = self.labelnames[0]
            named = sorted(zip(self.labelnames[1:], rest, strict=True))  # prometheus_client's order
            before = "".join(f'{n}="{_escape_label(v)}",' for n, v in named if n < head)
            after = "".join(f',{n}="{_escape_label(v)}"' for n, v in named if n > head)
            found = self._zero_lines[rest] = (f'{self._sample_name}{{{before}{head}="', f'"{after}}} {_ZERO}')
        return found

    def _template(self, rests: tuple[tuple[str, ...], ...]) -> list[str]:
        """The zero lines of a set of declared series, split where the first label's value goes: a sensor's
        lines are ``value.join(pieces)``, one call (the set is shared by every sensor declared alike)."""
        found = self._templates.get(id(rests))
        if found is None or found[0] is not rests:
            pieces, tail = [], ""
            for rest in rests:
                left, right = self._zero_line(rest)
                pieces.append(tail + left)
                tail = right
            found = self._templates[id(rests)] = (rests, [*pieces, tail])
        return found[1]

    def describe(self) -> list[Metric]:
        return [self._metric()]

    def _metric(self) -> CounterMetricFamily | GaugeMetricFamily:
        raise NotImplementedError

    def collect(self) -> Iterator[Metric]:
        if _RENDERING.active:  # exposition() writes this family itself
            return
        metric = self._metric()
        with self.lock:
            children, zeroed = dict(self._children), list(self._zeroed.items())
        for key, child in children.items():
            metric.add_metric(list(key), child.get())
        for first, rests in zeroed:
            for rest in rests:
                metric.add_metric([first, *rest], 0.0)
        yield metric

    def expose(self) -> str:
        """This family in the text exposition format (0.0.4); a sensor's declared series at zero from its set's
        template (at 900 sensors 72,000 of 87,000 lines: line by line, three quarters of a scrape's CPU)."""
        with self.lock:
            children, zeroed = list(self._children.values()), list(self._zeroed.items())
        lines = [self._header]
        lines.extend([child.line() for child in children])
        lines.extend([_escape_label(first).join(self._template(rests)) for first, rests in zeroed if rests])
        return "".join(lines)


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


def exposition_parts(registry: CollectorRegistry) -> list[bytes]:
    """``registry`` in the text format, a part per family (the other collectors first, by prometheus_client).

    The exporter writes the parts one after the other: a scrape holds its text once, encoded, and not
    also as one joined ``str`` and its encoded copy. Joined, a scrape at 200 sensors left ~3.3 MiB of
    free memory in the scrape thread's malloc arena (kept for the next scrape), in parts ~1.6 MiB."""
    with _FAMILIES_LOCK:
        families = list(_FAMILIES.get(registry, ()))
    _RENDERING.active = True
    try:
        parts = [generate_latest(registry)]
    finally:
        _RENDERING.active = False
    parts.extend(family.expose().encode() for family in families)
    return parts


def exposition(registry: CollectorRegistry) -> bytes:
    """``registry`` in the text format, in one piece (:func:`exposition_parts` joined)."""
    return b"".join(exposition_parts(registry))
