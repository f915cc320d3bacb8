"""Durable outbox of alert events: SQLite in WAL mode, one row per event, in the agent's state directory.

Guarantee: :meth:`Outbox.append` returns once the event is committed with ``synchronous = FULL``
(in WAL mode: one fdatasync of the log per commit), so it survives ``kill -9`` and power loss;
``NORMAL`` survives a crash of the process but may lose the last commits on power loss. Deletes
commit at NORMAL (a lost one is a duplicate). Cost per alert: ``benchmarks/bench_outbox.py``.

Events are handed out (:meth:`take`) in append order and leave the store only when acknowledged
(:meth:`ack`, on the broker's PUBACK) or dropped by a bound. On open every stored row is pending
again, in order, before anything appended later: delivery is at least once and in order.
An acknowledged row leaves memory at once; its delete is committed by :meth:`flush` or the next
append, not on the thread of the ack (paho's network thread). A row acknowledged but not deleted
when the process dies is sent again (consumers de-duplicate on id + type + window.start).
The database is opened in exclusive locking mode: a second agent on the same file is refused.

Bounds: ``max_count`` rows, ``max_bytes`` of topic + payload, ``max_age_s`` since the append;
drops are counted in ``edge_agent_alerts_dropped_total{reason="count"|"bytes"|"age"}``. Rows
handed out and not yet acknowledged are never dropped (the broker may have them). Which goes:

1. the oldest ``update`` (it only refines an episode that its ``new`` and ``end`` describe);
2. else the oldest ``new``, with its episode's ``end`` if that is stored too: the episode goes
   whole, a consumer never sees it;
3. an ``end`` whose ``new`` is no longer stored (delivered, or dropped earlier) is never dropped:
   whoever saw the fault begin must see it end. When only such ends are left, the store holds
   more than its bound, at most one row per episode that was open (logged).

Errors: a database that cannot be created, opened or read (folder not writable, not a database,
damaged, locked by another agent, written by a newer agent) raises :class:`OutboxError` naming
the path. A write that fails later (disk full) switches the store to memory, logged with the path;
``durable`` is then False and ``edge_agent_alert_outbox_durable`` 0.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections import Counter, deque
from pathlib import Path

from edge_agent.common.ratelimit import RateLimitedLog
from edge_agent.metrics import AgentMetrics
from edge_agent.sinks.outbox_store import OutboxError, Stored, commit, connect, read_rows

logger = logging.getLogger(__name__)

OUTBOX_FILE = "alert-outbox.sqlite3"
DEFAULT_MAX_BYTES = 64 * 1024 * 1024
DEFAULT_MAX_AGE_S = 7 * 24 * 3600.0
EXPIRE_EVERY_S = 10.0  # flush() applies the age bound this often (append applies it every time)
SYNCHRONOUS = "FULL"  # survives power loss, measured < 1 ms per alert on a local disk (docs/benchmarks.md)


class Outbox:
    """Ordered, bounded, durable store of alert events; ``path=None`` keeps them in memory only. Thread-safe."""

    def __init__(
        self,
        path: Path | None,
        *,
        metrics: AgentMetrics,
        max_count: int,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_age_s: float = DEFAULT_MAX_AGE_S,
        synchronous: str = SYNCHRONOUS,
    ) -> None:
        self.path = path
        self.max_count, self.max_bytes, self.max_age_s = max(1, max_count), max_bytes, max_age_s
        self._metrics = metrics
        self._lock = threading.Lock()
        self._rows: dict[int, Stored] = {}  # every stored row, oldest first
        self._queue: deque[int] = deque()  # seqs not handed out, oldest first (dropped ones skipped lazily)
        self._taken: set[int] = set()  # handed out, not yet acknowledged
        self._updates: dict[int, None] = {}  # seqs of stored updates (and unknown types), oldest first
        self._news: dict[str, int] = {}  # alert id -> seq of its stored new, oldest first
        self._ends: dict[str, int] = {}  # alert id -> seq of its stored end
        self._bytes = 0
        self._acked: list[int] = []  # acknowledged, delete not yet committed
        self._next_seq = 1
        self._expire_at = 0.0
        self._warn = RateLimitedLog(logger)
        # deletes need no sync of their own: one lost on power loss means a duplicate, never a loss
        self._sync = {"insert": synchronous, "delete": "NORMAL" if synchronous in ("FULL", "EXTRA") else synchronous}
        self._db = connect(path, synchronous) if path is not None else None
        if self._db is not None:
            self._load(self._db)
        metrics.alert_outbox_durable.set(1 if self._db is not None else 0)
        self.expire()

    @property
    def durable(self) -> bool:
        return self._db is not None

    def __len__(self) -> int:
        with self._lock:
            return len(self._rows)

    @property
    def size_bytes(self) -> int:
        with self._lock:
            return self._bytes

    def untaken(self) -> int:
        """Rows not handed out yet."""
        with self._lock:
            return len(self._rows) - len(self._taken)

    def unflushed(self) -> bool:  # acknowledged rows wait for their delete (flush)
        with self._lock:
            return bool(self._acked) and self._db is not None

    def append(self, topic: str, payload: bytes, *, event_type: str, alert_id: str, now: float | None = None) -> Stored:
        """Store one event (committed when this returns; the bounds may drop it or older ones, counted)."""
        now = time.time() if now is None else now
        with self._lock:
            row = Stored(self._next_seq, now, event_type, alert_id, topic, payload)
            self._next_seq += 1
            self._index(row)
            self._queue.append(row.seq)
            dropped = self._expired(now) + self._over_bounds()
            gone = {seq for _, seq in dropped}
            self._write(None if row.seq in gone else row, [seq for seq in gone if seq != row.seq])
            if len(self._queue) > 2 * len(self._rows) + 64:  # dropped seqs linger there: keep it bounded
                self._queue = deque(seq for seq in self._queue if seq in self._rows and seq not in self._taken)
        self._count(dropped)
        return row

    def take(self) -> Stored | None:
        """The oldest row not handed out yet (it stays stored until :meth:`ack`), or None."""
        with self._lock:
            while self._queue:
                seq = self._queue.popleft()
                if seq in self._rows and seq not in self._taken:
                    self._taken.add(seq)
                    return self._rows[seq]
            return None

    def untake(self, seq: int) -> None:
        """A taken row could not be sent: it is the next :meth:`take` again."""
        with self._lock:
            if seq in self._taken:
                self._taken.discard(seq)
                self._queue.appendleft(seq)

    def ack(self, seq: int) -> None:
        """The broker has the row: remove it (the delete is committed by :meth:`flush` or the next append)."""
        with self._lock:
            if seq in self._rows:
                self._unindex(seq)
                self._acked.append(seq)

    def flush(self) -> None:
        """Commit the deletes of acknowledged rows; apply the age bound every ``EXPIRE_EVERY_S``."""
        with self._lock:
            if self._acked:
                self._write(None, [])
        if time.monotonic() >= self._expire_at:
            self.expire()

    def expire(self, now: float | None = None) -> None:
        """Drop rows older than ``max_age_s`` (the bound's rule; counted as ``age``)."""
        with self._lock:
            self._expire_at = time.monotonic() + EXPIRE_EVERY_S
            dropped = self._expired(time.time() if now is None else now)
            if dropped:
                self._write(None, [seq for _, seq in dropped])
        self._count(dropped)

    def close(self) -> None:
        """Commit pending deletes and close the database (rows not acknowledged stay for the next open)."""
        with self._lock:
            if self._acked:
                self._write(None, [])
            if self._db is not None:
                self._db.close()
                self._db = None

    # --- helpers (caller holds self._lock) ---

    def _load(self, db: sqlite3.Connection) -> None:
        assert self.path is not None
        rows = read_rows(db, self.path)
        for row in rows:
            self._index(row)
            self._queue.append(row.seq)
        self._next_seq = rows[-1].seq + 1 if rows else 1
        if rows:
            logger.info("alert outbox %s: %d events from before the restart, sent first", self.path, len(rows))

    def _index(self, row: Stored) -> None:
        self._rows[row.seq] = row
        self._bytes += row.size_bytes
        if row.event_type == "new":
            self._news[row.alert_id] = row.seq
        elif row.event_type == "end":
            self._ends[row.alert_id] = row.seq
        else:
            self._updates[row.seq] = None

    def _unindex(self, seq: int) -> None:
        row = self._rows.pop(seq)
        self._bytes -= row.size_bytes
        self._taken.discard(seq)
        self._updates.pop(seq, None)
        for index in (self._news, self._ends):
            if index.get(row.alert_id) == seq:
                del index[row.alert_id]

    def _victims(self, row: Stored) -> list[Stored]:
        """The rows dropping ``row`` takes along; empty when it must stay (handed out, or an end)."""
        if row.seq in self._taken or row.event_type == "end":
            return []  # an end whose new is stored goes with that (older) new, never alone
        if row.event_type != "new":
            return [row]
        end = self._ends.get(row.alert_id)
        return [row] if end is None or end in self._taken else [row, self._rows[end]]

    def _next_victims(self) -> list[Stored]:
        for seq in self._updates:
            if seq not in self._taken:
                return [self._rows[seq]]
        for seq in self._news.values():
            if seq not in self._taken:
                return self._victims(self._rows[seq])
        return []

    def _over_bounds(self) -> list[tuple[str, int]]:
        dropped: list[tuple[str, int]] = []
        while len(self._rows) > self.max_count or self._bytes > self.max_bytes:
            reason = "count" if len(self._rows) > self.max_count else "bytes"
            victims = self._next_victims()
            if not victims:
                self._warn.warning(
                    "over",
                    "alert outbox: %d events over its bounds, every one an end of a delivered new",
                    len(self._rows),
                )
                break
            for victim in victims:
                self._unindex(victim.seq)
                dropped.append((reason, victim.seq))
        return dropped

    def _expired(self, now: float) -> list[tuple[str, int]]:
        cutoff = now - self.max_age_s
        old: list[Stored] = []
        for row in self._rows.values():
            if row.created_at >= cutoff:
                break
            old.append(row)
        dropped: list[tuple[str, int]] = []
        for row in old:
            if row.seq in self._rows:  # not taken along by an earlier victim
                for victim in self._victims(row):
                    self._unindex(victim.seq)
                    dropped.append(("age", victim.seq))
        return dropped

    def _count(self, dropped: list[tuple[str, int]]) -> None:
        for reason, n in Counter(reason for reason, _ in dropped).items():
            self._metrics.alerts_dropped.labels(reason).inc(n)
            self._warn.warning(reason, "alert outbox: %d events dropped (bound: %s)", n, reason)

    def _write(self, insert: Stored | None, deletes: list[int]) -> None:
        """One transaction: pending acknowledged deletes, ``deletes``, then ``insert``; memory only on failure."""
        db = self._db
        deletes = self._acked + deletes
        self._acked = []
        if db is None or not (insert or deletes):
            return
        try:
            commit(db, insert, deletes, self._sync["insert" if insert is not None else "delete"])
        except sqlite3.Error as err:
            self._db = None
            self._metrics.alert_outbox_durable.set(0)
            logger.error(
                "alert outbox %s: write failed (%s); alert events are kept in memory only from now on "
                "(lost if the agent stops before they are delivered); fix the disk and restart the agent",
                self.path,
                err,
            )
            db.close()


def open_outbox(path: Path | None, *, metrics: AgentMetrics, max_count: int) -> Outbox:
    """The durable outbox at ``path``; one in memory when it cannot be used (an error naming it) or ``path`` is None.

    Alerting goes on from memory rather than the agent refusing to start: a monitoring agent that
    stops alerting over its disk is worse than one that loses the events of an outage on a restart.
    """
    if path is not None:
        try:
            return Outbox(path, metrics=metrics, max_count=max_count)
        except OutboxError as err:
            logger.error("%s. Alert events are kept in memory only (lost on a restart) until this is fixed", err)
    else:
        logger.info("alert outbox: no file given, alert events are kept in memory only (lost on a restart)")
    return Outbox(None, metrics=metrics, max_count=max_count)
