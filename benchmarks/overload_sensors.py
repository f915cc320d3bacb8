"""Does the agent spend more per window with more sensors under overload? In-process, N sensors fed as at 9x.

    .venv/bin/python benchmarks/overload_sensors.py                        # 156 and 468 sensors, pinned to core 1
    LD_PRELOAD=libjemalloc.so.2 .venv/bin/python benchmarks/overload_sensors.py --sensors 100,900 --profile
    .venv/bin/python benchmarks/overload_sensors.py --cpu-quota 1,0.2     # the same work with and without a quota

Companion of ``bench_overload.py`` (whose 9x rows cost more CPU per window than its 3x rows) and
``overload_costs.py``. On the agent's own code path without the network, as ``receive = "process"`` runs
it under overload: the receive process sends the sensors in turn, each one's next message after some of
its own were shed, so every message is an 8-hop f32le chunk after a gap (its ``ts`` jumps, its sensor named
in ``Batch.resumed``), delivered in batches of 4 messages through ``MqttSource._deliver_batch``; a report
naming every sensor shed 4 times per second of signal (``_on_report``); ``InferenceWorker._process`` in
batches of 32 whenever 32 windows wait. Every N takes turns round by round on the same number of messages,
so the rows differ only in how many sensors' state the same windows touch. Thread CPU time per window.

``--cpu-quota 1,0.2``: the whole measurement once per value, in turn (1: no quota; else this process in a
cgroup CPU quota of that fraction of its core, ``cpu_quota.py``, as ``bench_overload.py --agent-cpu-quota``
runs the agent): what the quota itself adds to the CPU time of the same work.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from agent_publisher import HEALTHY_KEY, PERIOD_S, Encoder, held_out_chunks, sensor_name
from cpuinfo import cpu_description, pin_to
from overload_costs import broker_less_source
from profile_agent import MODEL, build_app

NO_STOP = threading.Event()
HOPS = 8  # per message, as bench_overload.py --chunk-hops 8
MESSAGES_PER_BATCH = 4
MESSAGES_PER_REPORT = 21  # ~85 messages (600 windows) a second, 4 reports a second
SHED_PERIODS = 5  # messages of each sensor shed between two of its analysed ones


class Feed:
    """One agent (its own App) and its N sensors' clocks."""

    def __init__(self, sensors: int, encoder: Encoder) -> None:
        self.app = build_app("f32le", MODEL)
        self.worker = self.app.worker
        self.source = broker_less_source(self.app, "sensors", receive="process", change_threshold=0.0)
        self.encoder, self.sensors, self.sent = encoder, sensors, 0
        self.names = [sensor_name(i) for i in range(sensors)]
        self.ts = [time.time() - 3600.0] * sensors

    def run(self, messages: int) -> int:
        """Deliver ``messages`` messages (sensors in turn) and analyse their windows; the windows analysed."""
        from edge_agent.sources.mqtt_wire import Batch, Report

        worker, analysed, batch = self.worker, 0, []
        for _ in range(messages):
            i = self.sent % self.sensors
            self.sent += 1
            self.ts[i] += (SHED_PERIODS + 1) * HOPS * PERIOD_S
            payload = self.encoder.payload(i + self.sent, self.sent, self.ts[i])
            batch.append((self.names[i], payload, time.monotonic(), time.time()))
            if len(batch) == MESSAGES_PER_BATCH:
                self.source._deliver_batch(Batch(batch, [], 0, [m[0] for m in batch]))
                batch = []
                while len(worker.queue) >= worker.config.max_batch:
                    analysed += self._analyse()
        while len(worker.queue):
            analysed += self._analyse()
        shed = dict.fromkeys(self.names, 1)
        for _ in range(max(1, messages // MESSAGES_PER_REPORT)):
            self.source._on_report(Report(received=100, shed=shed, connected=True, subscribed=True))
        return analysed

    def _analyse(self) -> int:
        taken = self.worker.queue.take_batch(self.worker.config.max_batch, 0.0, NO_STOP)
        self.worker._process(taken)
        return len(taken)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sensors", default="156,468", help="sensor counts, comma-separated (default 156,468)")
    p.add_argument("--messages", type=int, default=280, help="messages per round and count")
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--cpu", type=int, default=1, help="core to pin to (-1: none)")
    p.add_argument("--profile", action="store_true", help="then cProfile one round per count")
    p.add_argument("--cpu-quota", default="1", help="fractions of the core, comma-separated (1: no quota)")
    p.add_argument("--quota-period-ms", type=float, default=10.0, help="the quota's period (default 10 ms)")
    args = p.parse_args(argv)
    pin_to(args.cpu)
    import torch

    from edge_agent.common.allocator import allocator

    torch.set_num_threads(1)
    print(f"CPU: {cpu_description()}; one thread on core {args.cpu}; allocator {allocator()}")
    for fraction in (float(f) for f in args.cpu_quota.split(",")):
        if fraction >= 1:
            print("no CPU quota")
            measure(args)
            continue
        from cpu_quota import CpuQuota

        with CpuQuota(fraction, period_us=round(1000 * args.quota_period_ms)) as quota:
            quota.add(os.getpid())
            print(f"CPU quota: {quota.describe()}")
            measure(args)
    return 0


def measure(args: argparse.Namespace) -> None:
    encoder = Encoder(held_out_chunks(HEALTHY_KEY, HOPS), "f32le")
    feeds = {n: Feed(n, encoder) for n in (int(s) for s in args.sensors.split(","))}
    for n, feed in feeds.items():  # warm: every sensor's state made, twice round
        feed.run(2 * n)
    costs: dict[int, list[float]] = {n: [] for n in feeds}
    for _ in range(args.rounds):
        for n, feed in feeds.items():
            started = time.thread_time()
            windows = feed.run(args.messages)
            costs[n].append(1e6 * (time.thread_time() - started) / windows)
    first = statistics.median(costs[next(iter(feeds))])
    for n, values in costs.items():
        median = statistics.median(values)
        rounds = ", ".join(f"{v:.0f}" for v in values)
        print(f"{n} sensors: {median:.1f} us per window (rounds: {rounds}); / first {median / first:.2f}")
    if args.profile:
        for n, feed in feeds.items():
            profile: Any = cProfile.Profile()
            profile.enable()
            feed.run(2 * args.messages)
            profile.disable()
            print(f"== {n} sensors")
            pstats.Stats(profile).sort_stats("tottime").print_stats(15)


if __name__ == "__main__":
    sys.exit(main())
