"""Overload that still alerts (issue 12 item 4, issue 13): the agent at 1x, 3x and 9x its capacity, measured.

    .venv/bin/python benchmarks/bench_overload.py                          # capacity search, then 1x 3x 9x
    .venv/bin/python benchmarks/bench_overload.py --capacity-sensors 45    # skip the search
    .venv/bin/python benchmarks/bench_overload.py --capacity-sensors 45 --factors 1,9 --json /tmp/overload.json
    .venv/bin/python benchmarks/bench_overload.py --capacity-sensors 40 --compare /tmp/old-checkout  # old vs this
    .venv/bin/python benchmarks/bench_overload.py --capacity-sensors 30 --extra-ms-per-batch 50 --receive thread,process
    .venv/bin/python benchmarks/bench_overload.py --capacity-sensors 30 --extra-ms-per-batch 80 --receive process \
        --change-threshold 0,10   # the ingress change detector off and on, alternating

``--receive thread,process``: each load once with paho in the agent's process and once with the
``receive = "process"`` receive process (alternating), the receive process moved to ``--load-cpu``
(``sched_setaffinity`` once it is up), so the agent's core runs only the agent's own threads.
``--change-threshold 0,10``: each load once per value of the source's ``change_threshold`` (0: the
change detector off), alternating; the rows add the detector's marks (``edge_agent_suspect_marks_total
{reason="change"}``) and refusals, and an upper bound of the healthy sensors' false-suspect share of
sensor-seconds (every mark counted as false, the probe's too, each holding ``HOLD_S``).
``--chunk-hops K``: the load sensors send K hops (K x 1024 samples) per message, K times fewer
messages for the same windows (the probe keeps one hop per message); with K = 8 the publishers of a
2-core machine can offer 9x of the shipped model's real capacity (~4,000 messages/s of 32 kB), and
a load past the source's default ``max_sensors`` (1000) raises it in the generated config.
``--agent-env NAME=VALUE`` (repeatable) sets a variable for the agent's process alone, not for the
broker, the publishers or this script: ``--agent-env LD_PRELOAD=libjemalloc.so.2`` runs the agent with the
allocator the unit preloads, ``--agent-env MALLOC_MMAP_THRESHOLD_=33554432 --agent-env
MALLOC_TRIM_THRESHOLD_=134217728`` with the unit's glibc settings.

``--even-load``: the load core does the same work in every row. A row of factor F also streams
(largest factor - F) x capacity sensors from its own publishers into a second mosquitto, read by
``ballast_reader.py`` on the load core as the agent's receive process reads what it sheds (paho, the change
detector, the newest two messages held), so the 1x row's capacity is measured with the load core as busy
as in the 9x row (on a shared VM a busy core slows the other); the rows then differ only in what reaches
the agent's process. (Until 2026-12-02 nobody read the second broker: "Credit on the AVX-512 VNNI EPYC"
in ``docs/benchmarks.md``.)
With ``--agent-cpu-quota`` every row also runs ``machine_probe.py`` on the agent's core in its steady window
(in the room the quota leaves, ~4 % of the core; ``--no-machine-probe``: not): the same unit of work in every
row, so its time says how fast the machine itself was in that row. (Without a quota the agent may use its
whole core, so the probe would take from it: not run.)
``--agent-cpu-quota F``: the agent's process (not its receive process) gets F of its core
(``cpu_quota.py``: a cgroup CPU quota, 10 ms period or ``--quota-period-ms``; root only), which lowers the
capacity with every part of the agent's work in its real proportion (the honest alternative to the knob
below). The throttling itself costs CPU time (the process comes back to caches others used: +26-47 % per
window at 0.2 of a 10 ms period, ``overload_sensors.py --cpu-quota``); a longer period throttles less often.
``--extra-ms-per-batch X``: the agent runs ``slow_model.py``'s copy of the shipped model that
spends X ms more CPU per batch in torch ops (calibrated at the start; outputs unchanged), which
lowers the capacity to what the publishers of a 2-core machine can offer 9x of. Each row prints
how busy each core was (the machine may be shared) and the agent's and the receive process's CPU.

Reuses ``bench_agent.py``'s machinery (its own mosquitto, the agent as a subprocess with the
shipped int8 model, ``agent_publisher.py`` processes streaming real CWRU data in real time, the
``probe`` sensor cycling healthy -> IR007 -> healthy); agent pinned to ``--agent-cpu``, broker,
publishers and this script to ``--load-cpu`` (``taskset``; the machine may be shared: each row
says how much of the agent's core other processes used).

Capacity: the largest of ``--search-steps`` that ``bench_agent`` would call sustained, other jobs on
the agent's core included (they are part of what the agent has now), or ``--capacity-sensors``.
Then for each factor a fresh broker and agent get ``factor x capacity`` sensors plus the probe for
``--warmup-s`` + ``--duration-s`` (long enough for >= 10 probe fault periods of 3.6 s), and the
publishers stop. Per load:

- windows processed/s in the steady window, and its ratio to the 1x row's (the capacity; a warning when
  the 1x row was not saturated: nothing shed and >= 97 % of the offered windows processed, so its rate
  is only a lower bound of the capacity), and to the most any saturated row processed ("/ best saturated");
- probe fault periods in the steady window with a ``new`` alert / all of them;
- windows analysed per sensor in the steady window (``edge_agent_predictions_total``: min, median,
  max; "every sensor analysed" = min > 0), messages shed and windows dropped per sensor;
- RSS: idle before the load, peak (VmHWM), and ``--settle-s`` after the recovery;
- recovery: from the publishers' stop until the inference queue is empty and the agent receives
  no more than the probe (the broker's backlog drained);
- the worst ``/metrics`` scrape during the load.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_agent as ba
from agent_publisher import BIN_S, CHUNK_SAMPLES, PERIOD_S, RATE_HZ, sensor_name
from cpu_quota import CpuQuota
from cpuinfo import cpu_description

from edge_agent.sources.change import HOLD_S

WINDOWS_PER_SENSOR_S = RATE_HZ / CHUNK_SAMPLES  # hop 1024 = chunk: one window per message
PROBE_PERIOD_S = (ba.PROBE_HEALTHY_CHUNKS + ba.PROBE_FAULT_CHUNKS) * PERIOD_S
SATURATED_BELOW = 0.97  # a row that processed less of what was offered (or shed any) ran at its capacity


def by_sensor(s: ba.Scrape, name: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for labels, value in s.samples.get(name, []):
        if "sensor" in labels:
            out[labels["sensor"]] = out.get(labels["sensor"], 0.0) + value
    return out


def delta(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    return {k: v - a.get(k, 0.0) for k, v in b.items()}


def spread(values: list[float]) -> dict[str, float]:
    if not values:
        return {"min": 0.0, "median": 0.0, "max": 0.0}
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def receivers(pid: int) -> list[int]:
    """The agent's spawned children (multiprocessing spawn, not its resource tracker): its receive processes."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            for child in (task / "children").read_text().split():
                if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
                    found.append(int(child))
    return found


def configure(
    agent: ba.Agent, *, receive: str, model: Path | None, change_threshold: float = 0.0, sensors: int = 0
) -> None:
    """The generated config with ``receive``, ``change_threshold``, ``max_sensors`` for a load past the default and
    (``--extra-ms-per-batch``) the slowed model."""
    text = agent.config.read_text()
    extra = f'receive = "{receive}"\n' + (f"change_threshold = {change_threshold}\n" if change_threshold else "")
    if sensors >= ba.MAX_SENSORS:
        extra += f"max_sensors = {sensors + 1}\n"
    text = text.replace("instances = 1\n", f"instances = 1\n{extra}")
    if model is not None:
        text = text.replace(f'path = "{ba.MODEL}"', f'path = "{model}"')
    agent.config.write_text(text)


def overload_run(
    args: argparse.Namespace,
    sensors: int,
    *,
    log: Any,
    code: str | None = None,
    receive: str = "thread",
    model: Path | None = None,
    change_threshold: float = 0.0,
    ballast_sensors: int = 0,
) -> dict[str, Any]:
    """One load on a fresh broker and agent; ``code``: the agent's package from this folder (PYTHONPATH);
    ``ballast_sensors``: also streamed, on the load core, into a second broker and read there (``--even-load``)."""
    d: dict[str, Any] = {"sensors": sensors, "code": code or "this tree", "receive": receive}
    d["ballast_sensors"] = ballast_sensors
    d["change_threshold"] = change_threshold
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-overload-{sensors}-"))
    workdir.chmod(0o755)
    broker = ballast = monitor = agent = probe = reader = machine = None
    publishers: list[Any] = []
    stack = contextlib.ExitStack()
    try:
        quota = stack.enter_context(agent_quota(args)) if args.agent_cpu_quota else None
        broker = ba.Broker(workdir, args.load_cpu)
        monitor = ba.Monitor(broker.port)
        agent = ba.Agent(
            workdir, agent_id=ba.AGENT_ID, broker_port=broker.port, fmt=args.format, qos=args.qos, cpu=args.agent_cpu
        )
        configure(agent, receive=receive, model=model, change_threshold=change_threshold, sensors=sensors)
        with _pythonpath(code):
            agent.spawn()
        online = monitor.wait_status(ba.AGENT_ID, b"online", agent.spawned_at, timeout_s=90)
        if online is None or not agent.alive():
            raise RuntimeError(f"agent did not come online:\n{agent.log_tail()}")
        helper = []
        deadline = time.monotonic() + 60  # "online" comes from the alert sink, before the sources start
        while receive == "process" and not helper and time.monotonic() < deadline:
            time.sleep(0.2)
            helper = receivers(agent.pid)
        if receive == "process" and len(helper) != 1:
            raise RuntimeError(f"expected one receive process, found {helper}")
        if helper and args.load_cpu is not None:  # off the agent's core, beside broker and publishers: every thread
            for task in Path(f"/proc/{helper[0]}/task").iterdir():  # (sched_setaffinity(pid) moves one thread only)
                os.sched_setaffinity(int(task.name), {args.load_cpu})
        if quota is not None:
            quota.add(agent.pid)
            d["agent_cpu_quota"] = quota.describe()
        time.sleep(args.idle_s)
        d["rss_idle_kb"] = ba.proc_status_kb(agent.pid).get("VmRSS", 0)
        run_s = args.warmup_s + args.duration_s

        def stream(folder: Path, port: int, count: int) -> tuple[list[Any], list[Path]]:
            parts = max(1, math.ceil(count / args.sensors_per_publisher))
            return ba.start_publishers(
                folder, port, count, args.format, args.qos, run_s, parts, args.load_cpu, args.chunk_hops
            )

        publishers, reports = stream(workdir, broker.port, sensors)
        if ballast_sensors:
            (workdir / "ballast").mkdir()
            ballast = ba.Broker(workdir / "ballast", args.load_cpu)
            publishers += stream(workdir / "ballast", ballast.port, ballast_sensors)[0]
            reader = start_helper(
                args.load_cpu,
                "ballast_reader.py",
                "--port",
                str(ballast.port),
                "--format",
                args.format,
                "--qos",
                str(args.qos),
                "--threshold",
                str(change_threshold),
                "--out",
                str(workdir / "ballast" / "reads.json"),
            )
            if reader.stdout is None or not reader.stdout.readline().startswith("subscribed"):
                raise RuntimeError("the ballast reader did not subscribe")
        probe = ba.Probe(broker.port, args.format, args.qos)
        t0 = math.ceil(time.time() + 0.5)
        for proc in publishers:
            proc.stdin.write(f"{t0}\n")
            proc.stdin.flush()
        probe.start_at(t0 + 0.5 * PERIOD_S / (sensors + 1))
        t_a = math.ceil((t0 + args.warmup_s) / BIN_S) * BIN_S
        t_b = t0 + run_s  # the publishers stop here
        ba.sleep_until(t_a)
        a = ba.scrape(agent.metrics_port, timeout_s=60)
        cpu_a, cores_a = ba.proc_cpu_s(agent.pid), ba.cores_busy()
        helper_a = ba.proc_cpu_s(helper[0]) if helper else 0.0
        throttled_a = quota.throttled_s() if quota is not None else 0.0
        if args.machine_probe and args.agent_cpu is not None and args.agent_cpu_quota:  # room beside the agent
            machine = start_helper(args.agent_cpu, "machine_probe.py", str(max(1.0, t_b - time.time() - 2.0)))
        scrape_s, rss = [a.seconds], []
        while time.time() < t_b - args.sample_s:
            ba.sleep_until(time.time() + args.sample_s)
            s = ba.scrape(agent.metrics_port, timeout_s=60)
            scrape_s.append(s.seconds)
            rss.append(ba.proc_status_kb(agent.pid).get("VmRSS", 0))
        b = ba.scrape(agent.metrics_port, timeout_s=60)
        wall = b.at - a.at
        cpu_b, cores_b = ba.proc_cpu_s(agent.pid), ba.cores_busy()
        helper_b = ba.proc_cpu_s(helper[0]) if helper else 0.0
        d["agent_throttled_s"] = (quota.throttled_s() - throttled_a) if quota is not None else 0.0
        batches = max(1.0, _moved(a, b, "edge_agent_inference_batch_windows_count"))
        d["batch_mean_windows"] = _moved(a, b, "edge_agent_inference_batch_windows_sum") / batches
        d["inference_s_per_batch"] = _moved(a, b, "edge_agent_inference_duration_seconds_sum") / batches
        d["receiver_rss_kb"] = ba.proc_status_kb(helper[0]).get("VmRSS", 0) if helper else 0
        d["loadavg"] = os.getloadavg()[0]
        if machine is not None:
            d["machine_probe"] = json.loads(machine.communicate(timeout=30)[0] or "{}")
        scrape_s.append(b.seconds)
        d["recovery_s"] = recovery(agent.metrics_port, t_b, limit_s=args.recovery_limit_s)
        recovered_at = time.time()
        status = ba.proc_status_kb(agent.pid)
        d["rss_peak_kb"] = status.get("VmHWM", 0)
        d["rss_end_of_load_kb"] = max(rss, default=0)
        ba.sleep_until(recovered_at + args.settle_s)
        d["rss_after_kb"] = ba.proc_status_kb(agent.pid).get("VmRSS", 0)
        for proc in publishers:
            proc.wait(timeout=60)
        if reader is not None:  # the ballast was read as the receive process reads what it sheds
            ba.stop_process(reader)
            d["ballast_read"] = json.loads((workdir / "ballast" / "reads.json").read_text())
        pub = [json.loads(r.read_text()) for r in reports]
        load_messages = sum(v for p in pub for k, v in p["bins"].items() if t_a <= int(k) * BIN_S + 1e-6 < t_b)
        probe_messages = probe.published_between(t_a, t_b)
        time.sleep(0.5)
        alerts = monitor.alerts(ba.AGENT_ID)
        probe.stop()
        cycles = [c for c in probe.alert_latencies(alerts, after=t_a) if _cycle_start(probe, c) < t_b - 2.0]
        analysed = delta(by_sensor(a, "edge_agent_predictions_total"), by_sensor(b, "edge_agent_predictions_total"))
        shed = delta(by_sensor(a, "edge_agent_messages_shed_total"), by_sensor(b, "edge_agent_messages_shed_total"))
        dropped = delta(
            by_sensor(a, "edge_agent_sensor_windows_dropped_total"),
            by_sensor(b, "edge_agent_sensor_windows_dropped_total"),
        )
        agent_cpu = 100.0 * (cpu_b - cpu_a) / wall
        processed = b.total("edge_agent_windows_processed_total") - a.total("edge_agent_windows_processed_total")
        received = b.total("edge_agent_messages_received_total") - a.total("edge_agent_messages_received_total")
        marks = {
            f"{name}_{reason}": _labelled(b, name, reason) - _labelled(a, name, reason)
            for name in ("edge_agent_suspect_marks_total", "edge_agent_suspect_marks_refused_total")
            for reason in ("change", "fault")
        }
        change_marks = marks["edge_agent_suspect_marks_total_change"]
        d.update(
            {
                "wall_s": wall,
                "target_per_s": (sensors + 1) * WINDOWS_PER_SENSOR_S,
                "chunk_hops": args.chunk_hops,
                "offered_per_s": (load_messages * args.chunk_hops + probe_messages) / (t_b - t_a),  # windows
                "offered_messages_per_s": (load_messages + probe_messages) / (t_b - t_a),
                "received_per_s": received / wall,
                "processed_per_s": processed / wall,
                "probe_periods": len(cycles),
                "probe_alerted": sum(1 for c in cycles if c["alert"]),
                "probe_latency_s": [c.get("latency_s") for c in cycles],
                "analysed_per_sensor": spread([analysed.get(sensor_name(i), 0.0) for i in range(sensors)]),
                "sensors_analysed": sum(1 for i in range(sensors) if analysed.get(sensor_name(i), 0.0) > 0),
                "probe_analysed": analysed.get("probe", 0.0),
                "shed_per_sensor": spread([shed.get(sensor_name(i), 0.0) for i in range(sensors)]),
                "shed_total": sum(shed.values()),
                "dropped_per_sensor": spread([dropped.get(sensor_name(i), 0.0) for i in range(sensors)]),
                "dropped_total": sum(dropped.values()),
                "gaps": b.total("edge_agent_stream_gaps_total") - a.total("edge_agent_stream_gaps_total"),
                "scrape_s_max": max(scrape_s),
                "agent_cpu_percent": agent_cpu,
                "receiver_cpu_percent": 100.0 * (helper_b - helper_a) / wall,
                "cores_busy_percent": ba.busy_percent(cores_a, cores_b),
                "foreign_on_agent_core_percent": (
                    ba.busy_percent(cores_a, cores_b).get(args.agent_cpu, agent_cpu) - agent_cpu
                    if args.agent_cpu is not None
                    else 0.0
                ),
                "publisher_lateness_p99_s": max(p["lateness_p99_s"] for p in pub),
                "marks": marks,
                "false_suspect_share_max": change_marks * HOLD_S / (sensors * wall),
            }
        )
    except Exception as error:  # one failed load must not lose the others
        d["error"] = str(error)
        d["traceback"] = traceback.format_exc()
        if agent is not None:
            d["agent_log_tail"] = agent.log_tail()
    finally:
        for proc in [*publishers, reader, machine]:
            ba.stop_process(proc, sig=signal.SIGKILL)
        if probe is not None:
            with contextlib.suppress(Exception):
                probe.stop()
        if agent is not None:
            ba.stop_process(agent.proc, sig=signal.SIGKILL)
        if monitor is not None:
            monitor.close()
        for server in (broker, ballast):
            if server is not None:
                server.stop()
        stack.close()
        shutil.rmtree(workdir, ignore_errors=True)
    log(json.dumps({k: v for k, v in d.items() if k not in ("traceback", "probe_latency_s")}, default=str))
    return d


def start_helper(cpu: int | None, script: str, *argv: str) -> subprocess.Popen[str]:
    """One of this folder's helper scripts in a subprocess on ``cpu`` (``taskset``), its stdout piped."""
    command = [sys.executable, str(Path(__file__).resolve().parent / script), *argv]
    pinned = command if cpu is None else ["taskset", "-c", str(cpu), *command]
    return subprocess.Popen(pinned, stdout=subprocess.PIPE, text=True)


def agent_quota(args: argparse.Namespace) -> CpuQuota:
    """The agent's CPU quota (``--agent-cpu-quota`` of its core per ``--quota-period-ms``)."""
    return CpuQuota(args.agent_cpu_quota, period_us=round(1000 * args.quota_period_ms))


def saturated(row: dict[str, Any]) -> bool:
    """Whether a row's agent was at its capacity: it shed messages or processed under 97 % of what was offered."""
    return row["shed_total"] > 0 or row["processed_per_s"] < SATURATED_BELOW * row["offered_per_s"]


def _labelled(s: ba.Scrape, name: str, reason: str) -> float:
    return sum(value for labels, value in s.samples.get(name, []) if labels.get("reason") == reason)


def _moved(a: ba.Scrape, b: ba.Scrape, name: str) -> float:
    return b.total(name) - a.total(name)


@contextlib.contextmanager
def _pythonpath(code: str | None) -> Any:
    """The agent spawned inside runs ``code``'s edge_agent (another checkout, e.g. main) when given."""
    before = os.environ.get("PYTHONPATH")
    if code is not None:
        os.environ["PYTHONPATH"] = code
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = before


def _cycle_start(probe: ba.Probe, cycle: dict[str, Any]) -> float:
    period = ba.PROBE_HEALTHY_CHUNKS + ba.PROBE_FAULT_CHUNKS
    first = cycle["cycle"] * period + ba.PROBE_HEALTHY_CHUNKS
    return next((r.published_at for r in probe.records if r.seq == first), math.inf)


def recovery(port: int, stopped_at: float, *, limit_s: float) -> float | None:
    """Seconds from ``stopped_at`` until the queue is empty and only the probe arrives (None: not in time)."""
    ba.sleep_until(stopped_at)
    last = ba.scrape(port, timeout_s=60)
    while time.time() < stopped_at + limit_s:
        time.sleep(0.25)
        now = ba.scrape(port, timeout_s=60)
        received = now.total("edge_agent_messages_received_total") - last.total("edge_agent_messages_received_total")
        probe_only = received <= 2 * (now.at - last.at) * WINDOWS_PER_SENSOR_S + 1
        if probe_only and now.total("edge_agent_inference_queue_windows") <= 1:
            return last.at - stopped_at  # quiet since the previous scrape
        last = now
    return None


def capacity_search(args: argparse.Namespace, *, log: Any) -> int:
    """The largest of ``--search-steps`` that bench_agent calls sustained (the first step if none)."""
    search_args = ba.build_parser().parse_args(["--format", args.format, "--duration-s", "15", "--warmup-s", "5"])
    search_args.agent_cpu, search_args.load_cpu, search_args.qos = args.agent_cpu, args.load_cpu, args.qos
    search_args.retries = 0
    best = args.search_steps[0]
    for sensors in args.search_steps:
        d = ba.load_run(search_args, args.format, sensors, log=log).details
        # sustained as bench_agent judges it, but a core shared with other jobs counts (it is the capacity now)
        if "processed_ratio" not in d or d["processed_ratio"] < ba.SUSTAIN_RATIO or d["dropped"] > 0:
            break
        if d["queue_max"] > ba.QUEUE_BOUND or d["publisher_ratio"] < ba.SUSTAIN_RATIO:
            break
        best = sensors
    return best


def table(rows: list[dict[str, Any]], capacity_per_s: float) -> str:
    """The rows; "/ capacity" against ``capacity_per_s`` (the first row), "/ best saturated" against the most any
    saturated row of these processed (a lower bound of the capacity that an unsaturated first row cannot inflate)."""
    best_per_s = max((r["processed_per_s"] for r in rows if "error" not in r and saturated(r)), default=math.nan)
    head = (
        "| load | receive | sensors | offered windows/s | received messages/s | processed windows/s | / capacity "
        "| / best saturated | probe alerted "
        "| sensors analysed | analysed/sensor min-median-max | shed/sensor min-max | RSS idle / peak / after (MB) "
        "| recovery | worst /metrics | agent / receiver CPU | agent CPU per window | batch | core 0 / core 1 busy "
        "| others on agent core | machine probe | detector | marks change / fault (refused) "
        "| false suspects at most |\n"
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---|---:|---:|---|---:|---|---|---:|---:|---:|---|---:|"
    )
    lines = [head]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['factor']}x | {r['receive']} | {r['sensors']} | error: {r['error']} |")
            continue
        a, s, m = r["analysed_per_sensor"], r["shed_per_sensor"], r["marks"]
        busy = {int(k): v for k, v in r["cores_busy_percent"].items()}
        rec = "-" if r["recovery_s"] is None else f"{r['recovery_s']:.1f} s"
        lines.append(
            f"| {r['factor']}x | {r['receive']} | {r['sensors']} + probe | {r['offered_per_s']:.0f} "
            f"| {r['received_per_s']:.0f} | {r['processed_per_s']:.0f} "
            f"| {r['processed_per_s'] / capacity_per_s:.2f} | {r['processed_per_s'] / best_per_s:.2f} "
            f"| {r['probe_alerted']} / {r['probe_periods']} "
            f"| {r['sensors_analysed']} / {r['sensors']} | {a['min']:.0f} - {a['median']:.0f} - {a['max']:.0f} "
            f"| {s['min']:.0f} - {s['max']:.0f} "
            f"| {r['rss_idle_kb'] / 1024:.0f} / {r['rss_peak_kb'] / 1024:.0f} / {r['rss_after_kb'] / 1024:.0f} "
            f"| {rec} | {r['scrape_s_max']:.2f} s | {r['agent_cpu_percent']:.0f} / {r['receiver_cpu_percent']:.0f} % "
            f"| {10 * r['agent_cpu_percent'] / max(r['processed_per_s'], 1e-9):.2f} ms "
            f"| {r['batch_mean_windows']:.0f} w, {1000 * r['inference_s_per_batch']:.0f} ms "
            f"| {busy.get(0, math.nan):.0f} / {busy.get(1, math.nan):.0f} % "
            f"| {r['foreign_on_agent_core_percent']:.0f} % "
            f"| {r.get('machine_probe', {}).get('unit_ms', math.nan):.2f} ms "
            f"| {r['change_threshold'] or 'off'} "
            f"| {m['edge_agent_suspect_marks_total_change']:.0f} / {m['edge_agent_suspect_marks_total_fault']:.0f} "
            f"({m['edge_agent_suspect_marks_refused_total_change']:.0f} / "
            f"{m['edge_agent_suspect_marks_refused_total_fault']:.0f}) "
            f"| {100 * r['false_suspect_share_max']:.2f} % |"
        )
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--format", choices=("json", "f32le"), default="f32le")
    p.add_argument("--capacity-sensors", type=int, help="skip the search: the agent sustains this many sensors")
    p.add_argument("--search-steps", type=ba.parse_sensors, default=[20, 30, 40, 50, 60, 80])
    p.add_argument("--factors", default="1,3,9", help="loads as multiples of the capacity (default 1,3,9)")
    p.add_argument("--duration-s", type=float, default=40.0, help="steady window per load (>= 10 probe periods)")
    p.add_argument("--warmup-s", type=float, default=6.0)
    p.add_argument("--sample-s", type=float, default=5.0, help="RSS and /metrics sampling interval")
    p.add_argument("--idle-s", type=float, default=2.0)
    p.add_argument("--settle-s", type=float, default=5.0, help="after the recovery, before the 'after' RSS")
    p.add_argument("--recovery-limit-s", type=float, default=60.0)
    p.add_argument("--qos", type=int, choices=(0, 1), default=1)
    p.add_argument("--sensors-per-publisher", type=int, default=150)
    p.add_argument("--chunk-hops", type=int, default=1, help="hops of 1024 samples per load message (default 1)")
    p.add_argument("--agent-cpu", type=int, default=1)
    p.add_argument("--load-cpu", type=int, default=0)
    p.add_argument("--json", type=Path, help="write every measurement as JSON here")
    p.add_argument("--compare", type=Path, help="also run the agent of this checkout (e.g. /work/main), alternating")
    p.add_argument("--receive", default="thread", help="thread, process or both (thread,process), alternating")
    p.add_argument("--agent-cpu-quota", type=float, help="the agent's process gets this fraction of its core")
    p.add_argument("--quota-period-ms", type=float, default=10.0, help="the quota's period (default 10 ms)")
    p.add_argument("--extra-ms-per-batch", type=float, default=0.0, help="slowed model (slow_model.py); 0: shipped")
    p.add_argument("--change-threshold", default="0", help="change_threshold values, alternating (0: detector off)")
    p.add_argument(
        "--agent-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="for the agent's process only, e.g. LD_PRELOAD=libjemalloc.so.2 (as the unit); repeatable",
    )
    p.add_argument(
        "--even-load",
        action="store_true",
        help="each load also streams (largest factor - its factor) x capacity sensors into a broker, read "
        "there as the receive process reads what it sheds (ballast_reader.py)",
    )
    p.add_argument(
        "--no-machine-probe",
        dest="machine_probe",
        action="store_false",
        help="no machine_probe.py on the agent's core during the steady window (run only with --agent-cpu-quota)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if shutil.which("taskset") is None or (os.cpu_count() or 1) < 2:
        print("no taskset or fewer than 2 cores: nothing pinned", file=sys.stderr)
        args.agent_cpu = args.load_cpu = None
    elif args.load_cpu is not None:
        os.sched_setaffinity(0, {args.load_cpu})

    def log(line: str) -> None:
        print(line, flush=True)

    ba.AGENT_ENV.update(item.split("=", 1) for item in args.agent_env)
    if ba.AGENT_ENV:
        log(f"agent environment (the agent's process only): {ba.AGENT_ENV}")

    if args.capacity_sensors is None and (args.agent_cpu_quota or args.chunk_hops > 1 or args.receive != "thread"):
        # the search runs bench_agent's plain load (a whole core, one hop per message, paho in the agent)
        raise SystemExit("--agent-cpu-quota, --chunk-hops and --receive need --capacity-sensors (a 1x run finds it)")
    log(f"CPU: {cpu_description()}")
    log(f"date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC; agent on core {args.agent_cpu}, load on {args.load_cpu}")
    if args.agent_cpu_quota:
        log(f"agent CPU quota: {agent_quota(args).describe()} (its receive process outside it)")
    model = None
    if args.extra_ms_per_batch > 0:
        from slow_model import build

        model = Path(tempfile.mkdtemp(prefix="bench-overload-model-")) / "slowed.pt"
        model.parent.chmod(0o755)
        calibration = build(model, args.extra_ms_per_batch)
        log(f"model: the shipped int8 model + {calibration} per batch (slow_model.py; calibrated on this core now)")
    capacity = args.capacity_sensors or capacity_search(args, log=log)
    log(f"capacity: {capacity} sensors ({capacity * WINDOWS_PER_SENSOR_S:.0f} windows/s offered)")
    codes: list[str | None] = [None] if args.compare is None else [str(args.compare.resolve()), None]
    modes = args.receive.split(",")
    thresholds = [float(t) for t in args.change_threshold.split(",")]
    rows = []
    factors = [int(f) for f in args.factors.split(",")]
    for factor in factors:
        sensors = factor * capacity
        ballast = (max(factors) - factor) * capacity if args.even_load else 0
        for code in codes:  # alternating, so other jobs on the machine hit both alike
            for receive in modes:
                for threshold in thresholds:
                    run = overload_run(
                        args,
                        sensors,
                        log=log,
                        code=code,
                        receive=receive,
                        model=model,
                        change_threshold=threshold,
                        ballast_sensors=ballast,
                    )
                    rows.append({"factor": factor, **run})
    for code in codes:
        for receive, threshold in ((m, t) for m in modes for t in thresholds):
            mine = [
                r
                for r in rows
                if r["code"] == (code or "this tree") and r["receive"] == receive and r["change_threshold"] == threshold
            ]
            first = next((r for r in mine if "error" not in r), None)
            capacity_per_s = first["processed_per_s"] if first else float("nan")
            print(
                f"\nagent code: {code or 'this tree'}, receive = {receive!r}, change_threshold = {threshold:g} "
                f"(capacity: the 1x row's "
                f"{capacity_per_s:.0f} windows/s)"
                + (
                    " (--even-load: each row's load core also streams the largest load's other sensors)"
                    if args.even_load
                    else ""
                )
            )
            print(table(mine, capacity_per_s))
            if first is not None and not saturated(first):
                print(
                    f"WARNING: the {first['factor']}x row was not saturated (processed {first['processed_per_s']:.0f} "
                    f"of {first['offered_per_s']:.0f} windows/s offered, {first['shed_total']:.0f} messages shed): "
                    "its rate is a lower bound of the capacity, so the ratios above overstate what the higher loads "
                    "keep; raise --capacity-sensors"
                )
    if args.json:
        summary = {"capacity_sensors": capacity, "extra_ms_per_batch": args.extra_ms_per_batch, "rows": rows}
        args.json.write_text(json.dumps(summary, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
