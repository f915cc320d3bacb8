"""``edge-agent demo``: stream the held-out end of CWRU records through a shipped model.

Runtime code only (no training imports): reads the CWRU pack with numpy, slides windows over
the test part (the last 20 %, in time, of each record in the pack) at the model's hop, and
prints what the model hears, record by record: healthy -> fault -> healthy, then a summary
over every record.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import numpy as np
import torch

from edge_agent.modelfile import load_model

logger = logging.getLogger(__name__)

CWRU_FILE = Path("cwru") / "cwru_12k_de_dev.npz"
TEST_FRACTION = 0.2
SEQUENCE = ("097", "105", "097")  # healthy -> inner-race fault -> healthy


def _data_root(explicit: str | None) -> Path:
    if explicit:
        return Path(explicit)
    env = os.environ.get("EDGE_AGENT_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _windows(signal: np.ndarray, window_samples: int, hop_samples: int) -> torch.Tensor:
    test = signal[round(signal.size * (1 - TEST_FRACTION)) :]
    starts = range(0, test.size - window_samples + 1, hop_samples)
    return torch.from_numpy(np.stack([test[s : s + window_samples] for s in starts])[:, None, :].copy())


def run_demo(model_path: Path, data: str | None = None, *, print_fn=print) -> float:
    """Classify the test windows of every record; returns the overall window accuracy."""
    started = time.perf_counter()
    model = load_model(model_path)
    meta = model.meta
    window_samples, hop_samples = int(meta["window_samples"]), int(meta["hop_samples"])
    path = _data_root(data) / CWRU_FILE
    if not path.is_file():
        raise FileNotFoundError(f"CWRU data not found at {path}; pass --data or set $EDGE_AGENT_DATA")
    load_s = time.perf_counter() - started
    print_fn(f"model {model_path} ({meta['precision']}, {meta['architecture']}), loaded in {load_s:.2f} s")
    with np.load(path, allow_pickle=False) as pack:
        names = [str(n) for n in pack["class_names"]]
        records = {
            str(k): (pack[str(k)], names[int(label)]) for k, label in zip(pack["keys"], pack["labels"], strict=True)
        }
    print_fn("stream: " + " -> ".join(f"{key} ({records[key][1]})" for key in SEQUENCE))
    with torch.inference_mode():
        for key in SEQUENCE:
            signal, truth = records[key]
            predicted = model.module(_windows(signal, window_samples, hop_samples)).softmax(dim=1)
            confidence, index = predicted.max(dim=1)
            for position, (p, i) in enumerate(zip(confidence.tolist(), index.tolist(), strict=True)):
                t_s = position * hop_samples / int(meta["sample_rate_hz"])
                print_fn(f"  record {key} t={t_s:5.2f} s  predicted {names[i]:<8} p={p:.2f}  (truth {truth})")
        correct = total = 0
        for signal, truth in records.values():
            index = model.module(_windows(signal, window_samples, hop_samples)).argmax(dim=1)
            correct += int(sum(names[i] == truth for i in index.tolist()))
            total += len(index)
    accuracy = correct / total
    print_fn(f"all {len(records)} records: {correct}/{total} held-out windows right ({100 * accuracy:.2f} %)")
    return accuracy
