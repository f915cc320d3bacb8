"""Where the shared data lives: ``$EDGE_AGENT_DATA``, else ``<repo>/../shared/data``.

Both sides read it: the config loader expands ``${EDGE_AGENT_DATA}`` in paths with it, and the
training tools look for their data sets under it (unless ``--data`` names another folder).
"""

from __future__ import annotations

import os
from pathlib import Path

DATA_ENV = "EDGE_AGENT_DATA"
DATA_PLACEHOLDER = "${" + DATA_ENV + "}"  # expanded in config paths
CREDENTIALS_ENV = "CREDENTIALS_DIRECTORY"  # systemd sets it for a unit with LoadCredential=
CREDENTIALS_PLACEHOLDER = "${" + CREDENTIALS_ENV + "}"  # expanded in config paths, never defaulted
DEFAULT_DATA_ROOT = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def data_root(explicit: str | os.PathLike[str] | None = None) -> Path:
    """``explicit`` if given, else ``$EDGE_AGENT_DATA`` (relative to the working folder), else the default."""
    if explicit:
        return Path(explicit)
    env = os.environ.get(DATA_ENV)
    return Path(env).absolute() if env else DEFAULT_DATA_ROOT


def credentials_dir() -> Path | None:
    """systemd's ``$CREDENTIALS_DIRECTORY`` (``/run/credentials/<unit>``), ``None`` when it is not set."""
    found = os.environ.get(CREDENTIALS_ENV)
    return Path(found) if found else None


def resolve_state_dir(state_dir: str, agent_id: str) -> Path:
    """``agent.state_dir``, else systemd's ``$STATE_DIRECTORY`` (its first entry), else
    ``$XDG_STATE_HOME/edge-agent/<agent.id>`` (``~/.local/state/edge-agent/<agent.id>`` when unset)."""
    if state_dir:
        return Path(state_dir)
    systemd = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
    if systemd:
        return Path(systemd)
    xdg = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(xdg) / "edge-agent" / agent_id
