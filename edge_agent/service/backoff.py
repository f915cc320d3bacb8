"""Capped exponential backoff for what the agent acquires at start: a port, model files (never a crash loop)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

logger = logging.getLogger(__name__)

RETRY_MIN_S, RETRY_MAX_S = 1.0, 30.0


class StartAborted(RuntimeError):
    """A stop was requested while the agent was still acquiring what it needs to start."""


def retry_with_backoff(
    what: str,
    attempt: Callable[[], None],
    *,
    count: Callable[[], None],
    stop: threading.Event,
    say: Callable[[str], object],
    status: str | None = None,
) -> None:
    """Run ``attempt`` until it raises no ``OSError``/``ValueError``, waiting 1 s, 2 s, ... up to 30 s between tries.

    Each failure is counted (``count``), logged and told to the service manager (``say``, a STATUS line);
    ``stop`` set during a wait raises :class:`StartAborted`.
    """
    delay_s = RETRY_MIN_S
    while True:
        try:
            attempt()
            return
        except (OSError, ValueError) as error:
            count()
            logger.error("cannot %s, retrying in %.0f s: %s", what, delay_s, error)
            say(f"{status or 'cannot ' + what} (retry in {delay_s:.0f} s): {error}")
            if stop.wait(delay_s):
                raise StartAborted(f"stopped while trying to {what}") from error
            delay_s = min(2 * delay_s, RETRY_MAX_S)
