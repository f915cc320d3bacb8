"""The ``edge_agent`` op library: native ops that fused int8 model files call (``fused_ops.cpp``).

``make kernels`` (also part of ``make setup`` and ``make install``) compiles ``fused_ops.cpp`` against
the installed torch into ``libedge_agent_ops.so`` beside this file. :func:`load_ops` loads it once per
process with ``torch.ops.load_library`` and never raises: a missing, stale or corrupt library (or one
built for another torch) gives ``False`` and :func:`ops_status` says why; the model loader then runs the
standard int8 file instead of the fused one (:mod:`edge_agent.modelfile`). ``$EDGE_AGENT_OPS_LIBRARY``
names another library file (tests; an empty value disables the library).
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from edge_agent.common.errors import first_line

logger = logging.getLogger(__name__)

LIBRARY_NAME = "libedge_agent_ops.so"
LIBRARY_ENV = "EDGE_AGENT_OPS_LIBRARY"
SOURCE = Path(__file__).with_name("fused_ops.cpp")
OPS = ("abs_sum", "affine_quantize", "shrink_add_quantize", "shrink_add_head")


@dataclass(frozen=True)
class OpsStatus:
    """Whether the op library is loaded in this process, from where, and if not, why."""

    loaded: bool
    path: str
    reason: str


_lock = threading.Lock()
_status: OpsStatus | None = None


def library_path() -> Path | None:
    """The library to load: ``$EDGE_AGENT_OPS_LIBRARY`` if set (``None`` if set empty), else the built one."""
    override = os.environ.get(LIBRARY_ENV)
    if override is not None:
        return Path(override) if override else None
    return Path(__file__).with_name(LIBRARY_NAME)


def _registered() -> bool:
    import torch

    return all(torch._C._jit_get_operation(f"edge_agent::{name}")[0] is not None for name in OPS)


def _load() -> OpsStatus:
    import torch

    path = library_path()
    if path is None:
        return OpsStatus(False, "", f"disabled (${LIBRARY_ENV} is empty)")
    if not path.is_file():
        return OpsStatus(False, str(path), f"{path} not found (build it with `make kernels`)")
    if SOURCE.is_file() and path.stat().st_mtime < SOURCE.stat().st_mtime and LIBRARY_ENV not in os.environ:
        return OpsStatus(False, str(path), f"{path} is older than {SOURCE.name} (rebuild it with `make kernels`)")
    try:
        torch.ops.load_library(str(path))
    except (OSError, RuntimeError) as error:
        return OpsStatus(False, str(path), f"{path} does not load: {first_line(error)}")
    if not _registered():
        return OpsStatus(False, str(path), f"{path} loaded but does not register the edge_agent ops {', '.join(OPS)}")
    return OpsStatus(True, str(path), "loaded")


def load_ops() -> bool:
    """Load the op library once per process; ``True`` if its ops are registered (never raises)."""
    global _status
    with _lock:
        if _status is None:
            _status = _load()
            if _status.loaded:
                logger.info("loaded the edge_agent op library %s", _status.path)
            else:
                logger.warning("edge_agent op library not available: %s", _status.reason)
        return _status.loaded


def ops_status() -> OpsStatus:
    """What :func:`load_ops` found (loads the library first if it has not run yet)."""
    load_ops()
    assert _status is not None
    return _status
