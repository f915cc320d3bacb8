"""A fake systemd notify socket for tests: a real AF_UNIX datagram socket and a thread collecting messages."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path


class NotifyListener:
    """Binds ``path``; ``messages`` holds every received datagram, in order, as ``(monotonic_s, text)``."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(self.path)
        self._sock.settimeout(0.1)
        self.messages: list[tuple[float, str]] = []
        self._closed = threading.Event()
        self._new = threading.Condition()
        self._thread = threading.Thread(target=self._receive, name="notify-listener", daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while not self._closed.is_set():
            try:
                data = self._sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            with self._new:
                self.messages.append((time.monotonic(), data.decode()))
                self._new.notify_all()

    def texts(self) -> list[str]:
        with self._new:
            return [text for _, text in self.messages]

    def wait_for(self, text: str, timeout_s: float, *, after: int = 0) -> int:
        """Index of the first message from ``after`` on that contains ``text``; AssertionError on timeout."""
        deadline = time.monotonic() + timeout_s
        with self._new:
            while True:
                for index in range(after, len(self.messages)):
                    if text in self.messages[index][1]:
                        return index
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"no {text!r} within {timeout_s} s; got {self.texts_unlocked()}")
                self._new.wait(remaining)

    def texts_unlocked(self) -> list[str]:
        return [text for _, text in self.messages]

    def pings_between(self, start_s: float, end_s: float) -> int:
        with self._new:
            return sum(1 for t, text in self.messages if text == "WATCHDOG=1" and start_s <= t < end_s)

    def close(self) -> None:
        self._closed.set()
        self._thread.join(timeout=2)
        self._sock.close()
