"""Every registered autoencoder: shapes, one optimiser step lowers its loss, TorchScript round trip."""

from __future__ import annotations

import io
import math

import pytest
import torch

from edge_agent.nn.anomaly_frontends import FRONTENDS, SCALE_FREE, AnomalyFrontEnd
from edge_agent.nn.autoencoders import AnomalyDetector, get_autoencoder, is_trainable, kl_sparsity, list_autoencoders

CHANNELS, FEATURES = 2, 32
TRAINABLE = [n for n in list_autoencoders() if is_trainable(get_autoencoder(n, in_channels=1, in_features=FEATURES))]


def test_the_issue_s_autoencoders_are_registered() -> None:
    assert {"undercomplete", "denoising", "sparse", "conv"} <= set(list_autoencoders())


@pytest.mark.parametrize("name", list_autoencoders())
def test_shapes(name: str) -> None:
    network = get_autoencoder(name, in_channels=CHANNELS, in_features=FEATURES)
    z = torch.randn(5, CHANNELS, FEATURES)
    assert network(z).shape == z.shape
    assert network.encode(z).shape[0] == 5


@pytest.mark.parametrize("name", TRAINABLE)
def test_one_step_lowers_the_loss(name: str) -> None:
    torch.manual_seed(0)
    network = get_autoencoder(name, in_channels=CHANNELS, in_features=FEATURES)
    z = torch.randn(64, CHANNELS, FEATURES)
    optimiser = torch.optim.SGD(network.parameters(), lr=0.05)

    def loss() -> torch.Tensor:  # the same corruption draw before and after the step
        return network.loss(z, generator=torch.Generator().manual_seed(1))[0]

    before = loss()
    optimiser.zero_grad()
    before.backward()
    optimiser.step()
    assert float(loss().detach()) < float(before.detach())


@pytest.mark.parametrize("name", list_autoencoders())
@pytest.mark.parametrize("frontend", FRONTENDS)
def test_torchscript_round_trip(name: str, frontend: str) -> None:
    front = AnomalyFrontEnd(
        frontend,
        window_samples=256,
        sample_rate_hz=8000.0,
        n_fft=64,
        n_bands=16,
        n_bins=32,
        kurtosis_bands=16,
        spread_bands=7,
    )
    detector = AnomalyDetector(front, get_autoencoder(name, in_channels=1, in_features=front.out_features), 1).eval()
    buffer = io.BytesIO()
    torch.jit.save(torch.jit.script(detector), buffer)
    buffer.seek(0)
    loaded = torch.jit.load(buffer)
    x = torch.randn(3, 1, 256)
    scores = loaded(x)
    assert scores.shape == (3,) and scores.dtype == torch.float32
    torch.testing.assert_close(scores, detector(x))


def test_sparse_penalty_is_the_kl_formula_on_a_hand_made_batch() -> None:
    codes = torch.tensor([[0.1, 0.2], [0.3, 0.4]])  # mean activations 0.2 and 0.3
    rho = 0.05

    def kl(q: float) -> float:
        return rho * math.log(rho / q) + (1 - rho) * math.log((1 - rho) / (1 - q))

    assert float(kl_sparsity(codes, rho)) == pytest.approx(kl(0.2) + kl(0.3), rel=1e-5)
    network = get_autoencoder("sparse", in_channels=1, in_features=4, hidden=3, code=2, beta=0.5, rho=rho)
    z = torch.randn(8, 1, 4)
    expected = 0.5 * kl_sparsity(network.encode(z), rho)
    torch.testing.assert_close(network.loss(z)[1]["sparsity"], expected)


def test_the_denoising_extra_term_is_zero_when_the_input_is_not_corrupted() -> None:
    network = get_autoencoder("denoising", in_channels=1, in_features=16, code_weight=1.0)
    z = torch.randn(8, 1, 16)
    assert float(network.loss(z, corrupted=z)[1]["code"].detach()) == 0.0
    assert float(network.loss(z, corrupted=network.corrupt(z))[1]["code"].detach()) > 0.0


def test_level_invariant_front_ends_ignore_gain() -> None:
    x = torch.randn(2, 1, 512)
    for kind in FRONTENDS:
        front = AnomalyFrontEnd(kind, window_samples=512, sample_rate_hz=8000.0, n_fft=128)
        torch.testing.assert_close(front(x * 30.0), front(x), atol=1e-4, rtol=1e-4)
        absolute = AnomalyFrontEnd(kind, window_samples=512, sample_rate_hz=8000.0, n_fft=128, level_invariant=False)
        if kind not in SCALE_FREE:  # ratios of the signal to itself: scale-free whatever the setting
            assert not torch.allclose(absolute(x * 30.0), absolute(x), atol=1e-3)
