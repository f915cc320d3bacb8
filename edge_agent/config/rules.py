"""Single-field rules declared next to the field: bounds, choices and whether a reload applies the key live.

``setting(default, ge=0, live=True)`` is a ``dataclasses.field`` whose metadata holds a :class:`Rule`
and the ``live`` flag. The loader (``edge_agent.configload``) checks every rule while reading the file,
``section_errors`` checks a built section with the same rules (the decision engine uses it), and the
reload planner (``edge_agent.service.reload``) reads ``live_keys`` from the same declaration.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

RULE = "edge_agent.rule"
LIVE = "edge_agent.live"
TOPIC_LEVEL_RULE = "must be non-empty without '/', '+' or '#' (it is an MQTT topic level)"
MAX_SENSOR_ID_CHARS = 128  # keeps every topic the agent publishes for a sensor far below MQTT's 65,535 bytes
SENSOR_ID_RULE = (
    f"a sensor id is one MQTT topic level of at most {MAX_SENSOR_ID_CHARS} characters: non-empty, "
    "without '/', '+', '#' or control characters"
)


def topic_level(text: str) -> bool:
    """One MQTT topic level: non-empty, no '/', wildcard or NUL."""
    return bool(text) and not any(c in text for c in "/+#\0")


def sensor_id(text: str) -> bool:
    """A sensor id the agent can publish under (``<prefix>/<agent>/<sensor>/alert``, its state, its metrics)."""
    return topic_level(text) and len(text) <= MAX_SENSOR_ID_CHARS and text.isprintable()


def _number(value: float) -> str:
    return f"{value:g}"


@dataclass(frozen=True)
class Rule:
    """What one field allows; ``text`` is the ``what is allowed`` part of an error line."""

    gt: float | None = None
    ge: float | None = None
    lt: float | None = None
    le: float | None = None
    choices: tuple[Any, ...] = ()
    not_value: Any = None  # a single refused value (``scale`` must not be 0)
    note: str = ""  # appended to the generated text, e.g. " (QoS 2 stalls under load)"
    allowed: str = ""  # the whole text, replacing the generated one
    valid: Callable[[Any], bool] | None = None  # a predicate instead of bounds (needs ``allowed``)

    def allows(self, value: Any) -> bool:
        if self.valid is not None:
            return self.valid(value)
        if value is None:  # an optional field left unset (``hop_samples``)
            return True
        if self.choices:
            return value in self.choices
        if self.not_value is not None:
            return bool(value != self.not_value)
        if isinstance(value, float) and not math.isfinite(value):
            return False
        checks: list[tuple[float | None, Callable[[float, float], bool]]] = [
            (self.gt, lambda v, b: v > b),
            (self.ge, lambda v, b: v >= b),
            (self.lt, lambda v, b: v < b),
            (self.le, lambda v, b: v <= b),
        ]
        return all(bound is None or test(value, bound) for bound, test in checks)

    @property
    def reason(self) -> str:
        refused = self.choices or self.not_value is not None or self.valid is not None
        return "is not allowed" if refused else "is out of range"

    @property
    def text(self) -> str:
        if self.allowed:
            return self.allowed
        if self.choices:
            return f"choose one of {', '.join(str(c) for c in self.choices)}{self.note}"
        if self.not_value is not None:
            return f"must not be {self.not_value}{self.note}"
        parts = [
            f"{sign} {_number(bound)}"
            for sign, bound in ((">", self.gt), (">=", self.ge), ("<", self.lt), ("<=", self.le))
            if bound is not None
        ]
        return f"must be {' and '.join(parts)}{self.note}"


def setting(default: Any = dataclasses.MISSING, *, live: bool = False, **rule: Any) -> Any:
    """A dataclass field with its rule (``gt``, ``ge``, ``lt``, ``le``, ``choices``, ...) and ``live`` flag."""
    metadata = {LIVE: live, RULE: Rule(**rule) if rule else None}
    return dataclasses.field(default=default, metadata=metadata)


def rule_of(spec: dataclasses.Field[Any]) -> Rule | None:
    return spec.metadata.get(RULE)


def live_keys(cls: type) -> tuple[str, ...]:
    """The keys of a section that a reload applies while running (declared ``live=True``)."""
    return tuple(spec.name for spec in dataclasses.fields(cls) if spec.metadata.get(LIVE, False))


def section_errors(section: Any, prefix: str) -> list[str]:
    """The declared rules a built section breaks, one ``<prefix>.<key>: <value> ...; <allowed>`` line each."""
    errors = []
    for spec in dataclasses.fields(section):
        rule = rule_of(spec)
        value = getattr(section, spec.name)
        if rule is not None and not rule.allows(value):
            errors.append(f"{prefix}.{spec.name}: {value!r} {rule.reason}; {rule.text}")
    return errors
