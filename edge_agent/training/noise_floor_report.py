"""``docs/results/noise_floor.md`` and its plot: how the noise floor follows added noise on held-out data.

    PYTHONPATH=. .venv/bin/python -m edge_agent.training.noise_floor_report    # ~1 min on one thread

Vibration: the shipped int8 file (what the agent runs) on the time-held-out test part of every CWRU
record (``training/data.py``: the last 20 % of the pack, hop 1024). Audio: the shipped model saw every
clip, so two models trained with the shipped recipe without one speed each (1950 and 2000 RPM, the speeds
with all three classes; :mod:`edge_agent.training.noise_floor_folds`, cached in ``runs/``) on the clips of
their held-out speed, with references measured on their own training clips (float32, eager). Noise is
added per window at a fixed SNR (``training/noise.py``); every value is a record's (clip's) mean over its
windows, then mean and standard deviation over records (clips). The ratio is each record's floor over
its own clean floor: what a trend of one sensor shows.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import torch

from edge_agent.modelfile import load_model
from edge_agent.nn.channels_last import to_channels_last_2d
from edge_agent.nn.noise_floor import DEFAULT_UNITS, NoiseFloorNet2d
from edge_agent.training.audio_data import load_bldc
from edge_agent.training.audio_export import all_windows
from edge_agent.training.audio_train import AudioTrainConfig
from edge_agent.training.data import load_cwru, make_windows
from edge_agent.training.noise import add_noise
from edge_agent.training.noise_floor_export import measure_references
from edge_agent.training.noise_floor_folds import HELD_OUT_RPMS, fold_model
from edge_agent.training.noise_floor_text import render

logger = logging.getLogger(__name__)

OUT_DIR = Path("docs/results")
SNRS_DB = (10.0, 7.5, 5.0, 2.5, 0.0, -2.5, -5.0, -7.5, -10.0)
TABLE_SNRS_DB = (10.0, 5.0, 0.0, -5.0, -10.0)
KINDS = ("gaussian", "pink", "laplacian")
Floors = dict[str, np.ndarray]  # condition ("clean" or "kind@snr") -> (groups,) mean floor per record or clip


def _floors(call: object, groups: list[torch.Tensor], seed: int) -> Floors:
    generator = torch.Generator().manual_seed(seed)
    result: dict[str, list[float]] = {}
    with torch.inference_mode():
        for windows in groups:
            result.setdefault("clean", []).append(float(call(windows).mean()))  # type: ignore[operator]
            for kind in KINDS:
                for snr in SNRS_DB:
                    noisy = add_noise(windows, kind, snr, generator)
                    result.setdefault(f"{kind}@{snr:g}", []).append(float(call(noisy).mean()))  # type: ignore[operator]
    return {key: np.asarray(values) for key, values in result.items()}


def vibration(data: str | None) -> tuple[Floors, list[str], list[str], float]:
    """Floors of the shipped int8 file per test record, the records, their classes and the largest
    int8 - float32 difference of the floor on the clean test windows."""
    loaded = load_model(Path("models/drsn_cw_cwru.pt"))
    reference = load_model(Path("models/drsn_cw_cwru_float.pt"))
    dataset = load_cwru(data)
    segments = dataset.splits["test"]
    groups = [torch.from_numpy(make_windows([s], loaded.window_samples, 1024)[0]) for s in segments]
    classes = [dataset.class_names[s.label] for s in segments]
    with torch.inference_mode():
        windows = torch.cat(groups)
        difference = float((loaded.module.noise_floor(windows) - reference.module.noise_floor(windows)).abs().max())
    return _floors(loaded.module.noise_floor, groups, seed=0), [s.key for s in segments], classes, difference


def audio(data: str | None) -> tuple[Floors, list[str], list[str]]:
    meta = load_model(Path("models/drsn_cw_bldc_audio_float.pt")).meta
    config = AudioTrainConfig.from_json(meta["training"]["config"])
    dataset = load_bldc(data)
    parts: list[Floors] = []
    names: list[str] = []
    classes: list[str] = []
    for rpm in HELD_OUT_RPMS:
        model, held_out = fold_model(dataset, rpm, config)
        network = to_channels_last_2d(model)
        train = dataclasses.replace(dataset, clips=tuple(c for c in dataset.clips if c.rpm != rpm))
        references = measure_references(network, all_windows(train, config), DEFAULT_UNITS)
        probe = NoiseFloorNet2d(network, units=DEFAULT_UNITS, references=references).eval()
        groups = [all_windows(dataclasses.replace(dataset, clips=(c,)), config) for c in held_out]
        parts.append(_floors(lambda x, probe=probe: probe(x)[1], groups, seed=rpm))
        names += [f"{c.motor} {c.rpm} RPM" for c in held_out]
        classes += [c.condition for c in held_out]
    return {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}, names, classes


def _mean_std(values: np.ndarray) -> str:
    return f"{values.mean():.3f} ± {values.std(ddof=1):.3f}" if len(values) > 1 else f"{values.mean():.3f}"


def table(floors: Floors, rows: np.ndarray | None = None, *, ratio: bool = False) -> list[str]:
    pick = np.ones(len(floors["clean"]), bool) if rows is None else rows
    header = "| noise | clean | " + " | ".join(f"{snr:+g} dB" for snr in TABLE_SNRS_DB) + " |"
    lines = [header, "|---" * (len(TABLE_SNRS_DB) + 2) + "|"]
    clean = floors["clean"][pick]
    for kind in KINDS:
        cells = []
        for snr in TABLE_SNRS_DB:
            values = floors[f"{kind}@{snr:g}"][pick]
            cells.append(_mean_std(values / clean if ratio else values))
        lines.append(f"| {kind} | {_mean_std(clean / clean if ratio else clean)} | " + " | ".join(cells) + " |")
    return lines


def plot(results: dict[str, tuple[Floors, np.ndarray | None]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(5.2 * len(results), 4.2), sharey=True)
    x = [15.0, *SNRS_DB]
    for ax, (title, (floors, rows)) in zip(np.atleast_1d(axes), results.items(), strict=True):
        pick = np.ones(len(floors["clean"]), bool) if rows is None else rows
        clean = floors["clean"][pick]
        for kind in KINDS:
            ratios = np.stack([clean / clean] + [floors[f"{kind}@{s:g}"][pick] / clean for s in SNRS_DB])
            spread = ratios.std(1, ddof=1) if ratios.shape[1] > 1 else np.zeros(len(x))
            ax.errorbar(x, ratios.mean(1), yerr=spread, capsize=3, marker="o", ms=3, label=kind)
        ax.axhline(1.0, color="grey", lw=0.8)
        ax.set_xticks([15, 10, 5, 0, -5, -10], ["clean", "+10", "+5", "0", "-5", "-10"])
        ax.invert_xaxis()
        ax.set_xlabel("added noise, SNR (dB)")
        ax.set_title(f"{title} (n = {int(pick.sum())})", fontsize=10)
        ax.grid(alpha=0.3)
    np.atleast_1d(axes)[0].set_ylabel("noise floor / its own clean value")
    np.atleast_1d(axes)[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(data: str | None = None, out_dir: Path = OUT_DIR) -> None:
    torch.set_num_threads(1)
    vib, keys, vib_classes, difference = vibration(data)
    aud, clips, aud_classes = audio(data)
    normal = np.asarray([c == "Normal" for c in vib_classes])
    healthy = np.asarray([c == "healthy" for c in aud_classes])
    out_dir.mkdir(parents=True, exist_ok=True)
    plot(
        {
            "vibration, int8, fault records": (vib, ~normal),
            "vibration, int8, normal record": (vib, normal),
            "audio, held-out speeds": (aud, None),
        },
        out_dir / "noise_floor.png",
    )
    text = render(
        vib, keys, vib_classes, aud, clips, aud_classes,
        table=table, normal=normal, healthy=healthy, int8_float_difference=difference,
    )  # fmt: skip
    (out_dir / "noise_floor.md").write_text(text)
    logger.info("wrote %s", out_dir / "noise_floor.md")


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    main()
