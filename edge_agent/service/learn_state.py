"""The states of a learning run on the gateway, and what a run asks for (edge_agent.service.learning)."""

from __future__ import annotations

import math
import subprocess
from dataclasses import dataclass, field

from edge_agent.common.learning import FRONTENDS, NETWORKS
from edge_agent.modelfile import LoadedModel
from edge_agent.pipeline.recorder import WindowRecorder

TRANSITIONS = {
    "idle": ("recording",),
    "failed": ("recording",),
    "recording": ("training", "failed"),
    "training": ("validating", "failed"),
    "validating": ("idle", "failed"),
}
MIN_RECORDED_FRACTION = 0.8  # of the requested duration: less means the stream dropped
FAULT_REFUSE_FRACTION = 0.2  # classifier fault windows above this part of the recording: refused
FLAGGED_REFUSE_FRACTION = 0.5  # windows the running anomaly model flags above this part: refused


@dataclass(frozen=True)
class LearnRequest:
    sensor: str
    duration_s: float
    network: str = "undercomplete"
    frontend: str = "logspec"
    false_rate: float = 0.01
    steps: int = 300
    max_bytes: int = 64 * 1024 * 1024
    stall_s: float = 10.0  # no window for this long while recording: the stream dropped
    force: bool = False  # learn even when the running anomaly model flags most of the recording (a change, a repair)


@dataclass(frozen=True)
class LearnTarget:
    """Where a sensor's stream is: the model whose windows are recorded, and the model a learned file replaces."""

    source: str
    tap_model: str  # its windows are recorded: the anomaly model itself, else the source's first model
    sample_rate_hz: float  # the tapped model's (its windows are resampled to it)
    channels: int
    window_samples: int  # of the model to learn
    hop_samples: int  # the tapped windows' hop (the recorder keeps these new samples of each)
    install_model: str | None = None  # an anomaly [[models]] entry of the sensor's source (None: file kept only)


class LearningError(ValueError):
    """A learning run that cannot go on; the message says why."""


@dataclass
class LearningRun:
    """One sensor's run: its state (changed only along :data:`TRANSITIONS`) and what it has seen."""

    request: LearnRequest
    target: LearnTarget
    started_s: float
    state: str = "idle"
    message: str = ""
    windows_seen: int = 0  # classifier predictions on the sensor during the recording
    fault_windows: int = 0  # ... of which said fault (not a normal label, confident)
    anomaly_windows: int = 0  # the running anomaly model's windows of the sensor during the recording
    flagged_windows: int = 0  # ... of which were anomalous
    last_window_s: float = 0.0
    recorder: WindowRecorder | None = None
    process: subprocess.Popen[str] | None = None
    outcome: tuple[bool, str, LoadedModel | None] | None = None  # set by the trainer thread
    warnings: list[str] = field(default_factory=list)

    def move(self, state: str, message: str = "") -> None:
        if state not in TRANSITIONS.get(self.state, ()):
            raise LearningError(f"learning {self.request.sensor}: {self.state} -> {state} is not a transition")
        self.state, self.message = state, message


def request_problem(request: LearnRequest) -> str:
    if not math.isfinite(request.duration_s) or request.duration_s <= 0:
        return f"duration {request.duration_s} s must be > 0"
    if request.network not in NETWORKS:
        return f"model {request.network!r} is not one of {', '.join(NETWORKS)}"
    if request.frontend not in FRONTENDS:
        return f"frontend {request.frontend!r} is not one of {', '.join(FRONTENDS)}"
    if not 0 < request.false_rate < 0.5:
        return f"false rate {request.false_rate} must be in (0, 0.5)"
    if request.steps < 1 or request.max_bytes < 1:
        return "steps and max_bytes must be >= 1"
    return ""
