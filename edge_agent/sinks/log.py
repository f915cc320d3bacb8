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
    """One human line, e.g. ``NEW fault pump-3: IR007 (0.97) inner-race fault, 0.18 mm (0.007 in) [warning]
    id=ab12 window 10:00:01.000-10:00:01.170 UTC; machine 'pump 3' at 'hall 2' tags line-2``; an end adds
    its peak confidence and duration, an anomaly alert its score and threshold."""
    start = datetime.fromtimestamp(event.window_start, UTC).strftime("%H:%M:%S.%f")[:-3]
    end = datetime.fromtimestamp(event.window_end, UTC).strftime("%H:%M:%S.%f")[:-3]
    what = f" {event.description}" if event.description and event.description != event.label else ""
    what += f" [{event.severity}]" if event.severity else ""
    if event.score is not None and event.threshold is not None:  # an anomaly alert
        what += f" score {event.score:.4g} (threshold {event.threshold:.4g})"
    line = (
        f"{event.type.upper():<6} {event.kind} {event.sensor}: {event.label} ({event.confidence:.2f}){what} "
        f"id={event.id} window {start}-{end} UTC"
    )
    if event.type == "end" and event.ended_at is not None:
        peak = event.confidence if event.peak_confidence is None else event.peak_confidence
        line += f"; peak {peak:.2f} over {event.ended_at - event.started_at:.1f} s"
    place = [f"machine {event.machine!r}"] if event.machine else []
    place += [f"at {event.location!r}"] if event.location else []
    place += [f"tags {','.join(event.tags)}"] if event.tags else []
    return line + ("; " + " ".join(place) if place else "")


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
