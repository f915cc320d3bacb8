"""``replay`` source: plays a recording (WAV, NPY, CSV or the CWRU npz) as a live sensor stream.

At ``speed`` 1.0 chunks leave at real-time pace, ``speed`` 0 plays as fast as the pipeline
takes them. Consecutive npz records are separate recordings: between them the sequence number
jumps, so the windowing resets rather than stitching two recordings into one window.
"""

from __future__ import annotations

import csv
import logging
import threading
import time
import wave
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_agent.common.errors import first_line
from edge_agent.config.rules import setting
from edge_agent.config.sections import SourceSection
from edge_agent.config.table import Inspection, SourceContext, Table, check_rules, check_sensor, required, resolve_path
from edge_agent.metrics import AgentMetrics
from edge_agent.types import Chunk

logger = logging.getLogger(__name__)

REPLAY_SUFFIXES = (".wav", ".npy", ".csv", ".npz")
_KINDS = ".wav, .npy, .csv or .npz"


@dataclass(frozen=True)
class ReplaySection(SourceSection):
    """``path`` (WAV, NPY, CSV or the CWRU npz), ``records`` (npz keys in play order), ``start_fraction``
    (skip the first part of each record), ``speed`` (1.0 real time, 0 as fast as possible), ``loop``,
    ``chunk_samples``; ``sample_rate_hz`` for .npy and .csv files, ``channels`` and ``scale`` of the file.
    """

    sensor: str = ""  # the sensor id it plays as
    path: str = ""
    records: tuple[str, ...] = ()
    start_fraction: float = setting(0.0, ge=0, lt=1)
    speed: float = setting(1.0, ge=0)
    loop: bool = False
    chunk_samples: int = setting(1024, gt=0)  # samples per step

    @property
    def known_sensors(self) -> tuple[str, ...]:
        return (self.sensor,)


def check_replay_source(table: Table, context: SourceContext) -> None:
    check_rules(table, ReplaySection, inherited=False)
    check_sensor(table, "replay sources need the sensor id they play as")
    required(table, "path", "replay sources need a .wav, .npy, .csv or .npz file")
    resolve_path(table, "path", context.base_dir)
    if not table.ok("path"):
        return
    suffix = Path(table.values["path"]).suffix.lower()
    if suffix not in REPLAY_SUFFIXES:
        table.fail("path", "is not allowed", "replay reads .wav, .npy, .csv or .npz files")
        return
    if suffix in (".npy", ".csv"):
        table.check("sample_rate_hz", lambda v: v > 0, f"a {suffix} file needs sample_rate_hz > 0")
    if suffix != ".npz":
        table.check("records", lambda v: not v, "records pick keys of an .npz file", f"is not used for a {suffix} file")


def inspect_replay(section: ReplaySection, key: str) -> Inspection:
    """Start-time problems of the file (``<key>.path`` / ``<key>.records``), its rate and shortest record."""
    path = Path(section.path)
    if not path.is_file():
        return Inspection((f"{key}.path: {section.path!r} does not exist; expected a {_KINDS} recording",))
    suffix, rate_hz, lengths = path.suffix.lower(), section.sample_rate_hz, []
    try:
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as pack:
                listed = tuple(str(k) for k in pack["keys"]) if "keys" in pack.files else tuple(pack.files)
                keys = section.records or listed
                missing = [k for k in keys if k not in pack.files]
                if missing:
                    allowed = f"records in {path.name}: {', '.join(listed)}"
                    return Inspection((f"{key}.records: {missing!r} not in {path.name}; {allowed}",))
                rate_hz = float(pack["fs_hz"]) if "fs_hz" in pack.files else rate_hz
                lengths = [int(pack[k].size) for k in keys]
        elif suffix == ".wav":
            with wave.open(str(path), "rb") as handle:
                width_bits, rate_hz = 8 * handle.getsampwidth(), float(handle.getframerate())
                lengths = [handle.getnframes()]
            if width_bits != 16:
                return Inspection((f"{key}.path: {section.path!r} is {width_bits}-bit; replay reads 16-bit PCM WAV",))
        elif suffix == ".npy":
            lengths = [int(np.load(path, mmap_mode="r", allow_pickle=False).shape[0])]
    except (OSError, ValueError, KeyError, EOFError, wave.Error) as error:
        reason = first_line(error)
        return Inspection((f"{key}.path: {section.path!r} cannot be read ({reason}); expected a {_KINDS} recording",))
    shortest = min((n - round(n * section.start_fraction) for n in lengths), default=None)
    return Inspection((), rate_hz, shortest)


def read_recording(section: ReplaySection) -> tuple[list[np.ndarray], float]:
    """The recordings to play, each ``(channels, n)`` float32, and their sample rate in Hz.

    The section is validated (``check_replay_source``) and the file inspected (``inspect_replay``) before
    start; errors here name the source (the file changed since).
    """
    path = Path(section.path)
    if not path.is_file():
        raise FileNotFoundError(f"replay source {section.name!r}: {path} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return _read_npz(path, section)
    if suffix == ".wav":
        signal, rate_hz = _read_wav(path)
    elif suffix == ".npy":
        signal, rate_hz = np.load(path, allow_pickle=False).astype(np.float32), section.sample_rate_hz
    elif suffix == ".csv":
        with path.open() as handle:
            rows = [[float(v) for v in row] for row in csv.reader(handle) if row]
        signal, rate_hz = np.asarray(rows, dtype=np.float32), section.sample_rate_hz
    else:  # check_replay_source refuses other suffixes
        signal, rate_hz = _read_wav(path)
    if signal.ndim == 1:
        signal = signal[None, :]
    elif suffix != ".wav":
        signal = signal.T  # NPY and CSV hold one column per channel
    return [_trim(np.ascontiguousarray(signal, dtype=np.float32), section.start_fraction)], float(rate_hz)


def _read_npz(path: Path, section: ReplaySection) -> tuple[list[np.ndarray], float]:
    with np.load(path, allow_pickle=False) as pack:
        keys = section.records or tuple(str(k) for k in pack["keys"])
        missing = [k for k in keys if k not in pack.files]
        if missing:
            raise ValueError(f"replay source {section.name!r}: records {missing} not in {path.name}")
        rate_hz = float(pack["fs_hz"]) if "fs_hz" in pack.files else section.sample_rate_hz
        signals = [_trim(np.asarray(pack[k], dtype=np.float32).reshape(1, -1), section.start_fraction) for k in keys]
    return signals, rate_hz


def _read_wav(path: Path) -> tuple[np.ndarray, float]:
    with wave.open(str(path), "rb") as handle:
        width, channels, rate_hz = handle.getsampwidth(), handle.getnchannels(), handle.getframerate()
        frames = handle.readframes(handle.getnframes())
    if width != 2:
        raise ValueError(f"{path}: only 16-bit PCM WAV is supported, got {8 * width}-bit")
    samples = np.frombuffer(frames, dtype="<i2").reshape(-1, channels).T.astype(np.float32) / 32768.0
    return samples, float(rate_hz)


def _trim(signal: np.ndarray, start_fraction: float) -> np.ndarray:
    return signal[:, round(signal.shape[1] * start_fraction) :]


class ReplaySource:
    """Plays recordings in a named thread; ``on_finished`` is called when a non-looping play ends."""

    def __init__(
        self, section: ReplaySection, *, metrics: AgentMetrics, on_finished: Callable[[], None] | None = None
    ) -> None:
        self.section = section
        self.name = section.name
        self.metrics = metrics
        self.on_finished = on_finished
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.finished = threading.Event()

    def start(self, emit: Callable[[Chunk], None]) -> None:
        signals, rate_hz = read_recording(self.section)
        self._thread = threading.Thread(
            target=self._play, args=(signals, rate_hz, emit), name=f"source-{self.name}", daemon=True
        )
        self.metrics.source_up.labels(self.name).set(1)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5.0)
        self.metrics.source_up.labels(self.name).set(0)

    def alive(self) -> bool:
        return self._thread is not None and (self._thread.is_alive() or self.finished.is_set())

    def _chunks(self, signals: list[np.ndarray], rate_hz: float) -> Iterator[tuple[int, float, np.ndarray]]:
        """``(seq, offset_s, samples)``; seq skips one between recordings to mark the gap."""
        seq, offset_s, size = 0, 0.0, self.section.chunk_samples
        while True:
            for signal in signals:
                for start in range(0, signal.shape[1] - size + 1, size):
                    yield seq, offset_s, signal[:, start : start + size]
                    seq += 1
                    offset_s += size / rate_hz
                seq += 1
            if not self.section.loop:
                return

    def _play(self, signals: list[np.ndarray], rate_hz: float, emit: Callable[[Chunk], None]) -> None:
        started_wall, started_mono = time.time(), time.monotonic()
        speed = self.section.speed
        for seq, offset_s, samples in self._chunks(signals, rate_hz):
            if speed > 0:
                # a chunk is due once its last sample would have been recorded
                due = started_mono + (offset_s + samples.shape[1] / rate_hz) / speed
                if self._stop.wait(max(0.0, due - time.monotonic())):
                    return
            elif self._stop.is_set():
                return
            self.metrics.messages_received.labels(self.name).inc()
            self.metrics.last_sample.labels(self.section.sensor).set(time.time())
            emit(Chunk(self.section.sensor, started_wall + offset_s, rate_hz, samples, seq, time.monotonic()))
        self.finished.set()
        logger.info("replay source %s finished", self.name)
        if self.on_finished is not None:
            self.on_finished()
