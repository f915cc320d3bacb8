"""The ``edge_agent`` op library: native ops that fused int8 model files call (``fused_ops.cpp``).

``make kernels`` (also part of ``make setup`` and ``make install``) compiles ``fused_ops.cpp`` against
the installed torch into ``libedge_agent_ops.so.1`` beside this file. :func:`load_ops` loads it once per
process with ``torch.ops.load_library`` and never raises: a missing, stale or corrupt library (or one
built for another torch) gives ``False`` and :func:`ops_status` says why; the model loader then runs the
standard int8 file instead of the fused one (:mod:`edge_agent.modelfile`). ``$EDGE_AGENT_OPS_LIBRARY``
names another library file (tests; an empty value disables the library).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_agent.common.errors import first_line

logger = logging.getLogger(__name__)

LIBRARY_NAME = "libedge_agent_ops.so.1"  # not "*.so": Python would take that for an extension module
LIBRARY_ENV = "EDGE_AGENT_OPS_LIBRARY"
SOURCE_NAMES = (
    "fused_ops.cpp",
    "fused_kernels.inc",
    "qconv_ops.inc",
    "qconv_kernels.inc",
    "stem_ops.inc",
    "glue_ops.inc",
)  # fused_ops.cpp includes the rest
SOURCES = tuple(Path(__file__).with_name(name) for name in SOURCE_NAMES)
META_KEY = "kernels"  # meta.json of a fused file: {"library": "edge_agent", "fallback": "<standard file>", ...}


class KernelsUnavailableError(ValueError):
    """A fused model file whose op library is not loaded; ``fallback`` is its standard file (or ``None``)."""

    def __init__(self, message: str, fallback: Path | None) -> None:
        super().__init__(message)
        self.fallback = fallback


@dataclass(frozen=True)
class OpsStatus:
    """Whether the op library is loaded in this process, from where, and if not, why."""

    loaded: bool
    path: str
    reason: str
    isa: str = ""  # the kernels' instruction set (generic, avx2, avx512) when loaded


_lock = threading.Lock()
_status: OpsStatus | None = None


def library_path() -> Path | None:
    """The library to load: ``$EDGE_AGENT_OPS_LIBRARY`` if set (``None`` if set empty), else the built one."""
    override = os.environ.get(LIBRARY_ENV)
    if override is not None:
        return Path(override) if override else None
    return Path(__file__).with_name(LIBRARY_NAME)


def _stale(path: Path) -> Path | None:
    """The source newer than ``path`` (a library built before its source changed), if any."""
    mtime = path.stat().st_mtime
    return next((source for source in SOURCES if source.is_file() and source.stat().st_mtime > mtime), None)


def _load() -> OpsStatus:
    import torch

    path = library_path()
    if path is None:
        return OpsStatus(False, "", f"disabled (${LIBRARY_ENV} is empty)")
    if not path.is_file():
        return OpsStatus(False, str(path), f"{path} not found (build it with `make kernels`)")
    stale = _stale(path) if LIBRARY_ENV not in os.environ else None
    if stale is not None:
        return OpsStatus(False, str(path), f"{path} is older than {stale.name} (rebuild it with `make kernels`)")
    try:
        torch.ops.load_library(str(path))
        isa = str(torch.ops.edge_agent.kernel_isa())
    except (OSError, RuntimeError, AttributeError) as error:
        return OpsStatus(False, str(path), f"{path} does not load: {first_line(error)}")
    return OpsStatus(True, str(path), "loaded", isa)


def load_ops() -> bool:
    """Load the op library once per process; ``True`` if its ops are registered (never raises)."""
    global _status
    with _lock:
        if _status is None:
            _status = _load()
            if _status.loaded:
                logger.info("loaded the edge_agent op library %s (%s kernels)", _status.path, _status.isa)
            else:
                logger.warning("edge_agent op library not available: %s", _status.reason)
        return _status.loaded


def ops_status() -> OpsStatus:
    """What :func:`load_ops` found (loads the library first if it has not run yet)."""
    load_ops()
    assert _status is not None
    return _status


def needs_ops(document: Mapping[str, Any], path: Path) -> bool:
    """Whether the model file ``path`` (its meta ``document``) calls the op library; ``ValueError`` if malformed."""
    entry = document.get(META_KEY)
    if entry is None:
        return False
    if not isinstance(entry, Mapping) or entry.get("library") != "edge_agent":
        raise ValueError(f"{path}: meta.json key {META_KEY!r} must name the library 'edge_agent', got {entry!r}")
    return True


def fallback_of(document: Mapping[str, Any], path: Path) -> Path | None:
    """The standard file a fused file ``path`` names (``kernels.fallback``, beside it), ``None`` if none."""
    entry = document.get(META_KEY)
    fallback = entry.get("fallback") if isinstance(entry, Mapping) else None
    if fallback is None:
        return None
    if not isinstance(fallback, str) or not fallback or "/" in fallback or fallback == path.name:
        raise ValueError(
            f"{path}: meta.json key {META_KEY}.fallback must name another file beside it, got {fallback!r}"
        )
    return path.with_name(fallback)


def require_ops(document: Mapping[str, Any], path: Path) -> bool:
    """Load the op library if the model file ``path`` needs it; ``True`` if it does (and it loaded).

    :class:`KernelsUnavailableError` (a ``ValueError``) if the file needs the library and it did not load.
    """
    if not needs_ops(document, path):
        return False
    if not load_ops():
        fallback = fallback_of(document, path)
        standard = f"; its standard file is {fallback.name}" if fallback is not None else ""
        raise KernelsUnavailableError(
            f"{path} needs the edge_agent op library, which is not available: {ops_status().reason}{standard}",
            fallback,
        )
    return True
