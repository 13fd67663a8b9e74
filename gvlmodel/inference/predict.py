r"""Stop prediction for individual patients: ``gvlmodel predict-stop HISTORY.csv --out DIR``.

For each patient of a BCR-ABL history (samples on imatinib up to a planned or actual stop day)
the command

1. fits the history under the population prior of a calibrated parameter set (the
   mixed-effects prior of :mod:`gvlmodel.inference.calibrate`: each between-patient-varying parameter
   log-normal around the set's median with the set's spread; the starting ratio broad around
   the first sample), by the same censored log-scale likelihood and SciPy trust-region least
   squares as ``gvlmodel calibrate`` (:func:`gvlmodel.inference.calibrate.fit_patient`);
2. samples the patient's posterior (history likelihood times population prior) with emcee's
   affine-invariant ensemble sampler started around the MAP, and follows every sample through
   the stop and ``horizon_days`` beyond it, off drug;
3. reports ``p_recurrence``: the posterior probability that the model's BCR-ABL ratio exceeds
   the MMR level (0.1 %, International Scale) at any day in ``(stop_day, stop_day + horizon]``
   (loss of MMR, the usual trigger to restart therapy; Saussele et al., Lancet Oncol 2018).

The credible interval is the 95 % Jeffreys interval, ``Beta(k + 1/2, n - k + 1/2)``, at the
effective number of samples ``n`` (kept samples over the chain's integrated autocorrelation time)
with ``k = p n``: it narrows with ``--draws`` and does not include uncertainty in the population prior itself (the set's medians and
spreads are taken as known).  What the history cannot inform (for the immune parameters, usually most of
it: they matter little while imatinib holds the load down) stays at its population spread, so
the prediction for such a patient is the population's, conditioned on the observed response.

The input format (one row per sample, ``stop_day`` and ``transplant`` repeated on every row of
a patient)::

    patient_id,day,bcr_abl_percent,below_detection,stop_day,transplant[,dose_mg]

``day``: days since the start of imatinib (>= 0, sorted within a patient, <= ``stop_day``);
``bcr_abl_percent``: > 0 (for ``below_detection = 1`` the sample's detection limit);
``transplant``: true/false; ``dose_mg``: the daily dose in force from that sample on (first
sample: from day 0; default 400).  Any bad row is an :class:`~gvlmodel.core.errors.InputError`
naming the row (line number, header = 1) and column, raised before anything is written.
"""
from __future__ import annotations

import logging
import math
import os
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core import limits
from .calibrate import START, fit_patient, bounds_log10
from ..clinical.datasets import PatientSeries, _group, _read_csv
from ..core.errors import InputError, integer, real
from ..model.parameters import PARAMETER_TABLE, parameter_set, parameter_set_info, parse_variant
from ..clinical.scenario import _fmt, table_csv
from ..model.simulate import MAX_DAYS, MAX_DOSE_MG, initial_state, simulate

#: the MMR level (% IS): recurrence = loss of MMR after the stop
MMR_PERCENT = 0.1
HISTORY_COLUMNS = {"patient_id": "id", "day": "nonnegative", "bcr_abl_percent": "positive",
                   "below_detection": "flag", "stop_day": "nonnegative", "transplant": "bool"}
HISTORY_OPTIONAL = {"dose_mg": "nonnegative"}
DEFAULT_DOSE_MG = 400.0
#: default parameter sets per setting (override with ``--set``)
DEFAULT_SETS = {False: "patients", True: "hess2005"}
#: starting ratio: bounds (percent) and prior SD (log10) around the first sample
START_BOUNDS = (1e-4, 99.0)
START_PRIOR_SD_LOG10 = 1.0
PRIOR_SD_FLOOR_LOG10 = 0.02
#: a fallback when a set records no noise estimate of its own (the 'patients' calibration's)
NOISE_SET = "patients"
#: emcee settings: walkers (at least 2 x dimensions + 2), burn-in steps
WALKERS = 16
BURN_IN_STEPS = 150
#: below this effective sample size the status says so (the interval is then wide)
MIN_EFFECTIVE_DRAWS = 20


@dataclass(frozen=True, eq=False)
class History:
    """One patient's validated history: the series, the stop day and the dose schedule."""

    series: PatientSeries
    stop_day: float
    schedule: tuple[tuple[float, float], ...]
    first_row: int  # line number of the patient's first row in the file (for messages)


@dataclass(frozen=True)
class FitSettings:
    """What :func:`gvlmodel.inference.calibrate.fit_patient` reads from its ``cfg``."""

    variant: str
    rtol: float = 1e-6
    max_nfev: int = 60
    dose_mg: float = DEFAULT_DOSE_MG


@dataclass(frozen=True)
class Prior:
    """The population prior of a parameter set: log10 medians ``mu`` and covariance ``omega`` of ``fitted``."""

    set_name: str
    variant: str
    base: dict
    fitted: tuple[str, ...]
    mu: np.ndarray
    omega: np.ndarray
    noise_sd_log10: float


# --------------------------------------------------------------------------------------------------
# input


def read_history(path, text: str | None = None) -> list[History]:
    """Parse and validate ``HISTORY.csv`` (see the module docstring; ``text``: its contents, already read);
    errors name row and column."""
    if not isinstance(path, (str, os.PathLike)):
        raise InputError(f"HISTORY: expected the path of a CSV file, got {type(path).__name__}")
    path = Path(path)
    if path.is_dir():
        raise InputError(f"HISTORY: {path} is a folder; expected a CSV file")
    t = _read_csv(path, HISTORY_COLUMNS, optional=HISTORY_OPTIONAL, ordered=False, text=text)
    groups = _group(path, t["patient_id"], t["day"], "day")
    has_dose = "dose_mg" in t
    out = []
    for pid, rows in groups.items():
        line = rows + 2  # file line numbers (header = 1)
        for col in ("stop_day", "transplant"):
            v = t[col][rows]
            bad = np.nonzero(v != v[0])[0]
            if bad.size:
                raise InputError(f"{path}: row {line[bad[0]]}, column {col!r}: patient {pid} has {col} "
                                 f"{_text(v[bad[0]])} here but {_text(v[0])} in row {line[0]}; one value per patient")
        stop = float(t["stop_day"][rows[0]])
        days = t["day"][rows]
        late = np.nonzero(days > stop)[0]
        if late.size:
            raise InputError(f"{path}: row {line[late[0]]}, column 'day': day {days[late[0]]:g} is after patient "
                             f"{pid}'s stop_day {stop:g}; the history must end at the stop")
        if stop <= 0:
            raise InputError(f"{path}: row {line[0]}, column 'stop_day': must be > 0 (days of imatinib before "
                             f"the stop), got {stop:g}")
        if has_dose:
            dose = t["dose_mg"][rows]
            high = np.nonzero(dose > MAX_DOSE_MG)[0]
            if high.size:
                raise InputError(f"{path}: row {line[high[0]]}, column 'dose_mg': must lie in [0, {MAX_DOSE_MG:g}] "
                                 f"mg/day (400/600/800 clinical), got {dose[high[0]]:g}")
            steps = [(0.0, float(dose[0]))]
            for d, m in zip(days[1:], dose[1:]):
                if m != steps[-1][1]:
                    if d == steps[-1][0]:
                        steps[-1] = (float(d), float(m))
                    else:
                        steps.append((float(d), float(m)))
        else:
            steps = [(0.0, DEFAULT_DOSE_MG)]
        if stop > steps[-1][0]:
            steps.append((stop, 0.0))
        else:  # a dose change recorded on the stop day itself
            steps[-1] = (stop, 0.0)
        series = PatientSeries(patient_id=pid, day=days, bcr_abl_percent=t["bcr_abl_percent"][rows],
                               censored=t["below_detection"][rows], stop_day=stop, dataset="history",
                               transplant=bool(t["transplant"][rows[0]]))
        out.append(History(series=series, stop_day=stop, schedule=tuple(steps), first_row=int(line[0])))
    return out


def _text(v) -> str:
    if isinstance(v, (bool, np.bool_)):
        return "true" if v else "false"
    return f"{float(v):g}"


# --------------------------------------------------------------------------------------------------
# prior, fit, prediction


def population_prior(set_name: str) -> Prior:
    """The mixed-effects prior a set carries: its ``[population]`` rows (log-scale table parameters)
    around the set's values, SDs converted from natural log to log10, correlated as the set's
    ``[correlation]`` says (independent without one)."""
    info = parameter_set_info(set_name)
    spreads = info["population"] or {}
    fitted = [n for n in spreads if n in PARAMETER_TABLE and PARAMETER_TABLE[n].scale == "log"]
    if not fitted:
        raise InputError(f"--set: parameter set {set_name!r} carries no between-patient spreads ([population]); "
                         "use a calibrated set (gvlmodel parameters --sets)")
    base = info["parameters"]
    mu = np.array([math.log10(base[n]) for n in fitted])
    sd = np.maximum(np.array([float(spreads[n]) / math.log(10.0) for n in fitted]), PRIOR_SD_FLOOR_LOG10)
    from ..clinical.cohort import correlation_matrix, correlation_pairs

    corr = info.get("correlation")
    R = correlation_matrix(correlation_pairs(corr, fitted), fitted) if corr else np.eye(len(fitted))
    omega = R * np.outer(sd, sd)
    noise = _noise_sd(set_name)
    return Prior(set_name=set_name, variant=parse_variant(info["variant"] or "H2").value, base=base,
                 fitted=tuple(fitted), mu=mu, omega=omega, noise_sd_log10=noise)


def _noise_sd(set_name: str) -> float:
    """The set's own log10 noise SD, else the 'patients' calibration's (a fitted Hess set has none)."""
    for name in (set_name, NOISE_SET):
        fit = parameter_set_info(name)["calibration_fit"] or {}
        if "noise_sd_log10" in fit:
            return float(fit["noise_sd_log10"])
    raise InputError(f"--set {set_name!r}: no measurement-noise estimate in it or in {NOISE_SET!r}")


def _start_prior(series: PatientSeries) -> float:
    """log10 prior mean of the starting ratio: the first sample (capped at 99 %)."""
    return math.log10(min(float(series.bcr_abl_percent[0]), START_BOUNDS[1]))


def _with_start(omega) -> np.ndarray:
    """The prior covariance with the starting ratio (independent of the rest) in front."""
    k = omega.shape[0]
    out = np.zeros((k + 1, k + 1))
    out[0, 0] = START_PRIOR_SD_LOG10 ** 2
    out[1:, 1:] = omega
    return out


def fit_history(h: History, prior: Prior, settings: FitSettings) -> dict:
    """The patient's MAP and Laplace posterior under ``prior`` (see :func:`gvlmodel.inference.calibrate.fit_patient`)."""
    fitted = (START, *prior.fitted)
    mu = np.concatenate(([_start_prior(h.series)], prior.mu))
    omega = _with_start(prior.omega)
    f = fit_patient(h.series, fitted, prior.base, settings, mu, omega, prior.noise_sd_log10, mu.copy(),
                    schedule=list(h.schedule), start_bounds=START_BOUNDS)
    f["fitted"] = fitted
    f["mu"] = mu
    return f


def _params_of(theta, fitted, base) -> tuple[dict, float]:
    p = dict(base)
    start = float("nan")
    for name, v in zip(fitted, theta):
        if name == START:
            start = 10.0 ** v
        else:
            p[name] = 10.0 ** v
    return p, start


def _solve(theta, fit, prior, h, t_out, settings):
    p, start = _params_of(theta, fit["fitted"], prior.base)
    y0 = initial_state(p, bcr_abl=start, variant=prior.variant, transplant=h.series.transplant)
    return simulate(p, y0=y0, t_out=t_out, schedule=list(h.schedule), variant=prior.variant,
                    transplant=h.series.transplant, rtol=settings.rtol)


def _start_ball(fit: dict, walkers: int, rng: np.random.Generator, lo, hi) -> np.ndarray:
    """Walkers' starting points: the MAP plus a tenth of the Laplace spread, inside the bounds."""
    theta = np.asarray(fit["theta"], dtype=float)
    sd = np.nan_to_num(np.asarray(fit["post_sd"], dtype=float), nan=0.1)
    sd = np.clip(sd, 1e-3, 2.0)
    ball = theta + 0.1 * sd * rng.standard_normal((walkers, theta.size))
    eps = 1e-9 * (hi - lo)
    return np.clip(ball, lo + eps, hi - eps)


def predict_patient(h: History, prior: Prior, settings: FitSettings, *, horizon_days: float, draws: int,
                    seed: int, threshold_percent: float = MMR_PERCENT, walkers: int = WALKERS,
                    burn_in: int = BURN_IN_STEPS) -> dict:
    """Fit one history, sample its posterior with emcee's affine-invariant ensemble sampler
    (Foreman-Mackey et al., PASP 2013) started at the MAP, and follow every sample past the stop.

    The log posterior is ``-½‖r(theta)‖²`` (:func:`gvlmodel.inference.calibrate.standardized_residuals`: the
    censored log-scale likelihood of the history plus the population prior; ``-inf`` outside the
    table's bounds or for a failed solve).  Each evaluation simulates the patient to
    ``stop_day + horizon_days`` and records (as an emcee blob) whether the ratio exceeds
    ``threshold_percent`` after the stop and when.  After ``burn_in`` steps, ``ceil(draws /
    walkers)`` steps are kept: ``p_recurrence`` is the share of kept samples with a recurrence;
    its interval the Jeffreys interval at ``n_eff = samples / tau`` (``tau``: the largest
    integrated autocorrelation time of the parameters, emcee's estimator on the chain after the
    first third of the burn-in), reported as ``effective_draws``."""
    import emcee

    from .calibrate import standardized_residuals

    t0 = time.perf_counter()
    fit = fit_history(h, prior, settings)
    pid = h.series.patient_id
    out = {"patient_id": pid, "transplant": h.series.transplant, "stop_day": h.stop_day,
           "horizon_days": horizon_days, "parameter_set": prior.set_name, "fit": fit}
    if fit["status"] != "success":
        out.update(status="fit failed", message=fit["status"], draws=0, failed_draws=0)
        return out
    stop = h.stop_day
    after = stop + np.arange(0.0, horizon_days + 1.0, 1.0)
    if after[-1] < stop + horizon_days:
        after = np.append(after, stop + horizon_days)
    days = np.asarray(h.series.day, dtype=float)
    t_out = np.unique(np.concatenate(([0.0], np.linspace(0.0, stop, 121), days, after)))
    at_sample = np.searchsorted(t_out, days)
    post = t_out > stop
    at_stop = int(np.searchsorted(t_out, stop))
    lo, hi = bounds_log10(fit["fitted"], START_BOUNDS)
    mu, omega = fit["mu"], _with_start(prior.omega)
    failures: list[str] = []

    nothing = np.full(t_out.size, np.nan)

    def log_prob(theta):
        if np.any(theta < lo) or np.any(theta > hi):
            return -np.inf, False, np.nan, nothing
        res = _solve(theta, fit, prior, h, t_out, settings)
        if not res.success or not np.all(np.isfinite(res.bcr_abl)):
            failures.append(res.message)
            return -np.inf, False, np.nan, nothing
        r = standardized_residuals(res.bcr_abl[at_sample], theta, h.series, mu, omega, prior.noise_sd_log10)
        above = res.bcr_abl[post] > threshold_percent
        hit = bool(above.any())
        return (-0.5 * float(r @ r), hit, float(t_out[post][np.argmax(above)] - stop) if hit else np.nan,
                res.bcr_abl)  # the trajectory rides along as a blob: the bands need no second solve

    ref = _solve(fit["theta"], fit, prior, h, t_out, settings)
    map_ratio = ref.bcr_abl if ref.success else np.full(t_out.size, np.nan)
    rng = np.random.default_rng([seed, zlib.crc32(pid.encode("utf-8"))])
    ndim = len(fit["fitted"])
    walkers = max(int(walkers), 2 * ndim + 2)
    keep = max(1, math.ceil(draws / walkers))
    sampler = emcee.EnsembleSampler(walkers, ndim, log_prob,
                                    blobs_dtype=[("hit", bool), ("first_day", float), ("ratio", float, (t_out.size,))])
    sampler.random_state = np.random.RandomState(int(rng.integers(2 ** 31))).get_state()
    sampler.run_mcmc(_start_ball(fit, walkers, rng, lo, hi), burn_in + keep, progress=False)
    blobs = sampler.get_blobs(discard=burn_in)                 # (keep, walkers) records
    lp = sampler.get_log_prob(discard=burn_in)
    finite = np.isfinite(lp).reshape(-1)
    hit = blobs["hit"].reshape(-1)[finite]
    first = blobs["first_day"].reshape(-1)[finite]
    n = int(finite.sum())
    if n == 0:
        out.update(status="prediction failed", message="; ".join(failures[:3]) or "no finite posterior sample",
                   draws=0, failed_draws=len(failures))
        return out
    emcee_log = logging.getLogger("emcee")
    level = emcee_log.level
    emcee_log.setLevel(logging.ERROR)  # a short chain's tau is a rough estimate; the interval uses it as such
    try:
        # estimated on the chain after a third of the burn-in (the kept part alone is too short for it)
        tau = emcee.autocorr.integrated_time(sampler.get_chain(discard=burn_in // 3), quiet=True)
    finally:
        emcee_log.setLevel(level)
    tau = float(np.nanmax(tau)) if np.any(np.isfinite(tau)) else float(keep)
    n_eff = float(min(n, n / max(tau, 1.0)))
    p_rec = float(np.mean(hit))
    lo_ci, hi_ci = jeffreys_interval(p_rec * n_eff, n_eff)
    traj = blobs["ratio"].reshape(-1, t_out.size)[finite]  # every kept sample's course
    q05, q50, q95 = np.quantile(traj, [0.05, 0.5, 0.95], axis=0)
    notes = []
    if failures:
        notes.append(f"{len(failures)} proposal(s) failed to solve (weight 0): " + "; ".join(failures[:2]))
    status = "success"
    if n_eff < MIN_EFFECTIVE_DRAWS:
        status = "success (few effective draws)"
        notes.append(f"effective draws {n_eff:.1f} < {MIN_EFFECTIVE_DRAWS}: the interval is wide; raise --draws")
    out.update(
        status=status, message="; ".join(notes), draws=n, effective_draws=n_eff, failed_draws=len(failures),
        acceptance=float(np.mean(sampler.acceptance_fraction)), autocorr_steps=tau,
        p_recurrence=round(p_rec, 6), p_recurrence_lower=round(lo_ci, 6), p_recurrence_upper=round(hi_ci, 6),
        median_days_to_recurrence=float(np.median(first[hit])) if hit.any() else float("nan"),
        map_bcr_abl_at_stop_percent=float(map_ratio[at_stop]),
        in_mmr_at_stop=bool(map_ratio[at_stop] <= threshold_percent),
        t=t_out, map_ratio=map_ratio, q05=q05, q50=q50, q95=q95, seconds=time.perf_counter() - t0)
    return out


def jeffreys_interval(k: float, n: float, level: float = 0.95) -> tuple[float, float]:
    """Equal-tailed Jeffreys interval of a binomial probability (``k`` of ``n``, which may be an
    effective, non-integer count); the ends are 0 / 1 when ``k`` is 0 / ``n`` (Brown, Cai &
    DasGupta, Stat Sci 2001)."""
    from scipy.stats import beta  # here: importing scipy.stats costs every command ~0.5 s

    a = (1.0 - level) / 2.0
    k = min(max(float(k), 0.0), float(n))
    lo = 0.0 if k <= 1e-12 else float(beta.ppf(a, k + 0.5, n - k + 0.5))
    hi = 1.0 if k >= n - 1e-12 else float(beta.ppf(1.0 - a, k + 0.5, n - k + 0.5))
    return lo, hi


# --------------------------------------------------------------------------------------------------
# outputs


PREDICTION_COLUMNS = ("patient_id", "p_recurrence", "p_recurrence_lower", "p_recurrence_upper", "horizon_days",
                      "threshold_percent", "stop_day", "transplant", "in_mmr_at_stop", "map_bcr_abl_at_stop_percent",
                      "median_days_to_recurrence", "draws", "effective_draws", "acceptance", "autocorr_steps", "failed_draws", "parameter_set", "residual_sd_log10",
                      "status", "message")


def predictions_table(preds: list[dict], threshold_percent: float) -> str:
    rows = [{**p, "threshold_percent": threshold_percent, "residual_sd_log10": p["fit"]["residual_sd_log10"]}
            for p in preds]
    return table_csv({c: [r.get(c) for r in rows] for c in PREDICTION_COLUMNS})


def fits_table(preds: list[dict]) -> str:
    names = sorted({n for p in preds for n in p["fit"]["fitted"]}, key=lambda n: (n != START, n))
    cols: dict[str, list] = {"patient_id": [p["patient_id"] for p in preds],
                             "parameter_set": [p["parameter_set"] for p in preds]}
    fits = [p["fit"] for p in preds]
    for n in names:
        cols[n] = [10.0 ** dict(zip(f["fitted"], f["theta"]))[n] if n in f["fitted"] else None for f in fits]
    for n in names:
        cols[f"sd_log10_{n}"] = [float(dict(zip(f["fitted"], f["post_sd"]))[n]) if n in f["fitted"] else None
                                 for f in fits]
    for key in ("residual_sd_log10", "status", "nfev"):
        cols[key] = [f[key] for f in fits]
    cols["optimizer_converged"] = [f["converged"] for f in fits]  # False: stopped at max_nfev
    return table_csv(cols)


def bands_table(preds: list[dict]) -> str:
    done = [p for p in preds if "t" in p]
    keys = {"day": "t", "map_percent": "map_ratio", "q05_percent": "q05", "q50_percent": "q50", "q95_percent": "q95"}
    cols = {"patient_id": [p["patient_id"] for p in done for _ in p["t"]]}
    cols.update({name: np.concatenate([p[k] for p in done]) if done else np.array([]) for name, k in keys.items()})
    return table_csv(cols)


def plot_prediction(ax, h: History, pred: dict, threshold_percent: float = MMR_PERCENT):
    """One patient's history, MAP fit, 90 % posterior band, the stop and the horizon; returns ``ax``."""
    from ..analysis.plotting import STATE_COLORS, plot_bcr_abl

    s = h.series
    measured = np.where(s.censored, np.nan, s.bcr_abl_percent)  # undetectable ones: at their own limits below
    if "t" in pred:
        plot_bcr_abl(ax, pred["t"], pred["map_ratio"], s.day, measured, label="MAP fit")
        ax.fill_between(pred["t"], pred["q05"], pred["q95"], color=STATE_COLORS["leukemic"], alpha=0.2, lw=0,
                        label="90 % posterior band")
        title = (f"{s.patient_id}: P(BCR-ABL > {threshold_percent:g} % within {pred['horizon_days']:g} d) = "
                 f"{pred['p_recurrence']:.2f} [{pred['p_recurrence_lower']:.2f}, {pred['p_recurrence_upper']:.2f}]")
    else:
        plot_bcr_abl(ax, s.day, np.full(s.day.size, np.nan), s.day, measured, label=None)
        title = f"{s.patient_id}: {pred['status']}"
    cens = np.asarray(s.censored, dtype=bool)
    if cens.any():  # undetectable samples at their own limits
        ax.plot(s.day[cens], s.bcr_abl_percent[cens], ls="none", marker="v", ms=3.6, mfc="white",
                mec=STATE_COLORS["observed"], mew=0.7, zorder=5, label="undetectable (at its limit)")
    ax.axhline(threshold_percent, color="0.3", ls="--", lw=0.7)
    ax.axvline(h.stop_day, color="0.3", ls=":", lw=0.9)
    ax.axvspan(h.stop_day, h.stop_day + pred["horizon_days"], color="0.9", zorder=0)
    ax.text(h.stop_day, 1.0, " stop", transform=ax.get_xaxis_transform(), va="top", fontsize=7)
    ax.set_xlabel("Days since start of imatinib")
    ax.set_title(title, fontsize=7)
    ax.legend(loc="lower left", fontsize=6, frameon=False)
    return ax


def summary(preds: list[dict], horizon_days: float, threshold_percent: float) -> dict:
    """Cohort-level numbers of a prediction run (failures listed by patient, never averaged in)."""
    ok = [p for p in preds if p["status"].startswith("success")]
    prob = np.array([p["p_recurrence"] for p in ok], dtype=float)
    return {"kind": "predict-stop", "patients": len(preds), "predicted": len(ok),
            "failed": {p["patient_id"]: f"{p['status']}: {p['message']}" for p in preds if p not in ok},
            "horizon_days": horizon_days, "threshold_percent": threshold_percent,
            "expected_share_recurring": float(prob.mean()) if ok else None,
            "median_p_recurrence": float(np.median(prob)) if ok else None,
            "share_p_above_half": float(np.mean(prob > 0.5)) if ok else None,
            "share_in_mmr_at_stop": float(np.mean([p["in_mmr_at_stop"] for p in ok])) if ok else None}


def _safe_name(pid: str) -> str:
    keep = "".join(c if c.isalnum() or c in "-_." else "_" for c in pid)
    return keep or "patient"


def run_predict_stop(history_path, out: Path, *, horizon_days: float = 365.0, draws: int = 2000, seed: int = 1,
                     set_name: str | None = None, threshold_percent: float = MMR_PERCENT, rtol: float = 1e-6,
                     max_nfev: int = 60, log=print, progress: bool = False) -> list[dict]:
    """``gvlmodel predict-stop``: validate everything first, then fit, predict and write
    ``predictions.csv``, ``fits.csv``, ``bands.csv``, ``figures/<patient>.png`` and
    ``provenance.json`` (last)."""
    from ..analysis.plotting import new_figure, save_figure, use_style
    from ..core.provenance import atomic_write_json, atomic_write_text, begin_outputs, finish_outputs, provenance

    horizon_days = real("--horizon-days", horizon_days, lo=1.0, hi=MAX_DAYS)
    draws = integer("--draws", draws, lo=20, hi=100_000)
    seed = limits.seed("--seed", seed)
    threshold_percent = real("--threshold-percent", threshold_percent, lo=0.0, hi=100.0, lo_open=True)
    if not isinstance(history_path, (str, os.PathLike)):
        raise InputError(f"HISTORY: expected the path of a CSV file, got {type(history_path).__name__}")
    try:  # read once: the provenance keeps this text (a pipe, <(...), cannot be read twice)
        history_text = Path(history_path).read_text(encoding="utf-8")
    except IsADirectoryError:
        raise InputError(f"HISTORY: {history_path} is a folder; expected a CSV file") from None
    except FileNotFoundError:
        raise InputError(f"data file not found: {history_path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{history_path}: cannot read ({exc})") from None
    histories = read_history(history_path, history_text)
    names = [_safe_name(h.series.patient_id) for h in histories]  # each patient's figure file
    long = [h.series.patient_id for h, n in zip(histories, names) if len(n) > limits.MAX_NAME_LENGTH]
    if long:
        raise InputError(f"{history_path}: patient_id {long[0][:80]!r}...: at most {limits.MAX_NAME_LENGTH} "
                         "characters (it names the patient's figure files)")
    clash = sorted({n for n in names if names.count(n) > 1})
    if clash:
        same = [h.series.patient_id for h, n in zip(histories, names) if n == clash[0]]
        raise InputError(f"{history_path}: patient ids {same} would share the figure files figures/{clash[0]}.png "
                         "and .pdf (characters other than letters, digits, - _ . become _); give them distinct ids")
    rtol = limits.rtol("rtol", rtol, hi=1e-3)
    max_nfev = integer("max_nfev", max_nfev, lo=1, hi=100_000)
    priors = {}
    for tr in sorted({h.series.transplant for h in histories}):
        name = set_name if set_name is not None else DEFAULT_SETS[tr]
        parameter_set(name)  # validates the name (the error lists the sets)
        priors[tr] = population_prior(name)
    settings = {tr: FitSettings(variant=p.variant, rtol=rtol, max_nfev=max_nfev) for tr, p in priors.items()}

    out = Path(out)
    begin_outputs(out)  # creates the folder (removed again if the run is refused)
    iterator = histories
    if progress:
        from tqdm import tqdm
        iterator = tqdm(histories, desc="predict-stop", unit="patient")
    preds = []
    for h in iterator:
        tr = h.series.transplant
        p = predict_patient(h, priors[tr], settings[tr], horizon_days=horizon_days, draws=draws, seed=seed,
                            threshold_percent=threshold_percent)
        preds.append(p)
        if p["status"].startswith("success"):
            log(f"predict-stop: {p['patient_id']}: p_recurrence {p['p_recurrence']:.3f} "
                f"[{p['p_recurrence_lower']:.3f}, {p['p_recurrence_upper']:.3f}] ({p['seconds']:.1f} s)")
        else:
            log(f"predict-stop: {p['patient_id']}: {p['status']}: {p['message']}")
    atomic_write_text(out / "predictions.csv", predictions_table(preds, threshold_percent))
    atomic_write_text(out / "fits.csv", fits_table(preds))
    atomic_write_text(out / "bands.csv", bands_table(preds))
    atomic_write_json(out / "summary.json", summary(preds, horizon_days, threshold_percent))
    figures = out / "figures"
    if figures.is_dir():  # an earlier run's figures of other patients must not stand beside this provenance
        for old in figures.iterdir():
            if old.suffix in (".png", ".pdf") and old.stem not in names and old.is_file():
                old.unlink()
    with use_style():
        for h, p, name in zip(histories, preds, names):
            fig = new_figure(height=2.6)
            plot_prediction(fig.add_subplot(), h, p, threshold_percent)
            save_figure(fig, figures, name)
    config = {"history": str(history_path), "horizon_days": horizon_days, "draws": draws,
              "threshold_percent": threshold_percent, "parameter_sets": {str(k): v.set_name for k, v in priors.items()},
              "rtol": rtol, "max_nfev": max_nfev, "history_csv": history_text}
    finish_outputs(out, provenance(config, seed))
    return preds


# --------------------------------------------------------------------------------------------------
# as an experiment (``gvlmodel reproduce``): a shipped data set's histories from a config


PREDICT_KEYS = {"dataset", "history", "horizon_days", "draws", "seed", "set", "threshold_percent", "max_patients"}
QUICK_KEYS = {"draws", "max_patients"}
HISTORY_DATASETS = ("hahnel2020",)


def history_csv(series: list[PatientSeries]) -> str:
    """Patient series as ``HISTORY.csv`` text; the stop day is each series' ``stop_day`` (or its last
    sample, whichever is later: digitised cessation months can fall a day before the last sample)."""
    lines = [",".join(HISTORY_COLUMNS)]
    for s in series:  # repr: the days and ratios round-trip exactly
        stop = float(np.nanmax([s.stop_day, s.day[-1]]))
        for d, v, c in zip(s.day, s.bcr_abl_percent, s.censored):
            lines.append(f"{_fmt(s.patient_id)},{float(d)!r},{float(v)!r},{int(c)},{stop!r},{_fmt(s.transplant)}")
    return "\n".join(lines) + "\n"


def load_predict_config(path, *, quick: bool = False) -> dict:
    """A ``[predict_stop]`` experiment config, validated (errors name the key and the allowed values)."""
    from ..core.errors import check_tables, read_toml

    cfg = read_toml(path, "config")
    check_tables(cfg, {"predict_stop": PREDICT_KEYS, "quick": QUICK_KEYS}, str(path))
    c = dict(cfg.get("predict_stop", {}))
    if quick:
        c.update(cfg.get("quick", {}))
    if ("dataset" in c) == ("history" in c):
        raise InputError(f"{path}: [predict_stop] needs exactly one of dataset (allowed: {list(HISTORY_DATASETS)}) "
                         "or history (a CSV path relative to the config)")
    if "dataset" in c and c["dataset"] not in HISTORY_DATASETS:
        raise InputError(f"{path}: [predict_stop] dataset: unknown {c['dataset']!r}; allowed: {list(HISTORY_DATASETS)}")
    out = {"raw": cfg, "quick": quick,
           "horizon_days": real("[predict_stop] horizon_days", c.get("horizon_days", 365.0), lo=1.0, hi=MAX_DAYS),
           "draws": integer("[predict_stop] draws", c.get("draws", 2000), lo=20, hi=100_000),
           "seed": limits.seed("[predict_stop] seed", c.get("seed", 1)),
           "threshold_percent": real("[predict_stop] threshold_percent", c.get("threshold_percent", MMR_PERCENT),
                                     lo=0.0, hi=100.0, lo_open=True),
           "max_patients": integer("[predict_stop] max_patients", c.get("max_patients", 0), lo=0),
           "set": c.get("set")}
    if out["set"] is not None:
        parameter_set(out["set"])
    if "dataset" in c:
        out["dataset"] = c["dataset"]
    else:
        hist = Path(path).parent / str(c["history"])
        read_history(hist)  # validated before anything is written
        out["history"] = hist
    return out


def run_predict_experiment(config_path, out: Path, *, quick: bool = False, log=print,
                           progress: bool = False) -> list[dict]:
    """Write ``out/history.csv`` (from the data set, or a copy of the file) and run
    :func:`run_predict_stop` on it into ``out``."""
    from ..clinical.datasets import DATASETS
    from ..core.provenance import atomic_write_text

    cfg = load_predict_config(config_path, quick=quick)
    if "dataset" in cfg:
        series = DATASETS[cfg["dataset"]]()
        text = history_csv(series[: cfg["max_patients"]] if cfg["max_patients"] else series)
    else:
        text = Path(cfg["history"]).read_text(encoding="utf-8")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "history.csv", text)
    return run_predict_stop(out / "history.csv", out, horizon_days=cfg["horizon_days"], draws=cfg["draws"],
                            seed=cfg["seed"], set_name=cfg["set"], threshold_percent=cfg["threshold_percent"],
                            log=log, progress=progress)
