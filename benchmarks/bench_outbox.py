"""Cost per alert of the durable outbox (edge_agent/sinks/outbox.py) at each SQLite ``synchronous`` level.

    .venv/bin/python benchmarks/bench_outbox.py                         # FULL, NORMAL, OFF; 5 rounds of 400
    .venv/bin/python benchmarks/bench_outbox.py --dir /var/lib/edge-agent --out docs/benchmarks.md

Two workloads per level, on a real alert payload (``alert_payload`` of a ``new`` event):

- ``append``: ``Outbox.append`` alone, what ``MqttAlertSink.send`` waits for (the event is on disk
  when it returns);
- ``cycle``: append, take, ack and flush for every alert: the whole life of one alert in the store
  with the worst batching (one delete commit per PUBACK; the agent's pump batches what piles up).

A reference row, ``disk floor``: one 4 KiB ``write`` + ``os.fdatasync`` on a plain file, what any
store that survives power loss pays per alert on this disk (SQLite in WAL mode with FULL syncs
the log once per commit).

Levels take turns in every round, so load from other processes hits all alike. The store lives in
a fresh folder under ``--dir`` (default: the working folder, i.e. the disk the agent would use;
not /tmp, which may be RAM). Prints the machine (CPU model, flags, the file system of ``--dir``)
and a markdown table of per-alert times in milliseconds; ``--out`` rewrites the block between
``<!-- bench_outbox:begin -->`` and ``<!-- bench_outbox:end -->`` in that file.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import platform
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.modules.setdefault("torch", None)  # type: ignore[arg-type]  # AgentMetrics only asks torch for its version
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cpuinfo import cpu_model_and_flags  # noqa: E402

from edge_agent.metrics import AgentMetrics  # noqa: E402
from edge_agent.sinks.alert_schema import alert_payload, encode  # noqa: E402
from edge_agent.sinks.outbox import Outbox  # noqa: E402
from edge_agent.types import AlertEvent  # noqa: E402

logger = logging.getLogger(__name__)

LEVELS = ("FULL", "NORMAL", "OFF")
BEGIN, END = "<!-- bench_outbox:begin (written by benchmarks/bench_outbox.py --out) -->", "<!-- bench_outbox:end -->"


def file_system(folder: Path) -> str:
    """``device on mountpoint type fstype`` of the mount that holds ``folder`` (from /proc/mounts)."""
    best = ("?", "?", "?")
    try:
        for line in Path("/proc/mounts").read_text().splitlines():
            device, mount, fstype = line.split()[:3]
            if str(folder.resolve()).startswith(mount.rstrip("/") + "/") and len(mount) >= len(best[1]):
                best = (device, mount, fstype)
    except OSError:
        pass
    return f"{best[0]} on {best[1]} type {best[2]}"


def sample_payload() -> bytes:
    t0 = 1_795_860_000.0
    event = AlertEvent(
        type="new",
        id="f51e2dc92b2f47399ea00bd9d5eda77a",
        sensor="demo-motor-de",
        kind="fault",
        label="IR007",
        confidence=0.99,
        started_at=t0,
        window_start=t0 - 0.17,
        window_end=t0,
        model_name="bearing",
        model_sha256="ab" * 32,
        probabilities={name: 0.1 for name in ("Normal", "IR007", "IR014", "IR021", "B007", "B014", "OR007")},
    )
    return encode(alert_payload(event, "demo-gateway"))


def run_level(folder: Path, level: str, workload: str, count: int, payload: bytes) -> list[float]:
    """Seconds per alert of ``count`` alerts in a fresh store at ``level``."""
    path = folder / f"{level}-{workload}.sqlite3"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    box = Outbox(path, metrics=AgentMetrics(), max_count=count + 1, synchronous=level)
    times = []
    try:
        for n in range(count):
            started = time.perf_counter()
            row = box.append("edge-agent/demo-gateway/demo-motor-de/alert", payload, event_type="new", alert_id=str(n))
            if workload == "cycle":
                assert box.take() == row
                box.ack(row.seq)
                box.flush()
            times.append(time.perf_counter() - started)
    finally:
        box.close()
    return times


def run_floor(folder: Path, count: int) -> list[float]:
    """Seconds per 4 KiB write + fdatasync on a plain file (the disk's own cost of one durable commit)."""
    fd = os.open(folder / "floor.bin", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    times = []
    try:
        for _ in range(count):
            started = time.perf_counter()
            os.write(fd, b"\0" * 4096)
            os.fdatasync(fd)
            times.append(time.perf_counter() - started)
    finally:
        os.close(fd)
    return times


def table(results: dict[tuple[str, str], list[float]]) -> str:
    lines = [
        "| synchronous | survives | workload | median ms | p99 ms | mean ms | alerts/s (mean) |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    survives = {
        "FULL": "kill -9, power loss",
        "NORMAL": "kill -9; may lose the last commits on power loss",
        "OFF": "kill -9; power loss may damage the file",
        "-": "(reference)",
    }
    for (level, workload), times in results.items():
        ms = sorted(t * 1e3 for t in times)
        p99 = ms[min(len(ms) - 1, int(0.99 * len(ms)))]
        mean = statistics.fmean(ms)
        lines.append(
            f"| {level} | {survives[level]} | {workload} | {statistics.median(ms):.3f} | {p99:.3f} | {mean:.3f} "
            f"| {1e3 / mean:,.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", type=Path, default=Path.cwd(), help="folder on the disk to measure (default: .)")
    parser.add_argument("--levels", default=",".join(LEVELS), help="synchronous levels, e.g. FULL,NORMAL")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--count", type=int, default=400, help="alerts per level, workload and round")
    parser.add_argument("--out", type=Path, help="markdown file whose bench_outbox block is rewritten")
    args = parser.parse_args(argv)
    levels = [level.strip().upper() for level in args.levels.split(",")]
    logging.basicConfig(level=logging.WARNING)
    model, flags = cpu_model_and_flags()
    folder = Path(tempfile.mkdtemp(prefix=".bench-outbox-", dir=args.dir))
    payload = sample_payload()
    results: dict[tuple[str, str], list[float]] = {(lv, wl): [] for lv in levels for wl in ("append", "cycle")}
    results[("-", "disk floor: 4 KiB write + fdatasync")] = []
    try:
        for _ in range(args.rounds):
            results[("-", "disk floor: 4 KiB write + fdatasync")] += run_floor(folder, args.count)
            for workload in ("append", "cycle"):
                for level in levels:  # levels take turns in every round
                    results[(level, workload)] += run_level(folder, level, workload, args.count, payload)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    command = " ".join(["benchmarks/bench_outbox.py", *(argv if argv is not None else sys.argv[1:])])
    header = (
        f"Measured {now} on {os.cpu_count()} cores of {model} (flags: {', '.join(flags) or 'none of interest'}), "
        f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, Linux {platform.release()}; "
        f"store on {file_system(args.dir)} (a local disk); payload {len(payload)} bytes; "
        f"{args.rounds} rounds x {args.count} alerts per level and workload."
    )
    block = f"{header}\n\n```sh\n.venv/bin/python {command}\n```\n\n{table(results)}"
    print(block)
    if args.out is not None:
        text = args.out.read_text()
        if BEGIN in text and END in text:
            before, rest = text.split(BEGIN, 1)
            text = f"{before}{BEGIN}\n{block}\n{END}{rest.split(END, 1)[1]}"
        else:
            text = f"{text.rstrip()}\n\n## Alert outbox: cost per alert\n\n{BEGIN}\n{block}\n{END}\n"
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
