"""Runtime loader of exported model files (TorchScript zip with ``meta.json`` in its extra files).

Used by the running agent: imports neither :mod:`edge_agent.nn` nor :mod:`edge_agent.training`,
and reads ``meta.json`` without torch. :func:`load_model` sets the quantized engine named in
the meta before ``torch.jit.load``, because that setting decides how int8 weights are packed.
Every error is a ``FileNotFoundError`` or ``ValueError`` naming the file and the bad key/value.
The meta itself (:class:`~edge_agent.modelmeta.ModelMeta`) is parsed in :mod:`edge_agent.modelmeta`.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge_agent.common.errors import first_line
from edge_agent.kernels import KernelsUnavailableError, needs_ops, require_ops
from edge_agent.modelmeta import (
    KINDS,
    META_FILE,
    PRECISIONS,
    REQUIRED_KEYS,
    SCHEMA_VERSION,
    SUPPORTED_SCHEMAS,
    ModelMeta,
    parse_meta,
    validate_meta,
)

if TYPE_CHECKING:
    import torch

__all__ = [
    "KINDS",
    "META_FILE",
    "PRECISIONS",
    "REQUIRED_KEYS",
    "RUNTIME_KINDS",
    "SCHEMA_VERSION",
    "SUPPORTED_SCHEMAS",
    "LoadedModel",
    "ModelMeta",
    "load_model",
    "model_engine",
    "parse_meta",
    "read_meta",
    "validate_meta",
]

logger = logging.getLogger(__name__)

RUNTIME_KINDS = ("classifier", "anomaly")  # the kinds the inference worker runs (edge_agent.modelmeta.KINDS)
# torch 2.13 deprecates TorchScript and the quantized tensor types this runtime loads (models are
# pinned to torch==2.13.0): these two warnings, and only these, are silenced around loading a model.
JIT_LOAD_DEPRECATED = r"`torch\.jit\.load` is deprecated"
QUANTIZED_TYPES_DEPRECATED = r"torch\.quantize_per_tensor, torch\.quantize_per_channel and other quantized tensor"


@dataclass(frozen=True)
class LoadedModel:
    """A loaded model file: the TorchScript ``module`` (eval), its typed ``meta`` and the file's ``sha256``."""

    path: Path
    module: torch.jit.ScriptModule
    meta: ModelMeta
    sha256: str

    @property
    def labels(self) -> list[str]:
        return list(self.meta.labels)

    @property
    def window_samples(self) -> int:
        return self.meta.window_samples

    @property
    def channels(self) -> int:
        return self.meta.channels


def read_meta(path: str | Path) -> ModelMeta:
    """The validated ``meta.json`` of a model file, read from the zip without building the model (nor torch)."""
    path = Path(path)
    return parse_meta(_meta_from_bytes(_read_file(path), path), source=str(path))


def check_runtime_kind(meta: ModelMeta, path: str | Path) -> None:
    """``ValueError`` if the running agent cannot run a model of ``meta.kind`` (the loader reads every kind)."""
    if meta.kind not in RUNTIME_KINDS:
        supported = ", ".join(repr(kind) for kind in RUNTIME_KINDS)
        raise ValueError(f"{path}: {META_FILE} key 'kind' is {meta.kind!r}; this agent runs: {supported}")


def load_runtime_model(path: str | Path, *, key: str) -> LoadedModel:
    """What the agent loads at start and on reload: a model it can run; an error names ``key`` and the file."""
    try:
        loaded = load_model(path)
        check_runtime_kind(loaded.meta, path)
        return loaded
    except (OSError, ValueError) as error:
        raise ValueError(f"{key} = {str(path)!r}: {first_line(error)}") from error


def load_model(
    path: str | Path, *, expected_sha256: str | None = None, check: bool = True, fallback: bool = True
) -> LoadedModel:
    """Validate the meta, set ``torch.backends.quantized.engine`` from it, then ``torch.jit.load``.

    ``expected_sha256`` pins the file's content; ``check`` runs one all-zero window through
    the module and compares the output shape with the meta. A fused int8 file (:mod:`edge_agent.kernels`)
    whose op library does not load is replaced by the standard int8 file it names, with a warning (same
    predictions up to int8 rounding, slower), unless ``fallback`` is false: then
    :class:`~edge_agent.kernels.KernelsUnavailableError` (a ``ValueError``).
    """
    import torch

    path = Path(path)
    data = _read_file(path)
    sha256 = hashlib.sha256(data).hexdigest()
    if expected_sha256 is not None and sha256 != expected_sha256.lower():
        raise ValueError(f"{path}: sha256 is {sha256}, expected {expected_sha256}")
    meta = parse_meta(_meta_from_bytes(data, path), source=str(path))
    try:
        require_ops(meta.document, path)  # a fused file's ops must be registered before torch.jit.load
    except KernelsUnavailableError as error:
        if not fallback or error.fallback is None:
            raise
        logger.warning("%s; running the standard int8 file %s instead (slower)", error, error.fallback)
        return load_model(error.fallback, check=check, fallback=False)
    _set_engine(meta.quantized_engine, path)
    _legacy_executor()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=JIT_LOAD_DEPRECATED, category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=QUANTIZED_TYPES_DEPRECATED, category=UserWarning)
        if meta.precision == "int8":
            _quantized_warning_once()
        try:
            module = torch.jit.load(io.BytesIO(data), map_location="cpu")
        except RuntimeError as error:
            raise ValueError(f"{path}: not a loadable TorchScript model: {first_line(error)}") from error
        module.eval()
        if check:
            _check_output_shape(module, meta, path)
    logger.info("loaded model %s (%s, %s, sha256 %s)", meta.name, meta.precision, path, sha256[:12])
    return LoadedModel(path=path, module=module, meta=meta, sha256=sha256)


def _legacy_executor() -> None:
    """Run TorchScript methods on the legacy graph executor, not the profiling one (process-wide, set before a
    method's first call, when its executor is made).

    The profiling executor records a method's first calls and then keeps, per method (``forward``,
    ``forward_with_noise_floor``, ``noise_floor``), a profiled and an optimised copy of its graph with shape
    guards and fallbacks: 4.4 MiB of RSS for the shipped int8 CWRU file, 19.5 MiB for the four shipped files
    (benchmarks/bench_memory.py). The exported graphs are frozen and folded and nothing fuses them on a CPU, so
    the legacy executor runs the same kernels: bit-identical outputs (tests/unit/test_runtime_memory.py)."""
    import torch

    torch._C._jit_set_profiling_executor(False)


def _quantized_warning_once() -> None:
    """Raise torch's warn-once about quantized tensor types here, from Python, where the filter above applies.

    Raised first inside ``torch.jit.load`` (C++ without a Python warning handler), it bypasses
    :mod:`warnings` and is printed straight to stderr; once raised, torch never repeats it.
    """
    import torch

    torch.quantize_per_tensor(torch.zeros(1), 1.0, 0, torch.qint8)


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


def _check_output_shape(module: torch.jit.ScriptModule, meta: ModelMeta, path: Path) -> None:
    import torch

    inputs = torch.zeros(1, meta.channels, meta.window_samples)
    try:
        with torch.inference_mode():
            output = module(inputs)
    except RuntimeError as error:
        raise ValueError(
            f"{path}: model fails on a window shaped {tuple(inputs.shape)}: {first_line(error)}"
        ) from error
    expected = (1,) if meta.kind == "anomaly" else (1, meta.output_width)  # a score, or a logit per label
    if tuple(output.shape) != expected:
        raise ValueError(f"{path}: model returns shape {tuple(output.shape)}, meta.json labels imply {expected}")
    if meta.noise_floor is not None:
        try:
            with torch.inference_mode():
                both = module.forward_with_noise_floor(inputs)
                floor = module.noise_floor(inputs)
        except (AttributeError, RuntimeError) as error:
            raise ValueError(
                f"{path}: {META_FILE} has 'noise_floor' but its methods fail: {first_line(error)}"
            ) from error
        if tuple(floor.shape) != (1,) or tuple(both[1].shape) != (1,):
            raise ValueError(f"{path}: noise_floor returns shape {tuple(floor.shape)}, expected (1,)")


def model_engine(loaded: LoadedModel) -> str:
    """The quantized engine a model file was built for, ``none`` for float32 (a metric label);
    ``+edge_agent`` added for a fused file (its glue runs in the op library)."""
    fused = needs_ops(loaded.meta.document, loaded.path)
    return f"{loaded.meta.engine}+edge_agent" if fused else loaded.meta.engine


def model_info_labels(name: str, loaded: LoadedModel) -> tuple[str, str, str, str]:
    """The ``edge_agent_model_info`` labels of a loaded model: model, sha256, precision, engine."""
    return name, loaded.sha256, loaded.meta.precision, model_engine(loaded)
