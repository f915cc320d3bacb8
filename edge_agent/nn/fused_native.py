"""The fused files' float layers in the op library (edge_agent/kernels: ``stem_ops.inc``, ``glue_ops.inc``).

Each ``native_*`` function returns the native module for a layer of the shape its op computes and
something else (``None`` or the layer itself) otherwise, so a network of another shape keeps torch's.
"""

from __future__ import annotations

import torch
from torch import nn


def _bias(layer: nn.Linear) -> torch.Tensor:
    """A copy of ``layer``'s bias, zeros where it has none (the library's ops always take one)."""
    bias = layer.bias if layer.bias is not None else torch.zeros(layer.out_features)
    return bias.detach().clone()


class NativeStem(nn.Module):
    """A ``(1, k)`` stem convolution of one input channel, no bias, as the op library's ``stem_conv``."""

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        self.stride, self.padding = int(conv.stride[1]), int(conv.padding[1])
        self.register_buffer("weight", conv.weight.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.edge_agent.stem_conv(x, self.weight, self.stride, self.padding)


def native_stem(stem: nn.Module) -> nn.Module:
    """``stem`` as a :class:`NativeStem` where ``stem_conv`` computes it; otherwise ``stem`` itself."""
    if type(stem) is not nn.Conv2d or stem.bias is not None or isinstance(stem.padding, str):
        return stem
    shape = (stem.in_channels, stem.groups, stem.kernel_size[0], stem.stride[0], stem.padding[0], stem.dilation)
    if shape != (1, 1, 1, 1, 0, (1, 1)) or stem.padding_mode != "zeros" or stem.padding[1] >= stem.kernel_size[1]:
        return stem
    return NativeStem(stem)


class NativeLinear(nn.Module):
    """``nn.Linear`` on ``(N, K)`` as the op library's ``dense``."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.register_buffer("weight", linear.weight.detach().clone())
        self.register_buffer("bias", _bias(linear))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.edge_agent.dense(x, self.weight, self.bias, False)


def native_linear(layer: nn.Module) -> nn.Module:
    """``layer`` as a :class:`NativeLinear` if it is an ``nn.Linear``; otherwise ``layer`` itself."""
    return NativeLinear(layer) if type(layer) is nn.Linear else layer


class NativeThresholds(nn.Module):
    """A channel-wise unit's ``tau = (sigmoid(attention(s)) / L) * s`` as the op library's ``thresholds``."""

    def __init__(self, first: nn.Linear, second: nn.Linear, inverse_length: float) -> None:
        super().__init__()
        for name, layer in (("1", first), ("2", second)):
            self.register_buffer(f"w{name}", layer.weight.detach().clone())
            self.register_buffer(f"b{name}", _bias(layer))
        self.inverse_length = float(inverse_length)

    def forward(self, abs_sum: torch.Tensor) -> torch.Tensor:
        return torch.ops.edge_agent.thresholds(abs_sum, self.w1, self.b1, self.w2, self.b2, self.inverse_length)


def native_thresholds(attention: nn.Module, inverse_length: float) -> NativeThresholds | None:
    """:class:`NativeThresholds` for ``Linear(C, H) -> ReLU -> Linear(H, C) -> Sigmoid``; ``None`` otherwise."""
    layers = list(attention) if isinstance(attention, nn.Sequential) else []
    kinds = [type(layer) for layer in layers]
    if kinds != [nn.Linear, nn.ReLU, nn.Linear, nn.Sigmoid]:
        return None
    first, second = layers[0], layers[2]
    if second.in_features != first.out_features or second.out_features != first.in_features:
        return None
    return NativeThresholds(first, second, inverse_length)
