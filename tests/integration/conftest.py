"""A real mosquitto per test on a free loopback port, and a collecting MQTT subscriber.

The broker can be stopped and started again on the same port (broker restart tests). It keeps
persistent sessions and retained messages across such restarts (``persistence true``), as a
production broker would. As root it runs as ``nobody`` through ``setpriv`` when that works.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest

from edge_agent.config import MqttSection
from edge_agent.modelmeta import ModelMeta
from edge_agent.types import Chunk

HOST = "127.0.0.1"


@cache
def _mosquitto() -> str:
    found = shutil.which(
        "mosquitto", path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin"])
    )
    if found is None:
        pytest.fail("mosquitto is not installed: run `make test` (it installs mosquitto and mosquitto-clients)")
    return found


@cache
def _unprivileged_prefix() -> tuple[str, ...]:
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        return ()
    prefix = ("setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups")
    probe = subprocess.run([*prefix, "true"], capture_output=True, timeout=10, check=False)
    return prefix if probe.returncode == 0 else ()


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


class Broker:
    """One mosquitto process; ``stop()``/``start()`` restart it on the same port."""

    host = HOST

    def __init__(self, workdir: Path, *, persistence: bool = True, extra_config: str = "") -> None:
        """``extra_config``: more mosquitto.conf lines, e.g. a bridge (see :func:`bridge_config`)."""
        self.port = free_port()
        self.workdir = workdir
        self.log_path = workdir / "mosquitto.log"
        self.config_path = workdir / "mosquitto.conf"
        self.config_path.write_text(
            f"listener {self.port} {HOST}\n"
            "allow_anonymous true\n"
            "log_dest stderr\n"
            "log_type error\nlog_type warning\nlog_type notice\nlog_type information\n"
            "max_queued_messages 100000\n"
            f"persistence {str(persistence).lower()}\n"
            f"persistence_location {workdir}/\n" + extra_config
        )
        self.config_path.chmod(0o644)
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout_s: float = 10.0) -> None:
        assert not self.running, "broker already running"
        with open(self.log_path, "ab") as log:  # a file, never a pipe nobody reads (the broker would block)
            self._proc = subprocess.Popen(
                [*_unprivileged_prefix(), _mosquitto(), "-c", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                cwd=self.workdir,
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                pytest.fail(f"mosquitto exited with {self._proc.returncode}:\n{self.log_tail()}")
            try:
                socket.create_connection((HOST, self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.02)
        self.stop(kill=True)
        pytest.fail(f"mosquitto did not accept connections on {HOST}:{self.port} in {timeout_s} s:\n{self.log_tail()}")

    def pause(self) -> None:
        """SIGSTOP: connections stay open but nothing is read or acknowledged (messages pile up in flight)."""
        assert self._proc is not None
        self._proc.send_signal(signal.SIGSTOP)

    def stop(self, *, kill: bool = False, timeout_s: float = 10.0) -> None:
        """SIGTERM (the broker saves its state) or SIGKILL; waits until the process is gone."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            self._proc.send_signal(signal.SIGCONT)  # in case it was paused
            try:
                self._proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=timeout_s)
        self._proc = None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def _broker_workdir() -> Path:
    workdir = Path(tempfile.mkdtemp(prefix="mosquitto-"))
    workdir.chmod(0o755)
    if _unprivileged_prefix():
        shutil.chown(workdir, "nobody", "nogroup")  # the broker writes its persistence file here
    elif os.geteuid() == 0:
        with contextlib.suppress(LookupError):  # as root mosquitto itself switches to user "mosquitto"
            shutil.chown(workdir, "mosquitto")
    return workdir


@pytest.fixture
def broker() -> Iterator[Broker]:
    workdir = _broker_workdir()
    b = Broker(workdir)
    b.start()
    try:
        yield b
    finally:
        b.stop(kill=True)
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def broker_factory() -> Iterator[Callable[..., Broker]]:
    """``broker_factory(persistence=True, extra_config="", start=True)``: another :class:`Broker` (started
    unless ``start`` is false: a test may write its own ``config_path`` first)."""
    made: list[Broker] = []

    def make(*, persistence: bool = True, extra_config: str = "", start: bool = True) -> Broker:
        b = Broker(_broker_workdir(), persistence=persistence, extra_config=extra_config)
        made.append(b)
        if start:
            b.start()
        return b

    yield make
    for b in made:
        b.stop(kill=True)
        shutil.rmtree(b.workdir, ignore_errors=True)


def bridge_config(name: str, central: Broker, *, topics: str = "edge-agent/#") -> str:
    """A gateway broker's bridge to ``central``, as docs/fleet.md recommends: QoS 1, persistent sessions on
    both sides (``cleansession false``: the local broker queues what the central one has not acknowledged),
    bridge state notifications on ``$SYS/broker/connection/bridge-<name>/state`` (retained 1/0)."""
    return (
        f"\nconnection {name}\n"
        f"address {central.host}:{central.port}\n"
        f"remote_clientid bridge-{name}\n"
        f"local_clientid local-bridge-{name}\n"
        f"topic {topics} out 1\n"
        "cleansession false\n"
        "local_cleansession false\n"
        "bridge_attempt_unsubscribe false\n"
        "bridge_protocol_version mqttv311\n"
        "try_private true\n"
        "notifications true\n"
        "keepalive_interval 5\n"
        "restart_timeout 1\n"  # reconnect every second (production: the default backoff, 5 to 30 s)
        "start_type automatic\n"
    )


@pytest.fixture
def bridged_broker(broker_factory: Callable[..., Broker]) -> Callable[..., Broker]:
    """``bridged_broker(name, central)``: a started gateway broker whose ``edge-agent/#`` is bridged out to
    ``central`` (another :class:`Broker`) at QoS 1, with persistence and a 100,000-message queue."""

    def make(name: str, central: Broker) -> Broker:
        return broker_factory(extra_config=bridge_config(name, central))

    return make


@pytest.fixture
def mqtt_config(broker: Broker) -> Callable[..., MqttSection]:
    """``mqtt_config(**overrides)``: an MqttSection for the test broker with fast reconnects."""

    def make(**overrides: Any) -> MqttSection:
        values: dict[str, Any] = {
            "enabled": True,
            "host": broker.host,
            "port": broker.port,
            "reconnect_min_s": 0.1,
            "reconnect_max_s": 0.5,
            "keepalive_s": 10,
        }
        values.update(overrides)
        return MqttSection(**values)

    return make


@dataclass(frozen=True)
class Received:
    topic: str
    payload: bytes
    retain: bool


class Collector:
    """A paho client that records every message on its topics (it resubscribes after reconnects)."""

    def __init__(self, broker: Broker, topics: tuple[str, ...], *, persistent: bool, name: str) -> None:
        self.messages: list[Received] = []
        self._cond = threading.Condition()
        self.subscribed = threading.Event()
        self._topics = topics
        self._client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=name, clean_session=not persistent)
        self._client.reconnect_delay_set(0.05, 0.3)  # type: ignore[arg-type]
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = lambda *_: self.subscribed.set()
        self._client.on_message = self._on_message
        self._client.connect(broker.host, broker.port, keepalive=10)
        self._client.loop_start()
        if not self.subscribed.wait(10):
            raise AssertionError("test subscriber: no SUBACK within 10 s")

    def _on_connect(self, client: paho.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if not reason.is_failure:
            client.subscribe([(t, 1) for t in self._topics])

    def _on_message(self, _c: paho.Client, _u: Any, msg: paho.MQTTMessage) -> None:
        with self._cond:
            self.messages.append(Received(msg.topic, bytes(msg.payload), bool(msg.retain)))
            self._cond.notify_all()

    def on(self, topic: str) -> list[Received]:
        with self._cond:
            return [m for m in self.messages if m.topic == topic]

    def payloads(self, topic: str) -> list[bytes]:
        return [m.payload for m in self.on(topic)]

    def last(self, topic: str) -> bytes | None:
        found = self.payloads(topic)
        return found[-1] if found else None

    def wait_for(self, predicate: Callable[[Collector], bool], timeout_s: float = 10.0, what: str = "") -> None:
        """Wait until ``predicate(self)`` holds; AssertionError listing what arrived otherwise."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while not predicate(self):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    seen = [(m.topic, m.payload[:80], m.retain) for m in self.messages[-20:]]
                    raise AssertionError(f"timed out after {timeout_s} s waiting for {what or predicate}; got {seen}")
                self._cond.wait(min(remaining, 0.1))

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


@pytest.fixture
def subscriber(broker: Broker) -> Iterator[Callable[..., Collector]]:
    """``subscriber(*topics, persistent=False)``: a connected, subscribed :class:`Collector`."""
    made: list[Collector] = []

    def make(*topics: str, persistent: bool = False) -> Collector:
        c = Collector(broker, topics or ("#",), persistent=persistent, name=f"test-sub-{len(made)}-{os.getpid()}")
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


def wait_until(predicate: Callable[[], bool], timeout_s: float = 10.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what or predicate}")
        time.sleep(0.01)


class Chunks:
    """A source's emit target: records chunks, lets a test wait for them."""

    def __init__(self) -> None:
        self.items: list[Chunk] = []
        self._cond = threading.Condition()

    def __call__(self, chunk: Chunk) -> None:
        with self._cond:
            self.items.append(chunk)
            self._cond.notify_all()

    def wait(self, n: int, timeout_s: float = 10.0) -> list[Chunk]:
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.items) >= n, timeout=timeout_s):
                raise AssertionError(f"{len(self.items)} chunks after {timeout_s} s, expected {n}")
            return list(self.items)


@pytest.fixture
def until() -> Callable[..., None]:
    """``until(predicate, timeout_s=10, what="")``: poll a condition with a bounded wait."""
    return wait_until


def without_noise_floor(meta: ModelMeta) -> ModelMeta:
    """``meta`` for a stand-in module (a plain function) that has none of the file's noise-floor methods."""
    return dataclasses.replace(meta, noise_floor=None)
