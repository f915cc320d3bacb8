"""The peer-runtime exports of ``benchmarks/bench_runtimes.py`` compute the shipped networks.

ONNX Runtime and OpenVINO models are built from the shipped float32 file's weights; on real
held-out windows they must predict what TorchScript predicts (fp32 to float rounding, int8 and
bf16 within a bound), so the benchmark cannot silently time a different network. Needs the
``bench`` extra (skipped without it) and the data folder (skipped without it).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

for peer in ("onnxruntime", "openvino", "onnx", "onnxscript"):
    pytest.importorskip(peer)

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))
import runtime_data  # noqa: E402
import runtime_exports  # noqa: E402

WINDOWS = 32
FLOAT_PEERS = ("ort-fp32", "ov-fp32")
INT8_PEERS = ("ort-int8", "ov-int8")


@pytest.fixture(scope="module", params=sorted(runtime_data.MODELS))
def exported(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[runtime_exports.Exports, np.ndarray]]:
    threads, engine = torch.get_num_threads(), torch.backends.quantized.engine
    torch.set_num_threads(1)
    int8_path, float_path = runtime_data.model_paths(request.param, REPO / "models")
    try:
        data = runtime_data.load_windows(int8_path)
    except FileNotFoundError as error:
        pytest.skip(f"no data: {error}")
    exports = runtime_exports.build_exports(int8_path, float_path, tmp_path_factory.mktemp("onnx"), data.calibration)
    windows, _ = runtime_data.subset(data, WINDOWS)
    yield exports, np.ascontiguousarray(windows)
    torch.set_num_threads(threads)
    torch.backends.quantized.engine = engine


def logits_of(exports: runtime_exports.Exports, windows: np.ndarray, names: tuple[str, ...]) -> dict[str, np.ndarray]:
    return {name: run(windows) for name, run in runtime_exports.runners(exports, len(windows), names).items()}


def test_float32_exports_compute_the_shipped_float_network(
    exported: tuple[runtime_exports.Exports, np.ndarray],
) -> None:
    exports, windows = exported
    logits = logits_of(exports, windows, ("ts-fp32", *FLOAT_PEERS))
    reference = logits.pop("ts-fp32")
    assert np.abs(reference).max() > 1.0  # real logits, not a network that outputs zeros
    for name, values in logits.items():
        assert values.shape == reference.shape, name
        assert np.abs(values - reference).max() < 1e-3, name
        assert (values.argmax(1) == reference.argmax(1)).all(), name


def test_int8_and_bf16_exports_agree_with_torchscript(exported: tuple[runtime_exports.Exports, np.ndarray]) -> None:
    exports, windows = exported
    names = ("ts-fp32", "ts-int8", *INT8_PEERS)
    if runtime_exports.openvino_has_bf16():
        names += ("ov-bf16",)
    logits = logits_of(exports, windows, names)
    reference = logits["ts-fp32"]
    scale = float(np.abs(reference).max())
    for name in names[1:]:
        agreement = float((logits[name].argmax(1) == reference.argmax(1)).mean())
        assert agreement >= 0.9, (name, agreement)
        assert np.abs(logits[name] - reference).max() < 0.5 * scale, name
        assert (logits[name].argmax(1) == logits["ts-int8"].argmax(1)).mean() >= 0.9, name
    # one QDQ model in two runtimes: the same int8 network
    assert np.abs(logits["ort-int8"] - logits["ov-int8"]).max() < 0.05 * scale


def test_the_int8_export_quantizes_the_same_layers_as_the_shipped_file(
    exported: tuple[runtime_exports.Exports, np.ndarray],
) -> None:
    import onnx

    from edge_agent.modelfile import load_model

    exports, _ = exported
    shipped_int8_layers = dict(load_model(exports.int8_path).meta)["quantization"]["int8_layers"]
    graph = onnx.load(str(exports.int8_onnx)).graph
    producer = {output: node.op_type for node in graph.node for output in node.output}
    convolutions = [node for node in graph.node if node.op_type == "Conv"]
    int8 = [node for node in convolutions if producer.get(node.input[0]) == "DequantizeLinear"]
    assert len(int8) == len(shipped_int8_layers)
    assert len(convolutions) > len(int8)  # the stem stays float32, as in the shipped file


def test_earlier_files_of_the_same_names_run_as_the_before_runtimes(
    exported: tuple[runtime_exports.Exports, np.ndarray], tmp_path: Path
) -> None:
    import dataclasses
    import shutil

    exports, windows = exported
    for path in (exports.int8_path, exports.float_path):
        shutil.copy(path, tmp_path / path.name)
    with pytest.raises(ValueError, match="unknown runtimes"):
        logits_of(exports, windows, ("ts-int8-before",))  # without a folder there is no earlier file
    earlier = dataclasses.replace(exports, before=tmp_path)
    logits = logits_of(earlier, windows, ("ts-int8", "ts-fp32", *runtime_exports.BEFORE))
    np.testing.assert_array_equal(logits["ts-int8-before"], logits["ts-int8"])  # copies of the same files
    np.testing.assert_array_equal(logits["ts-fp32-before"], logits["ts-fp32"])


def test_an_earlier_fused_file_runs_as_the_fused_before_runtime(
    exported: tuple[runtime_exports.Exports, np.ndarray], tmp_path: Path
) -> None:
    import dataclasses
    import shutil

    exports, windows = exported
    fused = runtime_exports.fused_path(exports.int8_path)
    if runtime_exports.fused_unavailable(exports.int8_path) is not None:
        pytest.skip(f"no fused runtime: {runtime_exports.fused_unavailable(exports.int8_path)}")
    shutil.copy(fused, tmp_path / fused.name)
    earlier = dataclasses.replace(exports, before=tmp_path)
    names = (runtime_exports.FUSED, runtime_exports.FUSED_BEFORE)
    logits = logits_of(earlier, windows, names)
    np.testing.assert_array_equal(logits[runtime_exports.FUSED_BEFORE], logits[runtime_exports.FUSED])
