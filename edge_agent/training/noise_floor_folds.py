"""Audio models trained with the shipped recipe on all speeds but one (held-out speeds for the noise-floor report).

The shipped audio model saw every clip, so its noise floor on those clips is not a held-out
measurement; these fold models are. Cached as ``state_dict`` files under ``runs/noise_floor/``
(about 10 minutes of one CPU thread each).
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import torch

from edge_agent.nn.audio import AudioResidualNet1d
from edge_agent.training.audio_data import BldcDataset, Clip
from edge_agent.training.audio_train import AudioTrainConfig, build_audio_model, train_audio

logger = logging.getLogger(__name__)

HELD_OUT_RPMS = (1950, 2000)  # the two speeds with all three classes recorded
RUN_DIR = Path("runs/noise_floor")


def shipped_audio_config(config_json: dict[str, object]) -> AudioTrainConfig:
    return AudioTrainConfig.from_json(dict(config_json))


def fold_model(
    dataset: BldcDataset, rpm: int, config: AudioTrainConfig, run_dir: Path = RUN_DIR
) -> tuple[AudioResidualNet1d, list[Clip]]:
    """The model trained without the clips at ``rpm`` (trained and cached if missing) and those clips."""
    held_out = [c for c in dataset.clips if c.rpm == rpm]
    if not held_out:
        raise ValueError(f"no clip at {rpm} RPM; speeds: {dataset.speeds}")
    path = run_dir / f"audio-rpm{rpm}-seed{config.seed}.pt"
    model = build_audio_model(config)
    if path.is_file():
        state = torch.load(path, weights_only=False)
        if state["config"] != config.to_json() or state["data_sha256"] != dataset.sha256:
            raise ValueError(f"{path} was trained with another configuration or data; delete it")
        model.load_state_dict(state["model"])
        return model.eval(), held_out
    logger.info("training the audio model without %d RPM (shipped recipe, CPU)", rpm)
    torch.manual_seed(config.seed)
    trained = train_audio(dataclasses.replace(config), [c for c in dataset.clips if c.rpm != rpm])
    run_dir.mkdir(parents=True, exist_ok=True)
    torch.save({"config": config.to_json(), "data_sha256": dataset.sha256, "model": trained.state_dict()}, path)
    return trained.eval(), held_out
