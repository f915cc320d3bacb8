"""The outbox's SQLite file: open it (WAL, exclusive lock, ``synchronous``), read its rows, commit changes.

Every failure is an :class:`OutboxError` (or, for :func:`commit`, ``sqlite3.Error``) whose message
names the file. The logic of the outbox (order, bounds, acknowledgements) is in ``outbox.py``.
"""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
_SCHEMA = """CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY,
    created_at REAL NOT NULL,
    event_type TEXT NOT NULL,
    alert_id TEXT NOT NULL,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL
)"""
_COLUMNS = "seq, created_at, event_type, alert_id, topic, payload"


class OutboxError(RuntimeError):
    """The store cannot be used; the message names its path and why."""


@dataclass(frozen=True)
class Stored:
    """One stored alert event; ``seq`` orders them (it grows with every append, also across restarts)."""

    seq: int
    created_at: float  # epoch seconds of the append
    event_type: str  # new | update | end
    alert_id: str
    topic: str
    payload: bytes

    @property
    def size_bytes(self) -> int:
        return len(self.topic.encode()) + len(self.payload)


def connect(path: Path, synchronous: str) -> sqlite3.Connection:
    """Open (or create) the database: WAL, exclusive lock, the given ``synchronous``; OutboxError naming the path."""
    where = f"alert outbox {path}"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutboxError(f"{where}: cannot create its folder ({err.strerror or err})") from err
    try:
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=1.0)
    except sqlite3.Error as err:
        raise OutboxError(f"{where}: cannot be opened ({err}); the folder must be writable") from err
    try:
        db.execute("PRAGMA locking_mode = EXCLUSIVE")  # one agent per file; no -shm file needed
        mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise OutboxError(f"{where}: cannot use WAL mode (got {mode!r})")
        db.execute(f"PRAGMA synchronous = {synchronous}")
        version = int(db.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise OutboxError(f"{where}: written by a newer agent (schema {version}, this one reads {SCHEMA_VERSION})")
        db.execute("BEGIN IMMEDIATE")  # takes the exclusive lock now: a second agent fails here
        db.execute(_SCHEMA)
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        db.execute("COMMIT")
        check = db.execute("PRAGMA quick_check").fetchone()[0]
        if check != "ok":
            raise OutboxError(f"{where}: the database is damaged ({check}); move it aside and restart")
    except sqlite3.Error as err:
        db.close()
        hint = "; is another agent using this state directory?" if "locked" in str(err) else ""
        raise OutboxError(f"{where}: cannot be used ({err}){hint}; move the file aside or fix its folder") from err
    except OutboxError:
        db.close()
        raise
    return db


def read_rows(db: sqlite3.Connection, path: Path) -> list[Stored]:
    """Every stored row, oldest first."""
    try:
        rows = db.execute(f"SELECT {_COLUMNS} FROM outbox ORDER BY seq").fetchall()
        return [Stored(int(s), float(c), str(e), str(a), str(t), bytes(p)) for s, c, e, a, t, p in rows]
    except (sqlite3.Error, TypeError, ValueError) as err:
        db.close()
        raise OutboxError(f"alert outbox {path}: cannot be read ({err}); move the file aside and restart") from err


def commit(db: sqlite3.Connection, insert: Stored | None, deletes: list[int], synchronous: str) -> None:
    """One transaction at ``synchronous``: delete ``deletes``, insert ``insert``; ``sqlite3.Error`` if not committed."""
    try:
        db.execute(f"PRAGMA synchronous = {synchronous}")  # a few microseconds; applies to the next commit
        db.execute("BEGIN IMMEDIATE")
        db.executemany("DELETE FROM outbox WHERE seq = ?", [(seq,) for seq in deletes])
        if insert is not None:
            i = insert
            values = (i.seq, i.created_at, i.event_type, i.alert_id, i.topic, i.payload)
            db.execute(f"INSERT INTO outbox ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)", values)
        db.execute("COMMIT")
    except sqlite3.Error:
        if db.in_transaction:
            try:
                db.execute("ROLLBACK")
            except sqlite3.Error:
                logger.debug("rollback failed", exc_info=True)
        raise
