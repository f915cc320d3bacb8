"""Which memory allocator this process runs: jemalloc where the service preloads it, else glibc's malloc.

The systemd unit preloads jemalloc (``LD_PRELOAD=libjemalloc.so.2``, Debian's ``libjemalloc2``, which
``make install`` and ``make system`` install): under full load the agent's resident memory is 3-13 MB (median 9)
lower than with glibc's malloc (whose per-thread arenas keep what the receive and inference threads
free for themselves) at the same speed (docs/benchmarks.md, "The service's allocator"). Where the library
is missing the loader only prints a line and the agent runs glibc's malloc with the unit's ``MALLOC_*``
settings; :func:`preload_problem` says so in the agent's own log, and ``edge_agent_build_info`` carries
the allocator that runs as a label.
"""

from __future__ import annotations

import os
from pathlib import Path

JEMALLOC = "libjemalloc"


def _maps() -> str:
    try:
        return Path("/proc/self/maps").read_text()
    except OSError:  # not Linux, or /proc not mounted
        return ""


def allocator(maps: str | None = None) -> str:
    """``jemalloc`` if the library is mapped into this process, ``glibc`` if not, ``unknown`` without /proc."""
    text = _maps() if maps is None else maps
    if not text:
        return "unknown"
    return "jemalloc" if JEMALLOC in text else "glibc"


def preload_problem(environ: dict[str, str] | None = None, maps: str | None = None) -> str | None:
    """What went wrong if ``LD_PRELOAD`` names jemalloc and it is not mapped (the loader ignored it)."""
    preload = (os.environ if environ is None else environ).get("LD_PRELOAD", "")
    if JEMALLOC not in preload or allocator(maps) != "glibc":
        return None
    return (
        f"LD_PRELOAD={preload} names jemalloc, but it is not loaded (not installed? Debian/Ubuntu: "
        "apt install libjemalloc2); running glibc's malloc, with more resident memory under load"
    )
