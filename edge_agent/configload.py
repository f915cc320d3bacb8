"""Read ``config.toml`` into the frozen objects of ``edge_agent.config``, reporting every error at once.

Each error is one line ``<dotted key>: <value> <what is wrong>; <what is allowed>``; a source's keys are
always spelled ``sources[<index>].<key>``. Relative paths resolve against the config file's folder;
``${EDGE_AGENT_DATA}`` expands to that environment variable, else to ``<repo>/../shared/data``.
Files the configuration names (model files, recordings, the password) are not opened here: the
service acquires them at start; ``edge_agent.service.preflight`` checks them for ``check-config`` and
``run``.
"""

from __future__ import annotations

import dataclasses
import functools
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edge_agent.common.paths import DATA_ENV, DATA_PLACEHOLDER, DEFAULT_DATA_ROOT, data_root
from edge_agent.config import checks
from edge_agent.config.indicators import read_indicators
from edge_agent.config.instances import for_instance, instance_errors
from edge_agent.config.learn import read_learn
from edge_agent.config.secrets import resolve_password
from edge_agent.config.sections import (
    AgentConfig,
    AgentSection,
    DecisionSection,
    HomeAssistantSection,
    InferenceSection,
    MetricsSection,
    ModelSection,
    MqttSection,
    SourceSection,
    StreamsSection,
)
from edge_agent.config.sensor_info import read_sensor_info
from edge_agent.config.table import (
    ConfigError,
    SourceContext,
    Table,
    check_rules,
    read_table,
    required,
    show,
    unknown_key,
)
from edge_agent.sources import SOURCES

__all__ = [
    "DATA_ENV",
    "DATA_PLACEHOLDER",
    "DEFAULT_DATA_ROOT",
    "ConfigError",
    "data_root",
    "load_config",
    "parse_config",
    "resolve_password",
]

SECTIONS: dict[str, type] = {
    "agent": AgentSection,
    "mqtt": MqttSection,
    "metrics": MetricsSection,
    "inference": InferenceSection,
    "decision": DecisionSection,
    "homeassistant": HomeAssistantSection,
    "streams": StreamsSection,
}
ARRAYS = ("models", "sources", "sensors")
MODEL_REQUIRED = {"path": "required (a TorchScript model file)"}
SOURCE_REQUIRED = {
    "type": f"required (one of {', '.join(SOURCES)})",
    "models": "required (a list of [[models]] names)",
}


def _field_names(cls: type) -> tuple[str, ...]:
    return tuple(spec.name for spec in dataclasses.fields(cls))


def _read_models(raw: Any, errors: list[str], base_dir: Path) -> list[Table]:
    if not isinstance(raw, list):
        errors.append(f"models: {show(raw)} has the wrong type; expected an array of tables ([[models]])")
        return []
    tables = []
    for index, item in enumerate(raw):
        table = read_table(ModelSection, item, f"models[{index}]", errors, what="a table", required=MODEL_REQUIRED)
        if table is not None:
            checks.check_model(table, base_dir)
            tables.append(table)
    return tables


def _read_source(raw: Any, prefix: str, errors: list[str], context: SourceContext) -> Table | None:
    """One ``[[sources]]`` entry as its type's section; keys of another type are named as such, not unknown."""
    kind = raw.get("type") if isinstance(raw, dict) else None
    spec = SOURCES.get(kind) if isinstance(kind, str) else None
    cls = spec.section if spec is not None else SourceSection
    own = _field_names(cls)
    every = {name: [t for t, s in SOURCES.items() if name in _field_names(s.section)] for name in _all_source_keys()}
    foreign = [name for name in every if name not in own]
    if isinstance(raw, dict):
        elsewhere = {name: " or ".join(every[name]) + " sources" for name in foreign} if spec is not None else {}
        errors.extend(unknown_key(prefix, k, own, elsewhere) for k in raw if k not in own and k not in every)
    trimmed = (
        {k: v for k, v in raw.items() if k in own and k not in ("indicators", "learn")}
        if isinstance(raw, dict)
        else raw
    )
    table = read_table(cls, trimmed, prefix, errors, what="a table", required=SOURCE_REQUIRED, rules=False)
    if table is None:
        return None
    table.raw = raw
    if "indicators" in raw:  # a table of its own (edge_agent.config.indicators)
        table.values["indicators"] = read_indicators(raw["indicators"], table.key("indicators"), errors)
    if "learn" in raw:  # a table of its own (edge_agent.config.learn)
        table.values["learn"] = read_learn(raw["learn"], table.key("learn"), errors)
    table.check("type", lambda v: v in SOURCES, f"choose one of {', '.join(SOURCES)}", reason="is not allowed")
    required(table, "name", "a non-empty name is required")
    required(table, "models", "name at least one [[models]] entry")
    check_rules(table, SourceSection)  # the common keys; the type's check runs its own (keeps its error order)
    if spec is None:
        return table
    for name in foreign:
        if name in raw:
            users = " or ".join(repr(t) for t in every[name])
            table.fail(name, f"is not used by {kind} sources", f"remove it or set type = {users}")
    spec.check(table, context)
    return table


@functools.cache
def _all_source_keys() -> tuple[str, ...]:
    """Every key of every source type, in registry then declaration order."""
    return tuple(dict.fromkeys(name for spec in SOURCES.values() for name in _field_names(spec.section)))


def _read_sources(raw: Any, errors: list[str], context: SourceContext) -> list[Table]:
    if not isinstance(raw, list):
        errors.append(f"sources: {show(raw)} has the wrong type; expected an array of tables ([[sources]])")
        return []
    tables = [_read_source(item, f"sources[{index}]", errors, context) for index, item in enumerate(raw)]
    return [table for table in tables if table is not None]


def parse_config(data: dict[str, Any], *, base_dir: Path, instance: int | None = None) -> AgentConfig:
    """Validate parsed TOML into an ``AgentConfig``; raise ``ConfigError`` listing every problem.

    ``instance`` (``--instance N``) overrides ``agent.instance``; the result is that instance's view
    (``edge_agent.config.instances.for_instance``).
    """
    errors: list[str] = []
    if instance is not None and isinstance(data.get("agent", {}), dict):
        data = {**data, "agent": {**data.get("agent", {}), "instance": instance}}
    allowed = [*SECTIONS, *ARRAYS]
    errors.extend(unknown_key("", name, allowed) for name in data if name not in allowed)
    section_checks: dict[str, Callable[[Table], None]] = {
        "agent": lambda table: checks.check_agent(table, base_dir),
        "mqtt": lambda table: checks.check_mqtt(table, base_dir),
        "metrics": checks.check_metrics,
        "inference": lambda table: None,  # every rule is declared on the fields
        "decision": checks.check_decision,
        "homeassistant": checks.check_homeassistant,
        "streams": lambda table: None,  # every rule is declared on the fields
    }
    sections: dict[str, Table | None] = {}
    for name, cls in SECTIONS.items():
        sections[name] = table = read_table(cls, data.get(name, {}), name, errors, what=f"a table ([{name}])")
        if table is not None:
            section_checks[name](table)
    mqtt = sections["mqtt"]
    mqtt_enabled = mqtt.values["enabled"] if mqtt is not None and mqtt.ok("enabled") else True
    checks.check_homeassistant_needs_mqtt(sections["homeassistant"], mqtt_enabled)
    models = _read_models(data.get("models", []), errors, base_dir)
    sources = _read_sources(data.get("sources", []), errors, SourceContext(base_dir, mqtt_enabled))
    checks.cross_check(data, models, sources, errors)
    errors.extend(instance_errors(sections["agent"], sources, sections["metrics"]))
    sensor_infos = read_sensor_info(data.get("sensors", {}), errors, _named_sensors(sources))
    if errors:
        raise ConfigError(errors)
    built = {name: SECTIONS[name](**table.values) for name, table in sections.items() if table is not None}
    config = AgentConfig(
        **built,
        models=tuple(ModelSection(**t.values) for t in models),
        sources=tuple(SOURCES[t.values["type"]].section(**t.values) for t in sources),
        sensors=sensor_infos,
    )
    return for_instance(config)


def _named_sensors(sources: list[Table]) -> tuple[str, ...] | None:
    """The sensor ids the sources name; None when one of them finds its sensors (any id may come)."""
    if any(t.bad or t.values.get("type") not in SOURCES for t in sources):
        return None  # their errors are reported; the [sensors] ids are checked once they are right
    built = [SOURCES[t.values["type"]].section(**t.values) for t in sources]
    if any(not section.known_sensors for section in built):
        return None
    return tuple(sensor for section in built for sensor in section.known_sensors)


def load_config(path: str | Path, instance: int | None = None) -> AgentConfig:
    """Read and validate a ``config.toml``; relative paths in it resolve against its folder.

    ``instance``: this process's ``--instance N`` (overrides ``agent.instance``)."""
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
    return parse_config(data, base_dir=path.absolute().parent, instance=instance)
