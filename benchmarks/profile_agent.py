"""Where the agent's time and memory go: its pipeline in-process on the benchmark's own payloads.

    .venv/bin/python benchmarks/profile_agent.py                  # everything, pinned to core 1
    .venv/bin/python benchmarks/profile_agent.py --only components --format f32le
    .venv/bin/python benchmarks/profile_agent.py --model models/drsn_cw_cwru_float.pt
    .venv/bin/python benchmarks/profile_agent.py --only pipeline --clock thread --rounds 100 --top 0  # shared machine

Companion of ``bench_agent.py`` (which measures the agent as a black box over MQTT). Sections:

- ``components``: median cost of each step on one thread: JSON and f32le payload decoding
  (``parse_payload``, and for JSON its parts and the decoders: ``json.loads``, msgspec, orjson),
  windowing per chunk, the model per window at batch 1/8/16/32, the per-prediction work after
  the model (metrics, decision).
- ``pipeline``: the agent's real code path without the network: ``MqttSource._handle`` on
  ``paho.MQTTMessage`` objects -> parse -> router (windowing, queue) -> ``take_batch`` ->
  ``InferenceWorker._process`` -> ``DataPath.on_prediction``, for ``--sensors`` sensors, first timed
  per stage (wrappers; ``--clock thread``: this thread's CPU time, which other processes on the
  core do not inflate as much as the wall clock), then under ``cProfile`` (top functions by own time).
- ``mqtt``: paho's own cost per received message (subscriber with an empty callback, pinned to
  the agent's core; QoS 1), JSON and f32le payloads, with a real mosquitto on loopback.
- ``startup``: a fresh interpreter timing and measuring RSS after each start-up step
  (interpreter, import torch, import the agent, load the model, warm-up, one batch of 32).

Numbers are per unit and single-threaded, like the agent's inference (``threads = 1``).
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import json
import os
import platform
import pstats
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from agent_publisher import HEALTHY_KEY, PERIOD_S, RATE_HZ, Encoder, held_out_chunks, sensor_name
from bench_agent import MODEL, REPO, Broker, agent_config

SECTIONS = ("components", "pipeline", "mqtt", "startup")


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def median_time(fn: Callable[[], Any], *, repeats: int, inner: int = 1) -> float:
    """Median seconds per call of ``fn`` (``inner`` calls per timed sample)."""
    fn()
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(inner):
            fn()
        samples.append((time.perf_counter() - started) / inner)
    return statistics.median(samples)


def payloads(fmt: str, sensors: int, rounds: int) -> list[tuple[str, bytes]]:
    """(topic, payload) in publishing order: round by round, every sensor once per round."""
    encoder = Encoder(held_out_chunks(HEALTHY_KEY), fmt)
    t0 = time.time()
    out = []
    for r in range(rounds):
        for i in range(sensors):
            ts = t0 + i / sensors * PERIOD_S + r * PERIOD_S
            out.append((f"bench/{sensor_name(i)}/vibration", encoder.payload(i + r, r, ts)))
    return out


def build_app(fmt: str, model: Path, indicators: bool = False) -> Any:
    """An App with the benchmark's configuration, model loaded and warmed, no thread started."""
    from edge_agent.configload import load_config
    from edge_agent.pipeline.inference import InferenceWorker
    from edge_agent.service.app import App

    workdir = Path(tempfile.mkdtemp(prefix="profile-agent-"))
    config_path = agent_config(
        workdir / "agent.toml", agent_id="profile", broker_port=1, metrics_port=1, fmt=fmt, qos=1, indicators=indicators
    )
    config_path.write_text(config_path.read_text().replace(str(MODEL), str(model.resolve())))
    config = load_config(config_path)
    shutil.rmtree(workdir, ignore_errors=True)
    app = App(config)
    app._load_models()
    app.worker = InferenceWorker(app.models, app.config.inference, app.metrics, app.datapath.on_prediction)
    app.worker.warm_up()
    return app


def section_components(args: argparse.Namespace) -> dict[str, float]:
    import msgspec
    import numpy as np
    import torch

    from edge_agent.pipeline.windowing import WindowAssembler
    from edge_agent.sources.payloads import parse_payload
    from edge_agent.types import Prediction, Window

    out: dict[str, float] = {}
    json_payload = payloads("json", 1, 2)[1][1]
    f32_payload = payloads("f32le", 1, 2)[1][1]
    out["json_payload_bytes"] = len(json_payload)
    out["f32le_payload_bytes"] = len(f32_payload)
    now = time.monotonic()

    def parse(p: bytes, fmt: str) -> Callable[[], Any]:
        return lambda: parse_payload(
            p, fmt=fmt, sensor="s", expected_rate_hz=0.0 if fmt == "json" else RATE_HZ, channels=1, received_at=now
        )

    out["parse_json_us"] = 1e6 * median_time(parse(json_payload, "json"), repeats=args.repeats, inner=20)
    out["  json.loads_us"] = 1e6 * median_time(lambda: json.loads(json_payload), repeats=args.repeats, inner=20)
    # the decoders considered for parse_payload (it uses msgspec; orjson is not a dependency)
    decode = msgspec.json.Decoder().decode
    out["  msgspec decode_us"] = 1e6 * median_time(lambda: decode(json_payload), repeats=args.repeats, inner=20)
    with contextlib.suppress(ImportError):
        import orjson

        out["  (orjson.loads)_us"] = 1e6 * median_time(
            lambda: orjson.loads(json_payload), repeats=args.repeats, inner=20
        )
    samples = json.loads(json_payload)["samples"]
    out["  np.asarray(list)_us"] = 1e6 * median_time(lambda: np.asarray(samples), repeats=args.repeats, inner=20)
    out["parse_f32le_us"] = 1e6 * median_time(parse(f32_payload, "f32le"), repeats=args.repeats, inner=50)

    from edge_agent.metrics import AgentMetrics

    metrics = AgentMetrics()
    assembler = WindowAssembler(2048, 1024, RATE_HZ, 1, metrics=metrics)
    chunk = parse(json_payload, "json")()
    state = {"t0": chunk.t0}

    def push() -> None:
        state["t0"] += PERIOD_S
        assembler.push(type(chunk)(chunk.sensor, state["t0"], chunk.sample_rate_hz, chunk.samples, None, now))

    out["windowing_per_chunk_us"] = 1e6 * median_time(push, repeats=args.repeats, inner=50)

    torch.set_num_threads(1)
    from edge_agent.modelfile import load_model

    loaded = load_model(args.model)
    for batch in (1, 8, 16, 32):
        x = torch.randn(batch, 1, loaded.window_samples)
        with torch.inference_mode():
            per_batch = median_time(lambda x=x: loaded.module(x), repeats=max(5, args.repeats // 2))
        out[f"model_batch{batch}_per_window_us"] = 1e6 * per_batch / batch
        out[f"model_batch{batch}_per_batch_ms"] = 1e3 * per_batch

    app = build_app("json", args.model)
    window = Window("s0001", 0.0, 2048 / RATE_HZ, np.zeros((1, 2048), np.float32), now)
    probabilities = {label: (0.99 if label == "Normal" else 0.001) for label in loaded.labels}
    prediction = Prediction("s0001", "bearing", window, probabilities, "Normal", 0.99, now)
    on_prediction = app.datapath.on_prediction
    out["on_prediction_us"] = 1e6 * median_time(lambda: on_prediction(prediction), repeats=args.repeats, inner=50)
    return out


class _TimedModule:
    """The model's module with its calls timed on the profile's clock (the histogram is wall time only)."""

    def __init__(self, module: Any, clock: Callable[[], float]) -> None:
        self.module, self.clock, self.total_s = module, clock, 0.0

    def __call__(self, inputs: Any) -> Any:
        return self._timed(self.module, inputs)

    def forward_with_noise_floor(self, inputs: Any) -> Any:
        return self._timed(self.module.forward_with_noise_floor, inputs)

    def _timed(self, fn: Callable[[Any], Any], inputs: Any) -> Any:
        started = self.clock()
        try:
            return fn(inputs)
        finally:
            self.total_s += self.clock() - started


def section_pipeline(args: argparse.Namespace, fmt: str) -> dict[str, Any]:
    import dataclasses

    import paho.mqtt.client as paho
    import torch

    import edge_agent.sources.mqtt as mqtt_source
    from edge_agent.sources.mqtt import MqttSource

    torch.set_num_threads(1)  # the agent's [inference] threads = 1 (and a thread clock sees one thread)
    clock_s = time.thread_time if args.clock == "thread" else time.perf_counter
    app = build_app(fmt, args.model, args.indicators)
    section = app.config.sources[0]
    source = MqttSource(section, app.config.mqtt, password=None, agent_id="profile", metrics=app.metrics)
    route = app.datapath.router(section, app.worker.submit)
    worker = app.worker
    models = {name: _TimedModule(loaded.module, clock_s) for name, loaded in worker.models.items()}
    worker.models = {name: dataclasses.replace(m, module=models[name]) for name, m in worker.models.items()}
    messages = []
    for topic, payload in payloads(fmt, args.sensors, args.rounds):
        msg = paho.MQTTMessage(topic=topic.encode())
        msg.payload = payload
        messages.append(msg)
    totals = {"handle": 0.0, "parse": 0.0, "route": 0.0, "take_batch": 0.0, "process": 0.0, "on_prediction": 0.0}
    totals["indicators"] = 0.0

    def timed(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*a: Any, **k: Any) -> Any:
            started = clock_s()
            try:
                return fn(*a, **k)
            finally:
                totals[name] += clock_s() - started

        return wrapper

    for stage in app.datapath.indicators.values():  # part of the router's time, on the source's thread
        stage._compute = timed("indicators", stage._compute)  # type: ignore[method-assign]
    original_parse = mqtt_source.parse_payload
    clock = _ReplayClock()
    send_times = _send_times(args.sensors, args.rounds)
    stop = threading.Event()

    def drain(final: bool) -> None:
        while len(worker.queue) >= worker.config.max_batch or (final and len(worker.queue)):
            batch = take(worker.config.max_batch, 0.0, stop)
            process(batch)

    take = timed("take_batch", worker.queue.take_batch)
    process = timed("process", worker._process)
    run_once = timed("handle", source._handle)

    def run_all() -> None:
        for msg, sent in zip(messages, send_times, strict=True):
            clock.now = sent
            run_once(msg)
            drain(final=False)
        drain(final=True)

    mqtt_source.parse_payload = timed("parse", original_parse)
    mqtt_source.time = clock  # binary chunks are stamped on arrival: arrive on the real-time schedule
    worker.on_prediction = timed("on_prediction", app.datapath.on_prediction)
    source._emit = timed("route", route)
    try:
        started = clock_s()
        run_all()
        wall = clock_s() - started
    finally:
        mqtt_source.parse_payload = original_parse
        mqtt_source.time = time
    model_s = sum(m.total_s for m in models.values())
    windows = int(
        sum(s.value for m in app.metrics.windows_processed.collect() for s in m.samples if s.name.endswith("_total"))
    )
    n = len(messages)
    stages = {
        "messages": n,
        "windows": windows,
        f"{args.clock}_s": wall,
        "per_message_us": 1e6 * wall / n,
        "source handle (topic, counters) us/msg": 1e6 * (totals["handle"] - totals["parse"] - totals["route"]) / n,
        "parse_payload us/msg": 1e6 * totals["parse"] / n,
        "router (windowing, queue put) us/msg": 1e6 * totals["route"] / n,
        "  of which indicators (batched per sensor) us/window": 1e6 * totals["indicators"] / windows,
        "take_batch us/window": 1e6 * totals["take_batch"] / windows,
        "model (TorchScript call) us/window": 1e6 * model_s / windows,
        "batch prep+softmax+predictions us/window": 1e6
        * (totals["process"] - model_s - totals["on_prediction"])
        / windows,
        "DataPath.on_prediction (metrics, decision) us/window": 1e6 * totals["on_prediction"] / windows,
    }
    if args.top == 0:
        return stages
    # the same under cProfile (slower; for the function-level split)
    app2 = build_app(fmt, args.model, args.indicators)
    source2 = MqttSource(section, app2.config.mqtt, password=None, agent_id="profile", metrics=app2.metrics)
    source2._emit = app2.datapath.router(section, app2.worker.submit)
    worker2 = app2.worker

    def run_profiled() -> None:
        for msg, sent in zip(messages, send_times, strict=True):
            clock.now = sent
            source2._handle(msg)
            while len(worker2.queue) >= worker2.config.max_batch:
                worker2._process(worker2.queue.take_batch(worker2.config.max_batch, 0.0, stop))
        while len(worker2.queue):
            worker2._process(worker2.queue.take_batch(worker2.config.max_batch, 0.0, stop))

    profiler = cProfile.Profile()
    mqtt_source.time = clock
    try:
        profiler.runcall(run_profiled)
    finally:
        mqtt_source.time = time
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(args.top)
    stages["cprofile_top"] = _trim_pstats(text.getvalue())
    return stages


class _ReplayClock:
    """Stands in for the ``time`` module in the source: ``time()`` is the message's scheduled arrival."""

    def __init__(self) -> None:
        self.now = time.time()

    def time(self) -> float:
        return self.now

    @staticmethod
    def monotonic() -> float:
        return time.monotonic()


def _send_times(sensors: int, rounds: int) -> list[float]:
    """When each message of :func:`payloads` would arrive in real time (its last sample measured)."""
    t0 = time.time()
    return [t0 + i / sensors * PERIOD_S + (r + 1) * PERIOD_S for r in range(rounds) for i in range(sensors)]


def _trim_pstats(text: str) -> str:
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip().startswith("ncalls")), 0)
    keep = [line.replace(str(REPO) + "/", "") for line in lines[start:] if line.strip()]
    keep = [line.replace(sys.prefix + "/lib/python3.11/site-packages/", "") for line in keep]
    return "\n".join(keep)


SUBSCRIBER = r"""
import os, sys, time, threading
import paho.mqtt.client as paho
port, expected = int(sys.argv[1]), int(sys.argv[2])
count = 0
done = threading.Event()
def on_message(c, u, m):
    global count
    count += 1
    if count == 1:
        global t_first, cpu_first
        t_first, cpu_first = time.perf_counter(), time.process_time()
    if count == expected:
        done.set()
c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="profile-sub")
c.on_connect = lambda c, *a: c.subscribe("bench/+/vibration", qos=1)
c.on_subscribe = lambda *a: print("ready", flush=True)
c.on_message = on_message
c.connect("127.0.0.1", port)
c.loop_start()
done.wait(120)
wall, cpu = time.perf_counter() - t_first, time.process_time() - cpu_first
print(f"{count} {wall} {cpu}", flush=True)
c.disconnect(); c.loop_stop()
"""


def section_mqtt(args: argparse.Namespace) -> dict[str, float]:
    """CPU seconds per message of a paho subscriber (QoS 1) that does nothing with the messages."""
    out: dict[str, float] = {}
    affinity = os.sched_getaffinity(0)
    if args.load_cpu is not None:
        os.sched_setaffinity(0, {args.load_cpu})  # publish from the broker's core, not the subscriber's
    try:
        for fmt in ("json", "f32le"):
            out.update(_mqtt_receive_cost(args, fmt))
    finally:
        os.sched_setaffinity(0, affinity)
    return out


def _mqtt_receive_cost(args: argparse.Namespace, fmt: str) -> dict[str, float]:
    import paho.mqtt.client as paho

    workdir = Path(tempfile.mkdtemp(prefix="profile-mqtt-"))
    workdir.chmod(0o755)
    broker = Broker(workdir, args.load_cpu)
    sub: subprocess.Popen[str] | None = None
    pub: paho.Client | None = None
    try:
        n = args.mqtt_messages
        argv = [sys.executable, "-c", SUBSCRIBER, str(broker.port), str(n)]
        if args.agent_cpu is not None:
            argv = ["taskset", "-c", str(args.agent_cpu), *argv]
        sub = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
        assert sub.stdout is not None
        if sub.stdout.readline().strip() != "ready":
            raise RuntimeError("subscriber not ready")
        pub = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="profile-pub")
        pub.max_inflight_messages_set(1000)
        pub.max_queued_messages_set(0)
        pub.connect("127.0.0.1", broker.port)
        pub.loop_start()
        info = None
        for topic, payload in payloads(fmt, 200, n // 200 + 1)[:n]:
            info = pub.publish(topic, payload, qos=1)
        if info is not None:
            info.wait_for_publish(timeout=60)
        count, wall, cpu = sub.stdout.readline().split()
        return {
            f"paho_receive_{fmt}_cpu_us_per_msg": 1e6 * float(cpu) / int(count),
            f"paho_receive_{fmt}_msgs_per_s": int(count) / float(wall),
            f"paho_receive_{fmt}_cpu_share": float(cpu) / float(wall),
        }
    finally:
        if pub is not None:
            pub.disconnect()
            pub.loop_stop()
        if sub is not None and sub.poll() is None:
            sub.kill()
            sub.wait(timeout=10)
        broker.stop()
        shutil.rmtree(workdir, ignore_errors=True)


STARTUP = r"""
import os, sys, time
t_spawn = float(sys.argv[1])
def rss():
    found = {}
    for line in open("/proc/self/status"):
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "RssAnon", "RssFile"):
            found[key] = int(rest.split()[0]) / 1024
    return [found["VmRSS"], found["RssAnon"], found["RssFile"]]
steps = [("interpreter up", time.time() - t_spawn, rss())]
t = time.time(); import torch; steps.append(("import torch", time.time() - t, rss()))
t = time.time(); import edge_agent.service.app, edge_agent.sources.mqtt, edge_agent.sinks.mqtt_alerts, prometheus_client
steps.append(("import edge_agent (app, mqtt, prometheus)", time.time() - t, rss()))
from edge_agent.modelfile import load_model
t = time.time(); m = load_model(sys.argv[2]); steps.append(("load_model (jit.load)", time.time() - t, rss()))
torch.set_num_threads(1)
t = time.time()
with torch.inference_mode():
    m.module(torch.zeros(1, m.channels, m.window_samples))
steps.append(("warm-up (batch 1)", time.time() - t, rss()))
t = time.time()
with torch.inference_mode():
    m.module(torch.zeros(32, m.channels, m.window_samples))
steps.append(("first batch of 32", time.time() - t, rss()))
t = time.time()
with torch.inference_mode():
    for _ in range(20):
        m.module(torch.randn(32, m.channels, m.window_samples))
steps.append(("20 more batches of 32", time.time() - t, rss()))
import json; print(json.dumps(steps))
"""


def section_startup(args: argparse.Namespace) -> list[tuple[Any, ...]]:
    python = REPO / ".venv" / "bin" / "python"
    argv = [str(python if python.exists() else sys.executable), "-c", STARTUP, "", str(args.model)]
    if args.agent_cpu is not None:
        argv = ["taskset", "-c", str(args.agent_cpu), *argv]
    runs = []
    for _ in range(args.startup_runs):
        argv[-2] = repr(time.time())
        done = subprocess.run(argv, capture_output=True, text=True, cwd=REPO, timeout=120, check=True)
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    # median of each step over the runs
    return [
        (
            name,
            statistics.median(r[i][1] for r in runs),
            *(statistics.median(r[i][2][j] for r in runs) for j in range(3)),
        )
        for i, (name, _s, _m) in enumerate(runs[0])
    ]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", choices=SECTIONS, action="append", help="run only these sections (repeatable)")
    p.add_argument("--format", choices=("json", "f32le", "both"), default="both", help="pipeline section")
    p.add_argument("--model", type=Path, default=MODEL)
    p.add_argument("--sensors", type=int, default=100, help="pipeline: sensors per round")
    p.add_argument("--indicators", action="store_true", help="pipeline: [sources.indicators] on every sensor")
    p.add_argument("--rounds", type=int, default=20, help="pipeline: chunks per sensor")
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--top", type=int, default=25, help="cProfile: functions shown (0: no cProfile run)")
    p.add_argument(
        "--clock",
        choices=("wall", "thread"),
        default="wall",
        help="pipeline: time stages by wall clock, or by this thread's CPU time (a shared machine)",
    )
    p.add_argument("--mqtt-messages", type=int, default=6000)
    p.add_argument("--startup-runs", type=int, default=3)
    p.add_argument("--agent-cpu", type=int, default=1, help="core for this process and the measured subprocesses")
    p.add_argument("--load-cpu", type=int, default=0, help="core for the broker (mqtt section)")
    p.add_argument("--json", type=Path, help="write the results as JSON here")
    args = p.parse_args(argv)
    if (os.cpu_count() or 1) < 2:
        args.agent_cpu = args.load_cpu = None
    if args.agent_cpu is not None:
        os.sched_setaffinity(0, {args.agent_cpu})
    sections = args.only or list(SECTIONS)
    results: dict[str, Any] = {}
    with contextlib.redirect_stderr(io.StringIO()):  # torch's deprecation warnings
        import torch  # noqa: F401
    if "components" in sections:
        results["components"] = section_components(args)
        print("## components (median per unit, one thread)")
        for k, v in results["components"].items():
            print(f"{k:40s} {v:12.1f}")
    if "pipeline" in sections:
        for fmt in ("json", "f32le") if args.format == "both" else (args.format,):
            stages = section_pipeline(args, fmt)
            results[f"pipeline_{fmt}"] = stages
            on = ", indicators on" if args.indicators else ""
            print(f"\n## pipeline, {fmt}: {args.sensors} sensors x {args.rounds} chunks{on}; CPU: {cpu_model()}")
            for k, v in stages.items():
                if k != "cprofile_top":
                    print(f"{k:50s} {v:12.1f}")
            print(stages.get("cprofile_top", ""))
    if "mqtt" in sections:
        results["mqtt"] = section_mqtt(args)
        print("\n## paho subscriber, QoS 1, empty callback")
        for k, v in results["mqtt"].items():
            print(f"{k:40s} {v:12.2f}")
    if "startup" in sections:
        results["startup"] = section_startup(args)
        print(f"\n## start-up steps (median of {args.startup_runs} fresh interpreters): seconds, RSS after")
        for name, seconds, rss, anon, files in results["startup"]:
            print(f"{name:45s} {seconds:8.3f} s  RSS {rss:6.1f} MB = anon {anon:6.1f} + files {files:6.1f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
