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

``direct_convs`` replaces float convolutions by :class:`DirectConv2d`, which calls oneDNN's
convolution (``torch.mkldnn_convolution``) directly: for a batch of 1, ``torch.nn.functional.conv2d``
picks ``aten::_slow_conv2d_forward`` on these layers (PyTorch sends inputs of batch 1 with at most
20 480 elements to its native kernel, and every layer here has 16 384). On the AMD EPYC this was
measured on (AVX-512 VNNI, torch 2.13) the native kernel was the faster one at batch 1 (oneDNN's
per-call overhead dominates such small layers: docs/benchmarks.md, "Model inference"), so the
export's default is ``"none"``; the option stays for CPUs where it pays (measure with
``benchmarks/bench_inference.py``). ``"stem"`` is for int8 (the units' convolutions are quantised).
"""

from __future__ import annotations

import copy
import logging

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

from edge_agent.nn.channels_last import Block2d, ResidualNet2d, Shrinkage2d

logger = logging.getLogger(__name__)

DIRECT_CONVS = ("all", "stem", "none")


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


class FoldedShrinkage2d(Shrinkage2d):
    """:class:`Shrinkage2d` with its sub-network's ``Linear -> BN`` folded into one ``Linear``."""

    def __init__(self, unit: Shrinkage2d) -> None:
        nn.Module.__init__(self)
        self.channel_wise = unit.channel_wise
        first, bn, *rest = list(unit.attention)
        if not isinstance(first, nn.Linear) or not isinstance(bn, nn.BatchNorm1d):
            raise TypeError(f"expected Linear -> BatchNorm1d, got {type(first).__name__} -> {type(bn).__name__}")
        self.attention = nn.Sequential(fuse_linear_bn_eval(first, bn), *(copy.deepcopy(m) for m in rest))

    def shrink(self, x: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
        tau = tau.unsqueeze(2).unsqueeze(3)  # two view ops where ``[:, :, None, None]`` traces four
        return x.sub_(torch.clamp(x, -tau, tau))


class FoldedBlock2d(Block2d):
    """:class:`Block2d` with ``bn2`` in ``conv1``, ``bn1`` a :class:`ChannelAffine` (same forward and methods)."""

    def __init__(self, block: Block2d, *, direct_convs: bool) -> None:
        nn.Module.__init__(self)
        self.bn1 = ChannelAffine.from_batchnorm(block.bn1)
        self.relu1 = nn.ReLU(inplace=True)
        conv1 = fuse_conv_bn_eval(block.conv1, block.bn2)
        conv2 = copy.deepcopy(block.conv2)
        self.conv1: nn.Module = DirectConv2d(conv1) if direct_convs else conv1
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2: nn.Module = DirectConv2d(conv2) if direct_convs else conv2
        self.shrinkage: nn.Module = (
            FoldedShrinkage2d(block.shrinkage) if isinstance(block.shrinkage, Shrinkage2d) else nn.Identity()
        )
        self.use_shortcut = block.use_shortcut
        self.stride = block.stride
        self.pad_channels = block.pad_channels

    def _convolve(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.relu2(self.conv1(self.relu1(self.bn1(x)))))

    def _add_shortcut(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.use_shortcut:
            shortcut = x[..., :: self.stride] if self.stride > 1 else x  # one slice op where [:, :, :, ::s] traces four
            if self.pad_channels > 0:
                shortcut = nn.functional.pad(shortcut, (0, 0, 0, 0, 0, self.pad_channels))
            y = y.add_(shortcut)
        return y


def fold_network(network: ResidualNet2d, *, direct_convs: str = "none") -> ResidualNet2d:
    """A folded copy of ``network`` (eval, no gradients); ``network`` is untouched.

    ``direct_convs``: ``"none"`` (the default: PyTorch picks the kernel), ``"all"`` (every convolution
    through :class:`DirectConv2d`; float32 only) or ``"stem"`` (for int8: the units' convolutions are
    quantised). The copy keeps ``network``'s class (and front-end, for audio) and module
    names, so :class:`~edge_agent.nn.noise_floor.NoiseFloorNet2d` and the int8 export take it as is.
    """
    if direct_convs not in DIRECT_CONVS:
        raise ValueError(f"direct_convs must be one of {DIRECT_CONVS}, got {direct_convs!r}")
    if network.training:
        raise ValueError("fold an eval-mode network (batch norms must use their running statistics)")
    folded = copy.deepcopy(network)
    with torch.no_grad():
        mean, std = network.normalize.mean, network.normalize.std
        stem = copy.deepcopy(network.stem)
        stem.weight.div_(std.reshape(1, -1, 1, 1))  # (x - mean) / std convolved = (x - mean) convolved with w / std
        folded.stem = DirectConv2d(stem) if direct_convs != "none" else stem
        folded.normalize = Center(mean) if bool((mean != 0).any()) else nn.Identity()
        folded.blocks = nn.Sequential(
            *(
                FoldedBlock2d(block, direct_convs=direct_convs == "all") if isinstance(block, Block2d) else block
                for block in network.blocks
            )
        )
        folded.head_bn = ChannelAffine.from_batchnorm(network.head_bn)
    logger.debug("folded %s (direct convolutions: %s)", type(network).__name__, direct_convs)
    return folded.eval().requires_grad_(False)
