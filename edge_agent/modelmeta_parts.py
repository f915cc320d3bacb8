"""The optional and per-kind parts of a model's ``meta.json``, typed (see :mod:`edge_agent.modelmeta`).

Pure Python: :class:`Normalisation`, :class:`NoiseFloor` (the DRSN's noise estimate methods),
:class:`AnomalyScoring` (an anomaly model's threshold, calibration and learned debounce) and :class:`LabelInfo`
(what a label means), each with the parser that builds it and names the key it refuses.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

META_FILE = "meta.json"
SEVERITIES = ("none", "info", "warning", "critical")  # label_info severities (Alertmanager's names, none: healthy)


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
    debounce: tuple[int, int] | None = None  # learned (confirm_k, confirm_n), meta key debounce; None: none


@dataclass(frozen=True)
class LabelInfo:
    """What a label means: ``description`` for people (``inner-race fault, 0.18 mm (0.007 in)``) and
    ``severity`` (one of :data:`SEVERITIES`; None: the file does not say)."""

    description: str
    severity: str | None = None


def parse_normalisation(value: object, source: str) -> Normalisation:
    if not isinstance(value, dict) or not isinstance(value.get("applied"), str):
        raise ValueError(
            f"{source}: {META_FILE} key 'normalisation' must be an object with a string 'applied', got {value!r}"
        )
    stats: dict[str, tuple[float, ...] | None] = {}
    for key in ("mean", "std"):
        numbers_ = value.get(key)
        if numbers_ is not None and (not isinstance(numbers_, list) or not all(is_number(x) for x in numbers_)):
            raise ValueError(
                f"{source}: {META_FILE} key 'normalisation.{key}' must be a list of numbers, got {numbers_!r}"
            )
        stats[key] = None if numbers_ is None else tuple(float(x) for x in numbers_)
    floor = value.get("abstain_below_rms")
    if floor is not None and not is_number(floor):
        raise ValueError(f"{source}: {META_FILE} key 'normalisation.abstain_below_rms' must be a number, got {floor!r}")
    method = value.get("method")
    return Normalisation(
        applied=value["applied"],
        mean=stats["mean"],
        std=stats["std"],
        method=method if isinstance(method, str) else None,
        abstain_below_rms=None if floor is None else float(floor),
    )


def parse_label_info(meta: dict[str, Any], source: str) -> dict[str, LabelInfo]:
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


def parse_anomaly(meta: dict[str, Any], source: str) -> AnomalyScoring:
    threshold, calibration = meta["threshold"], meta["calibration"]
    if not is_number(threshold) or not math.isfinite(threshold):
        raise ValueError(f"{source}: {META_FILE} key 'threshold' must be a finite number, got {threshold!r}")
    if not isinstance(calibration, dict):
        raise ValueError(f"{source}: {META_FILE} key 'calibration' must be an object, got {calibration!r}")
    return AnomalyScoring(float(threshold), MappingProxyType(calibration), _debounce(meta.get("debounce"), source))


def _debounce(value: object, source: str) -> tuple[int, int] | None:
    """``debounce`` (optional): ``{"confirm_k": k, "confirm_n": n, ...}`` with integers ``1 <= k <= n``."""
    if value is None:
        return None
    k, n = (value.get("confirm_k"), value.get("confirm_n")) if isinstance(value, dict) else (None, None)
    booleans = isinstance(k, bool) or isinstance(n, bool)
    if not booleans and isinstance(k, int) and isinstance(n, int) and 1 <= k <= n:
        return k, n
    raise ValueError(
        f"{source}: {META_FILE} key 'debounce' must hold integers 1 <= confirm_k <= confirm_n, got {value!r}"
    )


def parse_noise_floor(value: object, source: str) -> NoiseFloor | None:
    if value is None:
        return None
    if not isinstance(value, dict) or any(value.get(k) != name for k, name in NOISE_FLOOR_METHODS.items()):
        raise ValueError(f"{source}: {META_FILE} key 'noise_floor' must be an object with {NOISE_FLOOR_METHODS}")
    units = value.get("units")
    if not isinstance(units, list) or not units or not all(isinstance(unit, str) for unit in units):
        raise ValueError(f"{source}: {META_FILE} key 'noise_floor.units' must be a non-empty list of strings")
    return NoiseFloor(units=tuple(units))


def is_number(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)
