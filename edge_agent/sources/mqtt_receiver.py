"""The MQTT receive process of ``receive = "process"``: paho, topic -> sensor and shedding off the agent's core.

:func:`receiver_main` runs in a child process (``multiprocessing`` spawn context, started and
supervised by :mod:`edge_agent.sources.mqtt_process`); it imports neither torch nor the pipeline,
only this package's topic rules, the paho client and ``msgspec``. Its threads:

- paho's network thread: reads each message, acknowledges it (QoS 1: the PUBACK goes out when the
  callback returns, before the agent has seen the message), finds its sensor with the source's own
  rules (:class:`~edge_agent.sources.mqtt_topics.TopicSensors`: instances share, id rule,
  allow-list / ``max_sensors``), with ``change_threshold`` > 0 runs the change detector on it
  (edge_agent.sources.change; a mark releases the sensor's held messages and forwards this one, shed
  set or not, and goes to the agent with the batch), passes it through the :class:`~edge_agent.sources.
  mqtt_gate.Gate` (held if the sensor is in the agent's latest :class:`Shed` set, or waiting its turn for
  the agent's credit: newest messages only, older ones shed) and appends what leaves to a bounded buffer
  (``BUFFER_BYTES``; past it: ``overflow``);
- ``control``: reads :class:`Shed` (shed set, suspects), :class:`Credit` and :class:`Stop`; the pipe's end stops too;
- the main thread: one :class:`Batch` per ``FLUSH_EVERY_S`` or ``BATCH_MESSAGES``, a :class:`Report`
  every ``REPORT_EVERY_S`` and on every connection change; it exits (code 3) if paho's thread died.

A clean stop disconnects and sends the buffer; a crash loses what was acknowledged but not piped (the buffer, a batch).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections import deque
from multiprocessing.connection import Connection
from typing import Any, cast

import paho.mqtt.client as paho

from edge_agent.metrics import AgentMetrics
from edge_agent.mqttclient import MqttConnection
from edge_agent.sources.change import SourceChange
from edge_agent.sources.mqtt_gate import UNBOUNDED, Gate
from edge_agent.sources.mqtt_topics import TopicSensors
from edge_agent.sources.mqtt_wire import (
    BATCH_MESSAGES,
    BUFFER_BYTES,
    ENCODE,
    FLUSH_EVERY_S,
    NO_GRANT,
    REPORT_EVERY_S,
    TO_RECEIVER,
    Batch,
    Credit,
    Message,
    ReceiverSpec,
    Report,
    Shed,
    Stop,
)
from edge_agent.sources.payloads import PayloadError

logger = logging.getLogger(__name__)

EXIT_PAHO_DIED = 3


class _Metrics:
    """The ``mqtt_connected`` seam of :class:`MqttConnection`: the state goes into the next report."""

    def __init__(self, receiver: Receiver) -> None:
        self.mqtt_connected = self
        self._receiver = receiver

    def labels(self, *_names: str) -> _Metrics:
        return self

    def set(self, value: float) -> None:
        self._receiver.set_connected(bool(value))


class Receiver:
    """The receive process's state; :meth:`run` is its main loop."""

    def __init__(self, conn: Connection, spec: ReceiverSpec) -> None:
        self._pipe, self._spec = conn, spec
        self._topics = TopicSensors(spec.section, spec.instance, known=spec.known)
        self._gate = Gate(  # under self._lock
            window_bytes=spec.window_bytes, hop_bytes=spec.hop_bytes, max_bytes=BUFFER_BYTES, shed=frozenset(spec.shed)
        )
        self._charged_sent = 0  # the gate's charged hops sent with the batches so far
        threshold = spec.section.change_threshold
        self._change = SourceChange(spec.section.format, threshold) if threshold > 0 else None
        self._marks: list[tuple[str, float]] = []  # since the last batch (under self._lock)
        self._buffer, self._buffer_bytes = deque[Message](), 0
        self._lock = threading.Lock()  # the buffer and its byte count: paho's thread appends, the main thread takes
        self._wake, self._stop = threading.Event(), threading.Event()
        self._totals = Report()  # cumulative; written by paho's thread only (dict copies are atomic)
        self._rejected, self._detail = dict[str, int](), dict[str, str]()  # reason -> count, last detail
        self._sent = Report()  # the totals at the previous report
        self._state_changed = True
        self._conn = MqttConnection(
            spec.mqtt,
            agent_id=spec.agent_id,
            client_suffix=f"src-{spec.section.name}",
            password=spec.password,
            metrics=cast(AgentMetrics, _Metrics(self)),
            metric_client=f"source-{spec.section.name}",
            on_connected=self._on_connected,
            on_disconnected=self._on_disconnected,
        )

    def set_connected(self, connected: bool) -> None:
        self._totals.connected = connected
        if not connected:
            self._totals.subscribed = False
        self._state_changed = True
        self._wake.set()

    def run(self) -> int:
        threading.Thread(target=self._control, name="control", daemon=True).start()

        def configure(client: paho.Client) -> None:
            client.on_subscribe = self._on_subscribe
            client.on_message = self._on_message

        self._conn.open(configure)
        last_report = 0.0
        code = 0
        while not self._stop.is_set():
            self._wake.wait(FLUSH_EVERY_S)
            self._wake.clear()
            self._flush()
            now = time.monotonic()
            if self._state_changed or now - last_report >= REPORT_EVERY_S:
                self._report()
                last_report = now
            if not self._conn.alive():
                logger.error("receive process %s: paho's network thread died", self._spec.section.name)
                code = EXIT_PAHO_DIED
                break
        self._conn.close()
        with self._lock:  # the held messages were accepted (acknowledged): deliver them too
            self._forward(self._gate.drain())
        self._flush()
        self._report()
        return code

    def _flush(self) -> None:
        with self._lock:
            buffer, self._buffer, self._buffer_bytes = self._buffer, deque(), 0
            marks, self._marks = self._marks, []
            resumed, self._gate.resumed = self._gate.resumed, []  # first: their messages follow
            charged, self._charged_sent = self._gate.charged - self._charged_sent, self._gate.charged
        while buffer or marks or charged:  # the charge goes with the last batch: the agent never counts early
            n = min(len(buffer), BATCH_MESSAGES)
            last = len(buffer) == n
            self._send(Batch([buffer.popleft() for _ in range(n)], marks, charged if last else 0, resumed))
            marks, resumed = [], []
            if last:
                charged = 0

    def _report(self) -> None:
        self._state_changed = False
        totals, sent = self._totals, self._sent
        shed, rejected = dict(self._gate.shed_counts), dict(self._rejected)
        report = Report(
            received=totals.received - sent.received,
            foreign=totals.foreign - sent.foreign,
            shed={k: v - sent.shed.get(k, 0) for k, v in shed.items() if v != sent.shed.get(k, 0)},
            rejected={k: v - sent.rejected.get(k, 0) for k, v in rejected.items() if v != sent.rejected.get(k, 0)},
            rejected_detail=dict(self._detail),
            overflow=totals.overflow - sent.overflow,
            internal_errors=totals.internal_errors - sent.internal_errors,
            connected=totals.connected,
            subscribed=totals.subscribed,
            torch_loaded="torch" in sys.modules,
        )
        self._sent = Report(
            received=sent.received + report.received,
            foreign=sent.foreign + report.foreign,
            shed=shed,
            rejected=rejected,
            overflow=sent.overflow + report.overflow,
            internal_errors=sent.internal_errors + report.internal_errors,
        )
        self._send(report)

    def _send(self, frame: Batch | Report) -> None:
        try:
            self._pipe.send_bytes(ENCODE(frame))
        except OSError:  # the agent is gone: nothing to deliver to
            self._stop.set()

    def _control(self) -> None:
        while True:
            try:
                frame = TO_RECEIVER(self._pipe.recv_bytes())
            except (EOFError, OSError):
                break
            if isinstance(frame, Shed):
                self.apply(frozenset(frame.sensors), frozenset(frame.suspects))
            elif isinstance(frame, Credit):
                self.apply(granted=frame.granted, most=frame.most)
            elif isinstance(frame, Stop):
                break
        self._stop.set()
        self._wake.set()

    def apply(
        self,
        shed: frozenset[str] | None = None,
        suspects: frozenset[str] | None = None,
        granted: int = NO_GRANT,
        most: int = UNBOUNDED,
    ) -> None:
        """The agent's new shed set and suspects, or its credit: what the gate lets go is sent next."""
        with self._lock:
            out = self._gate.apply_shed(shed, suspects) if shed is not None else []
            if granted != NO_GRANT:
                out += self._gate.grant(granted, most)
            self._forward(out)
        if out:
            self._wake.set()

    def _forward(self, messages: list[Message]) -> None:
        """To the buffer for the next batch (call under the lock); past ``BUFFER_BYTES``: ``overflow``."""
        for message in messages:
            size = len(message[1])
            if self._buffer_bytes + size > BUFFER_BYTES:
                self._totals.overflow += 1
                self._gate.dropped(message[0])
                continue
            self._buffer.append(message)
            self._buffer_bytes += size

    # --- paho callbacks (paho's network thread) ---

    def _on_connected(self, client: paho.Client) -> None:
        section = self._spec.section
        result, _mid = client.subscribe(self._topics.subscriptions())
        if result != paho.MQTT_ERR_SUCCESS:
            failed = paho.error_string(result)
            logger.error("source %s: subscribe to %s failed: %s", section.name, section.topic, failed)

    def _on_disconnected(self) -> None:
        self._totals.subscribed = False
        self._state_changed = True

    def _on_subscribe(self, _c: paho.Client, _u: Any, _mid: int, reasons: list[paho.ReasonCode], _p: Any) -> None:
        failed = [str(r) for r in reasons if r.is_failure]
        if failed:
            logger.error("source %s: broker refused the subscription: %s", self._spec.section.name, ", ".join(failed))
        self._totals.subscribed = not failed
        self._state_changed = True
        self._wake.set()

    def _on_message(self, _c: paho.Client, _u: Any, msg: paho.MQTTMessage) -> None:
        try:
            self._handle(msg)
        except Exception:  # would end paho's thread: count, log, go on
            self._totals.internal_errors += 1
            logger.exception("receive process %s: handling a message failed", self._spec.section.name)

    def _handle(self, msg: paho.MQTTMessage) -> None:
        received_at, wall_time = time.monotonic(), time.time()
        totals = self._totals
        totals.received += 1
        try:
            sensor = self._topics.sensor_of_message(msg)
        except PayloadError as err:
            self._rejected[err.reason] = self._rejected.get(err.reason, 0) + 1
            self._detail[err.reason] = str(err)[:200]
            return
        if sensor is None:
            totals.foreign += 1
            return
        self._topics.admit(sensor)
        body = msg.payload
        message = (sensor, body, received_at, wall_time)
        change, gate = self._change, self._gate
        score = change.check(sensor, body, received_at, suspect=sensor in gate.suspects) if change else None
        with self._lock:
            if score is not None:  # a change: the agent makes it a suspect; its newest samples go now
                self._marks.append((sensor, score))
            self._forward(gate.offer(message, urgent=score is not None))
            waiting = len(self._buffer)
        if waiting >= BATCH_MESSAGES:
            self._wake.set()


def receiver_main(conn: Connection, spec: ReceiverSpec) -> None:
    """The child's entry point (spawn): run until stopped, the agent gone or paho's thread dead."""
    logging.basicConfig(level=spec.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cpu = spec.section.receive_cpu
    if cpu >= 0:  # before its own threads start (they inherit it); the threads imports started, one by one
        try:
            for task in os.listdir("/proc/self/task"):
                os.sched_setaffinity(int(task), {cpu})
        except OSError as error:  # e.g. no such CPU here: run where the agent runs, and say so
            logger.error("receive process %s: cannot run on CPU %d (%s)", spec.section.name, cpu, error)
    code = Receiver(conn, spec).run()
    conn.close()
    sys.exit(code)
