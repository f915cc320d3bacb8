"""Compile the op library: ``python -m edge_agent.kernels.build`` (what ``make kernels`` runs).

Builds ``fused_ops.cpp`` (with the ``.inc`` files it includes: the glue, the int8 convolutions) against
the torch of this Python into ``libedge_agent_ops.so.1`` beside it, with ``g++`` (or ``$CXX``); skips when
the library is newer than every source (``--force`` rebuilds). One library serves every x86-64 CPU: the
kernels are compiled three times (generic, AVX2, AVX-512; the convolutions' AVX-512 copy with VNNI) and
the library picks the widest the CPU runs when it loads. Flags:
``-O3``, no fused multiply-add (``-ffp-contract=off``: the float glue must round like ATen's), and
``-ffinite-math-only -fno-signed-zeros`` so that the clamps become ``minps``/``maxps`` (the ops promise
nothing for NaN inputs, which the agent's payload checks keep out). Not used by the running agent.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import subprocess
import sys
from pathlib import Path

from edge_agent.kernels import SOURCE_NAMES

logger = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
SOURCES = tuple(HERE / name for name in SOURCE_NAMES)
LIBRARY = HERE / "libedge_agent_ops.so.1"  # no ".so" ending: pkgutil would list it as a module
FLAGS = (
    "-O3",
    "-std=c++20",
    "-fPIC",
    "-shared",
    "-ffp-contract=off",
    "-fno-math-errno",
    "-fno-trapping-math",
    "-ffinite-math-only",
    "-fno-signed-zeros",
    "-Wall",
    "-Wextra",
    "-Wno-unused-parameter",
)


def up_to_date(library: Path = LIBRARY) -> bool:
    """Whether ``library`` exists and is newer than every source."""
    return library.is_file() and all(library.stat().st_mtime >= s.stat().st_mtime for s in SOURCES)


def command(library: Path = LIBRARY) -> list[str]:
    """The compiler command line that builds ``library`` against this Python's torch."""
    import torch

    torch_dir = Path(torch.__file__).resolve().parent
    includes = [torch_dir / "include", torch_dir / "include" / "torch" / "csrc" / "api" / "include"]
    lib_dir = torch_dir / "lib"
    return [
        *shlex.split(os.environ.get("CXX", "g++")),
        *FLAGS,
        *(f"-isystem{path}" for path in includes),
        str(SOURCES[0]),
        f"-L{lib_dir}",
        "-lc10",
        "-ltorch_cpu",
        f"-Wl,-rpath,{lib_dir}",
        "-o",
        str(library),
    ]


def build(library: Path = LIBRARY, *, force: bool = False) -> bool:
    """Compile ``library`` unless it is up to date; ``True`` if it was compiled."""
    if not force and up_to_date(library):
        logger.info("%s is up to date", library)
        return False
    partial = library.with_name(library.name + ".partial")
    args = command(partial)
    logger.info("building %s: %s", library, shlex.join(args))
    subprocess.run(args, check=True)
    partial.replace(library)  # never a half-written library under the loaded name
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--force", action="store_true", help="rebuild even when the library is up to date")
    parser.add_argument("--out", type=Path, default=LIBRARY, help="library to write")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        build(args.out, force=args.force)
    except (ImportError, OSError, subprocess.CalledProcessError) as error:
        print(f"building the op library failed: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
