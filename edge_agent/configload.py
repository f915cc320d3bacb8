"""Read ``config.toml`` into the frozen objects of ``edge_agent.config``, reporting every error at once.

Each error is one line ``<dotted key>: <value> <what is wrong>; <what is allowed>``. Relative paths
resolve against the config file's folder; ``${EDGE_AGENT_DATA}`` expands to that environment variable,
else to ``<repo>/../shared/data``. Model files are not opened here (the service acquires them at start
and retries); ``missing_model_files`` reports them for ``edge-agent check-config``.
"""

from __future__ import annotations

import difflib
import functools
import math
import os
import re
import tomllib
from collections.abc import Callable
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any, get_type_hints

from edge_agent.config import (
    AgentConfig,
    AgentSection,
    DecisionSection,
    HomeAssistantSection,
    InferenceSection,
    MetricsSection,
    ModelSection,
    MqttSection,
    SourceSection,
)

DATA_ENV = "EDGE_AGENT_DATA"
DATA_PLACEHOLDER = "${" + DATA_ENV + "}"
DEFAULT_DATA_ROOT = Path(__file__).resolve().parents[1].parent / "shared" / "data"
LOG_LEVELS = ("debug", "info", "warning", "error")
SOURCE_TYPES = ("mqtt", "replay", "soundcard")
FORMATS = ("json", "f32le", "i16le")
BINARY_FORMATS = ("f32le", "i16le")
QOS_LEVELS = (0, 1)  # QoS 2 stalled under sustained load (ENVIRONMENT.md)
REPLAY_SUFFIXES = (".wav", ".npy", ".csv", ".npz")
SOUNDCARD_DTYPES = ("float32", "int16", "int32")
# keys only some source types use (type, name, models, sample_rate_hz, channels, scale: every type)
TYPE_KEYS: dict[str, tuple[str, ...]] = {
    "mqtt": ("topic", "sensor_level", "format", "qos", "sensors", "max_sensors"),
    "replay": ("sensor", "path", "records", "start_fraction", "speed", "loop", "chunk_samples"),
    "soundcard": (
        "sensor",
        "device",
        "dtype",
        "chunk_samples",
        "latency_s",
        "silence_floor_dbfs",
        "silence_after_s",
    ),
}
SECTIONS: dict[str, type] = {
    "agent": AgentSection,
    "mqtt": MqttSection,
    "metrics": MetricsSection,
    "inference": InferenceSection,
    "decision": DecisionSection,
    "homeassistant": HomeAssistantSection,
}
ARRAYS: dict[str, type] = {"models": ModelSection, "sources": SourceSection}
EXPECTED = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
TOPIC_LEVEL_RULE = "must be non-empty without '/', '+' or '#' (it is an MQTT topic level)"
REQUIRED: dict[tuple[type, str], str] = {
    (ModelSection, "path"): "required (a TorchScript model file)",
    (SourceSection, "type"): f"required (one of {', '.join(SOURCE_TYPES)})",
    (SourceSection, "models"): "required (a list of [[models]] names)",
}
_PLACEHOLDER_RE = re.compile(r"\$\{([^}]*)\}")


class ConfigError(ValueError):
    """Every problem of one configuration; ``str`` lists them one per line."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = list(errors)
        super().__init__("\n".join(self.errors))


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


@dataclass
class _Table:
    """One TOML table on its way to a dataclass: typed values so far, the keys that failed."""

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
        return _show(self.raw[name] if name in self.raw else self.values[name])

    def fail(self, name: str, reason: str, allowed: str) -> None:
        self.bad.add(name)
        shown = f"{_show(self.raw[name])} {reason}" if name in self.raw else "missing"
        self.errors.append(f"{self.key(name)}: {shown}; {allowed}")

    def check(self, name: str, good: Callable[[Any], bool], allowed: str, reason: str = "is out of range") -> None:
        if self.ok(name) and not good(self.values[name]):
            self.fail(name, reason, allowed)


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return get_type_hints(cls)


def _scalar(value: Any, kind: type) -> tuple[bool, Any]:
    if kind is bool or isinstance(value, bool):
        return kind is bool and isinstance(value, bool), value
    if kind is float and isinstance(value, int | float):
        return math.isfinite(value), float(value)
    return isinstance(value, kind), value


def _convert(table: _Table, name: str, hint: Any) -> None:
    value = table.raw[name]
    if hint == tuple[str, ...]:
        if not isinstance(value, list):
            table.fail(name, "has the wrong type", "expected a list of strings")
            return
        for index, item in enumerate(value):
            if not isinstance(item, str):
                table.bad.add(name)
                table.errors.append(f"{table.key(name)}[{index}]: {_show(item)} has the wrong type; expected a string")
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


def _required_text(cls: type, name: str, hint: Any) -> str:
    return REQUIRED.get((cls, name)) or f"required ({EXPECTED.get(hint, 'a list of strings')})"


def _unknown_key(prefix: str, name: str, allowed: list[str]) -> str:
    # The value is never shown: an unknown key may hold a secret (e.g. mqtt.password).
    close = difflib.get_close_matches(name, allowed, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    if name == "password" and prefix == "mqtt":
        hint = " (the password comes from password_env or password_file, never from this file)"
    key = f"{prefix}.{name}" if prefix else name
    return f"{key}: unknown key{hint}; allowed keys: {', '.join(sorted(allowed))}"


def _table(cls: type, raw: Any, prefix: str, errors: list[str], *, what: str) -> _Table | None:
    if not isinstance(raw, dict):
        errors.append(f"{prefix}: {_show(raw)} has the wrong type; expected {what}")
        return None
    hints = _hints(cls)
    table = _Table(prefix, raw, errors)
    errors.extend(_unknown_key(prefix, name, list(hints)) for name in raw if name not in hints)
    for spec in fields(cls):
        if spec.name in raw:
            _convert(table, spec.name, hints[spec.name])
        elif spec.default is not MISSING:
            table.values[spec.name] = spec.default
        else:
            table.fail(spec.name, "", _required_text(cls, spec.name, hints[spec.name]))
    return table


def _array(cls: type, raw: Any, name: str, errors: list[str], check: Callable[[_Table], None]) -> list[_Table]:
    """The tables of a ``[[name]]`` array, each checked right after it is read (errors in file order)."""
    if not isinstance(raw, list):
        errors.append(f"{name}: {_show(raw)} has the wrong type; expected an array of tables ([[{name}]])")
        return []
    tables = []
    for index, item in enumerate(raw):
        table = _table(cls, item, f"{name}[{index}]", errors, what="a table")
        if table is not None:
            check(table)
            tables.append(table)
    return tables


# --- field rules -------------------------------------------------------------------------------


def _positive(table: _Table, *names: str) -> None:
    for name in names:
        table.check(name, lambda v: v > 0, "must be > 0")


def _not_negative(table: _Table, *names: str) -> None:
    for name in names:
        table.check(name, lambda v: v >= 0, "must be >= 0")


def _port(table: _Table, name: str) -> None:
    table.check(name, lambda v: 1 <= v <= 65535, "allowed 1 to 65535")


def _choice(table: _Table, name: str, allowed: tuple[Any, ...], note: str = "") -> None:
    text = f"choose one of {', '.join(str(a) for a in allowed)}{note}"
    table.check(name, lambda v: v in allowed, text, reason="is not allowed")


def _required(table: _Table, name: str, allowed: str) -> None:
    table.check(name, bool, allowed, reason="is not allowed")


def _topic_level(text: str) -> bool:
    return bool(text) and not any(c in text for c in "/+#")


def _topic_filter(text: str) -> bool:
    levels = text.split("/")
    wild_ok = all(level in ("+", "#") or not any(c in level for c in "+#") for level in levels)
    return bool(text) and wild_ok and "#" not in levels[:-1]


def data_root() -> Path:
    """``$EDGE_AGENT_DATA`` (relative to the working folder), else ``<repo>/../shared/data``."""
    env = os.environ.get(DATA_ENV)
    return Path(env).absolute() if env else DEFAULT_DATA_ROOT


def _resolve_path(table: _Table, name: str, base_dir: Path) -> None:
    if not table.ok(name) or not table.values[name]:
        return
    text = table.values[name]
    if any(found != DATA_ENV for found in _PLACEHOLDER_RE.findall(text)):
        table.fail(name, "has an unknown placeholder", f"only {DATA_PLACEHOLDER} is supported")
        return
    path = Path(text.replace(DATA_PLACEHOLDER, str(data_root())))
    table.values[name] = str(path if path.is_absolute() else base_dir / path)


# --- sections ----------------------------------------------------------------------------------


def _check_agent(table: _Table, base_dir: Path) -> None:
    table.check("id", _topic_level, TOPIC_LEVEL_RULE, reason="is not allowed")
    _choice(table, "log_level", LOG_LEVELS)
    _resolve_path(table, "state_dir", base_dir)
    folder = "a folder (created if missing) for the agent's state, e.g. the alert outbox"
    table.check("state_dir", lambda v: not v or not Path(v).exists() or Path(v).is_dir(), folder, "is not a folder")


def _check_mqtt(table: _Table, base_dir: Path) -> None:
    _required(table, "host", "a broker host name or address is required")
    _port(table, "port")
    _positive(table, "keepalive_s", "reconnect_min_s", "reconnect_max_s", "alert_queue_max")
    rule = "must be a non-empty topic without '+' or '#'"
    table.check("topic_prefix", lambda v: bool(v) and "+" not in v and "#" not in v, rule, reason="is not allowed")
    if table.ok("reconnect_min_s", "reconnect_max_s"):
        limit = table.values["reconnect_max_s"]
        allowed = f"must be <= mqtt.reconnect_max_s ({table.shown('reconnect_max_s')})"
        table.check("reconnect_min_s", lambda v: v <= limit, allowed)
    _check_password(table, base_dir)
    _check_tls(table, base_dir)


def _check_password(table: _Table, base_dir: Path) -> None:
    _resolve_path(table, "password_file", base_dir)
    if not table.ok("password_env", "password_file"):
        return
    if table.values["password_env"] and table.values["password_file"]:
        table.fail("password_file", "is not allowed together with mqtt.password_env", "set only one of them")
    elif table.ok("username") and not table.values["username"]:
        for name in ("password_env", "password_file"):
            table.check(name, lambda v: not v, "a password needs mqtt.username", reason="is not allowed")


def _check_tls(table: _Table, base_dir: Path) -> None:
    names = ("ca_file", "cert_file", "key_file")
    for name in names:
        _resolve_path(table, name, base_dir)
    if not table.ok("tls", *names):
        return
    if not table.values["tls"]:
        for name in names:
            table.check(
                name, lambda v: not v, "set mqtt.tls = true or remove it", reason="is not used while tls is off"
            )
        return
    for name in names:
        path = table.values[name]
        if path and not Path(path).is_file():
            table.fail(name, "does not exist", f"no file at {path}")
    if not table.values["cert_file"]:
        table.check("key_file", lambda v: not v, "set mqtt.cert_file too", reason="is not allowed without a cert_file")


def _check_inference(table: _Table) -> None:
    _positive(table, "threads", "max_batch", "queue_windows")
    _not_negative(table, "max_wait_s")


def _check_decision(table: _Table) -> None:
    _positive(table, "confirm_k", "confirm_n", "hold_off_s", "max_duration_s")
    _not_negative(table, "cooldown_s")
    table.check("min_confidence", lambda v: 0 < v <= 1, "must be > 0 and <= 1")
    table.check("update_min_delta", lambda v: 0 <= v <= 1, "must be >= 0 and <= 1")
    if table.ok("confirm_k", "confirm_n"):
        n = table.values["confirm_n"]
        table.check("confirm_k", lambda v: v <= n, f"must be <= decision.confirm_n ({table.shown('confirm_n')})")


def _check_model(table: _Table, base_dir: Path) -> None:
    _required(table, "name", "a non-empty name is required")
    _required(table, "path", "a path to a TorchScript model file is required")
    table.check("hop_samples", lambda v: v is None or v > 0, "must be > 0")
    _resolve_path(table, "path", base_dir)


def _check_metrics(table: _Table) -> None:
    _required(table, "listen", "a listen address is required, e.g. '127.0.0.1'")
    _port(table, "port")


def _check_homeassistant(table: _Table) -> None:
    rule = "must be a topic without '+', '#', empty levels or a leading or trailing '/'"
    for name in ("discovery_prefix", "birth_topic"):
        table.check(
            name, lambda v: "+" not in v and "#" not in v and "" not in v.split("/"), rule, reason="is not allowed"
        )


def _check_homeassistant_needs_mqtt(table: _Table | None, mqtt_enabled: bool) -> None:
    if table is not None and not mqtt_enabled:
        allowed = "set mqtt.enabled = true in [mqtt] (discovery goes through the broker)"
        table.check("enabled", lambda v: not v, allowed, reason="is not allowed while mqtt.enabled = false")


# --- sources -----------------------------------------------------------------------------------


def _check_source(table: _Table, base_dir: Path, mqtt_enabled: bool) -> None:
    _choice(table, "type", SOURCE_TYPES)
    _required(table, "name", "a non-empty name is required")
    _required(table, "models", "name at least one [[models]] entry")
    _positive(table, "max_sensors", "channels", "chunk_samples")
    _not_negative(table, "sensor_level", "sample_rate_hz", "speed")
    _choice(table, "format", FORMATS)
    _choice(table, "qos", QOS_LEVELS, note=" (QoS 2 stalls under load)")
    table.check("scale", lambda v: v != 0, "must not be 0", reason="is not allowed")
    table.check("start_fraction", lambda v: 0 <= v < 1, "must be >= 0 and < 1")
    _check_sensor_ids(table)
    if not table.ok("type"):
        return
    kind = table.values["type"]
    _reject_keys_of_other_type(table, kind)
    if kind == "mqtt":
        _check_mqtt_source(table, mqtt_enabled)
    elif kind == "replay":
        _check_replay_source(table, base_dir)
    else:
        _check_soundcard_source(table)


def _check_sensor_ids(table: _Table) -> None:
    table.check("sensor", lambda v: not v or _topic_level(v), TOPIC_LEVEL_RULE, reason="is not allowed")
    if not table.ok("sensors"):
        return
    for index, sensor in enumerate(table.values["sensors"]):
        if not _topic_level(sensor):
            table.bad.add("sensors")
            table.errors.append(f"{table.key('sensors')}[{index}]: {_show(sensor)} is not allowed; {TOPIC_LEVEL_RULE}")


def _reject_keys_of_other_type(table: _Table, kind: str) -> None:
    own = TYPE_KEYS[kind]
    others = [name for other in SOURCE_TYPES for name in TYPE_KEYS[other] if name not in own]
    for name in dict.fromkeys(others):  # each key once, in declaration order
        if name in table.raw and table.ok(name):
            users = " or ".join(repr(t) for t in SOURCE_TYPES if name in TYPE_KEYS[t])
            table.fail(name, f"is not used by {kind} sources", f"remove it or set type = {users}")


def _check_mqtt_source(table: _Table, mqtt_enabled: bool) -> None:
    if not mqtt_enabled:
        table.fail("type", "is not allowed while mqtt.enabled = false", "set mqtt.enabled = true in [mqtt]")
    _required(table, "topic", "mqtt sources need a topic filter, e.g. 'plant/+/vibration'")
    rule = "'+' and '#' must fill a whole level, '#' only the last"
    table.check("topic", _topic_filter, rule, reason="is not a valid topic filter")
    if table.ok("topic", "sensor_level"):
        topic = table.values["topic"]
        levels = topic.split("/")
        top = len(levels) - 1 - (levels[-1] == "#")
        allowed = f"topic {topic!r} has levels 0 to {top}" if top >= 0 else f"topic {topic!r} names no sensor level"
        table.check("sensor_level", lambda v: v <= top, allowed)
    if table.ok("format") and table.values["format"] in BINARY_FORMATS:
        needs = f"format {table.values['format']!r} needs sample_rate_hz > 0"
        table.check("sample_rate_hz", lambda v: v > 0, needs)


def _check_replay_source(table: _Table, base_dir: Path) -> None:
    _required(table, "sensor", "replay sources need the sensor id they play as")
    _required(table, "path", "replay sources need a .wav, .npy, .csv or .npz file")
    _resolve_path(table, "path", base_dir)
    if not table.ok("path"):
        return
    suffix = Path(table.values["path"]).suffix.lower()
    if suffix not in REPLAY_SUFFIXES:
        table.fail("path", "is not allowed", "replay reads .wav, .npy, .csv or .npz files")
        return
    if suffix in (".npy", ".csv"):
        table.check("sample_rate_hz", lambda v: v > 0, f"a {suffix} file needs sample_rate_hz > 0")
    if suffix != ".npz":
        table.check("records", lambda v: not v, "records pick keys of an .npz file", f"is not used for a {suffix} file")


def _check_soundcard_source(table: _Table) -> None:
    _required(table, "sensor", "soundcard sources need the sensor id they capture as")
    _choice(table, "dtype", SOUNDCARD_DTYPES)
    _not_negative(table, "latency_s", "silence_after_s")
    table.check("silence_floor_dbfs", lambda v: v < 0, "must be < 0 (dB below full scale, e.g. -80)")
    rule = "a device name (or a unique part of it) or index, without surrounding spaces"
    table.check("device", lambda v: v == v.strip(), rule, reason="is not allowed")


# --- cross-checks ------------------------------------------------------------------------------


def _unique(tables: list[_Table], name: str, what: str) -> None:
    first: dict[Any, str] = {}
    for table in tables:
        if not table.ok(name) or not table.values[name]:
            continue
        value = table.values[name]
        if value in first:
            table.fail(name, "is a duplicate", f"{what} must be unique (first used by {first[value]})")
        else:
            first[value] = table.prefix


def _unique_soundcard_sensors(sources: list[_Table]) -> None:
    """A soundcard source's sensor may not be another replay or soundcard source's (replay pairs: ``_unique``)."""
    first: dict[Any, _Table] = {}
    for table in sources:
        if not table.ok("type", "sensor") or table.values["type"] not in ("replay", "soundcard"):
            continue
        sensor = table.values["sensor"]
        if not sensor:
            continue
        earlier = first.setdefault(sensor, table)
        if earlier is not table and "soundcard" in (table.values["type"], earlier.values["type"]):
            allowed = f"the sensors of replay and soundcard sources must be unique (first used by {earlier.prefix})"
            table.fail("sensor", "is a duplicate", allowed)


def _check_model_refs(sources: list[_Table], models: list[_Table]) -> None:
    defined = [t.values["name"] for t in models if t.ok("name") and t.values["name"]]
    allowed = f"defined models: {', '.join(defined)}" if defined else "no [[models]] entry is defined"
    for table in sources:
        if not table.ok("models"):
            continue
        for index, name in enumerate(table.values["models"]):
            key = f"{table.key('models')}[{index}]"
            if name not in defined:
                table.errors.append(f"{key}: {_show(name)} is not defined; {allowed}")
            elif name in table.values["models"][:index]:
                table.errors.append(f"{key}: {_show(name)} is a duplicate; name each model once")


def _cross_check(data: dict[str, Any], models: list[_Table], sources: list[_Table], errors: list[str]) -> None:
    raw_models, raw_sources = data.get("models", []), data.get("sources")
    models_valid = isinstance(raw_models, list) and all(isinstance(item, dict) for item in raw_models)
    _unique(models, "name", "model names")
    _unique(sources, "name", "source names")
    replays = [t for t in sources if t.ok("type") and t.values["type"] == "replay"]
    _unique(replays, "sensor", "the sensors of replay sources")
    _unique_soundcard_sensors(sources)
    if models_valid:
        _check_model_refs(sources, models)
    if raw_sources is None:
        errors.append("sources: missing; at least one [[sources]] entry is required")
    elif raw_sources == []:
        errors.append("sources: [] is not allowed; at least one [[sources]] entry is required")


# --- public API --------------------------------------------------------------------------------


def parse_config(data: dict[str, Any], *, base_dir: Path) -> AgentConfig:
    """Validate parsed TOML into an ``AgentConfig``; raise ``ConfigError`` listing every problem."""
    errors: list[str] = []
    allowed = [*SECTIONS, *ARRAYS]
    errors.extend(_unknown_key("", name, allowed) for name in data if name not in allowed)
    checks: dict[str, Callable[[_Table], None]] = {
        "agent": lambda table: _check_agent(table, base_dir),
        "mqtt": lambda table: _check_mqtt(table, base_dir),
        "metrics": _check_metrics,
        "inference": _check_inference,
        "decision": _check_decision,
        "homeassistant": _check_homeassistant,
    }
    sections: dict[str, _Table | None] = {}
    for name, cls in SECTIONS.items():
        sections[name] = table = _table(cls, data.get(name, {}), name, errors, what=f"a table ([{name}])")
        if table is not None:
            checks[name](table)
    mqtt = sections["mqtt"]
    mqtt_enabled = mqtt.values["enabled"] if mqtt is not None and mqtt.ok("enabled") else True
    _check_homeassistant_needs_mqtt(sections["homeassistant"], mqtt_enabled)
    models = _array(
        ModelSection, data.get("models", []), "models", errors, functools.partial(_check_model, base_dir=base_dir)
    )
    check_source = functools.partial(_check_source, base_dir=base_dir, mqtt_enabled=mqtt_enabled)
    sources = _array(SourceSection, data.get("sources", []), "sources", errors, check_source)
    _cross_check(data, models, sources, errors)
    if errors:
        raise ConfigError(errors)
    built = {name: SECTIONS[name](**table.values) for name, table in sections.items() if table is not None}
    return AgentConfig(
        **built,
        models=tuple(ModelSection(**t.values) for t in models),
        sources=tuple(SourceSection(**t.values) for t in sources),
    )


def load_config(path: str | Path) -> AgentConfig:
    """Read and validate a ``config.toml``; relative paths in it resolve against its folder."""
    path = Path(path)
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError([f"{path}: no such file"]) from None
    except OSError as error:
        raise ConfigError([f"{path}: cannot be read ({error.strerror or type(error).__name__})"]) from None
    except UnicodeDecodeError:
        raise ConfigError([f"{path}: is not UTF-8 text"]) from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError([f"not valid TOML: {error}"]) from None
    return parse_config(data, base_dir=path.absolute().parent)


def missing_model_files(config: AgentConfig) -> list[str]:
    """Errors for model files that do not exist (``check-config`` only: the service retries at start)."""
    return [
        f"models[{i}].path: {model.path!r} does not exist; expected a TorchScript model file (edge-agent export)"
        for i, model in enumerate(config.models)
        if not Path(model.path).is_file()
    ]


def resolve_state_dir(agent: AgentSection) -> Path:
    """``agent.state_dir``, else systemd's ``$STATE_DIRECTORY`` (its first entry), else
    ``$XDG_STATE_HOME/edge-agent/<agent.id>`` (``~/.local/state/edge-agent/<agent.id>`` when unset)."""
    if agent.state_dir:
        return Path(agent.state_dir)
    systemd = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
    if systemd:
        return Path(systemd)
    xdg = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(xdg) / "edge-agent" / agent.id


def resolve_password(mqtt: MqttSection) -> str | None:
    """The broker password from ``password_env`` or ``password_file`` (stripped), else ``None``.

    Errors name the key, never the password.
    """
    if mqtt.password_env:
        value = os.environ.get(mqtt.password_env)
        if not value:
            raise ConfigError([f"mqtt.password_env: {mqtt.password_env!r} is not set or empty; export it"])
        return value
    if not mqtt.password_file:
        return None
    key = f"mqtt.password_file: {mqtt.password_file!r}"
    try:
        text = Path(mqtt.password_file).read_text(encoding="utf-8").strip()
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise ConfigError([f"{key} cannot be read ({reason}); it must be a readable file"]) from None
    except UnicodeDecodeError:
        raise ConfigError([f"{key} is not UTF-8 text; it must hold the password as text"]) from None
    if not text:
        raise ConfigError([f"{key} is empty; it must hold the password"])
    return text
