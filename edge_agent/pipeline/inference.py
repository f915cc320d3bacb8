"""One inference worker thread: bounded window queue, batching per model, TorchScript calls.

Windows wait in a bounded queue (overflow drops the oldest and counts it); the worker takes
up to ``max_batch`` windows of one model, waiting at most ``max_wait_s`` for a batch to fill,
runs the model under ``torch.inference_mode()`` and hands each :class:`Prediction` to the
callback (decision and sinks run on this thread; they are fast and never block).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import torch

from edge_agent.config import InferenceSection
from edge_agent.metrics import AgentMetrics
from edge_agent.modelfile import LoadedModel
from edge_agent.types import ANOMALOUS, NOT_ANOMALOUS, Prediction, Window

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class QueuedWindow:
    model: str
    window: Window


class WindowQueue:
    """Bounded FIFO of windows; ``put`` on a full queue drops the oldest window and counts it.

    One deque per model, each item tagged with an arrival number, so every operation costs
    O(number of models) however many windows wait.
    """

    def __init__(self, capacity: int, metrics: AgentMetrics) -> None:
        if capacity < 1:
            raise ValueError(f"queue capacity must be >= 1, got {capacity}")
        self._by_model: dict[str, deque[tuple[int, Window]]] = {}
        self._size = 0
        self._arrivals = 0
        self._capacity = capacity
        self._metrics = metrics
        self._ready = threading.Condition()

    def put(self, item: QueuedWindow) -> None:
        with self._ready:
            if self._size >= self._capacity:
                self._by_model[self._oldest_model()].popleft()
                self._size -= 1
                self._metrics.windows_dropped.labels("queue_full").inc()
            self._by_model.setdefault(item.model, deque()).append((self._arrivals, item.window))
            self._arrivals += 1
            self._size += 1
            self._metrics.queue_depth.set(self._size)
            self._ready.notify()

    def take_batch(self, max_batch: int, max_wait_s: float, stop: threading.Event) -> list[QueuedWindow]:
        """Up to ``max_batch`` windows of the oldest window's model; empty if nothing came in 0.2 s."""
        with self._ready:
            if not self._size:
                self._ready.wait(timeout=0.2)
            if not self._size:
                return []
            deadline = time.monotonic() + max_wait_s
            model = self._oldest_model()
            waiting = self._by_model[model]
            while len(waiting) < max_batch and not stop.is_set():
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._ready.wait(timeout=remaining):
                    break
            batch = [QueuedWindow(model, waiting.popleft()[1]) for _ in range(min(max_batch, len(waiting)))]
            self._size -= len(batch)
            self._metrics.queue_depth.set(self._size)
            return batch

    def _oldest_model(self) -> str:
        """The model whose queue holds the oldest window (call only when the queue is not empty)."""
        return min((name for name, q in self._by_model.items() if q), key=lambda name: self._by_model[name][0][0])

    def __len__(self) -> int:
        return self._size


class InferenceWorker:
    """Runs the models on queued windows in one named thread."""

    def __init__(
        self,
        models: Mapping[str, LoadedModel],
        config: InferenceSection,
        metrics: AgentMetrics,
        on_prediction: Callable[[Prediction], None],
    ) -> None:
        self.models = models
        self.config = config
        self.metrics = metrics
        self.on_prediction = on_prediction
        self.queue = WindowQueue(config.queue_windows, metrics)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_progress_s = time.monotonic()  # watchdog: advances on every loop turn

    def reconfigure(
        self, *, models: Mapping[str, LoadedModel] | None = None, config: InferenceSection | None = None
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
        inputs = torch.from_numpy(np.stack([item.window.samples for item in batch]))
        started = time.perf_counter()
        if loaded.meta.anomaly is not None:
            self._score(name, loaded, batch, inputs, started)
            return
        floors: list[float | None] = [None] * len(batch)
        with torch.inference_mode():
            if loaded.meta.noise_floor is not None:  # the file has the method (meta.json key noise_floor)
                logits, noise = loaded.module.forward_with_noise_floor(inputs)
                floors = noise.tolist()
            else:
                logits = loaded.module(inputs)
            probabilities = torch.softmax(logits, dim=1).numpy()
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
        threshold = loaded.meta.anomaly.threshold
        with torch.inference_mode():
            scores = loaded.module(inputs).reshape(len(batch)).tolist()
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
            )
            self._hand_over(prediction)

    def _count(self, name: str, windows: int, started: float) -> None:
        self.metrics.inference_duration.labels(name).observe(time.perf_counter() - started)
        self.metrics.batch_size.labels(name).observe(windows)
        self.metrics.windows_processed.labels(name).inc(windows)
        self.metrics.last_processed.set(time.time())

    def _hand_over(self, prediction: Prediction) -> None:
        try:
            self.on_prediction(prediction)
        except Exception:  # a failing consumer must not kill inference; counted and logged
            self.metrics.windows_dropped.labels("consumer_error").inc()
            logger.exception("prediction consumer failed for sensor %s", prediction.sensor)
