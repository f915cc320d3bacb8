"""Two agent instances (0 and 1 of ``instances = 2``) on one real broker, as two processes.

Every sensor's windows are processed by exactly one instance (read from each instance's own
``/metrics``); one instance is stopped (SIGTERM) and started again, then killed (SIGKILL) and
started again: while it is away the other one processes none of its sensors and loses none of its
own alerts, and after the restart its sensors come back to it, its open episode continuing (no
second ``new``).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.request
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import numpy as np
import paho.mqtt.client as paho
import pytest
from prometheus_client.parser import text_string_to_metric_families

from edge_agent.config.instances import share_of
from tests.integration.conftest import free_port
from tests.integration.test_agent_mqtt import PLANT_SOURCE, Stream, held_out, play

REPO = Path(__file__).resolve().parents[2]
AGENT = "shard-agent"
CANDIDATES = [f"motor-{i}" for i in range(20)]
SENSORS = {n: [s for s in CANDIDATES if share_of(s, 2) == n][:2] for n in (0, 1)}  # two sensors each
ALL = [*SENSORS[0], *SENSORS[1]]


def write_config(path: Path, broker_port: int, metrics_port: int) -> Path:
    path.write_text(
        f"""
[agent]
id = "{AGENT}"
state_dir = "{path.parent / "state"}"
[mqtt]
enabled = true
host = "127.0.0.1"
port = {broker_port}
reconnect_min_s = 0.2
reconnect_max_s = 1.0
[metrics]
enabled = true
port = {metrics_port}
{PLANT_SOURCE}instances = 2
models = ["bearing"]
"""
    )
    return path


class Instances:
    """Agent processes by instance index; kills what is left at the end."""

    def __init__(self, tmp_path: Path, config: Path, metrics_port: int) -> None:
        self.tmp_path, self.config, self.metrics_port = tmp_path, config, metrics_port
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        self.starts: dict[int, int] = defaultdict(int)
        self._logs: list[IO[bytes]] = []

    def start(self, instance: int) -> None:
        self.starts[instance] += 1
        log = (self.tmp_path / f"agent-{instance}-{self.starts[instance]}.log").open("wb")
        self._logs.append(log)
        command = [sys.executable, "-m", "edge_agent", "run", "--config", str(self.config), "--instance", str(instance)]
        self.procs[instance] = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)

    def stop(self, instance: int, signum: signal.Signals) -> int:
        proc = self.procs[instance]
        proc.send_signal(signum)
        return proc.wait(timeout=30)

    def metrics(self, instance: int) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
        url = f"http://127.0.0.1:{self.metrics_port + instance}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            text = response.read().decode()
        found: dict[str, dict[tuple[tuple[str, str], ...], float]] = defaultdict(dict)
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                found[sample.name][tuple(sorted(sample.labels.items()))] = sample.value
        return found

    def processed(self, instance: int) -> dict[str, float]:
        """Windows run through the model, per sensor (the sum of its predictions)."""
        counts: dict[str, float] = defaultdict(float)
        for labels, value in self.metrics(instance)["edge_agent_predictions_total"].items():
            counts[dict(labels)["sensor"]] += value
        return dict(counts)

    def foreign(self, instance: int) -> float:
        return self.metrics(instance)["edge_agent_messages_foreign_total"][(("source", "plant"),)]

    def close(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
        for log in self._logs:
            log.close()


@pytest.fixture
def instances(tmp_path: Path, broker) -> Iterator[Instances]:
    metrics_port = free_port()
    made = Instances(tmp_path, write_config(tmp_path / "agent.toml", broker.port, metrics_port), metrics_port)
    yield made
    made.close()


@pytest.fixture
def publisher(broker) -> Iterator[paho.Client]:
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="instances-publisher")
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    yield client
    client.loop_stop()
    client.disconnect()


def events(watch, instance: int, sensor: str) -> list[tuple[object, object]]:
    """``(type, id)`` of the sensor's fault events on the instance's topic. Health alerts are left out: a sensor
    that gets no data while the test waits for the other instance's restart may open a stream-gap alert."""
    payloads = map(json.loads, watch.payloads(f"edge-agent/{AGENT}-{instance}/{sensor}/alert"))
    return [(e["type"], e["id"]) for e in payloads if e["kind"] == "fault"]


def online(watch, instance: int, count: int) -> None:
    topic = f"edge-agent/{AGENT}-{instance}/status"
    watch.wait_for(
        lambda c: c.payloads(topic).count(b"online") >= count, timeout_s=120, what=f"{topic} online #{count}"
    )


def test_two_instances_share_the_sensors_and_one_restarting_changes_nothing_for_the_other(
    broker, instances: Instances, subscriber, publisher: paho.Client, until
) -> None:
    assert len(SENSORS[0]) == len(SENSORS[1]) == 2
    watch = subscriber(f"edge-agent/{AGENT}-0/#", f"edge-agent/{AGENT}-1/#", persistent=True)
    instances.start(0)
    instances.start(1)
    online(watch, 0, 1)
    online(watch, 1, 1)
    streams = {s: Stream(publisher, s) for s in ALL}
    healthy, fault = held_out("097"), held_out("105")  # normal; inner race 0.007"

    # every sensor processed by exactly one instance: its own
    play([(streams[s], healthy) for s in ALL])
    until(lambda: all(instances.processed(n).get(s, 0) > 0 for n in (0, 1) for s in SENSORS[n]), 30, "windows")
    for n in (0, 1):
        assert set(instances.processed(n)) == set(SENSORS[n])  # no series at all for the other's sensors
        assert sum(instances.metrics(n)["edge_agent_payload_errors_total"].values()) == 0  # foreign is no error
    until(lambda: instances.foreign(0) > 0 and instances.foreign(1) > 0, 10, "foreign messages counted")

    # a fault on one sensor of each instance: one `new` each, on the owner's topics
    mine, theirs = SENSORS[0][0], SENSORS[1][0]  # instance 0 stays up; instance 1 restarts
    other = SENSORS[0][1]  # instance 0's: a fault while instance 1 is down (SIGTERM round), then healthy
    play([(streams[mine], fault), (streams[theirs], fault)])
    watch.wait_for(lambda c: events(c, 1, theirs) and events(c, 0, mine), timeout_s=30, what="both new")
    episode = events(watch, 1, theirs)[0][1]
    assert events(watch, 0, theirs) == [] and events(watch, 1, mine) == []

    for restart, signum in enumerate((signal.SIGTERM, signal.SIGKILL), start=2):
        before = instances.processed(0)
        foreign_before = instances.foreign(0)
        code = instances.stop(1, signum)
        assert code == (0 if signum == signal.SIGTERM else -signal.SIGKILL)
        # while instance 1 is away: instance 0 processes its own sensors, never instance 1's, and alerts
        play([(streams[s], fault if s == other and signum == signal.SIGTERM else healthy) for s in ALL])

        def went_on(before: dict[str, float] = before) -> bool:
            return all(instances.processed(0)[s] > before[s] for s in SENSORS[0])

        until(went_on, 30, "instance 0 goes on")
        assert set(instances.processed(0)) == set(SENSORS[0])
        until(lambda before=foreign_before: instances.foreign(0) > before, 10, "instance 1's messages are foreign")
        if signum == signal.SIGTERM:
            watch.wait_for(lambda c: events(c, 0, other), timeout_s=30, what="instance 0's new while 1 is away")
        instances.start(1)
        online(watch, 1, restart)
        # its sensors come back to it; its open episode continues under the same id (no second new)
        play([(streams[theirs], fault), *((streams[s], healthy) for s in SENSORS[1][1:])])
        until(lambda: all(instances.processed(1).get(s, 0) > 0 for s in SENSORS[1]), 30, "instance 1's sensors back")
        assert set(instances.processed(1)) == set(SENSORS[1])
        seen = events(watch, 1, theirs)
        assert [t for t, _ in seen].count("new") == 1 and {i for _, i in seen} == {episode}, seen

    # instance 0's alert of its own sensor was never disturbed: one new, then its end once healthy
    first = events(watch, 0, mine)[0]
    play([(streams[mine], np.tile(healthy, 2))])
    watch.wait_for(lambda c: ("end", first[1]) in events(c, 0, mine), timeout_s=30, what="instance 0's end")
    assert [t for t, _ in events(watch, 0, mine)] == ["new", "end"]
    assert [t for t, _ in events(watch, 0, other)].count("new") == 1
    assert events(watch, 0, theirs) == [] and events(watch, 1, mine) == []
