"""The shipped networks as ONNX Runtime and OpenVINO models, from the same weights (benchmark-only).

Used by ``benchmarks/bench_runtimes.py`` and its test. Needs the ``bench`` extra
(``pip install -e '.[bench]'``: onnxruntime, openvino, onnx, onnxscript); the agent never imports this.

- **Weights**: the eager 2-D channels-last network is rebuilt from the shipped float32 file
  (:func:`edge_agent.training.unfreeze.network_from_frozen`), so every peer runs the weights in ``models/``.
- **ONNX float32**: ``torch.onnx.export`` (the dynamo exporter, torch 2.13, needs onnxscript) of that
  network, dynamic batch; the graph is the 2-D channels-last form (``(N, C, 1, L)``, kernels ``(1, k)``).
- **ONNX int8**: ONNX Runtime's static post-training quantisation in QDQ format of the same layers as
  the shipped int8 file (the residual units' convolutions; stem, front-end, thresholds and head stay
  float32), the same scheme (uint8 activations, int8 weights per tensor), MinMax calibration on the
  windows the caller passes (the shipped file's own calibration recipe).
- **OpenVINO**: the same ONNX files read by OpenVINO; int8 is the QDQ model (OpenVINO's CPU plugin runs
  the quantise/dequantise pairs around a convolution as an int8 convolution). NNCF, OpenVINO's own
  post-training quantiser, is a separate package and not installed. One model compiled per batch size
  (static shapes), ``INFERENCE_PRECISION_HINT`` ``f32`` or ``bf16`` set explicitly (the CPU plugin's
  default is bf16 on AMX CPUs).

Every runtime gets one thread: ORT intra/inter-op threads 1, OpenVINO ``INFERENCE_NUM_THREADS`` 1 and
one stream; the caller sets ``torch.set_num_threads(1)`` for TorchScript.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

logger = logging.getLogger(__name__)

Runner = Callable[[np.ndarray], np.ndarray]
"""Logits ``(N, classes)`` float32 of windows ``(N, C, L)`` float32 (C-contiguous)."""
RUNTIMES = ("ts-int8", "ts-int8-fused", "ts-fp32", "ort-fp32", "ort-int8", "ov-fp32", "ov-int8", "ov-bf16")
FUSED = "ts-int8-fused"
"""The fused int8 file beside the shipped one (``<stem>_fused.pt``; needs the op library, ``make kernels``)."""
BEFORE = ("ts-int8-before", "ts-fp32-before")
"""Earlier TorchScript files of the same model (``Exports.before``), timed in the same loop."""
FUSED_BEFORE = "ts-int8-fused-before"
"""An earlier fused file of the same name in ``Exports.before`` (where the folder has one)."""
BF16_FLAGS = ("avx512_bf16", "amx_bf16")


@dataclass(frozen=True)
class Exports:
    """The shipped pair and the peer models built from it."""

    int8_path: Path
    float_path: Path
    float_onnx: Path
    int8_onnx: Path
    channels: int
    window_samples: int
    labels: tuple[str, ...]
    before: Path | None = None  # a folder with earlier files of the same names (the "-before" runtimes)


def export_float_onnx(float_path: Path, out: Path) -> tuple[int, int, tuple[str, ...]]:
    """ONNX float32 of the network in ``float_path``; returns (channels, window_samples, labels)."""
    from edge_agent.training.unfreeze import network_from_frozen

    network, meta = network_from_frozen(float_path)
    channels, window_samples = int(meta["channels"]), int(meta["window_samples"])
    example = torch.zeros(2, channels, window_samples)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            network,
            (example,),
            dynamo=True,
            input_names=["x"],
            output_names=["logits"],
            dynamic_shapes={"x": {0: torch.export.Dim("batch", min=1, max=4096)}},
            optimize=True,
            verbose=False,
        )
    program.save(str(out))
    return channels, window_samples, tuple(meta["labels"])


def quantize_qdq(float_onnx: Path, out: Path, calibration: np.ndarray, int8_layers: list[str]) -> None:
    """Static QDQ int8 of the convolutions ``int8_layers`` of ``float_onnx``, calibrated on ``calibration``."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Windows(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter(np.array_split(calibration.astype(np.float32), max(1, len(calibration) // 32)))

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self.batches, None)
            return None if batch is None else {"x": np.ascontiguousarray(batch)}

    quantize_static(
        str(float_onnx),
        str(out),
        Windows(),
        quant_format=QuantFormat.QDQ,
        op_types_to_quantize=["Conv"],
        nodes_to_exclude=convolutions_to_keep_float(float_onnx, int8_layers),
        per_channel=False,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
    )


def convolutions_to_keep_float(path: Path, int8_layers: list[str]) -> list[str]:
    """Names of the Conv nodes of ``path`` outside the shipped file's ``int8_layers`` (stem, front-end).

    A node's module comes from its ``namespace`` metadata (``.../blocks.0: ...Block2d/blocks.0.conv2: ...``).
    The exporter folds ``bn2`` into ``conv1`` and names the result after ``blocks.N.bn2``, so a node counts as
    int8 when its module is listed or is a sibling of a listed layer.
    """
    import onnx

    layers = set(int8_layers)
    names = []
    for node in onnx.load(str(path)).graph.node:
        if node.op_type != "Conv":
            continue
        scope = next((p.value for p in node.metadata_props if p.key == "namespace"), "")
        modules = [
            part.split(":")[0].strip()
            for part in scope.split("/")
            if not part.split(":")[-1].strip().startswith("aten.")
        ]
        module = modules[-1] if modules else ""
        parent = module.rsplit(".", 1)[0] if "." in module else None
        if module not in layers and not (parent and any(layer.startswith(parent + ".") for layer in layers)):
            names.append(node.name)
    return names


def build_exports(int8_path: Path, float_path: Path, folder: Path, calibration: np.ndarray) -> Exports:
    """Export ``float_path``'s weights to ONNX float32 and QDQ int8 under ``folder``."""
    stem = float_path.stem
    float_onnx, int8_onnx = folder / f"{stem}.onnx", folder / f"{stem}_qdq.onnx"
    from edge_agent.modelfile import load_model

    channels, window_samples, labels = export_float_onnx(float_path, float_onnx)
    int8_layers = list(dict(load_model(int8_path).meta)["quantization"]["int8_layers"])
    quantize_qdq(float_onnx, int8_onnx, calibration, int8_layers)
    return Exports(int8_path, float_path, float_onnx, int8_onnx, channels, window_samples, labels)


def fused_path(int8_path: Path) -> Path:
    """The fused int8 file of the shipped int8 file ``int8_path`` (edge_agent.training.fused_export)."""
    return int8_path.with_name(f"{int8_path.stem}_fused.pt")


def fused_unavailable(int8_path: Path) -> str | None:
    """Why the fused runtime cannot run for ``int8_path`` (no file, no op library), ``None`` if it can."""
    from edge_agent.kernels import load_ops, ops_status

    if not fused_path(int8_path).is_file():
        return f"no {fused_path(int8_path).name}"
    return None if load_ops() else f"op library not loaded: {ops_status().reason}"


def torchscript_runner(path: Path) -> Runner:
    """The shipped file as the agent loads it (engine from its meta before ``torch.jit.load``)."""
    from edge_agent.modelfile import load_model

    module = load_model(path).module

    def run(windows: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return module(torch.from_numpy(windows)).numpy()

    return run


def ort_runner(path: Path) -> Runner:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def run(windows: np.ndarray) -> np.ndarray:
        return session.run(None, {"x": windows})[0]

    return run


def openvino_has_bf16() -> bool:
    """Whether OpenVINO's CPU plugin runs bf16 here (AVX512_BF16 or AMX)."""
    import openvino as ov

    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def openvino_runner(path: Path, batch: int, precision: str) -> Runner:
    """``path`` compiled by OpenVINO's CPU plugin for batches of exactly ``batch``; ``precision`` f32 or bf16."""
    import openvino as ov

    core = ov.Core()
    model = core.read_model(str(path))
    model.reshape({model.input(0).get_any_name(): ov.PartialShape(list(_static_shape(model, batch)))})
    config = {
        "INFERENCE_NUM_THREADS": 1,
        "NUM_STREAMS": 1,
        "PERFORMANCE_HINT": "LATENCY",
        "INFERENCE_PRECISION_HINT": precision,
        "ENABLE_HYPER_THREADING": False,
    }
    request = core.compile_model(model, "CPU", config).create_infer_request()

    def run(windows: np.ndarray) -> np.ndarray:
        return request.infer({0: windows}, share_inputs=True)[0].copy()

    return run


def _static_shape(model: object, batch: int) -> tuple[int, ...]:
    shape = model.input(0).get_partial_shape()  # type: ignore[attr-defined]
    return (batch, *(int(dim.get_length()) for dim in list(shape)[1:]))


def runners(exports: Exports, batch: int, names: tuple[str, ...]) -> dict[str, Runner]:
    """A runner per name of :data:`RUNTIMES` in ``names``; OpenVINO ones take batches of ``batch`` only."""
    makers: dict[str, Callable[[], Runner]] = {
        "ts-int8": lambda: torchscript_runner(exports.int8_path),
        FUSED: lambda: torchscript_runner(fused_path(exports.int8_path)),
        "ts-fp32": lambda: torchscript_runner(exports.float_path),
        "ort-fp32": lambda: ort_runner(exports.float_onnx),
        "ort-int8": lambda: ort_runner(exports.int8_onnx),
        "ov-fp32": lambda: openvino_runner(exports.float_onnx, batch, "f32"),
        "ov-int8": lambda: openvino_runner(exports.int8_onnx, batch, "f32"),
        "ov-bf16": lambda: openvino_runner(exports.float_onnx, batch, "bf16"),
    }
    if exports.before is not None:
        before = exports.before
        makers["ts-int8-before"] = lambda: torchscript_runner(before / exports.int8_path.name)
        makers["ts-fp32-before"] = lambda: torchscript_runner(before / exports.float_path.name)
        makers[FUSED_BEFORE] = lambda: torchscript_runner(before / fused_path(exports.int8_path).name)
    unknown = set(names) - set(makers)
    if unknown:
        raise ValueError(f"unknown runtimes {sorted(unknown)}; known: {', '.join(RUNTIMES)}")
    return {name: makers[name]() for name in names}


def logits_in_batches(run: Runner, windows: np.ndarray, batch: int) -> np.ndarray:
    """Logits of all ``windows`` through ``run`` in batches of exactly ``batch`` (the last one padded)."""
    parts = []
    for start in range(0, len(windows), batch):
        chunk = windows[start : start + batch]
        missing = batch - len(chunk)
        if missing:
            chunk = np.concatenate([chunk, np.zeros((missing, *chunk.shape[1:]), chunk.dtype)])
        parts.append(run(np.ascontiguousarray(chunk))[: batch - missing])
    return np.concatenate(parts)
