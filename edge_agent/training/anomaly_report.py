"""Run the anomaly evaluation and write ``docs/results/anomaly.md`` with its plots (one command).

    nice -n 10 python -m edge_agent.training.anomaly_report [--data DIR] [--out docs/results] [--seeds 0,1,2]
        [--only cwru]

Runs on one thread (about 20 minutes on this shared machine): CWRU front-end selection and network
comparison at every SNR, motor sound per motor leave-one-speed-out, baselines on the same splits,
learning time of 10 minutes of a 12 kHz signal, inference cost per window and int8 against float.
Raw rows go to ``runs/anomaly/rows.json`` (not committed); the summary to ``<out>/anomaly.json``.
``--only cwru`` re-runs the CWRU part (and the cost) and keeps the motor part of the last full run: its
summary from ``<out>/anomaly.json`` and its plots.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edge_agent.training import anomaly_eval as ev
from edge_agent.training.anomaly_learn import learn
from edge_agent.training.anomaly_train import AnomalyConfig, scores_of
from edge_agent.training.audio_data import load_bldc
from edge_agent.training.data import load_cwru

logger = logging.getLogger(__name__)

NETWORKS = ("undercomplete", "denoising", "sparse", "conv")
CWRU_FRONTENDS = (
    ("raw", True),
    ("logspec", True),
    ("logspec", False),
    ("logmel", False),
    ("envelope", False),
    ("bandkurtosis", True),
)
MOTOR_FRONTENDS = (("raw", True), ("logspec", True), ("logmel", True), ("bandkurtosis", True))


def mean_std(values: list[float]) -> tuple[float, float]:
    return float(np.mean(values)), float(np.std(values))


def run_cwru(
    data: str | None, seeds: tuple[int, ...], jobs: int = 1, frontends: tuple[str, ...] = ()
) -> tuple[list[dict[str, Any]], str]:
    """Front-ends with the undercomplete AE (selection on validation AUC), then every network on the winner.

    ``jobs`` > 1 runs the (variant, SNR, seed) runs in that many processes (one thread each); every run is
    seeded by its own seed, so the rows are the same as with one process. ``frontends`` (names as in the
    tables: ``logspec``, ``logspec-abs``, ...) restricts the selection to those; empty: all of CWRU_FRONTENDS.
    """
    dataset = load_cwru(data, fractions=ev.CWRU_FRACTIONS)
    tasks: list[Task] = [
        (ev.Variant("undercomplete", frontend, invariant), snr, seed, frontend == "logspec")
        for frontend, invariant in CWRU_FRONTENDS
        if not frontends or frontend + ("" if invariant else "-abs") in frontends
        for snr in ev.CWRU_SNRS_DB
        for seed in seeds
    ]
    rows = _cwru_runs(data, dataset, tasks, jobs)
    chosen = max({r["variant"] for r in rows}, key=lambda name: _val_score(rows, name))
    network_frontend, _, suffix = chosen.partition("/")[2].partition("-")
    variants = [ev.Variant(network, network_frontend, suffix != "abs") for network in NETWORKS[1:]]
    variants.append(ev.Variant("denoising", network_frontend, suffix != "abs", weighting="residual"))
    tasks = [(variant, snr, seed, False) for variant in variants for snr in ev.CWRU_SNRS_DB for seed in seeds]
    return rows + _cwru_runs(data, dataset, tasks, jobs), chosen


Task = tuple[ev.Variant, float | None, int, bool]  # variant, SNR (None: clean), seed, with baselines
_worker_dataset: list[Any] = []  # the CWRU data of a worker process, loaded once by _load_worker


def _load_worker(data: str | None) -> None:
    torch.set_num_threads(1)
    _worker_dataset.append(load_cwru(data, fractions=ev.CWRU_FRACTIONS))


def _cwru_task(task: Task, dataset: Any = None) -> dict[str, Any]:
    variant, snr, seed, baselines = task
    row = ev.cwru_run(_worker_dataset[0] if dataset is None else dataset, variant, snr, seed, baselines=baselines)
    logger.info("cwru %s %s seed %d", variant.name, row["snr"], seed)
    return row


def _cwru_runs(data: str | None, dataset: Any, tasks: list[Task], jobs: int) -> list[dict[str, Any]]:
    if jobs <= 1:
        return [_cwru_task(task, dataset) for task in tasks]
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(jobs, initializer=_load_worker, initargs=(data,)) as pool:
        return list(pool.map(_cwru_task, tasks))


def _val_score(rows: list[dict[str, Any]], variant: str) -> float:
    """Validation AUC (held-back healthy vs the faults' validation part): worst class, averaged over SNRs and seeds."""
    picked = [r for r in rows if r["variant"] == variant]
    return float(np.mean([min(v for k, v in r.items() if k.startswith("val_auc/")) for r in picked]))


def run_motor(data: str | None, seeds: tuple[int, ...]) -> list[dict[str, Any]]:
    dataset = load_bldc(data)
    variants = [ev.Variant("undercomplete", f, i) for f, i in MOTOR_FRONTENDS]
    variants += [ev.Variant(n, "logmel", True) for n in NETWORKS[1:]]
    variants += [ev.Variant(n, "bandkurtosis", True) for n in NETWORKS[1:3]]
    variants.append(ev.Variant("undercomplete", "bandkurtosis", True, cross_fit=True))
    variants.append(ev.Variant("excess", "envspread", True, cross_fit=True))  # see anomaly_speeds (8192 there)
    rows = []
    for variant in variants:
        for motor in ("M1", "M2"):
            for seed in seeds:
                rows += ev.motor_runs(dataset, motor, variant, seed, baselines=variant.name == "undercomplete/logmel")
                logger.info("motor %s %s seed %d", variant.name, motor, seed)
    return rows


def summarise_motor(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    table = []
    for variant in dict.fromkeys(r["variant"] for r in rows):
        for motor in ("M1", "M2"):
            first = next(r for r in rows if r["variant"] == variant)
            prefixes = [""] + [f"{b}:" for b in ev.BASELINES if f"{b}:scores" in first]
            for prefix in prefixes:
                per_seed = [
                    ev.motor_summary(
                        [r for r in rows if r["variant"] == variant and r["motor"] == motor and r["seed"] == seed],
                        prefix,
                    )
                    for seed in sorted({r["seed"] for r in rows})
                ]
                entry: dict[str, Any] = {"model": prefix.rstrip(":") or variant, "motor": motor}
                for key in ("auc", "false_rate", "detection_rate"):
                    entry[key] = mean_std([s[key] for s in per_seed])
                for key in ("healthy_clips_with_alert", "fault_clips_missed"):
                    entry[key] = " ".join(s[key] for s in per_seed)
                table.append(entry)
    return table


def cost_and_learning_time(chosen: AnomalyConfig) -> dict[str, Any]:
    """Learning 10 min of a 12 kHz signal; ms per window at batch 32 on one thread; int8 (dynamic) vs float."""
    rng = np.random.default_rng(0)
    t = np.arange(12_000 * 600) / 12_000
    signal = np.sin(2 * np.pi * 29.5 * t) + 0.3 * np.sin(2 * np.pi * 161.7 * t) + 0.5 * rng.standard_normal(t.size)
    started = time.perf_counter()
    result = learn([signal[None, :].astype(np.float32)], 12_000, chosen)
    learn_s = time.perf_counter() - started
    module = torch.jit.script(result.detector.eval())
    int8 = torch.jit.script(
        torch.ao.quantization.quantize_dynamic(result.detector.eval(), {torch.nn.Linear}, dtype=torch.qint8)
    )
    batch = torch.from_numpy(signal[: 32 * chosen.window_samples].reshape(32, 1, -1).astype(np.float32))
    costs = {}
    for name, m in (("float32", module), ("int8-dynamic", int8)):
        with torch.inference_mode():
            for _ in range(20):
                m(batch)
            started = time.perf_counter()
            for _ in range(200):
                m(batch)
        costs[name] = (time.perf_counter() - started) / 200 / 32 * 1000
    tail = [signal[None, -600_000:].astype(np.float32)]
    float_scores = scores_of(module, tail, chosen.window_samples, chosen.hop_samples)
    int8_scores = scores_of(int8, tail, chosen.window_samples, chosen.hop_samples)
    agree = float(np.mean((float_scores > result.threshold) == (int8_scores > result.threshold)))
    return {
        "learn_seconds_10min_12kHz": learn_s,
        "train_windows": result.stats["train_windows"],
        "ms_per_window_batch32": costs,
        "int8_flag_agreement": agree,
        "int8_max_relative_score_error": float(np.max(np.abs(int8_scores - float_scores) / float_scores)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="folder holding cwru/ and machine_sound/ (default: $EDGE_AGENT_DATA)")
    parser.add_argument("--out", default="docs/results")
    parser.add_argument("--runs", default="runs/anomaly")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument(
        "--cwru-frontends",
        default="",
        help="comma-separated front-ends of the CWRU selection (e.g. logspec,logspec-abs; default: all)",
    )
    parser.add_argument("--jobs", type=int, default=1, help="processes for the CWRU runs (one thread each)")
    parser.add_argument("--reuse", action="store_true", help="only re-render from the last run's rows.json")
    parser.add_argument(
        "--only",
        choices=("cwru",),
        help="re-run only the CWRU part; the motor part (summary in OUT/anomaly.json, plots) stays from the last run",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("edge_agent.training.anomaly_train").setLevel(logging.WARNING)
    torch.set_num_threads(1)
    seeds = tuple(int(s) for s in args.seeds.split(","))
    started = time.perf_counter()
    rows_path = Path(args.runs, "rows.json")
    if args.reuse and rows_path.is_file():  # re-render the page from the last run's rows
        saved = json.loads(rows_path.read_text())
    else:
        frontends = tuple(f for f in args.cwru_frontends.split(",") if f)
        cwru_rows, chosen = run_cwru(args.data, seeds, args.jobs, frontends)
        kept_motor = json.loads(Path(args.out, "anomaly.json").read_text())["motor"] if args.only else None
        motor_rows = [] if args.only else run_motor(args.data, seeds)
        frontend, _, suffix = chosen.partition("/")[2].partition("-")
        chosen_config = ev.Variant("undercomplete", frontend, suffix != "abs").config(ev.CWRU_BASE, 0)
        cost = cost_and_learning_time(chosen_config)
        saved = {"cwru": cwru_rows, "motor": motor_rows, "chosen": chosen, "cost": cost, "parts": args.only or "all"}
        saved["cwru_frontends"], saved["jobs"] = list(frontends), args.jobs
        if kept_motor is not None:
            saved["motor_summary"] = kept_motor
        saved["seconds"] = time.perf_counter() - started
        rows_path.parent.mkdir(parents=True, exist_ok=True)
        rows_path.write_text(json.dumps(saved))
    cwru_rows, motor_rows = saved["cwru"], saved["motor"]
    summary = {
        "seeds": sorted({r["seed"] for r in cwru_rows}),
        "cwru_chosen_frontend": saved["chosen"],
        "cwru_validation": {v: _val_score(cwru_rows, v) for v in dict.fromkeys(r["variant"] for r in cwru_rows)},
        "motor": saved.get("motor_summary") or summarise_motor(motor_rows),
        "cost": saved["cost"],
        "seconds": saved["seconds"],
        "parts": saved.get("parts", "all"),
        "cwru_frontends": saved.get("cwru_frontends", []),
        "jobs": saved.get("jobs", 1),
    }
    from edge_agent.training.anomaly_markdown import write_markdown

    write_markdown(Path(args.out), summary, cwru_rows, motor_rows, args.data)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
