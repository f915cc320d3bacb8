"""systemd's notify protocol without a package: one ``AF_UNIX`` datagram per message to ``$NOTIFY_SOCKET``.

``READY=1`` when start-up is complete, ``STATUS=...`` for ``systemctl status``, ``WATCHDOG=1`` at
least every ``WATCHDOG_USEC`` (we ping every half of it), ``RELOADING=1`` / ``STOPPING=1``. A leading
``@`` in the socket path means Linux's abstract namespace (a NUL byte). Without ``NOTIFY_SOCKET``
(not started by systemd, or ``Type=`` is not ``notify``) every call does nothing. The watchdog is
ours only when ``WATCHDOG_PID`` is unset or is this process's id (sd_watchdog_enabled's rule).
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Mapping

logger = logging.getLogger(__name__)

WATCHDOG_MIN_STALL_S = 2.0  # a pipeline stage may make no progress this long before the pings stop


class Notifier:
    """Sends notify messages to the service manager; a no-op when ``NOTIFY_SOCKET`` is unset."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self.address = _address(env.get("NOTIFY_SOCKET", ""))
        self.watchdog_interval_s = _watchdog_interval_s(env)
        self.failures = 0  # messages the socket refused (logged once; systemd may be reloading)
        self.on_failure: Callable[[], None] = lambda: None  # the agent counts them in a metric

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, *fields: str) -> bool:
        """Send ``fields`` as one message (one ``KEY=value`` per line); True if it was sent."""
        if self.address is None:
            return False
        message = "\n".join(field.replace("\n", " ") for field in fields).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto(message, self.address)
        except OSError as error:  # counted, logged the first time: the agent runs on without its manager
            self.failures += 1
            self.on_failure()
            if self.failures == 1:
                logger.warning("cannot notify the service manager at %r: %s", self.address, error)
            return False
        return True

    def status(self, text: str) -> bool:
        return self.notify(f"STATUS={text}")

    def ready(self, status: str) -> bool:
        return self.notify("READY=1", f"STATUS={status}")

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def reloading(self, status: str) -> bool:
        return self.notify("RELOADING=1", f"STATUS={status}")

    def reloaded(self, status: str) -> bool:
        return self.notify("READY=1", f"STATUS={status}")

    def stopping(self, status: str = "stopping") -> bool:
        return self.notify("STOPPING=1", f"STATUS={status}")


class Watchdog:
    """Pings every ``WATCHDOG_USEC / 2`` while ``problem(max_stall_s)`` returns None; says why it stopped."""

    def __init__(self, notifier: Notifier, problem: Callable[[float], str | None], status: Callable[[], str]) -> None:
        self.notifier = notifier
        self._problem = problem
        self._status = status
        self._last_ping_s = float("-inf")
        self._last_problem: str | None = None

    def poll(self) -> None:
        """Call often (the supervisor's tick); it pings when due and the pipeline is alive."""
        interval_s = self.notifier.watchdog_interval_s
        now = time.monotonic()
        if interval_s is None or now - self._last_ping_s < interval_s:
            return
        problem = self._problem(max(interval_s, WATCHDOG_MIN_STALL_S))
        if problem != self._last_problem:  # one log line and one status per change
            if problem is not None:
                logger.error("watchdog pings stopped: %s", problem)
            self.notifier.status(f"unhealthy: {problem}" if problem else self._status())
            self._last_problem = problem
        if problem is None:
            self.notifier.watchdog()
            self._last_ping_s = now


def _address(path: str) -> str | bytes | None:
    if not path:
        return None
    if path.startswith("@"):
        return b"\0" + path[1:].encode()
    if not path.startswith("/"):  # sd_notify accepts only absolute paths and abstract names
        logger.warning("NOTIFY_SOCKET %r is neither an absolute path nor an abstract name: not notifying", path)
        return None
    return path


def _watchdog_interval_s(env: Mapping[str, str]) -> float | None:
    """Half of ``WATCHDOG_USEC`` in seconds, or None when the watchdog is off or meant for another process."""
    usec, pid = env.get("WATCHDOG_USEC", ""), env.get("WATCHDOG_PID", "")
    if not usec:
        return None
    if pid and pid != str(os.getpid()):
        return None
    try:
        value = int(usec)
    except ValueError:
        logger.warning("WATCHDOG_USEC %r is not an integer: watchdog pings off", usec)
        return None
    return value / 2e6 if value > 0 else None
