r"""Patient-level calibration: per-patient fits under a population prior (a mixed-effects fit).

The shared biology of transplanted and non-transplanted patients (hierarchy
kinetics, imatinib response, autologous immunity) is calibrated on the
individual BCR-ABL series of :mod:`gvlmodel.clinical.datasets` (Michor 2005: 68
patients, first year of imatinib; Hähnel 2020: 21 patients, years of TKI until
cessation), and the population median of the autologous expansion on the STIM1
stopping trial (below).

Likelihood (per sample ``j`` of patient ``i``, log10 scale, noise SD ``sigma``):

* a quantified sample ``y_ij``: Gaussian, residual ``(log10 y_ij - log10 m_ij) / sigma``
  where ``m_ij`` is the model's BCR-ABL ratio at that day;
* an undetectable sample with limit ``l_ij`` (left-censored): probability
  ``Phi((log10 l_ij - log10 m_ij) / sigma)`` that a sample of the model's ratio
  falls below the limit; its contribution to ``-2 log L`` is
  ``-2 log Phi(...)``, never a residual at the limit itself;
* observations above 99 % are set to 99 % (Michor's BCR-ABL/BCR can exceed
  100 % at diagnosis; the model's ratio cannot).

Between-patient variation: the fitted quantities ``theta`` (log10 of table
parameters, and the starting ratio) are multivariate normal across patients
with mean ``mu`` and a full covariance ``Omega`` (per-patient estimates of
``im_kill_lsc`` and ``q_in`` are strongly anti-correlated, so independent
spreads would make virtual patients no fitted patient resembles).  The fit
alternates (an empirical-Bayes / two-stage EM scheme, Steimer et al. 1984;
Davidian & Giltinan 1995):

1. each patient's maximum a posteriori ``theta_i`` under the current prior,
   by SciPy's trust-region least squares on the stacked residuals (data, censored
   terms as ``sqrt(-2 log Phi)``, prior ``L^-1 (theta - mu)`` with ``Omega = L L^T``);
2. ``mu`` = mean of the ``theta_i``; ``Omega`` = their covariance plus the mean
   Laplace posterior covariance ``(J^T J)^-1``; ``sigma`` = the RMS of the
   quantified residuals.

STIM1 stage (``stim1_parameter``): the on-treatment series barely inform the
autologous effector expansion ``z_expand_auto`` (it acts once BCR-ABL is low,
where most samples are censored; started from 0.15 or 0.18/day the series fit
ends at 0.138 or 0.145/day), but what happens after a stop turns on it.  So its
population median is then set by the STIM1 relapse counts (100 patients: relapse
by 6 months, 6-12, 12-60, free at 60), by a likelihood profile over STIM1-like
virtual trials with everything else at the series' estimate
(:func:`stim1_profile`).  The shipped set records both values
(``[stim1_calibration]``); ``gvlmodel compare`` scores its STIM1 prediction with
the series-only value, so STIM1 stays held out there.

The result is a population estimate (``mu``, ``omega``, ``sigma``) and
per-patient posteriors (MAP and Laplace SD), from which :func:`ship_set`
writes a parameter set (population medians on the table, spreads as natural-log
SDs) that scenarios and the Hess fit use.  Solver failures are reported per
patient in the results, never dropped.
"""
from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..core import limits
from ..clinical.datasets import DATASETS, DAYS_PER_MONTH, PatientSeries
from ..core.errors import InputError, integer, read_toml, real
from ..model.parameters import (PARAMETER_TABLE, PARAMETER_SET_DIR, check_ordered_ranges, parameter_ranges,
                                parameter_set, parse_variant, resolve_parameters)
from ..model.simulate import initial_state, simulate

#: the starting ratio is fitted per patient too (not a table parameter)
START = "start_bcr_abl"
START_BOUNDS = (5.0, 99.0)  # percent
START_PRIOR = (math.log10(60.0), 0.3)  # log10 mean, SD: chronic phase at the start of imatinib
OBS_CAP = 99.0
#: a direction the data leave open keeps at most this posterior SD (log10) in the Laplace approximation
POSTERIOR_SD_CAP_LOG10 = 2.0
SERIES_DATASETS = ("michor2005", "hahnel2020")
CONFIG_KEYS = {"calibrate", "fitted", "quick"}
CALIBRATE_KEYS = {"name", "seed", "datasets", "variant", "base_set", "iterations", "noise_sd_log10",
                  "max_patients", "dose_mg", "rtol", "max_nfev", "detection_limit_percent", "stim1_parameter",
                  "stim1_size", "stim1_grid_points", "stim1_grid_factor"}
QUICK_KEYS = {"iterations", "max_patients", "max_nfev", "stim1_size", "stim1_grid_points"}
#: population medians the STIM1 relapse counts may set (the autologous effector rows: what decides a
#: non-transplanted stop and what the on-treatment series leave open); "" switches the stage off
STIM1_PARAMETERS = ("z_expand_auto", "z_influx_auto")


@dataclass(frozen=True)
class CalibrationConfig:
    name: str
    seed: int
    datasets: tuple[str, ...]
    variant: str
    base_set: str
    iterations: int
    noise_sd_log10: float
    max_patients: int
    dose_mg: float
    rtol: float
    max_nfev: int
    fitted: tuple[str, ...]
    prior_sd_log10: dict = field(default_factory=dict)
    raw: dict = field(default_factory=dict)
    stim1_parameter: str = ""
    stim1_size: int = 4000
    stim1_grid_points: int = 13
    stim1_grid_factor: float = 2.5

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.raw, sort_keys=True).encode()).hexdigest()[:16]


def parse_config(cfg: dict, *, quick: bool = False, source: str = "config") -> CalibrationConfig:
    """A validated calibration config (errors name the key and the allowed values)."""
    if not isinstance(cfg, dict):
        raise InputError(f"{source}: expected a TOML table")
    unknown = set(cfg) - CONFIG_KEYS
    if unknown:
        raise InputError(f"{source}: unknown table(s) {sorted(unknown)}; allowed: {sorted(CONFIG_KEYS)}")
    c = dict(cfg.get("calibrate", {}))
    if not isinstance(cfg.get("calibrate", {}), dict):
        raise InputError(f"{source}: [calibrate] must be a table")
    bad = set(c) - CALIBRATE_KEYS
    if bad:
        raise InputError(f"{source}: unknown key(s) {sorted(bad)} in [calibrate]; allowed: {sorted(CALIBRATE_KEYS)}")
    if quick:
        q = cfg.get("quick", {})
        if not isinstance(q, dict) or set(q) - QUICK_KEYS:
            raise InputError(f"{source}: [quick] may set only {sorted(QUICK_KEYS)}")
        c.update(q)
    datasets = c.get("datasets", list(SERIES_DATASETS))
    if not isinstance(datasets, list) or not datasets or any(d not in SERIES_DATASETS for d in datasets):
        raise InputError(f"{source}: [calibrate] datasets: expected a non-empty list from {list(SERIES_DATASETS)}, "
                         f"got {datasets!r}")
    variant = parse_variant(c.get("variant", "H2")).value
    base = c.get("base_set", "default")
    base_parameters = parameter_set(base)  # validates the name
    fitted_tab = cfg.get("fitted", {})
    if not isinstance(fitted_tab, dict):
        raise InputError(f"{source}: [fitted] must be a table of name = prior SD (log10)")
    fitted = {START: START_PRIOR[1]}
    for name, sd in fitted_tab.items():
        if name == START:
            fitted[START] = real(f"[fitted] {START}", sd, lo=0.01, hi=3.0)
            continue
        if name not in PARAMETER_TABLE:
            raise InputError(f"{source}: [fitted] unknown parameter {name!r}; allowed: {START}, "
                             + ", ".join(PARAMETER_TABLE))
        if PARAMETER_TABLE[name].scale != "log":
            raise InputError(f"{source}: [fitted] {name!r} is a linear-scale parameter; only log-scale rows "
                             "can be fitted (log-normal between patients)")
        fitted[name] = real(f"[fitted] {name}", sd, lo=0.01, hi=3.0)
    check_ordered_ranges(parameter_ranges(base_parameters,
                                          spread=[name for name in fitted if name in PARAMETER_TABLE]),
                         f"{source}: [fitted]", "each patient's fit ranges over the table's bounds, which overlap "
                         "for these two: fit only one of them")
    stim1_parameter = c.get("stim1_parameter", "")
    if stim1_parameter not in ("",) + STIM1_PARAMETERS:
        raise InputError(f"{source}: [calibrate] stim1_parameter: expected one of {list(STIM1_PARAMETERS)} or \"\" "
                         f"(off), got {stim1_parameter!r}")
    return CalibrationConfig(
        name=limits.run_name("[calibrate] name", c.get("name", "patients")),
        seed=limits.seed("[calibrate] seed", c.get("seed", 0)),
        datasets=tuple(datasets), variant=variant, base_set=base,
        iterations=integer("[calibrate] iterations", c.get("iterations", 3), lo=1, hi=50),
        noise_sd_log10=real("[calibrate] noise_sd_log10", c.get("noise_sd_log10", 0.2), lo=0.01, hi=2.0),
        max_patients=integer("[calibrate] max_patients", c.get("max_patients", 0), lo=0),
        dose_mg=real("[calibrate] dose_mg", c.get("dose_mg", 400.0), lo=0.0, hi=1000.0, lo_open=True),
        rtol=limits.rtol("[calibrate] rtol", c.get("rtol", 1e-6), hi=1e-3),
        max_nfev=integer("[calibrate] max_nfev", c.get("max_nfev", 60), lo=5, hi=10_000),
        fitted=tuple(fitted), prior_sd_log10=fitted, raw=cfg, stim1_parameter=stim1_parameter,
        stim1_size=check_stim_size("[calibrate] stim1_size", c.get("stim1_size", 4000), lo=1),
        stim1_grid_points=integer("[calibrate] stim1_grid_points", c.get("stim1_grid_points", 13), lo=3, hi=101),
        stim1_grid_factor=real("[calibrate] stim1_grid_factor", c.get("stim1_grid_factor", 2.5), lo=1.0, hi=100.0,
                               lo_open=True))


def load_config(path, *, quick: bool = False) -> CalibrationConfig:
    return parse_config(read_toml(path, "config"), quick=quick, source=str(path))


def load_series(cfg: CalibrationConfig) -> list[PatientSeries]:
    out = []
    for name in cfg.datasets:
        series = DATASETS[name]()
        if cfg.max_patients:
            series = series[: cfg.max_patients]
        out.extend(series)
    return out


# --------------------------------------------------------------------------
# one patient
# --------------------------------------------------------------------------
def bounds_log10(fitted, start_bounds=START_BOUNDS) -> tuple[np.ndarray, np.ndarray]:
    """log10 bounds of the fitted quantities: the table's ``[lower, upper]``; the starting ratio
    ``start_bounds`` (percent)."""
    lo, hi = [], []
    for name in fitted:
        if name == START:
            lo.append(math.log10(start_bounds[0]))
            hi.append(math.log10(start_bounds[1]))
        else:
            row = PARAMETER_TABLE[name]
            lo.append(math.log10(row.lower))
            hi.append(math.log10(row.upper))
    return np.array(lo), np.array(hi)


def patient_model(theta, fitted, base: dict, series: PatientSeries, cfg: CalibrationConfig, schedule=None):
    """Model BCR-ABL (%) at the patient's sample days for log10 quantities ``theta``; ``(ratio, result)``.

    ``cfg`` supplies ``variant``, ``rtol`` and (when ``schedule`` is None) a constant ``dose_mg``;
    ``schedule`` is a ``[(day, dose_mg), ...]`` dose history (:mod:`gvlmodel.inference.predict` passes the
    patient's own)."""
    params = dict(base)
    start = 60.0
    for name, v in zip(fitted, theta):
        if name == START:
            start = 10.0 ** v
        else:
            params[name] = 10.0 ** v
    y0 = initial_state(params, bcr_abl=start, variant=cfg.variant, transplant=series.transplant)
    days = np.asarray(series.day, dtype=float)
    t_out = np.concatenate(([0.0], days)) if days[0] > 0 else days
    res = simulate(params, y0=y0, t_out=t_out, schedule=schedule or [(0.0, cfg.dose_mg)], variant=cfg.variant,
                   transplant=series.transplant, rtol=cfg.rtol)
    ratio = res.bcr_abl[-days.size:]
    return ratio, res


def residuals(theta, fitted, base, series, cfg, mu, omega, sigma, schedule=None):
    """Stacked residuals: quantified samples, censored samples (``sqrt(-2 log Phi)``), prior terms."""
    ratio, res = patient_model(theta, fitted, base, series, cfg, schedule)
    if not res.success or not np.all(np.isfinite(ratio)):
        return np.full(len(series.day) + len(theta), 1e3)
    return standardized_residuals(ratio, theta, series, mu, omega, sigma)


def standardized_residuals(ratio, theta, series, mu, omega, sigma) -> np.ndarray:
    """The stacked residuals of model ratios ``ratio`` (%, at the sample days) and log10 quantities
    ``theta``: half their sum of squares is the negative log posterior up to a constant."""
    from scipy.special import log_ndtr  # here: importing scipy.special costs every command ~0.2 s

    lm = np.log10(np.maximum(ratio, 1e-12))
    lo = np.log10(np.minimum(np.asarray(series.bcr_abl_percent, dtype=float), OBS_CAP))
    cens = np.asarray(series.censored, dtype=bool)
    r = np.empty(lm.size)
    r[~cens] = (lo[~cens] - lm[~cens]) / sigma
    if cens.any():
        r[cens] = np.sqrt(-2.0 * log_ndtr((lo[cens] - lm[cens]) / sigma))
    return np.concatenate((r, prior_residuals(theta, mu, omega)))


def prior_residuals(theta, mu, omega) -> np.ndarray:
    """Whitened prior terms: ``(theta - mu) / omega`` for SDs ``omega`` (1-d), ``L^-1 (theta - mu)``
    for a covariance ``omega = L L^T`` (2-d); half their sum of squares is ``-log`` prior + const."""
    from scipy.linalg import solve_triangular

    d = np.asarray(theta, dtype=float) - mu
    omega = np.asarray(omega, dtype=float)
    if omega.ndim == 1:
        return d / omega
    return solve_triangular(np.linalg.cholesky(omega), d, lower=True)


def population_covariance(thetas, post_covs, sd_bounds=(0.02, 2.0)) -> np.ndarray:
    """EM update of ``Omega``: covariance of the per-patient MAPs plus their mean posterior
    covariance; SDs kept in ``sd_bounds`` (log10) and the matrix positive definite."""
    th = np.asarray(thetas, dtype=float)
    om = np.cov(th.T, ddof=0).reshape(th.shape[1], th.shape[1]) + np.mean(post_covs, axis=0)
    om = 0.5 * (om + om.T)
    sd = np.sqrt(np.clip(np.diag(om), 1e-12, None))
    corr = om / np.outer(sd, sd)
    w, v = np.linalg.eigh(corr)
    corr = (v * np.clip(w, 1e-3, None)) @ v.T  # keep it a positive definite correlation matrix
    d = np.sqrt(np.diag(corr))
    corr = corr / np.outer(d, d)
    sd = np.clip(sd, *sd_bounds)
    return corr * np.outer(sd, sd)


#: a fit whose residual SD exceeds this multiple of the noise SD is restarted from RESTART_SIGNS
RESTART_RESIDUAL_FACTOR = 2.0
#: restart directions, in prior SDs from the first start (deterministic: no random draws)
RESTART_SIGNS = (1.0, -1.0, "alternate")


def _restart_points(x0, omega, lo, hi) -> list[np.ndarray]:
    """Deterministic further starts: ``x0`` moved one prior SD along all-plus, all-minus and alternating signs."""
    sd = np.sqrt(np.diag(omega)) if np.ndim(omega) == 2 else np.asarray(omega, dtype=float)
    out = []
    for sign in RESTART_SIGNS:
        v = np.where(np.arange(x0.size) % 2 == 0, 1.0, -1.0) if sign == "alternate" else np.full(x0.size, sign)
        out.append(np.clip(x0 + v * sd, lo + 1e-9, hi - 1e-9))
    return out


def fit_patient(series, fitted, base, cfg, mu, omega, sigma, x0, *, schedule=None, start_bounds=START_BOUNDS):
    """One patient's MAP under the prior ``N(mu, omega^2)`` (log10) and its Laplace posterior.

    The optimiser (SciPy's trust-region least squares) starts at ``x0``; a fit whose residual SD
    exceeds ``RESTART_RESIDUAL_FACTOR`` noise SDs (a local optimum: window models have rugged
    likelihoods) is repeated from :func:`_restart_points` and the lowest objective kept.

    Returns a dict: ``theta`` (MAP, log10), ``cov`` (Gauss-Newton posterior covariance
    ``(J^T J)^-1`` of the stacked, already standardised residuals), ``post_sd`` (its diagonal's
    square root, capped at ``POSTERIOR_SD_CAP_LOG10``), the model ``ratio`` at the sample days, ``status``
    ("success", "solver: ..." or "failed: ..."), optimiser message and counts, and the residual SD.
    """
    from scipy.optimize import least_squares  # here: importing scipy.optimize costs every command ~0.3 s

    lo, hi = bounds_log10(fitted, start_bounds)
    x0 = np.clip(x0, lo + 1e-9, hi - 1e-9)
    t0 = time.perf_counter()
    try:
        def solve(start):
            return least_squares(residuals, start, bounds=(lo, hi),
                                 args=(fitted, base, series, cfg, mu, omega, sigma, schedule),
                                 method="trf", x_scale=1.0, diff_step=1e-4, max_nfev=cfg.max_nfev)

        sol = solve(x0)
        ratio, res = patient_model(sol.x, fitted, base, series, cfg, schedule)
        if _residual_sd(series, ratio) > RESTART_RESIDUAL_FACTOR * sigma:
            best = sol
            for start in _restart_points(x0, omega, lo, hi):
                alt = solve(start)
                if alt.cost < best.cost:
                    best = alt
            if best is not sol:
                sol = best
                ratio, res = patient_model(sol.x, fitted, base, series, cfg, schedule)
        theta = sol.x
        J = sol.jac
        try:
            cov = np.linalg.pinv(J.T @ J)
            post_sd = np.minimum(np.sqrt(np.clip(np.diag(cov), 0.0, None)), POSTERIOR_SD_CAP_LOG10)
        except np.linalg.LinAlgError:
            cov = np.full((theta.size, theta.size), np.nan)
            post_sd = np.full(theta.size, np.nan)
        status = "success" if res.success else f"solver: {res.message}"
        optimizer = sol.message
        nfev = int(sol.nfev)
        converged = bool(sol.status > 0)  # 0: max_nfev reached, where it stopped depends on the path
    except Exception as exc:  # reported per patient, never dropped
        theta = x0
        cov = np.full((x0.size, x0.size), np.nan)
        post_sd = np.full(x0.size, np.nan)
        ratio = np.full(len(series.day), np.nan)
        status, optimizer, nfev, converged = f"failed: {type(exc).__name__}: {exc}", "", 0, False
    resid, all_resid = _log_residuals(series, ratio)
    return {"theta": theta, "cov": cov, "post_sd": post_sd, "ratio": ratio, "status": status, "optimizer": optimizer,
            "nfev": nfev, "converged": converged, "seconds": time.perf_counter() - t0,
            "residual_sd_log10": float(np.sqrt(np.mean(all_resid ** 2))) if all_resid.size else float("nan"),
            "quantified_residuals": resid}


def _log_residuals(series, ratio):
    """``(quantified, all)`` log10 residuals: data minus model at quantified samples; for a censored sample
    the model's excess over its limit (0 when the model is below it)."""
    cens = np.asarray(series.censored, dtype=bool)
    obs = np.log10(np.minimum(np.asarray(series.bcr_abl_percent, dtype=float), OBS_CAP))
    lm = np.log10(np.maximum(ratio, 1e-12))
    resid = obs[~cens] - lm[~cens]
    excess = np.maximum(lm[cens] - obs[cens], 0.0)
    return resid, np.concatenate((resid, excess))


def _residual_sd(series, ratio) -> float:
    _, all_resid = _log_residuals(series, ratio)
    return float(np.sqrt(np.mean(all_resid ** 2))) if all_resid.size else 0.0


# --------------------------------------------------------------------------
# population
# --------------------------------------------------------------------------
def initial_prior_mean(fitted, base) -> np.ndarray:
    """log10 prior means at the start: the base set's values (the starting ratio: ``START_PRIOR``)."""
    return np.array([START_PRIOR[0] if name == START else math.log10(base[name]) for name in fitted])


def calibrate(cfg: CalibrationConfig, *, log=print, progress: bool = False) -> dict:
    """Run the population fit; returns per-patient fits, the population estimate and its history."""
    base = resolve_parameters(parameter_set(cfg.base_set))
    series = load_series(cfg)
    fitted = cfg.fitted
    mu = initial_prior_mean(fitted, base)
    omega = np.array([cfg.prior_sd_log10[n] for n in fitted])
    sigma = cfg.noise_sd_log10
    # deterministic: every patient's optimiser starts at the prior mean (the seed drives the STIM1 trial)
    x_prev = [mu.copy() for _ in series]
    history = []
    fits = []
    for it in range(cfg.iterations):
        t0 = time.perf_counter()
        fits = []
        iterator = series
        if progress:
            from tqdm import tqdm
            iterator = tqdm(series, desc=f"calibrate iteration {it + 1}/{cfg.iterations}", unit="patient")
        for k, s in enumerate(iterator):
            fits.append(fit_patient(s, fitted, base, cfg, mu, omega, sigma, x_prev[k]))
        ok = [f for f in fits if f["status"] == "success"]
        if not ok:
            raise InputError("calibrate: every patient's fit failed; see the per-patient status")
        th = np.array([f["theta"] for f in ok])
        pcov = np.array([_finite_cov(f) for f in ok])
        mu = th.mean(axis=0)
        omega = population_covariance(th, pcov)
        q = np.concatenate([f["quantified_residuals"] for f in ok])
        sigma = float(max(np.sqrt(np.mean(q ** 2)), 0.05))
        x_prev = [f["theta"] for f in fits]
        history.append({"iteration": it + 1, "mu_log10": mu.tolist(), "omega_log10": population_sd(omega).tolist(),
                        "noise_sd_log10": sigma, "failed": len(fits) - len(ok),
                        "seconds": time.perf_counter() - t0})
        log(f"calibrate: iteration {it + 1}/{cfg.iterations}: noise SD {sigma:.3f} log10, "
            f"{len(fits) - len(ok)} failed, {time.perf_counter() - t0:.1f} s")
    return {"series": series, "fits": fits, "fitted": fitted, "mu": mu, "omega": omega, "sigma": sigma,
            "history": history, "base": base}


def _finite_cov(fit: dict) -> np.ndarray:
    """A patient's Laplace posterior covariance, its SDs capped at ``POSTERIOR_SD_CAP_LOG10`` (as ``post_sd``)."""
    c = np.nan_to_num(np.asarray(fit["cov"], dtype=float), nan=0.0)
    sd = np.sqrt(np.clip(np.diag(c), 0.0, None))
    capped = np.minimum(sd, POSTERIOR_SD_CAP_LOG10)
    scale = np.divide(capped, sd, out=np.ones_like(sd), where=sd > 0)
    return c * np.outer(scale, scale)


def population_sd(omega) -> np.ndarray:
    """log10 SDs of a population covariance (or the SDs themselves)."""
    omega = np.asarray(omega, dtype=float)
    return np.sqrt(np.diag(omega)) if omega.ndim == 2 else omega


def population_correlation(result: dict) -> dict:
    """Correlations between the fitted table parameters' log values, ``{a: {b: r}}`` (each pair once)."""
    om = np.asarray(result["omega"], dtype=float)
    if om.ndim != 2:
        return {}
    sd = np.sqrt(np.diag(om))
    names = list(result["fitted"])
    keep = [i for i, n in enumerate(names) if n != START]
    out: dict = {}
    for a_i, i in enumerate(keep):
        for j in keep[a_i + 1:]:
            out.setdefault(names[i], {})[names[j]] = float(om[i, j] / (sd[i] * sd[j]))
    return out


def population_parameters(result: dict, *, series_only: bool = False) -> dict:
    """The table with the population medians of the fitted parameters (and, unless ``series_only``,
    the median the STIM1 stage set: :func:`stim1_profile`)."""
    p = dict(result["base"])
    for name, m in zip(result["fitted"], result["mu"]):
        if name != START:
            row = PARAMETER_TABLE[name]
            p[name] = float(np.clip(10.0 ** m, row.lower, row.upper))
    if not series_only and result.get("stim1_profile"):
        prof = result["stim1_profile"]
        p[prof["parameter"]] = prof["estimate"]
    return p


def population_sd_ln(result: dict) -> dict:
    """Between-patient spreads as natural-log SDs of the fitted table parameters."""
    return {name: float(o * math.log(10.0)) for name, o in zip(result["fitted"], population_sd(result["omega"]))
            if name != START}


# --------------------------------------------------------------------------
# checks against the population-level data
# --------------------------------------------------------------------------
def median_course_slopes(params: dict, variant: str, start: float = 60.0) -> dict:
    """Natural-log slopes of the population-median course on 400 mg/day: days 30-120 and 180-365
    (Michor 2005 report about -0.05/day, then about -0.008/day)."""
    days = np.array([0.0, 30.0, 120.0, 180.0, 365.0])
    y0 = initial_state(params, bcr_abl=start, variant=variant, transplant=False)
    res = simulate(params, y0=y0, t_out=days, schedule=[(0.0, 400.0)], variant=variant, transplant=False)
    r = np.log(res.bcr_abl)
    return {"first_slope_per_day": float((r[2] - r[1]) / 90.0), "second_slope_per_day": float((r[4] - r[3]) / 185.0),
            "observed_first": -0.05, "observed_second": -0.008, "source": "Michor et al., Nature 2005"}


def _stim_protocol(max_years_to_stop: float = 10.0, follow_up_months: float = 60.0):
    """The protocol of :func:`stim_check`'s trial."""
    from ..clinical.cohort import Protocol
    from ..clinical.datasets import load_stim1

    stim = load_stim1()
    follow = max_years_to_stop * 365.25 + follow_up_months * DAYS_PER_MONTH
    return Protocol(stop={"min_days": float(stim["eligibility"]["min_imatinib_days"]),
                          "undetectable_days": float(stim["eligibility"]["min_undetectable_days"])},
                    escalate=False, follow_up_days=follow, visit_interval_days=30.0, restart=False,
                    loss_rule="stim1")


def check_stim_size(field: str, size, lo: int = 0) -> int:
    """The size of a STIM1-like trial (:func:`stim_check`, 0: no trial; the STIM1 profile's), refused (exit 2,
    naming ``field``) before any work when out of ``[lo, MAX_COHORT_SIZE]`` or when its cohort cannot be held
    in this machine's memory."""
    from ..clinical.cohort import RESULT_BYTES_PER_PATIENT

    size = limits.cohort_size(field, size, lo=lo)
    limits.check_memory({"cohort": size * (limits.engine_bytes_per_patient(_stim_protocol().n_visits)
                                           + RESULT_BYTES_PER_PATIENT)}, {"cohort": field},
                        what=f"the STIM1 trial ({field})")
    return size


def stim_check(params: dict, sd_ln: dict, variant: str, *, size: int = 2000, seed: int = 2010,
               max_years_to_stop: float = 10.0, follow_up_months: float = 60.0, threads=None,
               correlation: dict | None = None) -> dict:
    """A STIM1-like trial of the calibrated population: non-transplanted patients from diagnosis on
    400 mg/day, stopping after >= 3 years of imatinib and >= 2 years undetectable (checked at monthly
    visits); molecular-relapse-free share at 6 / 12 / 60 months after the stop (relapse as STIM1
    defined it: loss of MMR at one sample, or a positive confirmed by a one-log rise over the first
    positive at two successive samples; the protocol's ``loss_rule = "stim1"``), against 43 / 41 / 38 % (Mahon et al. 2010; Etienne et al.
    2017), with binomial 95 % intervals for 100 patients.

    The trial runs ``max_years_to_stop`` years plus ``follow_up_months``; the shares are taken over
    the patients who stopped within ``max_years_to_stop`` years (so every one of them is followed
    the full ``follow_up_months``): one denominator for every time point, no selection of early
    stoppers at late time points."""
    from ..clinical.cohort import CohortSpec, Population, simulate_cohort
    from ..clinical.datasets import load_stim1

    stim = load_stim1()
    proto = _stim_protocol(max_years_to_stop, follow_up_months)
    pop = Population(sd_log=sd_ln, medians={}, bounds="truncate", correlation=correlation)
    res = simulate_cohort(CohortSpec(size=size, seed=seed, transplant=False, start="diagnosis"), proto,
                          params, variant=variant, population=pop, progress=False, threads=threads)
    c = res.columns
    stop_day = np.asarray(c["stop_day"], dtype=float)
    stopped_any = c["stopped"].astype(bool)
    stopped = stopped_any & (stop_day <= max_years_to_stop * 365.25)
    n = int(stopped.sum())
    out = {"patients": size, "stopped": int(stopped_any.sum()), "stopped_in_window": n,
           "max_years_to_stop": max_years_to_stop, "observed": {}, "simulated": {}, "within_binomial_95": {}}
    out["median_years_on_im_at_stop"] = float(np.median(stop_day[stopped]) / 365.25) if n else float("nan")
    t_loss = np.asarray(c["days_stop_to_loss"], dtype=float)
    lost = c["lost_cmr"].astype(bool)
    eradicated_share = float(np.mean(c["eradicated"][stopped & ~lost])) if np.any(stopped & ~lost) else float("nan")
    lsc_ge_100 = (float(np.mean(np.asarray(c["final_lsc"])[stopped & ~lost] >= 100.0))
                  if np.any(stopped & ~lost) else float("nan"))
    for months, key in ((6, "molecular_relapse_free_6_months"), (12, "molecular_relapse_free_12_months"),
                        (60, "molecular_relapse_free_60_months")):
        d = months * DAYS_PER_MONTH
        free = ~(lost & (t_loss <= d))
        frac = float(np.mean(free[stopped])) if n else float("nan")
        obs = float(stim["outcome"][key])
        se = math.sqrt(obs * (1 - obs) / 100.0)
        out["observed"][key] = obs
        out["simulated"][key] = frac
        out["within_binomial_95"][key] = bool(abs(frac - obs) <= 1.96 * se) if math.isfinite(frac) else False
    rel = t_loss[stopped & lost]
    out["median_months_to_relapse"] = float(np.median(rel) / DAYS_PER_MONTH) if rel.size else float("nan")
    out["share_of_relapses_within_7_months"] = float(np.mean(rel <= 7 * DAYS_PER_MONTH)) if rel.size else float("nan")
    out["lasting_tfr_share_eradicated"] = eradicated_share
    out["lasting_tfr_share_with_100_lsc"] = lsc_ge_100
    out["failed_solves"] = int(np.sum(c["solver_status"] != 0)) if "solver_status" in c else 0
    return out


#: STIM1 relapse-time intervals (months after the stop) of the count likelihood
STIM_EDGES_MONTHS = (6, 12, 60)


def stim_counts() -> tuple[np.ndarray, dict]:
    """Observed STIM1 counts of 100 patients: relapse by 6 months, in 6-12, in 12-60, free at 60."""
    from ..clinical.datasets import load_stim1

    o = load_stim1()["outcome"]
    n = int(o["patients"])
    free = [o["molecular_relapse_free_6_months"], o["molecular_relapse_free_12_months"],
            o["molecular_relapse_free_60_months"]]
    k_free = [round(f * n) for f in free]
    counts = np.array([n - k_free[0], k_free[0] - k_free[1], k_free[1] - k_free[2], k_free[2]], dtype=float)
    return counts, {"patients": n, "relapse_free": dict(zip(STIM_EDGES_MONTHS, free))}


def multinomial_logpmf(k: np.ndarray, p: np.ndarray) -> float:
    """log multinomial probability of counts ``k`` under cell probabilities ``p`` (normalised here)."""
    p = p / p.sum()
    return float(math.lgamma(k.sum() + 1) - sum(math.lgamma(x + 1) for x in k) + np.sum(k * np.log(p)))


def stim_log_likelihood(trial: dict, counts: np.ndarray) -> float:
    """log probability of the observed STIM1 counts under one simulated trial (:func:`stim_check`).

    The interval probabilities come from the trial's ``n`` simulated stoppers, smoothed by a Jeffreys
    prior (a share never simulated is not impossible, only below the trial's resolution of 1/n);
    ``-inf`` when nobody in the trial qualified for a stop."""
    f = [trial["simulated"][f"molecular_relapse_free_{m}_months"] for m in STIM_EDGES_MONTHS]
    n = trial["stopped_in_window"]
    if not n or not all(math.isfinite(a) for a in f):
        return -math.inf
    c = np.array([1 - f[0], f[0] - f[1], f[1] - f[2], f[2]]) * n
    return multinomial_logpmf(counts, (c + 0.5) / (n + 2.0))


def stim1_profile(params: dict, sd_ln: dict, variant: str, *, parameter: str, size: int = 4000,
                  grid_points: int = 13, grid_factor: float = 2.5, seed: int = 0, correlation: dict | None = None,
                  counts: np.ndarray | None = None, log=print) -> dict:
    """Population median of ``cfg.stim1_parameter`` from the STIM1 relapse counts.

    The on-treatment series barely inform the autologous effector parameters (they act once BCR-ABL
    is low, where most samples are censored), while what happens after a stop turns on them: STIM1
    (autologous immune control after stopping) is their calibration data.  With everything else at
    the series' population estimate (``params``: medians; ``sd_ln``, ``correlation``: spreads), the
    median of ``parameter`` is profiled on a log grid (``grid_points`` values within ``grid_factor``
    of its value in ``params``, inside the table bounds): at each value a STIM1-like trial of
    ``size`` virtual patients (:func:`stim_check`, one seed for the whole grid: common random
    numbers) gives the multinomial log likelihood of ``counts`` (default: the observed STIM1 counts,
    :func:`stim_counts`; :func:`stim_log_likelihood`).  A parabola
    in log10 of the parameter through the grid points within 8 log-likelihood units of the best is the
    profile; its vertex is the estimate and the values where it falls 1.92 below are the 95 %
    interval (likelihood-ratio).  If the parabola is not concave or its vertex lies outside the grid,
    the best grid value is the estimate and the interval is reported as undetermined."""
    if parameter not in STIM1_PARAMETERS:
        raise InputError(f"stim1_profile: parameter: expected one of {list(STIM1_PARAMETERS)}, got {parameter!r}")
    name = parameter
    row = PARAMETER_TABLE[name]
    centre = float(params[name])
    lo = max(row.lower, centre / grid_factor)
    hi = min(row.upper, centre * grid_factor)
    grid = np.geomspace(lo, hi, grid_points)
    counts = stim_counts()[0] if counts is None else np.asarray(counts, dtype=float)
    ll, free6, stoppers = [], [], []
    for v in grid:
        trial = stim_check({**params, name: float(v)}, sd_ln, variant, size=size, seed=seed,
                           correlation=correlation)
        ll.append(stim_log_likelihood(trial, counts))
        free6.append(trial["simulated"]["molecular_relapse_free_6_months"])
        stoppers.append(trial["stopped_in_window"])
        log(f"calibrate: STIM1 profile, {name} = {v:.4g}: log likelihood {ll[-1]:.2f} "
            f"(relapse-free at 6 months {free6[-1]:.3f}, {stoppers[-1]} stoppers)")
    ll = np.array(ll)
    x = np.log10(grid)
    best = int(np.argmax(ll))
    estimate, ci, shape = float(grid[best]), [float("nan"), float("nan")], "best grid value"
    if not np.isfinite(ll[best]):  # no virtual patient met the stop criteria anywhere: STIM1 says nothing
        estimate, shape = centre, "no stoppers in any trial: series value kept"
    near = np.isfinite(ll) & (ll >= ll[best] - 8.0)
    if near.sum() >= 3:
        a, b, c = np.polyfit(x[near], ll[near], 2)
        if a < 0 and x[0] <= -b / (2 * a) <= x[-1]:
            xv = -b / (2 * a)
            half = math.sqrt(1.92 / -a)
            estimate = float(10.0 ** xv)
            ci = [float(10.0 ** (xv - half)), float(10.0 ** (xv + half))]
            shape = "parabola vertex"
    estimate = float(np.clip(estimate, row.lower, row.upper))
    return {"parameter": name, "series_median": float(centre), "estimate": estimate, "ci95": ci,
            "method": shape, "grid": grid.tolist(), "log_likelihood": ll.tolist(),
            "relapse_free_6_months": free6, "stoppers": stoppers, "size": size, "seed": seed,
            "observed_counts": counts.tolist()}


# --------------------------------------------------------------------------
# outputs
# --------------------------------------------------------------------------
def _fmt(v) -> str:
    if isinstance(v, (float, np.floating)):
        return f"{v:.6g}" if np.isfinite(v) else ""
    return str(v)


def patients_table(result: dict) -> str:
    names = result["fitted"]
    head = ["dataset", "patient_id", "n_samples", "n_censored", *names, *[f"sd_log10_{n}" for n in names],
            "residual_sd_log10", "status", "nfev", "optimizer_converged"]
    lines = [",".join(head)]
    for s, f in zip(result["series"], result["fits"]):
        vals = [s.dataset, s.patient_id, len(s.day), int(np.sum(s.censored))]
        vals += [10.0 ** t for t in f["theta"]]
        vals += list(f["post_sd"])
        vals += [f["residual_sd_log10"], '"' + f["status"].replace('"', "'") + '"', f["nfev"],
                 "true" if f["converged"] else "false"]
        lines.append(",".join(_fmt(v) for v in vals))
    return "\n".join(lines) + "\n"


def fitted_curves_table(result: dict) -> str:
    lines = ["dataset,patient_id,day,observed_percent,censored,model_percent"]
    for s, f in zip(result["series"], result["fits"]):
        for d, o, c, m in zip(s.day, s.bcr_abl_percent, s.censored, f["ratio"]):
            lines.append(",".join(_fmt(v) for v in (s.dataset, s.patient_id, float(d), float(o), int(c), float(m))))
    return "\n".join(lines) + "\n"


def summary(result: dict, cfg: CalibrationConfig, *, stim: dict | None = None) -> dict:
    per_ds = {}
    for ds in cfg.datasets:
        sd = np.array([f["residual_sd_log10"] for s, f in zip(result["series"], result["fits"]) if s.dataset == ds])
        fails = sum(1 for s, f in zip(result["series"], result["fits"]) if s.dataset == ds and f["status"] != "success")
        not_converged = sum(1 for s, f in zip(result["series"], result["fits"])
                            if s.dataset == ds and f["status"] == "success" and not f["converged"])
        per_ds[ds] = {"patients": int(sd.size), "failed": fails, "not_converged": not_converged,
                      "residual_sd_log10_median": float(np.nanmedian(sd)) if sd.size else float("nan"),
                      "residual_sd_log10_max": float(np.nanmax(sd)) if sd.size else float("nan"),
                      "share_residual_sd_le_0_5": float(np.mean(sd <= 0.5)) if sd.size else float("nan")}
    params = population_parameters(result)
    pop = {n: {"median": float(10.0 ** m), "sd_log10": float(o)}
           for n, m, o in zip(result["fitted"], result["mu"], population_sd(result["omega"]))}
    out = {"name": cfg.name, "variant": cfg.variant, "datasets": list(cfg.datasets), "population": pop,
           "noise_sd_log10": result["sigma"], "per_dataset": per_ds, "history": result["history"],
           "michor_slopes": median_course_slopes(params, cfg.variant)}
    if result.get("stim1_profile"):
        out["stim1_profile"] = result["stim1_profile"]
    if stim is not None:
        out["stim1"] = stim
    return out


def report_markdown(s: dict) -> str:
    lines = [f"# Patient-level calibration `{s['name']}` (variant {s['variant']})", "",
             "## Fit to the individual series", "",
             "| data set | patients | failed | not converged | residual SD log10 (median) | max | share <= 0.5 |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for ds, v in s["per_dataset"].items():
        lines.append(f"| {ds} | {v['patients']} | {v['failed']} | {v['not_converged']} | "
                     f"{v['residual_sd_log10_median']:.3f} | {v['residual_sd_log10_max']:.3f} | "
                     f"{v['share_residual_sd_le_0_5']:.2f} |")
    lines += ["", "Not converged: the optimiser stopped at `max_nfev` (`optimizer_converged = false` in "
              "`patients.csv`); such a fit's estimate depends on the optimiser's path, down to rounding. It "
              "still enters the population estimate."]
    lines += ["", f"Measurement noise (re-estimated): SD {s['noise_sd_log10']:.3f} log10.", "",
              "## Population estimate", "", "| quantity | median | between-patient SD (log10) |", "|---|---:|---:|"]
    stim_set = (s.get("stim1_profile") or {}).get("parameter")
    for n, v in s["population"].items():
        note = " (series; the shipped median is set by STIM1, below)" if n == stim_set else ""
        lines.append(f"| `{n}` | {v['median']:.4g}{note} | {v['sd_log10']:.3f} |")
    if "stim1_profile" in s:
        pr = s["stim1_profile"]
        lines += ["", f"## STIM1 sets the population median of `{pr['parameter']}`", "",
                  f"Series alone: {pr['series_median']:.4g}. Profile of the STIM1 count likelihood "
                  f"({pr['size']} virtual patients per value, seed {pr['seed']}; observed counts "
                  f"{[int(c) for c in pr['observed_counts']]}: relapse by 6 months, 6-12, 12-60, free at 60): "
                  f"estimate **{pr['estimate']:.4g}** ({pr['method']}), 95 % interval "
                  f"{pr['ci95'][0]:.3g}-{pr['ci95'][1]:.3g}.", "",
                  "| value | log likelihood | relapse-free at 6 months | stoppers |", "|---:|---:|---:|---:|"]
        for v, ll, f6, n in zip(pr["grid"], pr["log_likelihood"], pr["relapse_free_6_months"], pr["stoppers"]):
            lines.append(f"| {v:.4g} | {ll:.2f} | {f6:.3f} | {n} |")
    m = s["michor_slopes"]
    lines += ["", "## Population-median course against Michor 2005", "",
              f"- first slope (days 30-120): {m['first_slope_per_day']:.4f}/day (reported about {m['observed_first']})",
              f"- second slope (days 180-365): {m['second_slope_per_day']:.4f}/day (reported about {m['observed_second']})"]
    if "stim1" in s:
        st = s["stim1"]
        lines += ["", "## STIM1-like trial of the calibrated population", "",
                  f"{st['stopped']} of {st['patients']} simulated patients met the STIM1 criteria and stopped.", "",
                  "| relapse-free | simulated | observed | within binomial 95 % (n = 100) |", "|---|---:|---:|---|"]
        for k, obs in st["observed"].items():
            lines.append(f"| {k} | {st['simulated'][k]:.3f} | {obs:.2f} | {'yes' if st['within_binomial_95'][k] else 'NO'} |")
        lines += ["", f"- median months to relapse: {st['median_months_to_relapse']:.2f} (observed 2.5)",
                  f"- relapses within 7 months: {st['share_of_relapses_within_7_months']:.2f} (observed: most)",
                  f"- lasting remissions that are eradication: {st['lasting_tfr_share_eradicated']:.2f}; "
                  f"with >= 100 LSCs: {st['lasting_tfr_share_with_100_lsc']:.2f}"]
    return "\n".join(lines) + "\n"


def ship_set_toml(result: dict, cfg: CalibrationConfig, summary_: dict) -> str:
    """The calibrated parameter set: population medians on the table, spreads (natural log)."""
    from .fit import _toml_value

    params = population_parameters(result)
    sd = population_sd_ln(result)
    lines = [f"# Population estimate of `gvlmodel calibrate` (config {cfg.name}, seed {cfg.seed}) on the",
             "# individual series of " + ", ".join(cfg.datasets) + "; do not edit by hand.",
             "# Medians of the fitted quantities replace the table's values; the rest: set "
             f"'{cfg.base_set}'.", f'variant = "{cfg.variant}"', f'calibrated_by = "{cfg.name}"',
             f'calibration_config_digest = "{cfg.digest()}"', 'population_bounds = "truncate"', "",
             "[parameters]"]
    lines += [f"{k} = {_toml_value(v)}" for k, v in params.items()]
    lines += ["", "# between-patient spreads (natural-log SD) of the fitted parameters", "[population]"]
    lines += [f"{k} = {_toml_value(v)}" for k, v in sd.items()]
    corr = population_correlation(result)
    if corr:
        lines += ["", "# correlations of the fitted parameters' log values between patients", "[correlation]"]
        lines += [f"{a}.{b} = {_toml_value(r)}" for a, row in corr.items() for b, r in row.items()]
    lines += ["", "[calibration_fit]", f"noise_sd_log10 = {_toml_value(summary_['noise_sd_log10'])}"]
    for ds, v in summary_["per_dataset"].items():
        lines.append(f"{ds}_residual_sd_log10_median = {_toml_value(v['residual_sd_log10_median'])}")
    prof = result.get("stim1_profile")
    if prof:
        lines += ["", "# the median STIM1 set (the value in [parameters]); series_median: the series alone "
                  "(what a prediction of STIM1 held out of the calibration uses)", "[stim1_calibration]",
                  f'parameter = "{prof["parameter"]}"', f"series_median = {_toml_value(prof['series_median'])}",
                  f"estimate = {_toml_value(prof['estimate'])}", f"ci95_low = {_toml_value(prof['ci95'][0])}",
                  f"ci95_high = {_toml_value(prof['ci95'][1])}", f"trial_size = {prof['size']}"]
    return "\n".join(lines) + "\n"


def run_calibrate(cfg: CalibrationConfig, out: Path, *, ship: bool = False, stim_size: int = 2000,
                  log=print, progress: bool = False) -> dict:
    """``gvlmodel calibrate``: fit, write the tables and report, optionally ship the set."""
    from ..core.provenance import atomic_write_json, atomic_write_text, begin_outputs, finish_outputs, provenance

    if not isinstance(cfg, CalibrationConfig):
        raise InputError(f"cfg: expected a CalibrationConfig (gvlmodel.inference.calibrate.load_config), got "
                         f"{type(cfg).__name__}")

    stim_size = check_stim_size("stim_size", stim_size)
    begin_outputs(out)  # creates the folder (removed again if the run is refused)
    result = calibrate(cfg, log=log, progress=progress)
    if cfg.stim1_parameter:
        result["stim1_profile"] = stim1_profile(
            population_parameters(result, series_only=True), population_sd_ln(result), cfg.variant,
            parameter=cfg.stim1_parameter, size=cfg.stim1_size, grid_points=cfg.stim1_grid_points,
            grid_factor=cfg.stim1_grid_factor, seed=cfg.seed, correlation=population_correlation(result) or None,
            log=log)
        prof = result["stim1_profile"]
        log(f"calibrate: STIM1 sets the median of {prof['parameter']}: {prof['estimate']:.4g} (95 % "
            f"{prof['ci95'][0]:.3g}-{prof['ci95'][1]:.3g}; series alone {prof['series_median']:.4g})")
    params = population_parameters(result)
    stim = (stim_check(params, population_sd_ln(result), cfg.variant, size=stim_size, seed=cfg.seed,
                       correlation=population_correlation(result) or None) if stim_size else None)
    s = summary(result, cfg, stim=stim)
    atomic_write_text(out / "patients.csv", patients_table(result))
    atomic_write_text(out / "fitted_curves.csv", fitted_curves_table(result))
    atomic_write_json(out / "population.json", {"population": s["population"], "noise_sd_log10": s["noise_sd_log10"],
                                                 "parameters": params, "sd_ln": population_sd_ln(result),
                                                 "correlation": population_correlation(result)})
    atomic_write_json(out / "report.json", s)
    atomic_write_text(out / "report.md", report_markdown(s))
    if ship:
        atomic_write_text(PARAMETER_SET_DIR / f"{cfg.name}.toml", ship_set_toml(result, cfg, s))
        log(f"calibrate: shipped parameter set {cfg.name} ({PARAMETER_SET_DIR / (cfg.name + '.toml')})")
    finish_outputs(out, provenance(cfg.raw, cfg.seed))
    return s
