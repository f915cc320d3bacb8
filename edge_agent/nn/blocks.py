"""Building blocks of Deep Residual Shrinkage Networks (Zhao et al., IEEE TII 16(7), 2020).

Shapes: ``N`` batch, ``C`` channels, ``L`` samples.
"""

from __future__ import annotations

import torch
from torch import nn


def soft_threshold(x: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
    """y = sign(x) * max(|x| - tau, 0); ``tau`` broadcasts against ``x`` and must be >= 0."""
    return torch.sign(x) * torch.relu(torch.abs(x) - tau)


class SoftThreshold(nn.Module):
    """Soft thresholding with a threshold given per call (see :func:`soft_threshold`)."""

    def forward(self, x: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
        return soft_threshold(x, tau)


class ShrinkageUnit(nn.Module):
    """Learns a per-sample threshold from the features and applies it.

    |x| -> global average pool -> FC -> BN -> ReLU -> FC -> sigmoid = alpha,
    tau = alpha * mean|x|.  ``channel_wise=True`` gives one threshold per channel
    (DRSN-CW), ``False`` one threshold for all channels (DRSN-CS).

    Input and output: ``(N, C, L)``.
    """

    def __init__(self, channels: int, *, channel_wise: bool) -> None:
        super().__init__()
        if channels < 1:
            raise ValueError(f"channels must be >= 1, got {channels}")
        self.channel_wise = channel_wise
        out_features = channels if channel_wise else 1
        self.attention = nn.Sequential(
            nn.Linear(channels, channels),
            nn.BatchNorm1d(channels),
            nn.ReLU(inplace=True),
            nn.Linear(channels, out_features),
            nn.Sigmoid(),
        )
        self.shrink = SoftThreshold()

    def thresholds(self, x: torch.Tensor) -> torch.Tensor:
        """Thresholds ``(N, C, 1)`` (CW) or ``(N, 1, 1)`` (CS) for features ``(N, C, L)``."""
        abs_mean = torch.abs(x).mean(dim=2)  # (N, C)
        alpha = self.attention(abs_mean)  # (N, C) or (N, 1)
        if self.channel_wise:
            tau = alpha * abs_mean
        else:
            tau = alpha * abs_mean.mean(dim=1, keepdim=True)
        return tau.unsqueeze(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shrink(x, self.thresholds(x))


class Shortcut1d(nn.Module):
    """Identity shortcut: strided subsampling and zero channel padding where the shape changes."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        if out_channels < in_channels:
            raise ValueError(f"out_channels ({out_channels}) must be >= in_channels ({in_channels})")
        self.stride = stride
        self.pad_channels = out_channels - in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = x[:, :, :: self.stride]
        if self.pad_channels > 0:
            x = nn.functional.pad(x, (0, 0, 0, self.pad_channels))
        return x


class ResidualShrinkageBlock1d(nn.Module):
    """Pre-activation residual unit: BN-ReLU-Conv-BN-ReLU-Conv [-> shrinkage] (+ shortcut).

    ``shrinkage`` is ``"cw"`` (RSBU-CW), ``"cs"`` (RSBU-CS) or ``"none"`` (plain residual
    unit, the ResNet baseline). ``shortcut=False`` drops the identity path (ConvNet
    baseline). Input ``(N, C_in, L)``, output ``(N, C_out, ceil(L / stride))``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        stride: int = 1,
        kernel_size: int = 3,
        shrinkage: str = "cw",
        shortcut: bool = True,
    ) -> None:
        super().__init__()
        if shrinkage not in ("cw", "cs", "none"):
            raise ValueError(f"shrinkage must be 'cw', 'cs' or 'none', got {shrinkage!r}")
        padding = kernel_size // 2
        self.bn1 = nn.BatchNorm1d(in_channels)
        self.relu1 = nn.ReLU()
        self.conv1 = nn.Conv1d(in_channels, out_channels, kernel_size, stride, padding, bias=False)
        self.bn2 = nn.BatchNorm1d(out_channels)
        self.relu2 = nn.ReLU()
        self.conv2 = nn.Conv1d(out_channels, out_channels, kernel_size, 1, padding, bias=False)
        self.shrinkage: nn.Module = (
            nn.Identity() if shrinkage == "none" else ShrinkageUnit(out_channels, channel_wise=shrinkage == "cw")
        )
        self.use_shortcut = shortcut
        self.shortcut = Shortcut1d(in_channels, out_channels, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv1(self.relu1(self.bn1(x)))
        y = self.conv2(self.relu2(self.bn2(y)))
        y = self.shrinkage(y)
        if self.use_shortcut:
            y = y + self.shortcut(x)
        return y


class Standardize(nn.Module):
    """Per-channel ``(x - mean) / std`` with constants fixed at training time (sensor units in)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(1, channels, 1))
        self.register_buffer("std", torch.ones(1, channels, 1))

    def set_stats(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.mean.copy_(mean.reshape(self.mean.shape))
        self.std.copy_(std.reshape(self.std.shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std
