"""Report section for a shipped TorchScript model: accuracy, confusion matrix, int8 versus float."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import numpy as np
import torch

from edge_agent.modelfile import load_model
from edge_agent.training.data import load_cwru
from edge_agent.training.evaluate import accuracy_vs_snr, confusion_matrix, predict_labels, summarize, test_windows
from edge_agent.training.noise import add_noise


def float_sibling(path: Path) -> Path:
    """``models/x.pt`` -> ``models/x_float.pt``: the float32 export shipped beside the int8 one."""
    return path.with_name(f"{path.stem}_float{path.suffix}")


def latency_ms_per_window(
    modules: list[torch.nn.Module], window_samples: int, *, batch: int = 32, runs: int = 40
) -> list[float]:
    """Median latency per window of each module, one thread; calls alternate so load hits all alike."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    inputs = torch.randn(batch, 1, window_samples)
    timings: list[list[float]] = [[] for _ in modules]
    with torch.inference_mode():
        for index in range(runs + 5):
            for module, samples in zip(modules, timings, strict=True):
                started = time.perf_counter()
                module(inputs)
                if index >= 5:
                    samples.append(time.perf_counter() - started)
    torch.set_num_threads(threads)
    return [1000.0 * statistics.median(samples) / batch for samples in timings]


def _plot_confusion(matrix: np.ndarray, labels: list[str], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 6))
    ax.imshow(matrix, cmap="Blues")
    for (row, col), value in np.ndenumerate(matrix):
        if value:
            ax.text(
                col, row, str(value), ha="center", va="center", color="black" if row != col else "white", fontsize=8
            )
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def shipped_model_section(path: Path, out_dir: Path, data: str | None) -> list[str]:
    loaded = load_model(path)
    meta = loaded.meta
    dataset = load_cwru(data)
    windows, labels = test_windows(dataset, int(meta["window_samples"]))
    labels_text = list(meta["labels"])
    lines = [
        f"## Shipped model `{path}`",
        "",
        f"Architecture: `{meta['architecture']}`, precision {meta['precision']}.",
        "",
    ]
    per_kind = accuracy_vs_snr(loaded.module, windows, labels)
    summary = summarize(per_kind)
    lines += ["| noise | " + " | ".join(summary) + " |", "|---|" + "---|" * len(summary)]
    for kind, values in [*per_kind.items(), ("mean", summary)]:
        lines.append(f"| {kind} | " + " | ".join(f"{100 * v:.2f}" for v in values.values()) + " |")
    lines.append("")
    for title, inputs, name in (
        ("clean test windows", windows, "confusion_clean.png"),
        (
            "test windows + Gaussian noise at -5 dB",
            add_noise(windows, "gaussian", -5.0, torch.Generator().manual_seed(5)),
            "confusion_gaussian_-5dB.png",
        ),
    ):
        matrix = confusion_matrix(loaded.module, inputs, labels, len(labels_text))
        _plot_confusion(matrix, labels_text, out_dir / name, f"{path.name}: {title}")
        lines += [f"![confusion matrix, {title}]({name})", ""]
    float_path = float_sibling(path)
    if float_path.exists():
        reference = load_model(float_path)
        lines += [
            "### int8 versus float32 (same weights)",
            "",
            "| condition | agreement of predicted labels (%) |",
            "|---|---|",
        ]
        generator = torch.Generator().manual_seed(11)
        for condition, inputs in (
            ("clean", windows),
            ("gaussian -5 dB", add_noise(windows, "gaussian", -5.0, generator)),
            ("pink -10 dB", add_noise(windows, "pink", -10.0, generator)),
        ):
            agree = (predict_labels(loaded.module, inputs) == predict_labels(reference.module, inputs)).float().mean()
            lines.append(f"| {condition} | {100 * float(agree):.2f} |")
        int8_ms, float_ms = latency_ms_per_window([loaded.module, reference.module], windows.shape[-1])
        lines += [
            "",
            "| latency per window, batch 32, one thread (median of 40 alternating calls) | ms |",
            "|---|---|",
            f"| int8 | {int8_ms:.3f} |",
            f"| float32 | {float_ms:.3f} |",
            f"| float / int8 | {float_ms / int8_ms:.2f}× |",
            "",
        ]
    return lines
