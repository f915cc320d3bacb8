"""Load generator for ``bench_agent.py``: one process streaming many 12 kHz sensors over MQTT in real time.

    .venv/bin/python benchmarks/agent_publisher.py --port 1883 --sensors 100 --part 0 --parts 2 --format json

Not meant to be run by hand: ``bench_agent.py`` starts one or more of these (``taskset -c 0``),
waits for each to print ``ready``, writes the common start time (epoch seconds) to their stdin and
reads a JSON report from ``--report`` when they exit.

Sensor ``i`` of ``--sensors`` publishes 1024-sample chunks on ``bench/s<i>/vibration``, one every
1024 / 12000 s, each when its last sample would have been measured (chunk ``k`` covers
``[t_i + k P, t_i + (k + 1) P)`` and is due at ``t_i + (k + 1) P``). The sensors' phases ``t_i``
are spread evenly over one period so the load is smooth, as from independent sensors; process
``part`` of ``parts`` takes sensors ``part, part + parts, ...``. ``--chunk-hops K`` makes each chunk
K x 1024 samples, published every K x 1024 / 12000 s (the same samples per second in K times fewer
messages: sensors that send, say, 0.68 s per message instead of 85 ms). The data is the held-out last
20 % of the healthy CWRU record 097, cut into whole chunks and cycled (each sensor starts at
another chunk); the model calls every window of it, the wrap-around ones too, ``Normal``.

Payloads are encoded once: JSON keeps 6 significant digits per sample (about 9.5 kB per chunk)
and only ``seq`` and ``ts`` are formatted per message; ``f32le`` is the raw float32 chunk (4 kB).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path

import numpy as np
import paho.mqtt.client as paho

RATE_HZ = 12_000
CHUNK_SAMPLES = 1024
PERIOD_S = CHUNK_SAMPLES / RATE_HZ
TOPIC = "bench/{sensor}/vibration"
HEALTHY_KEY = "097"  # Normal, the pack's only healthy record
FAULT_KEY = "105"  # IR007
BIN_S = 0.1  # publish counts are kept in bins of this width (epoch seconds)


def held_out_chunks(key: str, hops: int = 1) -> np.ndarray:
    """The last 20 % of a record of the CWRU dev pack (data no shipped model was trained on), as (k, hops x 1024)
    float32."""
    from edge_agent.common.paths import data_root

    with np.load(data_root() / "cwru" / "cwru_12k_de_dev.npz", allow_pickle=False) as pack:
        signal_g = pack[key]
    tail = signal_g[round(0.8 * signal_g.size) :].astype(np.float32)
    chunk_samples = hops * CHUNK_SAMPLES
    count = tail.size // chunk_samples
    return tail[: count * chunk_samples].reshape(count, chunk_samples)


def encode_samples_json(chunk: np.ndarray) -> bytes:
    """``"samples": [...]}``: the fixed tail of a JSON payload (6 significant digits per sample)."""
    return b'"samples": [' + ",".join(f"{v:.6g}" for v in chunk.tolist()).encode() + b"]}"


def json_payload(seq: int, ts: float, samples_tail: bytes) -> bytes:
    head = b'{"seq": %d, "ts": %.6f, "sample_rate_hz": %d, ' % (seq, ts, RATE_HZ)
    return head + samples_tail


class Encoder:
    """Pre-encoded chunks of one record; ``payload(k, seq, ts)`` is chunk ``k`` (cycled) of a stream."""

    def __init__(self, chunks: np.ndarray, fmt: str) -> None:
        if fmt not in ("json", "f32le"):
            raise ValueError(f"format must be json or f32le, got {fmt!r}")
        self.fmt = fmt
        self.count = len(chunks)
        if fmt == "json":
            self._parts = [encode_samples_json(c) for c in chunks]
        else:
            self._parts = [c.astype("<f4").tobytes() for c in chunks]

    def payload(self, k: int, seq: int, ts: float) -> bytes:
        part = self._parts[k % self.count]
        return json_payload(seq, ts, part) if self.fmt == "json" else part


def sensor_name(index: int) -> str:
    return f"s{index:04d}"


def connect(port: int, client_id: str, timeout_s: float = 10.0) -> paho.Client:
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)  # unbounded: the rate check below shows if we fall behind
    connected = []
    client.on_connect = lambda *_args: connected.append(True)
    client.connect("127.0.0.1", port, keepalive=30)
    client.loop_start()
    deadline = time.monotonic() + timeout_s
    while not connected and time.monotonic() < deadline:
        time.sleep(0.01)
    if not connected:
        raise RuntimeError(f"publisher {client_id}: no CONNACK from 127.0.0.1:{port} in {timeout_s} s")
    return client


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def run(args: argparse.Namespace) -> dict[str, object]:
    encoder = Encoder(held_out_chunks(HEALTHY_KEY, args.chunk_hops), args.format)
    period_s = args.chunk_hops * PERIOD_S
    mine = list(range(args.part, args.sensors, args.parts))
    topics = [TOPIC.format(sensor=sensor_name(i)) for i in mine]
    phases = [i / args.sensors * period_s for i in mine]
    client = connect(args.port, f"bench-pub-{args.part}-{args.parts}")
    print("ready", flush=True)
    line = sys.stdin.readline()  # the common start time, epoch seconds
    t0 = float(line)
    end = t0 + args.duration_s
    bins: dict[int, int] = {}
    lateness: list[float] = []
    published = 0
    last_info = None
    round_ = 0
    while True:
        round_start = t0 + (round_ + 1) * period_s
        if round_start > end:
            break
        for j, index in enumerate(mine):
            due = round_start + phases[j]
            now = time.time()
            if due > now:
                time.sleep(due - now)
                now = time.time()
            ts = t0 + phases[j] + round_ * period_s  # epoch time of the chunk's first sample
            payload = encoder.payload(index + round_, round_, ts)
            last_info = client.publish(topics[j], payload, qos=args.qos)
            published += 1
            lateness.append(now - due)
            b = int(now / BIN_S)
            bins[b] = bins.get(b, 0) + 1
        round_ += 1
    if last_info is not None:
        with contextlib.suppress(RuntimeError, ValueError):
            last_info.wait_for_publish(timeout=10)
    time.sleep(0.2)
    client.disconnect()
    client.loop_stop()
    return {
        "part": args.part,
        "sensors": len(mine),
        "chunk_hops": args.chunk_hops,
        "published": published,
        "bins": {str(k): v for k, v in bins.items()},
        "bin_s": BIN_S,
        "lateness_p50_s": percentile(lateness, 0.5),
        "lateness_p99_s": percentile(lateness, 0.99),
        "lateness_max_s": max(lateness) if lateness else float("nan"),
        "late_over_10ms": sum(1 for x in lateness if x > 0.010),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--sensors", type=int, required=True, help="sensors in the whole load (all parts)")
    parser.add_argument("--part", type=int, default=0)
    parser.add_argument("--parts", type=int, default=1)
    parser.add_argument("--format", choices=("json", "f32le"), default="json")
    parser.add_argument("--qos", type=int, choices=(0, 1), default=1)
    parser.add_argument("--duration-s", type=float, required=True)
    parser.add_argument("--chunk-hops", type=int, default=1, help="samples per message in hops of 1024 (default 1)")
    parser.add_argument("--report", type=Path, required=True, help="JSON report written here at the end")
    args = parser.parse_args(argv)
    report = run(args)
    args.report.write_text(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
