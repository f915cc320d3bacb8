"""Inference-only folding of a :class:`~edge_agent.nn.channels_last.ResidualNet2d`: fewer float passes, same logits.

What folds, by the math (every fold is exact up to float rounding; eval-mode BN is ``y = s * x + b``
per channel with ``s = gamma / sqrt(var + eps)``, ``b = beta - s * mean``):

- ``bn2`` (after ``conv1``, before ``relu2``): into ``conv1``'s weights and bias
  (:func:`torch.nn.utils.fusion.fuse_conv_bn_eval`).
- The threshold sub-network's BN (``GAP -> FC -> BN -> ReLU -> FC -> sigmoid``): into the FC before it
  (:func:`torch.nn.utils.fusion.fuse_linear_bn_eval`).
- ``normalize``'s division by ``std``: into the stem's weights (a convolution is linear and its zero
  padding stays zero after scaling); the subtraction of ``mean`` stays (zero padding of ``x - mean``
  is not zero padding of ``x``), and vanishes when ``mean`` is 0 (the audio model).
- ``bn1`` (pre-activation, BN -> ReLU -> ``conv1``) does NOT fold into ``conv1``: the ReLU sits between
  them. Nor into the previous unit's ``conv2``: the unit input it normalises is
  ``soft_threshold(conv2(...)) + shortcut``, a nonlinear function of ``conv2``'s output plus the
  identity path, and the shortcut needs the un-normalised value. It stays a per-channel affine, as
  one fused pass (``addcmul``) instead of ``native_batch_norm``; in the int8 graph the ReLU after it
  is then dropped before the quantize (quint8 with zero point 0 clamps at the same place).
  It cannot ride on the quantize either: ``quantize_per_tensor`` has one scale for all channels.
- ``head_bn`` (BN -> ReLU -> GAP -> FC): same, the ReLU blocks folding into the FC.

Fewer ops per call (the same values; what a call costs at batch 1 is mostly per-op overhead):

- The threshold sub-network takes ``sum|x|`` instead of ``mean|x|`` with ``1 / L`` folded into its first
  linear layer, and ``tau = alpha * sum|x| / L`` is one ``addcmul`` (``value = 1 / L``; the unit's
  feature length ``L`` is fixed by the window and measured at fold time): one division pass less per
  unit, and bit-identical for the power-of-two lengths of the shipped models (scaling by ``2^-k`` is exact).
  ``tau`` is reshaped by one ``view`` instead of two ``unsqueeze``.
- A unit that widens its channels adds the shortcut into the leading channels of its output in place
  (:func:`add_into_leading_channels`) instead of zero-padding the shortcut to the full width first
  (``pad`` wrote a zeroed tensor of the full width and copied the shortcut into it).
- ``stem="gemm"``: the stem (1 input channel, kernel 3, stride 2) as one matrix product of the window's
  patches (:class:`GemmStem`: ``pad`` with the input mean as the pad value, so the centring folds into
  the bias, ``unfold``, ``addmm``); it writes the channels-last output directly.

``direct_convs`` calls oneDNN's convolution (:class:`DirectConv2d`, ``torch.mkldnn_convolution``) where
PyTorch picks ``aten::_slow_conv2d_forward`` (batch 1, at most 20 480 input elements: every layer here);
slower at batch 1 on the AMD EPYC it was measured on (docs/benchmarks.md, "Model inference"), so the
default is ``"none"``. ``"stem"`` is for int8 (the units' convolutions are quantised).
"""

from __future__ import annotations

import copy
import logging

import torch
import torch.fx
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

from edge_agent.nn.channels_last import AudioResidualNet2d, Block2d, ResidualNet2d, Shrinkage2d

logger = logging.getLogger(__name__)

DIRECT_CONVS = ("all", "stem", "none")
STEMS = ("conv", "gemm")


def add_into_leading_channels(y: torch.Tensor, shortcut: torch.Tensor, channels: int) -> torch.Tensor:
    """``y + pad(shortcut)`` (zero channels appended to ``shortcut``, which has ``channels``), in place in ``y``.

    ``channels`` is a number, not ``shortcut.shape[1]``: a trace would record reading the shape as ops.
    """
    y.narrow(1, 0, channels).add_(shortcut)
    return y


torch.fx.wrap("add_into_leading_channels")  # one FX node with a user: FX's dead-code removal keeps the in-place add


class ChannelAffine(nn.Module):
    """``x * scale + shift`` per channel in one pass; ``scale`` and ``shift`` are ``(1, C, 1, 1)`` buffers."""

    def __init__(self, scale: torch.Tensor, shift: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("scale", scale.detach().reshape(1, -1, 1, 1).clone())
        self.register_buffer("shift", shift.detach().reshape(1, -1, 1, 1).clone())

    @classmethod
    def from_batchnorm(cls, bn: nn.modules.batchnorm._BatchNorm) -> ChannelAffine:
        """The eval-mode affine of ``bn``."""
        if bn.running_mean is None or bn.running_var is None:
            raise ValueError("batch norm without running statistics cannot be folded")
        scale = torch.rsqrt(bn.running_var + bn.eps)
        if bn.weight is not None:
            scale = scale * bn.weight
        shift = -bn.running_mean * scale
        if bn.bias is not None:
            shift = shift + bn.bias
        return cls(scale, shift)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(self.shift, x, self.scale)


class Center(nn.Module):
    """``x - mean`` (``normalize`` once its division is folded into the stem)."""

    def __init__(self, mean: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mean", mean.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x - self.mean


class DirectConv2d(nn.Module):
    """``conv`` through ``torch.mkldnn_convolution``: oneDNN at every batch size (see the module docstring)."""

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        if conv.padding_mode != "zeros" or isinstance(conv.padding, str):
            raise ValueError(f"only zero padding given as numbers is supported, got {conv.padding!r}")
        self.weight = nn.Parameter(conv.weight.detach().clone(), requires_grad=False)
        self.bias = None if conv.bias is None else nn.Parameter(conv.bias.detach().clone(), requires_grad=False)
        self.padding = tuple(conv.padding)
        self.stride = tuple(conv.stride)
        self.dilation = tuple(conv.dilation)
        self.groups = conv.groups
        self.in_channels, self.out_channels = conv.in_channels, conv.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.mkldnn_convolution(
            x, self.weight, self.bias, self.padding, self.stride, self.dilation, self.groups
        )


class GemmStem(nn.Module):
    """The stem convolution ``(1, k)``, stride ``(1, s)``, as one ``addmm`` of the input's patches; channels-last out.

    ``mean``: the input's per-channel mean, subtracted before the convolution (``Standardize`` with its
    division already in the weights). With one input channel it folds into the bias: the input is padded
    with ``mean`` instead of 0, and ``conv(x padded with mean) = conv(x - mean, zero padded) + mean * sum(w)``.
    ``input_length``: the stem's input length (the window's), which fixes the output shape.
    """

    def __init__(self, conv: nn.Conv2d, mean: torch.Tensor, input_length: int) -> None:
        super().__init__()
        shape = (conv.kernel_size[0], conv.stride[0], conv.padding[0], conv.groups, *conv.dilation)
        if shape != (1, 1, 0, 1, 1, 1):
            raise ValueError("GemmStem takes a (1, k) convolution, no dilation, one group")
        if conv.padding_mode != "zeros" or isinstance(conv.padding, str):
            raise ValueError(f"only zero padding given as numbers is supported, got {conv.padding!r}")
        self.channels, self.out_channels = conv.in_channels, conv.out_channels
        self.kernel, self.stride, self.pad = conv.kernel_size[1], conv.stride[1], conv.padding[1]
        self.out_length = (input_length + 2 * self.pad - self.kernel) // self.stride + 1
        weight = conv.weight.detach().reshape(self.out_channels, self.channels * self.kernel)
        bias = torch.zeros(self.out_channels) if conv.bias is None else conv.bias.detach().clone()
        mean = mean.detach().reshape(-1)
        self.pad_value = float(mean[0]) if self.channels == 1 else 0.0
        if self.channels == 1:
            bias = bias - self.pad_value * weight.sum(dim=1)
        self.register_buffer("mean", mean.reshape(1, -1, 1, 1).clone())
        self.register_buffer("weight_t", weight.t().contiguous())
        self.register_buffer("bias", bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels > 1:
            x = x - self.mean
        patches = nn.functional.pad(x, (self.pad, self.pad), value=self.pad_value).unfold(3, self.kernel, self.stride)
        if self.channels > 1:  # (N, C, 1, L', k) -> (N, 1, L', C, k): the weight's (c, k) order
            patches = patches.permute(0, 2, 3, 1, 4)
        y = torch.addmm(self.bias, patches.reshape(-1, self.channels * self.kernel), self.weight_t)
        return y.view(-1, 1, self.out_length, self.out_channels).permute(0, 3, 1, 2)


class FoldedShrinkage2d(Shrinkage2d):
    """:class:`Shrinkage2d` with its sub-network's ``Linear -> BN`` folded into one ``Linear``.

    ``length``: the feature length ``L`` the unit sees (``H * W`` of its input); given, ``1 / L`` goes into
    the first linear layer and the thresholds take ``sum|x|`` (channel-wise units; the same ``tau``),
    and the unit is then only right for inputs of that length.
    """

    def __init__(self, unit: Shrinkage2d, length: int | None = None) -> None:
        nn.Module.__init__(self)
        self.channel_wise = unit.channel_wise
        first, bn, *rest = list(unit.attention)
        if not isinstance(first, nn.Linear) or not isinstance(bn, nn.BatchNorm1d):
            raise TypeError(f"expected Linear -> BatchNorm1d, got {type(first).__name__} -> {type(bn).__name__}")
        if length is not None and length < 1:
            raise ValueError(f"length must be >= 1, got {length}")
        self.length = length if self.channel_wise else None  # channel-shared units keep the mean
        fused = fuse_linear_bn_eval(first, bn)
        if self.length is not None:
            with torch.no_grad():
                fused.weight.mul_(1.0 / self.length)
        self.attention = nn.Sequential(fused, *(copy.deepcopy(m) for m in rest))
        self.tau_channels = first.in_features if self.channel_wise else 1
        self.register_buffer("zero", torch.zeros(1))

    def thresholds(self, x: torch.Tensor) -> torch.Tensor:
        if self.length is None:
            return super().thresholds(x)
        abs_sum = torch.abs(x).sum(dim=(2, 3))  # (N, C)
        return torch.addcmul(self.zero, self.attention(abs_sum), abs_sum, value=1.0 / self.length)

    def shrink(self, x: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
        tau = tau.view(-1, self.tau_channels, 1, 1)  # one view op where ``[:, :, None, None]`` traces four
        return x.sub_(torch.clamp(x, -tau, tau))


class FoldedBlock2d(Block2d):
    """:class:`Block2d` with ``bn2`` in ``conv1``, ``bn1`` a :class:`ChannelAffine` (same forward and methods)."""

    def __init__(self, block: Block2d, *, direct_convs: bool, length: int | None = None) -> None:
        nn.Module.__init__(self)
        self.bn1 = ChannelAffine.from_batchnorm(block.bn1)
        self.relu1 = nn.ReLU(inplace=True)
        conv1 = fuse_conv_bn_eval(block.conv1, block.bn2)
        conv2 = copy.deepcopy(block.conv2)
        self.conv1: nn.Module = DirectConv2d(conv1) if direct_convs else conv1
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2: nn.Module = DirectConv2d(conv2) if direct_convs else conv2
        self.shrinkage: nn.Module = (
            FoldedShrinkage2d(block.shrinkage, length) if isinstance(block.shrinkage, Shrinkage2d) else nn.Identity()
        )
        self.use_shortcut = block.use_shortcut
        self.stride = block.stride
        self.pad_channels = block.pad_channels
        self.shortcut_channels = block.conv1.in_channels

    def _convolve(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.relu2(self.conv1(self.relu1(self.bn1(x)))))

    def _add_shortcut(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.use_shortcut:
            shortcut = x[..., :: self.stride] if self.stride > 1 else x  # one slice op where [:, :, :, ::s] traces four
            y = (
                add_into_leading_channels(y, shortcut, self.shortcut_channels)
                if self.pad_channels > 0
                else y.add_(shortcut)
            )
        return y


def unit_input_length(network: ResidualNet2d) -> int:
    """The stem's input length: the window's, or the audio front-end's output length."""
    return int(network.frontend.out_length if isinstance(network, AudioResidualNet2d) else network.window_samples)


def unit_lengths(network: ResidualNet2d) -> list[int]:
    """The feature length each of ``network``'s units sees, for its window (a probe run on zeros)."""
    x = torch.zeros(1, network.stem.in_channels, 1, unit_input_length(network)).contiguous(
        memory_format=torch.channels_last
    )
    found = []
    with torch.no_grad():
        x = network.stem(x)
        for block in network.blocks:
            x = block(x)
            found.append(int(x.shape[2] * x.shape[3]))
    return found


def fold_network(network: ResidualNet2d, *, direct_convs: str = "none", stem: str = "conv") -> ResidualNet2d:
    """A folded copy of ``network`` (eval, no gradients); ``network`` is untouched.

    ``direct_convs``: ``"none"`` (the default: PyTorch picks the kernel), ``"all"`` (every convolution
    through :class:`DirectConv2d`; float32 only) or ``"stem"`` (for int8: the units' convolutions are
    quantised). ``stem``: ``"conv"`` or ``"gemm"`` (:class:`GemmStem`; not with ``direct_convs``).
    The threshold sub-networks get their unit's feature length (:func:`unit_lengths`), so the copy is
    for ``network``'s window length only. The copy keeps ``network``'s class (and front-end, for audio) and module
    names, so :class:`~edge_agent.nn.noise_floor.NoiseFloorNet2d` and the int8 export take it as is.
    """
    if direct_convs not in DIRECT_CONVS:
        raise ValueError(f"direct_convs must be one of {DIRECT_CONVS}, got {direct_convs!r}")
    if stem not in STEMS or (stem == "gemm" and direct_convs != "none"):
        raise ValueError(f"stem must be one of {STEMS} (gemm only with direct_convs 'none'), got {stem!r}")
    if network.training:
        raise ValueError("fold an eval-mode network (batch norms must use their running statistics)")
    folded = copy.deepcopy(network)
    lengths = unit_lengths(network)
    with torch.no_grad():
        mean, std = network.normalize.mean, network.normalize.std
        conv = copy.deepcopy(network.stem)
        conv.weight.div_(std.reshape(1, -1, 1, 1))  # (x - mean) / std convolved = (x - mean) convolved with w / std
        folded.normalize = Center(mean) if bool((mean != 0).any()) else nn.Identity()
        if stem == "gemm":
            folded.stem = GemmStem(conv, mean, int(unit_input_length(network)))
            folded.normalize = nn.Identity()
        else:
            folded.stem = DirectConv2d(conv) if direct_convs != "none" else conv
        folded.blocks = nn.Sequential(
            *(
                FoldedBlock2d(block, direct_convs=direct_convs == "all", length=length)
                if isinstance(block, Block2d)
                else block
                for block, length in zip(network.blocks, lengths, strict=True)
            )
        )
        folded.head_bn = ChannelAffine.from_batchnorm(network.head_bn)
    logger.debug("folded %s (direct convolutions: %s, stem: %s)", type(network).__name__, direct_convs, stem)
    return folded.eval().requires_grad_(False)
