"""How many 12 kHz sensors one core of the agent sustains in real time over MQTT, its latency, memory and start-up.

    .venv/bin/python benchmarks/bench_agent.py --search                          # both formats, find the largest N
    .venv/bin/python benchmarks/bench_agent.py --format json --sensors 50,100,200
    .venv/bin/python benchmarks/bench_agent.py --search --out docs/benchmarks.md  # also rewrite the doc's section
    .venv/bin/python benchmarks/bench_agent.py --instances 1,2 --search           # sensors per gateway: 1, 2 instances
    .venv/bin/python benchmarks/bench_agent.py --instances 2 --sensors 40 --restart  # an instance restarting
    .venv/bin/python benchmarks/bench_agent.py --drop-cost      # another instance's message against an own one

Everything runs on loopback and stops by itself; every process it starts (broker, agent,
publishers) is killed at the end, also on errors. For each load it starts:

- its own mosquitto on a free loopback port (``max_queued_messages`` raised, log to a file),
  pinned to the load core (``taskset -c 0``);
- the agent, ``.venv/bin/python -m edge_agent run --config <generated toml>``, pinned to the agent
  core (``taskset -c 1``), ``[inference] threads = 1``, the shipped int8 model (window 2048, hop
  1024 from its meta), one mqtt source on ``bench/+/vibration`` with the format under test and
  ``/metrics`` on a free port;
- publisher processes (``agent_publisher.py``, pinned to the load core) streaming N sensors of
  real CWRU data in real time: 1024-sample chunks at 12 kHz, ~11.7 messages (= windows) per
  sensor per second, their phases spread over the period;
- one extra sensor ``probe`` published from this process that cycles healthy (record 097) ->
  fault (record 105, IR007) -> healthy, to time alerts: from publishing the chunk that completed
  the deciding window (read back from the alert's ``window.end``) to the ``new`` alert arriving.

After a warm-up, a steady window of ``--duration-s`` seconds is measured from the agent's
``/metrics`` (scraped at its start and end and every ``--sample-s`` in between) and ``/proc``.
"Sustains in real time" means, over the steady window: windows processed >= 99 % of the
windows offered (one per chunk published), no window dropped, the inference queue never above
``4 x max_batch`` (128) in any sample, no payload error, and the publishers on target (>= 99 %
of the nominal rate; otherwise the run says ``publisher-limited`` and does not count).

End-to-end latency quantiles come from the agent's ``edge_agent_end_to_end_latency_seconds``
histogram (arrival of a window's last sample at the agent -> decision), interpolated linearly
inside buckets as Prometheus' ``histogram_quantile`` does. Start-up: median of ``--startup-runs``
spawns, from ``Popen`` to the retained ``online`` on ``edge-agent/<id>/status`` (subscribed before
the spawn), and to the first window processed (a sensor streams from before the spawn).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import math
import os
import platform
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.request
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho

sys.path.insert(0, str(Path(__file__).resolve().parent))
from agent_publisher import (
    BIN_S,
    CHUNK_SAMPLES,
    FAULT_KEY,
    HEALTHY_KEY,
    PERIOD_S,
    RATE_HZ,
    Encoder,
    held_out_chunks,
    sensor_name,
)
from cpu_quota import CpuQuota
from cpuinfo import cpu_description

REPO = Path(__file__).resolve().parents[1]
AGENT_ENV: dict[str, str] = {}  # set for the agent's process only (bench_overload --agent-env), not for the load
HOST = "127.0.0.1"
MODEL = REPO / "models" / "drsn_cw_cwru_fused.pt"  # the shipped default (config.toml); --model to change
AGENT_ID = "bench"
PREFIX = "edge-agent"
MAX_BATCH = 32  # the agent's defaults
MAX_WAIT_S = 0.02
QUEUE_WINDOWS = 512
QUEUE_BOUND = 4 * MAX_BATCH
SUSTAIN_RATIO = 0.99
FOREIGN_LIMIT_PERCENT = 10.0  # other processes' CPU on the agent's core above this: the run is repeated
SEARCH_STEPS = (25, 50, 100, 150, 200, 300, 400, 600, 800)
MAX_SENSORS = 999  # the source's max_sensors is 1000 and the probe is one more
PROBE_HEALTHY_CHUNKS = 30  # 2.6 s: the alert ends (n - k windows + hold-off 1 s) before the next fault
PROBE_FAULT_CHUNKS = 12  # 1.0 s: enough for k = 3 of n = 5
GOALS = {"sensors": 200, "p99_ms": 50.0, "rss_mb": 250.0, "startup_s": 3.0, "rss_above_torch_mb": 40.0}
SECTION_BEGIN = "<!-- bench_agent:begin (written by benchmarks/bench_agent.py --out) -->"
SECTION_END = "<!-- bench_agent:end -->"
INT8_HEADING = "## Model inference: int8 versus float32"


# ----------------------------------------------------------------------------- small helpers


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def mosquitto_path() -> str:
    found = shutil.which("mosquitto", path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin"]))
    if found is None:
        raise SystemExit("mosquitto is not installed (apt-get install -y mosquitto)")
    return found


def unprivileged_prefix() -> list[str]:
    """Run the broker as ``nobody`` when we are root (as the integration tests do)."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        return []
    prefix = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
    probe = subprocess.run([*prefix, "true"], capture_output=True, timeout=10, check=False)
    return prefix if probe.returncode == 0 else []


def pinned(cpu: int | None, argv: list[str]) -> list[str]:
    return argv if cpu is None else ["taskset", "-c", str(cpu), *argv]


def stop_process(proc: subprocess.Popen[Any] | None, *, sig: int = signal.SIGTERM, timeout_s: float = 10.0) -> None:
    """Signal one process we started and reap it; SIGKILL if it does not go in time."""
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(sig)
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait(timeout=timeout_s)


def proc_status_kb(pid: int) -> dict[str, int]:
    """VmRSS, VmHWM and the RSS split (RssAnon: the process's own; RssFile: mapped files such as libtorch) in kB."""
    values: dict[str, int] = {}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem"):
                values[key] = int(rest.split()[0])
    return values


CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_cpu_s(pid: int, tid: int | None = None) -> float:
    """utime + stime of a process (or one of its threads) in seconds."""
    path = f"/proc/{pid}/stat" if tid is None else f"/proc/{pid}/task/{tid}/stat"
    try:
        text = Path(path).read_text()
    except OSError:
        return float("nan")
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # fields 14 and 15 of stat(5)


def thread_cpu_s(pid: int) -> dict[int, float]:
    try:
        tids = sorted(int(t) for t in os.listdir(f"/proc/{pid}/task"))
    except OSError:
        return {}
    return {tid: proc_cpu_s(pid, tid) for tid in tids}


# The agent's threads in the order App.start() creates them (thread ids grow), for this benchmark's
# configuration: metrics on, one mqtt source, the mqtt alert sink. Later ones (none seen) are "other".
AGENT_THREADS = ("main", "metrics http", "inference", "alerts pump", "alerts mqtt", "source mqtt")


def thread_name(index: int) -> str:
    return AGENT_THREADS[index] if index < len(AGENT_THREADS) else f"other {index}"


def torch_rss_kb() -> int:
    """VmRSS (kB) of a fresh interpreter that imported torch and nothing else: issue 13's RSS goal is relative to it."""
    python = REPO / ".venv" / "bin" / "python"
    code = "import torch\nprint([line.split()[1] for line in open('/proc/self/status') if line.startswith('VmRSS')][0])"
    argv = [str(python if python.exists() else sys.executable), "-c", code]
    return int(subprocess.run(argv, capture_output=True, text=True, timeout=120, check=True).stdout.split()[-1])


def cores_busy() -> dict[int, tuple[float, float]]:
    """Per core: (busy, total) jiffies from /proc/stat."""
    result: dict[int, tuple[float, float]] = {}
    for line in Path("/proc/stat").read_text().splitlines():
        m = re.match(r"cpu(\d+) (.*)", line)
        if m:
            values = [float(v) for v in m.group(2).split()]
            idle = values[3] + values[4]  # idle + iowait
            result[int(m.group(1))] = (sum(values[:8]) - idle, sum(values[:8]))
    return result


def busy_percent(before: dict[int, tuple[float, float]], after: dict[int, tuple[float, float]]) -> dict[int, float]:
    out = {}
    for cpu, (busy, total) in after.items():
        b0, t0 = before.get(cpu, (0.0, 0.0))
        out[cpu] = 100.0 * (busy - b0) / max(total - t0, 1e-9)
    return out


def parse_iso(text: str) -> float:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def sleep_until(t: float) -> None:
    delay = t - time.time()
    if delay > 0:
        time.sleep(delay)


# ----------------------------------------------------------------------------- metrics


_SAMPLE_RE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)")
_LABEL_RE = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


@dataclass
class Scrape:
    """One /metrics text, parsed into (name, labels) -> value; ``at`` is the wall time of the request."""

    at: float
    seconds: float  # how long the scrape took
    samples: dict[str, list[tuple[dict[str, str], float]]]

    def total(self, name: str, **match: str) -> float:
        return sum(v for labels, v in self.samples.get(name, []) if all(labels.get(k) == x for k, x in match.items()))

    def buckets(self, name: str) -> list[tuple[float, float]]:
        """Cumulative (le, count) of a histogram, summed over its other labels, ascending le."""
        acc: dict[float, float] = {}
        for labels, v in self.samples.get(f"{name}_bucket", []):
            le = float(labels["le"])
            acc[le] = acc.get(le, 0.0) + v
        return sorted(acc.items())


def scrape(port: int, timeout_s: float = 10.0) -> Scrape:
    started = time.time()
    with urllib.request.urlopen(f"http://{HOST}:{port}/metrics", timeout=timeout_s) as response:
        text = response.read().decode()
    took = time.time() - started
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for line in text.splitlines():
        if not line or line[0] == "#":
            continue
        m = _SAMPLE_RE.match(line)
        if m is None:
            continue
        labels = dict(_LABEL_RE.findall(m.group(2) or ""))
        samples.setdefault(m.group(1), []).append((labels, float(m.group(3))))
    return Scrape(started, took, samples)


def bucket_delta(a: list[tuple[float, float]], b: list[tuple[float, float]]) -> list[tuple[float, float]]:
    before = dict(a)
    return [(le, count - before.get(le, 0.0)) for le, count in b]


def histogram_quantile(q: float, buckets: list[tuple[float, float]]) -> tuple[float, bool]:
    """Prometheus' ``histogram_quantile``: linear inside the bucket, 0 as the first lower bound.

    Returns (value, capped): ``capped`` when the quantile lies in the +Inf bucket (value is then
    the largest finite bound, a lower limit of the truth). NaN without observations.
    """
    if not buckets or buckets[-1][1] <= 0:
        return float("nan"), False
    total = buckets[-1][1]
    rank = q * total
    lower_le, lower_count = 0.0, 0.0
    for le, count in buckets:
        if count >= rank:
            if math.isinf(le):
                return lower_le, True
            if count == lower_count:
                return le, False
            return lower_le + (le - lower_le) * (rank - lower_count) / (count - lower_count), False
        lower_le, lower_count = le, count
    return lower_le, True


def hist_mean(a: Scrape, b: Scrape, name: str) -> float:
    count = b.total(f"{name}_count") - a.total(f"{name}_count")
    return (b.total(f"{name}_sum") - a.total(f"{name}_sum")) / count if count > 0 else float("nan")


# ----------------------------------------------------------------------------- broker, monitor, agent


class Broker:
    """A mosquitto of our own on a free loopback port, pinned to ``cpu``."""

    def __init__(self, workdir: Path, cpu: int | None) -> None:
        self.port = free_port()
        self.log_path = workdir / "mosquitto.log"
        config = workdir / "mosquitto.conf"
        config.write_text(
            f"listener {self.port} {HOST}\n"
            "allow_anonymous true\n"
            "max_queued_messages 1000000\n"
            "log_dest stderr\n"  # redirected to log_path below (a file: a pipe nobody reads would block it)
            "log_type error\nlog_type warning\nlog_type notice\n"
        )
        config.chmod(0o644)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                pinned(cpu, [*unprivileged_prefix(), mosquitto_path(), "-c", str(config)]),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                cwd=workdir,
            )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited with {self.proc.returncode}: {self.log_path.read_text()[-2000:]}")
            try:
                socket.create_connection((HOST, self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError(f"mosquitto did not listen on {HOST}:{self.port}")

    def stop(self) -> None:
        stop_process(self.proc, sig=signal.SIGKILL)


@dataclass
class Message:
    at: float  # wall time of arrival
    topic: str
    payload: bytes


class Monitor:
    """A paho client that records, with arrival times, every status and alert of every agent id."""

    def __init__(self, port: int) -> None:
        self.messages: list[Message] = []
        self._cond = threading.Condition()
        self._subscribed = threading.Event()
        self._client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"bench-monitor-{os.getpid()}")
        self._client.on_connect = lambda c, *_: c.subscribe([(f"{PREFIX}/+/status", 1), (f"{PREFIX}/+/+/alert", 1)])
        self._client.on_subscribe = lambda *_: self._subscribed.set()
        self._client.on_message = self._on_message
        self._client.connect(HOST, port, keepalive=30)
        self._client.loop_start()
        if not self._subscribed.wait(10):
            raise RuntimeError("monitor: no SUBACK in 10 s")

    def _on_message(self, _c: paho.Client, _u: Any, msg: paho.MQTTMessage) -> None:
        at = time.time()
        with self._cond:
            self.messages.append(Message(at, msg.topic, bytes(msg.payload)))
            self._cond.notify_all()

    def wait_status(self, agent_id: str, value: bytes, after: float, timeout_s: float) -> float | None:
        """Arrival time of the first ``value`` on the agent's status topic after ``after``, or None."""
        topic = f"{PREFIX}/{agent_id}/status"
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while True:
                for m in self.messages:
                    if m.topic == topic and m.payload == value and m.at >= after:
                        return m.at
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._cond.wait(min(remaining, 0.1))

    def alerts(self, agent_id: str) -> list[tuple[float, str, dict[str, Any]]]:
        prefix = f"{PREFIX}/{agent_id}/"
        with self._cond:
            found = [m for m in self.messages if m.topic.startswith(prefix) and m.topic.endswith("/alert")]
        return [(m.at, m.topic.split("/")[2], json.loads(m.payload)) for m in found]

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


def agent_config(
    path: Path,
    *,
    agent_id: str,
    broker_port: int,
    metrics_port: int,
    fmt: str,
    qos: int,
    max_batch: int = MAX_BATCH,
    max_wait_s: float = MAX_WAIT_S,
    indicators: bool = False,
    instances: int = 1,
) -> Path:
    binary = f"sample_rate_hz = {float(RATE_HZ)}\n" if fmt != "json" else ""
    indicator_table = INDICATORS_TABLE if indicators else ""
    path.write_text(
        f"""# generated by benchmarks/bench_agent.py
[agent]
id = "{agent_id}"
log_level = "info"
[mqtt]
enabled = true
host = "{HOST}"
port = {broker_port}
reconnect_min_s = 0.2
reconnect_max_s = 1.0
[metrics]
enabled = true
listen = "{HOST}"
port = {metrics_port}
[inference]
threads = 1
max_batch = {max_batch}
max_wait_s = {max_wait_s}
queue_windows = {QUEUE_WINDOWS}
[decision]
hold_off_s = 1.0   # short hold-off and no cooldown: the probe sensor repeats its fault every few seconds
cooldown_s = 0.0
[[models]]
name = "bearing"
path = "{MODEL}"
[[sources]]
type = "mqtt"
name = "bench"
topic = "bench/+/vibration"
sensor_level = 1
format = "{fmt}"
qos = {qos}
instances = {instances}
{binary}models = ["bearing"]
{indicator_table}"""
    )
    return path


# the shipped demo's indicators (config.toml): three band levels and an ISO zone, on every sensor
INDICATORS_TABLE = """[sources.indicators]
unit = "g"
bands_hz = [[10, 1000], [1000, 3000], [3000, 6000]]
machine_group = 2
"""


class Agent:
    """The agent as a subprocess (``taskset -c cpu``), its metrics port and its log file."""

    def __init__(
        self,
        workdir: Path,
        *,
        agent_id: str,
        broker_port: int,
        fmt: str,
        qos: int,
        cpu: int | None,
        max_batch: int = MAX_BATCH,
        max_wait_s: float = MAX_WAIT_S,
        indicators: bool = False,
        instance: int | None = None,
        instances: int = 1,
    ):
        """``instance`` of ``instances``: ``run --instance N``, publishing as ``<agent_id>-N`` (config/instances.py)."""
        self.agent_id = agent_id if instance is None else f"{agent_id}-{instance}"
        self.metrics_port = free_port()
        name = self.agent_id
        self.config = agent_config(
            workdir / f"{name}.toml",
            agent_id=agent_id,
            broker_port=broker_port,
            metrics_port=self.metrics_port - (instance or 0),  # an instance listens on metrics.port + N
            fmt=fmt,
            qos=qos,
            max_batch=max_batch,
            max_wait_s=max_wait_s,
            indicators=indicators,
            instances=instances,
        )
        self.log_path = workdir / f"{name}.log"
        python = REPO / ".venv" / "bin" / "python"
        argv = [str(python if python.exists() else sys.executable), "-m", "edge_agent", "run", "--config"]
        extra = [] if instance is None else ["--instance", str(instance)]
        self.argv = pinned(cpu, [*argv, str(self.config), *extra])
        self.proc: subprocess.Popen[bytes] | None = None
        self.spawned_at = 0.0

    def spawn(self) -> None:
        with open(self.log_path, "wb") as log:
            self.spawned_at = time.time()
            env = {**os.environ, **AGENT_ENV}
            self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, cwd=REPO, env=env)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid  # taskset execs the agent: same pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> float:
        """SIGTERM; seconds until it exited (killed after 10 s)."""
        started = time.monotonic()
        stop_process(self.proc, sig=signal.SIGTERM, timeout_s=10.0)
        return time.monotonic() - started

    def log_tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""


# ----------------------------------------------------------------------------- probe sensor


@dataclass
class ProbeRecord:
    seq: int
    published_at: float
    fault: bool
    cycle: int


class Probe(threading.Thread):
    """One more sensor, ``probe``: healthy for 30 chunks, fault (IR007) for 12, repeated, in real time."""

    def __init__(self, port: int, fmt: str, qos: int, *, cycles: bool = True, client_id: str = "bench-probe") -> None:
        super().__init__(name="probe", daemon=True)
        self.fmt, self.qos, self.cycles = fmt, qos, cycles
        self.healthy = Encoder(held_out_chunks(HEALTHY_KEY), fmt)
        self.fault = Encoder(held_out_chunks(FAULT_KEY), fmt)
        self.records: list[ProbeRecord] = []
        self.t0 = 0.0
        self._halt = threading.Event()
        self._client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"{client_id}-{os.getpid()}")
        self._client.max_inflight_messages_set(1000)
        self._client.connect(HOST, port, keepalive=30)
        self._client.loop_start()

    def start_at(self, t0: float) -> None:
        self.t0 = t0
        self.start()

    def run(self) -> None:
        period = PROBE_HEALTHY_CHUNKS + PROBE_FAULT_CHUNKS
        seq = 0
        while not self._halt.is_set():
            due = self.t0 + (seq + 1) * PERIOD_S
            sleep_until(due)
            cycle, position = divmod(seq, period)
            fault = self.cycles and position >= PROBE_HEALTHY_CHUNKS
            encoder = self.fault if fault else self.healthy
            payload = encoder.payload(seq, seq, self.t0 + seq * PERIOD_S)
            now = time.time()
            self._client.publish("bench/probe/vibration", payload, qos=self.qos)
            self.records.append(ProbeRecord(seq, now, fault, cycle))
            seq += 1

    def stop(self) -> None:
        self._halt.set()
        if self.is_alive():
            self.join(timeout=5)
        self._client.disconnect()
        self._client.loop_stop()

    def published_between(self, a: float, b: float) -> int:
        return sum(1 for r in self.records if a <= r.published_at < b)

    def alert_latencies(self, alerts: list[tuple[float, str, dict[str, Any]]], after: float) -> list[dict[str, Any]]:
        """Per fault episode that started after ``after``: the ``new`` alert's latency from the deciding chunk."""
        records = list(self.records)
        by_seq = {r.seq: r for r in records}
        first_fault = {}
        for r in records:
            if r.fault and r.cycle not in first_fault:
                first_fault[r.cycle] = r
        news = [(at, doc) for at, sensor, doc in alerts if sensor == "probe" and doc.get("type") == "new"]
        out = []
        for cycle, start in sorted(first_fault.items()):
            if start.published_at < after or start.published_at > records[-1].published_at - 2.0:
                continue
            cycle_end = start.published_at + (PROBE_FAULT_CHUNKS + PROBE_HEALTHY_CHUNKS) * PERIOD_S
            found = [(at, doc) for at, doc in news if start.published_at <= at < cycle_end]
            if not found:
                out.append({"cycle": cycle, "alert": False})
                continue
            at, doc = found[0]
            window_end = parse_iso(doc["window"]["end"])
            if self.fmt == "json":  # exact: the window ends one sample period after the chunk's last sample
                seq = round((window_end - PERIOD_S - self.t0) / PERIOD_S)
            else:  # binary chunks carry no time: the agent stamps them on arrival (nearest publish)
                seq = min(by_seq, key=lambda s: abs(by_seq[s].published_at - window_end))
            deciding = by_seq.get(seq)
            if deciding is None:
                out.append({"cycle": cycle, "alert": True, "latency_s": None})
                continue
            out.append(
                {
                    "cycle": cycle,
                    "alert": True,
                    "label": doc.get("label"),
                    "fault_chunk": seq - start.seq + 1,  # 1: the window of the last healthy and first fault chunk
                    "latency_s": at - deciding.published_at,
                    # the brief's reference point: the third window made only of fault data (fault chunks 3 and 4)
                    "latency_from_third_pure_fault_window_s": (
                        at - by_seq[start.seq + 3].published_at if start.seq + 3 in by_seq else None
                    ),
                }
            )
        return out


# ----------------------------------------------------------------------------- one load run


@dataclass
class RunResult:
    fmt: str
    sensors: int
    qos: int
    ok: bool = False
    verdict: str = ""
    details: dict[str, Any] = field(default_factory=dict)


def start_publishers(
    workdir: Path,
    port: int,
    sensors: int,
    fmt: str,
    qos: int,
    duration_s: float,
    parts: int,
    cpu: int | None,
    chunk_hops: int = 1,
) -> tuple[list[subprocess.Popen[str]], list[Path]]:
    procs: list[subprocess.Popen[str]] = []
    reports: list[Path] = []
    script = Path(__file__).resolve().parent / "agent_publisher.py"
    for part in range(parts):
        report = workdir / f"publisher-{part}.json"
        reports.append(report)
        argv = [sys.executable, str(script), "--port", str(port), "--sensors", str(sensors), "--part", str(part)]
        argv += ["--parts", str(parts), "--format", fmt, "--qos", str(qos), "--duration-s", str(duration_s)]
        argv += ["--report", str(report), "--chunk-hops", str(chunk_hops)]
        procs.append(
            subprocess.Popen(
                pinned(cpu, argv),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=open(workdir / f"publisher-{part}.err", "w"),  # noqa: SIM115  (closed with the process)
                text=True,
                cwd=REPO,
            )
        )
    for proc in procs:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if line.strip() != "ready":
            raise RuntimeError(f"publisher did not get ready: {line!r} (see {workdir}/publisher-*.err)")
    return procs, reports


def tear_down(publishers: list, agents: list, monitor: Any, broker: Any, workdir: Path, keep: bool, d: dict) -> None:
    """Kill what a load run started (publishers first, then the agents), close the monitor, stop the broker,
    and remove the work folder unless ``keep`` (then ``d["workdir"]`` says where it is)."""
    for proc in publishers:
        stop_process(proc, sig=signal.SIGKILL)
    for agent in agents:
        stop_process(agent.proc, sig=signal.SIGKILL)
    if monitor is not None:
        monitor.close()
    if broker is not None:
        broker.stop()
    if keep:
        d["workdir"] = str(workdir)
    else:
        shutil.rmtree(workdir, ignore_errors=True)


def load_run(args: argparse.Namespace, fmt: str, sensors: int, *, log: Any) -> RunResult:
    """One broker, one agent, N sensors + the probe; measures the steady window."""
    result = RunResult(fmt, sensors, args.qos)
    d = result.details
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-agent-{fmt}-{sensors}-"))
    workdir.chmod(0o755)
    broker: Broker | None = None
    monitor: Monitor | None = None
    agent: Agent | None = None
    probe: Probe | None = None
    publishers: list[subprocess.Popen[str]] = []
    try:
        broker = Broker(workdir, args.load_cpu)
        monitor = Monitor(broker.port)
        agent = Agent(
            workdir,
            agent_id=AGENT_ID,
            broker_port=broker.port,
            fmt=fmt,
            qos=args.qos,
            cpu=args.agent_cpu,
            max_batch=args.max_batch,
            max_wait_s=args.max_wait_s,
            indicators=args.indicators,
        )
        agent.spawn()
        online = monitor.wait_status(AGENT_ID, b"online", agent.spawned_at, timeout_s=90)
        if online is None or not agent.alive():
            raise RuntimeError(f"agent did not come online:\n{agent.log_tail()}")
        d["startup_online_s"] = online - agent.spawned_at
        time.sleep(args.idle_s)
        idle = proc_status_kb(agent.pid)
        d["rss_idle_kb"] = idle.get("VmRSS")
        d["rss_idle_split_kb"] = idle
        parts = args.publishers or max(1, math.ceil(sensors / args.sensors_per_publisher))
        d["publishers"] = parts
        run_s = args.warmup_s + args.duration_s + 2.0
        publishers, reports = start_publishers(
            workdir, broker.port, sensors, fmt, args.qos, run_s, parts, args.load_cpu
        )
        probe = Probe(broker.port, fmt, args.qos)
        t0 = math.ceil(time.time() + 0.5)
        for proc in publishers:
            assert proc.stdin is not None
            proc.stdin.write(f"{t0}\n")
            proc.stdin.flush()
        probe.start_at(t0 + 0.5 * PERIOD_S / (sensors + 1))
        # steady window on the publishers' 0.1 s count grid
        t_a = math.ceil((t0 + args.warmup_s) / BIN_S) * BIN_S
        t_b = t_a + args.duration_s
        sleep_until(t_a)
        a = scrape(agent.metrics_port)
        cpu_a, threads_a, cores_a = proc_cpu_s(agent.pid), thread_cpu_s(agent.pid), cores_busy()
        broker_cpu_a = proc_cpu_s(broker.proc.pid)
        depths, rss, scrape_s = [a.total("edge_agent_inference_queue_windows")], [], [a.seconds]
        next_sample = t_a + args.sample_s
        while next_sample < t_b - 0.5 * args.sample_s:
            sleep_until(next_sample)
            s = scrape(agent.metrics_port)
            depths.append(s.total("edge_agent_inference_queue_windows"))
            scrape_s.append(s.seconds)
            rss.append(proc_status_kb(agent.pid).get("VmRSS", 0))
            next_sample += args.sample_s
        sleep_until(t_b)
        b = scrape(agent.metrics_port)
        wall = b.at - a.at
        cpu_b, threads_b, cores_b = proc_cpu_s(agent.pid), thread_cpu_s(agent.pid), cores_busy()
        broker_cpu_b = proc_cpu_s(broker.proc.pid)
        depths.append(b.total("edge_agent_inference_queue_windows"))
        scrape_s.append(b.seconds)
        status = proc_status_kb(agent.pid)
        rss.append(status.get("VmRSS", 0))
        d["rss_end_split_kb"] = status
        for proc in publishers:
            proc.wait(timeout=run_s + 30)
        probe.stop()
        time.sleep(0.5)  # last alerts
        pub = [json.loads(r.read_text()) for r in reports]
        published = sum(v for p in pub for k, v in p["bins"].items() if t_a <= int(k) * BIN_S + 1e-6 < t_b)
        published += probe.published_between(t_a, t_b)
        target = (sensors + 1) * RATE_HZ / CHUNK_SAMPLES
        offered = published / args.duration_s
        processed = (
            b.total("edge_agent_windows_processed_total") - a.total("edge_agent_windows_processed_total")
        ) / wall
        received = (
            b.total("edge_agent_messages_received_total") - a.total("edge_agent_messages_received_total")
        ) / wall
        latency = bucket_delta(
            a.buckets("edge_agent_end_to_end_latency_seconds"), b.buckets("edge_agent_end_to_end_latency_seconds")
        )
        p50, p50_capped = histogram_quantile(0.5, latency)
        p99, p99_capped = histogram_quantile(0.99, latency)
        agent_cpu = 100.0 * (cpu_b - cpu_a) / wall
        alerts = monitor.alerts(AGENT_ID)
        d.update(
            {
                "t_a": t_a,
                "wall_s": wall,
                "target_per_s": target,
                "offered_per_s": offered,
                "publisher_ratio": offered / target,
                "received_per_s": received,
                "processed_per_s": processed,
                "processed_ratio": processed / offered if offered else float("nan"),
                "dropped": b.total("edge_agent_windows_dropped_total") - a.total("edge_agent_windows_dropped_total"),
                "payload_errors": b.total("edge_agent_payload_errors_total")
                - a.total("edge_agent_payload_errors_total"),
                "gaps": b.total("edge_agent_stream_gaps_total") - a.total("edge_agent_stream_gaps_total"),
                "queue_max": max(depths),
                "queue_samples": depths,
                "latency_p50_s": p50,
                "latency_p50_capped": p50_capped,
                "latency_p99_s": p99,
                "latency_p99_capped": p99_capped,
                "latency_buckets": latency,
                "inference_batch_mean_s": hist_mean(a, b, "edge_agent_inference_duration_seconds"),
                "batch_mean": hist_mean(a, b, "edge_agent_inference_batch_windows"),
                "agent_cpu_percent": agent_cpu,
                "agent_cpu_percent_per_sensor": agent_cpu / (sensors + 1),
                "agent_threads_cpu_percent": {
                    thread_name(i): round(100.0 * (threads_b.get(tid, 0.0) - t0_) / wall, 1)
                    for i, (tid, t0_) in enumerate(sorted(threads_a.items()))
                },
                "cores_busy_percent": {str(k): round(v, 1) for k, v in busy_percent(cores_a, cores_b).items()},
                # what else ran on the agent's core (another job on the machine makes the run meaningless)
                "foreign_on_agent_core_percent": (
                    busy_percent(cores_a, cores_b).get(args.agent_cpu, agent_cpu) - agent_cpu
                    if args.agent_cpu is not None
                    else 0.0
                ),
                "broker_cpu_percent": 100.0 * (broker_cpu_b - broker_cpu_a) / wall,
                "rss_max_kb": max(rss),
                "rss_hwm_kb": status.get("VmHWM"),
                "scrape_s_max": max(scrape_s),
                "publisher_lateness_p99_s": max(p["lateness_p99_s"] for p in pub),
                "publisher_lateness_max_s": max(p["lateness_max_s"] for p in pub),
                "false_alerts": sum(1 for _at, s, doc in alerts if s != "probe" and doc.get("type") == "new"),
                "probe_alerts": probe.alert_latencies(alerts, after=t_a),
            }
        )
        d["stop_s"] = agent.stop()
        result.ok, result.verdict = judge(d)
    except Exception as error:  # one failed run must not stop a search; the error goes in the table
        result.ok, result.verdict = False, f"error: {error}"
        d["traceback"] = traceback.format_exc()
        if agent is not None:
            d["agent_log_tail"] = agent.log_tail()
    finally:
        if probe is not None:
            with contextlib.suppress(Exception):
                probe.stop()
        tear_down(publishers, [agent] if agent is not None else [], monitor, broker, workdir, args.keep, d)
    log(row_line(result))
    return result


def measured_run(args: argparse.Namespace, fmt: str, sensors: int, *, log: Any) -> RunResult:
    """:func:`load_run`, repeated (up to ``--retries`` times) while other processes disturb the agent's core."""
    for attempt in range(args.retries + 1):
        if attempt:
            log(f"  (repeating {fmt} N = {sensors}: another process used the agent's core; waiting for quiet)")
            wait_quiet(args.agent_cpu)
        result = load_run(args, fmt, sensors, log=log)
        if not result.verdict.startswith("disturbed"):
            break
    return result


def wait_quiet(cpu: int | None, limit_s: float = 120.0) -> None:
    """Wait (bounded) until the core is below FOREIGN_LIMIT_PERCENT busy over 3 s."""
    if cpu is None:
        return
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        before = cores_busy()
        time.sleep(3.0)
        if busy_percent(before, cores_busy()).get(cpu, 0.0) < FOREIGN_LIMIT_PERCENT:
            return


def load_problems(d: dict[str, Any]) -> list[str]:
    """What keeps a run (one agent or a gateway of instances) from counting as sustained."""
    problems = []
    if d["processed_ratio"] < SUSTAIN_RATIO:
        problems.append(f"processed {100 * d['processed_ratio']:.1f} % of offered")
    if d["dropped"] > 0:
        problems.append(f"{d['dropped']:.0f} dropped")
    if d["queue_max"] > QUEUE_BOUND:
        problems.append(f"queue up to {d['queue_max']:.0f}")
    if d["payload_errors"] > 0:
        problems.append(f"{d['payload_errors']:.0f} payload errors")
    return problems


def verdict(problems: list[str]) -> tuple[bool, str]:
    return (not problems), ("sustained" if not problems else "not sustained: " + ", ".join(problems))


def judge(d: dict[str, Any]) -> tuple[bool, str]:
    if d["foreign_on_agent_core_percent"] > FOREIGN_LIMIT_PERCENT:
        return False, f"disturbed ({d['foreign_on_agent_core_percent']:.0f} % of the agent's core used by others)"
    if d["publisher_ratio"] < SUSTAIN_RATIO:
        return False, f"publisher-limited ({100 * d['publisher_ratio']:.1f} % of target)"
    problems = load_problems(d)
    return verdict(problems)


# ----------------------------------------------------------------------------- start-up


def startup_runs(args: argparse.Namespace, fmt: str, runs: int, *, log: Any) -> list[dict[str, float]]:
    """Spawn the agent ``runs`` times: seconds to ``online`` and to the first window processed."""
    workdir = Path(tempfile.mkdtemp(prefix="bench-agent-startup-"))
    workdir.chmod(0o755)
    out: list[dict[str, float]] = []
    broker = monitor = probe = None
    try:
        broker = Broker(workdir, args.load_cpu)
        monitor = Monitor(broker.port)
        probe = Probe(broker.port, fmt, args.qos, cycles=False, client_id="bench-startup-probe")
        probe.start_at(time.time())
        for i in range(runs):
            agent = Agent(
                workdir, agent_id=f"bench-start{i}", broker_port=broker.port, fmt=fmt, qos=args.qos, cpu=args.agent_cpu
            )
            try:
                agent.spawn()
                first_window = None
                deadline = time.monotonic() + 90
                while first_window is None and time.monotonic() < deadline and agent.alive():
                    try:
                        if scrape(agent.metrics_port, timeout_s=2).total("edge_agent_windows_processed_total") >= 1:
                            first_window = time.time() - agent.spawned_at
                    except OSError:
                        pass
                    time.sleep(0.01)
                online = monitor.wait_status(agent.agent_id, b"online", agent.spawned_at, timeout_s=5)
                if online is None or first_window is None:
                    raise RuntimeError(f"start-up run {i}: agent not up:\n{agent.log_tail()}")
                rss = proc_status_kb(agent.pid)
                stop_s = agent.stop()
                stopped = monitor.wait_status(agent.agent_id, b"stopped", agent.spawned_at, timeout_s=5)
                out.append(
                    {
                        "online_s": online - agent.spawned_at,
                        "first_window_s": first_window,
                        "rss_kb": rss.get("VmRSS", 0),
                        "stop_s": stop_s,
                        "stopped_published": stopped is not None,
                    }
                )
                log(f"  start-up {i + 1}/{runs}: online {out[-1]['online_s']:.2f} s, first window {first_window:.2f} s")
            finally:
                stop_process(agent.proc, sig=signal.SIGKILL)
            time.sleep(1.0)
    finally:
        if probe is not None:
            probe.stop()
        if monitor is not None:
            monitor.close()
        if broker is not None:
            broker.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return out


# ----------------------------------------------------------------------------- search and report


def search(
    args: argparse.Namespace,
    fmt: str,
    *,
    log: Any,
    run: Any = None,
    steps: tuple[int, ...] = SEARCH_STEPS,
) -> list[RunResult]:
    """Step up through ``steps`` until a load fails, then bisect down to ``--resolution`` sensors.

    ``run(n)``: one measured load (default :func:`measured_run` of one agent)."""
    if run is None:

        def run(n: int) -> RunResult:
            return measured_run(args, fmt, n, log=log)

    results: list[RunResult] = []
    best, worst = 0, None
    for n in steps:
        if n > MAX_SENSORS:
            break
        r = run(n)
        results.append(r)
        if r.ok:
            best = n
        else:
            worst = n
            break
    while worst is not None and worst - best > args.resolution:
        n = (best + worst) // 2
        n = max(best + 1, min(worst - 1, round(n / 5) * 5 or n))
        r = run(n)
        results.append(r)
        if r.ok:
            best = n
        else:
            worst = n
    return results


def fmt_ms(seconds: float | None, capped: bool = False) -> str:
    if seconds is None or (isinstance(seconds, float) and math.isnan(seconds)):
        return "-"
    return f"{'>' if capped else ''}{1000 * seconds:.1f}"


def row_line(r: RunResult) -> str:
    d = r.details
    if "processed_per_s" not in d:
        return f"| {r.fmt} | {r.sensors} | | | | | | | | | | | | | {r.verdict} |"
    return (
        f"| {r.fmt} | {r.sensors} | {d['offered_per_s']:.0f} ({100 * d['publisher_ratio']:.1f} %) "
        f"| {d['processed_per_s']:.0f} ({100 * d['processed_ratio']:.1f} %) | {d['dropped']:.0f} "
        f"| {d['queue_max']:.0f} | {d['payload_errors']:.0f} / {d['gaps']:.0f} "
        f"| {fmt_ms(d['latency_p50_s'], d['latency_p50_capped'])} "
        f"| {fmt_ms(d['latency_p99_s'], d['latency_p99_capped'])} "
        f"| {d['batch_mean']:.1f} | {d['agent_cpu_percent']:.0f} | {d['agent_cpu_percent_per_sensor']:.2f} "
        f"| {d['rss_max_kb'] / 1024:.0f} / {d['rss_hwm_kb'] / 1024:.0f} "
        f"| {d['foreign_on_agent_core_percent']:.0f} | {r.verdict} |"
    )


TABLE_HEAD = (
    "| format | sensors | offered windows/s (of target) | processed/s (of offered) | dropped | max queue "
    "| payload errors / gaps | e2e p50 ms | e2e p99 ms | mean batch | agent CPU % | CPU %/sensor "
    "| RSS / HWM MB | others on agent core % | verdict |\n"
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
)


def machine() -> dict[str, str]:
    cpu = cpu_description()
    try:
        mosq = subprocess.run([mosquitto_path(), "-h"], capture_output=True, text=True, timeout=10).stdout
        mosq = mosq.splitlines()[0].strip()
    except (OSError, IndexError, subprocess.SubprocessError):
        mosq = "mosquitto ?"

    def version(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "?"

    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "python": platform.python_version(),
        "torch": version("torch"),
        "paho-mqtt": version("paho-mqtt"),
        "prometheus-client": version("prometheus-client"),
        "broker": mosq,
        "kernel": platform.release(),
    }


def summarize(
    args: argparse.Namespace, runs: dict[str, list[RunResult]], startup: list[dict[str, float]]
) -> tuple[str, dict[str, Any]]:
    """The markdown section and a summary dict (max N per format, latency, RSS, start-up, goals)."""
    m = machine()
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"Measured {now} on {m['cores']} cores of an {m['cpu']} (x86-64), Python {m['python']}, "
        f"torch {m['torch']} (CPU), paho-mqtt {m['paho-mqtt']}, {m['broker']}, Linux {m['kernel']}.",
        "",
        "```sh",
        "# from the repository root",
        shlex.join([".venv/bin/python", *sys.argv]),
        "```",
        "",
        f"Agent on core {args.agent_cpu} (`taskset`), `[inference] threads = 1`, `max_batch = {args.max_batch}`, "
        f"`max_wait_s = {args.max_wait_s:g}`, "
        f"model `{MODEL.relative_to(REPO) if MODEL.is_relative_to(REPO) else MODEL}` (int8, window 2048, hop 1024), "
        f"MQTT QoS {args.qos} end to end; "
        f"broker, publishers and this script on core {args.load_cpu}. Warm-up {args.warmup_s:g} s, then a "
        f"steady window of {args.duration_s:g} s per load. N sensors plus the probe sensor; windows offered "
        f"= chunks published in the steady window (one window per 1024-sample chunk).",
        "",
        TABLE_HEAD,
    ]
    summary: dict[str, Any] = {"machine": m, "date": now, "formats": {}}
    for fmt, results in runs.items():
        for r in sorted(results, key=lambda r: r.sensors):
            lines.append(row_line(r))
        passed = [r for r in results if r.ok]
        best = max(passed, key=lambda r: r.sensors) if passed else None
        failed_above = [r.sensors for r in results if not r.ok and (best is None or r.sensors > best.sensors)]
        summary["formats"][fmt] = {
            "max_sustained": best.sensors if best else 0,
            "first_failed": min(failed_above) if failed_above else None,
        }
    lines += ["", "| format | most sensors sustained | first load that failed |", "|---|---:|---:|"]
    for fmt, s in summary["formats"].items():
        lines.append(f"| {fmt} | **{s['max_sustained']}** | {s['first_failed'] or '-'} |")

    # latency, probe alerts, RSS and CPU at N = 200 if sustained, else at the largest sustained N
    lines += ["", "### Latency and memory under load", ""]
    for fmt, results in runs.items():
        passed = [r for r in results if r.ok]
        if not passed:
            lines.append(f"- {fmt}: no load was sustained.")
            continue
        at200 = [r for r in passed if r.sensors == GOALS["sensors"]]
        r = at200[0] if at200 else max(passed, key=lambda r: r.sensors)
        d = r.details
        probes = [p for p in d["probe_alerts"] if p.get("latency_s") is not None]
        missed = sum(1 for p in d["probe_alerts"] if not p.get("alert"))
        lat = sorted(p["latency_s"] for p in probes)
        positions = sorted({p["fault_chunk"] for p in probes})
        summary["formats"][fmt].update(
            {
                "latency_at": r.sensors,
                "e2e_p50_s": d["latency_p50_s"],
                "e2e_p99_s": d["latency_p99_s"],
                "alert_latencies_s": lat,
                "rss_idle_kb": d["rss_idle_kb"],
                "rss_max_kb": d["rss_max_kb"],
                "rss_hwm_kb": d["rss_hwm_kb"],
                "cpu_percent_per_sensor": d["agent_cpu_percent_per_sensor"],
            }
        )
        lat_text = ", ".join(f"{1000 * x:.0f}" for x in lat) or "none"
        quant = ""
        if len(lat) >= 2:
            quant = (
                f"; median {1000 * statistics.median(lat):.0f} ms, max {1000 * lat[-1]:.0f} ms "
                f"(too few for a p99: the max stands in for it)"
            )
        lines.append(
            f"- **{fmt}, N = {r.sensors}** (+ probe): end-to-end (agent histogram, window's last sample "
            f"received -> decision) p50 **{fmt_ms(d['latency_p50_s'], d['latency_p50_capped'])} ms**, "
            f"p99 **{fmt_ms(d['latency_p99_s'], d['latency_p99_capped'])} ms**; mean batch "
            f"{d['batch_mean']:.1f} windows, {1000 * d['inference_batch_mean_s']:.1f} ms per batch. "
            f"Alert latency (deciding chunk published -> `new` alert received, measured outside the agent): "
            f"{lat_text} ms over {len(lat)} fault episodes{quant}; missed alerts: {missed}; the deciding "
            f"window was completed by fault chunk {positions} of each episode (1 = the window half healthy, "
            f"half fault). Agent RSS idle {d['rss_idle_kb'] / 1024:.0f} MB, under load up to "
            f"{d['rss_max_kb'] / 1024:.0f} MB (VmHWM {d['rss_hwm_kb'] / 1024:.0f} MB; at the end "
            f"{rss_split(d['rss_end_split_kb'])}); agent CPU "
            f"{d['agent_cpu_percent']:.0f} % of one core = {d['agent_cpu_percent_per_sensor']:.2f} % per sensor "
            f"(threads: {threads_text(d['agent_threads_cpu_percent'])}); "
            f"core busy: {d['cores_busy_percent']}; broker {d['broker_cpu_percent']:.0f} % CPU; publisher "
            f"lateness p99 {1000 * d['publisher_lateness_p99_s']:.1f} ms (max "
            f"{1000 * d['publisher_lateness_max_s']:.1f} ms); false alerts on the load sensors: "
            f"{d['false_alerts']}."
        )
    if startup:
        online = [s["online_s"] for s in startup]
        first = [s["first_window_s"] for s in startup]
        summary["startup"] = {
            "online_median_s": statistics.median(online),
            "first_window_median_s": statistics.median(first),
            "runs": startup,
        }
        lines += [
            "",
            "### Start-up",
            "",
            f"{len(startup)} spawns (one sensor streaming {args.startup_format} from before each spawn): "
            f"`Popen` -> retained `online` median **{statistics.median(online):.2f} s** "
            f"(min {min(online):.2f}, max {max(online):.2f}); -> first window processed median "
            f"**{statistics.median(first):.2f} s** (min {min(first):.2f}, max {max(first):.2f}); RSS right "
            f"after the first window {statistics.median([s['rss_kb'] for s in startup]) / 1024:.0f} MB; "
            f"SIGTERM -> exit median {statistics.median([s['stop_s'] for s in startup]):.2f} s, `stopped` "
            f"published {sum(s['stopped_published'] for s in startup)}/{len(startup)}.",
        ]
    lines += ["", "### Goals", "", "| goal | result | met? |", "|---|---|---|"]
    if any("rss_hwm_kb" in s for s in summary["formats"].values()):
        summary["torch_rss_kb"] = torch_rss_kb()
    lines += goal_rows(summary)
    return "\n".join(lines) + "\n", summary


def rss_split(status: dict[str, int]) -> str:
    anon, files = status.get("RssAnon", 0) / 1024, status.get("RssFile", 0) / 1024
    return f"{anon:.0f} MB anonymous + {files:.0f} MB mapped files"


def threads_text(threads: dict[str, float]) -> str:
    busy = sorted(((v, k) for k, v in threads.items() if v >= 0.5), reverse=True)
    return ", ".join(f"{name} {value:.0f} %" for value, name in busy)


def goal_rows(summary: dict[str, Any]) -> list[str]:
    rows = []
    fmts = summary["formats"]
    for fmt, s in fmts.items():
        n = s["max_sustained"]
        rows.append(f"| >= {GOALS['sensors']} sensors per core ({fmt}) | {n} | {'met' if n >= 200 else 'missed'} |")
    for fmt, s in fmts.items():
        if "e2e_p99_s" not in s:
            continue
        p99 = s["e2e_p99_s"]
        lat = s["alert_latencies_s"]
        worst = max(lat) if lat else float("nan")
        met = p99 * 1000 <= GOALS["p99_ms"] and (not lat or worst * 1000 <= GOALS["p99_ms"])
        rows.append(
            f"| p99 <= {GOALS['p99_ms']:.0f} ms after the deciding window ({fmt}, N = {s['latency_at']}) "
            f"| histogram p99 {1000 * p99:.1f} ms; alert max {1000 * worst:.0f} ms | {'met' if met else 'missed'} |"
        )
    for fmt, s in fmts.items():
        if "rss_hwm_kb" not in s:
            continue
        worst_mb = max(s["rss_hwm_kb"], s["rss_max_kb"]) / 1024
        rows.append(
            f"| RSS <= {GOALS['rss_mb']:.0f} MB ({fmt}, N = {s['latency_at']}) | idle {s['rss_idle_kb'] / 1024:.0f} "
            f"MB, peak {worst_mb:.0f} MB | {'met' if worst_mb <= GOALS['rss_mb'] else 'missed'} |"
        )
        if "torch_rss_kb" in summary:
            torch_mb = summary["torch_rss_kb"] / 1024
            above = worst_mb - torch_mb
            rows.append(
                f"| RSS <= `import torch` + {GOALS['rss_above_torch_mb']:.0f} MB ({fmt}, N = {s['latency_at']}) "
                f"| peak {above:.0f} MB above `import torch` ({torch_mb:.0f} MB) "
                f"| {'met' if above <= GOALS['rss_above_torch_mb'] else 'missed'} |"
            )
    if "startup" in summary:
        t = summary["startup"]["online_median_s"]
        rows.append(
            f"| start-up <= {GOALS['startup_s']:.0f} s to `online` | median {t:.2f} s "
            f"| {'met' if t <= GOALS['startup_s'] else 'missed'} |"
        )
    return rows


def write_section(path: Path, section: str) -> None:
    """Replace the generated block of ``path`` (create the file with the doc's skeleton if missing)."""
    block = f"{SECTION_BEGIN}\n{section}{SECTION_END}\n"
    if path.exists():
        text = path.read_text()
        if SECTION_BEGIN in text and SECTION_END in text:
            before = text[: text.index(SECTION_BEGIN)]
            after = text[text.index(SECTION_END) + len(SECTION_END) :].lstrip("\n")
            path.write_text(before + block + "\n" + after)
            return
        raise SystemExit(f"{path} has no generated block ({SECTION_BEGIN!r}); not touching it")
    path.write_text(
        "# Benchmarks\n\n## Agent over MQTT: sensors per core, latency, memory, start-up\n\n"
        f"{block}\n{INT8_HEADING}\n\n(see below)\n"
    )


# ----------------------------------------------------------------------------- instances: sensors per gateway

GATEWAY_STEPS = (25, 50, 75, 100, 150, 200, 300)
GATEWAY_HEAD = (
    "| instances | sensors | offered windows/s (of target) | processed/s (of offered) | dropped | max queue "
    "| payload errors | sensors in 2 instances / in none (per instance) | foreign msgs/s per instance "
    "| agent CPU % per instance | broker CPU % | cores busy % | verdict |\n"
    "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
)


def gateway_run(args: argparse.Namespace, fmt: str, sensors: int, count: int, *, log: Any) -> RunResult:
    """``count`` agent instances (instance i pinned to core i) sharing N sensors of one source (instances = count).

    The broker, the publishers and this script are not pinned: on a machine with ``count`` cores they
    share the agents' cores. Sustained: the instances together process >= 99 % of the windows offered,
    none dropped, no instance's queue above 4 x max_batch, no payload error, and every sensor's windows
    cut by exactly one instance (``edge_agent_windows_total`` by sensor, read from each instance)."""
    result = RunResult(fmt, sensors, args.qos)
    d = result.details
    d["instances"] = count
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-gateway-{count}-{fmt}-{sensors}-"))
    workdir.chmod(0o755)
    broker: Broker | None = None
    monitor: Monitor | None = None
    agents: list[Agent] = []
    publishers: list[subprocess.Popen[str]] = []
    pin = shutil.which("taskset") is not None and (os.cpu_count() or 1) >= count
    quota = args.agent_cpu_quota  # each instance F of core --agent-cpu, broker and publishers on --load-cpu
    stack = contextlib.ExitStack()
    try:
        broker = Broker(workdir, args.load_cpu if quota else None)
        monitor = Monitor(broker.port)
        for instance in range(count):
            agents.append(
                Agent(
                    workdir,
                    agent_id=AGENT_ID,
                    broker_port=broker.port,
                    fmt=fmt,
                    qos=args.qos,
                    cpu=args.agent_cpu if quota else (instance if pin else None),
                    max_batch=args.max_batch,
                    max_wait_s=args.max_wait_s,
                    instance=instance,
                    instances=count,
                )
            )
            if args.subscribe_own and count > 1:  # each instance: its own sensors' topics
                listed = ", ".join(f'"{sensor_name(i)}"' for i in range(sensors))
                text = agents[-1].config.read_text()
                own = f"instances = {count}\nsubscribe_own = true\nsensors = [{listed}]\n"
                agents[-1].config.write_text(text.replace(f"instances = {count}\n", own))
            agents[-1].spawn()
            if quota:
                stack.enter_context(CpuQuota(quota)).add(agents[-1].pid)
        for agent in agents:
            online = monitor.wait_status(agent.agent_id, b"online", agent.spawned_at, timeout_s=120)
            if online is None or not agent.alive():
                raise RuntimeError(f"{agent.agent_id} did not come online:\n{agent.log_tail()}")
        time.sleep(args.idle_s)
        parts = args.publishers or max(1, math.ceil(sensors / args.sensors_per_publisher))
        restarts = args.restart and count > 1
        run_s = args.warmup_s + args.duration_s + 2.0 + (RESTART_BUDGET_S if restarts else 0.0)
        load_cpu = args.load_cpu if quota else None
        publishers, reports = start_publishers(workdir, broker.port, sensors, fmt, args.qos, run_s, parts, load_cpu)
        t0 = math.ceil(time.time() + 0.5)
        for proc in publishers:
            assert proc.stdin is not None
            proc.stdin.write(f"{t0}\n")
            proc.stdin.flush()
        t_a = math.ceil((t0 + args.warmup_s) / BIN_S) * BIN_S
        t_b = t_a + args.duration_s
        sleep_until(t_a)
        first = [scrape(agent.metrics_port) for agent in agents]
        cpu_a, cores_a = [proc_cpu_s(agent.pid) for agent in agents], cores_busy()
        broker_a = proc_cpu_s(broker.proc.pid)
        depths = [first[i].total("edge_agent_inference_queue_windows") for i in range(count)]
        next_sample = t_a + args.sample_s
        while next_sample < t_b - 0.5 * args.sample_s:
            sleep_until(next_sample)
            for i, agent in enumerate(agents):
                depths[i] = max(depths[i], scrape(agent.metrics_port).total("edge_agent_inference_queue_windows"))
            next_sample += args.sample_s
        sleep_until(t_b)
        last = [scrape(agent.metrics_port) for agent in agents]
        cpu_b, cores_b = [proc_cpu_s(agent.pid) for agent in agents], cores_busy()
        broker_b = proc_cpu_s(broker.proc.pid)
        for i in range(count):
            depths[i] = max(depths[i], last[i].total("edge_agent_inference_queue_windows"))
        if restarts:
            d["restarts"] = restart_cycles(agents, monitor, log=log)
        for proc in publishers:
            proc.wait(timeout=run_s + 30)
        pub = [json.loads(r.read_text()) for r in reports]
        published = sum(v for p in pub for k, v in p["bins"].items() if t_a <= int(k) * BIN_S + 1e-6 < t_b)

        def delta(name: str, i: int) -> float:
            return last[i].total(name) - first[i].total(name)

        walls = [last[i].at - first[i].at for i in range(count)]
        offered = published / args.duration_s
        processed = sum(delta("edge_agent_windows_processed_total", i) / walls[i] for i in range(count))
        owners: dict[str, list[int]] = {}
        for i, scraped in enumerate(last):
            for labels, value in scraped.samples.get("edge_agent_windows_total", []):
                if value > 0:
                    owners.setdefault(labels["sensor"], []).append(i)
        expected = {sensor_name(i) for i in range(sensors)}
        d.update(
            {
                "target_per_s": sensors * RATE_HZ / CHUNK_SAMPLES,
                "offered_per_s": offered,
                "publisher_ratio": offered / (sensors * RATE_HZ / CHUNK_SAMPLES),
                "processed_per_s": processed,
                "processed_ratio": processed / offered if offered else float("nan"),
                "dropped": sum(delta("edge_agent_windows_dropped_total", i) for i in range(count)),
                "payload_errors": sum(delta("edge_agent_payload_errors_total", i) for i in range(count)),
                "queue_max": max(depths),
                "sensors_twice": sum(1 for found in owners.values() if len(found) > 1),
                "sensors_missing": len(expected - set(owners)),
                "sensors_per_instance": [sum(1 for found in owners.values() if i in found) for i in range(count)],
                "foreign_per_s": [delta("edge_agent_messages_foreign_total", i) / walls[i] for i in range(count)],
                "agent_cpu_percent": [100.0 * (cpu_b[i] - cpu_a[i]) / walls[i] for i in range(count)],
                "cores_busy_percent": {str(k): round(v, 1) for k, v in busy_percent(cores_a, cores_b).items()},
                "broker_cpu_percent": 100.0 * (broker_b - broker_a) / walls[0],  # every message to every instance
            }
        )
        result.ok, result.verdict = judge_gateway(d)
    except Exception as error:  # one failed run must not stop a search; the error goes in the table
        result.ok, result.verdict = False, f"error: {error}"
        d["traceback"] = traceback.format_exc()
        d["agent_log_tail"] = "\n".join(agent.log_tail() for agent in agents)
    finally:
        tear_down(publishers, agents, monitor, broker, workdir, args.keep, d)
        stack.close()
    log(gateway_row(result))
    return result


RESTART_BUDGET_S = 60.0  # the publishers stream this much longer when --restart cycles the last instance
RESTART_OBSERVE_S = 4.0  # seconds of load watched while the instance is away, and again after it is back


def owned(scraped: Scrape) -> set[str]:
    """The sensors an instance cut windows of (its ``edge_agent_windows_total`` series above 0)."""
    return {labels["sensor"] for labels, v in scraped.samples.get("edge_agent_windows_total", []) if v > 0}


def restart_cycles(agents: list[Agent], monitor: Monitor, *, log: Any) -> list[dict[str, Any]]:
    """Stop the last instance (SIGTERM, then SIGKILL), start it again: while it is away no other instance
    cuts windows of its sensors; once it is back, every one of them is its own again."""
    last, others = agents[-1], agents[:-1]
    mine = owned(scrape(last.metrics_port))
    cycles = []
    for sig in (signal.SIGTERM, signal.SIGKILL):
        stopped_at = time.time()
        stop_process(last.proc, sig=sig)
        time.sleep(RESTART_OBSERVE_S)
        taken = mine & set().union(*(owned(scrape(agent.metrics_port)) for agent in others))
        last.spawn()
        online = monitor.wait_status(last.agent_id, b"online", last.spawned_at, timeout_s=120)
        if online is None:
            raise RuntimeError(f"{last.agent_id} did not come back:\n{last.log_tail()}")
        time.sleep(RESTART_OBSERVE_S)
        back = owned(scrape(last.metrics_port))
        cycles.append(
            {
                "signal": signal.Signals(sig).name,
                "away_s": online - stopped_at,
                "sensors": len(mine),
                "taken_by_others": len(taken),
                "back": len(back & mine),
                "new_sensors": len(back - mine),
            }
        )
        log(f"  restart ({cycles[-1]['signal']}): {cycles[-1]}")
    return cycles


def judge_gateway(d: dict[str, Any]) -> tuple[bool, str]:
    if d["publisher_ratio"] < SUSTAIN_RATIO:
        return False, f"publisher-limited ({100 * d['publisher_ratio']:.1f} % of target)"
    problems = load_problems(d)
    if d["sensors_twice"] or d["sensors_missing"]:
        problems.append(f"{d['sensors_twice']} sensors in two instances, {d['sensors_missing']} in none")
    for cycle in d.get("restarts", []):
        if cycle["taken_by_others"] or cycle["back"] != cycle["sensors"] or cycle["new_sensors"]:
            problems.append(f"restart ({cycle['signal']}) moved sensors: {cycle}")
    return verdict(problems)


def gateway_row(r: RunResult) -> str:
    d = r.details
    if "processed_per_s" not in d:
        return f"| {d.get('instances', '?')} | {r.sensors} | | | | | | | | | | | {r.verdict} |"
    per = " / ".join
    return (
        f"| {d['instances']} | {r.sensors} | {d['offered_per_s']:.0f} ({100 * d['publisher_ratio']:.1f} %) "
        f"| {d['processed_per_s']:.0f} ({100 * d['processed_ratio']:.1f} %) | {d['dropped']:.0f} "
        f"| {d['queue_max']:.0f} | {d['payload_errors']:.0f} | {d['sensors_twice']} / {d['sensors_missing']} "
        f"({' + '.join(str(n) for n in d['sensors_per_instance'])}) "
        f"| {per(f'{v:.0f}' for v in d['foreign_per_s'])} | {per(f'{v:.0f}' for v in d['agent_cpu_percent'])} "
        f"| {d['broker_cpu_percent']:.0f} "
        f"| {per(f'{v:.0f}' for v in d['cores_busy_percent'].values())} | {r.verdict} |"
    )


def gateway_section(args: argparse.Namespace, runs: dict[int, list[RunResult]], fmt: str) -> str:
    """The markdown subsection: every run, the most sensors per instance count and the ratio to one instance."""
    m = machine()
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"Measured {now} on {m['cores']} cores of an {m['cpu']}, Python {m['python']}, torch {m['torch']}, "
        f"{m['broker']}, Linux {m['kernel']}; format {fmt}, QoS {args.qos}, warm-up {args.warmup_s:g} s, steady "
        f"window {args.duration_s:g} s. "
        + (
            f"Every instance pinned to core {args.agent_cpu} with a CPU quota of {args.agent_cpu_quota:g} of it "
            f"(`cpu_quota.py`: {CpuQuota(args.agent_cpu_quota).describe()}), broker and publishers on core "
            f"{args.load_cpu}: N instances have N x {args.agent_cpu_quota:g} of a core."
            if args.agent_cpu_quota
            else "Instance i pinned to core i (`taskset`); broker, publishers and this script not pinned: "
            "they share the agents' cores."
        ),
        "",
        "```sh",
        shlex.join([".venv/bin/python", *sys.argv]),
        "```",
        "",
        GATEWAY_HEAD,
    ]
    best: dict[int, int] = {}
    for count, results in runs.items():
        lines += [gateway_row(r) for r in sorted(results, key=lambda r: r.sensors)]
        best[count] = max((r.sensors for r in results if r.ok), default=0)
    restarted = [(r, c) for rs in runs.values() for r in rs for c in r.details.get("restarts", [])]
    if restarted:
        lines += [
            "",
            "| instances | sensors | restart of the last instance | away s | its sensors "
            "| cut by another instance meanwhile | its own again after | new to it |",
            "|---:|---:|---|---:|---:|---:|---:|---:|",
        ]
        for r, c in restarted:
            lines.append(
                f"| {r.details['instances']} | {r.sensors} | {c['signal']} | {c['away_s']:.1f} | {c['sensors']} "
                f"| {c['taken_by_others']} | {c['back']} | {c['new_sensors']} |"
            )
    lines += ["", "| instances | most sensors sustained per gateway | of one instance |", "|---:|---:|---:|"]
    one = best.get(1, 0)
    for count, n in best.items():
        lines.append(f"| {count} | **{n}** | {f'{n / one:.2f}x' if one else '-'} |")
    return "\n".join(lines) + "\n"


def parse_instances(text: str) -> list[int]:
    values = [int(v) for v in text.split(",") if v.strip()]
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("instances must be integers >= 1, e.g. 1,2")
    return values


# ----------------------------------------------------------------------------- main


def parse_sensors(text: str) -> list[int]:
    values = [int(v) for v in text.split(",") if v.strip()]
    if not values or min(values) < 1 or max(values) > MAX_SENSORS:
        raise argparse.ArgumentTypeError(f"sensors must be integers in 1..{MAX_SENSORS}, e.g. 50,100,200")
    return values


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--format", choices=("json", "f32le", "both"), default="both")
    load = p.add_mutually_exclusive_group()
    load.add_argument("--sensors", type=parse_sensors, help="loads to run, e.g. 50,100,200")
    load.add_argument("--search", action="store_true", help=f"step through {SEARCH_STEPS}, then bisect")
    p.add_argument("--resolution", type=int, default=10, help="search: stop bisecting at this many sensors")
    p.add_argument("--duration-s", type=float, default=20.0, help="steady window per load (default 20)")
    p.add_argument("--warmup-s", type=float, default=8.0, help="load before the steady window (default 8)")
    p.add_argument("--sample-s", type=float, default=5.0, help="queue depth / RSS sampling interval")
    p.add_argument("--idle-s", type=float, default=2.0, help="wait after `online` before the idle RSS")
    p.add_argument(
        "--indicators", action="store_true", help="[sources.indicators] on every sensor (as the shipped demo)"
    )
    p.add_argument("--max-batch", type=int, default=MAX_BATCH, help="agent's [inference] max_batch (default 32)")
    p.add_argument("--max-wait-s", type=float, default=MAX_WAIT_S, help="agent's [inference] max_wait_s (0.02)")
    p.add_argument("--qos", type=int, choices=(0, 1), default=1, help="publishers' and subscription's QoS")
    p.add_argument("--publishers", type=int, default=0, help="publisher processes (default: 1 per 150 sensors)")
    p.add_argument("--sensors-per-publisher", type=int, default=150)
    p.add_argument("--startup-runs", type=int, default=5, help="start-up spawns (0: skip)")
    p.add_argument("--startup-format", choices=("json", "f32le"), default="json")
    p.add_argument("--agent-cpu", type=int, default=1, help="core the agent is pinned to")
    p.add_argument("--load-cpu", type=int, default=0, help="core of broker, publishers and this script")
    p.add_argument("--out", type=Path, help="rewrite the generated block of this markdown file")
    p.add_argument("--json", type=Path, help="write every measurement as JSON here")
    p.add_argument("--model", type=Path, default=MODEL, help="model file (default: the fused CWRU file)")
    p.add_argument("--retries", type=int, default=2, help="repeat a run disturbed by other processes (default 2)")
    p.add_argument("--keep", action="store_true", help="keep the work folders (configs, logs)")
    p.add_argument(
        "--instances",
        type=parse_instances,
        help="sensors per gateway instead: this many agent instances (e.g. 1,2; instance i on core i), "
        "--sensors loads or a search, one format (json unless --format f32le)",
    )
    p.add_argument(
        "--subscribe-own",
        action="store_true",
        help="--instances: the source lists the load's sensors and sets subscribe_own (each instance subscribes "
        "to its own sensors' topics only)",
    )
    p.add_argument(
        "--agent-cpu-quota",
        type=float,
        help="--instances: every instance on --agent-cpu with this fraction of it (a cgroup quota; root only), "
        "broker and publishers on --load-cpu: N small cores emulated on one",
    )
    p.add_argument(
        "--drop-cost",
        action="store_true",
        help="only time another instance's message (dropped from its topic) against an own one, in this process",
    )
    p.add_argument(
        "--restart",
        action="store_true",
        help="--instances: after each steady window, stop the last instance (SIGTERM, then SIGKILL) and start it "
        "again; the run fails if another instance cut windows of its sensors meanwhile or one did not come back",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    global MODEL
    args = build_parser().parse_args(argv)
    MODEL = args.model.resolve()  # e.g. models/drsn_cw_cwru_fused.pt
    if not args.sensors and not args.search:
        args.sensors = [50, 100, 200]
    if shutil.which("taskset") is None or (os.cpu_count() or 1) < 2:
        print("no taskset or fewer than 2 cores: nothing pinned", file=sys.stderr)
        args.agent_cpu = args.load_cpu = None
    elif args.load_cpu is not None and (not args.instances or args.agent_cpu_quota):
        os.sched_setaffinity(0, {args.load_cpu})  # this script runs beside the broker, not beside the agent

    def log(line: str) -> None:
        print(line, flush=True)

    if args.drop_cost:
        log(drop_cost())
        return 0
    if args.instances:
        if args.agent_cpu_quota and args.restart:
            raise SystemExit("--restart with --agent-cpu-quota: a restarted instance would run outside its quota")
        return gateway_main(args, log)

    formats = ["json", "f32le"] if args.format == "both" else [args.format]
    runs: dict[str, list[RunResult]] = {}
    log(TABLE_HEAD)
    for fmt in formats:
        if args.search:
            runs[fmt] = search(args, fmt, log=log)
        else:
            runs[fmt] = [measured_run(args, fmt, n, log=log) for n in args.sensors]
    startup = startup_runs(args, args.startup_format, args.startup_runs, log=log) if args.startup_runs else []
    section, summary = summarize(args, runs, startup)
    print()
    print(section)
    if args.json:
        raw = {
            fmt: [{"sensors": r.sensors, "ok": r.ok, "verdict": r.verdict, **r.details} for r in rs]
            for fmt, rs in runs.items()
        }
        args.json.write_text(json.dumps({"summary": summary, "runs": raw}, indent=1, default=str))
    if args.out:
        write_section(args.out, section)
        print(f"wrote the generated block of {args.out}")
    return 0


def drop_cost() -> str:
    """What another instance's message costs an instance (dropped from its topic) against one of its own
    (decoded; emit does nothing): MqttSource's message callback in this process, best of 3, one run."""
    from edge_agent.config.instances import share_of
    from edge_agent.configload import parse_config
    from edge_agent.metrics import AgentMetrics
    from edge_agent.sources.mqtt import MqttSource

    source_table = {"type": "mqtt", "name": "p", "topic": "bench/+/vibration", "models": ["b"], "instances": 2}
    cfg = parse_config(
        {
            "agent": {"id": "cost", "instance": 0},
            "mqtt": {"enabled": True},
            "models": [{"name": "b", "path": str(MODEL)}],
            "sources": [source_table],
        },
        base_dir=REPO,
    )
    source = MqttSource(cfg.sources[0], cfg.mqtt, password=None, agent_id="cost", metrics=AgentMetrics(), instance=0)
    source._emit = lambda chunk: None  # not started (no broker, no paho thread): the callback is called directly
    chunk = held_out_chunks(HEALTHY_KEY)[0]
    payload = json.dumps({"sample_rate_hz": RATE_HZ, "samples": [float(f"{v:.6g}") for v in chunk]}).encode()
    names = [sensor_name(i) for i in range(400)]
    lines = [f"CPU: {cpu_description()} (a shared machine: compare the two lines, measured in one run)"]
    for label, share, reps in (("another instance's (dropped)", 1, 200), ("its own (decoded)", 0, 20)):
        messages = []
        for name in [n for n in names if share_of(n, 2) == share][:100]:
            message = paho.MQTTMessage(topic=f"bench/{name}/vibration".encode())
            message.payload = payload
            messages.append(message)
        best = float("inf")
        for _ in range(3):
            started = time.perf_counter()
            for _ in range(reps):
                for message in messages:
                    source._on_message(None, None, message)  # type: ignore[arg-type]
            best = min(best, (time.perf_counter() - started) / (reps * len(messages)))
        lines.append(f"{label}: {1e6 * best:.1f} us per JSON message of {CHUNK_SAMPLES} samples")
    return "\n".join(lines)


def gateway_main(args: argparse.Namespace, log: Any) -> int:
    fmt = "f32le" if args.format == "f32le" else "json"
    runs: dict[int, list[RunResult]] = {}
    log(GATEWAY_HEAD)
    for count in args.instances:

        def run(n: int, count: int = count) -> RunResult:
            return gateway_run(args, fmt, n, count, log=log)

        if args.search:
            runs[count] = search(args, fmt, log=log, run=run, steps=GATEWAY_STEPS)
        else:
            runs[count] = [run(n) for n in args.sensors]
    section = gateway_section(args, runs, fmt)
    print()
    print(section)
    if args.json:
        raw = {
            c: [{"sensors": r.sensors, "ok": r.ok, "verdict": r.verdict, **r.details} for r in rs]
            for c, rs in runs.items()
        }
        args.json.write_text(json.dumps(raw, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
