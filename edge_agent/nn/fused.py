"""The int8 network with its int8 convolutions and the float glue between them in native ops (export only).

In the int8 graph of :mod:`edge_agent.nn.folding` each residual shrinkage unit runs, between its int8
``conv2`` and the next unit's int8 ``conv1``, eight separate ATen passes over the features: dequantize,
``abs`` and ``sum`` for the thresholds, the soft threshold's ``neg``/``clamp``/``sub_``, the residual
``add_``, the next unit's ``bn1`` affine (``addcmul``) and ``quantize_per_tensor``. :class:`FusedInt8Net`
computes the same unit with the same int8 parameters (weights, scales and zero points) and two ops of the
``edge_agent`` library (``edge_agent/kernels/fused_ops.cpp``):

- ``conv_unit(q, conv1 ..., conv2 ...)``: the unit's two int8 convolutions (``conv1`` with its ReLU) in the
  library's own int8 1-D convolution (``qconv_ops.inc``: bit for bit ``quantized::conv2d``'s outputs, at a
  fraction of its per-call cost), ``conv1``'s output kept per sample in cache, and ``sum |dequantize(y)|``
  of ``conv2``'s output ``y`` per sample and channel in the same pass (an exact integer sum times the scale);
- ``shrink_add_quantize(q, tau, shortcut, ...)``: dequantize, soft threshold, residual add, the next
  unit's affine and the quantize in one pass, giving the float unit output (the next shortcut) and the
  next unit's quint8 input; the last unit's ``shrink_add_head`` ends in the head's affine, ReLU and mean.

The float layers around them run in the library too (:mod:`edge_agent.nn.fused_native`): the stem
convolution (bit for bit ATen's on AVX2 and AVX-512 CPUs), the tiny threshold sub-networks
(``Linear -> ReLU -> Linear -> sigmoid`` on ``(N, C)``), the head's linear layer and the noise floor
(these three summed in index order: float rounding away from ATen's), so that a fused file calls
almost no ATen kernel (each pages in library code the agent does not otherwise need).
Outputs match the unfused graph up to the rounding of the two reductions (``sum |x|``, the head's mean)
and of those three small layers: every other float operation is repeated in the same order, and the
convolutions requantise as oneDNN's kernels on the same CPU do (``docs/benchmarks.md``, "Fused int8 glue",
"Int8 convolutions in the op library").
A file with these ops loads only where the op library is loaded (:mod:`edge_agent.kernels`).
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass

import torch
from torch import nn

from edge_agent.nn.folding import ChannelAffine, FoldedBlock2d, FoldedShrinkage2d
from edge_agent.nn.fused_native import native_linear, native_stem, native_thresholds
from edge_agent.nn.noise_floor import NoiseFloorNet2d

logger = logging.getLogger(__name__)

OPS_NAMESPACE = "edge_agent"


@dataclass(frozen=True)
class PackedConv:
    """An int8 convolution (kernel 3, padding 1) in the op library's layout (``edge_agent/kernels/qconv_ops.inc``).

    ``weight``: ``(3 C / 4, O, 4)`` int8, input byte ``k * C + c`` of a position's field against weight
    ``w[o, c, k]``, four consecutive bytes per output channel (VNNI's ``vpdpbusd``); ``sums``: ``sum w`` per
    output channel (int32, the input zero point's correction); ``scales``: the weight scales; ``bias``: float
    (zeros where the convolution has none); ``scale`` / ``zero_point``: the output's.
    """

    weight: torch.Tensor
    sums: torch.Tensor
    scales: torch.Tensor
    bias: torch.Tensor
    stride: int
    scale: float
    zero_point: int

    def args(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.weight, self.sums, self.scales, self.bias


def pack_conv(
    conv: nn.Conv2d, weight: torch.Tensor, bias: torch.Tensor | None, scale: float, zero_point: int
) -> PackedConv:
    """``conv``'s int8 ``weight`` (per output channel, zero points 0) packed for ``edge_agent::qconv1d``."""
    if conv.kernel_size != (1, 3) or conv.padding != (0, 1) or conv.dilation != (1, 1) or conv.groups != 1:
        raise ValueError(f"the op library convolves (1, 3) kernels, padding (0, 1), got {conv}")
    if weight.qscheme() not in (torch.per_channel_affine, torch.per_channel_symmetric):
        raise ValueError("the op library needs per-channel int8 weights")
    if bool((weight.q_per_channel_zero_points() != 0).any()):
        raise ValueError("the op library needs weight zero points 0")
    values = weight.int_repr()  # (O, C, 1, 3)
    outs, channels = values.shape[0], values.shape[1]
    if channels % 4 or outs % 16:
        raise ValueError(
            f"the op library needs input channels in fours and output channels in sixteens, got {channels} -> {outs}"
        )
    rows = values[:, :, 0, :].permute(0, 2, 1).reshape(outs, 3 * channels)  # [o, k * C + c]
    packed = rows.reshape(outs, 3 * channels // 4, 4).permute(1, 0, 2).contiguous()
    return PackedConv(
        packed,
        rows.to(torch.int32).sum(dim=1).to(torch.int32).contiguous(),
        weight.q_per_channel_scales().to(torch.float32).contiguous(),
        (torch.zeros(outs) if bias is None else bias.detach().to(torch.float32)).contiguous(),
        int(conv.stride[1]),
        float(scale),
        int(zero_point),
    )


class FusedUnit(nn.Module):
    """One :class:`FoldedBlock2d` from its int8 input to the next unit's int8 input (or to the head's means).

    ``after``: the affine that follows the unit (the next unit's ``bn1``, or the head's BN for the last
    unit); ``quantize``: the next unit's input ``(scale, zero point)``, ``None`` for the last unit.
    """

    def __init__(
        self,
        block: FoldedBlock2d,
        conv1: PackedConv,
        conv2: PackedConv,
        after: ChannelAffine,
        quantize: tuple[float, int] | None,
    ) -> None:
        super().__init__()
        shrinkage = block.shrinkage
        if not isinstance(shrinkage, FoldedShrinkage2d) or shrinkage.length is None:
            raise TypeError("fusing needs channel-wise shrinkage units folded with their feature length")
        if conv2.stride != 1:
            raise ValueError("a unit's conv2 has stride 1")
        for name, conv in (("conv1", conv1), ("conv2", conv2)):
            for part, tensor in zip(("weight", "sums", "scales", "bias"), conv.args(), strict=True):
                self.register_buffer(f"{name}_{part}", tensor.clone())
        self.conv1_quantize = (conv1.stride, conv1.scale, conv1.zero_point)
        self.conv2_quantize = (conv2.scale, conv2.zero_point)
        self.attention = copy.deepcopy(shrinkage.attention)
        self.inverse_length = 1.0 / shrinkage.length
        self.native = native_thresholds(self.attention, self.inverse_length)  # None: not that shape, torch's
        self.register_buffer("zero", torch.zeros(1))
        self.register_buffer("scale", after.scale.detach().reshape(-1).clone())
        self.register_buffer("shift", after.shift.detach().reshape(-1).clone())
        self.use_shortcut = bool(block.use_shortcut)
        self.stride = int(block.stride)
        self.quantize = quantize

    def thresholds(self, abs_sum: torch.Tensor) -> torch.Tensor:
        """``tau`` ``(N, C)`` from ``sum |y|`` of the int8 ``conv2`` output, as :class:`FoldedShrinkage2d` does."""
        if self.native is not None:
            return self.native(abs_sum)
        return torch.addcmul(self.zero, self.attention(abs_sum), abs_sum, value=self.inverse_length)

    def convolve(self, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``conv2(relu(conv1(q)))`` (quint8) and its ``sum |y|`` per sample and channel, in one op."""
        stride, scale1, zero_point1 = self.conv1_quantize
        scale2, zero_point2 = self.conv2_quantize
        return torch.ops.edge_agent.conv_unit(
            q,
            self.conv1_weight,
            self.conv1_sums,
            self.conv1_scales,
            self.conv1_bias,
            stride,
            scale1,
            zero_point1,
            self.conv2_weight,
            self.conv2_sums,
            self.conv2_scales,
            self.conv2_bias,
            scale2,
            zero_point2,
        )

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
        self.stem = native_stem(net.stem)
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
                    pack_conv(block.conv1, w1, b1, s1, z1),
                    pack_conv(block.conv2, w2, b2, s2, z2),
                    after,
                    None if last else quantizes[index + 1],
                )
            )
        self.units = nn.ModuleList(units)
        self.fc = native_linear(copy.deepcopy(net.fc))

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
            y, abs_sum = unit.convolve(q)
            tau = unit.thresholds(abs_sum)
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
        return torch.ops.edge_agent.noise_floor(taus, self.log_reference)  # NoiseFloorNet2d's, in one op

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._logits(self._run(x, len(self.units))[0], x)

    def noise_floor(self, x: torch.Tensor) -> torch.Tensor:
        return self._floor(self._run(x, max(self.noise_units) + 1)[1])

    def forward_with_noise_floor(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        means, taus = self._run(x, len(self.units))
        return self._logits(means, x), self._floor(taus)
