"""An exception as one short line (for a log line, a status message or an error that wraps it)."""

from __future__ import annotations


def first_line(error: BaseException) -> str:
    """The first line of ``str(error)``, or the exception's type name when it has no text."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
