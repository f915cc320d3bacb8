"""Folding for inference (edge_agent.nn.folding): every folded pattern computes what the unfolded one did."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from torch import nn

from edge_agent.modelfile import load_model
from edge_agent.nn import audio_drsn_cw, get_model, list_models
from edge_agent.nn.channels_last import Block2d, Shrinkage2d, to_channels_last_2d
from edge_agent.nn.folding import (
    Center,
    ChannelAffine,
    DirectConv2d,
    FoldedBlock2d,
    FoldedShrinkage2d,
    GemmStem,
    add_into_leading_channels,
    fold_network,
    unit_lengths,
)
from edge_agent.training.export import GRAPH_LAYOUT, describe_model
from edge_agent.training.int8_params import OtherWeightsError, read_int8_parameters
from edge_agent.training.noise_floor_export import build_noise_floor_torchscript
from edge_agent.training.quantize import drop_relu_before_quantize, quantize_int8, save_torchscript
from edge_agent.training.unfreeze import network_from_frozen

WINDOW = 256
ATOL = 1e-5

pytestmark = pytest.mark.usefixtures("one_thread_and_engine")


def moved_statistics(model: nn.Module, inputs: torch.Tensor) -> nn.Module:
    """``model`` in eval mode with every BN's statistics and affine moved away from their defaults."""
    generator = torch.Generator().manual_seed(5)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(inputs)
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.weight.copy_(0.5 + torch.rand(module.num_features, generator=generator))
                module.bias.copy_(torch.randn(module.num_features, generator=generator))
    return model.eval()


def tiny(name: str = "drsn_cw", in_channels: int = 1) -> nn.Module:
    torch.manual_seed(0)
    model = get_model(
        name, num_classes=3, in_channels=in_channels, widths=(4, 8), blocks_per_stage=2, window_samples=WINDOW
    )
    model = moved_statistics(model, torch.randn(16, in_channels, WINDOW) * 2 + 0.5)
    with torch.no_grad():
        model.normalize.set_stats(torch.full((in_channels,), 0.3), torch.full((in_channels,), 2.5))
    return model


def channels_last(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    x = torch.randn(shape, generator=torch.Generator().manual_seed(seed)) * 3
    return x.contiguous(memory_format=torch.channels_last)


def test_channel_affine_is_the_eval_batch_norm() -> None:
    bn = moved_statistics(nn.BatchNorm2d(6), channels_last((8, 6, 1, 40)))
    x = channels_last((4, 6, 1, 40), seed=1)
    with torch.no_grad():
        torch.testing.assert_close(ChannelAffine.from_batchnorm(bn)(x), bn(x), atol=ATOL, rtol=1e-5)


@pytest.mark.parametrize("channel_wise", [True, False])
def test_threshold_sub_network_with_its_batch_norm_folded_into_the_linear(channel_wise: bool) -> None:
    block = to_channels_last_2d(tiny("drsn_cw" if channel_wise else "drsn_cs")).blocks[1]
    unit = block.shrinkage
    assert isinstance(unit, Shrinkage2d) and isinstance(unit.attention[1], nn.BatchNorm1d)
    folded = FoldedShrinkage2d(unit)
    assert not any(isinstance(m, nn.BatchNorm1d) for m in folded.modules())
    x = channels_last((5, unit.attention[0].in_features, 1, 64), seed=2)
    with torch.no_grad():
        torch.testing.assert_close(folded.thresholds(x), unit.thresholds(x), atol=ATOL, rtol=1e-5)
        torch.testing.assert_close(folded(x.clone()), unit(x.clone()), atol=ATOL, rtol=1e-5)


@pytest.mark.parametrize("length", [64, 48])
def test_thresholds_from_the_sum_with_the_length_in_the_linear_are_the_mean_thresholds(length: int) -> None:
    unit = to_channels_last_2d(tiny()).blocks[1].shrinkage
    assert isinstance(unit, Shrinkage2d)
    folded, by_sum = FoldedShrinkage2d(unit), FoldedShrinkage2d(unit, length)
    x = channels_last((5, unit.attention[0].in_features, 1, length), seed=2)
    with torch.no_grad():
        if length == 64:  # a power of two: scaling by 1 / L is exact, so are the thresholds
            assert torch.equal(by_sum.thresholds(x), folded.thresholds(x))
        torch.testing.assert_close(by_sum.thresholds(x), unit.thresholds(x), atol=ATOL, rtol=1e-5)
        torch.testing.assert_close(by_sum(x.clone()), unit(x.clone()), atol=ATOL, rtol=1e-5)
    with pytest.raises(ValueError, match="length must be"):
        FoldedShrinkage2d(unit, 0)


def test_the_shortcut_goes_into_the_leading_channels_in_place() -> None:
    y, shortcut = channels_last((2, 6, 1, 10), seed=1), channels_last((2, 4, 1, 10), seed=2)
    expected = y + nn.functional.pad(shortcut, (0, 0, 0, 0, 0, 2))
    got = add_into_leading_channels(y, shortcut, 4)
    assert got is y
    torch.testing.assert_close(got, expected, atol=0, rtol=0)


def test_unit_lengths_are_the_lengths_each_unit_sees() -> None:
    assert unit_lengths(to_channels_last_2d(tiny())) == [64, 64, 32, 32]  # stem /2, second stage /2


@pytest.mark.parametrize("in_channels", [1, 3])
@pytest.mark.parametrize("batch", [1, 7])
def test_gemm_stem_is_the_stem_convolution_of_the_centred_input(in_channels: int, batch: int) -> None:
    conv = nn.Conv2d(in_channels, 8, (1, 3), (1, 2), (0, 1)).to(memory_format=torch.channels_last)
    mean = torch.linspace(0.2, 0.7, in_channels)
    x = torch.randn(batch, in_channels, 1, 100, generator=torch.Generator().manual_seed(in_channels)) + 0.5
    x = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        got = GemmStem(conv, mean, 100)(x)
        torch.testing.assert_close(got, conv(x - mean.reshape(1, -1, 1, 1)), atol=ATOL, rtol=1e-5)
    assert got.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("direct_convs", [False, True])
@pytest.mark.parametrize("index", [0, 1, 2], ids=["strided+padded", "same-shape", "strided-wider"])
def test_unit_with_bn2_in_conv1_and_bn1_as_an_affine(index: int, direct_convs: bool) -> None:
    block = to_channels_last_2d(tiny()).blocks[index]
    assert isinstance(block, Block2d)
    folded = FoldedBlock2d(block, direct_convs=direct_convs)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in folded.modules())
    x = channels_last((3, block.conv1.in_channels, 1, 64), seed=3)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), block(x), atol=ATOL, rtol=1e-5)
        (got, got_tau), (expected, expected_tau) = folded.forward_with_thresholds(x), block.forward_with_thresholds(x)
    torch.testing.assert_close(got, expected, atol=ATOL, rtol=1e-5)
    torch.testing.assert_close(got_tau, expected_tau, atol=ATOL, rtol=1e-5)


@pytest.mark.parametrize("batch", [1, 32])
def test_direct_convolution_gives_the_convolution(batch: int) -> None:
    conv = nn.Conv2d(4, 8, (1, 3), (1, 2), (0, 1), bias=True).to(memory_format=torch.channels_last)
    x = channels_last((batch, 4, 1, 100), seed=4)
    with torch.no_grad():
        got = DirectConv2d(conv)(x)
        torch.testing.assert_close(got, conv(x), atol=ATOL, rtol=1e-5)
    assert got.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("direct_convs", ["none", "stem", "all"])
@pytest.mark.parametrize("name", list_models())
@pytest.mark.parametrize("in_channels", [1, 3])
def test_folded_network_gives_the_logits_and_has_no_batch_norm(name: str, in_channels: int, direct_convs: str) -> None:
    network = to_channels_last_2d(tiny(name, in_channels))
    folded = fold_network(network, direct_convs=direct_convs)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in folded.modules())
    assert isinstance(folded.normalize, Center)  # the division by std went into the stem
    assert isinstance(folded.stem, DirectConv2d) == (direct_convs != "none")
    for batch in (1, 7):
        inputs = torch.randn(batch, in_channels, WINDOW, generator=torch.Generator().manual_seed(batch)) * 2
        with torch.inference_mode():
            torch.testing.assert_close(folded(inputs), network(inputs), atol=ATOL, rtol=1e-5)
    assert any(isinstance(m, nn.BatchNorm2d) for m in network.modules())  # the original is untouched


@pytest.mark.parametrize("frontend", ["raw", "logspec"])
def test_folded_audio_network_keeps_its_front_end_and_abstention(frontend: str) -> None:
    torch.manual_seed(0)
    model = audio_drsn_cw(num_classes=3, frontend=frontend, window_samples=1024, n_fft=256, widths=(4, 8))
    network = to_channels_last_2d(moved_statistics(model, torch.randn(16, 1, 1024) * 0.1))
    folded = fold_network(network)
    assert isinstance(folded.normalize, nn.Identity)  # mean 0, std 1: nothing left to do
    inputs = torch.cat([torch.randn(4, 1, 1024) * 0.05, torch.zeros(1, 1, 1024)])  # the last one is silent
    with torch.inference_mode():
        torch.testing.assert_close(folded(inputs), network(inputs), atol=ATOL, rtol=1e-5)
        assert torch.equal(folded(inputs)[-1], torch.zeros(3))


@pytest.mark.parametrize("in_channels", [1, 3])
def test_folded_network_with_the_gemm_stem_gives_the_logits(in_channels: int) -> None:
    network = to_channels_last_2d(tiny("drsn_cw", in_channels))
    folded = fold_network(network, stem="gemm")
    assert isinstance(folded.stem, GemmStem) and isinstance(folded.normalize, nn.Identity)
    for batch in (1, 7):
        inputs = torch.randn(batch, in_channels, WINDOW, generator=torch.Generator().manual_seed(batch)) * 2
        with torch.inference_mode():
            torch.testing.assert_close(folded(inputs), network(inputs), atol=ATOL, rtol=1e-5)


def test_fold_refuses_a_network_in_training_mode_and_unknown_options() -> None:
    network = to_channels_last_2d(tiny())
    with pytest.raises(ValueError, match="direct_convs must be one of"):
        fold_network(network, direct_convs="some")
    with pytest.raises(ValueError, match="stem must be one of"):
        fold_network(network, stem="some")
    with pytest.raises(ValueError, match="gemm only with"):
        fold_network(network, direct_convs="stem", stem="gemm")
    with pytest.raises(ValueError, match="eval-mode"):
        fold_network(copy.deepcopy(network).train())


def test_int8_graph_of_the_folded_network_has_no_float_relu_before_a_quantize() -> None:
    folded = fold_network(to_channels_last_2d(tiny()), direct_convs="stem")
    calibration = torch.randn(64, 1, WINDOW, generator=torch.Generator().manual_seed(6))
    kept = quantize_int8(folded, calibration, drop_relu=False)
    quantized = quantize_int8(folded, calibration)
    quantizes = [n for n in quantized.graph.nodes if n.target is torch.quantize_per_tensor]
    assert len(quantizes) == len(folded.blocks)
    assert all(n.args[0].target is torch.addcmul for n in quantizes)  # straight from bn1's affine
    assert drop_relu_before_quantize(copy.deepcopy(kept)) == len(folded.blocks)
    inputs = torch.randn(8, 1, WINDOW)
    with torch.inference_mode():
        torch.testing.assert_close(quantized(inputs), kept(inputs), atol=ATOL, rtol=0)


@pytest.mark.parametrize("stem", ["conv", "gemm"])
def test_a_folded_float_file_is_read_back_by_unfreeze(tmp_path: Path, stem: str) -> None:
    model = tiny()
    architecture = {"model": "drsn_cw", "widths": [4, 8], "blocks_per_stage": 2, "kernel_size": 3}
    meta = describe_model(model, name="t", labels=["a", "b", "c"], sample_rate_hz=12_000, architecture=architecture)
    meta["graph_layout"] = GRAPH_LAYOUT
    network = to_channels_last_2d(model)
    windows = torch.randn(32, 1, WINDOW, generator=torch.Generator().manual_seed(7))
    module, meta = build_noise_floor_torchscript(
        fold_network(network, stem=stem), meta, reference_windows=windows, reference_data="32 random windows"
    )
    kinds = {node.kind() for node in module.inlined_graph.nodes()}
    assert "aten::batch_norm" not in kinds and "aten::addcmul" in kinds
    assert ("aten::addmm" in kinds) == (stem == "gemm")
    assert ("aten::pad" in kinds) == (stem == "gemm")  # only GemmStem pads: the shortcut goes in without padding
    assert "aten::mean" in kinds  # the head's average pool; the thresholds take sums
    save_torchscript(module, tmp_path / "t_float.pt", meta)
    rebuilt, _ = network_from_frozen(tmp_path / "t_float.pt")
    with torch.inference_mode():
        expected = network(windows)
        torch.testing.assert_close(rebuilt(windows), expected, atol=ATOL, rtol=1e-5)
        torch.testing.assert_close(load_model(tmp_path / "t_float.pt").module(windows), expected, atol=ATOL, rtol=1e-5)


def int8_file(network: nn.Module, calibration: torch.Tensor, **kwargs: object) -> torch.jit.ScriptModule:
    meta = {"channels": 1, "window_samples": WINDOW}  # what the export reads; the meta is not saved here
    module, _ = build_noise_floor_torchscript(
        network, meta, calibration=calibration, reference_windows=calibration, reference_data="random", **kwargs
    )
    return module


def test_an_int8_re_export_keeps_the_previous_files_scales_and_int8_weights() -> None:
    network = to_channels_last_2d(tiny())
    generator = torch.Generator().manual_seed(8)
    first, second = torch.randn(64, 1, WINDOW, generator=generator), 3 * torch.randn(64, 1, WINDOW, generator=generator)
    previous = int8_file(network, first)  # the unfolded export, as shipped before
    params = read_int8_parameters(previous)
    assert len(params.quantizes) == len(network.blocks) and len(params.convs) == 2 * len(network.blocks)
    folded = fold_network(network, direct_convs="stem")
    kept = int8_file(folded, second, int8_parameters=params)
    calibrated = int8_file(folded, second)
    inputs = torch.randn(16, 1, WINDOW, generator=generator)
    with torch.inference_mode():
        torch.testing.assert_close(kept(inputs), previous(inputs), atol=1e-4, rtol=0)
    assert read_int8_parameters(kept).quantizes == params.quantizes
    assert read_int8_parameters(calibrated).quantizes != params.quantizes  # other calibration windows, other scales


def test_int8_parameters_of_other_weights_are_refused() -> None:
    calibration = torch.randn(64, 1, WINDOW)
    params = read_int8_parameters(int8_file(to_channels_last_2d(tiny()), calibration))
    torch.manual_seed(9)
    other = get_model("drsn_cw", num_classes=3, widths=(4, 8), blocks_per_stage=2, window_samples=WINDOW).eval()
    with pytest.raises(OtherWeightsError, match="other weights"):
        int8_file(fold_network(to_channels_last_2d(other), direct_convs="none"), calibration, int8_parameters=params)
