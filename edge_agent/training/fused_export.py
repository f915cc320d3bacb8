"""The fused int8 file of a shipped model: ``python -m edge_agent.training.fused_export --model cwru``.

    python -m edge_agent.training.fused_export --model cwru --model audio   # models/<stem>_fused.pt

Writes ``models/<stem>_fused.pt`` beside the standard pair: the standard int8 file's int8 parameters
(same weights, scales and zero points), its int8 convolutions and the float glue between them in native
ops (each unit's two convolutions in the library's ``conv_unit``). Before writing,
the fused file is compared with the standard int8 file on held-out windows (the conditions of
:mod:`edge_agent.training.fast_export`) and its accuracy measured; the checks go into its ``meta.json``
(``fused_export``) and are printed as JSON. ``--dry-run`` checks without writing.

:func:`build_fused_torchscript` takes the folded float network (:func:`edge_agent.nn.folding.fold_network`),
the standard int8 TorchScript built from it and the reference windows of its noise floor, and traces
:class:`edge_agent.nn.fused.FusedInt8Net` with the three methods of the standard file (``forward``,
``noise_floor``, ``forward_with_noise_floor``), frozen. Its int8 convolutions and quantizes are the
standard file's (read back from it), so the two files differ only in how the float glue is computed.
Needs the op library (:func:`edge_agent.kernels.load_ops`), at export and wherever the file is loaded.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch

from edge_agent.kernels import load_ops, ops_status
from edge_agent.nn.channels_last import ResidualNet2d
from edge_agent.nn.fused import FusedInt8Net
from edge_agent.nn.noise_floor import DEFAULT_UNITS, NoiseFloorNet2d
from edge_agent.training.int8_params import read_int8_parameters
from edge_agent.training.noise_floor_export import METHOD, WITH_LOGITS, measure_references

logger = logging.getLogger(__name__)

FUSED_SUFFIX = "_fused"
WHAT = "int8 convolutions and the float glue between them in native ops (edge_agent/kernels); same int8 parameters"
MIN_AGREEMENT = 0.99  # argmax agreement with the standard int8 file, per condition (int8 rounding only)


def fused_network(
    folded: ResidualNet2d,
    int8_module: torch.jit.ScriptModule,
    reference_windows: torch.Tensor,
    units: tuple[int, ...] = DEFAULT_UNITS,
) -> FusedInt8Net:
    """:class:`FusedInt8Net` of ``folded`` with ``int8_module``'s int8 parameters (eval, no gradients)."""
    params = read_int8_parameters(int8_module)
    references = measure_references(folded, reference_windows, units)
    combined = NoiseFloorNet2d(folded, units=units, references=references)
    convs = [(c.weight, c.bias, c.scale, c.zero_point) for c in params.convs]
    return FusedInt8Net(combined, params.quantizes, convs).eval().requires_grad_(False)


def build_fused_torchscript(
    folded: ResidualNet2d,
    int8_module: torch.jit.ScriptModule,
    int8_meta: dict[str, Any],
    reference_windows: torch.Tensor,
) -> tuple[torch.jit.ScriptModule, dict[str, Any]]:
    """The traced, frozen fused module and its meta (``int8_meta`` plus ``kernels``)."""
    if not load_ops():
        raise RuntimeError(f"the fused export needs the op library: {ops_status().reason}")
    network = fused_network(folded, int8_module, reference_windows)
    example = torch.zeros(2, int(int8_meta["channels"]), int(int8_meta["window_samples"]))
    methods = {"forward": (example,), METHOD: (example,), WITH_LOGITS: (example,)}
    with torch.no_grad():
        traced = torch.jit.trace_module(network, methods, check_trace=False, _store_inputs=False)
    scripted = torch.jit.freeze(traced, preserved_attrs=[METHOD, WITH_LOGITS])
    meta = {**int8_meta, "kernels": {"library": "edge_agent", "what": WHAT}}
    return scripted, meta


def fused_export(float_path: Path, int8_path: Path, *, data: str | None = None, write: bool = True) -> dict[str, Any]:
    """Build, check and (``write``) save ``<int8 stem>_fused.pt`` of one shipped pair; returns the checks."""
    from edge_agent.modelfile import load_model
    from edge_agent.nn.folding import fold_network
    from edge_agent.training.fast_export import accuracy, compare, conditions, write_checked
    from edge_agent.training.provenance import code_version
    from edge_agent.training.unfreeze import network_from_frozen, shipped_recipe

    network, _ = network_from_frozen(float_path)
    standard = load_model(int8_path)
    int8_meta = dict(standard.meta)
    _, reference, _, held_out = shipped_recipe(int8_meta, data)
    torch.backends.quantized.engine = str(int8_meta["quantized_engine"])
    fused, meta = build_fused_torchscript(fold_network(network), standard.module, int8_meta, reference)
    meta["kernels"]["fallback"] = int8_path.name
    windows = conditions(held_out, ("gaussian", "pink"))
    checks: dict[str, Any] = {
        "what": WHAT,
        "from": f"{int8_path.name} (its int8 parameters) and {float_path.name} (the float layers, folded)",
        "kernel_isa": ops_status().isa,
        "conv_isa": str(torch.ops.edge_agent.conv_isa()),
        "held_out_windows": len(held_out),
        "fused_vs_standard_int8": {name: compare(fused, standard.module, w) for name, w in windows.items()},
        "accuracy_percent": accuracy({"int8": standard.module, "int8 fused": fused}, int8_meta, data),
        "code_version": code_version(),
    }
    agreement = min(c["argmax_agreement"] for c in checks["fused_vs_standard_int8"].values())
    if agreement < MIN_AGREEMENT:
        raise ValueError(f"fused file agrees with {int8_path} on only {agreement:.2%} of a condition's windows")
    if write:
        out = int8_path.with_name(f"{int8_path.stem}{FUSED_SUFFIX}.pt")
        meta["fused_export"] = checks
        write_checked(fused, out, meta)
        logger.info("wrote %s", out)
    return checks


def main(argv: list[str] | None = None) -> int:
    from edge_agent.training.fast_export import shipped_pair, shipped_pairs_parser

    args = shipped_pairs_parser(__doc__.split("\n")[0]).parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    torch.set_num_threads(1)
    results = {}
    for name in args.model:
        results[name] = fused_export(*shipped_pair(args.models_dir, name), data=args.data, write=not args.dry_run)
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
