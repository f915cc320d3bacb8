from __future__ import annotations

import torch

from edge_agent.nn import ShrinkageUnit, soft_threshold


def test_values_inside_the_band_become_zero_and_others_shrink_by_tau() -> None:
    x = torch.tensor([-3.0, -1.0, -0.5, 0.0, 0.5, 1.0, 3.0])
    y = soft_threshold(x, torch.tensor(1.0))
    torch.testing.assert_close(y, torch.tensor([-2.0, 0.0, 0.0, 0.0, 0.0, 0.0, 2.0]))


def test_gradient_is_one_outside_the_band_and_zero_inside() -> None:
    x = torch.tensor([-3.0, -0.5, 0.2, 2.0], requires_grad=True)
    soft_threshold(x, torch.tensor(1.0)).sum().backward()
    torch.testing.assert_close(x.grad, torch.tensor([1.0, 0.0, 0.0, 1.0]))


def test_threshold_broadcasts_per_channel() -> None:
    x = torch.ones(1, 2, 3)
    tau = torch.tensor([0.25, 2.0]).reshape(1, 2, 1)
    torch.testing.assert_close(soft_threshold(x, tau), torch.tensor([[[0.75] * 3, [0.0] * 3]]))


def test_learned_thresholds_are_positive_and_below_the_mean_magnitude() -> None:
    torch.manual_seed(0)
    x = torch.randn(4, 6, 50) * torch.tensor([0.1, 1, 2, 5, 10, 20]).reshape(1, 6, 1)
    for channel_wise, shape in ((True, (4, 6, 1)), (False, (4, 1, 1))):
        unit = ShrinkageUnit(6, channel_wise=channel_wise).eval()
        tau = unit.thresholds(x)
        assert tau.shape == shape
        bound = x.abs().mean(dim=2, keepdim=True)
        if not channel_wise:
            bound = bound.mean(dim=1, keepdim=True)
        assert bool((tau > 0).all()) and bool((tau < bound).all())
