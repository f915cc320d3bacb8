"""Put ``label_info`` (descriptions, severities) into the four shipped model files without retraining.

Only ``meta.json`` is rewritten (:func:`edge_agent.training.label_info.rewrite_label_info`); each file
is replaced only if its outputs are bit-identical before and after on real windows of its dataset
(CWRU drive-end / BLDC motor sound, read at run time from the data folder). Prints the new sha256s
for models/README.md. Run: ``PYTHONPATH=$PWD .venv/bin/python benchmarks/relabel_shipped_models.py``.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import numpy as np
import torch

from edge_agent.modelfile import read_meta
from edge_agent.training.audio_data import load_bldc
from edge_agent.training.data import load_cwru
from edge_agent.training.label_info import AUDIO_LABEL_INFO, CWRU_LABEL_INFO, rewrite_label_info

MODELS = Path(__file__).resolve().parents[1] / "models"
WINDOWS = 16


def _cwru_windows(window_samples: int) -> torch.Tensor:
    segments = load_cwru(None).splits["test"][:: 40 // WINDOWS][:WINDOWS]  # one window of every other record
    return torch.from_numpy(np.stack([s.samples[:, :window_samples] for s in segments]).astype(np.float32))


def _audio_windows(window_samples: int) -> torch.Tensor:
    clips = load_bldc().clips[::2][:WINDOWS]
    return torch.from_numpy(np.stack([c.samples[:window_samples] for c in clips])[:, None, :].astype(np.float32))


def main() -> int:
    torch.set_num_threads(1)
    jobs = [
        ("drsn_cw_cwru.pt", CWRU_LABEL_INFO, _cwru_windows),
        ("drsn_cw_cwru_float.pt", CWRU_LABEL_INFO, _cwru_windows),
        ("drsn_cw_bldc_audio.pt", AUDIO_LABEL_INFO, _audio_windows),
        ("drsn_cw_bldc_audio_float.pt", AUDIO_LABEL_INFO, _audio_windows),
    ]
    for name, table, windows_of in jobs:
        path = MODELS / name
        old = hashlib.sha256(path.read_bytes()).hexdigest()
        windows = windows_of(read_meta(path).window_samples)
        meta = rewrite_label_info(path, table, windows)
        new = hashlib.sha256(path.read_bytes()).hexdigest()
        print(f"{name}: {len(meta['label_info'])} labels described; {len(windows)} windows bit-identical")
        print(f"  sha256 {old} -> {new}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
