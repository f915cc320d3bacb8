"""Every registered model: shapes, one training step, TorchScript parity with eager."""

from __future__ import annotations

import io

import pytest
import torch

from edge_agent.nn import get_model, list_models

TINY = {"widths": (4, 8), "blocks_per_stage": 1, "window_samples": 256}


def test_registry_has_paper_models() -> None:
    assert {"drsn_cw", "drsn_cs", "resnet", "convnet"} <= set(list_models())


def test_unknown_model_names_the_registered_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown model 'nope'.*drsn_cw"):
        get_model("nope", num_classes=3)


@pytest.mark.parametrize("name", list_models())
@pytest.mark.parametrize("in_channels", [1, 3])
def test_output_shape(name: str, in_channels: int) -> None:
    model = get_model(name, num_classes=5, in_channels=in_channels, **TINY).eval()
    assert model(torch.randn(2, in_channels, 256)).shape == (2, 5)


@pytest.mark.parametrize("name", list_models())
def test_paper_size_output_shape(name: str) -> None:
    model = get_model(name, num_classes=10).eval()
    assert model(torch.randn(3, 1, 2048)).shape == (3, 10)


@pytest.mark.parametrize("name", list_models())
def test_one_training_step_lowers_the_loss(name: str) -> None:
    torch.manual_seed(0)
    model = get_model(name, num_classes=3, **TINY)
    inputs, labels = torch.randn(16, 1, 256), torch.randint(0, 3, (16,))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    before = torch.nn.functional.cross_entropy(model(inputs), labels)
    optimizer.zero_grad()
    before.backward()
    optimizer.step()
    after = torch.nn.functional.cross_entropy(model(inputs), labels)
    assert after.item() < before.item()


@pytest.mark.parametrize("name", list_models())
def test_torchscript_script_save_load_matches_eager(name: str) -> None:
    torch.manual_seed(0)
    model = get_model(name, num_classes=4, **TINY)
    model.train()
    for _ in range(2):  # move BN running stats away from their defaults
        model(torch.randn(8, 1, 256))
    model.eval()
    buffer = io.BytesIO()
    torch.jit.save(torch.jit.script(model), buffer)
    buffer.seek(0)
    loaded = torch.jit.load(buffer)
    inputs = torch.randn(5, 1, 256)
    with torch.no_grad():
        torch.testing.assert_close(loaded(inputs), model(inputs), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"widths": ()}, "widths"),
        ({"blocks_per_stage": 0}, "blocks_per_stage=0"),
        ({"window_samples": 4}, "window_samples must be >= 16, got 4"),
    ],
)
def test_bad_sizes_name_the_value(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        get_model("drsn_cw", num_classes=3, **kwargs)


def test_wider_and_deeper_models_are_configurable() -> None:
    model = get_model("drsn_cw", num_classes=10, widths=(8, 16, 32, 64), blocks_per_stage=2, window_samples=4096)
    assert model.eval()(torch.randn(1, 1, 4096)).shape == (1, 10)
