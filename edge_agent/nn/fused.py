"""The int8 network with the float glue between its int8 convolutions fused into native ops (export only).

In the int8 graph of :mod:`edge_agent.nn.folding` each residual shrinkage unit runs, between its int8
``conv2`` and the next unit's int8 ``conv1``, eight separate ATen passes over the features: dequantize,
``abs`` and ``sum`` for the thresholds, the soft threshold's ``neg``/``clamp``/``sub_``, the residual
``add_``, the next unit's ``bn1`` affine (``addcmul``) and ``quantize_per_tensor``. :class:`FusedInt8Net`
computes the same unit with the same int8 convolutions (same packed weights, scales and zero points) and
two ops of the ``edge_agent`` library (``edge_agent/kernels/fused_ops.cpp``):

- ``abs_sum(q)``: ``sum |dequantize(q)|`` per sample and channel, one pass over the int8 output (an exact
  integer sum times the scale);
- ``shrink_add_quantize(q, tau, shortcut, ...)``: dequantize, soft threshold, residual add, the next
  unit's affine and the quantize in one pass, giving the float unit output (the next shortcut) and the
  next unit's quint8 input; the last unit's ``shrink_add_head`` ends in the head's affine, ReLU and mean.

The tiny threshold sub-networks (``Linear -> ReLU -> Linear -> sigmoid`` on ``(N, C)``) stay in torch.
Outputs match the unfused graph up to the rounding of the two reductions (``sum |x|``, the head's mean):
every other float operation is repeated in the same order (``docs/benchmarks.md``, "Fused int8 glue").
A file with these ops loads only where the op library is loaded (:mod:`edge_agent.kernels`).
"""

from __future__ import annotations

import copy
import logging

import torch
from torch import nn
from torch.ao.nn.intrinsic.quantized import ConvReLU2d
from torch.ao.nn.quantized import Conv2d as QuantizedConv2d

from edge_agent.nn.folding import ChannelAffine, FoldedBlock2d, FoldedShrinkage2d
from edge_agent.nn.noise_floor import NoiseFloorNet2d

logger = logging.getLogger(__name__)

OPS_NAMESPACE = "edge_agent"


def quantized_conv(
    conv: nn.Conv2d, weight: torch.Tensor, bias: torch.Tensor | None, scale: float, zero_point: int, *, relu: bool
) -> nn.Module:
    """An int8 convolution of ``conv``'s shape with the given int8 ``weight``, float ``bias`` and output scale."""
    kind = ConvReLU2d if relu else QuantizedConv2d
    new = kind(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        stride=conv.stride,
        padding=conv.padding,
        dilation=conv.dilation,
        groups=conv.groups,
        bias=bias is not None,
    )
    new.set_weight_bias(weight, bias)
    new.scale, new.zero_point = float(scale), int(zero_point)
    return new


class FusedUnit(nn.Module):
    """One :class:`FoldedBlock2d` from its int8 input to the next unit's int8 input (or to the head's means).

    ``after``: the affine that follows the unit (the next unit's ``bn1``, or the head's BN for the last
    unit); ``quantize``: the next unit's input ``(scale, zero point)``, ``None`` for the last unit.
    """

    def __init__(
        self,
        block: FoldedBlock2d,
        conv1: nn.Module,
        conv2: nn.Module,
        after: ChannelAffine,
        quantize: tuple[float, int] | None,
    ) -> None:
        super().__init__()
        shrinkage = block.shrinkage
        if not isinstance(shrinkage, FoldedShrinkage2d) or shrinkage.length is None:
            raise TypeError("fusing needs channel-wise shrinkage units folded with their feature length")
        self.conv1, self.conv2 = conv1, conv2
        self.attention = copy.deepcopy(shrinkage.attention)
        self.inverse_length = 1.0 / shrinkage.length
        self.register_buffer("zero", torch.zeros(1))
        self.register_buffer("scale", after.scale.detach().reshape(-1).clone())
        self.register_buffer("shift", after.shift.detach().reshape(-1).clone())
        self.use_shortcut = bool(block.use_shortcut)
        self.stride = int(block.stride)
        self.quantize = quantize

    def thresholds(self, y: torch.Tensor) -> torch.Tensor:
        """``tau`` ``(N, C)`` of the int8 ``conv2`` output ``y``, as :class:`FoldedShrinkage2d` computes it."""
        abs_sum = torch.ops.edge_agent.abs_sum(y)
        return torch.addcmul(self.zero, self.attention(abs_sum), abs_sum, value=self.inverse_length)

    def convolve(self, q: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.conv1(q))

    def finish(self, y: torch.Tensor, tau: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(the unit's float output, the next unit's quint8 input); the last unit: (head means, the same)."""
        shortcut = x if self.use_shortcut else None
        if self.quantize is None:
            means = torch.ops.edge_agent.shrink_add_head(y, tau, shortcut, self.stride, self.scale, self.shift)
            return means, means
        scale, zero_point = self.quantize
        return torch.ops.edge_agent.shrink_add_quantize(
            y, tau, shortcut, self.stride, self.scale, self.shift, scale, zero_point
        )


class FusedInt8Net(nn.Module):
    """``forward``, ``noise_floor`` and ``forward_with_noise_floor`` of an int8 :class:`NoiseFloorNet2d`, fused.

    ``net``: the float network (folded, with its noise-floor references); ``quantizes`` / ``convs``: every
    quantize's ``(scale, zero point)`` and every int8 convolution's ``(weight, bias, scale, zero point)`` of
    the standard int8 export of ``net``, in graph order (:func:`edge_agent.training.int8_params.read_int8_parameters`).
    """

    def __init__(
        self,
        net: NoiseFloorNet2d,
        quantizes: list[tuple[float, int]],
        convs: list[tuple[torch.Tensor, torch.Tensor | None, float, int]],
    ) -> None:
        super().__init__()
        blocks = list(net.blocks)
        if not all(isinstance(b, FoldedBlock2d) for b in blocks):
            raise TypeError("fusing needs a folded network (edge_agent.nn.folding.fold_network)")
        if (len(quantizes), len(convs)) != (len(blocks), 2 * len(blocks)):
            raise ValueError(
                f"{len(blocks)} units need {len(blocks)} quantizes and {2 * len(blocks)} int8 convolutions, "
                f"got {len(quantizes)} and {len(convs)}"
            )
        self.frontend = net.frontend
        self.normalize = net.normalize
        self.stem = net.stem
        self.audio, self.abstain_rms = net.audio, float(net.abstain_rms)
        self.noise_units = net.units
        self.register_buffer("log_reference", net.log_reference.detach().clone())
        first = blocks[0].bn1
        self.register_buffer("stem_scale", first.scale.detach().reshape(-1).clone())
        self.register_buffer("stem_shift", first.shift.detach().reshape(-1).clone())
        self.stem_quantize = quantizes[0]
        units = []
        for index, block in enumerate(blocks):
            last = index == len(blocks) - 1
            after = net.head_bn if last else blocks[index + 1].bn1
            if not isinstance(after, ChannelAffine):
                raise TypeError("fusing needs a folded network: the head's BN and each bn1 as affines")
            w1, b1, s1, z1 = convs[2 * index]
            w2, b2, s2, z2 = convs[2 * index + 1]
            units.append(
                FusedUnit(
                    block,
                    quantized_conv(block.conv1, w1, b1, s1, z1, relu=True),
                    quantized_conv(block.conv2, w2, b2, s2, z2, relu=False),
                    after,
                    None if last else quantizes[index + 1],
                )
            )
        self.units = nn.ModuleList(units)
        self.fc = copy.deepcopy(net.fc)

    def _run(self, x: torch.Tensor, stop: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Features through the units ``0 .. stop - 1``: the last one's output and the noise units' ``tau``."""
        x = self.normalize(self.frontend(x)).unsqueeze(2).contiguous(memory_format=torch.channels_last)
        x = self.stem(x)
        scale, zero_point = self.stem_quantize
        q = torch.ops.edge_agent.affine_quantize(x, self.stem_scale, self.stem_shift, scale, zero_point)
        taus: list[torch.Tensor] = []
        for index, unit in enumerate(self.units):
            if index >= stop:
                break
            y = unit.convolve(q)
            tau = unit.thresholds(y)
            if index in self.noise_units:
                taus.append(tau)
            x, q = unit.finish(y, tau, x)
        return x, taus

    def _logits(self, means: torch.Tensor, raw: torch.Tensor) -> torch.Tensor:
        logits = self.fc(means)
        if self.audio:
            centred = raw - raw.mean(dim=-1, keepdim=True)
            rms = torch.sqrt(centred.pow(2).mean(dim=(1, 2)))
            logits = logits * (rms >= self.abstain_rms).to(raw.dtype).unsqueeze(1)
        return logits

    def _floor(self, taus: list[torch.Tensor]) -> torch.Tensor:
        relative = torch.log(torch.cat(taus, dim=1).clamp_min(1e-20)) - self.log_reference
        return torch.exp(relative.mean(dim=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._logits(self._run(x, len(self.units))[0], x)

    def noise_floor(self, x: torch.Tensor) -> torch.Tensor:
        return self._floor(self._run(x, max(self.noise_units) + 1)[1])

    def forward_with_noise_floor(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        means, taus = self._run(x, len(self.units))
        return self._logits(means, x), self._floor(taus)
