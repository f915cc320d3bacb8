"""The trainer of a learning run: ``python -m edge_agent learn`` in a separate, low-priority process, one thread,
and the checks its file must pass before the agent loads it (edge_agent.service.learning)."""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

from edge_agent.modelfile import LoadedModel, load_model
from edge_agent.service.learn_state import LearningRun, LearnRequest, LearnTarget

logger = logging.getLogger(__name__)

MAX_FALSE_RATE_FACTOR = 5.0  # the held-back false-window rate may be at most this times the target (or 5 %)
Outcome = tuple[bool, str, LoadedModel | None]


def run_trainer(trainer: Sequence[str], run: LearningRun, recording: Path) -> Outcome:
    """Run ``trainer`` on ``recording`` (``run.process`` holds the process while it runs), then validate."""
    out = recording.with_name("candidate.pt")
    request, target = run.request, run.target
    command = [
        *trainer,
        str(recording),
        f"--out={out}",
        f"--sample-rate-hz={target.sample_rate_hz:g}",
        f"--window-samples={target.window_samples}",
        f"--hop-samples={target.hop_samples}",
        f"--model={request.network}",
        f"--frontend={request.frontend}",
        f"--false-rate={request.false_rate:g}",
        f"--steps={request.steps}",
        "--quiet",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    try:
        run.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True
        )
        stdout, stderr = run.process.communicate()
        code = run.process.returncode
    except OSError as error:
        return False, f"the trainer could not be started: {error}", None
    if code != 0:
        why = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
        last = (stderr.strip().splitlines() or ["no output"])[-1]
        return False, f"the trainer process {why}: {last}", None
    return validate(out, stdout, target, request)


def validate(path: Path, stdout: str, target: LearnTarget, request: LearnRequest) -> Outcome:
    """Load the trainer's file and check it (kind, input, threshold, held-back false-window rate)."""
    try:
        loaded = load_model(path)
        summary = json.loads(stdout[stdout.index("{") :])
        held_back = float(summary["held_back_false_rate"])
    except (OSError, ValueError, KeyError) as error:
        return False, f"the new model did not validate: {error}", None
    meta = loaded.meta
    scoring = meta.anomaly
    if meta.kind != "anomaly" or scoring is None:
        return False, f"the new model is of kind {meta.kind!r}, not 'anomaly'", None
    if meta.sample_rate_hz != target.sample_rate_hz or meta.channels != target.channels:
        return False, f"the new model takes {meta.channels} channels at {meta.sample_rate_hz:g} Hz", None
    if not math.isfinite(scoring.threshold) or scoring.threshold <= 0:
        return False, f"the new model's threshold {scoring.threshold} is not a positive number", None
    limit = max(MAX_FALSE_RATE_FACTOR * request.false_rate, 0.05)
    if held_back > limit:
        return False, f"held-back false-window rate {held_back:.3f} above {limit:.3f}", None
    return True, f"threshold {scoring.threshold:.4g}, held-back false-window rate {held_back:.3f}", loaded
