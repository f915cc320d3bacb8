"""Typed model metadata: ``meta.json`` of an exported model file parsed into a frozen :class:`ModelMeta`.

Pure Python (no torch, no numpy): ``check-config`` and the loader read it on a bare machine.
The training side writes the document (a dict, see ``training/export.py``); the runtime reads
the typed fields, never the document by string key. One model kind per ``kind`` value:

- ``classifier``: one logit per label; the decision engine votes on the most probable label.
- ``anomaly``: one score per window, learned from healthy data; ``threshold`` (scores above it
  are anomalous) and ``calibration`` (how the threshold was set) are required keys.

Optional ``label_info`` (label -> ``{"description", "severity"}``, :class:`LabelInfo`) says what each
label means to a maintenance planner; a label it does not list reads as itself, without a severity.

Adding a kind: a name in :data:`KINDS`, its required keys in :data:`KIND_KEYS`, a typed part
(like :class:`AnomalyScoring`) built in :func:`parse_meta`, and its output width in
:attr:`ModelMeta.output_width`. Every error is a ``ValueError`` naming the source and the key.
"""

from __future__ import annotations

import copy
import math
import numbers
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

META_FILE = "meta.json"
SCHEMA_VERSION = 1
SUPPORTED_SCHEMAS = (1,)
KINDS = ("classifier", "anomaly")
PRECISIONS = ("float32", "int8")
REQUIRED_KEYS = (
    "schema",
    "name",
    "kind",
    "sample_rate_hz",
    "window_samples",
    "hop_samples",
    "channels",
    "input_units",
    "normalisation",
    "precision",
    "quantized_engine",
)
# keys a kind needs on top of REQUIRED_KEYS
KIND_KEYS: dict[str, tuple[str, ...]] = {"classifier": ("labels",), "anomaly": ("threshold", "calibration")}
INPUT_KEYS = ("window_samples", "channels", "sample_rate_hz")  # what a window fed to the model must match
SEVERITIES = ("none", "info", "warning", "critical")  # label_info severities (Alertmanager's names, none: healthy)


def _empty() -> Mapping[str, Any]:
    return MappingProxyType({})


@dataclass(frozen=True)
class Normalisation:
    """How inputs are normalised; ``applied`` says where (today always ``inside the graph``)."""

    applied: str
    mean: tuple[float, ...] | None = None  # per channel, when the graph subtracts a fixed mean
    std: tuple[float, ...] | None = None
    method: str | None = None  # a description, when it is not a fixed mean and std (e.g. per-window RMS)
    abstain_below_rms: float | None = None  # windows quieter than this get an all-zero output


@dataclass(frozen=True)
class NoiseFloor:
    """The file has methods ``noise_floor`` (``(N,)``: the model's own noise estimate per window, 1.0 = as clean
    as its reference windows) and ``forward_with_noise_floor`` (logits and that, in one pass).

    ``units`` names the shrinkage units whose thresholds it summarises.
    """

    units: tuple[str, ...]


NOISE_FLOOR_METHODS = {"method": "noise_floor", "with_logits": "forward_with_noise_floor"}  # what the runtime calls


@dataclass(frozen=True)
class AnomalyScoring:
    """The scoring part of an ``anomaly`` model: a score per window, anomalous above ``threshold``."""

    threshold: float
    calibration: Mapping[str, Any]  # how the threshold was chosen (healthy windows, quantile, ...)


@dataclass(frozen=True)
class LabelInfo:
    """What a label means: ``description`` for people (``inner-race fault, 0.18 mm (0.007 in)``) and
    ``severity`` (one of :data:`SEVERITIES`; None: the file does not say)."""

    description: str
    severity: str | None = None


@dataclass(frozen=True, eq=False)
class ModelMeta(Mapping[str, Any]):
    """The validated ``meta.json`` of one model file.

    The runtime reads the typed fields. The whole document stays readable, read-only, as a
    mapping (``meta["architecture"]``) for training-side tools and reports, and compares equal
    to the dict it was parsed from; the runtime does not index it (a test checks).
    """

    schema: int
    name: str
    kind: str
    labels: tuple[str, ...]
    sample_rate_hz: float
    window_samples: int
    hop_samples: int
    channels: int
    input_units: str
    normalisation: Normalisation
    precision: str
    quantized_engine: str | None
    output: str = "logits"
    anomaly: AnomalyScoring | None = None  # set for kind "anomaly" only
    noise_floor: NoiseFloor | None = None  # the file has a noise_floor method (meta key noise_floor)
    data_sha256: str | None = None  # hash of the training data (training.data_sha256)
    code_version: str | None = None
    metrics: Mapping[str, Any] = field(default_factory=_empty)  # test_metrics of the export, {} if none recorded
    evaluation: Mapping[str, Any] = field(default_factory=_empty)  # cross-validation and export checks, {} if none
    label_info: Mapping[str, LabelInfo] = field(default_factory=_empty)  # label -> description, severity
    document: Mapping[str, Any] = field(default_factory=_empty)  # the whole meta.json

    def describe(self, label: str) -> LabelInfo:
        """``label``'s :class:`LabelInfo`; a label the file does not describe reads as itself."""
        return self.label_info.get(label) or LabelInfo(label)

    @property
    def engine(self) -> str:
        """The quantized engine the file was built for, ``none`` for float32 (a metric label)."""
        return self.quantized_engine or "none"

    @property
    def output_width(self) -> int:
        """Values the model returns per window: one per label, or one score."""
        return 1 if self.kind == "anomaly" else len(self.labels)

    def input_mismatch(self, other: ModelMeta) -> tuple[str, ...]:
        """The input keys (:data:`INPUT_KEYS`) on which ``other`` differs from this meta."""
        return tuple(key for key in INPUT_KEYS if getattr(self, key) != getattr(other, key))

    # read-only mapping of the document (training-side tools, reports, tests)
    def __getitem__(self, key: str) -> Any:
        return self.document[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.document)

    def __len__(self) -> int:
        return len(self.document)

    def __repr__(self) -> str:
        return (
            f"ModelMeta(name={self.name!r}, kind={self.kind!r}, labels={self.labels!r}, precision={self.precision!r})"
        )


def parse_meta(document: object, *, source: str) -> ModelMeta:
    """``document`` (a parsed meta.json) as :class:`ModelMeta`; ``ValueError`` naming ``source`` and the bad key."""
    if isinstance(document, ModelMeta):
        document = dict(document.document)
    if not isinstance(document, dict):
        raise ValueError(f"{source}: {META_FILE} must hold a JSON object, got {type(document).__name__}")
    missing = [key for key in REQUIRED_KEYS if key not in document]
    if missing:
        raise ValueError(f"{source}: {META_FILE} lacks required key(s): {', '.join(missing)}")
    meta = copy.deepcopy(document)  # the caller's dict may change later; ours never does
    _check_choice(meta, "schema", SUPPORTED_SCHEMAS, source)
    _check_choice(meta, "kind", KINDS, source)
    _check_choice(meta, "precision", PRECISIONS, source)
    kind_missing = [key for key in KIND_KEYS[meta["kind"]] if key not in meta]
    if kind_missing:
        raise ValueError(f"{source}: {META_FILE} of kind {meta['kind']!r} lacks key(s): {', '.join(kind_missing)}")
    labels = meta.get("labels", [])  # an anomaly model scores windows: it has no labels
    if meta["kind"] == "classifier" and (not isinstance(labels, list) or not labels):
        raise ValueError(f"{source}: {META_FILE} key 'labels' must be a non-empty list of strings, got {labels!r}")
    if not isinstance(labels, list) or not all(isinstance(label, str) for label in labels):
        raise ValueError(f"{source}: {META_FILE} key 'labels' must be a non-empty list of strings, got {labels!r}")
    for key in ("window_samples", "hop_samples", "channels"):
        value = meta[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{source}: {META_FILE} key {key!r} must be a positive integer, got {value!r}")
    rate = meta["sample_rate_hz"]
    if not _is_number(rate) or rate <= 0:
        raise ValueError(f"{source}: {META_FILE} key 'sample_rate_hz' must be a positive number, got {rate!r}")
    engine = meta["quantized_engine"]
    if meta["precision"] == "int8" and not isinstance(engine, str):
        raise ValueError(f"{source}: {META_FILE} key 'quantized_engine' must name an engine for int8, got {engine!r}")
    if engine is not None and not isinstance(engine, str):
        raise ValueError(f"{source}: {META_FILE} key 'quantized_engine' must be a string or null, got {engine!r}")
    training = meta.get("training")
    data_sha256 = training.get("data_sha256") if isinstance(training, dict) else None
    metrics, evaluation = meta.get("test_metrics"), meta.get("evaluation")
    return ModelMeta(
        schema=int(meta["schema"]),
        name=_text(meta, "name", source),
        kind=meta["kind"],
        labels=tuple(labels),
        sample_rate_hz=float(rate),
        window_samples=meta["window_samples"],
        hop_samples=meta["hop_samples"],
        channels=meta["channels"],
        input_units=_text(meta, "input_units", source),
        normalisation=_normalisation(meta["normalisation"], source),
        precision=meta["precision"],
        quantized_engine=engine,
        output=str(meta.get("output", "logits")),
        anomaly=_anomaly(meta, source) if meta["kind"] == "anomaly" else None,
        noise_floor=_noise_floor(meta.get("noise_floor"), source),
        data_sha256=data_sha256 if isinstance(data_sha256, str) else None,
        code_version=meta.get("code_version") if isinstance(meta.get("code_version"), str) else None,
        metrics=MappingProxyType(metrics if isinstance(metrics, dict) else {}),
        evaluation=MappingProxyType(evaluation if isinstance(evaluation, dict) else {}),
        label_info=MappingProxyType(_label_info(meta, source)),
        document=MappingProxyType(meta),
    )


def validate_meta(meta: object, *, source: str) -> None:
    """Raise ``ValueError`` naming ``source`` and the first bad key if ``meta`` is not a usable model meta."""
    parse_meta(meta, source=source)


def _normalisation(value: object, source: str) -> Normalisation:
    if not isinstance(value, dict) or not isinstance(value.get("applied"), str):
        raise ValueError(
            f"{source}: {META_FILE} key 'normalisation' must be an object with a string 'applied', got {value!r}"
        )
    stats: dict[str, tuple[float, ...] | None] = {}
    for key in ("mean", "std"):
        numbers_ = value.get(key)
        if numbers_ is not None and (not isinstance(numbers_, list) or not all(_is_number(x) for x in numbers_)):
            raise ValueError(
                f"{source}: {META_FILE} key 'normalisation.{key}' must be a list of numbers, got {numbers_!r}"
            )
        stats[key] = None if numbers_ is None else tuple(float(x) for x in numbers_)
    floor = value.get("abstain_below_rms")
    if floor is not None and not _is_number(floor):
        raise ValueError(f"{source}: {META_FILE} key 'normalisation.abstain_below_rms' must be a number, got {floor!r}")
    method = value.get("method")
    return Normalisation(
        applied=value["applied"],
        mean=stats["mean"],
        std=stats["std"],
        method=method if isinstance(method, str) else None,
        abstain_below_rms=None if floor is None else float(floor),
    )


def _label_info(meta: dict[str, Any], source: str) -> dict[str, LabelInfo]:
    value = meta.get("label_info")
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"{source}: {META_FILE} key 'label_info' must be an object (label -> info), got {value!r}")
    infos = {}
    for label, info in value.items():
        key = f"label_info.{label}"
        if label not in meta.get("labels", []):
            raise ValueError(f"{source}: {META_FILE} key {key!r} is not one of the labels {meta.get('labels', [])!r}")
        if not isinstance(info, dict) or not isinstance(info.get("description"), str) or not info["description"]:
            raise ValueError(f"{source}: {META_FILE} key {key!r} must be an object with a non-empty 'description'")
        severity = info.get("severity")
        if severity is not None and severity not in SEVERITIES:
            choices = ", ".join(SEVERITIES)
            raise ValueError(f"{source}: {META_FILE} key '{key}.severity' is {severity!r}; supported: {choices}")
        infos[label] = LabelInfo(info["description"], severity)
    return infos


def _anomaly(meta: dict[str, Any], source: str) -> AnomalyScoring:
    threshold, calibration = meta["threshold"], meta["calibration"]
    if not _is_number(threshold) or not math.isfinite(threshold):
        raise ValueError(f"{source}: {META_FILE} key 'threshold' must be a finite number, got {threshold!r}")
    if not isinstance(calibration, dict):
        raise ValueError(f"{source}: {META_FILE} key 'calibration' must be an object, got {calibration!r}")
    return AnomalyScoring(threshold=float(threshold), calibration=MappingProxyType(calibration))


def _noise_floor(value: object, source: str) -> NoiseFloor | None:
    if value is None:
        return None
    if not isinstance(value, dict) or any(value.get(k) != name for k, name in NOISE_FLOOR_METHODS.items()):
        raise ValueError(f"{source}: {META_FILE} key 'noise_floor' must be an object with {NOISE_FLOOR_METHODS}")
    units = value.get("units")
    if not isinstance(units, list) or not units or not all(isinstance(unit, str) for unit in units):
        raise ValueError(f"{source}: {META_FILE} key 'noise_floor.units' must be a non-empty list of strings")
    return NoiseFloor(units=tuple(units))


def _check_choice(meta: dict[str, Any], key: str, allowed: tuple[object, ...], source: str) -> None:
    if meta[key] not in allowed:
        choices = ", ".join(repr(a) for a in allowed)
        raise ValueError(f"{source}: {META_FILE} key {key!r} is {meta[key]!r}; supported: {choices}")


def _text(meta: dict[str, Any], key: str, source: str) -> str:
    if not isinstance(meta[key], str):
        raise ValueError(f"{source}: {META_FILE} key {key!r} must be a string, got {meta[key]!r}")
    return meta[key]


def _is_number(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)
