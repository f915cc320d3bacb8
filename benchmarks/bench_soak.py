"""Soak: the agent for an hour under realistic load, hostile payloads and broker restarts; are RSS, fds, threads flat?

    nice -n 10 .venv/bin/python benchmarks/bench_soak.py --duration-s 3600 --samples /tmp/soak.jsonl
    .venv/bin/python benchmarks/bench_soak.py --duration-s 120 --burst-payloads 10000   # a quick try

It starts, on loopback (every process is killed at the end, also on errors):

- its own mosquitto on a free port, ``persistence true`` with a snapshot every 30 s, restarted on the
  same port: SIGKILL every ``--broker-restart-s``, down for ``--broker-down-s`` (a snapshot per change,
  as tests/integration/test_chaos.py uses, rewrites the whole store per message: with 4 MiB bodies in
  flight it held the broker at ~30 messages/s. The soak measures the agent's resources; the chaos test
  measures loss);
- the agent, ``.venv/bin/python -m edge_agent run --config <generated toml>``: one JSON mqtt source
  ``bench/+/vibration`` at QoS 1 (no configured rate), the shipped int8 CWRU model, the durable outbox
  in its own state dir, ``/metrics`` on a free port;
- ``agent_publisher.py`` streaming ``--sensors`` sensors of real CWRU data (healthy record 097) in real
  time: 1024-sample chunks at 12 kHz, 11.7 messages per sensor per second;
- a ``probe`` sensor cycling healthy (097, 2.6 s) -> fault (IR007 105, 1.0 s), so alerts are made and
  sent all the time (through the broker restarts), and a persistent QoS 1 subscriber counting them;
- a hostile stream: ``--hostile-rate-hz`` payloads per second of the seeded corpus of
  ``hostile_corpus.py`` (random bytes, truncated JSON, NaN, odd rates and channel counts, deep
  nesting, 4 MiB bodies, unicode and 65,515-byte ids, absurd ts), all of them invalid.

Phases: a warm-up (``--warmup-s``), then samples every 10 s until the last four VmRSS lie within 1 MB
(at most ``--settle-max-s``: without it the agent's own growth in its first minutes, ~40 MB in a
control run without hostile payloads, is blamed on the burst); ``--bursts`` bursts (default 1) of
``--burst-payloads`` (default 100,000) hostile payloads as fast as the broker takes them, each with
VmRSS read before and after it (after the agent has counted every one as a payload error, and 10 s
more; goal: growth <= 50 MB; a second burst tells a one-off high-water mark from a leak); then the soak proper for
``--duration-s``, sampling every ``--sample-s``: VmRSS, open fds (``/proc/<pid>/fd``), threads,
windows processed, payload errors, messages shed, outbox depth (``edge_agent_alerts_queued``) and the
alerts received. Each sample is one JSON line in ``--samples``.

Verdict "flat", per quantity, over the soak samples (the burst excluded), Q1 / Q4 being the first /
last quarter of them: RSS: median(Q4) - median(Q1) <= 10 MB and the least-squares slope <= 10 MB/h;
fds and threads: median(Q4) - median(Q1) <= 1 and max(Q4) <= max(Q1) + 2 (a reconnect may hold a
socket for a moment). Anything else is "growing", reported with its numbers.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho

sys.path.insert(0, str(Path(__file__).resolve().parent))
from agent_publisher import PERIOD_S
from bench_agent import (
    HOST,
    MODEL,
    Probe,
    mosquitto_path,
    proc_status_kb,
    scrape,
    start_publishers,
    stop_process,
    unprivileged_prefix,
)
from bench_agent import free_port as _free_port
from cpuinfo import cpu_description
from hostile_corpus import corpus

REPO = Path(__file__).resolve().parents[1]
AGENT_ID = "soak"
PREFIX = f"edge-agent/{AGENT_ID}"
RSS_FLAT_MB = 10.0
RSS_SLOPE_MB_PER_H = 10.0
BURST_GOAL_MB = 50.0
SETTLED_KB = 1024  # before the burst: the last 4 samples (10 s apart) within 1 MB


class Broker:
    """mosquitto on a fixed port with persistence on; ``kill()`` and ``start()`` restart it."""

    def __init__(self, workdir: Path) -> None:
        self.port = _free_port()
        self.workdir = workdir
        self.log_path = workdir / "mosquitto.log"
        self.config = workdir / "mosquitto.conf"
        self.config.write_text(
            f"listener {self.port} {HOST}\nallow_anonymous true\nmax_queued_messages 1000000\n"
            "log_dest stderr\nlog_type error\nlog_type warning\nlog_type notice\n"
            f"persistence true\npersistence_location {workdir}/\nautosave_interval 30\n"
        )
        self.config.chmod(0o644)
        if unprivileged_prefix():
            shutil.chown(workdir, "nobody", "nogroup")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            argv = [*unprivileged_prefix(), mosquitto_path(), "-c", str(self.config)]
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=self.workdir)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                socket.create_connection((HOST, self.port), timeout=0.2).close()
                return
            time.sleep(0.05)
        raise RuntimeError(f"mosquitto did not listen: {self.log_path.read_text()[-2000:]}")

    def kill(self) -> None:
        stop_process(self.proc, sig=signal.SIGKILL)


class AlertWatch:
    """A persistent QoS 1 subscriber: every alert by (id, type, window.start)."""

    def __init__(self, port: int) -> None:
        self.events: list[tuple[str, str, str]] = []
        self._lock = threading.Lock()
        self._client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="soak-watch", clean_session=False)
        self._client.reconnect_delay_set(0.2, 1.0)  # type: ignore[arg-type]
        self._client.on_connect = lambda c, *_: c.subscribe(f"{PREFIX}/+/alert", 1)
        self._client.on_message = self._on_message
        self._client.connect(HOST, port, keepalive=10)
        self._client.loop_start()

    def _on_message(self, _c: paho.Client, _u: Any, msg: paho.MQTTMessage) -> None:
        with contextlib.suppress(ValueError, KeyError, TypeError):
            doc = json.loads(msg.payload)
            with self._lock:
                self.events.append((doc["id"], doc["type"], doc["window"]["start"]))

    def summary(self) -> dict[str, int]:
        with self._lock:
            events = list(self.events)
        unique = set(events)
        news = {e[0] for e in unique if e[1] == "new"}
        ends = {e[0] for e in unique if e[1] == "end"}
        return {
            "received": len(events),
            "unique": len(unique),
            "duplicates": len(events) - len(unique),
            "new": len(news),
            "end": len(ends),
            "new_without_end": len(news - ends),
            "end_without_new": len(ends - news),
        }

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


class Hostile(threading.Thread):
    """Publishes the seeded hostile corpus at ``rate_hz`` (QoS 1) until stopped; ``sent`` counts them."""

    def __init__(self, port: int, rate_hz: float, seed: int) -> None:
        super().__init__(name="hostile", daemon=True)
        self.rate_hz, self.seed, self.sent = rate_hz, seed, 0
        self.halt = threading.Event()
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="soak-hostile")
        self.client.max_inflight_messages_set(200)
        self.client.connect(HOST, port, keepalive=10)
        self.client.loop_start()

    def burst(self, count: int, big_every: int) -> None:
        """``count`` payloads as fast as paho hands them over (at most 1,000 unacknowledged)."""
        pending: list[paho.MQTTMessageInfo] = []
        for sensor, payload in corpus(self.seed, count, time.time(), big_every=big_every):
            pending.append(self.client.publish(f"bench/{sensor}/vibration", payload, qos=1))
            self.sent += 1
            if len(pending) >= 1_000:
                for info in pending:
                    with contextlib.suppress(RuntimeError, ValueError):
                        info.wait_for_publish(30)
                pending.clear()

    def run(self) -> None:
        seed = self.seed + 1_000_000
        while not self.halt.is_set():
            for sensor, payload in corpus(seed, 10_000, time.time(), big_every=2_000):
                if self.halt.wait(1.0 / self.rate_hz):
                    return
                self.client.publish(f"bench/{sensor}/vibration", payload, qos=1)
                self.sent += 1
            seed += 1

    def stop(self) -> None:
        self.halt.set()
        if self.is_alive():
            self.join(5)
        self.client.disconnect()
        self.client.loop_stop()


def agent_config(path: Path, *, broker_port: int, metrics_port: int, state_dir: Path) -> Path:
    path.write_text(
        f"""# generated by benchmarks/bench_soak.py
[agent]
id = "{AGENT_ID}"
state_dir = "{state_dir}"
heartbeat_s = 0
[mqtt]
enabled = true
host = "{HOST}"
port = {broker_port}
client_id = "soak-agent"
reconnect_min_s = 0.2
reconnect_max_s = 1.0
[metrics]
enabled = true
listen = "{HOST}"
port = {metrics_port}
[inference]
threads = 1
[decision]
hold_off_s = 1.0
cooldown_s = 0.0
[[models]]
name = "bearing"
path = "{MODEL}"
[[sources]]
type = "mqtt"
name = "bench"
topic = "bench/+/vibration"
sensor_level = 1
format = "json"
qos = 1
models = ["bearing"]
"""
    )
    return path


def sample(pid: int, metrics_port: int, watch: AlertWatch, hostile: Hostile, t0: float, phase: str) -> dict[str, Any]:
    status = proc_status_kb(pid)
    threads = 0
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Threads:"):
                threads = int(line.split()[1])
    fds = len(os.listdir(f"/proc/{pid}/fd")) if Path(f"/proc/{pid}/fd").exists() else -1
    row: dict[str, Any] = {"t_s": round(time.time() - t0, 1), "phase": phase, "rss_kb": status.get("VmRSS")}
    row.update({"rss_anon_kb": status.get("RssAnon"), "fds": fds, "threads": threads, "hostile_sent": hostile.sent})
    try:
        s = scrape(metrics_port)
        row.update(
            {
                "windows_processed": s.total("edge_agent_windows_processed_total"),
                "messages_received": s.total("edge_agent_messages_received_total"),
                "payload_errors": s.total("edge_agent_payload_errors_total"),
                "messages_shed": s.total("edge_agent_messages_shed_total"),
                "windows_dropped": s.total("edge_agent_windows_dropped_total"),
                "outbox_depth": s.total("edge_agent_alerts_queued"),
                "alerts_dropped": s.total("edge_agent_alerts_dropped_total"),
            }
        )
    except OSError as exc:
        row["scrape_error"] = str(exc)
    row.update({f"alerts_{k}": v for k, v in watch.summary().items()})
    return row


def slope_per_h(rows: list[dict[str, Any]], key: str) -> float:
    xs = [r["t_s"] / 3600 for r in rows]
    ys = [float(r[key]) for r in rows]
    if len(rows) < 2 or statistics.pvariance(xs) == 0:
        return float("nan")
    return statistics.covariance(xs, ys) / statistics.variance(xs)


def verdict(rows: list[dict[str, Any]]) -> dict[str, Any]:
    q = max(1, len(rows) // 4)
    first, last = rows[:q], rows[-q:]
    out: dict[str, Any] = {}
    rss_delta_mb = (statistics.median(r["rss_kb"] for r in last) - statistics.median(r["rss_kb"] for r in first)) / 1024
    rss_slope = slope_per_h(rows, "rss_kb") / 1024
    out["rss"] = {
        "q1_median_mb": statistics.median(r["rss_kb"] for r in first) / 1024,
        "q4_median_mb": statistics.median(r["rss_kb"] for r in last) / 1024,
        "delta_mb": rss_delta_mb,
        "slope_mb_per_h": rss_slope,
        "flat": rss_delta_mb <= RSS_FLAT_MB and rss_slope <= RSS_SLOPE_MB_PER_H,
    }
    for key in ("fds", "threads"):
        delta = statistics.median(r[key] for r in last) - statistics.median(r[key] for r in first)
        out[key] = {
            "q1_median": statistics.median(r[key] for r in first),
            "q4_median": statistics.median(r[key] for r in last),
            "q1_max": max(r[key] for r in first),
            "q4_max": max(r[key] for r in last),
            "slope_per_h": slope_per_h(rows, key),
            "flat": delta <= 1 and max(r[key] for r in last) <= max(r[key] for r in first) + 2,
        }
    out["verdict"] = "flat" if all(out[k]["flat"] for k in ("rss", "fds", "threads")) else "growing"
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="bench-soak-"))
    workdir.chmod(0o755)
    samples_path = Path(args.samples)
    samples_path.write_text("")
    broker = Broker(workdir)
    broker.start()
    metrics_port = _free_port()
    state_dir = workdir / "state"
    config = agent_config(
        workdir / "soak.toml", broker_port=broker.port, metrics_port=metrics_port, state_dir=state_dir
    )
    python = REPO / ".venv" / "bin" / "python"
    argv = [str(python if python.exists() else sys.executable), "-m", "edge_agent", "run", "--config", str(config)]
    agent_log = open(workdir / "agent.log", "wb")  # noqa: SIM115  (closed in finally)
    agent = subprocess.Popen(argv, stdout=agent_log, stderr=subprocess.STDOUT, cwd=REPO)
    publishers: list[subprocess.Popen[str]] = []
    probe: Probe | None = None
    hostile: Hostile | None = None
    watch = AlertWatch(broker.port)
    result: dict[str, Any] = {"cpu": cpu_description(), "workdir": str(workdir), "args": vars(args)}
    t0 = time.time()
    rows: list[dict[str, Any]] = []

    def record(phase: str) -> dict[str, Any]:
        assert hostile is not None
        row = sample(agent.pid, metrics_port, watch, hostile, t0, phase)
        rows.append(row)
        with samples_path.open("a") as f:
            f.write(json.dumps(row) + "\n")
        print(json.dumps(row), flush=True)
        return row

    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                scrape(metrics_port, timeout_s=2)
                break
            if agent.poll() is not None:
                raise RuntimeError(f"agent exited: {(workdir / 'agent.log').read_text()[-3000:]}")
            time.sleep(0.5)
        total_s = args.warmup_s + args.burst_max_s + args.duration_s + 60
        publishers, _reports = start_publishers(workdir, broker.port, args.sensors, "json", 1, total_s, 1, None)
        probe = Probe(broker.port, "json", 1, client_id="soak-probe")
        start_at = math.ceil(time.time() + 0.5)
        for proc in publishers:
            assert proc.stdin is not None
            proc.stdin.write(f"{start_at}\n")
            proc.stdin.flush()
        probe.start_at(start_at + 0.5 * PERIOD_S / (args.sensors + 1))
        hostile = Hostile(broker.port, args.hostile_rate_hz, args.seed)
        time.sleep(args.warmup_s)
        # the agent's RSS grows by ~40 MB in its first minute or two without any hostile payload (a control
        # run: 336 -> 374 MB): wait until it has settled, or that growth is blamed on the burst
        settle_deadline = time.monotonic() + args.settle_max_s
        while time.monotonic() < settle_deadline:
            recent = [r["rss_kb"] for r in rows[-4:] if r["phase"] == "settle"]
            if len(recent) == 4 and max(recent) - min(recent) <= SETTLED_KB:
                break
            record("settle")
            time.sleep(10.0)
        # ---- bursts: N hostile payloads each, RSS before and after (every hostile payload is a payload error)
        first = record("burst-before")
        bursts: list[dict[str, Any]] = []
        for n in range(args.bursts):
            before = rows[-1]
            hostile.seed = args.seed + 1_000 * (n + 1)
            hostile.burst(args.burst_payloads, args.burst_big_every)
            burst_deadline = time.monotonic() + args.burst_max_s
            while time.monotonic() < burst_deadline:
                errors = scrape(metrics_port).total("edge_agent_payload_errors_total")
                if errors - before["payload_errors"] >= args.burst_payloads:
                    break
                time.sleep(1.0)
            time.sleep(10.0)
            after = record("burst-after")
            bursts.append(
                {
                    "payloads": args.burst_payloads,
                    "rss_before_mb": before["rss_kb"] / 1024,
                    "rss_after_mb": after["rss_kb"] / 1024,
                    "growth_mb": (after["rss_kb"] - before["rss_kb"]) / 1024,
                    "growth_since_first_mb": (after["rss_kb"] - first["rss_kb"]) / 1024,
                    "payload_errors_delta": after["payload_errors"] - before["payload_errors"],
                    "messages_shed_delta": after["messages_shed"] - before["messages_shed"],
                    "goal_mb": BURST_GOAL_MB,
                }
            )
            print(json.dumps({"burst": bursts[-1]}), flush=True)
        result["burst"] = bursts[0] if bursts else None
        result["bursts"] = bursts
        # ---- soak
        hostile.start()
        soak_start = time.monotonic()
        next_restart = soak_start + args.broker_restart_s
        restarts = 0
        soak_rows: list[dict[str, Any]] = []
        while time.monotonic() - soak_start < args.duration_s:
            if agent.poll() is not None:
                raise RuntimeError(f"agent died: {(workdir / 'agent.log').read_text()[-3000:]}")
            if args.broker_restart_s > 0 and time.monotonic() >= next_restart:
                broker.kill()
                time.sleep(args.broker_down_s)
                broker.start()
                restarts += 1
                next_restart += args.broker_restart_s
            soak_rows.append(record("soak"))
            time.sleep(args.sample_s)
        hostile.stop()
        time.sleep(15.0)  # let the outbox drain and the last alerts arrive
        final = record("final")
        result["broker_restarts"] = restarts
        result["soak"] = verdict(soak_rows) if soak_rows else None
        result["final"] = final
        result["alerts"] = watch.summary()
    finally:
        if hostile is not None:
            hostile.stop()
        if probe is not None:
            probe.stop()
        for proc in publishers:
            stop_process(proc, sig=signal.SIGKILL)
        stop_process(agent, sig=signal.SIGTERM)
        agent_log.close()
        watch.close()
        broker.kill()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration-s", type=float, default=3600.0)
    parser.add_argument("--sensors", type=int, default=20)
    parser.add_argument("--sample-s", type=float, default=30.0)
    parser.add_argument("--warmup-s", type=float, default=30.0)
    parser.add_argument("--settle-max-s", type=float, default=300.0, help="longest wait for RSS to settle")
    parser.add_argument("--burst-payloads", type=int, default=100_000)
    parser.add_argument("--bursts", type=int, default=1, help="bursts in a row (is the growth a one-off?)")
    parser.add_argument("--burst-max-s", type=float, default=600.0, help="longest wait for the burst to be counted")
    parser.add_argument("--burst-big-every", type=int, default=5_000, help="a 4 MiB body every this many")
    parser.add_argument("--hostile-rate-hz", type=float, default=20.0)
    parser.add_argument("--broker-restart-s", type=float, default=300.0, help="SIGKILL + restart the broker; 0: never")
    parser.add_argument("--broker-down-s", type=float, default=3.0)
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--samples", default="/tmp/bench-soak-samples.jsonl", help="one JSON line per sample")
    parser.add_argument("--result", default="/tmp/bench-soak-result.json")
    args = parser.parse_args(argv)
    random.seed(args.seed)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # the finally clauses stop what we started
    print(f"CPU: {cpu_description()} (a machine shared with other engineers)", flush=True)
    result = run(args)
    Path(args.result).write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
