"""Re-export a shipped model pair folded for speed, same weights: ``python -m edge_agent.training.fast_export``.

    python -m edge_agent.training.fast_export --model cwru     # models/drsn_cw_cwru{,_float}.pt
    python -m edge_agent.training.fast_export --model audio    # models/drsn_cw_bldc_audio{,_float}.pt

Reads the weights back from the float32 file (:func:`~edge_agent.training.unfreeze.network_from_frozen`;
it also reads files this command wrote, so it can run again), folds the batch norms
(:mod:`edge_agent.nn.folding`) and rewrites both files with their ``noise_floor`` methods. The int8
file keeps the previous int8 file's scales, zero points and int8 weights
(:mod:`edge_agent.training.int8_params`) when they are of the same weights; otherwise (e.g. the audio
model was retrained and exported since), or with ``--recalibrate``, it is calibrated again with the
original recipe. Before writing, the new files are compared with the old ones on held-out windows (CWRU:
the test split, clean and at -5 and -10 dB with Gaussian and pink noise; audio: every window of the 31
clips, same conditions) and their accuracy is measured (CWRU: the model card's
:func:`~edge_agent.training.evaluate.accuracy_vs_snr`); the command refuses if the float32 logits moved
by more than ``--max-float-diff``. The checks go into ``meta.json`` (``fast_export``) and are printed
as JSON. ``--dry-run`` checks without writing. ``--stem gemm`` writes the stem as one matrix product
(:class:`~edge_agent.nn.folding.GemmStem`; not bit-identical, no clear gain here, so not the default).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

import torch

from edge_agent.modelfile import load_model
from edge_agent.nn.folding import DIRECT_CONVS, STEMS, fold_network
from edge_agent.training.int8_params import OtherWeightsError, read_int8_parameters
from edge_agent.training.noise import add_noise
from edge_agent.training.noise_floor_export import METHOD, build_noise_floor_torchscript
from edge_agent.training.unfreeze import network_from_frozen, shipped_recipe

logger = logging.getLogger(__name__)

MODELS = {"cwru": "drsn_cw_cwru", "audio": "drsn_cw_bldc_audio"}
FLOAT_TOLERANCE = 1e-4  # float32 logits of the folded graph against the old file (rounding only)
BATCH = 256


def _outputs(module: torch.jit.ScriptModule, windows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.inference_mode():
        parts = [module.forward_with_noise_floor(chunk) for chunk in windows.split(BATCH)]
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


def compare(new: torch.jit.ScriptModule, old: torch.jit.ScriptModule, windows: torch.Tensor) -> dict[str, float]:
    """Argmax agreement, max abs logit difference and max relative noise-floor difference of ``new`` vs ``old``."""
    (new_logits, new_floor), (old_logits, old_floor) = _outputs(new, windows), _outputs(old, windows)
    return {
        "argmax_agreement": float((new_logits.argmax(1) == old_logits.argmax(1)).float().mean()),
        "max_abs_logit_diff": float((new_logits - old_logits).abs().max()),
        "max_rel_noise_floor_diff": float(((new_floor - old_floor).abs() / old_floor.abs().clamp_min(1e-12)).max()),
    }


def conditions(windows: torch.Tensor, noise_kinds: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """The held-out windows clean and with each noise kind at -5 and -10 dB (fixed seed)."""
    generator = torch.Generator().manual_seed(13)
    found = {"clean": windows}
    for snr_db in (-5.0, -10.0):
        for kind in noise_kinds:
            found[f"{kind} {snr_db:+.0f} dB"] = add_noise(windows, kind, snr_db, generator)
    return found


def accuracy(modules: dict[str, torch.nn.Module], meta: dict[str, Any], data: str | None) -> dict[str, Any]:
    """Accuracy of each module in %: CWRU as in the model card (test split, mean over noise kinds, 2 draws);
    audio on all windows of the training clips (agreement with the labels, not generalisation)."""
    if meta["architecture"]["model"] == "audio_drsn_cw":
        from edge_agent.training.audio_data import clip_windows, load_bldc
        from edge_agent.training.audio_export import all_windows, predictions
        from edge_agent.training.audio_train import AudioTrainConfig

        config = AudioTrainConfig.from_json(meta["training"]["config"])
        dataset = load_bldc(data)
        windows = all_windows(dataset, config)
        counts = [len(clip_windows(c, config.window_samples, config.hop_samples)) for c in dataset.clips]
        labels = torch.cat([torch.full((n,), c.label) for n, c in zip(counts, dataset.clips, strict=True)])
        return {
            name: {"clean": round(100 * float((predictions(m, windows) == labels).float().mean()), 2)}
            for name, m in modules.items()
        }
    from edge_agent.training.data import load_cwru
    from edge_agent.training.evaluate import accuracy_vs_snr, summarize, test_windows

    dataset = load_cwru(data, fractions=tuple(meta["training"]["split_fractions"]))
    windows, labels = test_windows(dataset, int(meta["window_samples"]))
    found = {}
    for name, module in modules.items():
        summary = summarize(accuracy_vs_snr(module, windows, labels))
        found[name] = {label: round(100 * summary[label], 2) for label in ("clean", "-5", "-8", "-10")}
    return found


def fast_export(
    float_path: Path,
    int8_path: Path,
    *,
    data: str | None = None,
    direct_convs: str = "none",
    stem: str = "conv",
    max_float_diff: float = FLOAT_TOLERANCE,
    recalibrate: bool = False,
    write: bool = True,
) -> dict[str, Any]:
    """Fold, re-export and check one shipped pair; returns the checks (also stored in both files' meta)."""
    from edge_agent.training.provenance import code_version

    network, float_meta = network_from_frozen(float_path)
    old_float, old_int8 = load_model(float_path), load_model(int8_path)
    int8_meta = dict(old_int8.meta)
    calibration, reference, reference_data, held_out = shipped_recipe(int8_meta, data)
    extra = {"reference_windows": reference, "reference_data": reference_data}
    engine = str(int8_meta["quantized_engine"])
    new_float, new_float_meta = build_noise_floor_torchscript(
        fold_network(network, direct_convs=direct_convs, stem=stem), float_meta, **extra
    )
    int8_convs = "none" if direct_convs == "none" else "stem"  # the units' convolutions become int8
    folded_int8 = fold_network(network, direct_convs=int8_convs, stem=stem)
    kept = None if recalibrate else read_int8_parameters(old_int8.module)
    try:
        new_int8, new_int8_meta = build_noise_floor_torchscript(
            folded_int8, int8_meta, calibration=calibration, engine=engine, int8_parameters=kept, **extra
        )
    except OtherWeightsError as error:
        logger.warning("%s: %s; calibrating again", int8_path, error)
        kept = None
        new_int8, new_int8_meta = build_noise_floor_torchscript(
            folded_int8, int8_meta, calibration=calibration, engine=engine, **extra
        )
    audio = int8_meta["architecture"]["model"] == "audio_drsn_cw"
    windows = conditions(held_out, ("gaussian", "pink"))
    checks: dict[str, Any] = {
        "what": "batch norms folded (edge_agent.nn.folding), no float ReLU before a quantize; same weights",
        "from": f"{float_path.name} (weights read back from the frozen float32 graph)",
        "direct_convs": direct_convs,
        "stem": stem,
        "int8_parameters": "calibrated again"
        if recalibrate
        else f"scales, zero points and int8 weights of the previous {int8_path.name}",
        "held_out_windows": len(held_out),
        "held_out": "all windows of the 31 clips (the model saw them all)" if audio else "CWRU test split, hop 1024",
        "float32_new_vs_old": {name: compare(new_float, old_float.module, w) for name, w in windows.items()},
        "int8_new_vs_old": {name: compare(new_int8, old_int8.module, w) for name, w in windows.items()},
        "int8_new_vs_float32_new": {name: compare(new_int8, new_float, w) for name, w in windows.items()},
        "accuracy_percent": accuracy(
            {
                "float32 old": old_float.module,
                "float32 new": new_float,
                "int8 old": old_int8.module,
                "int8 new": new_int8,
            },
            int8_meta,
            data,
        ),
        "code_version": code_version(),
    }
    float_error = max(c["max_abs_logit_diff"] for c in checks["float32_new_vs_old"].values())
    if float_error > max_float_diff:
        raise ValueError(f"folded float32 logits differ from {float_path} by {float_error:.3g} (> {max_float_diff})")
    if write:
        for path, meta, module in ((float_path, new_float_meta, new_float), (int8_path, new_int8_meta, new_int8)):
            meta["fast_export"] = checks
            write_checked(module, path, meta)
        logger.info("re-exported %s and %s", float_path, int8_path)
    return checks


def write_checked(module: torch.nn.Module, path: Path, meta: dict[str, Any]) -> None:
    """Save ``module`` with ``meta`` and load it back: refused if the file lost its noise-floor method."""
    from edge_agent.training.quantize import save_torchscript

    save_torchscript(module, path, meta)
    if load_model(path).meta.noise_floor is None:
        raise ValueError(f"{path}: export lost its {METHOD} method")


def shipped_pairs_parser(description: str) -> argparse.ArgumentParser:
    """The options every re-export of the shipped pairs takes: which models, where, the data, ``--dry-run``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--model", choices=sorted(MODELS), required=True, action="append", help="repeatable")
    parser.add_argument("--models-dir", type=Path, default=Path("models"))
    parser.add_argument("--data", default=None, help="data root (default: $EDGE_AGENT_DATA or the shared data)")
    parser.add_argument("--dry-run", action="store_true", help="check, do not write the files")
    return parser


def shipped_pair(models_dir: Path, name: str) -> tuple[Path, Path]:
    """The float32 and int8 files of shipped model ``name`` in ``models_dir``."""
    return models_dir / f"{MODELS[name]}_float.pt", models_dir / f"{MODELS[name]}.pt"


def main(argv: list[str] | None = None) -> int:
    parser = shipped_pairs_parser(__doc__.split("\n")[0])
    parser.add_argument(
        "--direct-convs",
        choices=DIRECT_CONVS,
        default="none",
        help="float convolutions through oneDNN directly (slower at batch 1 on the AMD EPYC this was measured on)",
    )
    parser.add_argument(
        "--stem", choices=STEMS, default="conv", help="the stem as a convolution or as one matrix product (GemmStem)"
    )
    parser.add_argument("--max-float-diff", type=float, default=FLOAT_TOLERANCE)
    parser.add_argument(
        "--recalibrate",
        action="store_true",
        help="calibrate the int8 file again instead of keeping the previous file's scales and int8 weights "
        "(needed when the int8 file is not of the float file's weights)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    torch.set_num_threads(1)
    results = {}
    for name in args.model:
        results[name] = fast_export(
            *shipped_pair(args.models_dir, name),
            data=args.data,
            direct_convs=args.direct_convs,
            stem=args.stem,
            max_float_diff=args.max_float_diff,
            recalibrate=args.recalibrate,
            write=not args.dry_run,
        )
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
