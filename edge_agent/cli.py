"""The ``edge-agent`` command line: the runtime commands (run, check-config, devices) wired here; the
offline ones (train, train-audio, evaluate, export, sweep, report) registered by
``edge_agent.training.commands`` when the training package can be imported."""

from __future__ import annotations

import argparse
import importlib.metadata
import logging
import os
import platform
import sys
import threading
import time
from collections.abc import Callable, Mapping
from typing import TextIO

import edge_agent
from edge_agent.common.errors import first_line

logger = logging.getLogger(__name__)

DESCRIPTION = "Condition monitoring of vibration and sound: run the agent, check its configuration, train models."
VERBOSE_HELP = "debug logging (before or after the command)"
EXIT_CONFIG = 2  # invalid configuration: systemd must not restart (RestartPreventExitStatus= in the unit)


def _cmd_check_config(args: argparse.Namespace) -> int:
    from edge_agent.configload import ConfigError, load_config
    from edge_agent.service.preflight import start_errors

    try:
        config = load_config(args.path, args.instance)
    except ConfigError as error:
        errors = error.errors
    else:  # what `run` would refuse at start (the model files: unless the service waits for them)
        errors = start_errors(config, model_files=not args.skip_model_files)
    if errors:
        print(f"edge-agent check-config: {args.path}: {len(errors)} error(s)", file=sys.stderr)
        print("\n".join(errors), file=sys.stderr)
        return EXIT_CONFIG
    print(f"config OK: {len(config.sources)} sources, {len(config.models)} models")
    return 0


def waits_for_models(asked: bool, environ: Mapping[str, str] = os.environ, interactive: bool | None = None) -> bool:
    """Whether ``run`` waits for its model files: asked, under systemd (a file may be installed later, and a
    crash loop helps nobody), or without a terminal; a person at a terminal gets the error at once instead."""
    if interactive is None:
        interactive = sys.stdin.isatty() and sys.stderr.isatty()
    return asked or "INVOCATION_ID" in environ or "NOTIFY_SOCKET" in environ or not interactive


_ECHO_LOCK = threading.Lock()


def echo_line(line: str, stream: TextIO | None = None) -> None:
    """One console line, whole: ``print`` writes the text and its newline in two calls, so two threads
    echoing at once could put two alerts on one line (seen in the soak benchmark's log)."""
    out = sys.stdout if stream is None else stream
    with _ECHO_LOCK:
        out.write(line + "\n")
        out.flush()


def _cmd_run(args: argparse.Namespace) -> int:
    import dataclasses
    import signal

    from edge_agent.config import AgentConfig
    from edge_agent.configload import ConfigError, load_config, resolve_password
    from edge_agent.service.app import App
    from edge_agent.service.preflight import start_errors
    from edge_agent.service.sdnotify import Notifier
    from edge_agent.sources import SOURCES

    try:
        config = load_config(args.config, args.instance)
        errors = start_errors(config, model_files=not waits_for_models(args.wait_for_models))
        if errors:
            raise ConfigError(errors)
        password = resolve_password(config.mqtt) if config.mqtt.enabled else None
    except ConfigError as error:
        print(f"edge-agent run: {args.config}: {len(error.errors)} error(s)", file=sys.stderr)
        print("\n".join(error.errors), file=sys.stderr)
        if any(line.startswith("models[") for line in error.errors):
            print("edge-agent run: --wait-for-models waits for the model files instead", file=sys.stderr)
        return EXIT_CONFIG

    def looping(config: AgentConfig) -> AgentConfig:
        if not args.loop:
            return config
        loops = (dataclasses.replace(s, loop=True) if SOURCES[s.type].loops else s for s in config.sources)
        return dataclasses.replace(config, sources=tuple(loops))

    config = looping(config)
    if not args.verbose:
        logging.getLogger().setLevel(config.agent.log_level.upper())
    from edge_agent.common.allocator import allocator, preload_problem

    problem = preload_problem()
    if problem is not None:
        logger.warning("%s", problem)
    logger.info("memory allocator: %s", allocator())
    app = App(
        config,
        echo=echo_line,
        password=password,
        notifier=Notifier(),  # systemd (Type=notify): READY=1, STATUS=, WATCHDOG=1, STOPPING=1
        read_config=lambda: looping(load_config(args.config, args.instance)),
    )
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _off_the_main_thread(app.stop_requested.set, "stop"))
    # systemctl reload: ExecReload= kill -HUP
    signal.signal(signal.SIGHUP, _off_the_main_thread(app.request_reload, "reload"))
    started_s = time.monotonic()
    code = app.run(exit_when_finished=not args.loop)
    from edge_agent.service.summary import run_summary

    print(run_summary(app.metrics, time.monotonic() - started_s), flush=True)
    return code


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


def _cmd_status(args: argparse.Namespace) -> int:
    from edge_agent.service.status import run_status

    return run_status(args.config, args.url, args.interval_s, args.instance)


def version_text() -> str:
    """``edge-agent 0.1.0 (Python 3.11.2, torch 2.13.0+cpu)``: torch's version from its metadata, not imported."""
    try:
        torch = importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        torch = "not installed"
    return f"edge-agent {edge_agent.__version__} (Python {platform.python_version()}, torch {torch})"


class _Parser(argparse.ArgumentParser):
    """``-v`` before the command sets ``verbose_before``, after it ``verbose``; parsing leaves one ``verbose``.

    Two names because a subcommand's default would overwrite the value given before it.
    """

    def parse_known_args(
        self, args: list[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        parsed, rest = super().parse_known_args(args, namespace)
        before = vars(parsed).pop("verbose_before", False)
        parsed.verbose = bool(vars(parsed).get("verbose", False) or before)
        return parsed, rest


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="edge-agent", description=DESCRIPTION)
    parser.add_argument("-v", "--verbose", action="store_true", dest="verbose_before", help=VERBOSE_HELP)
    parser.add_argument("--version", action="version", version=version_text(), help="print the version and exit")
    sub = parser.add_subparsers(dest="command", required=True)
    _register_training(parser, sub)

    p = sub.add_parser("check-config", help="validate a config file and what run checks at start; exit 0 or 2")
    p.add_argument("path", nargs="?", default="config.toml", help="config file (default: config.toml)")
    p.add_argument(
        "--skip-model-files",
        action="store_true",
        help="do not require the model files to exist (the service's pre-start check: run waits for them)",
    )
    _instance_option(p)
    p.set_defaults(func=_cmd_check_config)

    p = sub.add_parser("devices", help="list the sound-card input devices PortAudio sees (for soundcard sources)")
    p.set_defaults(func=_cmd_devices)

    p = sub.add_parser("status", help="what the running agent does, per sensor (read from its /metrics)")
    p.add_argument("--config", default="config.toml", help="configuration file naming [metrics] (default: config.toml)")
    p.add_argument("--url", help="the agent's metrics URL instead, e.g. http://127.0.0.1:10041/metrics")
    p.add_argument("--interval-s", type=float, default=1.0, help="seconds between the two scrapes (default: 1.0)")
    _instance_option(p)
    p.set_defaults(func=_cmd_status)

    p = sub.add_parser("run", help="run the agent (default: config.toml, the embedded CWRU replay)")
    p.add_argument("--config", default="config.toml", help="configuration file (default: config.toml)")
    p.add_argument("--loop", action="store_true", help="replay sources start over at the end instead of exiting")
    p.add_argument(
        "--wait-for-models",
        action="store_true",
        help="wait (retrying with backoff) for model files that are missing or not loadable; the default under "
        "systemd or without a terminal, while from a terminal a bad model file is an error at once",
    )
    _instance_option(p)
    p.set_defaults(func=_cmd_run)
    for command in sub.choices.values():  # -v after the subcommand too
        command.add_argument("-v", "--verbose", action="store_true", help=VERBOSE_HELP)
    return parser


def _instance_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--instance",
        type=int,
        metavar="N",
        help="this process is agent instance N (overrides agent.instance): it takes its share of the sensors of "
        "sources with instances > 1, publishes as <agent.id>-N and serves /metrics on metrics.port + N",
    )


def _register_training(
    parser: argparse.ArgumentParser, sub: argparse._SubParsersAction[argparse.ArgumentParser]
) -> None:
    """The offline commands (train, evaluate, export, ...) come from the training package, if it imports."""
    try:
        from edge_agent.training.commands import register
    except ImportError as error:  # a runtime-only install: the agent's own commands still work
        parser.epilog = f"training commands unavailable: {first_line(error)}"
        return
    register(sub)


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
