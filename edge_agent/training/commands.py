"""The offline subcommands of ``edge-agent``: train, train-audio, evaluate, export, sweep, report.

``edge_agent.cli`` wires the runtime commands and calls :func:`register` when this package can be
imported. Importing this module is cheap (no torch, no data): each command imports what it needs
when it runs. Every option shows its default in ``--help``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

COMMANDS = ("train", "train-audio", "evaluate", "export", "sweep", "report", "learn")
DATA_HELP = "folder holding cwru/; without it $EDGE_AGENT_DATA, else ../shared/data"


class DefaultsShown(argparse.ArgumentDefaultsHelpFormatter):
    """``(default: ...)`` after every option's help, except where the default is None (the help says why)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None:
            return action.help
        return super()._get_help_string(action)


def parse_floats(text: str) -> tuple[float, ...]:
    return tuple(float(part) for part in text.split(",") if part.strip())


def parse_ints(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(","))


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the offline commands to ``sub`` (the ``add_subparsers()`` object of the ``edge-agent`` parser)."""

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help_text, description=help_text, formatter_class=DefaultsShown)

    # the defaults are the shipped model's recipe (models/README.md, its meta.json "training" and "architecture")
    p = add("train", "train a network on CWRU with noise augmentation")
    p.add_argument("--model", default="drsn_cw", help="network name (edge_agent.nn.list_models())")
    # string defaults go through `type`, so --help shows them as typed: 4,8,16 is (4, 8, 16)
    p.add_argument("--widths", type=parse_ints, default="16,32,64", help="channels per stage, comma-separated")
    p.add_argument("--blocks-per-stage", type=int, default=2, help="residual shrinkage blocks per stage")
    p.add_argument("--window-samples", type=int, default=2048, help="input window length in samples")
    p.add_argument("--epochs", type=int, default=40, help="epochs to train")
    p.add_argument("--steps-per-epoch", type=int, default=50, help="optimiser steps per epoch")
    p.add_argument("--batch-size", type=int, default=128, help="windows per optimiser step")
    p.add_argument(
        "--lr", type=float, default=0.1, help="initial SGD learning rate (it drops 10x at TrainConfig.lr_drops)"
    )
    p.add_argument(
        "--mode",
        choices=("augment", "matched", "clean"),
        default="augment",
        help="training noise: random type and SNR from --snr-range, gaussian at --matched-snr, or none",
    )
    p.add_argument("--snr-range", type=parse_floats, default="-12,6", help="low,high SNR in dB for --mode augment")
    p.add_argument("--matched-snr", type=float, default=0.0, help="SNR in dB for --mode matched")
    p.add_argument(
        "--clean-fraction", type=float, default=0.15, help="share of training windows left clean (--mode augment)"
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed, same weights)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--data", help=DATA_HELP)
    p.add_argument("--out", required=True, help="run folder (checkpoints; an existing one resumes)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_train)

    p = add("train-audio", "train (and export) the DRSN-CW motor-sound model on the BLDC clips")
    p.add_argument(
        "--frontend",
        choices=("raw", "logspec"),
        default="raw",
        help="network input: the waveform or its Welch log-power spectrum",
    )
    p.add_argument("--window-samples", type=int, default=4096, help="input window length in samples")
    p.add_argument("--steps", type=int, default=1200, help="optimiser steps")
    p.add_argument("--gap-fraction", type=float, default=0.1, help="training crops with a silent start or end")
    p.add_argument(
        "--speed-factors",
        type=parse_floats,
        default="",
        help="speed augmentation, e.g. 0.9,0.95,1.05,1.1: training copies resampled by each factor (off)",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--device", default="cpu", help="torch device for training, e.g. cuda")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--cv", metavar="JSON", help="instead of training the shipped model: cross-validate, write JSON")
    p.add_argument("--seeds", type=parse_ints, default="0,1,2", help="--cv seeds, comma-separated")
    p.add_argument("--out", default="runs/audio/shipped", help="run folder (checkpoint.pt; an existing one is reused)")
    p.add_argument("--model-out", default="models/drsn_cw_bldc_audio.pt", help="int8 TorchScript file to write")
    p.add_argument("--float-out", default="models/drsn_cw_bldc_audio_float.pt", help="float32 file ('' for none)")
    p.add_argument("--cv-summary", help="cross-validation JSON (from --cv) to record in meta.json")
    p.add_argument("--data", help=DATA_HELP.replace("cwru/", "machine_sound/"))
    p.set_defaults(func=_cmd_train_audio)

    p = add("evaluate", "accuracy versus SNR of a trained run on the time-held-out test split")
    p.add_argument("run", help="run folder written by train")
    p.add_argument("--repeats", type=int, default=2, help="noise draws per test window and condition")
    p.add_argument("--data", help=DATA_HELP)
    p.add_argument(
        "--json", action="store_true", help="print the result as JSON (per noise type and mean, as in <run>/eval.json)"
    )
    p.set_defaults(func=_cmd_evaluate)

    p = add("export", "write a self-describing TorchScript model (int8 by default)")
    p.add_argument("run", help="run folder written by train")
    p.add_argument("--out", required=True, help="TorchScript file to write")
    p.add_argument("--float", action="store_true", help="export float32 instead of int8")
    p.add_argument(
        "--engine",
        choices=("onednn", "qnnpack", "fbgemm", "x86"),
        default="onednn",
        help="quantized engine the int8 file is built for: onednn on x86 gateways, qnnpack on ARM",
    )
    p.add_argument("--data", help=DATA_HELP)
    p.add_argument(
        "--force",
        action="store_true",
        help="export even when the held-out clean accuracy is below 1.5 x chance (refused otherwise)",
    )
    p.set_defaults(func=_cmd_export)

    p = add("sweep", "train the runs of the evaluation report that are missing")
    p.add_argument("--runs", default="runs", help="folder holding one run folder per configuration")
    p.add_argument(
        "--jobs", type=int, default=2, help="runs trained at the same time (one process each; interrupted runs resume)"
    )
    p.add_argument("--only", help="train only runs whose name contains this")
    p.add_argument("--data", help=DATA_HELP)
    p.set_defaults(func=_cmd_sweep)

    p = add("report", "evaluate every run and write docs/results")
    p.add_argument("--runs", default="runs", help="folder holding the run folders to evaluate")
    p.add_argument("--out", default="docs/results", help="folder to write the report into")
    p.add_argument("--model", help="shipped TorchScript model to add (confusion matrix, int8 vs float)")
    p.add_argument("--data", help=DATA_HELP)
    p.set_defaults(func=_cmd_report)

    from edge_agent.training import learn_cli  # its heavy imports wait for the command itself

    learn_cli.add_parser(sub, formatter_class=DefaultsShown)  # a healthy baseline from recordings


def _cmd_train(args: argparse.Namespace) -> int:
    from edge_agent.training.data import load_cwru
    from edge_agent.training.train import TrainConfig, train

    config = TrainConfig(
        model=args.model,
        widths=args.widths,
        blocks_per_stage=args.blocks_per_stage,
        window_samples=args.window_samples,
        epochs=args.epochs,
        steps_per_epoch=args.steps_per_epoch,
        batch_size=args.batch_size,
        lr=args.lr,
        mode=args.mode,
        snr_range_db=args.snr_range,
        matched_snr_db=args.matched_snr,
        clean_fraction=args.clean_fraction,
        seed=args.seed,
        threads=args.threads,
    )
    summary = train(config, load_cwru(args.data), Path(args.out), progress=not args.quiet)
    print(json.dumps({k: summary[k] for k in ("best_val_accuracy", "best_epoch", "train_seconds")}))
    return 0


def _cmd_train_audio(args: argparse.Namespace) -> int:
    from edge_agent.training.audio_export import run_train_audio

    return run_train_audio(args)


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from edge_agent.training.evaluate import evaluate_run, format_table

    result = evaluate_run(Path(args.run), data=args.data, repeats=args.repeats)
    print(json.dumps(result, indent=2) if args.json else format_table(result))
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from edge_agent.training.accuracy_gate import accuracy_problem
    from edge_agent.training.export import export_run

    run, out = Path(args.run), Path(args.out)
    meta = export_run(run, out, data=args.data, quantize=not args.float, engine=args.engine, force=args.force)
    print(json.dumps({k: meta[k] for k in ("name", "quantized_engine", "test_metrics")}, indent=2))
    problem = accuracy_problem(meta["test_metrics"]["accuracy"]["clean"], len(meta["labels"]))
    if problem is not None:  # the last thing on the terminal, not only a log line above the JSON
        print(f"\nWARNING: {out} exported, but its {problem[1]}", file=sys.stderr)
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    from edge_agent.training.sweep import run_sweep

    run_sweep(Path(args.runs), jobs=args.jobs, data=args.data, only=args.only)
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from edge_agent.training.report import write_report

    write_report(Path(args.runs), Path(args.out), data=args.data, shipped=Path(args.model) if args.model else None)
    return 0
