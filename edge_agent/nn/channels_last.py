"""Inference copy of a trained :class:`ResidualNet1d` in a 2-D channels-last layout (used by the export).

Every ``(N, C, L)`` tensor becomes ``(N, C, 1, L)`` stored channels-last (NHWC), every ``Conv1d``
of kernel ``k`` a ``Conv2d`` of kernel ``(1, k)`` with the same weights, every ``BatchNorm1d`` on
features a ``BatchNorm2d``. On this x86 CPU (torch 2.13, one thread) that is what both kernels
prefer: float32 convolutions run ~1.5x faster than in 1-D, and PyTorch's 1-D quantized
convolution (internally a 2-D channels-last kernel) no longer copies its input and output
(``aten::clone``). The soft threshold is written as ``x - clamp(x, -tau, tau)``: for ``tau >= 0``
the same values as ``sign(x) * max(|x| - tau, 0)`` in two elementwise passes instead of five,
and it, the residual add and the ReLUs work in place on fresh intermediate tensors (~4 % faster in
both precisions, another ~5 % for float32 from the ReLUs; the int8 graph has its ReLUs fused into
``conv1`` or dropped before a quantize). That is why the copy is for inference only: its parameters
do not require gradients.

No retraining: the weights are copied (viewed) from the 1-D model; outputs match it to float rounding.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from edge_agent.nn.audio import AudioResidualNet1d
from edge_agent.nn.blocks import ResidualShrinkageBlock1d, ShrinkageUnit, Standardize
from edge_agent.nn.models import ResidualNet1d


def conv2d_from(conv: nn.Conv1d) -> nn.Conv2d:
    """``Conv2d`` with kernel ``(1, k)`` computing ``conv`` on ``(N, C, 1, L)``."""
    if conv.padding_mode != "zeros" or isinstance(conv.padding, str):
        raise ValueError(f"only zero padding given as a number is supported, got {conv.padding!r}")
    new = nn.Conv2d(
        conv.in_channels,
        conv.out_channels,
        (1, conv.kernel_size[0]),
        (1, conv.stride[0]),
        (0, conv.padding[0]),
        (1, conv.dilation[0]),
        conv.groups,
        bias=conv.bias is not None,
    )
    with torch.no_grad():
        new.weight.copy_(conv.weight.unsqueeze(2))
        if conv.bias is not None:
            new.bias.copy_(conv.bias)
    return new


def batchnorm2d_from(bn: nn.BatchNorm1d) -> nn.BatchNorm2d:
    new = nn.BatchNorm2d(bn.num_features, eps=bn.eps, momentum=bn.momentum, affine=bn.affine)
    new.load_state_dict(bn.state_dict())
    return new


class Shrinkage2d(nn.Module):
    """:class:`ShrinkageUnit` on ``(N, C, 1, L)``; reuses the unit's threshold sub-network."""

    def __init__(self, unit: ShrinkageUnit) -> None:
        super().__init__()
        self.channel_wise = unit.channel_wise
        self.attention = copy.deepcopy(unit.attention)

    def thresholds(self, x: torch.Tensor) -> torch.Tensor:
        """The thresholds ``tau`` ``(N, C)`` (CW) or ``(N, 1)`` (CS) for features ``(N, C, 1, L)``."""
        abs_mean = torch.abs(x).mean(dim=(2, 3))  # (N, C)
        alpha = self.attention(abs_mean)
        return alpha * abs_mean if self.channel_wise else alpha * abs_mean.mean(dim=1, keepdim=True)

    def shrink(self, x: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
        tau = tau[:, :, None, None]
        return x.sub_(torch.clamp(x, -tau, tau))  # in place: x is the convolution's output, used only here

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shrink(x, self.thresholds(x))


class Block2d(nn.Module):
    """:class:`ResidualShrinkageBlock1d` on ``(N, C, 1, L)``."""

    def __init__(self, block: ResidualShrinkageBlock1d) -> None:
        super().__init__()
        self.bn1 = batchnorm2d_from(block.bn1)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = conv2d_from(block.conv1)
        self.bn2 = batchnorm2d_from(block.bn2)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = conv2d_from(block.conv2)
        self.shrinkage: nn.Module = (
            Shrinkage2d(block.shrinkage) if isinstance(block.shrinkage, ShrinkageUnit) else nn.Identity()
        )
        self.use_shortcut = block.use_shortcut
        self.stride = block.shortcut.stride
        self.pad_channels = block.shortcut.pad_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._add_shortcut(x, self.shrinkage(self._convolve(x)))

    def forward_with_thresholds(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The unit's output and its thresholds ``tau`` ``(N, C)``; needs a shrinkage unit."""
        if not isinstance(self.shrinkage, Shrinkage2d):
            raise TypeError("this unit has no shrinkage (a ResNet or ConvNet baseline)")
        y = self._convolve(x)
        tau = self.shrinkage.thresholds(y)
        return self._add_shortcut(x, self.shrinkage.shrink(y, tau)), tau

    def _convolve(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv1(self.relu1(self.bn1(x)))
        return self.conv2(self.relu2(self.bn2(y)))

    def _add_shortcut(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.use_shortcut:
            shortcut = x
            if self.stride > 1:
                shortcut = shortcut[:, :, :, :: self.stride]
            if self.pad_channels > 0:
                shortcut = nn.functional.pad(shortcut, (0, 0, 0, 0, 0, self.pad_channels))
            y = y.add_(shortcut)  # y is this unit's own fresh tensor
        return y


class ResidualNet2d(nn.Module):
    """:class:`ResidualNet1d` computed in 2-D channels-last; same input ``(N, C, L)`` and logits."""

    def __init__(self, model: ResidualNet1d) -> None:
        super().__init__()
        self.window_samples = model.window_samples
        self.normalize = Standardize(model.normalize.mean.shape[1])
        self.normalize.load_state_dict(model.normalize.state_dict())
        self.stem = conv2d_from(model.stem)
        self.blocks = nn.Sequential(*(Block2d(block) for block in model.blocks))
        self.head_bn = batchnorm2d_from(model.head_bn)
        self.head_relu = nn.ReLU(inplace=True)
        self.fc = copy.deepcopy(model.fc)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.normalize(x).unsqueeze(2).contiguous(memory_format=torch.channels_last)
        x = self.blocks(self.stem(x))
        x = self.head_relu(self.head_bn(x))
        return self.fc(x.mean(dim=(2, 3)))


class AudioResidualNet2d(ResidualNet2d):
    """:class:`~edge_agent.nn.audio.AudioResidualNet1d` in 2-D channels-last: same front-end, same abstention.

    Module names match the 1-D model's (``stem``, ``blocks.*``), so the export quantises the same layers.
    """

    def __init__(self, model: AudioResidualNet1d) -> None:
        super().__init__(model)
        self.frontend = copy.deepcopy(model.frontend)
        self.window_samples = model.window_samples
        self.abstain_rms = model.abstain_rms

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        centred = x - x.mean(dim=-1, keepdim=True)
        rms = torch.sqrt(centred.pow(2).mean(dim=(1, 2)))  # (N,)
        audible = (rms >= self.abstain_rms).to(x.dtype).unsqueeze(1)  # (N, 1)
        return super().forward(self.frontend(x)) * audible


def to_channels_last_2d(model: nn.Module) -> ResidualNet2d:
    """A 2-D channels-last copy of ``model`` (a :class:`ResidualNet1d`) for inference; ``model`` is untouched.

    An :class:`~edge_agent.nn.audio.AudioResidualNet1d` keeps its front-end and abstention.

    The copy is in eval mode and its parameters do not require gradients (it computes in place).
    """
    if not isinstance(model, ResidualNet1d):
        raise TypeError(f"expected a ResidualNet1d, got {type(model).__name__}")
    network = AudioResidualNet2d(model) if isinstance(model, AudioResidualNet1d) else ResidualNet2d(model)
    return network.eval().requires_grad_(False).to(memory_format=torch.channels_last)
