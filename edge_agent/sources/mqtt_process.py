"""The agent's side of ``receive = "process"``: start, feed, watch and restart the MQTT receive process.

:class:`ReceiveProcess` runs :func:`edge_agent.sources.mqtt_receiver.receiver_main` in a child
(``multiprocessing`` spawn context: a fresh interpreter, no torch, no copy of the agent's threads)
and its own thread ``source-<name>-receiver``, which

- reads the child's frames and hands each :class:`Batch` to ``deliver`` (the source's ``_deliver``:
  admission, shed check, parse, windowing: what paho's thread does in process) and each
  :class:`Report` to ``on_report`` (the source's counters);
- sends the sensors over their share of the full inference queue (``shed_set``), the suspects
  (``suspects``) and credit when any of them changes, checked every ``SHED_EVERY_S``: the child drops the
  former's messages unparsed and does not let the latter's change baselines learn; the credit is what
  the inference queue has room for (``credit``, in hops of sensor stream) less what the child may still
  send of earlier credit (granted, less what its batches were charged), so the child sends what the queue
  will take, each sensor in turn, and holds the newest messages of the others (edge_agent.sources.mqtt_gate);
  while credit is in use the shed set is not sent (the child's line of sensors is fair on its own);
- notices a child that died (its exit code) or hung (no frame for ``HANG_S``; it is killed), logs it,
  counts it in ``edge_agent_receiver_restarts_total`` and starts a new one after a backoff
  (``reconnect_min_s`` doubling up to ``reconnect_max_s``; back to the minimum once a child ran for
  ``STABLE_S``), with the sensors admitted so far, so ``max_sensors`` holds across restarts.

:meth:`stop` asks the child to stop (it disconnects cleanly and sends what it holds), joins it
(killed after ``STOP_TIMEOUT_S``) and then the thread.
"""

from __future__ import annotations

import logging
import multiprocessing
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

import msgspec

from edge_agent.common.ratelimit import RateLimitedLog
from edge_agent.sources.mqtt_wire import (
    ENCODE,
    HANG_S,
    NO_GRANT,
    TO_AGENT,
    Batch,
    Credit,
    ReceiverSpec,
    Report,
    Shed,
    Stop,
)

logger = logging.getLogger(__name__)

SHED_EVERY_S = 0.01
STABLE_S = 30.0
STOP_TIMEOUT_S = 5.0


class ReceiveProcess:
    """One source's receive process and the thread that supervises it (see the module)."""

    def __init__(
        self,
        name: str,
        spec: Callable[[], ReceiverSpec],
        *,
        deliver: Callable[[Batch], None],
        on_report: Callable[[Report], None],
        on_down: Callable[[], None],
        shed_set: Callable[[], frozenset[str]],
        restarts: Any,
        suspects: Callable[[], frozenset[str]] = frozenset,
        credit: Callable[[], tuple[int, int] | None] = lambda: None,
        backoff_s: tuple[float, float] = (1.0, 30.0),
    ) -> None:
        self.name = name
        self._spec = spec  # a fresh spec per start: the sensors admitted until then
        self._deliver = deliver
        self._on_report = on_report
        self._on_down = on_down
        self._shed_set = shed_set
        self._suspects = suspects
        self._credit = credit
        self._charged = 0  # hops the running child's batches were charged so far
        self._restarts = restarts  # the edge_agent_receiver_restarts_total child of this source
        self._backoff_s = backoff_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._process: multiprocessing.process.BaseProcess | None = None
        self._pipe: Connection | None = None
        self._warn = RateLimitedLog(logger)
        self.starts = 0  # receive processes started (the first one included)
        self.torch_loaded = False  # a child reported torch in its modules (a bug: it must never import it)

    @property
    def pid(self) -> int | None:
        """The running child's process id (None between children)."""
        process = self._process
        return process.pid if process is not None and process.is_alive() else None

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError(f"source {self.name}: receive process already started")
        self._thread = threading.Thread(target=self._supervise, name=f"source-{self.name}-receiver", daemon=True)
        self._thread.start()

    def alive(self) -> bool:
        """False once the supervising thread died (never while it restarts a child)."""
        return self._thread is None or self._thread.is_alive() or self._stop.is_set()

    def stop(self) -> None:
        """Stop and join the child, then the thread; idempotent."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=STOP_TIMEOUT_S + 5.0)

    def _supervise(self) -> None:
        delay_s = self._backoff_s[0]
        while not self._stop.is_set():
            started_at = time.monotonic()
            why = self._run_child()
            self._on_down()
            if self._stop.is_set():
                break
            if time.monotonic() - started_at >= STABLE_S:
                delay_s = self._backoff_s[0]
            self._restarts.inc()
            logger.error("source %s: receive process %s; restarting it in %.1f s", self.name, why, delay_s)
            self._stop.wait(delay_s)
            delay_s = min(self._backoff_s[1], delay_s * 2)

    def _run_child(self) -> str:
        """Start one child and serve it until it ends, hangs or a stop; returns what happened."""
        context = multiprocessing.get_context("spawn")
        ours, theirs = context.Pipe(duplex=True)
        process = context.Process(
            target=_child_entry, args=(theirs, self._spec()), name=f"edge-agent-receiver-{self.name}", daemon=True
        )
        process.start()
        theirs.close()
        self._process, self._pipe = process, ours
        self.starts += 1
        logger.info("source %s: receive process started (pid %s)", self.name, process.pid)
        try:
            return self._serve(process, ours)
        finally:
            self._end(process, ours)
            self._process = self._pipe = None

    def _serve(self, process: multiprocessing.process.BaseProcess, pipe: Connection) -> str:
        last_frame = time.monotonic()
        sent: tuple[frozenset[str], frozenset[str]] = (frozenset(), frozenset())
        granted, self._charged = NO_GRANT, 0
        next_shed = 0.0
        while not self._stop.is_set():
            try:
                if pipe.poll(SHED_EVERY_S):
                    frame = TO_AGENT(pipe.recv_bytes())
                    last_frame = time.monotonic()
                    self._handle(frame)
                    if isinstance(frame, Batch):  # its windows are queued (or taken): maybe more credit now
                        granted = self._send_credit(pipe, granted)
            except (EOFError, OSError):
                process.join(timeout=1.0)
                return f"ended (exit code {process.exitcode})"
            except msgspec.DecodeError as error:
                return f"sent a frame that does not decode ({error}; killed)"
            now = time.monotonic()
            if now - last_frame > HANG_S:
                return f"sent nothing for {HANG_S:.0f} s (hung; killed)"
            if now >= next_shed:
                next_shed = now + SHED_EVERY_S
                # with credit the child's line of sensors is fair on its own: no shed set to sort and send
                current = (self._shed_set() if granted == NO_GRANT else frozenset(), self._suspects())
                try:
                    granted = self._send_credit(pipe, granted)
                    if current != sent:
                        sent = current
                        pipe.send_bytes(ENCODE(Shed(sorted(current[0]), sorted(current[1]))))
                except OSError:
                    continue  # the child is gone: the next poll says so
        return "stopped"

    def _send_credit(self, pipe: Connection, granted: int) -> int:
        """Grant the queue's room less what the child may still send of earlier credit; the new total."""
        credit = self._credit()
        if credit is None:  # no queue: no credit control
            return granted
        room, most = credit
        total = max(0, granted) + max(0, room - max(0, granted - self._charged))
        if total != granted:
            pipe.send_bytes(ENCODE(Credit(total, most)))
        return total

    def _handle(self, frame: Batch | Report) -> None:
        try:
            if isinstance(frame, Batch):
                self._charged += frame.charged
                self._deliver(frame)
            else:
                self.torch_loaded = self.torch_loaded or frame.torch_loaded
                self._on_report(frame)
        except Exception:  # a bug in this process's handling: this frame is lost, the stream goes on
            self._warn.warning("frame", "source %s: handling a receive process frame failed", self.name, exc_info=True)

    def _end(self, process: multiprocessing.process.BaseProcess, pipe: Connection) -> None:
        if self._stop.is_set() and process.is_alive():
            try:
                pipe.send_bytes(ENCODE(Stop()))
                deadline = time.monotonic() + STOP_TIMEOUT_S
                while process.is_alive() and time.monotonic() < deadline:  # deliver what it flushes on the way out
                    if pipe.poll(0.05):
                        self._handle(TO_AGENT(pipe.recv_bytes()))
            except (EOFError, OSError, msgspec.DecodeError):
                pass
        if process.is_alive():
            process.kill()
        process.join(timeout=STOP_TIMEOUT_S)
        pipe.close()


def _child_entry(conn: Connection, spec: ReceiverSpec) -> None:
    from edge_agent.sources.mqtt_receiver import receiver_main

    receiver_main(conn, spec)
