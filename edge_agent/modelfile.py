"""Runtime loader of exported model files (TorchScript zip with ``meta.json`` in its extra files).

Used by the running agent: imports neither :mod:`edge_agent.nn` nor :mod:`edge_agent.training`,
and reads ``meta.json`` without torch. :func:`load_model` sets the quantized engine named in
the meta before ``torch.jit.load``, because that setting decides how int8 weights are packed.
Every error is a ``FileNotFoundError`` or ``ValueError`` naming the file and the bad key/value.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import numbers
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

META_FILE = "meta.json"
SCHEMA_VERSION = 1
SUPPORTED_SCHEMAS = (1,)
KINDS = ("classifier", "anomaly")  # anomaly: scores (N,) and a "threshold", no "labels"
PRECISIONS = ("float32", "int8")
REQUIRED_KEYS = (
    "schema",
    "name",
    "kind",
    "labels",
    "sample_rate_hz",
    "window_samples",
    "hop_samples",
    "channels",
    "input_units",
    "normalisation",
    "precision",
    "quantized_engine",
)


@dataclass(frozen=True)
class LoadedModel:
    """A loaded model file: the TorchScript ``module`` (eval), its ``meta`` and the file's ``sha256``."""

    path: Path
    module: torch.jit.ScriptModule
    meta: dict[str, Any]
    sha256: str

    @property
    def labels(self) -> list[str]:
        return list(self.meta["labels"])

    @property
    def window_samples(self) -> int:
        return int(self.meta["window_samples"])

    @property
    def channels(self) -> int:
        return int(self.meta["channels"])


def read_meta(path: str | Path) -> dict[str, Any]:
    """The validated ``meta.json`` of a model file, read from the zip without building the model."""
    path = Path(path)
    meta = _meta_from_bytes(_read_file(path), path)
    validate_meta(meta, source=str(path))
    return meta


def load_model(path: str | Path, *, expected_sha256: str | None = None, check: bool = True) -> LoadedModel:
    """Validate the meta, set ``torch.backends.quantized.engine`` from it, then ``torch.jit.load``.

    ``expected_sha256`` pins the file's content; ``check`` runs one all-zero window through
    the module and compares the output shape with the meta.
    """
    import torch

    path = Path(path)
    data = _read_file(path)
    sha256 = hashlib.sha256(data).hexdigest()
    if expected_sha256 is not None and sha256 != expected_sha256.lower():
        raise ValueError(f"{path}: sha256 is {sha256}, expected {expected_sha256}")
    meta = _meta_from_bytes(data, path)
    validate_meta(meta, source=str(path))
    _set_engine(meta["quantized_engine"], path)
    try:
        module = torch.jit.load(io.BytesIO(data), map_location="cpu")
    except RuntimeError as error:
        raise ValueError(f"{path}: not a loadable TorchScript model: {_first_line(error)}") from error
    module.eval()
    if check:
        _check_output_shape(module, meta, path)
    logger.info("loaded model %s (%s, %s, sha256 %s)", meta["name"], meta["precision"], path, sha256[:12])
    return LoadedModel(path=path, module=module, meta=meta, sha256=sha256)


def validate_meta(meta: object, *, source: str) -> None:
    """Raise ``ValueError`` naming ``source`` and the first bad key if ``meta`` is not a usable model meta."""
    if not isinstance(meta, dict):
        raise ValueError(f"{source}: {META_FILE} must hold a JSON object, got {type(meta).__name__}")
    anomaly = meta.get("kind") == "anomaly"
    required = [key for key in REQUIRED_KEYS if not (anomaly and key == "labels")] + (["threshold"] if anomaly else [])
    missing = [key for key in required if key not in meta]
    if missing:
        raise ValueError(f"{source}: {META_FILE} lacks required key(s): {', '.join(missing)}")
    _check_choice(meta, "schema", SUPPORTED_SCHEMAS, source)
    _check_choice(meta, "kind", KINDS, source)
    _check_choice(meta, "precision", PRECISIONS, source)
    labels = meta.get("labels") if not anomaly else ["score"]
    if not isinstance(labels, list) or not labels or not all(isinstance(label, str) for label in labels):
        raise ValueError(f"{source}: {META_FILE} key 'labels' must be a non-empty list of strings, got {labels!r}")
    threshold = meta.get("threshold", 0.0)
    if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real):
        raise ValueError(f"{source}: {META_FILE} key 'threshold' must be a number, got {threshold!r}")
    for key in ("window_samples", "hop_samples", "channels"):
        value = meta[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{source}: {META_FILE} key {key!r} must be a positive integer, got {value!r}")
    rate = meta["sample_rate_hz"]
    if isinstance(rate, bool) or not isinstance(rate, numbers.Real) or rate <= 0:
        raise ValueError(f"{source}: {META_FILE} key 'sample_rate_hz' must be a positive number, got {rate!r}")
    engine = meta["quantized_engine"]
    if meta["precision"] == "int8" and not isinstance(engine, str):
        raise ValueError(f"{source}: {META_FILE} key 'quantized_engine' must name an engine for int8, got {engine!r}")
    if engine is not None and not isinstance(engine, str):
        raise ValueError(f"{source}: {META_FILE} key 'quantized_engine' must be a string or null, got {engine!r}")


def _check_choice(meta: dict[str, Any], key: str, allowed: tuple[object, ...], source: str) -> None:
    if meta[key] not in allowed:
        choices = ", ".join(repr(a) for a in allowed)
        raise ValueError(f"{source}: {META_FILE} key {key!r} is {meta[key]!r}; supported: {choices}")


def _read_file(path: Path) -> bytes:
    if not path.is_file():
        raise FileNotFoundError(f"model file {path} not found")
    return path.read_bytes()


def _meta_from_bytes(data: bytes, path: Path) -> Any:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = archive.namelist()
            if not any("/code/" in name for name in names):
                raise ValueError(
                    f"{path} is a zip file but not a TorchScript archive (no code/; a torch.save checkpoint?)"
                )
            meta_names = [name for name in names if name.endswith(f"/extra/{META_FILE}")]
            if not meta_names:
                raise ValueError(f"{path} has no {META_FILE} in its extra files; export it with `edge-agent export`")
            damaged = archive.testzip()  # torch.jit.load does not check CRCs: a flipped weight bit would load
            if damaged is not None:
                raise ValueError(f"{path} is corrupt: CRC-32 mismatch in {damaged}")
            text = archive.read(meta_names[0]).decode("utf-8")
    except zipfile.BadZipFile as error:
        raise ValueError(f"{path} is not a TorchScript file (corrupt or truncated zip: {error})") from error
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: {META_FILE} is not valid JSON: {error}") from error


def _set_engine(engine: str | None, path: Path) -> None:
    import torch

    if engine is None:
        return
    supported = torch.backends.quantized.supported_engines
    if engine not in supported:
        raise ValueError(
            f"{path}: {META_FILE} key 'quantized_engine' is {engine!r}, which this torch build does not support "
            f"(supported: {', '.join(supported)})"
        )
    if torch.backends.quantized.engine != engine:
        logger.info("setting torch.backends.quantized.engine to %s for %s", engine, path)
        torch.backends.quantized.engine = engine


def _check_output_shape(module: torch.jit.ScriptModule, meta: dict[str, Any], path: Path) -> None:
    import torch

    inputs = torch.zeros(1, meta["channels"], meta["window_samples"])
    try:
        with torch.inference_mode():
            output = module(inputs)
    except RuntimeError as error:
        raise ValueError(
            f"{path}: model fails on a window shaped {tuple(inputs.shape)}: {_first_line(error)}"
        ) from error
    expected = (1,) if meta["kind"] == "anomaly" else (1, len(meta["labels"]))
    if tuple(output.shape) != expected:
        raise ValueError(f"{path}: model returns shape {tuple(output.shape)}, meta.json labels imply {expected}")


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def model_engine(loaded: LoadedModel) -> str:
    """The quantized engine a model file was built for, ``none`` for float32 (a metric label)."""
    return str(loaded.meta.get("quantized_engine") or "none")
