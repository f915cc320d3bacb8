"""A fleet over a broker bridge (docs/fleet.md): two agents, each with its own gateway mosquitto bridged to a
central one, and a central subscriber (persistent session, QoS 1) that must get every alert of both.

The agents are real ``edge-agent run`` processes replaying CWRU records (normal, inner-race fault, in a
loop): a fault episode (``new`` ... ``end``) every cycle. Mid-stream the central broker stops (SIGTERM: it
saves the subscriber's session) and comes back on the same port; meanwhile the agents keep publishing to
their gateway broker, whose bridge queue holds the alerts until the link is back. What each gateway
broker got (a subscriber on it) is the ground truth: the central subscriber must get all of it, 0 lost.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as paho
from conftest import Broker, Collector

REPO = Path(__file__).resolve().parents[2]
MODEL = REPO / "models" / "drsn_cw_cwru.pt"
ALERTS = "edge-agent/+/+/alert"
FLEET_DOC = REPO / "docs" / "fleet.md"
GATEWAYS = ("gw-a", "gw-b")
TLS_KEYS = (
    "bridge_cafile",
    "bridge_certfile",
    "bridge_keyfile",
    "cafile",
    "certfile",
    "keyfile",
    "require_certificate",
)
TLS_KEYS += ("use_identity_as_username", "acl_file")  # the TLS identities; TLS itself: test_mqtt_tls.py
OUTAGE_S = 4.0  # after the first alert published during the outage


def agent_config(agent_id: str, local: Broker, state_dir: Path) -> str:
    """A gateway's agent: its own broker, a looping replay that raises one fault episode per cycle."""
    return f"""
[agent]
id = "{agent_id}"
state_dir = "{state_dir}"
heartbeat_s = 0

[mqtt]
enabled = true
host = "{local.host}"
port = {local.port}
reconnect_min_s = 0.1
reconnect_max_s = 0.5

[metrics]
enabled = false

[decision]
hold_off_s = 0.3
cooldown_s = 0.0

[[models]]
name = "bearing"
path = "{MODEL}"

[[sources]]
type = "replay"
name = "replay"
sensor = "motor-1"
path = "${{EDGE_AGENT_DATA}}/cwru/cwru_12k_de_dev.npz"
records = ["097", "105"]
start_fraction = 0.8
speed = 2.0
loop = true
models = ["bearing"]
"""


def alert_keys(messages: list[bytes]) -> list[tuple[str, str, str]]:
    """Each alert event as ``(id, type, window start)`` (an update repeats id and type), in arrival order."""
    keys = []
    for payload in messages:
        doc = json.loads(payload)
        keys.append((doc["id"], doc["type"], doc["window"]["start"]))
    return keys


def alerts_of(collector: Collector, agent_id: str) -> list[tuple[str, str, str]]:
    return alert_keys(collector.payloads(f"edge-agent/{agent_id}/motor-1/alert"))


def first_seen(keys: list[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
    return list(dict.fromkeys(keys))


def test_alerts_of_two_gateways_reach_the_central_subscriber_across_a_bridge_outage(
    broker: Broker,
    bridged_broker: Callable[..., Broker],
    tmp_path: Path,
    until: Callable[..., None],
) -> None:
    central = broker
    bridge_states = tuple(f"$SYS/broker/connection/bridge-{name}/state" for name in GATEWAYS)
    central_sub = Collector(central, (ALERTS, *bridge_states), persistent=True, name="central-subscriber")
    gateways = {name: bridged_broker(name, central) for name in GATEWAYS}
    local_subs = {
        name: Collector(local, (ALERTS,), persistent=True, name=f"local-subscriber-{name}")
        for name, local in gateways.items()
    }
    central_sub.wait_for(lambda c: all(c.last(t) == b"1" for t in bridge_states), 15, "both bridges connected")

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    agents: dict[str, subprocess.Popen[bytes]] = {}
    for name, local in gateways.items():
        config = tmp_path / f"{name}.toml"
        config.write_text(agent_config(name, local, tmp_path / f"state-{name}"))
        with open(tmp_path / f"{name}.log", "wb") as log:
            agents[name] = subprocess.Popen(
                [sys.executable, "-m", "edge_agent", "run", "--config", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=tmp_path,
                env=env,
            )
    try:
        # both agents alert, and their alerts cross the bridge
        central_sub.wait_for(lambda c: all(alerts_of(c, n) for n in GATEWAYS), 40, "an alert of each agent")

        central.stop()  # the bridge link goes down: each gateway broker queues for the bridge
        before = {name: len(alerts_of(sub, name)) for name, sub in local_subs.items()}
        central_had = {name: len(alerts_of(central_sub, name)) for name in GATEWAYS}
        until(
            lambda: all(len(alerts_of(sub, name)) > before[name] for name, sub in local_subs.items()),
            30,
            "alerts published by each agent while the central broker is down",
        )
        time.sleep(OUTAGE_S)
        during = {name: len(alerts_of(sub, name)) - before[name] for name, sub in local_subs.items()}
        assert {name: len(alerts_of(central_sub, name)) for name in GATEWAYS} == central_had
        central.start()  # same port; the bridges reconnect (restart_timeout 1) and deliver their queues
        until(lambda: all(len(alerts_of(sub, name)) > before[name] + during[name] for name, sub in local_subs.items()))
    finally:
        for process in agents.values():
            process.send_signal(signal.SIGTERM)
        for process in agents.values():
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    for name, sub in local_subs.items():
        sent = alerts_of(sub, name)
        central_sub.wait_for(
            lambda c, sent=sent, name=name: set(sent) <= set(alerts_of(c, name)),
            20,
            f"every alert of {name} at the central subscriber",
        )
        received = alerts_of(central_sub, name)
        assert set(received) == set(sent)  # 0 lost, nothing from elsewhere
        assert first_seen(received) == first_seen(sent)  # in the order the gateway broker got them
        assert during[name] >= 1  # the outage held alerts back: the check above could fail
        duplicates = len(received) - len(set(received))
        print(f"{name}: {len(set(sent))} events, {during[name]} during the outage, {duplicates} duplicates")
    central_sub.close()
    for sub in local_subs.values():
        sub.close()


def documented_config(heading: str, broker: Broker, central: Broker | None = None) -> str:
    """The ``conf`` block under ``heading`` in docs/fleet.md, for ``broker`` on loopback: its port and folder,
    ``central`` for the documented address, without the TLS lines (no certificates here)."""
    section = FLEET_DOC.read_text().split(f"## {heading}", 1)[1]
    block = re.search(r"```conf\n(.*?)```", section, re.S)
    assert block, f"no conf block under {heading!r} in {FLEET_DOC}"
    lines = []
    for line in block.group(1).splitlines():
        key = line.split(" ", 1)[0]
        if key in TLS_KEYS:
            continue
        if key == "listener":
            line = f"listener {broker.port} {broker.host}"
        elif key == "persistence_location":
            line = f"persistence_location {broker.workdir}/"
        elif key == "address":
            assert central is not None
            line = f"address {central.host}:{central.port}"
        lines.append(line)
    lines.append("allow_anonymous true")  # the central block's clients authenticate by certificate
    return "\n".join(lines) + "\nlog_dest stderr\n"


def test_the_documented_broker_configs_bridge_an_alert(broker_factory: Callable[..., Broker]) -> None:
    """The ready-to-copy snippets of docs/fleet.md, as written but for ports, folders and certificates: the
    bridge comes up, and what is published while the central broker is down arrives once it is back."""
    central = broker_factory(start=False)
    central.config_path.write_text(documented_config("Central broker", central))
    central.start()
    watch = Collector(central, ("edge-agent/#", "$SYS/broker/connection/bridge-gw-a/state"), persistent=True, name="c")
    gateway = broker_factory(start=False)
    gateway.config_path.write_text(documented_config("Gateway broker", gateway, central))
    gateway.start()
    watch.wait_for(lambda c: c.last("$SYS/broker/connection/bridge-gw-a/state") == b"1", 20, "the bridge up")
    publisher = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="doc-agent")
    publisher.connect(gateway.host, gateway.port)
    publisher.loop_start()
    try:
        topic = "edge-agent/gw-a/motor-1/alert"
        publisher.publish(topic, b"new", qos=1).wait_for_publish(10)
        watch.wait_for(lambda c: c.payloads(topic) == [b"new"], 10, "the first event")
        central.stop()
        publisher.publish(topic, b"end", qos=1).wait_for_publish(10)  # into the bridge's queue
        central.start()  # the bridge is back after restart_timeout (5 s, up to 30 s with jitter)
        watch.wait_for(lambda c: c.payloads(topic)[-1:] == [b"end"], 45, "the event queued by the bridge")
    finally:
        publisher.disconnect()
        publisher.loop_stop()
        watch.close()
