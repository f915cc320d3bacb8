"""Where an exported model came from: the code version written into ``meta.json``."""

from __future__ import annotations

import subprocess
from pathlib import Path

import edge_agent


def code_version() -> str:
    """``edge_agent.__version__`` plus the git commit (``-dirty`` with local changes), else ``+unknown``."""
    repo = Path(edge_agent.__file__).resolve().parents[1]
    try:
        commit = _git(repo, "rev-parse", "--short", "HEAD")
        dirty = bool(_git(repo, "status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return f"{edge_agent.__version__}+unknown"
    return f"{edge_agent.__version__}+{commit}{'-dirty' if dirty else ''}"


def _git(repo: Path, *args: str) -> str:
    result = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=10, check=True)
    return result.stdout.strip()
