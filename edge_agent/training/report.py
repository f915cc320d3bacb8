"""docs/results: accuracy versus SNR for every protocol, model costs and the shipped model."""

from __future__ import annotations

import json
import logging
import re
from collections import defaultdict
from pathlib import Path

import numpy as np

from edge_agent.training.evaluate import EVAL_SNRS_DB, evaluate_run
from edge_agent.training.noise import NOISE_TYPES, snr_label

logger = logging.getLogger(__name__)

RUN_NAME = re.compile(
    r"^(?P<protocol>augment|clean|paperrange|matched(?P<snr>[+-]\d+)dB)-(?P<model>\w+?)-s(?P<seed>\d+)$"
)
MODEL_ORDER = ("convnet", "resnet", "drsn_cs", "drsn_cw")
SNR_LABELS = [snr_label(s) for s in EVAL_SNRS_DB]


def collect_runs(runs_dir: Path, data: str | None) -> list[dict[str, object]]:
    """Every finished run (``summary.json`` present) with its evaluation."""
    runs = []
    for run_dir in sorted(p for p in runs_dir.iterdir() if (p / "summary.json").exists()):
        match = RUN_NAME.match(run_dir.name)
        if match is None:
            continue
        logger.info("evaluating %s", run_dir.name)
        runs.append(
            {
                "name": run_dir.name,
                "protocol": match["protocol"],
                "model": match["model"],
                "seed": int(match["seed"]),
                "summary": json.loads((run_dir / "summary.json").read_text()),
                "eval": evaluate_run(run_dir, data=data),
            }
        )
    return runs


def _by_model(runs: list[dict[str, object]], protocol: str) -> dict[str, list[dict[str, object]]]:
    grouped: dict[str, list[dict[str, object]]] = defaultdict(list)
    for run in runs:
        if run["protocol"] == protocol:
            grouped[run["model"]].append(run)
    return {m: grouped[m] for m in MODEL_ORDER if m in grouped}


def _curve(group: list[dict[str, object]], kind: str | None) -> np.ndarray:
    """Accuracy in % with shape (seeds, SNRs); ``kind=None`` is the mean over noise types."""
    rows = []
    for run in group:
        values = run["eval"]["summary"] if kind is None else run["eval"]["per_kind"][kind]
        rows.append([100.0 * values[label] for label in SNR_LABELS])
    return np.array(rows)


def _table(grouped: dict[str, list[dict[str, object]]], kind: str | None) -> list[str]:
    lines = ["| model | seeds | " + " | ".join(f"{s} dB" if s != "clean" else s for s in SNR_LABELS) + " |"]
    lines.append("|---|---|" + "---|" * len(SNR_LABELS))
    for model, group in grouped.items():
        curve = _curve(group, kind)
        cells = [
            f"{m:.2f} ± {s:.2f}" if len(group) > 1 else f"{m:.2f}"
            for m, s in zip(curve.mean(0), curve.std(0), strict=True)
        ]
        lines.append(f"| {model} | {len(group)} | " + " | ".join(cells) + " |")
    return lines


def _plot(grouped: dict[str, list[dict[str, object]]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds: list[str | None] = [None, *NOISE_TYPES]
    fig, axes = plt.subplots(1, len(kinds), figsize=(18, 4.2), sharey=True)
    x = np.arange(len(SNR_LABELS))
    for ax, kind in zip(axes, kinds, strict=True):
        for model, group in grouped.items():
            curve = _curve(group, kind)
            mean, std = curve.mean(0), curve.std(0)
            ax.plot(x, mean, marker="o", label=f"{model} (n={len(group)})")
            ax.fill_between(x, mean - std, mean + std, alpha=0.2)
        ax.set_xticks(x, SNR_LABELS)
        ax.set_xlabel("test SNR (dB)")
        ax.set_title("mean over noise types" if kind is None else kind)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test accuracy (%)")
    axes[0].legend(loc="lower right")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _drsn_vs_resnet(grouped: dict[str, list[dict[str, object]]]) -> list[str]:
    if "drsn_cw" not in grouped or "resnet" not in grouped:
        return ["(needs finished drsn_cw and resnet runs)"]
    cw, rn = _curve(grouped["drsn_cw"], None), _curve(grouped["resnet"], None)
    lines = [
        "| test SNR | DRSN-CW − ResNet (points) | larger spread of the two (std) | margin > spread? |",
        "|---|---|---|---|",
    ]
    for index, label in enumerate(SNR_LABELS):
        diff = cw[:, index].mean() - rn[:, index].mean()
        spread = max(cw[:, index].std(), rn[:, index].std())
        lines.append(f"| {label} | {diff:+.2f} | {spread:.2f} | {'yes' if diff > spread else 'no'} |")
    return lines


def _summary(grouped: dict[str, list[dict[str, object]]]) -> list[str]:
    """Generated findings, so the words always match the numbers below them."""
    if "drsn_cw" not in grouped or "resnet" not in grouped:
        return []
    at = {label: SNR_LABELS.index(label) for label in ("-10", "-8", "-5", "clean")}
    cw, rn = _curve(grouped["drsn_cw"], None), _curve(grouped["resnet"], None)
    low = [label for label in ("-10", "-8") if cw[:, at[label]].mean() - rn[:, at[label]].mean()
           > max(cw[:, at[label]].std(), rn[:, at[label]].std())]  # fmt: skip
    ranking = sorted(grouped, key=lambda m: -_curve(grouped[m], None)[:, at["-10"]].mean())
    best_model = max(grouped, key=lambda m: _curve(grouped[m], None)[:, at["clean"]].mean())
    best_clean = _curve(grouped[best_model], None)[:, at["clean"]].mean()
    return [
        "## Summary",
        "",
        f"- At −10 dB (mean over noise types) the models rank {' > '.join(ranking)}.",
        f"- DRSN-CW against the same-size ResNet: {cw[:, at['-10']].mean() - rn[:, at['-10']].mean():+.2f} points at "
        f"−10 dB, {cw[:, at['-8']].mean() - rn[:, at['-8']].mean():+.2f} at −8 dB, "
        f"{cw[:, at['-5']].mean() - rn[:, at['-5']].mean():+.2f} at −5 dB, "
        f"{cw[:, at['clean']].mean() - rn[:, at['clean']].mean():+.2f} clean; the margin exceeds the seed-to-seed "
        f"spread at {', '.join(low) + ' dB' if low else 'neither −10 nor −8 dB'}.",
        f"- Best clean accuracy of these paper-size networks: {best_clean:.2f} % ({best_model}); the wider shipped "
        "DRSN-CW is in the last section.",
        "",
    ]


def _range_effect(paper: dict[str, list[dict[str, object]]], wide: dict[str, list[dict[str, object]]]) -> list[str]:
    """One generated line per model: accuracy at −10 and −5 dB after either training range."""
    lines = []
    for model in paper:
        if model not in wide:
            continue
        for label in ("-10", "-5"):
            index = SNR_LABELS.index(label)
            narrow, broad = _curve(paper[model], None)[:, index].mean(), _curve(wide[model], None)[:, index].mean()
            lines.append(f"- {model} at {label} dB: {narrow:.2f} % trained on −5…5 dB, {broad:.2f} % on −12…6 dB.")
    return [*lines, ""] if lines else []


def _cost_table(runs: list[dict[str, object]]) -> list[str]:
    lines = ["| run | parameters | MACs / window | training time (s) | best epoch (validation) | best val. acc. |"]
    lines.append("|---|---|---|---|---|---|")
    for run in runs:
        s = run["summary"]
        lines.append(
            f"| {run['name']} | {s['parameters']:,} | {s['macs_per_window']:,} | {s['train_seconds']:.0f} | "
            f"{s['best_epoch']} / {s['config']['epochs']} | {100 * s['best_val_accuracy']:.2f} |"
        )
    return lines


def _matched_table(runs: list[dict[str, object]]) -> list[str]:
    lines = ["| train = test SNR (Gaussian) | model | test accuracy at that SNR (%) | clean test accuracy (%) |"]
    lines.append("|---|---|---|---|")
    for run in sorted(
        (r for r in runs if r["protocol"].startswith("matched")), key=lambda r: (r["protocol"], r["model"])
    ):
        snr = run["summary"]["config"]["matched_snr_db"]
        per_kind = run["eval"]["per_kind"]["gaussian"]
        lines.append(
            f"| {snr:g} dB | {run['model']} | {100 * per_kind[snr_label(snr)]:.2f} | {100 * per_kind['clean']:.2f} |"
        )
    return lines


def write_report(runs_dir: Path, out_dir: Path, *, data: str | None = None, shipped: Path | None = None) -> Path:
    """Evaluate every finished run and write ``<out_dir>/README.md`` with PNG plots."""
    out_dir.mkdir(parents=True, exist_ok=True)
    runs = collect_runs(runs_dir, data)
    augment, clean = _by_model(runs, "augment"), _by_model(runs, "clean")
    if augment:
        _plot(augment, out_dir / "accuracy_vs_snr_augment.png", "(a) noise-augmented training")
    if clean:
        _plot(clean, out_dir / "accuracy_vs_snr_clean_trained.png", "(c) clean training, noisy test")
    schedule = next((r["summary"]["config"] for r in runs), {})
    lines = [
        "# Evaluation report: DRSN and baselines on CWRU under noise",
        "",
        "Regenerate with `make report` (trains missing runs, resumable) or, from finished runs,",
        "`.venv/bin/python -m edge_agent report --runs runs --out docs/results --model models/drsn_cw_cwru.pt`.",
        "",
        "Test data: the last 20 % (in time) of every CWRU record in the pack, windows of 2048 at hop 1024, "
        f"{runs[0]['eval']['test_windows'] if runs else '?'} windows; every condition uses the same noise draws for "
        "every model (2 draws per window). Model selection used the validation split only (the 10 % before the test "
        "split): the epoch with the best validation accuracy over clean windows and Gaussian, Laplacian and pink noise "
        "at -10, -5 and 0 dB (matched-SNR runs: their own SNR), for clean-trained runs too; the test split was never "
        "used for tuning.",
        "",
        f"Schedule of every run: {schedule.get('epochs')} epochs × {schedule.get('steps_per_epoch')} steps × batch "
        f"{schedule.get('batch_size')}, SGD momentum {schedule.get('momentum')}, lr {schedule.get('lr')} divided by 10 "
        f"at {schedule.get('lr_drops')} of the epochs, L2 {schedule.get('weight_decay')}; windows cropped at random "
        "offsets inside the training split, classes balanced. Augmented runs: noise type uniform over "
        f"{', '.join(NOISE_TYPES)}, SNR uniform in {schedule.get('snr_range_db')} dB, {schedule.get('clean_fraction')} "
        "of windows clean.",
        "",
        *_summary(augment),
        "## (a) Noise-augmented training: accuracy (%) versus test SNR, mean over noise types, mean ± std over seeds",
        "",
        *_table(augment, None),
        "",
        "![accuracy versus SNR](accuracy_vs_snr_augment.png)",
        "",
    ]
    for kind in NOISE_TYPES:
        lines += [f"### {kind} noise", "", *_table(augment, kind), ""]
    lines += ["### Does DRSN-CW beat ResNet?", "", *_drsn_vs_resnet(augment), ""]
    lines += ["## (b) Matched SNR (the paper's protocol): train and test at the same Gaussian SNR", ""]
    lines += [*_matched_table(runs), ""]
    lines += ["## (c) Clean training, noisy test: accuracy (%), mean over noise types", "", *_table(clean, None), ""]
    if clean:
        lines += ["![clean-trained](accuracy_vs_snr_clean_trained.png)", ""]
    paper_range = _by_model(runs, "paperrange")
    lines += [
        "## (d) Training on the paper's SNR range (−5…5 dB) instead of −12…6 dB: accuracy (%), mean over noise types",
        "",
        *_table(paper_range, None),
        "",
        *_range_effect(paper_range, augment),
    ]
    lines += ["## Cost of every run (one thread, 2-core x86 machine)", "", *_cost_table(runs), ""]
    if shipped is not None and shipped.exists():
        from edge_agent.training.shipped import shipped_model_section

        lines += shipped_model_section(shipped, out_dir, data)
    (out_dir / "README.md").write_text("\n".join(lines) + "\n")
    return out_dir / "README.md"
