"""What ``run`` would refuse at start, found before start: files the configuration names and the fit of
each source to its models (channels, sample rate, a recording of at least one window). ``check-config``
reports all of it; ``run`` checks the same before it starts (model files aside: it waits for them) and
:func:`fit_errors` again once the models are loaded.

Model metadata is read without torch (``edge_agent.modelfile.read_meta``) and seen through
:func:`model_input`, the one place that knows the meta's layout.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from edge_agent.common.errors import first_line
from edge_agent.config.secrets import resolve_password
from edge_agent.config.sections import AgentConfig, SourceSection
from edge_agent.config.table import ConfigError, Inspection
from edge_agent.modelfile import LoadedModel, check_runtime_kind, read_meta
from edge_agent.modelmeta import ModelMeta
from edge_agent.pipeline.indicators import make_plan
from edge_agent.pipeline.resample import rational_factors
from edge_agent.sources import SOURCES

MODEL_FILE = "expected a TorchScript model file (edge-agent export)"


@dataclass(frozen=True)
class ModelInput:
    """What a model takes: the part of its metadata a source must fit."""

    path: str
    sample_rate_hz: float
    window_samples: int
    channels: int


def model_input(path: str | Path, meta: ModelMeta) -> ModelInput:
    """What a source must fit of a model file: its rate, window and channel count."""
    return ModelInput(str(path), meta.sample_rate_hz, meta.window_samples, meta.channels)


def model_errors(config: AgentConfig) -> tuple[list[str], dict[str, ModelInput]]:
    """Errors for model files that are missing or not valid model files, and the inputs of the good ones."""
    errors, inputs = [], {}
    for index, model in enumerate(config.models):
        key = f"models[{index}].path"
        if not Path(model.path).is_file():
            errors.append(f"{key}: {model.path!r} does not exist; {MODEL_FILE}")
            continue
        try:
            meta = read_meta(model.path)
            check_runtime_kind(meta, model.path)
            inputs[model.name] = model_input(model.path, meta)
        except (OSError, ValueError) as error:
            reason = first_line(error).removeprefix(str(model.path)).lstrip(": ")
            errors.append(f"{key}: {model.path!r} is not a valid model file ({reason}); {MODEL_FILE}")
    return errors, inputs


def fit_errors(index: int, source: SourceSection, found: Inspection, models: Mapping[str, ModelInput]) -> list[str]:
    """Whether ``sources[index]`` fits each of its models: a live source's channels, a rate the resampler
    converts, a recording that holds at least one window."""
    key, errors, rate_hz = f"sources[{index}]", [], found.rate_hz
    errors += indicator_errors(key, source, models.get(source.models[0]) if source.models else None)
    for name in source.models:
        model = models.get(name)
        if model is None:
            continue
        if SOURCES[source.type].live_channels and source.channels != model.channels:
            errors.append(
                f"{key}.channels = {source.channels}, but model {name!r} ({model.path}) "
                f"takes {model.channels} channel(s) (meta.json channels)"
            )
        if rate_hz is None:
            continue
        if rate_hz <= 0:
            errors.append(f"{key}.sample_rate_hz: missing; the recording names no rate, set sample_rate_hz > 0")
            break
        # a configured rate is the key to fix; else the rate comes from the file the path names
        field = "sample_rate_hz" if rate_hz == source.sample_rate_hz else "path"
        try:
            rational_factors(rate_hz, model.sample_rate_hz)
        except ValueError as error:
            errors.append(
                f"{key}.{field}: {rate_hz:g} Hz cannot feed model {name!r} ({model.sample_rate_hz:g} Hz): "
                f"{error}; use a rate the resampler can convert"
            )
            continue
        shortest = found.shortest_samples
        if shortest is not None and shortest * model.sample_rate_hz / rate_hz < model.window_samples:
            errors.append(
                f"{key}.path: its shortest record holds {shortest} samples at {rate_hz:g} Hz (after start_fraction), "
                f"less than one window of model {name!r} ({model.window_samples} samples at "
                f"{model.sample_rate_hz:g} Hz); play a longer recording or a smaller start_fraction"
            )
    return errors


def indicator_errors(key: str, source: SourceSection, model: ModelInput | None) -> list[str]:
    """What ``[sources.indicators]`` cannot compute on the first model's windows (a band past its Nyquist
    frequency or without an FFT bin), each line naming ``<key>.indicators.<field>``."""
    if source.indicators is None or not source.indicators.enabled or model is None:
        return []
    try:
        make_plan(source.indicators.settings(), model.sample_rate_hz, model.window_samples, f"{key}.indicators")
    except ValueError as error:
        return str(error).splitlines()
    return []


def start_errors(config: AgentConfig, *, model_files: bool = True) -> list[str]:
    """Every start-time problem visible now; ``model_files=False`` leaves the model files to the service."""
    errors: list[str] = []
    if config.mqtt.enabled:
        try:
            resolve_password(config.mqtt)
        except ConfigError as error:
            errors += error.errors
    inputs: dict[str, ModelInput] = {}
    if model_files:
        found, inputs = model_errors(config)
        errors += found
    for index, source in enumerate(config.sources):
        inspection = SOURCES[source.type].inspect(source, f"sources[{index}]")
        errors += inspection.errors
        if not inspection.errors:
            errors += fit_errors(index, source, inspection, inputs)
    return errors


def check_fit(config: AgentConfig, loaded: Mapping[str, LoadedModel]) -> None:
    """``fit_errors`` of every source against the loaded models (``LoadedModel``); ``ValueError`` lists them."""
    inputs = {name: model_input(model.path, model.meta) for name, model in loaded.items()}
    errors = []
    for index, source in enumerate(config.sources):
        errors += fit_errors(index, source, SOURCES[source.type].inspect(source, f"sources[{index}]"), inputs)
    if errors:
        raise ValueError("\n".join(errors))
