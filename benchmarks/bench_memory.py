"""Where the agent's memory goes before any sensor: RSS after each start-up step, and what batch shapes cost.

    .venv/bin/python benchmarks/bench_memory.py                 # 3 fresh interpreters per variant
    .venv/bin/python benchmarks/bench_memory.py --runs 5 --model models/drsn_cw_bldc_audio.pt

Each variant runs in a fresh interpreter pinned to ``--cpu``, variants taking turns (``--runs`` rounds),
and the table gives the median of each step: RSS (as ``ps`` and the issue's goal count it), PSS (the
process's share of pages it shares with others), anonymous memory (its own) and the mapped files
(``Rss - Anonymous``: library code such as libtorch_cpu.so, clean and reclaimable), from
``/proc/self/smaps_rollup``, plus glibc's bytes in use (``mallinfo2``). The steps are the agent's own:
``import torch``; the runtime's imports (every module but ``nn/`` and ``training/``); ``load_model`` of
the file; the worker's warm-up (batch 1); then one call for every batch size 1 ... ``--max-batch``, as
the worker passes them to the model (padded to a power of two, ``edge_agent.pipeline.inference``), and
the same sizes once more. The variants: the worker's padded batches or every size as it comes (the
agent before issue 13's memory cut), each with glibc's defaults and with the service's allocator
settings (``systemd/edge-agent.service``), on the legacy TorchScript executor that ``load_model``
chooses; and padded batches on torch's default profiling executor (the agent before the second pass).
Prints the CPU; the machine may be shared (memory does not depend on it, times do not appear here).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cpuinfo import cpu_description

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "models" / "drsn_cw_cwru.pt"
UNIT_MALLOC = {"MALLOC_MMAP_THRESHOLD_": "33554432", "MALLOC_TRIM_THRESHOLD_": "134217728"}  # as in the unit

CHILD = r"""
import ctypes, importlib, json, pkgutil, sys
class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]
libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
steps = []
def step(name):
    found = {}
    with open("/proc/self/smaps_rollup") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("Rss", "Pss", "Anonymous"):
                found[key] = int(rest.split()[0]) / 1024
    info = libc.mallinfo2()
    found["malloc"] = (info.uordblks + info.hblkhd) / 2**20
    steps.append((name, found))
model_path, max_batch, padded, executor = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "padded", sys.argv[4]
step("interpreter up")
import torch
step("import torch")
import edge_agent
import edge_agent.modelfile
if executor == "profiling":  # torch's default executor, as the agent ran before issue 13's second memory pass
    edge_agent.modelfile._legacy_executor = lambda: None
for info in pkgutil.walk_packages(edge_agent.__path__, "edge_agent."):
    if not info.name.startswith(("edge_agent.nn", "edge_agent.training")) and not info.name.endswith("__main__"):
        importlib.import_module(info.name)
step("import the runtime (every module)")
from edge_agent.modelfile import load_model
from edge_agent.pipeline.inference import padded_rows
loaded = load_model(model_path)
step("load_model")
torch.set_num_threads(1)
shape = (loaded.channels, loaded.window_samples)
with torch.inference_mode():
    loaded.module(torch.zeros(1, *shape))
    step("warm-up (batch 1)")
    for _ in range(2):
        for windows in range(1, max_batch + 1):
            rows = padded_rows(windows, max_batch) if padded else windows
            loaded.module(torch.randn(rows, *shape))
        step(f"every batch of 1..{max_batch} windows" + (" (again)" if steps[-1][0].startswith("every") else ""))
print(json.dumps(steps))
"""


def run_variant(model: Path, max_batch: int, batches: str, allocator: str, executor: str, cpu: int | None) -> list:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    if allocator == "unit":
        env.update(UNIT_MALLOC)
    argv = [sys.executable, "-W", "ignore", "-c", CHILD, str(model), str(max_batch), batches, executor]
    if cpu is not None:
        argv = ["taskset", "-c", str(cpu), *argv]
    done = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=REPO, timeout=300, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, default=MODEL)
    p.add_argument("--runs", type=int, default=3, help="fresh interpreters per variant (default 3)")
    p.add_argument("--max-batch", type=int, default=32, help="the agent's [inference] max_batch (default 32)")
    p.add_argument("--cpu", type=int, default=1, help="core to pin to (-1: none)")
    args = p.parse_args(argv)
    cpu = None if args.cpu < 0 else args.cpu
    variants = [(b, allocator, "legacy") for b in ("padded", "every size") for allocator in ("glibc", "unit")]
    variants.append(("padded", "glibc", "profiling"))
    print(f"CPU: {cpu_description()}; {os.cpu_count()} cores (the machine may be shared)")
    print(f"model {args.model}, max_batch {args.max_batch}, median of {args.runs} fresh interpreters per variant")
    found: dict[tuple[str, str, str], list[list]] = {v: [] for v in variants}
    for _ in range(args.runs):
        for batches, allocator, executor in variants:
            found[(batches, allocator, executor)].append(
                run_variant(
                    args.model, args.max_batch, "padded" if batches == "padded" else "all", allocator, executor, cpu
                )
            )
    for (batches, allocator, executor), runs in found.items():
        label = "glibc defaults" if allocator == "glibc" else "the unit's MALLOC_* settings"
        print(f"\n### batches: {batches}; allocator: {label}; TorchScript executor: {executor}\n")
        print("| step | RSS MiB | PSS MiB | anonymous MiB | mapped files MiB | malloc in use MiB |")
        print("|---|---:|---:|---:|---:|---:|")
        for i, (name, _values) in enumerate(runs[0]):

            def median(key: str, i: int = i, runs: list[list] = runs) -> float:
                return statistics.median(run[i][1][key] for run in runs)

            rss, anon = median("Rss"), median("Anonymous")
            print(
                f"| {name} | {rss:.1f} | {median('Pss'):.1f} | {anon:.1f} | {rss - anon:.1f} | {median('malloc'):.1f} |"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
