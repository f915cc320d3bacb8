"""Other sensors' windows/s while one sensor learns on the gateway (issue 10, item 5).

    PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_live_learning.py --others 8 --record-s 60 --steps 1500

One agent in this process (``App``, the shipped int8 CWRU model, ``[inference] threads = 1``), fed by
``--others`` replay sources of CWRU healthy data in real time (12 kHz, 1024-sample chunks, looping) and
one more, ``learner``, on the healthy record 097. Three phases, each measured from the agent's own
metrics over its length: ``baseline`` (no learning), ``recording`` (``learner`` records its live windows
for ``--record-s``) and ``training`` (the trainer process runs: ``nice -n 10``, one thread, the training
package's learn code on the recording). For the other sensors: windows processed per second, windows
dropped, mean end-to-end latency (window complete -> decision). Then the trainer's wall time.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from cpuinfo import cpu_description  # noqa: E402

from edge_agent.common.paths import data_root  # noqa: E402
from edge_agent.configload import load_config  # noqa: E402
from edge_agent.service.app import App  # noqa: E402


def config_text(state_dir: Path, others: int, record_s: float, steps: int) -> str:
    pack = data_root() / "cwru" / "cwru_12k_de_dev.npz"
    text = f"""
[agent]
id = "bench-learn"
state_dir = "{state_dir}"
heartbeat_s = 0
[metrics]
enabled = false
[[models]]
name = "bearing"
path = "{REPO / "models" / "drsn_cw_cwru.pt"}"
"""
    for index in range(others):
        text += f"""
[[sources]]
type = "replay"
name = "other-{index}"
sensor = "other-{index}"
path = "{pack}"
records = ["097"]
start_fraction = {0.05 * index % 0.8:.2f}
loop = true
models = ["bearing"]
"""
    text += f"""
[[sources]]
type = "replay"
name = "learner"
sensor = "learner"
path = "{pack}"
records = ["097"]
loop = true
models = ["bearing"]
[sources.learn]
duration_s = {record_s}
steps = {steps}
"""
    return text


class Meter:
    """windows processed, dropped and the latency histogram, read from the agent's registry."""

    def __init__(self, app: App) -> None:
        self.app = app

    def read(self) -> tuple[float, float, float, float]:
        get = self.app.metrics.registry.get_sample_value
        processed = get("edge_agent_windows_processed_total", {"model": "bearing"}) or 0.0
        dropped = get("edge_agent_windows_dropped_total", {"reason": "queue_full"}) or 0.0
        return time.monotonic(), processed, dropped, 0.0

    def latency(self) -> tuple[float, float]:
        get = self.app.metrics.registry.get_sample_value
        return (get("edge_agent_end_to_end_latency_seconds_sum", {}) or 0.0), (
            get("edge_agent_end_to_end_latency_seconds_count", {}) or 0.0
        )


def measure(app: App, name: str, until: threading.Event | None, seconds: float, others: int) -> dict[str, float]:
    """Windows/s of the other sensors over ``seconds`` (or until ``until`` is set)."""
    meter = Meter(app)
    t0, p0, d0, _ = meter.read()
    s0, c0 = meter.latency()
    learner0 = app.metrics.registry.get_sample_value("edge_agent_windows_total", {"sensor": "learner"}) or 0.0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not (until is not None and until.is_set()):
        time.sleep(0.25)
    t1, p1, d1, _ = meter.read()
    s1, c1 = meter.latency()
    learner1 = app.metrics.registry.get_sample_value("edge_agent_windows_total", {"sensor": "learner"}) or 0.0
    elapsed = t1 - t0
    others_windows = (p1 - p0) - (learner1 - learner0)  # every window of every sensor runs "bearing"
    row = {
        "seconds": elapsed,
        "other_windows_per_s": others_windows / elapsed,
        "per_sensor_windows_per_s": others_windows / elapsed / others,
        "dropped": d1 - d0,
        "latency_ms": 1000 * (s1 - s0) / max(c1 - c0, 1),
    }
    print(
        f"{name:10s} {elapsed:6.1f} s  other sensors {row['other_windows_per_s']:7.1f} windows/s "
        f"({row['per_sensor_windows_per_s']:.2f} per sensor), dropped {row['dropped']:.0f}, "
        f"mean latency {row['latency_ms']:.1f} ms",
        flush=True,
    )
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--others", type=int, default=8, help="other sensors, each 12 kHz in real time")
    parser.add_argument("--record-s", type=float, default=60.0, help="seconds of the learner's stream recorded")
    parser.add_argument("--steps", type=int, default=1500, help="optimiser steps of the trainer")
    parser.add_argument("--baseline-s", type=float, default=30.0, help="length of the baseline phase")
    args = parser.parse_args()
    print(cpu_description())
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory(prefix="bench-learn-") as tmp:
        path = Path(tmp) / "config.toml"
        path.write_text(config_text(Path(tmp) / "state", args.others, args.record_s, args.steps))
        app = App(load_config(path))
        runner = threading.Thread(target=app.run, kwargs={"exit_when_finished": False}, daemon=True)
        runner.start()
        try:
            while app.worker is None or not app.learning.server.alive():
                time.sleep(0.1)
            time.sleep(5.0)  # warm-up
            measure(app, "baseline", None, args.baseline_s, args.others)
            print(app.learning.handle({"command": "learn", "sensor": "learner"})["message"], flush=True)
            run = app.learning.manager.runs["learner"]
            recorded = threading.Event()
            watcher = threading.Thread(target=lambda: _wait(lambda: run.state != "recording", recorded), daemon=True)
            watcher.start()
            measure(app, "recording", recorded, args.record_s + 30, args.others)
            trained = threading.Event()
            started = time.monotonic()
            threading.Thread(
                target=lambda: _wait(lambda: run.state in ("idle", "failed"), trained), daemon=True
            ).start()
            measure(app, "training", trained, 3600.0, args.others)
            print(f"trainer: {time.monotonic() - started:.1f} s for {args.record_s:g} s of 12 kHz; {run.message}")
            measure(app, "after", None, min(args.baseline_s, 15.0), args.others)
        finally:
            app.stop_requested.set()
            runner.join(timeout=30.0)
    return 0


def _wait(predicate, event: threading.Event) -> None:  # type: ignore[no-untyped-def]
    while not predicate():
        time.sleep(0.1)
    event.set()


if __name__ == "__main__":
    sys.exit(main())
