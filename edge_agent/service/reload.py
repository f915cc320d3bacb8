"""Reload on SIGHUP: re-read the configuration and the model files, apply what can change while running.

Applied live, without touching the window buffers or the inference queue (windows already cut or
queued are run by the new model):

- ``[decision]`` (every key; open alerts, cooldowns and the newest votes are kept),
- ``agent.log_level``, ``inference.max_batch``, ``inference.max_wait_s``,
- ``[[models]]`` files: every model file is read again (a new file at the same path counts too)
  and swapped in when its content changed, provided it takes the same input (``window_samples``,
  ``channels``, ``sample_rate_hz``); labels may change.

Everything else needs a restart (sockets, devices and buffers are built from it): ``[mqtt]``,
``[metrics]``, ``agent.id``, ``inference.threads``, ``inference.queue_windows``, ``[[sources]]``, ``[sensors]``,
adding, removing or renaming ``[[models]]``, ``hop_samples``, and a model file with another input
shape. Such changes are logged with their dotted keys and ``edge_agent_config_restart_required``
is set to 1; the rest of the reload still applies.

A reload is refused as a whole, and the running configuration kept, when the file is invalid or a
changed model file cannot be loaded: the log names every bad key,
``edge_agent_config_reload_failures_total`` counts it and ``edge_agent_config_last_reload_successful``
drops to 0.

This module only plans: :func:`plan_reload` compares the files with the running configuration
and returns a :class:`ReloadPlan`; ``App.reload`` (edge_agent.service.app) applies it.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from edge_agent.config import AgentConfig, ModelSection
from edge_agent.config.rules import live_keys
from edge_agent.modelfile import LoadedModel, check_runtime_kind, load_model
from edge_agent.modelmeta import INPUT_KEYS

logger = logging.getLogger(__name__)

ARRAY_KEYS = ("models", "sources", "sensors")
# per section, the keys a reload applies (declared ``live=True`` on the field); every other key needs a restart
LIVE_KEYS = {
    f.name: live_keys(type(getattr(AgentConfig(), f.name)))
    for f in dataclasses.fields(AgentConfig)
    if f.name not in ARRAY_KEYS
}
INPUT_META = INPUT_KEYS  # a model file whose meta differs on one of these needs a restart


class ReloadError(ValueError):
    """A reload that cannot be applied; ``errors`` name the dotted keys."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = list(errors)
        super().__init__("; ".join(self.errors))


@dataclass(frozen=True)
class ReloadPlan:
    """What a reload changes: the configuration that will run, the new model files, what needs a restart."""

    config: AgentConfig
    models: dict[str, LoadedModel] = field(default_factory=dict)  # only the models whose file changed
    restart_keys: tuple[str, ...] = ()
    changed_keys: tuple[str, ...] = ()


def plan_reload(
    running: AgentConfig,
    new: AgentConfig,
    loaded: dict[str, LoadedModel],
    *,
    load: Callable[[str], LoadedModel] = load_model,
) -> ReloadPlan:
    """Compare ``new`` with ``running``; load changed model files. Raises :class:`ReloadError`."""
    changed: list[str] = []
    restart: list[str] = []
    sections = {}
    for name in (f.name for f in dataclasses.fields(AgentConfig) if f.name not in ARRAY_KEYS):
        live = LIVE_KEYS.get(name, ())
        old_section, new_section = getattr(running, name), getattr(new, name)
        keep = {}
        for key in (f.name for f in dataclasses.fields(old_section)):
            if getattr(old_section, key) == getattr(new_section, key):
                continue
            if key in live:
                changed.append(f"{name}.{key}")
            else:
                restart.append(f"{name}.{key}")
                keep[key] = getattr(old_section, key)  # a restart-only key keeps its running value
        sections[name] = dataclasses.replace(new_section, **keep)
    restart += _source_changes(running, new)
    restart += ["sensors (machine, location, tags)"] if running.sensors != new.sensors else []
    models, model_sections = _model_changes(running, new, loaded, load, changed, restart)
    merged = dataclasses.replace(
        new, **sections, models=model_sections, sources=running.sources, sensors=running.sensors
    )
    return ReloadPlan(merged, models, tuple(restart), tuple(changed))


def _source_changes(running: AgentConfig, new: AgentConfig) -> list[str]:
    if len(running.sources) != len(new.sources):
        return [f"sources (now {len(running.sources)}, file {len(new.sources)})"]
    keys = []
    for index, (old, fresh) in enumerate(zip(running.sources, new.sources, strict=True)):
        if type(old) is not type(fresh):  # another source type: other keys
            keys.append(f"sources[{index}].type")
            continue
        keys += [
            f"sources[{index}].{f.name}"
            for f in dataclasses.fields(old)
            if getattr(old, f.name) != getattr(fresh, f.name)
        ]
    return keys


def _model_changes(
    running: AgentConfig,
    new: AgentConfig,
    loaded: dict[str, LoadedModel],
    load: Callable[[str], LoadedModel],
    changed: list[str],
    restart: list[str],
) -> tuple[dict[str, LoadedModel], tuple[ModelSection, ...]]:
    """Reload every model file of the running model set; ``ReloadError`` if one cannot be loaded."""
    if [m.name for m in running.models] != [m.name for m in new.models]:
        restart.append("models (names)")
        return {}, running.models
    errors: list[str] = []
    swapped: dict[str, LoadedModel] = {}
    sections = []
    for index, (old, fresh) in enumerate(zip(running.models, new.models, strict=True)):
        key = f"models[{index}]"
        if old.hop_samples != fresh.hop_samples:
            restart.append(f"{key}.hop_samples")
        try:
            candidate = load(fresh.path)
            check_runtime_kind(candidate.meta, fresh.path)
        except (OSError, ValueError) as error:
            errors.append(f"{key}.path: {fresh.path!r} cannot be loaded: {error}")
            continue
        current = loaded[old.name]
        mismatch = current.meta.input_mismatch(candidate.meta)
        if mismatch:
            shown = ", ".join(
                f"{k} {getattr(candidate.meta, k)} (running {getattr(current.meta, k)})" for k in mismatch
            )
            restart.append(f"{key}.path ({fresh.path}: {shown})")
            sections.append(old)
            continue
        sections.append(dataclasses.replace(fresh, hop_samples=old.hop_samples))
        if candidate.sha256 != current.sha256:
            swapped[old.name] = candidate
            changed.append(f"{key}.path (sha256 {current.sha256[:12]} -> {candidate.sha256[:12]})")
    if errors:
        raise ReloadError(errors)
    return swapped, tuple(sections)
