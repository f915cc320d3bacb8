"""The edge_agent op library (edge_agent/kernels) and the fused int8 files that call it.

The ops must compute what the unfused ATen graph computes: bit for bit for the elementwise glue
(dequantize, soft threshold, residual add, affine, quantize), to float rounding for the reductions.
A fused file must agree with its standard int8 file, and where the library does not load the agent
must run the standard file, saying so, instead of failing or silently running something else.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from edge_agent.kernels import LIBRARY_ENV, KernelsUnavailableError, load_ops, needs_ops, ops_status
from edge_agent.modelfile import load_model, model_engine

REPO = Path(__file__).resolve().parents[2]
FUSED = REPO / "models" / "drsn_cw_cwru_fused.pt"
STANDARD = REPO / "models" / "drsn_cw_cwru.pt"

needs_library = pytest.mark.skipif(
    not load_ops(), reason=f"op library not built (`make kernels`): {ops_status().reason}"
)


def channels_last(x: torch.Tensor) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last)


def unit_inputs(batch: int, channels: int, length: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    q = torch.quantize_per_tensor(
        channels_last(torch.randn(batch, channels, 1, length, generator=g) * 2), 0.05, 116, torch.quint8
    )
    tau = torch.rand(batch, channels, generator=g) * 0.3
    scale, shift = torch.rand(channels, generator=g) + 0.5, torch.randn(channels, generator=g)
    return q, tau, scale, shift, g


def aten_unit(q, tau, shortcut, stride, scale, shift):
    """The unfused graph's ops, in its order (edge_agent.nn.folding)."""
    y = q.dequantize()
    t = tau.view(-1, tau.shape[1], 1, 1)
    y = y.sub_(torch.clamp(y, -t, t))
    if shortcut is not None:
        shortcut = shortcut[..., ::stride] if stride > 1 else shortcut
        y.narrow(1, 0, shortcut.shape[1]).add_(shortcut)
    return y, torch.addcmul(shift.view(1, -1, 1, 1), y, scale.view(1, -1, 1, 1))


def where_rounding_shows(channels: int, length: int, seed: int = 0):
    """``x (1, C, 1, L)``, per-channel ``scale``, ``shift`` where quantising ``x * scale + shift`` (scale 0.04)
    gives another int8 value with one rounding (a fused multiply-add) than with two: ATen's addcmul fuses
    them in its AVX2 / AVX-512 kernels, not in its default ones, and the ops must do the same."""
    import numpy as np

    rng = np.random.default_rng(seed)
    scale = rng.uniform(0.5, 1.5, channels).astype(np.float32)
    shift = rng.normal(0.0, 1.0, channels).astype(np.float32)
    inverse = np.float32(1.0) / np.float32(0.04)
    columns = []
    for c in range(channels):
        # candidates within a few float steps of the x where x * scale + shift is halfway between int8 steps
        halfway = ((np.arange(0, 200) + 0.5) * 0.04 - float(shift[c])) / float(scale[c])
        near = halfway.astype(np.float32)
        x = np.concatenate([near + np.float32(k) * np.spacing(near) for k in range(-8, 9)]).astype(np.float32)
        twice = x * scale[c] + shift[c]
        once = (x.astype(np.float64) * float(scale[c]) + float(shift[c])).astype(np.float32)
        differs = np.nonzero(np.rint(twice * inverse) != np.rint(once * inverse))[0]
        assert len(differs) >= 1, "no boundary case found"
        picks = np.concatenate([x[differs[:1]], x[: length - 1]])
        columns.append(picks)
    x = torch.from_numpy(np.stack(columns)).reshape(1, channels, 1, length)
    return channels_last(x), torch.from_numpy(scale), torch.from_numpy(shift)


@needs_library
@pytest.mark.parametrize(
    ("channels", "shortcut_channels", "stride"), [(16, 16, 1), (16, 16, 2), (32, 16, 2), (64, 64, 1), (24, 24, 1)]
)
def test_shrink_add_quantize_is_the_aten_graph_bit_for_bit(channels: int, shortcut_channels: int, stride: int) -> None:
    q, tau, scale, shift, g = unit_inputs(5, channels, 96)
    shortcut = channels_last(torch.randn(5, shortcut_channels, 1, 96 * stride, generator=g))
    y_ref, z_ref = aten_unit(q, tau, shortcut, stride, scale, shift)
    q_ref = torch.quantize_per_tensor(z_ref, 0.04, 3, torch.quint8)
    y, q_next = torch.ops.edge_agent.shrink_add_quantize(q, tau, shortcut, stride, scale, shift, 0.04, 3)
    assert torch.equal(y, y_ref)
    assert y.is_contiguous(memory_format=torch.channels_last)
    assert (q_next.q_scale(), q_next.q_zero_point()) == (0.04, 3)
    assert torch.equal(q_next.int_repr(), q_ref.int_repr())


@needs_library
def test_the_affine_rounds_as_atens_addcmul_on_this_cpu() -> None:
    # a defect found by bench_fused_ops: x * scale + shift rounded twice moved 1 in 10^5 int8 values
    x, scale, shift = where_rounding_shows(16, 16)
    expected = torch.addcmul(shift.view(1, -1, 1, 1), x, scale.view(1, -1, 1, 1))
    reference = torch.quantize_per_tensor(expected, 0.04, 0, torch.quint8).int_repr()
    assert torch.equal(torch.ops.edge_agent.affine_quantize(x, scale, shift, 0.04, 0).int_repr(), reference)
    q = torch.quantize_per_tensor(channels_last(torch.zeros(1, 16, 1, 16)), 0.05, 0, torch.quint8)
    _, got = torch.ops.edge_agent.shrink_add_quantize(q, torch.zeros(1, 16), x, 1, scale, shift, 0.04, 0)
    assert torch.equal(got.int_repr(), reference)


@needs_library
def test_affine_quantize_abs_sum_and_head_match_aten() -> None:
    q, tau, scale, shift, g = unit_inputs(3, 32, 200, seed=1)
    x = channels_last(torch.randn(3, 32, 1, 200, generator=g) * 3)
    expected = torch.quantize_per_tensor(
        torch.addcmul(shift.view(1, -1, 1, 1), x, scale.view(1, -1, 1, 1)), 0.03, 0, torch.quint8
    )
    assert torch.equal(torch.ops.edge_agent.affine_quantize(x, scale, shift, 0.03, 0).int_repr(), expected.int_repr())
    sums = torch.ops.edge_agent.abs_sum(q)
    torch.testing.assert_close(sums, q.dequantize().abs().sum(dim=(2, 3)), rtol=1e-6, atol=0)
    _, z = aten_unit(q, tau, None, 1, scale, shift)
    head = torch.ops.edge_agent.shrink_add_head(q, tau, None, 1, scale, shift)
    torch.testing.assert_close(head, torch.relu(z).mean(dim=(2, 3)), rtol=1e-5, atol=1e-6)


@needs_library
def test_the_ops_refuse_mismatched_inputs() -> None:
    q, tau, scale, shift, _ = unit_inputs(2, 16, 32)
    with pytest.raises(RuntimeError, match="shortcut"):
        torch.ops.edge_agent.shrink_add_quantize(
            q, tau, channels_last(torch.zeros(2, 32, 1, 32)), 1, scale, shift, 0.1, 0
        )
    with pytest.raises(RuntimeError, match="quint8"):
        torch.ops.edge_agent.abs_sum(q.dequantize())
    with pytest.raises(RuntimeError, match="tau"):
        torch.ops.edge_agent.shrink_add_head(q, tau[:1], None, 1, scale, shift)


@needs_library
def test_the_stem_op_refuses_what_it_does_not_compute() -> None:
    weight = torch.randn(16, 1, 1, 3)
    with pytest.raises(RuntimeError, match=r"x must be \(N, 1, 1, L\)"):
        torch.ops.edge_agent.stem_conv(torch.zeros(2, 2, 1, 64), weight, 2, 1)
    with pytest.raises(RuntimeError, match="padding"):
        torch.ops.edge_agent.stem_conv(torch.zeros(2, 1, 1, 64), weight, 2, 3)
    with pytest.raises(RuntimeError, match="shorter than the kernel"):
        torch.ops.edge_agent.stem_conv(torch.zeros(2, 1, 1, 1), weight, 1, 0)


def stem_cases(seed: int = 3) -> list[dict]:
    """``stem_conv`` against ATen's convolution (the shipped stem's shape and others): equal, per batch size."""
    g = torch.Generator().manual_seed(seed)
    cases = []
    # the shipped windows (2048, 4096) and another shape; ATen sends batch 1 of 16 samples or fewer elsewhere
    for outs, kernel, stride, padding, length in ((16, 3, 2, 1, 2048), (16, 3, 2, 1, 4096), (8, 7, 1, 3, 513)):
        weight = channels_last(torch.randn(outs, 1, 1, kernel, generator=g))  # as the frozen files hold it
        for batch in (1, 3, 32):
            x = channels_last(torch.randn(batch, 1, 1, length, generator=g) * 4)
            theirs = torch._convolution(
                x, weight, None, [1, stride], [0, padding], [1, 1], False, [0, 0], 1, False, False, True, True
            )
            ours = torch.ops.edge_agent.stem_conv(x, weight, stride, padding)
            assert ours.is_contiguous(memory_format=torch.channels_last) and ours.shape == theirs.shape
            cases.append({"batch": batch, "equal": torch.equal(ours, theirs)})
    return cases


@needs_library
def test_the_stem_op_is_atens_convolution_bit_for_bit_on_this_cpu() -> None:
    if ops_status().isa == "generic":
        pytest.skip("without AVX2 ATen's batch-1 convolution sums in another order (see the generic case below)")
    assert all(case["equal"] for case in stem_cases())


@needs_library
@pytest.mark.parametrize("name", ["drsn_cw_cwru_fused.pt", "drsn_cw_bldc_audio_fused.pt"])
def test_the_fused_files_call_no_aten_convolution(name: str) -> None:
    # the stem was the last one: its first call paged in ~9 MiB of libtorch code (docs/benchmarks.md)
    module = load_model(REPO / "models" / name).module
    for method in ("forward", "noise_floor", "forward_with_noise_floor"):
        graph = getattr(module, method).graph
        assert not graph.findAllNodes("aten::_convolution") and not graph.findAllNodes("aten::conv2d"), method
        assert len(graph.findAllNodes("edge_agent::stem_conv")) == 1, method


@needs_library
@pytest.mark.parametrize("name", ["drsn_cw_cwru_fused.pt", "drsn_cw_bldc_audio_fused.pt"])
def test_the_fused_files_small_layers_run_in_the_library(name: str) -> None:
    # each ATen kernel's first call pages in its code: the threshold sub-networks, the head and the floor
    module = load_model(REPO / "models" / name).module
    graph = module.forward_with_noise_floor.graph
    for kind in ("aten::linear", "aten::addmm", "aten::sigmoid", "aten::addcmul", "aten::log", "aten::cat"):
        assert not graph.findAllNodes(kind), kind
    units = len(graph.findAllNodes("edge_agent::conv_unit"))
    assert len(graph.findAllNodes("edge_agent::thresholds")) == units > 0
    assert len(graph.findAllNodes("edge_agent::dense")) == len(graph.findAllNodes("edge_agent::noise_floor")) == 1


@needs_library
def test_the_small_layer_ops_compute_the_torch_layers() -> None:
    g = torch.Generator().manual_seed(11)
    first, second = torch.nn.Linear(16, 16), torch.nn.Linear(16, 16)
    attention = torch.nn.Sequential(first, torch.nn.ReLU(), second, torch.nn.Sigmoid()).double()
    s = torch.rand(32, 16, generator=g, dtype=torch.float64) * 40
    fc, x = torch.nn.Linear(64, 10).double(), torch.randn(5, 64, generator=g, dtype=torch.float64)
    taus = [torch.rand(4, 16, generator=g, dtype=torch.float64) + 1e-3 for _ in range(2)]
    reference = torch.randn(32, generator=g, dtype=torch.float64)
    with torch.no_grad():  # float64 references, the ops in float32
        tau = torch.ops.edge_agent.thresholds(
            s.float(), first.weight.float(), first.bias.float(), second.weight.float(), second.bias.float(), 1 / 512
        )
        torch.testing.assert_close(tau.double(), attention(s) * s / 512, rtol=1e-5, atol=1e-12)
        logits = torch.ops.edge_agent.dense(x.float(), fc.weight.float(), fc.bias.float(), False)
        torch.testing.assert_close(logits.double(), fc(x), rtol=1e-5, atol=1e-5)
        relu = torch.ops.edge_agent.dense(x.float(), fc.weight.float(), fc.bias.float(), True)
        torch.testing.assert_close(relu.double(), fc(x).clamp_min(0), rtol=1e-5, atol=1e-5)
        floor = torch.ops.edge_agent.noise_floor([t.float() for t in taus], reference.float())
        expected = torch.exp((torch.log(torch.cat(taus, dim=1)) - reference).mean(dim=1))
        torch.testing.assert_close(floor.double(), expected, rtol=1e-5, atol=0)
    with pytest.raises(RuntimeError, match="w2 must be"):
        torch.ops.edge_agent.thresholds(
            s.float(), first.weight.float(), first.bias.float(), first.weight[:8].float(), second.bias.float(), 1.0
        )
    with pytest.raises(RuntimeError, match="log_reference must have 32"):
        torch.ops.edge_agent.noise_floor([t.float() for t in taus], reference[:5].float())


def test_only_a_threshold_network_the_op_computes_becomes_native() -> None:
    from edge_agent.nn.fused_native import NativeThresholds, native_thresholds

    linear = torch.nn.Linear
    good = torch.nn.Sequential(linear(16, 8), torch.nn.ReLU(), linear(8, 16), torch.nn.Sigmoid())
    assert isinstance(native_thresholds(good, 0.01), NativeThresholds)
    shared = torch.nn.Sequential(linear(16, 8), torch.nn.ReLU(), linear(8, 1), torch.nn.Sigmoid())  # one tau (CS)
    assert native_thresholds(shared, 0.01) is None
    assert native_thresholds(torch.nn.Sequential(linear(16, 16), torch.nn.Sigmoid()), 0.01) is None
    assert native_thresholds(linear(16, 16), 0.01) is None


def test_only_a_stem_the_op_computes_becomes_native() -> None:
    from edge_agent.nn.fused_native import NativeStem, native_stem

    stem = torch.nn.Conv2d(1, 16, (1, 3), stride=(1, 2), padding=(0, 1), bias=False)
    assert isinstance(native_stem(stem), NativeStem)
    for other in (
        torch.nn.Conv2d(1, 16, (1, 3), stride=(1, 2), padding=(0, 1)),  # a bias
        torch.nn.Conv2d(2, 16, (1, 3), stride=(1, 2), padding=(0, 1), bias=False),  # two input channels
        torch.nn.Conv2d(1, 16, (1, 3), padding=(0, 1), dilation=(1, 2), bias=False),
        torch.nn.Conv2d(1, 16, (1, 3), padding=(0, 1), padding_mode="reflect", bias=False),
    ):
        assert native_stem(other) is other


STEM_SCRIPT = textwrap.dedent(
    """
    import json
    from edge_agent.kernels import load_ops, ops_status
    from tests.unit.test_kernels import stem_cases
    assert load_ops(), ops_status().reason
    print(json.dumps({"isa": ops_status().isa, "cases": stem_cases()}))
    """
)


@needs_library
@pytest.mark.parametrize(("isa", "onednn"), [("avx2", "AVX2"), ("generic", "SSE41")])
def test_each_instruction_set_sums_the_stem_as_onednn_on_it(isa: str, onednn: str) -> None:
    if ops_status().isa == "generic":
        pytest.skip("needs AVX2")
    found = run_python(STEM_SCRIPT, EDGE_AGENT_OPS_ISA=isa, ONEDNN_MAX_CPU_ISA=onednn)
    assert found["isa"] == isa
    # oneDNN's SSE4.1 kernel has no FMA and rounds twice, as the generic copy does; ATen's batch-1 convolution
    # does not go to it there and sums in another order
    compared = [case for case in found["cases"] if isa != "generic" or case["batch"] > 1]
    assert compared and all(case["equal"] for case in compared), found


ISA_SCRIPT = textwrap.dedent(
    """
    import json, torch
    from edge_agent.kernels import load_ops, ops_status
    from tests.unit.test_kernels import aten_unit, unit_inputs, where_rounding_shows
    assert load_ops(), ops_status().reason
    x, a, b = where_rounding_shows(16, 16)
    z = torch.addcmul(b.view(1, -1, 1, 1), x, a.view(1, -1, 1, 1))
    same = [torch.equal(torch.ops.edge_agent.affine_quantize(x, a, b, 0.04, 0).int_repr(),
                        torch.quantize_per_tensor(z, 0.04, 0, torch.quint8).int_repr())]
    q, tau, a, b, g = unit_inputs(4, 32, 300)
    shortcut = torch.randn(4, 32, 1, 300, generator=g).contiguous(memory_format=torch.channels_last)
    y_ref, z_ref = aten_unit(q, tau, shortcut, 1, a, b)
    y, q_next = torch.ops.edge_agent.shrink_add_quantize(q, tau, shortcut, 1, a, b, 0.04, 0)
    expected = torch.quantize_per_tensor(z_ref, 0.04, 0, torch.quint8).int_repr()
    same += [torch.equal(y, y_ref), torch.equal(q_next.int_repr(), expected)]
    print(json.dumps({"isa": ops_status().isa, "same": same}))
    """
)


def run_python(script: str, **env: str) -> dict:
    environment = {**os.environ, "PYTHONPATH": str(REPO), **env}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=environment, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@needs_library
@pytest.mark.parametrize(("isa", "aten"), [("avx2", "avx2"), ("generic", "default")])
def test_each_instruction_set_matches_aten_running_the_same_one(isa: str, aten: str) -> None:
    found = run_python(ISA_SCRIPT, EDGE_AGENT_OPS_ISA=isa, ATEN_CPU_CAPABILITY=aten)
    assert found == {"isa": isa, "same": [True, True, True]}


@needs_library
def test_the_fused_file_agrees_with_its_standard_int8_file() -> None:
    fused, standard = load_model(FUSED), load_model(STANDARD)
    assert model_engine(fused) == "onednn+edge_agent" and model_engine(standard) == "onednn"
    t = torch.arange(2048) / 12000.0
    g = torch.Generator().manual_seed(5)
    tones = [torch.sin(2 * torch.pi * f * t) * a for f, a in ((157.0, 0.3), (1620.0, 0.1), (3300.0, 0.05))]
    windows = torch.stack([sum(tones) * (1 + k / 8) + 0.05 * torch.randn(2048, generator=g) for k in range(32)])
    windows = windows.unsqueeze(1)
    with torch.inference_mode():
        (ours, our_floor), (theirs, their_floor) = (
            fused.module.forward_with_noise_floor(windows),
            standard.module.forward_with_noise_floor(windows),
        )
        one_by_one = torch.cat([fused.module(w) for w in windows.split(1)])
        floor_alone = fused.module.noise_floor(windows)
    assert bool((ours.argmax(1) == theirs.argmax(1)).all())
    assert float((ours - theirs).abs().max()) < 0.1  # int8 rounding flips only (0.066 on the CWRU test split)
    torch.testing.assert_close(our_floor, their_floor, rtol=1e-3, atol=0)
    torch.testing.assert_close(one_by_one, ours, rtol=0, atol=1e-4)
    torch.testing.assert_close(floor_alone, our_floor, rtol=1e-6, atol=0)


FALLBACK_SCRIPT = textwrap.dedent(
    f"""
    import json, logging
    from pathlib import Path
    from edge_agent.kernels import KernelsUnavailableError
    from edge_agent.modelfile import load_model, load_runtime_model, model_engine
    records = []
    class Keep(logging.Handler):
        def emit(self, record):
            records.append((record.levelname, record.name, record.getMessage()))
    logging.getLogger().addHandler(Keep())
    logging.getLogger().setLevel(logging.INFO)
    loaded = load_runtime_model({str(FUSED)!r}, key="models[0].path")  # at start
    reloaded = load_model({str(FUSED)!r})  # what a reload plans with
    assert reloaded.sha256 == loaded.sha256, "a reload would swap models for nothing"
    try:
        load_model({str(FUSED)!r}, fallback=False)
        direct = "loaded"
    except KernelsUnavailableError as error:
        direct = str(error)
    print(json.dumps({{"path": loaded.path.name, "engine": model_engine(loaded), "direct": direct,
                      "warnings": [r for r in records if r[0] == "WARNING"]}}))
    """
)


@pytest.mark.parametrize("library", ["missing", "corrupt", "disabled"])
def test_without_the_library_the_agent_runs_the_standard_file_and_says_why(tmp_path: Path, library: str) -> None:
    path = {"missing": str(tmp_path / "nowhere.so"), "corrupt": str(tmp_path / "corrupt.so"), "disabled": ""}[library]
    (tmp_path / "corrupt.so").write_bytes(b"\x7fELF this is not a shared library" * 10)
    found = run_python(FALLBACK_SCRIPT, **{LIBRARY_ENV: path})
    assert found["path"] == STANDARD.name
    assert found["engine"] == "onednn"  # edge_agent_model_info's engine label: the fallback is visible there too
    reason = {"missing": "not found", "corrupt": "does not load", "disabled": "disabled"}[library]
    assert reason in found["direct"] and "drsn_cw_cwru.pt" in found["direct"]
    messages = [m for _, _, m in found["warnings"]]
    assert any("op library not available" in m and reason in m for m in messages), messages
    assert any("running the standard int8 file" in m and STANDARD.name in m for m in messages), messages


def test_a_malformed_kernels_entry_is_refused() -> None:
    with pytest.raises(ValueError, match="must name the library 'edge_agent'"):
        needs_ops({"kernels": {"library": "other"}}, Path("m.pt"))
    assert needs_ops({}, Path("m.pt")) is False
    assert issubclass(KernelsUnavailableError, ValueError)
