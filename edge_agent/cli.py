"""The ``edge-agent`` command line."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
from collections.abc import Callable
from pathlib import Path

EXIT_CONFIG = 2  # invalid configuration: systemd must not restart (RestartPreventExitStatus= in the unit)


def _parse_floats(text: str) -> tuple[float, ...]:
    return tuple(float(part) for part in text.split(","))


def _parse_ints(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(","))


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
    from edge_agent.training.evaluate import evaluate_run

    result = evaluate_run(Path(args.run), data=args.data, repeats=args.repeats)
    print(json.dumps(result["summary"], indent=2))
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from edge_agent.training.export import export_run

    meta = export_run(Path(args.run), Path(args.out), data=args.data, quantize=not args.float, engine=args.engine)
    print(json.dumps({k: meta[k] for k in ("name", "quantized_engine", "test_metrics")}, indent=2))
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    from edge_agent.training.sweep import run_sweep

    run_sweep(Path(args.runs), jobs=args.jobs, data=args.data, only=args.only)
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from edge_agent.training.report import write_report

    write_report(Path(args.runs), Path(args.out), data=args.data, shipped=Path(args.model) if args.model else None)
    return 0


def _cmd_check_config(args: argparse.Namespace) -> int:
    from edge_agent.configload import ConfigError, load_config, missing_model_files

    try:
        config = load_config(args.path)
    except ConfigError as error:
        errors = error.errors
    else:
        errors = [] if args.skip_model_files else missing_model_files(config)
    if errors:
        print(f"edge-agent check-config: {args.path}: {len(errors)} error(s)", file=sys.stderr)
        print("\n".join(errors), file=sys.stderr)
        return EXIT_CONFIG
    print(f"config OK: {len(config.sources)} sources, {len(config.models)} models")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    import dataclasses
    import signal

    from edge_agent.config import AgentConfig
    from edge_agent.configload import ConfigError, load_config, resolve_password
    from edge_agent.service.app import App
    from edge_agent.service.sdnotify import Notifier

    try:
        config = load_config(args.config)
        password = resolve_password(config.mqtt) if config.mqtt.enabled else None
    except ConfigError as error:
        print(f"edge-agent run: {args.config}: {len(error.errors)} error(s)", file=sys.stderr)
        print("\n".join(error.errors), file=sys.stderr)
        return EXIT_CONFIG

    def looping(config: AgentConfig) -> AgentConfig:
        if not args.loop:
            return config
        sources = tuple(dataclasses.replace(s, loop=True) if s.type == "replay" else s for s in config.sources)
        return dataclasses.replace(config, sources=sources)

    config = looping(config)
    if not args.verbose:
        logging.getLogger().setLevel(config.agent.log_level.upper())
    app = App(
        config,
        echo=lambda line: print(line, flush=True),
        password=password,
        notifier=Notifier(),  # systemd (Type=notify): READY=1, STATUS=, WATCHDOG=1, STOPPING=1
        read_config=lambda: looping(load_config(args.config)),
    )
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _off_the_main_thread(app.stop_requested.set, "stop"))
    # systemctl reload: ExecReload= kill -HUP
    signal.signal(signal.SIGHUP, _off_the_main_thread(app.request_reload, "reload"))
    return app.run(exit_when_finished=not args.loop)


def _off_the_main_thread(action: Callable[[], None], name: str) -> Callable[..., None]:
    """A signal handler that runs ``action`` on a new thread.

    Python runs handlers on the main thread between two bytecodes, possibly while that thread holds
    the lock of the very ``threading.Event`` the handler would set (inside ``Event.wait`` or
    ``clear``): setting it there deadlocks. A short thread takes the lock once the main thread lets go.
    """

    def handler(signum: int, frame: object) -> None:
        threading.Thread(target=action, name=f"signal-{name}", daemon=True).start()

    return handler


def _cmd_devices(args: argparse.Namespace) -> int:
    from edge_agent.sources.devices import (
        AudioUnavailableError,
        format_device_table,
        import_sounddevice,
        list_input_devices,
    )

    try:
        devices = list_input_devices(import_sounddevice())
    except AudioUnavailableError as error:
        print(f"edge-agent devices: cannot list sound cards: {error}", file=sys.stderr)
        return 1
    if not devices:
        print("PortAudio lists no input device (no sound card, or its server, e.g. PulseAudio, is not running)")
        return 0
    print(format_device_table(devices))
    print("\n* the default input. Set a soundcard source's device to a unique part of the name (or the index).")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edge-agent", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    data_help = "folder holding cwru/ (default: $EDGE_AGENT_DATA or ../shared/data)"

    p = sub.add_parser("train", help="train a network on CWRU with noise augmentation")
    p.add_argument("--model", default="drsn_cw")
    p.add_argument("--widths", type=_parse_ints, default=(4, 8, 16), help="comma-separated, e.g. 4,8,16")
    p.add_argument("--blocks-per-stage", type=int, default=4)
    p.add_argument("--window-samples", type=int, default=2048)
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--steps-per-epoch", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--mode", choices=("augment", "matched", "clean"), default="augment")
    p.add_argument("--snr-range", type=_parse_floats, default=(-12.0, 6.0), help="low,high in dB")
    p.add_argument("--matched-snr", type=float, default=0.0)
    p.add_argument("--clean-fraction", type=float, default=0.15)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--data", help=data_help)
    p.add_argument("--out", required=True, help="run folder (checkpoints; an existing one resumes)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("train-audio", help="train (and export) the DRSN-CW motor-sound model on the BLDC clips")
    p.add_argument("--frontend", choices=("raw", "logspec"), default="raw")
    p.add_argument("--window-samples", type=int, default=4096)
    p.add_argument("--steps", type=int, default=1200)
    p.add_argument("--gap-fraction", type=float, default=0.1, help="training crops with a silent start or end")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="torch device for training, e.g. cuda")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--cv", metavar="JSON", help="instead of training the shipped model: cross-validate, write JSON")
    p.add_argument("--seeds", type=_parse_ints, default=(0, 1, 2), help="--cv seeds, comma-separated")
    p.add_argument("--out", default="runs/audio/shipped", help="run folder (checkpoint.pt; an existing one is reused)")
    p.add_argument("--model-out", default="models/drsn_cw_bldc_audio.pt", help="int8 TorchScript file to write")
    p.add_argument("--float-out", default="models/drsn_cw_bldc_audio_float.pt", help="float32 file ('' for none)")
    p.add_argument("--cv-summary", help="cross-validation JSON (from --cv) to record in meta.json")
    p.add_argument("--data", help="folder holding machine_sound/ (default: $EDGE_AGENT_DATA or ../shared/data)")
    p.set_defaults(func=_cmd_train_audio)

    __import__("edge_agent.training.learn_cli", fromlist=["add_parser"]).add_parser(sub)  # edge-agent learn

    p = sub.add_parser("evaluate", help="accuracy versus SNR of a trained run on the time-held-out test split")
    p.add_argument("run", help="run folder written by train")
    p.add_argument("--repeats", type=int, default=2, help="noise draws per test window and condition")
    p.add_argument("--data", help=data_help)
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("export", help="write a self-describing TorchScript model (int8 by default)")
    p.add_argument("run", help="run folder written by train")
    p.add_argument("--out", required=True, help="TorchScript file to write")
    p.add_argument("--float", action="store_true", help="export float32 instead of int8")
    p.add_argument(
        "--engine",
        choices=("onednn", "qnnpack", "fbgemm", "x86"),
        default="onednn",
        help="quantized engine the int8 file is built for: onednn on x86 gateways, qnnpack on ARM",
    )
    p.add_argument("--data", help=data_help)
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("sweep", help="train the runs of the evaluation report that are missing")
    p.add_argument("--runs", default="runs")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--only", help="train only runs whose name contains this")
    p.add_argument("--data", help=data_help)
    p.set_defaults(func=_cmd_sweep)

    p = sub.add_parser("report", help="evaluate every run and write docs/results")
    p.add_argument("--runs", default="runs")
    p.add_argument("--out", default="docs/results")
    p.add_argument("--model", help="shipped TorchScript model to add (confusion matrix, int8 vs float)")
    p.add_argument("--data", help=data_help)
    p.set_defaults(func=_cmd_report)

    p = sub.add_parser("check-config", help="validate a config file (and that its model files exist); exit 0 or 2")
    p.add_argument("path", nargs="?", default="config.toml", help="config file (default: config.toml)")
    p.add_argument(
        "--skip-model-files",
        action="store_true",
        help="do not require the model files to exist (the service's pre-start check: `run` waits for them)",
    )
    p.set_defaults(func=_cmd_check_config)

    p = sub.add_parser("devices", help="list the sound-card input devices PortAudio sees (for soundcard sources)")
    p.set_defaults(func=_cmd_devices)

    p = sub.add_parser("run", help="run the agent (default: config.toml, the embedded CWRU replay)")
    p.add_argument("--config", default="config.toml", help="configuration file (default: config.toml)")
    p.add_argument("--loop", action="store_true", help="replay sources start over at the end instead of exiting")
    p.set_defaults(func=_cmd_run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args))
    except (FileNotFoundError, ValueError) as error:
        print(f"edge-agent {args.command}: {error}", file=sys.stderr)
        return EXIT_CONFIG


if __name__ == "__main__":
    sys.exit(main())
