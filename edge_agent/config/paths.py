"""Where the data lives: ``$EDGE_AGENT_DATA``, else ``<repo>/../shared/data`` (runtime and training import this)."""

from __future__ import annotations

import os
from pathlib import Path

DATA_ENV = "EDGE_AGENT_DATA"
DATA_PLACEHOLDER = "${" + DATA_ENV + "}"
DEFAULT_DATA_ROOT = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def data_root() -> Path:
    """``$EDGE_AGENT_DATA`` (relative to the working folder), else ``<repo>/../shared/data``."""
    env = os.environ.get(DATA_ENV)
    return Path(env).absolute() if env else DEFAULT_DATA_ROOT
