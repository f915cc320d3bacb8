"""What one message costs the MQTT receive process (``receive = "process"``), part by part, before vs after.

    .venv/bin/python benchmarks/bench_receiver.py                      # this tree only
    .venv/bin/python benchmarks/bench_receiver.py --before /tmp/main  # a `git archive` copy of main, alternated
    .venv/bin/python benchmarks/bench_receiver.py --before /tmp/main --live-rate 3000   # and through mosquitto

Without the broker (paho's own reading of the socket is not the receive process's code): the
:class:`~edge_agent.sources.mqtt_receiver.Receiver` of an f32le source, its paho callback fed
``paho.MQTTMessage`` objects (1,024 float32 samples each, Gaussian noise, ``--sensors`` sensors round
by round), its batches flushed into a real pipe that a thread drains. CPU time of the calling thread
(``time.thread_time``) per message, for: the whole callback with and without the change detector,
the topic -> sensor lookup, the detector alone (``SourceChange.check``) and the flush (msgpack
encode + ``send_bytes``, per message). Each tree runs in its own subprocess (``PYTHONPATH``), the
trees alternated ``--rounds`` times; the medians are printed with the CPU and the load average.

``--live-rate R``: also the real thing, with and without the detector: a mosquitto on a free port, a
paho publisher (QoS ``--live-qos``, default 1; R messages/s over ``--sensors`` topics) and
``receiver_main`` in a spawned child (pinned to ``--cpu``) as the agent starts it; its CPU per
forwarded message over ``--live-s`` from ``/proc/<pid>/task/*/stat`` (10 ms ticks): in total, paho's
network thread (paho + the callback) and the main thread (batches: encode + pipe). Broker and
publisher run on the same machine (not pinned).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cpuinfo import cpu_description, pin_to

PARTS = ("callback_change", "callback_plain", "topic", "detector", "flush")

PUBLISHER = """
import sys, time, numpy as np, paho.mqtt.client as paho
port, rate, sensors, duration, qos = (t(a) for t, a in zip((int, float, int, float, int), sys.argv[1:]))
body = np.random.default_rng(1).normal(0.0, 0.1, 1024).astype("<f4").tobytes()
c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="bench-pub")
c.max_inflight_messages_set(1000)
c.connect("127.0.0.1", port)
c.loop_start()
start, k = time.monotonic(), 0
while (now := time.monotonic()) - start < duration:
    due = int((now - start) * rate)
    while k < due:
        c.publish(f"plant/s{k % sensors:04d}/vibration", body, qos=qos)
        k += 1
    time.sleep(0.002)
c.loop_stop()
print(k)
"""


def _measure(sensors: int, messages: int) -> dict[str, float]:
    """In this process (the tree on ``sys.path``): us per message of each part (median of 5 passes)."""
    import multiprocessing

    import numpy as np
    import paho.mqtt.client as paho

    from edge_agent.config import MqttSection
    from edge_agent.sources.change import SourceChange
    from edge_agent.sources.mqtt_config import MqttSourceSection
    from edge_agent.sources.mqtt_receiver import Receiver
    from edge_agent.sources.mqtt_topics import TopicSensors
    from edge_agent.sources.mqtt_wire import ReceiverSpec

    rng = np.random.default_rng(0)
    msgs = []
    for k in range(messages):
        msg = paho.MQTTMessage(topic=f"plant/s{k % sensors:04d}/vibration".encode())
        msg.payload = rng.normal(0.0, 0.1, 1024).astype("<f4").tobytes()
        msgs.append(msg)
    out: dict[str, list[float]] = {part: [] for part in PARTS}

    def receiver(threshold: float) -> tuple[Any, Any]:
        section = MqttSourceSection(
            type="mqtt", name="vib", models=("m",), topic="plant/+/vibration", sensor_level=1, format="f32le"
        )
        section = type(section)(**{**section.__dict__, "change_threshold": threshold, "max_sensors": sensors + 1})
        mine, theirs = multiprocessing.Pipe()
        spec = ReceiverSpec(section, MqttSection(enabled=True), None, "bench", 0, ())
        drain = threading.Thread(target=_drain, args=(theirs,), daemon=True)
        drain.start()
        return Receiver(mine, spec), section

    def timed(fn: Any, items: list[Any]) -> float:
        started = time.thread_time()
        for item in items:
            fn(item)
        return 1e6 * (time.thread_time() - started) / len(items)

    for key, threshold in (("callback_change", 10.0), ("callback_plain", 0.0)):
        rec, _section = receiver(threshold)
        on_message = functools.partial(rec._on_message, None, None)
        timed(on_message, msgs[: 30 * sensors])  # warm-up (detector baselines)
        rec._flush()
        for _ in range(5):
            out[key].append(timed(on_message, msgs))
            started = time.thread_time()
            rec._flush()
            if key == "callback_plain":
                out["flush"].append(1e6 * (time.thread_time() - started) / len(msgs))
    topics = TopicSensors(_section, 0)
    for m in msgs[:sensors]:
        topics.admit(topics.sensor_of_message(m))
    change = SourceChange("f32le", 10.0)
    items = [(f"s{k % sensors:04d}", m.payload, float(k // sensors)) for k, m in enumerate(msgs)]
    for sensor, body, at in items:
        change.check(sensor, body, at, suspect=False)
    for _ in range(5):
        out["topic"].append(timed(topics.sensor_of_message, msgs))
        out["detector"].append(timed(lambda i: change.check(i[0], i[1], 1e6 + i[2], suspect=False), items))
    return {part: statistics.median(values) for part, values in out.items()}


def _ticks(pid: int) -> dict[int, int]:
    """CPU clock ticks (user + system) of each thread of ``pid``."""
    ticks = {}
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        ticks[int(task)] = int(fields[11]) + int(fields[12])
    return ticks


def _live(threshold: float, rate: float, sensors: int, duration_s: float, cpu: int, qos: int) -> dict[str, float]:
    """A real mosquitto and publisher, ``receiver_main`` in a spawned child as the agent starts it: CPU per message."""
    import multiprocessing
    import shutil
    import socket
    import tempfile

    from edge_agent.config import MqttSection
    from edge_agent.sources.mqtt_config import MqttSourceSection
    from edge_agent.sources.mqtt_receiver import receiver_main
    from edge_agent.sources.mqtt_wire import TO_AGENT, Batch, ReceiverSpec

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    workdir = Path(tempfile.mkdtemp(prefix="bench-receiver-"))
    (workdir / "m.conf").write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\nmax_queued_messages 100000\n")
    broker = subprocess.Popen([shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-c", str(workdir / "m.conf")])
    time.sleep(0.5)
    section = MqttSourceSection(
        type="mqtt", name="vib", models=("m",), topic="plant/+/vibration", sensor_level=1, format="f32le", qos=qos
    )
    section = type(section)(**{**section.__dict__, "change_threshold": threshold, "max_sensors": sensors + 1})
    spec = ReceiverSpec(section, MqttSection(enabled=True, port=port), None, "bench", 0, ())
    ctx = multiprocessing.get_context("spawn")
    mine, theirs = ctx.Pipe()
    child = ctx.Process(target=receiver_main, args=(theirs, spec), daemon=True)
    child.start()
    if cpu >= 0:
        os.sched_setaffinity(child.pid, {cpu})
    got = [0]

    def count() -> None:
        try:
            while True:
                frame = TO_AGENT(mine.recv_bytes())
                if isinstance(frame, Batch):
                    got[0] += len(frame.messages)
        except (EOFError, OSError):
            pass

    threading.Thread(target=count, daemon=True).start()
    time.sleep(1.5)  # connected and subscribed
    args = [str(port), str(rate), str(sensors), str(duration_s + 2.0), str(qos)]
    publisher = subprocess.Popen([sys.executable, "-c", PUBLISHER, *args], stdout=subprocess.PIPE)
    time.sleep(1.5)  # past the detector's warm-up
    before, got_before = _ticks(child.pid), got[0]
    time.sleep(duration_s)
    after, messages = _ticks(child.pid), got[0] - got_before
    publisher.wait()
    child.terminate()
    child.join()
    broker.terminate()
    broker.wait()
    shutil.rmtree(workdir, ignore_errors=True)
    per = {tid: (after[tid] - before.get(tid, 0)) / os.sysconf("SC_CLK_TCK") * 1e6 / max(1, messages) for tid in after}
    main_us = per.pop(child.pid, 0.0)
    return {"total": main_us + sum(per.values()), "paho_thread": max(per.values()), "main": main_us, "n": messages}


def _drain(conn: Any) -> None:
    try:
        while True:
            conn.recv_bytes()
    except (EOFError, OSError):
        pass


def _run_tree(tree: Path, args: argparse.Namespace) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    cmd = [sys.executable, __file__, "--child", "--sensors", str(args.sensors), "--messages", str(args.messages)]
    cmd += ["--cpu", str(args.cpu), "--live-rate", str(args.live_rate), "--live-s", str(args.live_s)]
    cmd += ["--live-qos", str(args.live_qos)]
    done = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--before", type=Path, help="a copy of the tree to compare with (e.g. git archive of main)")
    p.add_argument("--sensors", type=int, default=300)
    p.add_argument("--messages", type=int, default=6000, help="messages per timed pass")
    p.add_argument("--rounds", type=int, default=3, help="alternations of the trees")
    p.add_argument("--cpu", type=int, default=0, help="core the measuring process is pinned to (-1: none)")
    p.add_argument("--live-rate", type=float, default=0.0, help="also live: messages/s through mosquitto (0: off)")
    p.add_argument("--live-s", type=float, default=8.0, help="seconds measured per live run")
    p.add_argument("--live-qos", type=int, choices=(0, 1), default=1, help="of the publisher and the subscription")
    p.add_argument("--json", type=Path, help="write the results here")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        pin_to(args.cpu)
        result = _measure(args.sensors, args.messages)
        if args.live_rate > 0:
            for key, threshold in (("change", 10.0), ("plain", 0.0)):
                live = _live(threshold, args.live_rate, args.sensors, args.live_s, args.cpu, args.live_qos)
                result[f"live_{key}_total"], result[f"live_{key}_paho_thread"] = live["total"], live["paho_thread"]
                result["live_main_thread"] = live["main"]
                result[f"live_{key}_messages_per_s"] = live["n"] / args.live_s
        print(json.dumps(result))
        return 0
    after = Path(__file__).resolve().parent.parent
    trees = {"before": args.before, "after": after} if args.before else {"after": after}
    print(f"CPU: {cpu_description()}; pinned to core {args.cpu}; load average {os.getloadavg()}; may be shared")
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in trees}
    for _ in range(args.rounds):
        for name, tree in trees.items():
            runs[name].append(_run_tree(tree, args))
    print(f"load average after: {os.getloadavg()}")
    parts = [part for part in runs["after"][0] if not part.endswith("per_s")]
    result = {name: {part: statistics.median(r[part] for r in rs) for part in parts} for name, rs in runs.items()}
    rates = {name: [round(r.get("live_change_messages_per_s", 0)) for r in rs] for name, rs in runs.items()}
    print(f"live messages/s received (change detector on): {rates}")
    print("us per message (thread CPU time, median): " + " | ".join(f"{name}" for name in result))
    for part in parts:
        row = "  ".join(f"{result[name][part]:7.2f}" for name in result)
        ratio = f"  after/before {result['after'][part] / result['before'][part]:.2f}" if args.before else ""
        print(f"  {part:16s} {row}{ratio}")
    if args.json:
        args.json.write_text(json.dumps({"runs": runs, "median": result}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
