"""What the runtime keeps out of its memory (issue 13's RSS goal).

- ``scipy.signal`` (~49 MB of RSS), which the vibration indicators paid for one Hann window: never imported.
- ``scipy.fft`` (~14 MB, with ``scipy.special``): imported by the first indicator plan, so only by an agent
  whose sensors have indicators (it is 7x faster than numpy.fft on float32 batches, so it stays there).
- a series at zero: no rendered line kept after a scrape, and a sensor's series that start at zero are
  declared (exported at 0) instead of created, ~24 kB per sensor less.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

PROBE = """
import sys

import pytest
import numpy as np
import edge_agent.cli, edge_agent.service.app
from edge_agent.pipeline.indicators import compute_indicators, make_plan
from edge_agent.pipeline.indicator_settings import IndicatorSettings
plan = make_plan(IndicatorSettings(spectral_window="hann"), 12000.0, 2048)
compute_indicators(plan, np.random.default_rng(0).normal(size=(4, 1, 2048)).astype(np.float32))
print(sorted(name for name in sys.modules if name.startswith("scipy.signal")))
"""

# every module of the runtime (all of edge_agent but the offline nn/ and training/), then the modules that
# one indicator plan adds
EVERY_RUNTIME_MODULE = """
import importlib, pkgutil, sys
import edge_agent
for info in pkgutil.walk_packages(edge_agent.__path__, "edge_agent."):
    if not info.name.startswith(("edge_agent.nn", "edge_agent.training")) and not info.name.endswith("__main__"):
        importlib.import_module(info.name)
print(sorted({name.split(".")[0] for name in sys.modules if name.startswith("scipy")}))
from edge_agent.pipeline.indicators import make_plan
from edge_agent.pipeline.indicator_settings import IndicatorSettings
make_plan(IndicatorSettings(), 12000.0, 2048)
print("scipy.fft" in sys.modules)
"""


def _run(code: str) -> list[str]:
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()


def test_the_runtime_and_its_indicators_run_without_scipy_signal() -> None:
    assert _run(PROBE) == ["[]"]


def test_no_runtime_module_imports_scipy_until_a_sensor_has_indicators() -> None:
    assert _run(EVERY_RUNTIME_MODULE) == ["[]", "True"]


def test_a_scrape_leaves_no_cached_line_for_a_series_at_zero() -> None:
    """~80 of a sensor's series stay at zero; a cached exposition line for each cost ~14 kB per sensor
    (43 MB at 3,000 sensors, ~3 MB at 200) once the first scrape had rendered them."""
    import tracemalloc

    from prometheus_client import CollectorRegistry

    from edge_agent.metrics.series import CounterFamily, GaugeFamily, exposition

    warm = CollectorRegistry()  # lazy imports and caches of a first exposition, on another registry
    CounterFamily("test_warm", "warm-up", ("sensor",), registry=warm).labels("a")
    exposition(warm)
    registry = CollectorRegistry()
    counters = CounterFamily("test_errors", "errors by reason", ("sensor", "reason"), registry=registry)
    gauges = GaugeFamily("test_level", "a level", ("sensor",), registry=registry)
    for i in range(2000):
        counters.labels(f"sensor-{i:04d}", "bad_field")
        gauges.labels(f"sensor-{i:04d}").set(-0.0 if i == 0 else 0)
    counters.labels("sensor-0001", "bad_field").inc(3)
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        text = exposition(registry).decode()  # the first scrape: every line rendered
        after, _ = tracemalloc.get_traced_memory()
        del text
        kept, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert after > before  # the exposition itself was traced
    assert kept - before < 20_000, f"{kept - before} bytes kept for 4,000 series after a scrape"
    lines = exposition(registry).decode().splitlines()
    assert 'test_errors_total{reason="bad_field",sensor="sensor-0001"} 3.0' in lines
    assert 'test_errors_total{reason="bad_field",sensor="sensor-0002"} 0.0' in lines
    assert 'test_level{sensor="sensor-0000"} -0.0' in lines
    assert 'test_level{sensor="sensor-0002"} 0.0' in lines


def test_padded_rows_are_powers_of_two_up_to_max_batch() -> None:
    from edge_agent.pipeline.inference import padded_rows

    assert [padded_rows(n, 32) for n in (1, 2, 3, 5, 8, 9, 17, 31, 32)] == [1, 2, 4, 8, 8, 16, 32, 32, 32]
    assert [padded_rows(n, 20) for n in (1, 16, 17, 20)] == [1, 16, 20, 20]  # capped at max_batch
    assert padded_rows(40, 32) == 40  # never fewer rows than windows


def test_the_model_sees_six_batch_shapes_and_every_window_its_own_prediction() -> None:
    """Every new input shape makes oneDNN and the TorchScript graph keep another set of primitives and
    buffers (~1.7 MiB of RSS each here: 266 against 310 MiB after every batch size of 1..32 in
    benchmarks/bench_memory.py). The worker pads a batch to a power of two; the padding changes no
    real window's prediction."""
    from pathlib import Path

    import numpy as np
    import torch

    from edge_agent.config import InferenceSection
    from edge_agent.metrics import AgentMetrics
    from edge_agent.modelfile import LoadedModel, load_model
    from edge_agent.pipeline.inference import InferenceWorker
    from edge_agent.pipeline.window_queue import QueuedWindow
    from edge_agent.types import Prediction, Window

    shipped = load_model(Path(__file__).resolve().parents[2] / "models" / "drsn_cw_cwru.pt")
    shapes: list[int] = []

    class Recording(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            shapes.append(x.shape[0])
            return shipped.module(x)

        def forward_with_noise_floor(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            shapes.append(x.shape[0])
            return shipped.module.forward_with_noise_floor(x)

    model = LoadedModel(shipped.path, Recording(), shipped.meta, shipped.sha256)  # type: ignore[arg-type]
    predictions: list[Prediction] = []
    worker = InferenceWorker({"bearing": model}, InferenceSection(max_batch=32), AgentMetrics(), predictions.append)
    rng = np.random.default_rng(0)
    windows = [rng.normal(size=(1, shipped.window_samples)).astype(np.float32) for _ in range(32)]
    for size in range(1, 33):
        worker._process([QueuedWindow("bearing", Window(f"s{i}", 0.0, 1.0, windows[i])) for i in range(size)])
    assert sorted(set(shapes)) == [1, 2, 4, 8, 16, 32]
    assert len(predictions) == sum(range(1, 33))
    with torch.inference_mode():
        logits, floors = shipped.module.forward_with_noise_floor(torch.from_numpy(np.stack(windows)))
    alone = torch.softmax(logits, dim=1).numpy()
    for prediction in predictions:
        i = int(prediction.sensor[1:])
        assert list(prediction.probabilities.values()) == pytest.approx(alone[i].tolist(), abs=1e-4)
        assert prediction.noise_floor == pytest.approx(float(floors[i]), abs=1e-4)


def test_a_sensor_keeps_no_object_per_series_at_zero() -> None:
    """~80 of a sensor's series stay at zero (errors, problems, alerts by label and reason); a child object
    and its rendered label prefix each cost ~24 kB per sensor (~5 MB at 200 sensors, ~70 MB at 3,000).
    Declared series are exported at 0 all the same, and get their own object when their value changes."""
    import tracemalloc

    from edge_agent.metrics import AgentMetrics
    from edge_agent.metrics.series import exposition

    metrics = AgentMetrics()
    labels, normal = ("Normal", *(f"fault{i}" for i in range(9))), ("Normal",)
    metrics.init_sensor("warm")
    metrics.init_sensor_model("warm", "bearing", labels, normal)
    exposition(metrics.registry)
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        for i in range(200):
            metrics.init_sensor(f"sensor-{i:04d}")
            metrics.init_sensor_model(f"sensor-{i:04d}", "bearing", labels, normal)
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (after - before) / 200 < 6_000, f"{(after - before) / 200:.0f} bytes per sensor"
    metrics.streams.payload_errors.labels("sensor-0001", "bad_ts").inc(2)
    metrics.alert_active.labels("sensor-0002", "fault").set(1)
    lines = exposition(metrics.registry).decode().splitlines()
    for line in (
        'edge_agent_sensor_payload_errors_total{reason="bad_ts",sensor="sensor-0001"} 2.0',
        'edge_agent_sensor_payload_errors_total{reason="bad_ts",sensor="sensor-0002"} 0.0',
        'edge_agent_alert_active{kind="fault",sensor="sensor-0002"} 1.0',
        'edge_agent_alert_active{kind="health",sensor="sensor-0002"} 0.0',
        'edge_agent_stream_problem{reason="ts_unit",sensor="sensor-0199"} 0.0',
        'edge_agent_alerts_total{label="fault8",sensor="sensor-0199",type="end"} 0.0',
        'edge_agent_fault_active{label="fault3",model="bearing",sensor="sensor-0007"} 0.0',
        'edge_agent_predictions_total{label="Normal",model="bearing",sensor="sensor-0007"} 0.0',
        'edge_agent_last_sample_timestamp_seconds{sensor="sensor-0007"} 0.0',
    ):
        assert lines.count(line) == 1, line
    assert not any('type="end"' in line and 'label="Normal"' in line for line in lines)  # normal: no alerts
    assert sum(line.startswith('edge_agent_alert_active{kind="fault",sensor="sensor-0002"}') for line in lines) == 1
    value = metrics.registry.get_sample_value
    assert value("edge_agent_stream_problems_total", {"sensor": "sensor-0003", "reason": "clock_offset"}) == 0.0
    assert value("edge_agent_sensor_payload_errors_total", {"sensor": "sensor-0001", "reason": "bad_ts"}) == 2.0


def test_a_declared_series_can_be_created_removed_and_cleared() -> None:
    from prometheus_client import CollectorRegistry

    from edge_agent.metrics.series import CounterFamily, exposition

    registry = CollectorRegistry()
    family = CounterFamily("test_events", "events", ("sensor", "model", "label"), registry=registry)
    family.declare("a", [("m", "x"), ("m", "y")])
    family.declare("a", [("m", "y"), ("n", "z")])  # merged, no duplicate
    family.declare('b"\\', [("m", "x")])
    family.labels("a", "m", "x").inc()
    with pytest.raises(ValueError):
        family.declare("a", [("m",)])
    expected = {
        'test_events_total{label="x",model="m",sensor="a"} 1.0',
        'test_events_total{label="y",model="m",sensor="a"} 0.0',
        'test_events_total{label="z",model="n",sensor="a"} 0.0',
        'test_events_total{label="x",model="m",sensor="b\\"\\\\"} 0.0',
    }
    lines = exposition(registry).decode().splitlines()
    assert lines[:2] == ["# HELP test_events_total events", "# TYPE test_events_total counter"]
    assert sorted(lines[2:]) == sorted(expected)  # each series once
    family.remove("a", "m", "x")  # created and declared: gone
    family.remove("a", "n", "z")  # declared only
    with pytest.raises(KeyError):
        family.remove("a", "n", "z")
    assert registry.get_sample_value("test_events_total", {"sensor": "a", "model": "m", "label": "x"}) is None
    assert registry.get_sample_value("test_events_total", {"sensor": "a", "model": "m", "label": "y"}) == 0.0
    family.clear()
    assert exposition(registry).decode().splitlines()[2:] == []


LOADED_OUTPUTS = """
import io, sys
import torch
from edge_agent.modelfile import load_model

path, how = sys.argv[1], sys.argv[2]
if how == "load_model":
    module = load_model(path).module
    print(torch._C._jit_set_profiling_executor(False))  # the mode load_model left: False = legacy executor
else:  # torch's default: the profiling executor
    torch.backends.quantized.engine = "onednn"
    module = torch.jit.load(path, map_location="cpu").eval()
    print(torch._C._jit_set_profiling_executor(True))
torch.set_num_threads(1)
torch.manual_seed(0)
with torch.inference_mode():
    for rows in (1, 32, 32, 32, 8):  # the profiling executor optimises a graph after its first calls
        logits, floors = module.forward_with_noise_floor(torch.randn(rows, 1, 2048))
print(logits.flatten().tolist() + floors.tolist())
"""


def test_models_run_on_the_legacy_executor_with_the_same_outputs() -> None:
    """The profiling executor keeps profiled and optimised copies of every method's graph (4.4 MiB of RSS
    for the shipped int8 CWRU file, 19.5 MiB for the four shipped files); on these frozen graphs the legacy
    executor runs the same kernels."""
    from pathlib import Path

    path = str(Path(__file__).resolve().parents[2] / "models" / "drsn_cw_cwru.pt")
    mode, ours = _run_with(LOADED_OUTPUTS, path, "load_model")
    default_mode, torchs = _run_with(LOADED_OUTPUTS, path, "torch.jit.load")
    assert (mode, default_mode) == ("False", "True")
    assert ours == torchs  # bit for bit


def _run_with(code: str, *argv: str) -> list[str]:
    result = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", code, *argv], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()


def test_a_scrape_holds_its_text_once() -> None:
    """The exporter writes the exposition a family at a time: joined, a scrape held the families' text, the
    joined text and its encoded copy at once (3x the body; ~3.3 MiB left in the scrape thread's malloc
    arena at 200 sensors, kept for the next scrape)."""
    import socket
    import tracemalloc
    import urllib.request

    from edge_agent.metrics import AgentMetrics
    from edge_agent.service.exporter import serve_metrics

    metrics = AgentMetrics()
    for i in range(1000):  # several families, as in the agent (the text of one family is held twice, briefly)
        for label in ("Normal", "B007", "B014", "IR007"):
            metrics.probability.labels(f"sensor-{i:04d}", "bearing", label).set(0.123456789 + i)
            metrics.predictions.labels(f"sensor-{i:04d}", "bearing", label).inc(i)
            metrics.fault_active.labels(f"sensor-{i:04d}", "bearing", label).set(1)
            metrics.alerts.labels(f"sensor-{i:04d}", label, "new").inc(i + 1)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    serve_metrics(metrics, "127.0.0.1", port)

    def scrape() -> int:
        size = 0
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
            while chunk := response.read(16384):  # the client keeps no copy
                size += len(chunk)
        return size

    scrape()
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        size = scrape()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert size > 500_000
    assert peak - before < 2 * size, f"a scrape of {size} bytes peaked at {peak - before} bytes"


def test_the_windowing_keeps_only_the_samples_a_later_window_needs() -> None:
    """Between chunks a sensor holds window - hop samples (4 kB at 2048 / 1024), not the whole buffer the
    last window was cut from (8 kB): once inference drops the window, its samples are freed."""
    import gc
    import weakref

    import numpy as np

    from edge_agent.pipeline.windowing import WindowAssembler
    from edge_agent.types import Chunk

    assembler = WindowAssembler(2048, 1024, 12000.0, 1)
    chunk = np.ones((1, 1024), dtype=np.float32)
    windows = []
    for i in range(3):
        windows += assembler.push(Chunk("s", i * 1024 / 12000.0, 12000.0, chunk, seq=i))
    assert len(windows) == 2 and assembler.buffered_samples("s") == 1024
    cut_from = weakref.ref(windows[-1].samples.base)
    del windows
    gc.collect()
    assert cut_from() is None


def test_the_softmax_is_torchs_without_its_kernel() -> None:
    import numpy as np
    import torch

    from edge_agent.pipeline.inference import softmax_rows

    rng = np.random.default_rng(4)
    logits = (rng.normal(size=(32, 10)) * 30).astype(np.float32)  # large spreads: the shift matters
    logits[0] = 200.0  # a row of equal logits
    ours = softmax_rows(logits)
    assert ours.dtype == np.float32
    np.testing.assert_allclose(ours, torch.softmax(torch.from_numpy(logits), dim=1).numpy(), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(ours[0], np.full(10, 0.1, dtype=np.float32), rtol=1e-6)
    assert np.all(np.isfinite(ours))
