"""Script a 2-D network with two methods: ``forward`` (logits, as before) and ``noise_floor`` (``(N,)``).

:class:`~edge_agent.nn.noise_floor.NoiseFloorNet2d` computes both in one FX graph (for int8, the graph
is quantised once, so both methods use the same int8 layers and scales); :func:`split_outputs` cuts it
into one graph per output and drops the dead nodes, so ``forward`` runs exactly the classifier's ops and
``noise_floor`` only the layers up to the chosen unit. ``meta.json`` key ``noise_floor`` says the file
has the method (:class:`edge_agent.modelmeta.NoiseFloorInfo` on the runtime side).
"""

from __future__ import annotations

import logging
import statistics
from typing import Any

import torch
from torch import fx, nn

from edge_agent.nn.channels_last import ResidualNet2d
from edge_agent.nn.noise_floor import DEFAULT_UNIT, NoiseFloorNet2d
from edge_agent.training.quantize import check_batch_sizes, int8_module_names, quantize_boundaries, quantize_int8

logger = logging.getLogger(__name__)

METHOD = "noise_floor"
SUMMARY = "mean over channels of the soft thresholds tau of one shrinkage unit, divided by reference"


class TwoMethods(nn.Module):
    """``forward`` from one graph, ``noise_floor`` from another (what gets scripted)."""

    def __init__(self, classify: nn.Module, noise: nn.Module) -> None:
        super().__init__()
        self.classify = classify
        self.noise = noise

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(x)

    def noise_floor(self, x: torch.Tensor) -> torch.Tensor:
        return self.noise(x)


def split_outputs(module: fx.GraphModule) -> tuple[fx.GraphModule, fx.GraphModule]:
    """One ``GraphModule`` per element of ``module``'s 2-tuple output, dead nodes removed."""
    output = next(node for node in module.graph.nodes if node.op == "output")
    if not isinstance(output.args[0], tuple) or len(output.args[0]) != 2:
        raise ValueError("expected a graph returning (logits, noise_floor)")
    parts = []
    for index in range(2):
        graph = fx.Graph()
        mapped = graph.graph_copy(module.graph, {})
        graph.output(mapped[index])
        graph.eliminate_dead_code(is_impure_node=lambda node: node.op in ("placeholder", "output"))
        parts.append(fx.GraphModule(module, graph))
    return parts[0], parts[1]


def measure_reference(network: ResidualNet2d, windows: torch.Tensor, unit: int = DEFAULT_UNIT) -> float:
    """Median over ``windows`` (clean) of the un-normalised noise floor of ``network``'s unit ``unit``."""
    combined = NoiseFloorNet2d(network, unit=unit)
    with torch.inference_mode():
        values = torch.cat([combined(chunk)[1] for chunk in windows.split(256)])
    return float(statistics.median(values.tolist()))


def build_two_method_torchscript(
    network: ResidualNet2d,
    meta: dict[str, Any],
    *,
    reference_windows: torch.Tensor,
    reference_data: str,
    calibration: torch.Tensor | None = None,
    engine: str = "onednn",
    quantize_stem: bool = False,
    unit: int = DEFAULT_UNIT,
) -> tuple[torch.jit.ScriptModule, dict[str, Any]]:
    """float32 (``calibration`` None) or int8 TorchScript of ``network`` with a ``noise_floor`` method, and its meta.

    ``meta`` is copied and only extended (unknown keys ride along): ``graph_layout`` is expected to be
    set by the caller; this adds ``noise_floor`` and the precision keys.
    """
    reference = measure_reference(network, reference_windows, unit)
    combined = NoiseFloorNet2d(network, unit=unit, reference=reference)
    example = torch.zeros(2, meta["channels"], meta["window_samples"])
    meta = {**meta}
    if calibration is None:
        graph = fx.symbolic_trace(combined)
        meta.update(precision="float32", quantized_engine=None)
    else:
        graph = quantize_int8(combined, calibration, engine=engine, quantize_stem=quantize_stem)
        meta.update(precision="int8", quantized_engine=engine)
        meta["quantization"] = {
            **meta.get("quantization", {}),
            "method": "FX static post-training quantisation, activations quint8, weights qint8 per tensor",
            "int8_layers": int8_module_names(network, quantize_stem=quantize_stem),
            "calibration_windows": len(calibration),
        }
    classify, noise = split_outputs(graph)
    if calibration is not None:
        meta["quantization"].update(quantize_boundaries(classify))
    meta["noise_floor"] = {
        "method": METHOD,
        "unit": f"blocks.{unit}",
        "summary": SUMMARY,
        "reference": reference,
        "reference_data": reference_data,
        "output": "(N,) float32 per window; 1.0 = the median of clean training windows; higher = more noise",
    }
    module = TwoMethods(classify, noise).eval()
    with torch.no_grad():
        traced = torch.jit.trace_module(
            module, {"forward": (example,), METHOD: (example,)}, check_trace=False, _store_inputs=False
        )
    scripted = torch.jit.freeze(traced, preserved_attrs=[METHOD])
    check_batch_sizes(scripted, classify, example.shape[1:])
    _check_noise_floor(scripted, noise, example.shape[1:])
    return scripted, meta


def _check_noise_floor(scripted: torch.jit.ScriptModule, reference: nn.Module, window_shape: torch.Size) -> None:
    generator = torch.Generator().manual_seed(1)
    for batch in (1, 32):
        inputs = torch.randn((batch, *window_shape), generator=generator)
        with torch.inference_mode():
            got, expected = scripted.noise_floor(inputs), reference(inputs)
        if got.shape != (batch,) or float((got - expected).abs().max()) > 1e-4:
            raise ValueError(f"scripted noise_floor differs from eager at batch {batch}: {tuple(got.shape)}")
