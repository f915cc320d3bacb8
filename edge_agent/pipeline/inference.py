"""One inference worker thread: bounded window queue, batching per model, TorchScript calls.

Windows wait in a bounded queue, fair across sensors (overflow drops the oldest window of the
sensor with the most waiting, counted); the worker takes up to ``max_batch`` windows of one model
round-robin over its sensors, waiting at most ``max_wait_s`` for a batch to fill,
runs the model under ``torch.inference_mode()`` and hands each :class:`Prediction` to the
callback (decision and sinks run on this thread; they are fast and never block). Each verdict
goes back to the queue (:meth:`WindowQueue.observe`): a sensor whose window was a fault (a label
outside ``normal_labels``, or anomalous) is served first under overload until it is normal again.

A batch goes to the model zero-padded to the next power of two (at most ``max_batch``): every new
input shape makes oneDNN and the TorchScript graph keep another set of primitives and buffers, never
released (~0.8 MiB in use, ~1.7 MiB of RSS each), so 32 possible batch sizes cost ~44 MiB more RSS
than these 6 (benchmarks/bench_memory.py). Rows are independent in an inference graph, so padding
rows change no real row's output (logits within float rounding, 4e-6); they are dropped.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping

import numpy as np
import torch

from edge_agent.config import InferenceSection
from edge_agent.metrics import AgentMetrics
from edge_agent.modelfile import LoadedModel
from edge_agent.pipeline.window_queue import QueuedWindow, WindowQueue
from edge_agent.types import ANOMALOUS, NOT_ANOMALOUS, Prediction, Window

logger = logging.getLogger(__name__)


def padded_rows(windows: int, max_batch: int) -> int:
    """The batch size the model sees for ``windows`` windows: the next power of two, capped at
    ``max_batch`` (and never below ``windows``, should a batch ever exceed it)."""
    rows = 1 << max(0, windows - 1).bit_length()
    return max(windows, min(rows, max_batch))


def softmax_rows(logits: np.ndarray) -> np.ndarray:
    """Each row's softmax in numpy, shifted by its maximum: ``torch.softmax``'s first call pages in ~1.3 MiB
    of libtorch code that nothing else the agent runs needs (the fused files call no ATen kernel of that kind)."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    exponentials = np.exp(shifted)
    return exponentials / exponentials.sum(axis=1, keepdims=True)


def batch_inputs(batch: list[QueuedWindow], max_batch: int) -> torch.Tensor:
    """The windows of ``batch`` stacked, plus zero windows up to :func:`padded_rows`.

    ``np.empty`` and only the padding zeroed, not ``np.zeros``: a batch of 32 CWRU windows is 256 KiB, and
    jemalloc (the unit's allocator) answers a large ``calloc`` with fresh pages, 65 page faults a batch
    (``benchmarks/bench_batch_inputs.py``)."""
    first = batch[0].window.samples
    stacked = np.empty((padded_rows(len(batch), max_batch), *first.shape), dtype=first.dtype)
    np.stack([item.window.samples for item in batch], out=stacked[: len(batch)])
    stacked[len(batch) :] = 0
    return torch.from_numpy(stacked)


class InferenceWorker:
    """Runs the models on queued windows in one named thread."""

    def __init__(
        self,
        models: Mapping[str, LoadedModel],
        config: InferenceSection,
        metrics: AgentMetrics,
        on_prediction: Callable[[Prediction], None],
        normal_labels: tuple[str, ...] = ("Normal", "healthy"),
    ) -> None:
        self.models = models
        self.normal_labels = frozenset(normal_labels)  # [decision] normal_labels
        self.config = config
        self.metrics = metrics
        self.on_prediction = on_prediction
        self.queue = WindowQueue(config.queue_windows, metrics)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_progress_s = time.monotonic()  # watchdog: advances on every loop turn

    def reconfigure(
        self,
        *,
        models: Mapping[str, LoadedModel] | None = None,
        config: InferenceSection | None = None,
        normal_labels: tuple[str, ...] | None = None,
    ) -> None:
        """Swap the models and/or the settings (a reload); both are read once per batch, so a batch
        already taken finishes on the old ones and queued windows run on the new ones.

        Only ``max_batch`` and ``max_wait_s`` apply live: ``threads`` and ``queue_windows`` are
        read at start (the reload planner keeps their running values).
        """
        if models is not None:
            self.models = models
        if config is not None:
            self.config = config
        if normal_labels is not None:
            self.normal_labels = frozenset(normal_labels)

    def submit(self, model: str, window: Window) -> None:
        self.queue.put(QueuedWindow(model, window))

    def warm_up(self) -> None:
        """One call per model, so the first real window does not pay for lazy initialisation."""
        torch.set_num_threads(self.config.threads)
        for loaded in self.models.values():
            with torch.inference_mode():
                loaded.module(torch.zeros(1, loaded.channels, loaded.window_samples))
                if loaded.meta.noise_floor is not None:
                    loaded.module.forward_with_noise_floor(torch.zeros(1, loaded.channels, loaded.window_samples))

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="inference", daemon=True)
        self._thread.start()

    def stop(self, drain_timeout_s: float = 2.0) -> None:
        """Process what is queued until the deadline, then stop the thread."""
        deadline = time.monotonic() + drain_timeout_s
        while len(self.queue) and time.monotonic() < deadline and self.alive():
            time.sleep(0.01)
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        torch.set_num_threads(self.config.threads)
        while not self._stop.is_set():
            self.last_progress_s = time.monotonic()
            batch = self.queue.take_batch(self.config.max_batch, self.config.max_wait_s, self._stop)
            if batch:
                self._process(batch)

    def _process(self, batch: list[QueuedWindow]) -> None:
        name = batch[0].model
        loaded = self.models[name]
        inputs = batch_inputs(batch, self.config.max_batch)
        started = time.perf_counter()
        if loaded.meta.anomaly is not None:
            self._score(name, loaded, batch, inputs, started)
            return
        floors: list[float | None] = [None] * len(batch)
        with torch.inference_mode():
            if loaded.meta.noise_floor is not None:  # the file has the method (meta.json key noise_floor)
                logits, noise = loaded.module.forward_with_noise_floor(inputs)
                floors = noise[: len(batch)].tolist()
            else:
                logits = loaded.module(inputs)
            probabilities = softmax_rows(logits[: len(batch)].numpy())
        self._count(name, len(batch), started)
        labels = loaded.labels
        decided_at = time.monotonic()
        for item, row, floor in zip(batch, probabilities, floors, strict=True):
            best = int(row.argmax())
            prediction = Prediction(
                sensor=item.window.sensor,
                model=name,
                window=item.window,
                probabilities={label: float(p) for label, p in zip(labels, row, strict=True)},
                label=labels[best],
                confidence=float(row[best]),
                decided_at=decided_at,
                model_sha256=loaded.sha256,
                noise_floor=floor,
            )
            self._hand_over(prediction)

    def _score(
        self, name: str, loaded: LoadedModel, batch: list[QueuedWindow], inputs: torch.Tensor, started: float
    ) -> None:
        """An anomaly model's batch: one score per window, compared with the meta's threshold."""
        assert loaded.meta.anomaly is not None
        threshold, debounce = loaded.meta.anomaly.threshold, loaded.meta.anomaly.debounce
        with torch.inference_mode():
            scores = loaded.module(inputs).reshape(len(inputs))[: len(batch)].tolist()
        self._count(name, len(batch), started)
        decided_at = time.monotonic()
        for item, score in zip(batch, scores, strict=True):
            anomalous = score > threshold
            prediction = Prediction(
                sensor=item.window.sensor,
                model=name,
                window=item.window,
                probabilities={},
                label=ANOMALOUS if anomalous else NOT_ANOMALOUS,
                confidence=1.0,
                decided_at=decided_at,
                model_sha256=loaded.sha256,
                score=float(score),
                threshold=threshold,
                debounce=debounce,
            )
            self._hand_over(prediction)

    def _count(self, name: str, windows: int, started: float) -> None:
        self.metrics.inference_duration.labels(name).observe(time.perf_counter() - started)
        self.metrics.batch_size.labels(name).observe(windows)
        self.metrics.windows_processed.labels(name).inc(windows)
        self.metrics.last_processed.set(time.time())

    def _hand_over(self, prediction: Prediction) -> None:
        if prediction.score is not None:
            fault = prediction.label == ANOMALOUS
        else:
            fault = prediction.label not in self.normal_labels
        self.queue.observe(prediction.sensor, fault=fault)
        try:
            self.on_prediction(prediction)
        except Exception:  # a failing consumer must not kill inference; counted and logged
            self.metrics.windows_dropped.labels("consumer_error").inc()
            logger.exception("prediction consumer failed for sensor %s", prediction.sensor)
