"""Rules that span more than one field of a section, and rules across sections and ``[[sources]]`` entries.

Single-field bounds and choices are declared on the fields (``edge_agent.config.sections``); each source
type's own rules live beside it (``edge_agent.sources``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edge_agent.config.rules import section_errors
from edge_agent.config.sections import DecisionSection
from edge_agent.config.table import Table, required, resolve_path, show


def check_agent(table: Table, base_dir: Path) -> None:
    resolve_path(table, "state_dir", base_dir)
    folder = "a folder (created if missing) for the agent's state, e.g. the alert outbox"
    table.check("state_dir", lambda v: not v or not Path(v).exists() or Path(v).is_dir(), folder, "is not a folder")


def check_mqtt(table: Table, base_dir: Path) -> None:
    rule = "must be a non-empty topic without '+' or '#'"
    table.check("topic_prefix", lambda v: bool(v) and "+" not in v and "#" not in v, rule, reason="is not allowed")
    if table.ok("reconnect_min_s", "reconnect_max_s"):
        limit = table.values["reconnect_max_s"]
        allowed = f"must be <= mqtt.reconnect_max_s ({table.shown('reconnect_max_s')})"
        table.check("reconnect_min_s", lambda v: v <= limit, allowed)
    _check_password(table, base_dir)
    _check_tls(table, base_dir)


def _check_password(table: Table, base_dir: Path) -> None:
    resolve_path(table, "password_file", base_dir, credential=True)
    if not table.ok("password_env", "password_file"):
        return
    if table.values["password_env"] and table.values["password_file"]:
        table.fail("password_file", "is not allowed together with mqtt.password_env", "set only one of them")
    elif table.ok("username") and not table.values["username"]:
        for name in ("password_env", "password_file"):
            table.check(name, lambda v: not v, "a password needs mqtt.username", reason="is not allowed")


def _check_tls(table: Table, base_dir: Path) -> None:
    names = ("ca_file", "cert_file", "key_file")
    for name in names:
        resolve_path(table, name, base_dir, credential=True)
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


def _confirm_k_rule(confirm_n_shown: str) -> str:
    return f"must be <= decision.confirm_n ({confirm_n_shown})"


def check_decision(table: Table) -> None:
    if table.ok("confirm_k", "confirm_n"):
        n = table.values["confirm_n"]
        table.check("confirm_k", lambda v: v <= n, _confirm_k_rule(table.shown("confirm_n")))


def decision_errors(section: DecisionSection) -> list[str]:
    """What the loader would refuse in a built ``[decision]`` (the engine checks its settings with this)."""
    errors = section_errors(section, "decision")
    if not errors and section.confirm_k > section.confirm_n:
        errors.append(
            f"decision.confirm_k: {section.confirm_k!r} is out of range; {_confirm_k_rule(str(section.confirm_n))}"
        )
    return errors


def check_model(table: Table, base_dir: Path) -> None:
    required(table, "name", "a non-empty name is required")
    required(table, "path", "a path to a TorchScript model file is required")
    resolve_path(table, "path", base_dir)


def check_metrics(table: Table) -> None:
    required(table, "listen", "a listen address is required, e.g. '127.0.0.1'")


def check_homeassistant(table: Table) -> None:
    rule = "must be a topic without '+', '#', empty levels or a leading or trailing '/'"
    for name in ("discovery_prefix", "birth_topic"):
        table.check(
            name, lambda v: "+" not in v and "#" not in v and "" not in v.split("/"), rule, reason="is not allowed"
        )


def check_homeassistant_needs_mqtt(table: Table | None, mqtt_enabled: bool) -> None:
    if table is not None and not mqtt_enabled:
        allowed = "set mqtt.enabled = true in [mqtt] (discovery goes through the broker)"
        table.check("enabled", lambda v: not v, allowed, reason="is not allowed while mqtt.enabled = false")


# --- across [[models]] and [[sources]] entries ---------------------------------------------------


def _unique(tables: list[Table], name: str, what: str) -> None:
    first: dict[Any, str] = {}
    for table in tables:
        if not table.ok(name) or not table.values[name]:
            continue
        value = table.values[name]
        if value in first:
            table.fail(name, "is a duplicate", f"{what} must be unique (first used by {first[value]})")
        else:
            first[value] = table.prefix


def _unique_sensors(sources: list[Table]) -> None:
    """Sources whose type names one ``sensor`` (replay, soundcard) may not share it (MQTT sensors may repeat)."""
    first: dict[Any, Table] = {}
    for table in sources:
        if "sensor" not in table.values or not table.ok("type", "sensor") or not table.values["sensor"]:
            continue
        earlier = first.setdefault(table.values["sensor"], table)
        if earlier is not table:
            kinds = " and ".join(sorted({earlier.values["type"], table.values["type"]}))
            allowed = f"the sensors of {kinds} sources must be unique (first used by {earlier.prefix})"
            table.fail("sensor", "is a duplicate", allowed)


def _check_model_refs(sources: list[Table], models: list[Table]) -> None:
    defined = [t.values["name"] for t in models if t.ok("name") and t.values["name"]]
    allowed = f"defined models: {', '.join(defined)}" if defined else "no [[models]] entry is defined"
    for table in sources:
        if not table.ok("models"):
            continue
        for index, name in enumerate(table.values["models"]):
            key = f"{table.key('models')}[{index}]"
            if name not in defined:
                table.errors.append(f"{key}: {show(name)} is not defined; {allowed}")
            elif name in table.values["models"][:index]:
                table.errors.append(f"{key}: {show(name)} is a duplicate; name each model once")


def cross_check(data: dict[str, Any], models: list[Table], sources: list[Table], errors: list[str]) -> None:
    raw_models, raw_sources = data.get("models", []), data.get("sources")
    models_valid = isinstance(raw_models, list) and all(isinstance(item, dict) for item in raw_models)
    _unique(models, "name", "model names")
    _unique(sources, "name", "source names")
    _unique_sensors(sources)
    if models_valid:
        _check_model_refs(sources, models)
    if raw_sources is None:
        errors.append("sources: missing; at least one [[sources]] entry is required")
    elif raw_sources == []:
        errors.append("sources: [] is not allowed; at least one [[sources]] entry is required")
