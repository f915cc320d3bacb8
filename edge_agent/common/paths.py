"""Where the shared data lives: ``$EDGE_AGENT_DATA``, else ``<repo>/../shared/data``.

Both sides read it: the config loader expands ``${EDGE_AGENT_DATA}`` in paths with it, and the
training tools look for their data sets under it (unless ``--data`` names another folder).
"""

from __future__ import annotations

import os
from pathlib import Path

DATA_ENV = "EDGE_AGENT_DATA"
DATA_PLACEHOLDER = "${" + DATA_ENV + "}"  # expanded in config paths
DEFAULT_DATA_ROOT = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def data_root(explicit: str | os.PathLike[str] | None = None) -> Path:
    """``explicit`` if given, else ``$EDGE_AGENT_DATA`` (relative to the working folder), else the default."""
    if explicit:
        return Path(explicit)
    env = os.environ.get(DATA_ENV)
    return Path(env).absolute() if env else DEFAULT_DATA_ROOT
