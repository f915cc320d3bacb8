"""The soundcard source's supervisor and block handling, driven through a fake PortAudio library.

The library is the source's ``load_library`` seam: the fake lists devices and opens streams whose
callback the test calls itself (as PortAudio's thread would), so overflows, a device that appears
late and a stream that ends are all deterministic. The real library is tested in tests/integration.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from edge_agent.metrics import AgentMetrics
from edge_agent.sources.devices import AudioUnavailableError
from edge_agent.sources.soundcard import SoundcardSource
from edge_agent.sources.soundcard_config import SoundcardSection
from edge_agent.types import Chunk

RATE_HZ = 16000
BLOCK = 256


class FakeStream:
    def __init__(self, library: FakeLibrary, **kwargs: Any) -> None:
        self.kwargs = kwargs
        self.library = library
        self.latency = 0.02
        self.active = False
        self.closed = False

    def start(self) -> None:
        self.active = True

    def abort(self) -> None:
        self.active = False

    def close(self) -> None:
        self.closed = True

    def feed(self, frames: np.ndarray, *, overflow: bool = False, adc_s: float = 0.0, now_s: float = 0.0) -> None:
        """One callback from 'PortAudio's thread': ``frames`` is ``(n, channels)`` in the stream's dtype.

        ``adc_s``: when the block's first frame was sampled and ``now_s``: the callback's time, both
        on the stream's clock (0: the host API gives no times).
        """
        time_info = SimpleNamespace(inputBufferAdcTime=adc_s, currentTime=now_s)
        self.kwargs["callback"](frames, frames.shape[0], time_info, SimpleNamespace(input_overflow=overflow))

    def lose(self) -> None:
        """The device goes away: PortAudio ends the stream and calls the finished callback."""
        self.active = False
        self.kwargs["finished_callback"]()


class FakeLibrary:
    """What the source uses of ``sounddevice``: device lists, (re)initialisation, InputStream."""

    def __init__(self, devices: list[str]) -> None:
        self.device_names = devices
        self.default = SimpleNamespace(device=[0, 0])
        self._initialized = 1
        self.initialisations = 0
        self.streams: list[FakeStream] = []

    def _initialize(self) -> None:
        self._initialized += 1
        self.initialisations += 1

    def _terminate(self) -> None:
        self._initialized -= 1

    def query_hostapis(self) -> tuple[dict[str, Any], ...]:
        return ({"name": "ALSA"},)

    def query_devices(self) -> list[dict[str, Any]]:
        return [
            {"index": i, "name": name, "hostapi": 0, "max_input_channels": 2, "default_samplerate": 44100.0}
            for i, name in enumerate(self.device_names)
        ]

    def InputStream(self, **kwargs: Any) -> FakeStream:  # the library's name
        stream = FakeStream(self, **kwargs)
        self.streams.append(stream)
        return stream


def wait_for(predicate: Callable[[], bool], what: str, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.005)


def section(**overrides: Any) -> SoundcardSection:
    values: dict[str, Any] = {
        "type": "soundcard",
        "name": "mic",
        "models": ("m",),
        "sensor": "pump-1",
        "device": "USB Audio",
        "sample_rate_hz": float(RATE_HZ),
        "chunk_samples": BLOCK,
        "dtype": "int16",
        "silence_floor_dbfs": -60.0,
        "silence_after_s": 0.3,
    }
    values.update(overrides)
    return SoundcardSection(**values)


class Harness:
    def __init__(self, library: FakeLibrary | Callable[[], Any], **overrides: Any) -> None:
        self.metrics = AgentMetrics()
        self.chunks: list[Chunk] = []
        self._lock = threading.Lock()
        load = library if callable(library) and not isinstance(library, FakeLibrary) else (lambda: library)
        self.source = SoundcardSource(
            section(**overrides), metrics=self.metrics, retry_min_s=0.01, retry_max_s=0.05, load_library=load
        )

    def emit(self, chunk: Chunk) -> None:
        with self._lock:
            self.chunks.append(chunk)

    def sample(self, name: str, **labels: str) -> float | None:
        return self.metrics.registry.get_sample_value(name, labels)

    def up(self) -> float | None:
        return self.sample("edge_agent_source_up", source="mic")


@pytest.fixture
def library() -> FakeLibrary:
    return FakeLibrary(["HDA Intel PCH", "USB Audio Device: Audio (hw:2,0)"])


def test_blocks_become_chunks_with_seq_t0_scale_and_counted_overflows(library: FakeLibrary) -> None:
    h = Harness(library, scale=2.0)
    h.source.start(h.emit)
    try:
        wait_for(lambda: h.up() == 1, "source up")
        (stream,) = library.streams
        assert stream.kwargs | {"callback": None, "finished_callback": None} == {
            "device": 1,
            "samplerate": float(RATE_HZ),
            "channels": 1,
            "dtype": "int16",
            "blocksize": BLOCK,
            "latency": "high",
            "callback": None,
            "finished_callback": None,
        }
        tone = (8192 * np.ones((BLOCK, 1))).astype(np.int16)  # a quarter of full scale
        # the test feeds in no time: a later block was sampled closer to the (fixed) callback time
        adc_s, now_s = 1000.0, 1000.5
        stream.feed(tone, adc_s=adc_s, now_s=now_s)
        stream.feed(tone, adc_s=adc_s + BLOCK / RATE_HZ, now_s=now_s)
        stream.feed(tone, overflow=True, adc_s=adc_s + 3 * BLOCK / RATE_HZ, now_s=now_s)  # a block was lost before
        wait_for(lambda: len(h.chunks) == 3, "three chunks")
    finally:
        h.source.stop()
    first, second, _ = h.chunks
    assert (first.sensor, first.sample_rate_hz, first.samples.shape, first.samples.dtype) == (
        "pump-1",
        RATE_HZ,
        (1, BLOCK),
        np.float32,
    )
    np.testing.assert_allclose(first.samples, 0.5)  # 0.25 of full scale times scale 2.0
    assert [c.seq for c in h.chunks] == [first.seq, first.seq + 1, first.seq + 3]  # the overflow is a gap
    assert second.t0 - first.t0 == pytest.approx(BLOCK / RATE_HZ, abs=0.002)  # from the stream's ADC clock
    assert abs(first.t0 - (time.time() - 0.5)) < 1.0
    assert h.sample("edge_agent_audio_input_overflows_total", source="mic") == 1
    assert h.sample("edge_agent_messages_received_total", source="mic") == 3
    assert h.up() == 0 and stream.closed


def test_level_gauge_and_silence_follow_the_audio(library: FakeLibrary) -> None:
    h = Harness(library, dtype="float32")
    h.source.start(h.emit)
    try:
        wait_for(lambda: h.up() == 1, "source up")
        stream = library.streams[0]
        assert h.source.health() == [("pump-1", "silent", False)]  # not silent for 0.3 s yet
        wait_for(lambda: h.source.health() == [("pump-1", "silent", True)], "silent: no samples")
        loud = np.full((BLOCK, 1), 0.1, dtype=np.float32)  # -20 dBFS
        for _ in range(RATE_HZ // BLOCK + 1):  # a bit over a second of audio: one level reading
            stream.feed(loud)
        wait_for(lambda: h.source.health() == [("pump-1", "silent", False)], "sound again")
        level = h.sample("edge_agent_audio_level_dbfs", source="mic", sensor="pump-1")
        assert level == pytest.approx(-20.0, abs=0.01)
        for _ in range(10):
            stream.feed(np.zeros((BLOCK, 1), dtype=np.float32))  # digital silence: samples below the floor
        wait_for(lambda: h.source.health() == [("pump-1", "silent", True)], "silent: below the floor")
    finally:
        h.source.stop()
    assert all(c.t0 > 1e9 for c in h.chunks)  # no ADC time: a sample clock from the wall clock


def test_a_device_that_appears_late_is_found_and_a_lost_one_is_retried(
    library: FakeLibrary, caplog: pytest.LogCaptureFixture
) -> None:
    library.device_names = ["HDA Intel PCH"]  # the USB interface is not plugged in yet
    h = Harness(library)
    with caplog.at_level(logging.DEBUG, logger="edge_agent.sources.soundcard"):
        h.source.start(h.emit)
        try:
            wait_for(lambda: (h.sample("edge_agent_source_retries_total", source="mic") or 0) >= 3, "3 retries")
            assert h.up() == 0 and h.source.alive() and library.streams == []
            library.device_names = ["HDA Intel PCH", "USB Audio Device: Audio (hw:2,0)"]  # plugged in
            wait_for(lambda: h.up() == 1, "source up once the device appears")
            first = library.streams[0]
            first.feed(np.zeros((BLOCK, 1), dtype=np.int16))
            wait_for(lambda: len(h.chunks) == 1, "a chunk")
            retries = h.sample("edge_agent_source_retries_total", source="mic") or 0
            first.lose()  # unplugged
            wait_for(lambda: len(library.streams) == 2 and h.up() == 1, "reopened")
            assert h.sample("edge_agent_source_retries_total", source="mic") == retries + 1
            library.streams[1].feed(np.zeros((BLOCK, 1), dtype=np.int16))
            wait_for(lambda: len(h.chunks) == 2, "a chunk from the new stream")
        finally:
            h.source.stop()
    assert first.closed and library.streams[1].closed
    assert h.chunks[1].seq > h.chunks[0].seq + 1  # a new stream is a gap, never stitched
    assert library.initialisations >= 3  # PortAudio re-initialised before each attempt (no stream open)
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(errors) == 2, errors  # one line per state change, not one per retry
    assert errors[0].startswith("source mic: cannot open the sound card: no input device whose name contains")
    assert "input devices: 0 'HDA Intel PCH'" in errors[0]
    assert "the input stream ended" in errors[1]
    infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert len(infos) == 2 and all("capturing from input device 1 'USB Audio Device" in i for i in infos)


def test_a_missing_library_is_retried_with_a_message_naming_what_to_install(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def missing() -> Any:
        raise AudioUnavailableError("the Python package sounddevice is not installed; install it with: ...")

    h = Harness(missing)
    with caplog.at_level(logging.INFO, logger="edge_agent.sources.soundcard"):
        h.source.start(h.emit)
        try:
            wait_for(lambda: (h.sample("edge_agent_source_retries_total", source="mic") or 0) >= 2, "2 retries")
            assert h.up() == 0 and h.source.alive()
        finally:
            h.source.stop()
    (line,) = [r.getMessage() for r in caplog.records]
    assert "sounddevice is not installed" in line


def test_stop_is_idempotent_and_works_before_start(library: FakeLibrary) -> None:
    h = Harness(library)
    h.source.stop()
    h.source.stop()
    assert h.source.health() == []  # not started: nothing to report
