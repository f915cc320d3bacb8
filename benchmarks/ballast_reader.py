"""The ``--even-load`` ballast's reader: what the agent's receive process does with a message it sheds.

    .venv/bin/python benchmarks/ballast_reader.py --port 1883 --format f32le --qos 1 --threshold 10 --out reads.json

``bench_overload.py --even-load`` streams ``(largest factor - F) x capacity`` sensors into a second broker
so that the load core publishes as much in every row. At 9x the agent's receive process also reads
every message, runs the change detector on it and holds its sensor's newest two (the others shed):
the 1x row's load core did not do that, and that work slows the whole VM (the agent's core too).
This reader does that work for the ballast: a paho client at the load's QoS on ``bench/+/vibration``,
:class:`edge_agent.sources.change.SourceChange` on every payload (the receive process's own detector),
the newest two payloads kept per sensor. Nothing is forwarded. On SIGTERM it writes the messages read to
``--out`` (JSON) and exits.
"""

from __future__ import annotations

import argparse
import collections
import json
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from edge_agent.sources.change import SourceChange

TOPIC = "bench/+/vibration"
HELD = 2  # the receive process's HELD_MESSAGES (edge_agent.sources.mqtt_gate)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--format", choices=("json", "f32le"), required=True)
    p.add_argument("--qos", type=int, default=1)
    p.add_argument("--threshold", type=float, default=10.0, help="change_threshold (0: no detector)")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    change = SourceChange(args.format, args.threshold) if args.threshold > 0 else None
    held: dict[str, collections.deque[bytes]] = collections.defaultdict(lambda: collections.deque(maxlen=HELD))
    counts = {"messages": 0, "marks": 0}
    subscribed = threading.Event()

    def on_message(_c: paho.Client, _u: Any, msg: paho.MQTTMessage) -> None:
        sensor = msg.topic.split("/")[1]
        body = bytes(msg.payload)
        counts["messages"] += 1
        if change is not None and change.check(sensor, body, time.monotonic(), suspect=False) is not None:
            counts["marks"] += 1
        held[sensor].append(body)

    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"bench-ballast-reader-{args.port}")
    client.on_connect = lambda c, *_: c.subscribe(TOPIC, qos=args.qos)
    client.on_subscribe = lambda *_: subscribed.set()
    client.on_message = on_message
    client.connect("127.0.0.1", args.port, keepalive=30)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    client.loop_start()
    if not subscribed.wait(10):
        raise SystemExit("ballast reader: no SUBACK in 10 s")
    print("subscribed", flush=True)
    stop.wait()
    client.loop_stop()
    args.out.write_text(json.dumps({**counts, "sensors": len(held)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
