"""Carry an int8 file's quantisation over to a re-export of the same weights: same int8 values, same predictions.

Calibrating again after an exact rewrite of the float graph (:mod:`edge_agent.nn.folding`) does not give
the same scales: the histogram observers move a bin when an activation changes in its last float bit,
and one moved input scale (of six) changed 0.6 % of the CWRU predictions at -10 dB. So the fast export
reads every quantize's ``(scale, zero point)`` and every int8 convolution's packed weights, bias and
output ``(scale, zero point)`` from the previous int8 TorchScript, in graph order, and writes them into
the newly converted FX graph, after checking that the weights are the same weights
(``check_weights``; :class:`OtherWeightsError` if not).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch.ao.nn import intrinsic, quantized
from torch.fx import GraphModule

logger = logging.getLogger(__name__)

CONV_KINDS = ("quantized::conv2d_relu", "quantized::conv2d")


class OtherWeightsError(ValueError):
    """The int8 parameters were quantised from other float weights than the graph's."""


@dataclass(frozen=True)
class Int8Conv:
    weight: torch.Tensor  # quantized, per channel
    bias: torch.Tensor | None
    scale: float
    zero_point: int


@dataclass(frozen=True)
class Int8Parameters:
    quantizes: list[tuple[float, int]]
    convs: list[Int8Conv]


def read_int8_parameters(module: torch.jit.ScriptModule) -> Int8Parameters:
    """Every quantize's and int8 convolution's parameters of a frozen int8 TorchScript ``forward``, in order."""
    quantizes: list[tuple[float, int]] = []
    convs: list[Int8Conv] = []
    for node in module.inlined_graph.nodes():
        inputs = list(node.inputs())
        if node.kind() == "aten::quantize_per_tensor":
            scale, zero_point = (inputs[i].toIValue() for i in (1, 2))
            quantizes.append((float(scale), int(zero_point)))
        elif node.kind() in CONV_KINDS:
            weight, bias = torch.ops.quantized.conv2d_unpack(inputs[1].toIValue())
            convs.append(Int8Conv(weight, bias, float(inputs[2].toIValue()), int(inputs[3].toIValue())))
    return Int8Parameters(quantizes, convs)


def write_int8_parameters(graph: GraphModule, params: Int8Parameters, *, check_weights: bool = True) -> None:
    """Set ``graph``'s (converted FX) quantize and int8 convolution parameters to ``params``, in graph order.

    ``check_weights``: refuse unless each float weight of ``graph`` (dequantised) is within one
    quantisation step of the one it gets: another model's parameters would silently change predictions.
    """
    quantizes = [n for n in graph.graph.nodes if n.op == "call_function" and n.target is torch.quantize_per_tensor]
    convs = [
        graph.get_submodule(n.target)
        for n in graph.graph.nodes
        if n.op == "call_module"
        and isinstance(graph.get_submodule(n.target), quantized.Conv2d | intrinsic.quantized.ConvReLU2d)
    ]
    if (len(quantizes), len(convs)) != (len(params.quantizes), len(params.convs)):
        raise ValueError(
            f"the graph has {len(quantizes)} quantizes and {len(convs)} int8 convolutions, "
            f"the parameters {len(params.quantizes)} and {len(params.convs)}"
        )
    with torch.no_grad():
        for node, (scale, zero_point) in zip(quantizes, params.quantizes, strict=True):
            getattr(graph, node.args[1].target).fill_(scale)
            getattr(graph, node.args[2].target).fill_(zero_point)
        for conv, old in zip(convs, params.convs, strict=True):
            new_weight = conv.weight()
            if check_weights:
                step = old.weight.q_per_channel_scales().reshape(-1, *([1] * (old.weight.ndim - 1)))
                if new_weight.shape != old.weight.shape or bool(
                    ((new_weight.dequantize() - old.weight.dequantize()).abs() > step * 1.01).any()
                ):
                    raise OtherWeightsError("the int8 parameters are of other weights (calibrate again instead)")
            conv.set_weight_bias(old.weight, old.bias)
            conv.scale, conv.zero_point = old.scale, old.zero_point
    graph.recompile()
    logger.debug("wrote %d quantize and %d convolution parameters", len(quantizes), len(convs))
