"""Learning a sensor's healthy baseline on the gateway, from its live stream (issue 10, item 5).

An operator puts a sensor into learning (``edge-agent learn --sensor NAME --duration 10m`` through
the control socket, edge_agent.service.control). One run per sensor goes through the states of
:data:`TRANSITIONS`:

``recording``  its live windows' raw samples go to ``<state_dir>/learning/<sensor>/`` (bounded in
               bytes, counted: edge_agent.pipeline.recorder); classifier faults on the sensor are counted;
``training``   a separate process, ``nice -n 10`` with one thread, runs ``python -m edge_agent learn``
               (the training package: the runtime never imports it) on the recording;
``validating`` the new file is loaded, its kind, input, threshold and held-back false-window rate checked;
then it goes to ``<state_dir>/learned/<sensor>.pt`` and ``install`` swaps it in through the reload path
(App.apply: window buffers and the inference queue are kept, so no sample is lost), and the state is
``idle`` again. A run that fails (too little data, the stream stopped, the trainer died, the file did not
validate) ends in ``failed``, says why (log line, ``message``), and leaves the running model and the
learned file as they were. The main thread drives the runs (:meth:`LearningManager.poll`, every tick).
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from edge_agent.metrics.learning import LearningMetrics
from edge_agent.modelfile import LoadedModel, load_model
from edge_agent.pipeline.recorder import WindowRecorder
from edge_agent.service.learn_state import (
    FAULT_REFUSE_FRACTION,
    FLAGGED_REFUSE_FRACTION,
    MIN_RECORDED_FRACTION,
    LearningError,
    LearningRun,
    LearnRequest,
    LearnTarget,
    request_problem,
)
from edge_agent.service.learn_trainer import run_trainer
from edge_agent.types import Prediction, Window

logger = logging.getLogger(__name__)

LEARNING_LABEL = "learning"  # health label while a sensor learns
LEARNING_FAILED_LABEL = "learning_failed"  # health label after a failed run (the old model runs)


class LearningManager:
    """The sensors' learning runs: started by requests, fed by the data path, driven by :meth:`poll`."""

    def __init__(
        self,
        state_dir: Path,
        metrics: LearningMetrics,
        *,
        targets: Callable[[str], LearnTarget | None],
        install: Callable[[str, LoadedModel], None],
        normal_labels: Sequence[str] = ("Normal", "healthy"),
        min_confidence: float = 0.8,
        trainer: Sequence[str] | None = None,
    ) -> None:
        self.state_dir = state_dir
        self.metrics = metrics
        self._targets = targets
        self._install = install
        self.normal_labels = tuple(normal_labels)
        self.min_confidence = min_confidence
        self.trainer = tuple(trainer) if trainer else ("nice", "-n", "10", sys.executable, "-m", "edge_agent", "learn")
        self.runs: dict[str, LearningRun] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ requests (control thread)

    def start(self, request: LearnRequest, now_s: float | None = None) -> str:
        """Put ``request.sensor`` into recording; :class:`LearningError` saying why not."""
        now_s = time.monotonic() if now_s is None else now_s
        problem = request_problem(request)
        target = self._targets(request.sensor)
        if target is None:
            problem = problem or f"no running source has a sensor {request.sensor!r}"
        with self._lock:
            run = self.runs.get(request.sensor)
            if run is not None and run.state not in ("idle", "failed"):
                problem = problem or f"sensor {request.sensor} is already learning ({run.state})"
            if problem or target is None:
                if target is not None:
                    self.metrics.runs.labels(request.sensor, "refused").inc()
                raise LearningError(problem)
            if run is None:
                self.metrics.init_sensor(request.sensor)
            folder = self.state_dir / "learning" / request.sensor
            recorder = WindowRecorder(
                folder,
                channels=target.channels,
                hop_samples=target.hop_samples,
                sample_rate_hz=target.sample_rate_hz,
                max_bytes=request.max_bytes,
            )
            run = LearningRun(request, target, now_s, state=run.state if run else "idle", last_window_s=now_s)
            run.recorder = recorder
            self._move(run, "recording", f"recording {request.duration_s:g} s of {target.source}")
            self.runs[request.sensor] = run
        note = "" if target.install_model else " (no anomaly model on its source: the learned file is kept, not loaded)"
        logger.warning(
            "learning: sensor %s records %g s of its live stream for a new baseline; a baseline learned while a "
            "fault is present hides that fault%s",
            request.sensor,
            request.duration_s,
            note,
        )
        return f"sensor {request.sensor}: recording {request.duration_s:g} s{note}"

    def status(self) -> dict[str, dict[str, object]]:
        with self._lock:
            return {sensor: self._describe(run) for sensor, run in self.runs.items()}

    # ------------------------------------------------------------------ the data path (source, inference threads)

    def tap(self, model: str, window: Window) -> None:
        """A window the router queued (source thread): recorded if its sensor records and ``model`` is tapped."""
        run = self.runs.get(window.sensor)
        if run is None or run.state != "recording" or model != run.target.tap_model or run.recorder is None:
            return
        try:
            run.recorder.add(window)
        except ValueError:  # another channel count than the run's: not recorded (the source thread goes on)
            run.recorder.counts.refused += 1
            return
        run.last_window_s = time.monotonic()

    def observe(self, prediction: Prediction) -> None:
        """A prediction on a recording sensor (inference thread): classifier faults and anomalies are counted."""
        run = self.runs.get(prediction.sensor)
        if run is None or run.state != "recording":
            return
        if prediction.score is not None:  # an anomaly model's window
            run.anomaly_windows += 1
            run.flagged_windows += int(prediction.anomalous)
            return
        run.windows_seen += 1
        if prediction.label not in self.normal_labels and prediction.confidence >= self.min_confidence:
            run.fault_windows += 1

    # ------------------------------------------------------------------ driving (main thread)

    def poll(self, now_s: float | None = None) -> None:
        """Ends recordings that are due, starts trainers, installs validated models (main thread, every tick)."""
        now_s = time.monotonic() if now_s is None else now_s
        for run in list(self.runs.values()):
            try:
                if run.state == "recording":
                    self._poll_recording(run, now_s)
                elif run.state in ("training", "validating") and run.outcome is not None:
                    self._finish(run)
            except LearningError as error:
                self._fail(run, str(error))
            if run.recorder is not None:
                self.metrics.seconds.labels(run.request.sensor).set(run.recorder.seconds)
                self.metrics.recorded_bytes.labels(run.request.sensor).set(run.recorder.counts.bytes)

    def conditions(self) -> list[tuple[str, str, bool]]:
        """Health conditions (the retained state topic, Home Assistant, alerts): ``learning`` while a sensor
        records, trains or validates, ``learning_failed`` from a failed run until the next one starts."""
        return [
            (sensor, label, active)
            for sensor, run in list(self.runs.items())
            for label, active in (
                (LEARNING_LABEL, run.state in ("recording", "training", "validating")),
                (LEARNING_FAILED_LABEL, run.state == "failed"),
            )
        ]

    def stop(self) -> None:
        """The agent stops: trainer processes are ended, recordings discarded (the old models stay)."""
        for run in list(self.runs.values()):
            if run.process is not None and run.process.poll() is None:
                run.process.kill()
            if run.state in ("recording", "training", "validating"):
                self._fail(run, "the agent stopped")

    def _poll_recording(self, run: LearningRun, now_s: float) -> None:
        recorder = run.recorder
        assert recorder is not None
        if now_s - run.last_window_s > run.request.stall_s:
            raise LearningError(
                f"the stream stopped: no window for {now_s - run.last_window_s:.0f} s "
                f"({recorder.seconds:.1f} s recorded)"
            )
        if now_s - run.started_s < run.request.duration_s and not recorder.full:
            return
        recorded_s, wanted_s = recorder.seconds, run.request.duration_s
        if recorder.full and recorded_s < wanted_s:
            run.warnings.append(
                f"the recording reached its bound of {run.request.max_bytes} bytes at {recorded_s:.1f} s"
            )
        elif recorded_s < MIN_RECORDED_FRACTION * wanted_s:
            raise LearningError(f"too little data: {recorded_s:.1f} s recorded of {wanted_s:g} s (the stream dropped)")
        self._check_health(run)
        path = recorder.finish()
        self._move(run, "training", f"training on {recorded_s:.1f} s ({recorder.counts.windows} windows)")
        threading.Thread(target=self._train, args=(run, path), name=f"learn-{run.request.sensor}", daemon=True).start()

    def _check_health(self, run: LearningRun) -> None:
        if run.fault_windows > FAULT_REFUSE_FRACTION * max(run.windows_seen, 1):
            raise LearningError(
                f"refused: the classifier reported a fault in {run.fault_windows} of {run.windows_seen} windows of "
                "the recording; a baseline learned while a fault is present hides that fault"
            )
        if run.flagged_windows > FLAGGED_REFUSE_FRACTION * max(run.anomaly_windows, 1) and not run.request.force:
            raise LearningError(
                f"refused: the running anomaly model flagged {run.flagged_windows} of {run.anomaly_windows} windows "
                "of the recording; learn only while the machine is known to be healthy (after a repair or a new "
                "operating point: edge-agent learn --force)"
            )
        if run.fault_windows or run.flagged_windows:
            message = (
                f"{run.fault_windows} of {run.windows_seen} classifier windows said fault and {run.flagged_windows} "
                f"of {run.anomaly_windows} were anomalous during the recording; learning goes on, check the machine"
            )
            run.warnings.append(message)
            logger.warning("learning: sensor %s: %s", run.request.sensor, message)

    def _train(self, run: LearningRun, recording: Path) -> None:
        """The trainer thread: the training process, then its file validated; the outcome goes to ``poll``."""
        run.outcome = run_trainer(self.trainer, run, recording)

    def _finish(self, run: LearningRun) -> None:
        assert run.outcome is not None
        ok, message, loaded = run.outcome
        if run.state == "training":
            self._move(run, "validating", "checking the new model")
        if not ok or loaded is None:
            raise LearningError(message)
        learned = self.state_dir / "learned" / f"{run.request.sensor}.pt"
        learned.parent.mkdir(parents=True, exist_ok=True)
        staged = learned.with_suffix(".pt.new")
        shutil.copyfile(loaded.path, staged)
        os.replace(staged, learned)  # the previous learned file stays until the new one validated
        installed = load_model(learned, expected_sha256=loaded.sha256, check=False)
        if run.target.install_model is not None:
            try:
                self._install(run.target.install_model, installed)
            except (ValueError, OSError) as error:
                raise LearningError(f"validated but not loaded ({learned}): {error}") from error
            where = f"running as model {run.target.install_model}"
        else:
            where = f"kept at {learned}; add it to the source's models to run it"
        if run.recorder is not None:
            run.recorder.discard()
        self._move(run, "idle", f"learned: {message}; {where}")
        self.metrics.runs.labels(run.request.sensor, "learned").inc()
        self.metrics.last_learned.labels(run.request.sensor).set(time.time())
        logger.info("learning: sensor %s learned a new baseline: %s; %s", run.request.sensor, message, where)

    def _fail(self, run: LearningRun, why: str) -> None:
        if run.recorder is not None:
            run.recorder.discard()
        run.state, run.message = "failed", why  # from every state (the agent stops)
        self.metrics.set_state(run.request.sensor, "failed")
        self.metrics.runs.labels(run.request.sensor, "failed").inc()
        logger.error("learning: sensor %s failed, the old model keeps running: %s", run.request.sensor, why)

    def _move(self, run: LearningRun, state: str, message: str) -> None:
        run.move(state, message)
        self.metrics.set_state(run.request.sensor, state)
        logger.info("learning: sensor %s %s: %s", run.request.sensor, state, message)

    @staticmethod
    def _describe(run: LearningRun) -> dict[str, object]:
        recorder = run.recorder
        return {
            "state": run.state,
            "message": run.message,
            "seconds_recorded": round(recorder.seconds, 3) if recorder else 0.0,
            "windows_recorded": recorder.counts.windows if recorder else 0,
            "bytes_recorded": recorder.counts.bytes if recorder else 0,
            "warnings": list(run.warnings),
        }
