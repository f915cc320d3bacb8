"""What one message costs the agent when it is analysed and when it is shed (companion of bench_overload.py).

    .venv/bin/python benchmarks/overload_costs.py                 # f32le, pinned to core 1
    .venv/bin/python benchmarks/overload_costs.py --format json
    .venv/bin/python benchmarks/overload_costs.py --change-threshold 10   # the change detector in paho's thread

In one process, on the agent's own code path without the network (``MqttSource._on_message`` on
``paho.MQTTMessage`` objects, the router with the inference queue's ``over_share`` as its shedding
rule, as ``App`` wires it; ``profile_agent.build_app`` builds the agent): the median cost of

- a message that is analysed: receive handling, parse, windowing, queue put; plus the model and the
  per-prediction work per window (``InferenceWorker._process`` of batches of ``max_batch``);
- a message that is shed: the queue full and the sensor holding its share, dropped before parsing;
- with ``--change-threshold X`` (f32le): both with the ingress change detector in paho's thread
  (``receive = "thread"``), which looks at every message before the shed decision; and the detector
  alone per message (``SourceChange.check``: what the receive process pays with ``receive = "process"``)
  for f32le and JSON payloads.

With paho's own cost per received message (``--paho-us``, from ``profile_agent.py --only mqtt``:
33 us on the AVX-512 EPYC of 2026-12-01, 110 us on the AVX2 one of 2026-11-22) it bounds what
shedding can keep: at ``L`` times the capacity ``C`` windows/s the core pays ``P`` analysed
messages and ``L C - P`` shed ones (paho + shed each), so at most
``P = (1 - L C (paho + shed)) / (analysed - paho - shed)`` windows/s are processed.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cpuinfo import cpu_description, pin_to
from profile_agent import MODEL, build_app, payloads

NO_STOP = threading.Event()


def broker_less_source(app: Any, agent_id: str, **changes: Any) -> Any:
    """The app's first source as ``App`` wires it (router with the inference queue's shedding rule and suspects),
    its section with ``changes``, and no broker: feed it ``_on_message`` or ``_deliver_batch`` directly."""
    from edge_agent.sources.mqtt import MqttSource

    worker = app.worker
    section = dataclasses.replace(app.config.sources[0], **changes)
    router = app.datapath.router(section, worker.submit, shed=worker.queue.over_share)
    router.use_suspects(worker.queue)
    source = MqttSource(section, app.config.mqtt, password=None, agent_id=agent_id, metrics=app.metrics, streams=router)
    source._emit = router  # what start() sets, without a broker
    return source


def measure(fmt: str, sensors: int, rounds: int, repeats: int, change_threshold: float = 0.0) -> dict[str, float]:
    import paho.mqtt.client as paho

    app = build_app(fmt, MODEL)
    worker = app.worker
    source = broker_less_source(app, "costs", change_threshold=change_threshold)
    messages = []
    for topic, payload in payloads(fmt, sensors, rounds):
        msg = paho.MQTTMessage(topic=topic.encode())
        msg.payload = payload
        messages.append(msg)
    capacity = worker.config.queue_windows

    accepted, shed, per_window = [], [], []
    for _ in range(repeats):
        # analysed: the queue never full (emptied by the worker's own batches, timed apart)
        started = time.perf_counter()
        for msg in messages:
            source._on_message(None, None, msg)
        accepted.append((time.perf_counter() - started) / len(messages))
        windows, model_started = len(worker.queue), time.perf_counter()
        while len(worker.queue):
            worker._process(worker.queue.take_batch(worker.config.max_batch, 0.0, NO_STOP))
        per_window.append((time.perf_counter() - model_started) / max(1, windows))
        # shed: fill the queue (every sensor over its share), then the same messages again
        while len(worker.queue) < capacity:
            for msg in messages[:sensors]:
                source._on_message(None, None, msg)
        before = _shed_total(app.metrics)
        started = time.perf_counter()
        for msg in messages:
            source._on_message(None, None, msg)
        elapsed = time.perf_counter() - started
        count = _shed_total(app.metrics) - before
        shed.append(elapsed / len(messages))
        if count < 0.9 * len(messages):
            raise RuntimeError(f"only {count:.0f} of {len(messages)} messages were shed")
        while len(worker.queue):
            worker.queue.take_batch(capacity, 0.0, NO_STOP)
    return {
        "analysed_us_per_msg": 1e6 * statistics.median(accepted),
        "inference_us_per_window": 1e6 * statistics.median(per_window),
        "shed_us_per_msg": 1e6 * statistics.median(shed),
    }


def detector_cost(fmt: str, sensors: int, rounds: int, repeats: int) -> float:
    """Median us per message of the change detector alone on this format's payloads (warmed up)."""
    from edge_agent.sources.change import WARMUP_MESSAGES, SourceChange

    change = SourceChange(fmt, 10.0)
    items = [(topic.split("/")[1], payload) for topic, payload in payloads(fmt, sensors, rounds)]
    for k in range(WARMUP_MESSAGES):
        for sensor, payload in items[:sensors]:
            change.check(sensor, payload, float(k), suspect=False)
    costs = []
    for _ in range(repeats):
        started = time.perf_counter()
        for sensor, payload in items:
            change.check(sensor, payload, 0.0, suspect=False)
        costs.append((time.perf_counter() - started) / len(items))
    return 1e6 * statistics.median(costs)


def _shed_total(metrics: object) -> float:
    registry = metrics.registry  # type: ignore[attr-defined]
    return sum(s.value for f in registry.collect() for s in f.samples if s.name == "edge_agent_messages_shed_total")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--format", choices=("json", "f32le"), default="f32le")
    p.add_argument("--sensors", type=int, default=100)
    p.add_argument("--rounds", type=int, default=6, help="chunks per sensor per repeat")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--paho-us", type=float, default=33.0, help="paho's cost per message (profile_agent --only mqtt)")
    p.add_argument("--agent-cpu", type=int, default=1, help="core this process is pinned to (-1: none)")
    p.add_argument("--change-threshold", type=float, default=0.0, help="the change detector in paho's thread")
    args = p.parse_args(argv)
    pin_to(args.agent_cpu)
    import torch

    torch.set_num_threads(1)
    print(f"CPU: {cpu_description()}; one thread on core {args.agent_cpu}; the machine may be shared")
    if args.change_threshold > 0:
        for fmt in ("f32le", "json"):
            us = detector_cost(fmt, args.sensors, args.rounds, args.repeats)
            print(f"change detector alone ({fmt}): {us:.1f} us per message")
        off = measure(args.format, args.sensors, args.rounds, args.repeats)
        print(
            f"without the detector: analysed {off['analysed_us_per_msg']:.1f} us, shed {off['shed_us_per_msg']:.1f} us"
        )
    r = measure(args.format, args.sensors, args.rounds, args.repeats, args.change_threshold)
    analysed_s = (r["analysed_us_per_msg"] + r["inference_us_per_window"] + args.paho_us) / 1e6
    print(f"format {args.format}: per message analysed {r['analysed_us_per_msg']:.0f} us + per window inference")
    shed_us, paho_us = r["shed_us_per_msg"], args.paho_us
    print(f"  {r['inference_us_per_window']:.0f} us; per message shed {shed_us:.1f} us; paho {paho_us:.0f} us")
    capacity = 1.0 / analysed_s
    print(f"  capacity of one core: {capacity:.0f} windows/s")
    for load in (1, 3, 9):
        offered = load * capacity
        # the core: processed P windows cost P * analysed; the other offered - P messages cost paho + shed
        shed_s = (args.paho_us + r["shed_us_per_msg"]) / 1e6
        processed = min(offered, (1.0 - offered * shed_s) / (analysed_s - shed_s))
        processed = max(0.0, processed)
        print(f"  at {load}x: at most {processed:.0f} windows/s = {processed / capacity:.2f} of capacity")
    return 0


if __name__ == "__main__":
    sys.exit(main())
