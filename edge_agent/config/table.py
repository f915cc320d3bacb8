"""One TOML table on its way to a frozen section: typed values, every error as ``<dotted key>: <value> ...; <allowed>``.

The helpers here are shared by the section checks (:mod:`edge_agent.config.checks`) and the checks each
source type owns (``edge_agent.sources``): a check reads ``table.values`` and calls ``table.fail``.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any, get_type_hints

from edge_agent.common.paths import (
    CREDENTIALS_ENV,
    CREDENTIALS_PLACEHOLDER,
    DATA_ENV,
    DATA_PLACEHOLDER,
    credentials_dir,
    data_root,
)
from edge_agent.config.rules import SENSOR_ID_RULE, rule_of, sensor_id

EXPECTED = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
_PLACEHOLDER_RE = re.compile(r"\$\{([^}]*)\}")


class ConfigError(ValueError):
    """Every problem of one configuration; ``str`` lists them one per line."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = list(errors)
        super().__init__("\n".join(self.errors))


def show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


@dataclass
class Table:
    """Typed values so far and the keys that failed; ``prefix`` is the dotted path (``sources[0]``)."""

    prefix: str
    raw: dict[str, Any]
    errors: list[str]
    values: dict[str, Any] = field(default_factory=dict)
    bad: set[str] = field(default_factory=set)

    def key(self, name: str) -> str:
        return f"{self.prefix}.{name}"

    def ok(self, *names: str) -> bool:
        return not self.bad.intersection(names)

    def shown(self, name: str) -> str:
        """The value as written (``30``, not ``30.0``), else the default."""
        return show(self.raw[name] if name in self.raw else self.values[name])

    def fail(self, name: str, reason: str, allowed: str) -> None:
        self.bad.add(name)
        shown = f"{show(self.raw[name])} {reason}" if name in self.raw else "missing"
        self.errors.append(f"{self.key(name)}: {shown}; {allowed}")

    def check(self, name: str, good: Callable[[Any], bool], allowed: str, reason: str = "is out of range") -> None:
        if self.ok(name) and not good(self.values[name]):
            self.fail(name, reason, allowed)


@functools.cache
def hints(cls: type) -> dict[str, Any]:
    return get_type_hints(cls)


def _scalar(value: Any, kind: type) -> tuple[bool, Any]:
    if kind is bool or isinstance(value, bool):
        return kind is bool and isinstance(value, bool), value
    if kind is float and isinstance(value, int | float):
        return math.isfinite(value), float(value)
    return isinstance(value, kind), value


def _convert(table: Table, name: str, hint: Any) -> None:
    value = table.raw[name]
    if hint == tuple[str, ...]:
        if not isinstance(value, list):
            table.fail(name, "has the wrong type", "expected a list of strings")
            return
        for index, item in enumerate(value):
            if not isinstance(item, str):
                table.bad.add(name)
                table.errors.append(f"{table.key(name)}[{index}]: {show(item)} has the wrong type; expected a string")
        table.values[name] = tuple(value)
        return
    kind = int if hint == int | None else hint
    good, converted = _scalar(value, kind)
    if good:
        table.values[name] = converted
    elif kind is float and isinstance(value, float):
        table.fail(name, "is not allowed", "expected a finite number")
    else:
        table.fail(name, "has the wrong type", f"expected {EXPECTED[kind]}")


def unknown_key(prefix: str, name: str, allowed: Iterable[str], elsewhere: dict[str, str] | None = None) -> str:
    """``elsewhere``: keys of other kinds (key -> whose), suggested with their owner when closest."""
    # The value is never shown: an unknown key may hold a secret (e.g. mqtt.password).
    allowed = sorted(allowed)
    close = difflib.get_close_matches(name, allowed, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    other = difflib.get_close_matches(name, [*allowed, *(elsewhere or {})], n=1)
    if other and other[0] not in allowed and elsewhere:
        hint = f" (did you mean {other[0]!r}? a key of {elsewhere[other[0]]})"
    if name == "password" and prefix == "mqtt":
        hint = " (the password comes from password_env or password_file, never from this file)"
    key = f"{prefix}.{name}" if prefix else name
    return f"{key}: unknown key{hint}; allowed keys: {', '.join(allowed)}"


def read_table(
    cls: type,
    raw: Any,
    prefix: str,
    errors: list[str],
    *,
    what: str,
    required: dict[str, str] | None = None,
    rules: bool = True,
) -> Table | None:
    """``raw`` converted field by field to ``cls``'s types, then its declared rules checked; None if not a table.

    ``required`` gives the text for a missing required key (default: its type). Keys outside ``cls`` are
    reported as unknown; a caller that knows better removes them from ``raw`` first. ``rules=False``
    leaves the declared rules to the caller (``check_rules``).
    """
    if not isinstance(raw, dict):
        errors.append(f"{prefix}: {show(raw)} has the wrong type; expected {what}")
        return None
    types = hints(cls)
    table = Table(prefix, raw, errors)
    errors.extend(unknown_key(prefix, name, types) for name in raw if name not in types)
    for spec in fields(cls):
        if spec.name in raw:
            _convert(table, spec.name, types[spec.name])
        elif spec.default is not MISSING:
            table.values[spec.name] = spec.default
        else:
            text = (required or {}).get(
                spec.name
            ) or f"required ({EXPECTED.get(types[spec.name], 'a list of strings')})"
            table.fail(spec.name, "", text)
    if rules:
        check_rules(table, cls)
    return table


def check_rules(table: Table, cls: type, *, inherited: bool = True) -> None:
    """The rules declared on ``cls``'s fields (``edge_agent.config.rules.setting``), in field order.

    ``inherited=False``: only the fields ``cls`` adds to its base (a source type's own keys).
    """
    base = {spec.name for parent in cls.__mro__[1:2] if dataclasses.is_dataclass(parent) for spec in fields(parent)}
    for spec in dataclasses.fields(cls):
        if not inherited and spec.name in base:
            continue
        rule = rule_of(spec)
        if rule is not None and spec.name in table.values:
            table.check(spec.name, rule.allows, rule.text, reason=rule.reason)


def required(table: Table, name: str, allowed: str) -> None:
    table.check(name, bool, allowed, reason="is not allowed")


def topic_filter(text: str) -> bool:
    """MQTT filter rules: no NUL, ``+`` fills a whole level, ``#`` only as the whole last level."""
    levels = text.split("/")
    wild_ok = all(level in ("+", "#") or not any(c in level for c in "+#") for level in levels)
    return bool(text) and "\0" not in text and wild_ok and "#" not in levels[:-1]


def resolve_path(table: Table, name: str, base_dir: Path, *, credential: bool = False) -> None:
    """Expand ``${EDGE_AGENT_DATA}`` and make a relative path absolute against the config file's folder.

    ``credential``: a secret's file (password, TLS key), which may also use ``${CREDENTIALS_DIRECTORY}``,
    set by systemd for a unit with ``LoadCredential=``; it is never defaulted (unset is an error).
    """
    if not table.ok(name) or not table.values[name]:
        return
    text = table.values[name]
    known = (DATA_ENV, CREDENTIALS_ENV) if credential else (DATA_ENV,)
    if any(found not in known for found in _PLACEHOLDER_RE.findall(text)):
        allowed = (
            f"only {DATA_PLACEHOLDER} and {CREDENTIALS_PLACEHOLDER} are"
            if credential
            else f"only {DATA_PLACEHOLDER} is"
        )
        table.fail(name, "has an unknown placeholder", f"{allowed} supported")
        return
    if CREDENTIALS_PLACEHOLDER in text:
        credentials = credentials_dir()
        if credentials is None:
            why = f"${CREDENTIALS_ENV} is not set (systemd sets it for a unit with LoadCredential=)"
            table.fail(name, f"uses {CREDENTIALS_PLACEHOLDER}", why)
            return
        text = text.replace(CREDENTIALS_PLACEHOLDER, str(credentials))
    path = Path(text.replace(DATA_PLACEHOLDER, str(data_root())))
    table.values[name] = str(path if path.is_absolute() else base_dir / path)


@dataclass(frozen=True)
class SourceContext:
    """What a source type's check needs besides its table: the config file's folder, whether ``[mqtt]`` is on."""

    base_dir: Path
    mqtt_enabled: bool


@dataclass(frozen=True)
class Inspection:
    """What a source type finds before start (its ``inspect``): problems, each with its dotted key, the input
    rate and the length of the shortest recording it will play (None: not known before start)."""

    errors: tuple[str, ...] = ()
    rate_hz: float | None = None
    shortest_samples: int | None = None  # at rate_hz, after start_fraction


def check_sensor(table: Table, what: str) -> None:
    """``sensor``: one MQTT topic level, required (``what``: e.g. 'the sensor id they play as')."""
    table.check("sensor", lambda v: not v or sensor_id(v), SENSOR_ID_RULE, reason="is not allowed")
    required(table, "sensor", what)
