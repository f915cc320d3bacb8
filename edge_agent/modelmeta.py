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
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from edge_agent.modelmeta_parts import (
    META_FILE,
    AnomalyScoring,
    LabelInfo,
    NoiseFloor,
    Normalisation,
    is_number,
    parse_anomaly,
    parse_label_info,
    parse_noise_floor,
    parse_normalisation,
)

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


def _empty() -> Mapping[str, Any]:
    return MappingProxyType({})


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
    if not is_number(rate) or rate <= 0:
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
        normalisation=parse_normalisation(meta["normalisation"], source),
        precision=meta["precision"],
        quantized_engine=engine,
        output=str(meta.get("output", "logits")),
        anomaly=parse_anomaly(meta, source) if meta["kind"] == "anomaly" else None,
        noise_floor=parse_noise_floor(meta.get("noise_floor"), source),
        data_sha256=data_sha256 if isinstance(data_sha256, str) else None,
        code_version=meta.get("code_version") if isinstance(meta.get("code_version"), str) else None,
        metrics=MappingProxyType(metrics if isinstance(metrics, dict) else {}),
        evaluation=MappingProxyType(evaluation if isinstance(evaluation, dict) else {}),
        label_info=MappingProxyType(parse_label_info(meta, source)),
        document=MappingProxyType(meta),
    )


def validate_meta(meta: object, *, source: str) -> None:
    """Raise ``ValueError`` naming ``source`` and the first bad key if ``meta`` is not a usable model meta."""
    parse_meta(meta, source=source)


def _check_choice(meta: dict[str, Any], key: str, allowed: tuple[object, ...], source: str) -> None:
    if meta[key] not in allowed:
        choices = ", ".join(repr(a) for a in allowed)
        raise ValueError(f"{source}: {META_FILE} key {key!r} is {meta[key]!r}; supported: {choices}")


def _text(meta: dict[str, Any], key: str, source: str) -> str:
    if not isinstance(meta[key], str):
        raise ValueError(f"{source}: {META_FILE} key {key!r} must be a string, got {meta[key]!r}")
    return meta[key]
