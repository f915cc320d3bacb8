"""A warning (or another level) that repeats (one bad message a second) is logged at most once a minute."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Hashable


class RateLimitedLog:
    """At most one warning per key every ``interval_s``; the next one says how many were suppressed."""

    def __init__(
        self, logger: logging.Logger, interval_s: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._logger = logger
        self._interval_s = interval_s
        self._clock = clock
        self._last: dict[Hashable, float] = {}
        self._suppressed: dict[Hashable, int] = {}

    def warning(self, key: Hashable, msg: str, *args: object, exc_info: bool = False) -> bool:
        """Log ``msg % args`` unless ``key`` logged less than ``interval_s`` ago; True if logged."""
        return self.log(logging.WARNING, key, msg, *args, exc_info=exc_info)

    def log(self, level: int, key: Hashable, msg: str, *args: object, exc_info: bool = False) -> bool:
        """:meth:`warning` at ``level``."""
        now = self._clock()
        last = self._last.get(key)
        if last is not None and now - last < self._interval_s:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return False
        self._last[key] = now
        suppressed = self._suppressed.pop(key, 0)
        if suppressed:
            self._logger.log(
                level,
                msg + " (%d similar suppressed in the last %.0f s)",
                *args,
                suppressed,
                self._interval_s,
                exc_info=exc_info,
            )
        else:
            self._logger.log(level, msg, *args, exc_info=exc_info)
        return True
