"""int8 quantisation of the convolutions (FX static PTQ) and TorchScript conversion.

In every unit ``conv1`` (with ``bn2`` + ``relu2`` folded into it) and ``conv2`` become int8,
the stem conv only on request (``quantize_stem``); ``conv1``'s int8 output feeds ``conv2``
directly, so each unit pays one quantize and one dequantize. Everything else stays float32.
Works on 1-D models and on their 2-D channels-last copies (:mod:`edge_agent.nn.channels_last`),
which the export uses. After conversion the ReLU in front of each quantize is dropped where the
quantize clamps at the same place (zero point 0): the int8 values are identical, one float pass less.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.ao.nn import intrinsic as nni
from torch.ao.quantization import QConfigMapping, get_default_qconfig
from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx
from torch.fx import GraphModule

from edge_agent.modelfile import META_FILE, validate_meta

logger = logging.getLogger(__name__)

# onednn: as accurate as qnnpack on trained CWRU models (8-bit activations) and ~1.4x faster on
# x86 without VNNI; fbgemm/x86 use 7-bit activations and lost ~2 points of agreement at -10 dB.
# qnnpack is the engine for ARM gateways, where onednn kernels are not built.
QUANTIZED_ENGINE = "onednn"
ENGINES = ("onednn", "qnnpack", "fbgemm", "x86")
CHECK_BATCH_SIZES = (1, 32)
DEPRECATION_MESSAGES = (r"torch\.ao\.quantization is deprecated", r"torch\.quantize_per_tensor.* are deprecated")


def conv_module_names(model: nn.Module) -> list[str]:
    """Names of every ``Conv1d`` / ``Conv2d`` in ``model``."""
    return [name for name, module in model.named_modules() if isinstance(module, nn.Conv1d | nn.Conv2d)]


def int8_module_names(model: nn.Module, *, quantize_stem: bool = False) -> list[str]:
    """The convolutions that get int8: every ``Conv1d``, the stem only when ``quantize_stem``."""
    names = [name for name in conv_module_names(model) if quantize_stem or name != "stem"]
    if not names:
        raise ValueError(f"{type(model).__name__} has no convolution to quantise (quantize_stem={quantize_stem})")
    return names


def conv_only_qconfig_mapping(names: list[str], engine: str = QUANTIZED_ENGINE) -> QConfigMapping:
    """Quantise the modules ``names`` only; FX fuses each ``conv1 -> bn2 -> relu2`` into one int8 ConvReLU."""
    with warnings.catch_warnings():
        # onednn without VNNI "may have accuracy issues": measured on the shipped model instead
        # (int8 agrees with float32 on 100 % of clean and 99.95 % of -5 dB test windows).
        warnings.filterwarnings("ignore", message="Default qconfig of oneDNN backend")
        qconfig = get_default_qconfig(engine)
    mapping = QConfigMapping().set_global(None)
    for name in names:
        mapping.set_module_name(name, qconfig)
    return mapping


def quantize_int8(
    model: nn.Module,
    calibration: torch.Tensor,
    *,
    engine: str = QUANTIZED_ENGINE,
    quantize_stem: bool = False,
    batch_size: int = 64,
    drop_relu: bool = True,
) -> GraphModule:
    """Static int8 post-training quantisation of the convolutions, calibrated on ``calibration`` ``(N, C, L)``.

    ``model`` is left untouched; sets the process-wide ``torch.backends.quantized.engine``.
    The stem stays float unless ``quantize_stem``: it holds ~1 % of the MACs, and quantising the
    raw, heavy-tailed input cost more agreement with float32 than any other layer.
    ``drop_relu`` applies :func:`drop_relu_before_quantize` (same outputs, one float pass less per unit).
    """
    supported = torch.backends.quantized.supported_engines
    if engine not in supported:
        raise ValueError(f"quantized engine {engine!r} is not supported here; supported: {', '.join(supported)}")
    if calibration.ndim != 3 or calibration.shape[0] == 0:
        raise ValueError(f"calibration must be a non-empty (N, C, L) tensor, got shape {tuple(calibration.shape)}")
    torch.backends.quantized.engine = engine
    float_model = copy.deepcopy(model).eval()
    mapping = conv_only_qconfig_mapping(int8_module_names(float_model, quantize_stem=quantize_stem), engine)
    with warnings.catch_warnings():
        # torch is pinned to 2.13, where FX quantisation works but warns it is deprecated
        for message in DEPRECATION_MESSAGES:
            warnings.filterwarnings("ignore", message=message)
        prepared = prepare_fx(float_model, mapping, example_inputs=(calibration[:1],))
        with torch.no_grad():
            for chunk in calibration.split(batch_size):
                prepared(chunk)
        quantized = convert_fx(prepared)
    if drop_relu:
        drop_relu_before_quantize(quantized)
    logger.debug("int8 graph: %s", quantize_boundaries(quantized))
    return quantized


def drop_relu_before_quantize(module: GraphModule) -> int:
    """Drop the ReLU of fused float ``BatchNorm + ReLU`` modules, and plain ``nn.ReLU`` modules, whose only user
    is a quint8 quantize with zero point 0.

    quint8 saturates at its zero point, so ``quantize(relu(y)) == quantize(y)`` exactly.
    Returns how many ReLUs were dropped (FX fuses ``bn1 -> relu1`` into a float ``BNReLU2d``;
    in 1-D models it does not fuse them and nothing is dropped; after :mod:`edge_agent.nn.folding` the BN is
    an affine and ``relu1`` a module of its own, bypassed in the graph).
    """
    dropped = 0
    for node in list(module.graph.nodes):
        if node.op != "call_function" or node.target is not torch.quantize_per_tensor:
            continue
        source, _, zero_point, dtype = node.args
        if dtype != torch.quint8 or source.op != "call_module" or len(source.users) != 1:
            continue
        fused = module.get_submodule(source.target)
        if not isinstance(fused, nni.BNReLU2d | nni.BNReLU3d | nn.ReLU) or zero_point.op != "get_attr":
            continue
        if int(getattr(module, zero_point.target)) != 0:
            continue
        if isinstance(fused, nn.ReLU):  # a plain ReLU (after a folded BN's affine): bypass it
            node.replace_input_with(source, source.args[0])
            module.graph.erase_node(source)
        else:
            parent, _, leaf = source.target.rpartition(".")
            setattr(module.get_submodule(parent) if parent else module, leaf, fused[0])
        dropped += 1
    module.graph.lint()
    module.recompile()
    return dropped


def quantize_boundaries(module: nn.Module) -> dict[str, int]:
    """Count quantize / dequantize nodes of an FX ``GraphModule`` or a TorchScript module."""
    if isinstance(module, GraphModule):
        targets = [str(node.target) for node in module.graph.nodes]
    else:
        targets = [node.kind() for node in module.inlined_graph.nodes()]  # type: ignore[union-attr]
    return {
        "quantize": sum("quantize_per_tensor" in t for t in targets),
        "dequantize": sum(t.endswith("dequantize") for t in targets),
    }


# ---------------------------------------------------------------- TorchScript


def to_torchscript(module: nn.Module, example: torch.Tensor, *, optimize: bool = True) -> torch.jit.ScriptModule:
    """Trace ``module`` (eval) on ``example`` ``(N, C, L)`` and freeze it.

    ``optimize`` freezes the trace (float: folds ``conv1 -> bn2``, inlines constants; 2-7 %
    faster at batch 32, 9-15 % at batch 1; int8: folds the threshold sub-networks' BN into
    their Linear, a few % faster). ``optimize_for_inference`` on top was slower on the
    2-D channels-last float export (0.89x) and is not used.
    The result is checked against the eager module for batch sizes 1 and 32.
    """
    module = module.eval()
    with torch.no_grad():
        traced = torch.jit.trace(module, example, check_trace=False, _store_inputs=False)
    if optimize:
        traced = torch.jit.freeze(traced)
    check_batch_sizes(traced, module, example.shape[1:])
    return traced


def check_batch_sizes(
    traced: torch.jit.ScriptModule, reference: nn.Module, window_shape: torch.Size, *, atol: float = 1e-4
) -> None:
    """Raise ``ValueError`` if ``traced`` differs from ``reference`` at any batch size in ``CHECK_BATCH_SIZES``."""
    generator = torch.Generator().manual_seed(0)
    for batch in CHECK_BATCH_SIZES:
        inputs = torch.randn((batch, *window_shape), generator=generator)
        with torch.inference_mode():
            got, expected = traced(inputs), reference(inputs)
        if got.shape != expected.shape:
            raise ValueError(
                f"traced module returns {tuple(got.shape)} for batch {batch}, expected {tuple(expected.shape)}"
            )
        error = float((got - expected).abs().max())
        if error > atol:
            raise ValueError(f"traced module differs from eager by {error:.3g} (> {atol}) at batch {batch}")


def save_torchscript(module: torch.jit.ScriptModule, out: Path, meta: dict[str, Any]) -> Path:
    """Validate ``meta`` and write ``module`` with ``meta.json`` atomically to ``out``."""
    validate_meta(meta, source=str(out))
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    torch.jit.save(module, str(partial), _extra_files={META_FILE: json.dumps(meta, indent=2)})
    os.replace(partial, out)
    return out
