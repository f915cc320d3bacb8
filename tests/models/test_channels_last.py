"""The 2-D channels-last inference copy the export traces: same logits, and an int8 graph without layout copies."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from edge_agent.nn import audio_drsn_cw, get_model, list_models, soft_threshold
from edge_agent.nn.blocks import ShrinkageUnit
from edge_agent.nn.channels_last import Shrinkage2d, to_channels_last_2d
from edge_agent.training.export import GRAPH_LAYOUT, build_torchscript, describe_model
from edge_agent.training.quantize import quantize_int8

WINDOW = 256


pytestmark = pytest.mark.usefixtures("one_thread_and_engine")


def tiny(name: str, in_channels: int = 1) -> nn.Module:
    torch.manual_seed(0)
    model = get_model(
        name, num_classes=3, in_channels=in_channels, widths=(4, 8), blocks_per_stage=2, window_samples=WINDOW
    )
    model.train()
    with torch.no_grad():  # move the BN statistics away from their defaults
        for _ in range(3):
            model(torch.randn(16, in_channels, WINDOW) * 2 + 0.5)
    return model.eval()


@pytest.mark.parametrize("name", list_models())
@pytest.mark.parametrize("in_channels", [1, 3])
def test_2d_copy_gives_the_1d_logits(name: str, in_channels: int) -> None:
    model = tiny(name, in_channels)
    network = to_channels_last_2d(model)
    inputs = torch.randn(5, in_channels, WINDOW)
    with torch.inference_mode():
        torch.testing.assert_close(network(inputs), model(inputs), atol=1e-5, rtol=1e-5)
    assert not any(isinstance(m, nn.Conv1d) for m in network.modules())
    assert all(isinstance(b.bn1, nn.BatchNorm2d) and isinstance(b.conv2, nn.Conv2d) for b in network.blocks)
    assert network.stem.weight.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("frontend", ["raw", "logspec"])
def test_2d_copy_of_an_audio_model_keeps_its_front_end_and_abstention(frontend: str) -> None:
    torch.manual_seed(0)
    model = audio_drsn_cw(num_classes=3, frontend=frontend, window_samples=1024, n_fft=256, widths=(4, 8)).train()
    with torch.no_grad():  # move the BN statistics away from their defaults
        model(torch.randn(16, 1, 1024) * 0.1)
    model.eval()
    network = to_channels_last_2d(model)
    inputs = torch.cat([torch.randn(4, 1, 1024) * 0.05, torch.zeros(1, 1, 1024)])  # the last one is silent
    with torch.inference_mode():
        torch.testing.assert_close(network(inputs), model(inputs), atol=1e-5, rtol=1e-5)
        assert torch.equal(network(inputs)[-1], torch.zeros(3))
    assert next(n for n, m in network.named_modules() if isinstance(m, nn.Conv2d)) == "stem"


@pytest.mark.parametrize("channel_wise", [True, False])
def test_clamp_form_of_the_soft_threshold_matches_the_paper_form(channel_wise: bool) -> None:
    torch.manual_seed(1)
    unit = ShrinkageUnit(6, channel_wise=channel_wise).eval()
    x = torch.randn(4, 6, 50) * 3
    with torch.no_grad():
        expected = soft_threshold(x, unit.thresholds(x))
        got = Shrinkage2d(unit)(x.unsqueeze(2)).squeeze(2)
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)


def test_to_channels_last_refuses_other_modules() -> None:
    with pytest.raises(TypeError, match="expected a ResidualNet1d, got Linear"):
        to_channels_last_2d(nn.Linear(2, 2))


def test_int8_export_graph_has_2d_quantized_convs_and_no_layout_copies() -> None:
    model = tiny("drsn_cw")
    meta = describe_model(model, name="t", labels=["a", "b", "c"], sample_rate_hz=12_000, architecture={})
    calibration = torch.randn(64, 1, WINDOW)
    module, meta = build_torchscript(model, meta, calibration=calibration)
    assert meta["graph_layout"] == GRAPH_LAYOUT and meta["precision"] == "int8"
    kinds = [node.kind() for node in module.inlined_graph.nodes()]
    units = len(model.blocks)
    assert kinds.count("quantized::conv2d_relu") == units and kinds.count("quantized::conv2d") == units
    assert "quantized::conv1d" not in kinds
    # the ReLU in front of each unit's quantize is gone (quint8 with zero point 0 clamps at 0 itself)
    for node in module.inlined_graph.nodes():
        if node.kind() == "aten::quantize_per_tensor":
            assert next(node.inputs()).node().kind() == "aten::batch_norm"
    inputs = torch.randn(8, 1, WINDOW)
    with torch.inference_mode(), torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        module(inputs)
    ops = {event.key for event in prof.key_averages()}
    assert "quantized::conv2d" in ops and "aten::clone" not in ops  # the 1-D int8 convs copied layouts here
    with torch.inference_mode():
        reference = quantize_int8(to_channels_last_2d(model), calibration, drop_relu=False)
        torch.testing.assert_close(module(inputs), reference(inputs), atol=1e-5, rtol=0)
