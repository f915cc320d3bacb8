"""The fused int8 file of a shipped model: the standard int8 file's int8 parameters, the glue in native ops.

:func:`build_fused_torchscript` takes the folded float network (:func:`edge_agent.nn.folding.fold_network`),
the standard int8 TorchScript built from it and the reference windows of its noise floor, and traces
:class:`edge_agent.nn.fused.FusedInt8Net` with the three methods of the standard file (``forward``,
``noise_floor``, ``forward_with_noise_floor``), frozen. Its int8 convolutions and quantizes are the
standard file's (read back from it), so the two files differ only in how the float glue is computed.
Needs the op library (:func:`edge_agent.kernels.load_ops`), at export and wherever the file is loaded.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from edge_agent.kernels import load_ops, ops_status
from edge_agent.nn.channels_last import ResidualNet2d
from edge_agent.nn.fused import FusedInt8Net
from edge_agent.nn.noise_floor import DEFAULT_UNITS, NoiseFloorNet2d
from edge_agent.training.int8_params import read_int8_parameters
from edge_agent.training.noise_floor_export import METHOD, WITH_LOGITS, measure_references

logger = logging.getLogger(__name__)

FUSED_SUFFIX = "_fused"


def fused_network(
    folded: ResidualNet2d,
    int8_module: torch.jit.ScriptModule,
    reference_windows: torch.Tensor,
    units: tuple[int, ...] = DEFAULT_UNITS,
) -> FusedInt8Net:
    """:class:`FusedInt8Net` of ``folded`` with ``int8_module``'s int8 parameters (eval, no gradients)."""
    params = read_int8_parameters(int8_module)
    references = measure_references(folded, reference_windows, units)
    combined = NoiseFloorNet2d(folded, units=units, references=references)
    convs = [(c.weight, c.bias, c.scale, c.zero_point) for c in params.convs]
    return FusedInt8Net(combined, params.quantizes, convs).eval().requires_grad_(False)


def build_fused_torchscript(
    folded: ResidualNet2d,
    int8_module: torch.jit.ScriptModule,
    int8_meta: dict[str, Any],
    reference_windows: torch.Tensor,
) -> tuple[torch.jit.ScriptModule, dict[str, Any]]:
    """The traced, frozen fused module and its meta (``int8_meta`` plus ``kernels``)."""
    if not load_ops():
        raise RuntimeError(f"the fused export needs the op library: {ops_status().reason}")
    network = fused_network(folded, int8_module, reference_windows)
    example = torch.zeros(2, int(int8_meta["channels"]), int(int8_meta["window_samples"]))
    methods = {"forward": (example,), METHOD: (example,), WITH_LOGITS: (example,)}
    with torch.no_grad():
        traced = torch.jit.trace_module(network, methods, check_trace=False, _store_inputs=False)
    scripted = torch.jit.freeze(traced, preserved_attrs=[METHOD, WITH_LOGITS])
    meta = {
        **int8_meta,
        "kernels": {
            "library": "edge_agent",
            "what": "float glue between the int8 convolutions fused into native ops (edge_agent/kernels)",
        },
    }
    return scripted, meta
