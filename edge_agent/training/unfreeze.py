"""Rebuild the eager 2-D channels-last network from a frozen float32 TorchScript export.

The shipped float files are frozen traces of :class:`~edge_agent.nn.channels_last.ResidualNet2d`:
their weights are graph constants, ``conv1`` has ``bn2`` folded into it (so it carries a bias) and
each threshold sub-network's ``BatchNorm1d`` is folded into the ``Linear`` before it. The ops keep
the eager module order, so walking the graph's ``_convolution``, ``batch_norm`` and ``linear`` nodes
in order gives the weights of the eager modules in :meth:`~torch.nn.Module.named_modules` order.
Folded BatchNorms become identities (weight 1, bias 0, mean 0, variance 1, ``eps`` 0), so the
rebuilt network computes the same logits as the file (float rounding) and can be quantised again
(FX still fuses ``conv1 -> bn2 -> relu2``). Used to re-export the shipped models when the training
checkpoints are gone (``runs/`` is not committed).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edge_agent.modelfile import load_model
from edge_agent.nn import audio_drsn_cw, get_model
from edge_agent.nn.channels_last import ResidualNet2d, Shrinkage2d, to_channels_last_2d

logger = logging.getLogger(__name__)


def _tensor_inputs(node: torch._C.Node) -> list[torch.Tensor | None]:
    values: list[torch.Tensor | None] = []
    for value in node.inputs():
        source = value.node()
        if source.kind() == "prim::Constant" and value.type().kind() == "TensorType":
            values.append(value.toIValue())
        elif source.kind() == "prim::Constant" and value.type().kind() == "NoneType":
            values.append(None)
    return values


def frozen_parameters(module: torch.jit.ScriptModule) -> dict[str, list[list[torch.Tensor | None]]]:
    """Tensor constants of every ``_convolution``, ``batch_norm`` and ``linear`` node, in graph order;
    ``mean`` / ``std``: the constants subtracted and divided by before the first convolution (Standardize).

    Also reads :mod:`edge_agent.nn.folding`'s form (what ``fast_export`` writes): a ``mkldnn_convolution``
    is a convolution, an ``addcmul(shift, x, scale)`` a batch norm given as ``[scale, shift, None, None]``
    and an ``addcmul(zero, alpha, sum|x|, value=1 / L)`` a threshold whose first linear layer carries ``1 / L``
    (multiplied back here); a ``GemmStem``'s ``addmm`` before the first convolution is the stem, the
    value it pads with the mean (folded into its bias, taken out again here).
    """
    found: dict[str, list[list[torch.Tensor | None]]] = {"conv": [], "bn": [], "linear": [], "mean": [], "std": []}
    pad_value: float | None = None
    for node in module.inlined_graph.nodes():
        kind = node.kind()
        if kind in ("aten::_convolution", "aten::mkldnn_convolution"):
            found["conv"].append(_tensor_inputs(node)[:2])
        elif kind == "aten::pad" and not found["conv"] and pad_value is None:  # GemmStem pads with the mean
            value = list(node.inputs())[3].toIValue()
            pad_value = None if value is None else float(value)
        elif kind == "aten::addmm" and not found["conv"]:  # GemmStem: addmm(bias - mean * sum(w), patches, w.t())
            bias, weight_t = _tensor_inputs(node)[:2]
            assert bias is not None and weight_t is not None
            weight = weight_t.t().contiguous()
            if pad_value:
                bias = bias + pad_value * weight.sum(dim=1)
                found["mean"].append([torch.full((1, 1, 1), pad_value)])
            found["conv"].append([weight, bias])
        elif kind == "aten::batch_norm":
            found["bn"].append(_tensor_inputs(node)[:4])
        elif kind == "aten::addcmul" and _is_threshold(node):  # tau = sum|x| * alpha / L, 1 / L in the FC before
            length = 1.0 / float(list(node.inputs())[3].toIValue())
            found["linear"][-2][0] = found["linear"][-2][0] * length  # type: ignore[operator]
        elif kind == "aten::addcmul":
            shift, scale = _tensor_inputs(node)[:2]
            found["bn"].append([scale, shift, None, None])
        elif kind == "aten::linear":
            found["linear"].append(_tensor_inputs(node)[:2])
        elif kind in ("aten::sub", "aten::div") and len(found["conv"]) == 0:
            constants = [t for t in _tensor_inputs(node) if t is not None and t.ndim == 3]
            found["mean" if kind == "aten::sub" else "std"].extend([[t] for t in constants])
    return found


def _is_threshold(node: torch._C.Node) -> bool:
    """:class:`~edge_agent.nn.folding.FoldedShrinkage2d`'s ``addcmul(zero, alpha, sum|x|, value=1 / L)``."""
    constants = _tensor_inputs(node)
    return len(constants) == 1 and constants[0] is not None and constants[0].numel() == 1


def _identity_bn(bn: nn.modules.batchnorm._BatchNorm) -> None:
    with torch.no_grad():
        bn.weight.fill_(1.0)
        bn.bias.zero_()
        bn.running_mean.zero_()
        bn.running_var.fill_(1.0)
    bn.eps = 0.0


def _skeleton(meta: dict[str, Any]) -> nn.Module:
    architecture = meta["architecture"]
    options = {
        "num_classes": len(meta["labels"]),
        "widths": tuple(architecture["widths"]),
        "blocks_per_stage": int(architecture["blocks_per_stage"]),
        "kernel_size": int(architecture["kernel_size"]),
    }
    if architecture["model"] == "audio_drsn_cw":
        return audio_drsn_cw(
            frontend=architecture["frontend"],
            window_samples=int(meta["window_samples"]),
            abstain_rms=float(meta["normalisation"]["abstain_below_rms"]),
            **options,
        )
    return get_model(
        architecture["model"],
        in_channels=int(meta["channels"]),
        window_samples=int(meta["window_samples"]),
        **options,
    )


def network_from_frozen(path: Path) -> tuple[ResidualNet2d, dict[str, Any]]:
    """The eager 2-D network of the float32 file ``path`` and its meta; raises ``ValueError`` on a mismatch."""
    loaded = load_model(path)
    meta = dict(loaded.meta)
    if meta["precision"] != "float32" or meta.get("graph_layout") != "2d-channels-last":
        raise ValueError(f"{path}: need a float32 2d-channels-last export, got {meta['precision']}")
    network = to_channels_last_2d(_skeleton(meta))
    found = frozen_parameters(loaded.module)
    convs = [m for _, m in network.named_modules() if isinstance(m, nn.Conv2d)]
    bns = [m for n, m in network.named_modules() if isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d)]
    linears = [m for _, m in network.named_modules() if isinstance(m, nn.Linear)]
    kept_bns = [m for m in bns if not _is_folded(network, m)]
    if (len(convs), len(kept_bns), len(linears)) != (len(found["conv"]), len(found["bn"]), len(found["linear"])):
        raise ValueError(
            f"{path}: graph has {len(found['conv'])} convolutions, {len(found['bn'])} batch norms and "
            f"{len(found['linear'])} linear layers; the architecture {meta['architecture']} has "
            f"{len(convs)}, {len(kept_bns)} and {len(linears)}"
        )
    with torch.no_grad():
        for module, (weight, bias) in zip(convs, found["conv"], strict=True):
            module.weight.copy_(weight.reshape(module.weight.shape))  # type: ignore[union-attr]
            if bias is not None:
                module.bias = nn.Parameter(bias.clone(), requires_grad=False)
        for module, (weight, bias) in zip(linears, found["linear"], strict=True):
            module.weight.copy_(weight)
            module.bias.copy_(bias)
        for module in bns:
            if _is_folded(network, module):
                _identity_bn(module)
        for module, (weight, bias, mean, var) in zip(kept_bns, found["bn"], strict=True):
            if mean is None or var is None:  # a folded affine: weight = scale, bias = shift
                _identity_bn(module)
                weight, bias = weight.reshape(-1), bias.reshape(-1)
            else:
                module.running_mean.copy_(mean)
                module.running_var.copy_(var)
            module.weight.copy_(weight)
            module.bias.copy_(bias)
        if len(found["mean"]) > 1 or len(found["std"]) > 1:
            raise ValueError(f"{path}: more than one normalisation constant before the first convolution")
        if found["mean"] or found["std"]:
            normalize = network.normalize
            mean = found["mean"][0][0] if found["mean"] else torch.zeros_like(normalize.mean)
            normalize.set_stats(mean, found["std"][0][0] if found["std"] else torch.ones_like(normalize.std))
    return network.eval().requires_grad_(False), meta


def _is_folded(network: ResidualNet2d, bn: nn.Module) -> bool:
    """``bn2`` of every unit (folded into ``conv1``) and the threshold sub-networks' BN (into their Linear)."""
    for block in network.blocks:
        if bn is block.bn2:
            return True
        if isinstance(block.shrinkage, Shrinkage2d) and bn is block.shrinkage.attention[1]:
            return True
    return False


def reexport_shipped(float_path: Path, int8_path: Path, *, data: str | None = None) -> dict[str, Any]:
    """Rebuild ``float_path``'s network, add ``noise_floor`` and rewrite both files; returns the checks.

    Calibration follows the original recipe (CWRU: :func:`~edge_agent.training.export.calibration_set`
    with the run's seed and SNRs; audio: the seeded pick of all clip windows). Each file's meta is
    copied and extended, never rebuilt, so keys this code does not know are carried through.
    """
    from edge_agent.training.noise import add_noise
    from edge_agent.training.noise_floor_export import build_noise_floor_torchscript
    from edge_agent.training.provenance import code_version
    from edge_agent.training.quantize import save_torchscript

    network, float_meta = network_from_frozen(float_path)
    int8_meta = dict(load_model(int8_path).meta)
    old_float, old_int8 = load_model(float_path).module, load_model(int8_path).module
    calibration, reference, reference_data, held_out = shipped_recipe(int8_meta, data)
    extra = {"reference_windows": reference, "reference_data": reference_data}
    new_float, new_float_meta = build_noise_floor_torchscript(network, float_meta, **extra)
    engine = str(int8_meta["quantized_engine"])
    new_int8, new_int8_meta = build_noise_floor_torchscript(
        network, int8_meta, calibration=calibration, engine=engine, **extra
    )
    generator = torch.Generator().manual_seed(7)
    conditions = {"clean": held_out}
    for snr_db in (-5.0, -10.0):
        noisy = [add_noise(held_out, kind, snr_db, generator) for kind in ("gaussian", "pink")]
        conditions[f"{snr_db:+.0f} dB gaussian+pink"] = torch.cat(noisy)
    with torch.inference_mode():
        float_error = max(float((new_float(w) - old_float(w)).abs().max()) for w in conditions.values())
        agreement = {
            name: float((new_int8(w).argmax(1) == old_int8(w).argmax(1)).float().mean())
            for name, w in conditions.items()
        }
    if float_error > 1e-5:
        raise ValueError(f"rebuilt float32 logits differ from {float_path} by {float_error:.3g}")
    checks = {
        "from": f"{float_path.name} (weights read back from the frozen float32 graph)",
        "held_out_windows": len(held_out),
        "float32_max_abs_logit_difference": float_error,
        "int8_argmax_agreement_with_previous_int8": agreement,
        "code_version": code_version(),
    }
    for path, meta, module in ((float_path, new_float_meta, new_float), (int8_path, new_int8_meta, new_int8)):
        meta["reexport"] = checks
        save_torchscript(module, path, meta)
        load_model(path)
    logger.info("re-exported %s and %s: %s", float_path, int8_path, checks)
    return checks


def shipped_audio_data(meta: dict[str, Any], data: str | None) -> tuple[Any, Any]:
    """The audio model's training config and clips, as its ``meta.json`` recorded them (the data checked by hash)."""
    from edge_agent.training.audio_data import load_bldc
    from edge_agent.training.audio_train import AudioTrainConfig

    dataset = load_bldc(data)
    same_data(dataset.sha256, meta)
    return AudioTrainConfig.from_json(meta["training"]["config"]), dataset


def shipped_cwru_data(meta: dict[str, Any], data: str | None) -> tuple[Any, Any]:
    """The CWRU model's training config and records, as its ``meta.json`` recorded them (the data checked by hash)."""
    from edge_agent.training.data import load_cwru
    from edge_agent.training.train import TrainConfig

    training = meta["training"]
    config = TrainConfig(
        window_samples=int(meta["window_samples"]),
        mode=training["mode"],
        snr_range_db=tuple(training["snr_range_db"]),
        seed=int(training["seed"]),
    )
    dataset = load_cwru(data, fractions=tuple(training["split_fractions"]))
    same_data(dataset.sha256, meta)
    return config, dataset


def shipped_recipe(meta: dict[str, Any], data: str | None) -> tuple[torch.Tensor, torch.Tensor, str, torch.Tensor]:
    """Calibration windows, clean reference windows, their description and held-out windows for the checks."""
    import numpy as np

    if meta["architecture"]["model"] == "audio_drsn_cw":
        from edge_agent.training.audio_export import all_windows

        config, dataset = shipped_audio_data(meta, data)
        windows = all_windows(dataset, config)
        picks = torch.randperm(len(windows), generator=torch.Generator().manual_seed(config.seed))[:256]
        # the shipped audio model saw every clip: no held-out windows exist for it
        return windows[picks], windows, f"median over all {len(windows)} training windows", windows
    from edge_agent.training.data import make_windows
    from edge_agent.training.evaluate import test_windows
    from edge_agent.training.export import calibration_set

    config, dataset = shipped_cwru_data(meta, data)
    clean = torch.from_numpy(
        np.asarray(make_windows(dataset.splits["train"], config.window_samples, config.window_samples)[0])
    )
    return (
        calibration_set(dataset, config, int(meta["quantization"]["calibration_windows"])),
        clean,
        f"median over {len(clean)} clean training windows (hop = window)",
        test_windows(dataset, config.window_samples)[0],
    )


def same_data(sha256: str, meta: dict[str, Any]) -> None:
    """Refuse data whose hash is not the one the model was trained on."""
    if sha256 != meta["training"]["data_sha256"]:
        raise ValueError(
            f"data sha256 {sha256} differs from the model's training data {meta['training']['data_sha256']}"
        )


def main() -> None:
    logging.basicConfig(level=logging.INFO)
    torch.set_num_threads(1)
    for stem in ("drsn_cw_cwru", "drsn_cw_bldc_audio"):
        reexport_shipped(Path(f"models/{stem}_float.pt"), Path(f"models/{stem}.pt"))


if __name__ == "__main__":
    main()
