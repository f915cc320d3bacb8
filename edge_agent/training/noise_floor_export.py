"""Script a 2-D network with ``forward`` (logits, as before), ``noise_floor`` (``(N,)``) and both in one pass.

:class:`~edge_agent.nn.noise_floor.NoiseFloorNet2d` computes both in one FX graph (for int8, the graph
is quantised once, so every method uses the same int8 layers and scales); :func:`split_outputs` cuts it
into one graph per output and drops the dead nodes, so ``forward`` runs exactly the classifier's ops and
``noise_floor`` only the layers up to the last chosen unit; ``forward_with_noise_floor`` is the whole
graph (what the agent calls: the noise floor costs a few reductions, not a second pass). ``meta.json``
key ``noise_floor`` says the file has the methods (:class:`edge_agent.modelmeta_parts.NoiseFloor`).
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import fx, nn

from edge_agent.nn.channels_last import ResidualNet2d
from edge_agent.nn.noise_floor import DEFAULT_UNITS, NoiseFloorNet2d
from edge_agent.training.int8_params import Int8Parameters, write_int8_parameters
from edge_agent.training.quantize import check_batch_sizes, int8_module_names, quantize_boundaries, quantize_int8

logger = logging.getLogger(__name__)

METHOD = "noise_floor"
WITH_LOGITS = "forward_with_noise_floor"
SUMMARY = "geometric mean over the channels of the units of tau / (that channel's median tau on the reference windows)"


class ThreeMethods(nn.Module):
    """``forward`` and ``noise_floor`` from their own graphs, ``forward_with_noise_floor`` from both (scripted)."""

    def __init__(self, classify: nn.Module, noise: nn.Module, both: nn.Module) -> None:
        super().__init__()
        self.classify = classify
        self.noise = noise
        self.both = both

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(x)

    def noise_floor(self, x: torch.Tensor) -> torch.Tensor:
        return self.noise(x)

    def forward_with_noise_floor(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.both(x)


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


def measure_references(
    network: ResidualNet2d, windows: torch.Tensor, units: tuple[int, ...] = DEFAULT_UNITS
) -> list[torch.Tensor]:
    """Per unit in ``units``, each channel's median ``tau`` over ``windows`` (clean)."""
    probe = NoiseFloorNet2d(network, units=units)
    with torch.inference_mode():
        parts = [probe.thresholds(chunk) for chunk in windows.split(256)]
    return [torch.cat([part[i] for part in parts]).median(dim=0).values.clamp_min(1e-12) for i in range(len(units))]


def build_noise_floor_torchscript(
    network: ResidualNet2d,
    meta: dict[str, Any],
    *,
    reference_windows: torch.Tensor,
    reference_data: str,
    calibration: torch.Tensor | None = None,
    engine: str = "onednn",
    quantize_stem: bool = False,
    units: tuple[int, ...] = DEFAULT_UNITS,
    int8_parameters: Int8Parameters | None = None,
) -> tuple[torch.jit.ScriptModule, dict[str, Any]]:
    """float32 (``calibration`` None) or int8 TorchScript of ``network`` with a ``noise_floor`` method, and its meta.

    ``int8_parameters`` (int8 only): scales, zero points and int8 weights to use instead of the calibrated
    ones (a previous int8 file of the same weights, :mod:`edge_agent.training.int8_params`).

    ``meta`` is copied and only extended (unknown keys ride along): ``graph_layout`` is expected to be
    set by the caller; this adds ``noise_floor`` and the precision keys.
    """
    references = measure_references(network, reference_windows, units)
    combined = NoiseFloorNet2d(network, units=units, references=references)
    example = torch.zeros(2, meta["channels"], meta["window_samples"])
    meta = {**meta}
    if calibration is None:
        graph = fx.symbolic_trace(combined)
        meta.update(precision="float32", quantized_engine=None)
    else:
        graph = quantize_int8(combined, calibration, engine=engine, quantize_stem=quantize_stem)
        if int8_parameters is not None:
            write_int8_parameters(graph, int8_parameters)
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
        "with_logits": WITH_LOGITS,
        "units": [f"blocks.{unit}" for unit in units],
        "channels": int(sum(len(r) for r in references)),
        "summary": SUMMARY,
        "reference_data": reference_data,
        "output": "(N,) float32 per window; 1.0 = as clean as the reference windows; higher = more noise",
    }
    module = ThreeMethods(classify, noise, graph).eval()
    methods = {"forward": (example,), METHOD: (example,), WITH_LOGITS: (example,)}
    with torch.no_grad():
        traced = torch.jit.trace_module(module, methods, check_trace=False, _store_inputs=False)
    scripted = torch.jit.freeze(traced, preserved_attrs=[METHOD, WITH_LOGITS])
    check_batch_sizes(scripted, classify, example.shape[1:])
    _check_noise_floor(scripted, noise, example.shape[1:])
    return scripted, meta


def _check_noise_floor(scripted: torch.jit.ScriptModule, reference: nn.Module, window_shape: torch.Size) -> None:
    generator = torch.Generator().manual_seed(1)
    for batch in (1, 32):
        inputs = torch.randn((batch, *window_shape), generator=generator)
        with torch.inference_mode():
            got, expected = scripted.noise_floor(inputs), reference(inputs)
            logits, both = scripted.forward_with_noise_floor(inputs)
            alone = scripted(inputs)
        if got.shape != (batch,) or float((got - expected).abs().max()) > 1e-4:
            raise ValueError(f"scripted noise_floor differs from eager at batch {batch}: {tuple(got.shape)}")
        if float((both - got).abs().max()) > 1e-5 or float((logits - alone).abs().max()) > 1e-5:
            raise ValueError(f"forward_with_noise_floor differs from forward and noise_floor at batch {batch}")
