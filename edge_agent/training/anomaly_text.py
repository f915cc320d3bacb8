"""The text of ``docs/results/anomaly.md`` around the generated tables (numbers are filled in from the run)."""

from __future__ import annotations

from typing import Any

from edge_agent.training.anomaly_eval import CWRU_BASE, DEBOUNCE_K, DEBOUNCE_N, MOTOR_BASE


def _motor_goal(summary: dict[str, Any]) -> str:
    rows = [e for e in summary["motor"] if e["model"] == "undercomplete/logmel"]
    return ", ".join(
        f"{e['motor']}: AUC {e['auc'][0]:.3f}, false windows {100 * e['false_rate'][0]:.0f} %, "
        f"propeller windows flagged {100 * e['detection_rate'][0]:.0f} %"
        for e in rows
    )


def _motor(summary: dict[str, Any], model: str) -> str:
    rows = [e for e in summary["motor"] if e["model"] == model]
    return (
        "; ".join(
            f"{e['motor']} AUC {e['auc'][0]:.2f}, {100 * e['false_rate'][0]:.1f} % false windows, "
            f"{100 * e['detection_rate'][0]:.0f} % of propeller windows flagged"
            for e in rows
        )
        or "not run"
    )


def _this_run(summary: dict[str, Any]) -> str:
    minutes = f"{summary['seconds'] / 60:.1f} min on the shared 2-core machine"
    flags = " --only cwru" * (summary.get("parts", "all") == "cwru")
    flags += f" --cwru-frontends {','.join(summary['cwru_frontends'])}" * bool(summary.get("cwru_frontends"))
    flags += f" --jobs {summary.get('jobs', 1)}" * (summary.get("jobs", 1) > 1)
    if summary.get("parts", "all") == "cwru":
        return (
            f"this run: `{flags.strip()}`, {minutes}; the motor tables and plots are those of the last full "
            "run, whose code this change leaves as it was"
        )
    return f"this run: {f'`{flags.strip()}`, ' if flags else ''}{minutes}"


def _selection_note(summary: dict[str, Any]) -> str:
    if not summary.get("cwru_frontends"):
        return ""
    names = ", ".join(f"`{f}`" for f in summary["cwru_frontends"])
    return (
        f" This run re-ran only {names} (`--cwru-frontends`, for the time left on the shared machine); the"
        " previous full comparison, with the old held-back threshold, chose undercomplete/logspec on validation"
        " as well (worst class 0.993, against logspec-abs 0.992, logmel-abs 0.989, raw 0.923, envelope-abs 0.760,"
        " bandkurtosis 0.693): see that run's tables in the git history of this page."
    )


def render(summary: dict[str, Any], tables: dict[str, str]) -> str:
    cost = summary["cost"]
    ms = cost["ms_per_window_batch32"]
    chosen = summary["cwru_chosen_frontend"]
    cwru_target = f"{100 * CWRU_BASE.target_false_rate:g} %"
    cwru_rule = (
        f"cross-fit, {CWRU_BASE.cross_fit_folds} blocks, hop {CWRU_BASE.calibration_hop}, "
        f"peaks over threshold, {cwru_target}"
    )
    return f"""# Anomaly detection from healthy data: autoencoders on CWRU and on motor sound

Regenerate everything on this page (tables, plots, [`anomaly.json`](anomaly.json)) with one command,
on one thread per process ({_this_run(summary)}):

    EDGE_AGENT_DATA=../shared/data nice -n 10 python -m edge_agent.training.anomaly_report [--jobs 2]

`--only cwru` re-runs the CWRU part and the cost and keeps the motor part of the last full run. The choice of
the CWRU threshold procedure (below) has its own command, which reads the learning part only:
`EDGE_AGENT_DATA=../shared/data nice -n 10 python -m edge_agent.training.anomaly_calibration`
([`anomaly_calibration.json`](anomaly_calibration.json)).

Means ± standard deviations are over seeds {", ".join(map(str, summary["seeds"]))} (network initialisation,
batch order, corruption and the noise draw). Every model learns from **healthy data only** and sets its
threshold on healthy windows it was not trained on; fault data is used only to measure.

## What is measured, and how

- **Score**: the mean squared reconstruction error of a window's features in healthy-z units: the
  front-end's features minus their healthy mean, divided by their healthy standard deviation, so each
  feature's error is weighted by the inverse of its healthy variance (`weighting = none`), except in the
  CWRU row `denoising+residual/logspec` (`weighting = residual`: each feature's error is further divided by its
  mean squared reconstruction error on the healthy training windows, a diagonal Mahalanobis distance of the
  residual, so features the network reconstructs well weigh more). Higher means more anomalous.
- **Threshold**: peaks over threshold (a generalised Pareto fit to the top 10 % of healthy scores the model
  did not train on, at least 20 of them; with too few scores for that, a gamma fit, DCASE 2023's rule), for a
  target false-window rate: 1 % on motor sound (the default of `edge-agent learn`), {cwru_target} on CWRU
  (chosen on the learning part, below). Isolated false windows are further removed by the agent's
  {DEBOUNCE_K}-of-{DEBOUNCE_N} debouncing.
- **CWRU** (`cwru/`, 12 kHz drive end): windows of {CWRU_BASE.window_samples} samples
  ({1000 * CWRU_BASE.window_samples / 12000:.0f} ms), hop {CWRU_BASE.hop_samples}. The healthy
  record's first 60 % is the learning data, its last 40 % the later healthy test data (73 windows). The
  threshold's scores are **cross-fitted in time** over the whole learning part (`edge-agent learn --cross-fit`
  on one recording): {CWRU_BASE.cross_fit_folds} contiguous blocks, each scored at hop {CWRU_BASE.calibration_hop}
  by a model trained on the other blocks less a guard gap of one window on either side (about 380 scores per
  run, against 25 before); the shipped model then trains on all of the learning part. The validation AUC
  below uses these cross-fitted healthy scores. Faults: the last 40 % of every
  fault record (all 4 loads) for the test AUC, the 15 % before it for the *validation* AUC used to
  choose the front-end. Noise: a stationary white floor whose power is set from the healthy
  learning data at the SNR, added at that same power to learning, later healthy and fault data
  (a plant's floor does not scale with the fault).
- **Motor sound** (`machine_sound/bldc_motor`, 16 kHz, each clip at unit RMS): one model per motor (M1, M2)
  and per held-out speed (leave one speed out): learned on the healthy clips at the other 5 speeds (one whole
  clip, in the middle of the list, held back for the threshold), tested on the healthy and the propeller clip
  at the held-out speed. Windows of {MOTOR_BASE.window_samples} samples (256 ms), hop {MOTOR_BASE.hop_samples}.
  AUC per fold (folds with both classes), averaged; false-window and detection rates at the stored threshold
  pooled over folds; a clip "has an alert" when {DEBOUNCE_K} of any {DEBOUNCE_N} consecutive windows are anomalous.
- **Baselines on the same splits and the same healthy data for their thresholds**: window RMS, window
  kurtosis, and PCA (8 components) reconstruction error and Mahalanobis distance (Ledoit-Wolf) on the same
  standardised features as the autoencoder (on CWRU, PCA and Mahalanobis are cross-fitted on the same time
  blocks, and all four use the same tail fit and target).

## CWRU: how the threshold is set (chosen on the learning part only)

Until this run the CWRU threshold rested on the last 25 % of the learning part (25 windows, so a gamma fit)
and missed the false-window goal (worst SNR 4.6 % for denoising/logspec, mean over seeds). The procedure
is now chosen without the later healthy data: `anomaly_calibration` cuts the *learning part* the way the
report cuts the record (its first 60 % learns, its last 40 % plays the later healthy data, same noise
floors, undercomplete and denoising on logspec, seeds 0-2: 24 runs per row) and compares the false-window
rate there. Peaks-over-threshold rows (gamma and empirical quantiles are in the json; neither did better):

{tables["calibration"]}

The held-back tail reproduces the failure seen on the test data (worst SNR 4.4 % at a 1 % target: the
threshold from 14 windows scatters). Cross-fitting over the whole learning part gives the tail fit far more
scores, from every stretch of the record (195 against 14 in this replica; about 380 against 25 in the report),
and scoring the blocks at hop {CWRU_BASE.calibration_hop} (the training hop) rather than the agent's
{CWRU_BASE.hop_samples} gives the peaks-over-threshold fit a real tail (with 50 scores its 20 exceedances
are 40 % of them). Overlapping windows are strongly correlated, so the 4x more scores are not 4x the information, but
they smooth the tail the fit sees. 5 blocks did better than 8 here. At the 1 % target this procedure is
**calibrated** (nested mean 1.0 %, the target)
but its run-to-run spread left 6 of 24 runs over 2 % and the worst SNR at 1.6 %; at 0.5 % the mean is 0.6 %
and the worst SNR 1.2 %. The rule applied to this table (it never saw the test data), lowest worst-SNR rate
and then lowest mean, picks
**{cwru_rule}**, used for every CWRU row
below (autoencoders and baselines). Why a target below the goal: the goal is judged per SNR on 73 windows
(one window is 1.4 %), so the target has to leave room for the threshold's own sampling error, not only
for drift. `edge-agent learn` keeps its 1 % default: with minutes of a real machine's data the tail fit
has thousands of scores and the sampling error is small.

## CWRU: choosing the front-end (undercomplete autoencoder)

Chosen by the validation AUC (cross-fitted healthy scores of the learning part against the faults' validation
part, worst class, averaged over SNRs and seeds): **{chosen}**. `-abs` keeps the vibration level (g); the
others scale every window to unit RMS first (level-invariant).{_selection_note(summary)}

{tables["cwru_selection"]}

## CWRU: the autoencoders on the chosen front-end

![CWRU AUC and false windows against SNR](anomaly_cwru.png)

{tables["cwru_networks"]}

AUC per fault class at −10 dB (mean ± std over seeds), with the baselines (features of `{tables["baseline_variant"]}`):

{tables["cwru_classes"]}

Baselines at every SNR:

{tables["cwru_baselines"]}

**Reading the CWRU numbers.** Down to −5 dB every spectral front-end separates later healthy windows from
every fault class perfectly, and so do PCA and Mahalanobis on the same features: on this data set the
autoencoder adds little a linear model does not already give, and at −10 dB it is level with PCA or a little
above it (the
hardest classes are OR014@6 and B014, whose spectra barely change). In the full front-end comparison the
raw-window front-end collapses at −10 dB and the envelope spectrum (2-5 kHz band) already at 0 dB: the white
floor fills the envelope band.
False windows at the stored threshold of `{tables["chosen_network"]}` (the network chosen on validation), on the
73 later healthy windows of each run (one window is 1.4 %): {tables["chosen_rates"]}. The only healthy CWRU
record is 4 s long; its threshold now rests on about 380 cross-fitted scores from every stretch of the
learning part (peaks over threshold) instead of 25 from its end, and the scatter of several points between
seeds that the held-back tail gave is gone (previous run, held-back tail at 1 %: 4.1 ± 2.2, 4.6 ± 6.5,
4.6 ± 5.5 and 4.1 ± 4.9 % from clean to −10 dB). The price of the lower target is detection at the threshold
where the classes are hardest: {tables["detection_note"]} (the per-class table above gives every class's AUC).

{tables["auc_note"]} Without the residual weighting the autoencoders lost 0.005-0.02 of −10 dB AUC
when their shipped model began to learn the whole learning part (60 % of the record instead of 45 %; previous
run, held-back tail: denoising 0.971 ± 0.017, undercomplete 0.967, sparse 0.881, conv 0.958), while PCA and
Mahalanobis, fitted on the same data, did not move (now 0.966 and 0.950; before 0.966 and 0.952): the split is
not harder, and with the same 1500 steps over a third more windows the autoencoders most likely reconstruct the
subtle OR014@6 change better as well. The residual weighting lets the features the network reconstructs well
count more. Disclosure: it was added to the networks compared here after an exploratory run of denoising/logspec
at −10 dB (seeds 0-2) that printed the test AUC as well as the validation AUC (validation 0.970 to 0.979, test
0.965 to 0.976); which network the goals use is still decided by the validation column alone, but that
addition was not blind to the test data. More steps (3000) did not help there (validation 0.972, test 0.965).

## Motor sound: one model per motor, speeds held out

**Newer, on its own page:** envelope-spread front-ends (`envspread`: the 10-90 % spread of the short-time log
envelope in the window and 3-6 bands from 1 kHz; `blockspread`: the same per sub-block, median over sub-blocks, so
one knock cannot carry a window) with one-sided, weight-free scores (`excess`; `consensus`: the median over bands)
and the cross-fitted threshold, chosen per fold on validation folds: AUC >= 0.95 in every fold on both motors, false
windows and detection within the goals, and with the debounce that `learn` now learns from the healthy
score streams (4 of 6 on M1) no held-out healthy clip alerts on either motor; see
[anomaly_unseen_speeds.md](anomaly_unseen_speeds.md) (one command: `python -m edge_agent.training.anomaly_speeds`).
The tables below are the autoencoders and baselines of this page.

![scores of the held-out clips](anomaly_motor_scores.png)

{tables["motor"]}

Rows without a slash are the baselines, fitted on the features of `undercomplete/logmel` and thresholded on
the same held-back clip. RMS carries no information here by construction: every clip is scaled to unit RMS
when loaded (see below).

### Why the threshold does not transfer across speeds (investigation)

The separation (AUC) and the calibration (false windows at the stored threshold) fail for the same reason:
on these recordings **a healthy clip at an unseen speed is about as novel as a propeller fault at a known
one**. The table below (regenerated with the page: whole clip, before the per-clip scaling) shows the share
of power per band: on healthy M1 the 4-8 kHz share goes from 25 % to 89 % between speeds (and sessions),
more than between healthy and propeller at one speed. The recording level also differs between sessions and
grows with speed, and propeller clips are louder than healthy ones at the same speed (M2: 2-4x), but with an
unknown microphone gain the level cannot be used (the front-ends here are level-invariant, as the agent's
audio classifier is).

{tables["clip_spectra"]}

What does transfer is **impulsiveness**: the kurtosis baseline, a scale-free statistic of the waveform
that a shift of spectral lines hardly moves, keeps its threshold on unseen speeds while still separating
({_motor(summary, "kurtosis")}); it is the best single model on motor sound here, and it has no network.
The `bandkurtosis` front-end generalises it: the log kurtosis of the window
and of 12 log-spaced bands of it, fed to the same autoencoders
(undercomplete: {_motor(summary, "undercomplete/bandkurtosis")}). Its threshold holds much better on the
unseen speeds than the spectra's, at the cost of detection: see the second plot. On CWRU the same
front-end is poor (table above): the white noise floor drives every band's kurtosis to that of Gaussian
noise. No front-end here meets the motor goals; log-mel separates M1 best, band kurtosis calibrates best.

![scores of the held-out clips, bandkurtosis](anomaly_motor_scores_bandkurtosis.png)

**Calibration across operating points: cross-fitting.** With several recordings, `learn` can set the
threshold from *leave-one-recording-out* scores (`--cross-fit`): one extra model per recording, trained on
all the others, scores the recording it never heard; the pooled scores show how novel every operating point
looks, not just the one held back, and the shipped model is then trained on all recordings. On the motor
folds (undercomplete/bandkurtosis+cross-fit: {_motor(summary, "undercomplete/bandkurtosis+cross-fit")}) the
threshold now holds on unseen speeds, and what is left is separation: at a threshold that transfers, too
few propeller windows score above it. (Seed 0 with log-mel and cross-fitting, exploration: M1 0 % false
windows and 10 % flagged, M2 0 % and 4 %.) The cost is one training per recording.

Tried on the way (seed 0 only, leave-one-speed-out or 2-speed folds; not part of the one-command run):
log-mel with 16, 24, 32, 64 and 128 bands; windows of 4096, 8192 and 16384 samples; level-absolute features
on the unit-RMS clips; training copies resampled by ±5 % and ±10 % (`speed_factors`, speed augmentation).
None brought M2 above AUC 0.83 or the held-out false-window rate below about 25 % on either motor; holding
out two speeds at a time (3 training clips) was worse than one (5). With 5-6 healthy clips per motor, one
of them held back, the threshold is fitted on the spread of a single unseen operating point, which is not
the spread of the next one. What would help (not done here): more healthy operating points per machine, a
speed input (order-normalised spectra from a tachometer or the dominant line), or per-operating-point
thresholds; the live learning of item 5 can also keep learning across the speeds a machine really runs at.

## Cost on this machine (one thread)

- Learning 10 minutes of a 12 kHz signal with `{chosen}` ({cost["train_windows"]} training windows, through
  `learn` with the CWRU threshold procedure, i.e. {CWRU_BASE.cross_fit_folds} cross-fit models and the shipped one,
  threshold included; niced on the shared machine): **{cost["learn_seconds_10min_12kHz"]:.0f} s** (goal ≤ 300 s).
- Inference at batch 32: **{ms["float32"]:.3f} ms per window** in float32 (goal ≤ 0.1 ms); int8 (dynamic
  quantisation of the linear layers) {ms["int8-dynamic"]:.3f} ms, agreeing with float on
  {100 * cost["int8_flag_agreement"]:.1f} % of the anomalous/healthy decisions (largest relative score error
  {100 * cost["int8_max_relative_score_error"]:.1f} %). The front-end (FFT) dominates the cost and stays
  float either way, so int8 does not earn its place: model files are float32.

## Goals of the issue

{tables["goals"]}

## Anchors

The DCASE 2020 Task 2 autoencoder baseline (dense AE on log-mel, MSE score) reaches AUC 0.65–0.85 per
machine type on its own data; MIMII's pump falls to chance at 0 dB. The peers (Edge Impulse's K-means/GMM
blocks, Netdata's per-metric k-means, the DCASE 2023 gamma rule) set thresholds from healthy scores only,
as done here; none of them claims a threshold that transfers to operating points it has not seen.

Motor sound summary (undercomplete/logmel): {_motor_goal(summary)}.
"""
