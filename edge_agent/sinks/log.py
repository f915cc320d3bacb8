"""``log`` sink: every alert event as one line, in the log or, with ``echo`` (the console), there instead.

With ``echo`` the log gets the line at DEBUG only, so a terminal that shows both stdout and the
log (stderr) prints each alert once; ``-v`` shows both."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

from edge_agent.types import AlertEvent

logger = logging.getLogger(__name__)


def describe(event: AlertEvent) -> str:
    """One human line, e.g. ``NEW fault demo-motor-de: IR007 (0.97) id=ab12 window 10:00:01-10:00:02``."""
    start = datetime.fromtimestamp(event.window_start, UTC).strftime("%H:%M:%S.%f")[:-3]
    end = datetime.fromtimestamp(event.window_end, UTC).strftime("%H:%M:%S.%f")[:-3]
    return (
        f"{event.type.upper():<6} {event.kind} {event.sensor}: {event.label} ({event.confidence:.2f}) "
        f"id={event.id} window {start}-{end} UTC"
    )


class LogAlertSink:
    name = "log"

    def __init__(self, *, echo: Callable[[str], None] | None = None) -> None:
        self.echo = echo

    def open(self) -> None:
        """Nothing to acquire."""

    def send(self, event: AlertEvent) -> None:
        line = describe(event)
        if self.echo is None:
            logger.info("alert %s", line)
            return
        logger.debug("alert %s", line)
        self.echo(line)

    def alive(self) -> bool:
        return True

    def close(self, timeout_s: float = 2.0) -> None:
        """Nothing to release."""
