"""The op library's int8 convolutions against PyTorch's ``quantized::conv2d``, bit for bit, on real windows.

Each residual unit's ``conv1`` (with its ReLU) and ``conv2`` of both shipped int8 files, on the int8
activations the fused network feeds them from held-out CWRU windows (the audio network too: the test
is about the arithmetic, any real signal does): every output byte must equal ``quantized::conv2d``'s,
on every instruction set the library has (VNNI, AVX2, plain loops), and ``conv_unit`` (both convolutions
and ``sum |y|`` in one op) and ``qconv1d_abs_sum`` must equal the convolutions and ``abs_sum``. On a CPU
with AVX-512 but no VNNI the library runs its AVX2 copy, oneDNN its avx512_core kernels: not measured.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from edge_agent.common.paths import data_root
from edge_agent.kernels import load_ops, ops_status
from tests.unit.test_kernels import run_python

REPO = Path(__file__).resolve().parents[2]
CWRU = data_root() / "cwru" / "cwru_12k_de_dev.npz"

needs_library = pytest.mark.skipif(
    not load_ops(), reason=f"op library not built (`make kernels`): {ops_status().reason}"
)
needs_data = pytest.mark.skipif(not CWRU.is_file(), reason=f"needs the CWRU data ({CWRU})")


def held_out_windows(window_samples: int, per_record: int = 2, noisy: bool = False) -> torch.Tensor:
    """``(k, 1, window_samples)`` windows from the last 20 % of each CWRU record (data no model trained on);
    ``noisy``: with white Gaussian noise at -5 dB (seed 7)."""
    chunks = []
    with np.load(CWRU, allow_pickle=False) as pack:
        for key in pack["keys"]:
            signal_g = pack[str(key)]
            tail = signal_g[round(0.8 * signal_g.size) :]
            count = min(per_record, tail.size // window_samples)
            chunks.append(torch.from_numpy(tail[: count * window_samples].reshape(count, window_samples).copy()))
    windows = torch.cat(chunks).unsqueeze(1)
    if noisy:
        noise = torch.randn(windows.shape, generator=torch.Generator().manual_seed(7))
        windows = windows + noise * windows.std(dim=-1, keepdim=True) * 10 ** (5 / 20)
    return windows


def unit_cases(stem: str, per_record: int = 2, noisy: bool = False) -> list[dict]:
    """Per unit: its int8 input on real windows, its packed convolutions and the reference convolutions."""
    from edge_agent.modelfile import load_model
    from edge_agent.nn.folding import fold_network
    from edge_agent.training.fused_export import fused_network
    from edge_agent.training.int8_params import CONV_KINDS, read_int8_parameters
    from edge_agent.training.unfreeze import network_from_frozen

    standard = load_model(REPO / "models" / f"{stem}.pt")
    torch.backends.quantized.engine = str(standard.meta["quantized_engine"])
    network, _ = network_from_frozen(REPO / "models" / f"{stem}_float.pt")
    windows = held_out_windows(int(standard.meta["window_samples"]), per_record, noisy)
    net = fused_network(fold_network(network), standard.module, windows[:8])
    inputs: list[torch.Tensor] = []
    for unit in net.units:
        convolve = unit.convolve
        unit.convolve = lambda q, convolve=convolve: (inputs.append(q), convolve(q))[1]
    with torch.inference_mode():
        net(windows)
    params = read_int8_parameters(standard.module)
    nodes = [n for n in standard.module.inlined_graph.nodes() if n.kind() in CONV_KINDS]
    cases = []
    for index, (unit, q) in enumerate(zip(net.units, inputs, strict=True)):
        refs = []
        for conv, node in zip(params.convs[2 * index : 2 * index + 2], nodes[2 * index : 2 * index + 2], strict=True):
            packed = list(node.inputs())[1].toIValue()
            kind = getattr(torch.ops.quantized, node.kind().split("::")[1])
            refs.append(lambda x, kind=kind, packed=packed, c=conv: kind(x, packed, c.scale, c.zero_point))
        cases.append({"unit": unit, "q": q, "conv1": refs[0], "conv2": refs[1]})
    return cases


def ours(unit, name: str, q: torch.Tensor) -> torch.Tensor:
    stride = unit.conv1_quantize[0] if name == "conv1" else 1
    scale, zero_point = unit.conv1_quantize[1:] if name == "conv1" else unit.conv2_quantize
    args = (getattr(unit, f"{name}_{part}") for part in ("weight", "sums", "scales", "bias"))
    return torch.ops.edge_agent.qconv1d(q, *args, stride, scale, zero_point, name == "conv1")


def differences(stem: str, per_record: int = 2, noisy: bool = False) -> dict[str, list[int]]:
    """Per convolution in graph order: output bytes that differ from quantized::conv2d's, and the bytes compared."""
    found: dict[str, list[int]] = {"differ": [], "compared": [], "unit_differ": []}
    for case in unit_cases(stem, per_record, noisy):
        unit, q = case["unit"], case["q"]
        with torch.inference_mode():
            middle = case["conv1"](q)
            expected = case["conv2"](middle)
            for name, x, reference in (("conv1", q, middle), ("conv2", middle, expected)):
                got = ours(unit, name, x)
                assert got.shape == reference.shape and got.is_contiguous(memory_format=torch.channels_last)
                assert (got.q_scale(), got.q_zero_point()) == (reference.q_scale(), reference.q_zero_point())
                found["differ"].append(int((got.int_repr() != reference.int_repr()).sum()))
                found["compared"].append(reference.numel())
            y, abs_sum = unit.convolve(q)
            same = torch.equal(y.int_repr(), expected.int_repr())
            same = same and torch.equal(abs_sum, torch.ops.edge_agent.abs_sum(expected))
            args = (getattr(unit, f"conv2_{part}") for part in ("weight", "sums", "scales", "bias"))
            alone, alone_sum = torch.ops.edge_agent.qconv1d_abs_sum(middle, *args, 1, *unit.conv2_quantize, False)
            same = same and torch.equal(alone.int_repr(), expected.int_repr()) and torch.equal(alone_sum, abs_sum)
            found["unit_differ"].append(0 if same else 1)
    return found


@needs_library
@needs_data
@pytest.mark.parametrize("noisy", [False, True], ids=["clean", "-5 dB"])
@pytest.mark.parametrize("stem", ["drsn_cw_cwru", "drsn_cw_bldc_audio"])
def test_every_convolution_is_quantized_conv2d_bit_for_bit(stem: str, noisy: bool) -> None:
    found = differences(stem, noisy=noisy)
    assert len(found["differ"]) == {"drsn_cw_cwru": 12, "drsn_cw_bldc_audio": 6}[stem]
    assert min(found["compared"]) > 100_000
    assert found["differ"] == [0] * len(found["differ"]), found
    assert found["unit_differ"] == [0] * len(found["unit_differ"])


ISA_SCRIPT = """
import json, torch
from edge_agent.kernels import load_ops
from tests.unit.test_qconv import differences
assert load_ops()
found = {{k: differences({stem!r}, per_record=1, noisy=noisy) for k, noisy in (("clean", False), ("noisy", True))}}
print(json.dumps({{"isa": torch.ops.edge_agent.conv_isa(), **found}}))
"""


@needs_library
@needs_data
@pytest.mark.parametrize(("isa", "onednn"), [("avx2", "AVX2"), ("generic", "")])
def test_each_instruction_set_convolves_as_onednn_on_it(isa: str, onednn: str) -> None:
    # without VNNI oneDNN adds the products in int16 pairs with saturation (vpmaddubsw), and so does the
    # library's AVX2 copy: compared with oneDNN capped at AVX2; the plain loops sum exactly, as VNNI does
    native = str(torch.ops.edge_agent.conv_isa())
    if native == "generic" or (not onednn and native != "avx512_vnni"):
        pytest.skip(f"needs {'AVX2' if onednn else 'VNNI (oneDNN sums exactly only there)'}; this CPU: {native}")
    capped = {"ONEDNN_MAX_CPU_ISA": onednn, "ATEN_CPU_CAPABILITY": isa} if onednn else {}
    found = run_python(ISA_SCRIPT.format(stem="drsn_cw_cwru"), EDGE_AGENT_OPS_ISA=isa, **capped)
    assert found["isa"] == isa
    for condition in ("clean", "noisy"):
        assert found[condition]["differ"] == [0] * 12, json.dumps(found)
        assert found[condition]["unit_differ"] == [0] * 6, json.dumps(found)


@needs_library
@needs_data
def test_the_int16_saturation_of_onednns_avx2_kernels_shows_on_real_windows() -> None:
    if str(torch.ops.edge_agent.conv_isa()) == "generic":
        pytest.skip("needs AVX2")
    # the reason the AVX2 copy saturates: exact sums against an AVX2-capped oneDNN differ (70 of 3.6M bytes)
    script = ISA_SCRIPT.format(stem="drsn_cw_cwru")
    found = run_python(script, EDGE_AGENT_OPS_ISA="generic", ONEDNN_MAX_CPU_ISA="AVX2", ATEN_CPU_CAPABILITY="avx2")
    assert sum(found["clean"]["differ"]) + sum(found["noisy"]["differ"]) > 0, json.dumps(found)


@needs_library
def test_zero_points_padding_and_saturation_match_quantized_conv2d() -> None:
    # input zero point > 0 (the shipped inputs all have 0), odd lengths, both strides, outputs that saturate
    g = torch.Generator().manual_seed(3)
    for channels, outs, length, stride in ((16, 16, 37, 1), (16, 32, 37, 2), (32, 64, 20, 2), (64, 16, 5, 1)):
        x = torch.randn(3, channels, 1, length, generator=g).contiguous(memory_format=torch.channels_last)
        q = torch.quantize_per_tensor(x, 0.05, 77, torch.quint8)
        w = torch.quantize_per_channel(
            torch.randn(outs, channels, 1, 3, generator=g) * 0.3,
            torch.rand(outs, generator=g) * 0.01 + 0.002,
            torch.zeros(outs, dtype=torch.long),
            0,
            torch.qint8,
        )
        bias = torch.randn(outs, generator=g)
        packed = torch.ops.quantized.conv2d_prepack(w, bias, [1, stride], [0, 1], [1, 1], 1)
        values = w.int_repr()[:, :, 0, :].permute(0, 2, 1).reshape(outs, 3 * channels)
        weight = values.reshape(outs, 3 * channels // 4, 4).permute(1, 0, 2).contiguous()
        sums, scales = values.to(torch.int32).sum(1).to(torch.int32), w.q_per_channel_scales().float()
        for relu, out_scale, zero_point in ((True, 0.02, 0), (False, 0.01, 128), (False, 0.2, 30)):
            kind = torch.ops.quantized.conv2d_relu if relu else torch.ops.quantized.conv2d
            expected = kind(q, packed, out_scale, zero_point).int_repr()
            got = torch.ops.edge_agent.qconv1d(q, weight, sums, scales, bias, stride, out_scale, zero_point, relu)
            assert torch.equal(got.int_repr(), expected), (channels, outs, length, stride, relu)


@needs_library
def test_the_convolution_refuses_shapes_it_does_not_handle() -> None:
    q = torch.quantize_per_tensor(
        torch.zeros(1, 12, 1, 8).contiguous(memory_format=torch.channels_last), 0.1, 0, torch.quint8
    )
    weight, sums, scales, bias = (
        torch.zeros(9, 16, 4, dtype=torch.int8),
        torch.zeros(16, dtype=torch.int32),
        torch.ones(16),
        torch.zeros(16),
    )
    with pytest.raises(RuntimeError, match="does not fit"):
        torch.ops.edge_agent.qconv1d(q, torch.zeros(12, 16, 4, dtype=torch.int8), sums, scales, bias, 1, 0.1, 0, False)
    with pytest.raises(RuntimeError, match="int8"):
        torch.ops.edge_agent.qconv1d(q, weight.float(), sums, scales, bias, 1, 0.1, 0, False)
    assert torch.ops.edge_agent.qconv1d(q, weight, sums, scales, bias, 1, 0.1, 0, False).shape == (1, 16, 1, 8)
