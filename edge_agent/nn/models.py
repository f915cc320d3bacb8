"""Residual (shrinkage) networks for 1-D signals and their factories.

All models take raw windows ``(N, in_channels, window_samples)`` in sensor units,
standardise them inside the graph and return logits ``(N, num_classes)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from edge_agent.nn.blocks import ResidualShrinkageBlock1d, Standardize
from edge_agent.nn.registry import Registry


class ResidualNet1d(nn.Module):
    """Paper topology (Zhao et al. 2020, Table II), generalised.

    Stem ``Conv(widths[0], k, /2)``; for each width a stage of ``blocks_per_stage`` units,
    the first with stride 2; then BN, ReLU, global average pooling and a linear head.
    """

    def __init__(
        self,
        *,
        num_classes: int,
        in_channels: int = 1,
        widths: Sequence[int] = (4, 8, 16),
        blocks_per_stage: int = 4,
        kernel_size: int = 3,
        shrinkage: str = "cw",
        shortcut: bool = True,
        window_samples: int = 2048,
    ) -> None:
        super().__init__()
        if num_classes < 1 or in_channels < 1 or blocks_per_stage < 1 or not widths:
            raise ValueError(
                f"invalid sizes: num_classes={num_classes}, in_channels={in_channels}, "
                f"blocks_per_stage={blocks_per_stage}, widths={tuple(widths)}"
            )
        min_samples = 2 ** (len(widths) + 1)
        if window_samples < min_samples:
            raise ValueError(f"window_samples must be >= {min_samples}, got {window_samples}")
        self.window_samples = window_samples
        self.normalize = Standardize(in_channels)
        self.stem = nn.Conv1d(in_channels, widths[0], kernel_size, 2, kernel_size // 2, bias=False)
        blocks: list[nn.Module] = []
        channels = widths[0]
        for width in widths:
            for index in range(blocks_per_stage):
                blocks.append(
                    ResidualShrinkageBlock1d(
                        channels,
                        width,
                        stride=2 if index == 0 else 1,
                        kernel_size=kernel_size,
                        shrinkage=shrinkage,
                        shortcut=shortcut,
                    )
                )
                channels = width
        self.blocks = nn.Sequential(*blocks)
        self.head_bn = nn.BatchNorm1d(channels)
        self.head_relu = nn.ReLU()
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.normalize(x)
        x = self.blocks(self.stem(x))
        x = self.head_relu(self.head_bn(x))
        return self.fc(x.mean(dim=2))


ModelFactory = Callable[..., nn.Module]
_MODELS: Registry[ModelFactory] = Registry("model")
register_model = _MODELS.register
list_models = _MODELS.names


def get_model(name: str, **kwargs: object) -> nn.Module:
    """Build a registered model by name with keyword-only options."""
    return _MODELS.get(name)(**kwargs)


@register_model("drsn_cw")
def drsn_cw(*, num_classes: int, **kwargs: object) -> ResidualNet1d:
    """DRSN with channel-wise thresholds (RSBU-CW)."""
    return ResidualNet1d(num_classes=num_classes, shrinkage="cw", shortcut=True, **kwargs)


@register_model("drsn_cs")
def drsn_cs(*, num_classes: int, **kwargs: object) -> ResidualNet1d:
    """DRSN with one channel-shared threshold per unit (RSBU-CS)."""
    return ResidualNet1d(num_classes=num_classes, shrinkage="cs", shortcut=True, **kwargs)


@register_model("resnet")
def resnet(*, num_classes: int, **kwargs: object) -> ResidualNet1d:
    """The paper's ResNet baseline: same units without shrinkage."""
    return ResidualNet1d(num_classes=num_classes, shrinkage="none", shortcut=True, **kwargs)


@register_model("convnet")
def convnet(*, num_classes: int, **kwargs: object) -> ResidualNet1d:
    """The paper's ConvNet baseline: same layers, no shrinkage and no shortcuts."""
    return ResidualNet1d(num_classes=num_classes, shrinkage="none", shortcut=False, **kwargs)
