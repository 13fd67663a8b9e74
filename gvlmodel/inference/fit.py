"""Fit H0, H1, H2 to the Hess 2005 data by ABC-SMC (pyabc) and compare them.

Why ABC-SMC with pyabc: the data are a handful of counts and medians from a
44-patient trial whose outcome depends on discrete visits, PCR noise near the
detection limit and an optional stop decision; their likelihood has no closed
form, but whole virtual trials of the real size are cheap (about 6 ms each,
:mod:`gvlmodel.clinical.trial`).  pyabc samples such simulation-only models, adapts the
acceptance threshold, stores every generation in SQLite (which is our
checkpoint) and does model selection in the same run (ABC model
probabilities).  emcee with a synthetic likelihood would need a Gaussian
approximation of counts of 4 out of 10; ABC needs none.

Distance: for every statistic, ``(simulated - observed) / scale`` with the
binomial standard deviation of the observed proportion at its real group size
(``sqrt(p (1 - p) / n)``: 44 enrolled, 10 stopped) or a stated scale for
medians (days); undefined simulated statistics (no patient in a group) count
``UNDEFINED_PENALTY`` scales.  The distance is the root of the weighted sum of
squares.  Scales and weights are in the fit config.

Stages, each resumable (``gvlmodel fit`` re-run on the same folder continues):
per-variant fits, the joint model-selection run, posterior predictive checks,
mechanistic answers, identifiability, shipped parameter sets and the report.
Generation ``t`` of every ABC run seeds NumPy's global generator (which pyabc
uses) with ``SeedSequence(seed, spawn_key=(run, t))`` just before it starts,
so an interrupted fit resumed from its database gives the same result as an
uninterrupted one.

Batches: pyabc draws and accepts the proposals; :class:`BatchSampler` draws a
batch of them (with their trial seeds, from the same stream in the same order
as pyabc's SingleCoreSampler with :class:`TrialModel`), simulates all their
virtual trials together (:func:`gvlmodel.clinical.trial.simulate_trials`: one compiled
cohort run per batch, here or as tasks on a Dask cluster) and then accepts or
rejects them in order.  The populations equal the one-trial-at-a-time ones bit
for bit (``[fit] batched = false`` keeps that sampler), so batch size, thread
count and cluster change only the wall time.  Why pyabc stays: its ABC-SMC
(adaptive thresholds, model selection, SQLite history as checkpoint) is what
the fit needs; the time went into simulating one trial per call, which a
sampler can change without touching the algorithm.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import numpy as np

from ..core.version import __version__
from ..core import limits
from ..core.errors import InputError, boolean, check_tables, output_folder, read_toml, real
from ..core.errors import integer as _int
from ..model.parameters import Variant, parse_variant
from ..core.provenance import (atomic_write_json, atomic_write_text, begin_outputs, entry_in_the_way, finish_outputs,
                               lock_outputs, package_digest, provenance_of)
from ..model.simulate import MAX_DAYS
from ..clinical.trial import (DIAGNOSTICS, STATISTICS, UNDEFINED, FitParameter, TrialDesign, TrialSpec,
                              check_ordered_factors, check_spread_factors, diagnostics, fit_parameter, model_inputs,
                              observed, outcome_groups, run_trial, simulate_trials, statistics)

UNDEFINED_PENALTY = 3.0
STAT_LABELS = {
    "frac_cmr": "reached CMR (of 44)",
    "frac_stopped": "stopped imatinib (of 44)",
    "frac_durable": "durable CMR after stop (of stopped)",
    "median_im_days_durable": "median IM days before stop, durable",
    "median_im_days_lost": "median IM days before stop, lost CMR",
    "nontx_frac_relapse": "non-transplanted: relapse within 90 days of stop",
}
CONFIG_TABLES = {
    "fit": {"name", "data", "seed", "variants", "population_size", "generations", "comparison_population_size",
            "comparison_generations", "predictive_draws", "answer_draws", "answer_cohort_size", "threads",
            "min_acceptance_rate", "batched", "batch_size"},
    # every TrialDesign field but the solver tolerances (the fit keeps the design's defaults)
    "trial": {f.name for f in fields(TrialDesign)} - {"rtol", "atol"},
    "fitted": {v.value for v in Variant},
    "distance": {"scales", "weights", "screen_trials"},
    "prior": {"shared", "transfer_sd_log10", "transfer_sd_ln"},
    "answers": {"stop_days", "tfr_window_days"},
    "quick": {"population_size", "generations", "comparison_population_size", "comparison_generations",
              "predictive_draws", "answer_draws", "answer_cohort_size", "screen_trials"},
}


# --------------------------------------------------------------------------
# configuration
# --------------------------------------------------------------------------
@dataclass(frozen=True)
class FitConfig:
    name: str
    seed: int
    variants: tuple[str, ...]
    fitted: dict[str, tuple[FitParameter, ...]]
    design: TrialDesign
    observed: dict[str, float]
    scales: dict[str, float]
    weights: dict[str, float]
    population_size: int = 300
    generations: int = 8
    comparison_population_size: int = 600
    comparison_generations: int = 8
    predictive_draws: int = 200
    answer_draws: int = 40
    answer_cohort_size: int = 440
    #: a generation whose acceptance rate would fall below this is abandoned and the run ends there
    #: (for a noisy simulator the threshold reaches the noise floor; more generations buy little)
    min_acceptance_rate: float = 0.03
    stop_days: tuple[float, ...] = (90.0, 180.0, 270.0, 365.0, 540.0, 730.0, 1095.0)
    tfr_window_days: float = 730.0
    threads: int | None = None
    #: simulate proposals in batches (:class:`BatchSampler`); ``False``: one trial at a time (pyabc's
    #: SingleCoreSampler).  Both give the same particles, so neither key enters the digest.
    batched: bool = True
    #: most proposals simulated together in one batch
    batch_size: int = 512
    #: informative priors of the shared biology: sampler key -> (centre, SD) in the sampler's space,
    #: a normal truncated to the prior bounds (the rest: uniform); see :func:`shared_priors`
    shared_prior: dict = field(default_factory=dict)
    #: prior-predictive trials per variant that screen the statistics (:func:`screen_statistics`)
    screen_trials: int = 200
    raw: dict = field(default_factory=dict)

    def _key(self, key: str) -> str:
        """Where size ``key`` in use comes from: ``[quick] key`` when the quick table set it, else ``[fit] key``."""
        quick = self.raw.get("quick") and key in self.raw.get("config", {}).get("quick", {})
        return f"[{'quick' if quick else 'fit'}] {key}"

    def memory_estimate(self) -> dict[str, float]:
        """Rough peak memory (bytes) of the fit's parts: the ABC populations pyabc holds, one virtual trial,
        the answer cohorts."""
        hess, comp = self.design.protocols(1.0)
        trial = (self.design.size * limits.engine_bytes_per_patient(hess.n_visits)
                 + self.design.comparator_size * limits.engine_bytes_per_patient(comp.n_visits))
        pop = max(self.population_size, self.comparison_population_size) * PARTICLE_BYTES
        answers = self.answer_cohort_size * limits.engine_bytes_per_patient(hess.n_visits)
        draws = (self.predictive_draws + self.answer_draws) * 2000.0
        return {"ABC population": pop, "virtual trial": trial, "answer cohort": answers, "draws": draws}

    def simulation_estimate(self) -> tuple[int, float]:
        """``(patient-runs, seconds)``: a lower bound on the ABC work (every generation simulates at least
        one population) and its rough engine time."""
        per_trial = self.design.size + self.design.comparator_size
        trials = (len(self.variants) * self.population_size * self.generations
                  + (self.comparison_population_size * self.comparison_generations if len(self.variants) > 1 else 0))
        runs = trials * per_trial
        return runs, limits.patients_time(runs, self.threads)

    def check_resources(self, available: float | None = None) -> None:
        """Refuse a fit whose :meth:`memory_estimate` exceeds what this machine has (exit 2, before any write).
        The ``[quick]`` sizes are checked too, whichever run this is (as their values are validated)."""
        if not self.raw.get("quick") and self.raw.get("config", {}).get("quick"):
            parse_config(self.raw["config"], quick=True).check_resources(available)
        pop_key = ("population_size" if self.population_size >= self.comparison_population_size
                   else "comparison_population_size")
        limits.check_memory(self.memory_estimate(),
                            {"ABC population": self._key(pop_key),
                             "virtual trial": "[trial] size or comparator_size",
                             "answer cohort": self._key("answer_cohort_size"),
                             "draws": f"{self._key('predictive_draws')} or {self._key('answer_draws')}"},
                            available, what="this fit")

    @property
    def digest(self) -> str:
        """Hash of the whole config and the quick switch: a resumed fit must have the same one.

        The sampler settings ``batched`` and ``batch_size`` are left out: the
        fit's result does not depend on them (tests/test_fit.py).
        """
        raw = json.loads(json.dumps(self.raw, default=str))
        for key in SAMPLER_KEYS:
            raw.get("config", {}).get("fit", {}).pop(key, None)
        return hashlib.sha256(json.dumps(raw, sort_keys=True, default=str).encode()).hexdigest()[:16]


def base_set_digest(name: str) -> str:
    """Hash of a parameter set's values and the package version: a resumed fit must see the same."""
    from ..model.parameters import parameter_set

    text = json.dumps({"version": __version__, "parameters": parameter_set(name)}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def default_scales(data: dict) -> dict[str, float]:
    """Binomial SD of each observed proportion at its group size; 60 days for medians of 4-6 patients."""
    it = data["items"]

    def binom(item):
        p = it[item]["k"] / it[item]["n"]
        return math.sqrt(p * (1 - p) / it[item]["n"])

    nt = it["nontransplanted_relapse_days"]
    p_nt = min(nt["fraction"], 1 - 0.5 / nt["n_assumed"])  # a fraction of 1 has no binomial SD: half a patient
    return {"frac_cmr": binom("reached_cmr"), "frac_stopped": binom("stopped"),
            "frac_durable": binom("durable_cmr_after_stop"), "median_im_days_durable": 60.0,
            "median_im_days_lost": 60.0, "nontx_frac_relapse": math.sqrt(p_nt * (1 - p_nt) / nt["n_assumed"])}


SAMPLER_KEYS = ("batched", "batch_size")
SIZE_KEYS = ("population_size", "generations", "comparison_population_size", "comparison_generations",
             "predictive_draws", "answer_draws", "answer_cohort_size")


#: each run size's validator (gvlmodel.core.limits): generations and cohort sizes have hard caps, the
#: population sizes and draws are bounded by the memory check (FitConfig.check_resources)
SIZE_CHECKS = {"population_size": lambda f, v: _int(f, v, 1), "generations": limits.generations,
               "comparison_population_size": lambda f, v: _int(f, v, 1),
               "comparison_generations": limits.generations,
               "predictive_draws": lambda f, v: _int(f, v, 1), "answer_draws": lambda f, v: _int(f, v, 1),
               "answer_cohort_size": limits.cohort_size}
#: memory of one ABC particle as pyabc holds it (parameters, statistics, weights; the current and the
#: previous population and their data frames), bytes
PARTICLE_BYTES = 6000.0


def _sizes(table: dict, where: str) -> dict[str, int]:
    """The run sizes given in ``[fit]`` or ``[quick]`` (each an integer >= 1), named by their table."""
    return {key: SIZE_CHECKS[key](f"[{where}] {key}", table[key]) for key in SIZE_KEYS if key in table}


def parse_config(cfg: dict, *, quick: bool = False, source: str = "config") -> FitConfig:
    """Validate a fit config (see ``experiments/fit_hess2005.toml``); ``quick`` applies its ``[quick]`` table.

    Every table is validated (the full-size ``[fit]`` values and the ``[quick]``
    ones alike, whichever applies), so a bad config fails here, before
    :func:`run_fit` creates or writes anything.
    """
    from ..clinical.calibration import available_calibrations, load_calibration

    if not isinstance(cfg, dict):
        raise InputError(f"{source}: expected a table of tables ([fit], [trial], ...)")
    check_tables(cfg, CONFIG_TABLES, source)
    f = cfg.get("fit", {})
    seed, name = limits.run_identity(f, "fit", "fit")
    data_name, data_sets = f.get("data", "hess2005"), available_calibrations()
    if not isinstance(data_name, str) or data_name not in data_sets:
        raise InputError(f"[fit] data: unknown data set {data_name!r}; allowed: {', '.join(data_sets)}")
    data = load_calibration(data_name)

    # run sizes: the full-size values and the [quick] ones are both validated, under their own table
    kw = _sizes(f, "fit")
    quick_sizes = _sizes(cfg.get("quick", {}), "quick")
    if quick:
        kw.update(quick_sizes)
    if "min_acceptance_rate" in f:
        kw["min_acceptance_rate"] = real("[fit] min_acceptance_rate", f["min_acceptance_rate"], 0.0, 1.0,
                                         lo_open=True)
    if "batched" in f:
        kw["batched"] = boolean("[fit] batched", f["batched"])
    if "batch_size" in f:
        kw["batch_size"] = _int("[fit] batch_size", f["batch_size"], 1, 100_000)
    if "threads" in f:
        kw["threads"] = limits.threads("[fit] threads", f["threads"])

    allowed_variants = [v.value for v in Variant]
    variants = f.get("variants", allowed_variants)
    if not isinstance(variants, list) or not variants:
        raise InputError(f"[fit] variants: expected a non-empty list, allowed values: {', '.join(allowed_variants)}")
    for v in variants:
        if not isinstance(v, str) or v not in allowed_variants:
            raise InputError(f"[fit] variants: unknown variant {v!r}; allowed: {', '.join(allowed_variants)}")
    if len(set(variants)) != len(variants):
        raise InputError(f"[fit] variants: each variant at most once, got {variants}; "
                         f"allowed: {', '.join(allowed_variants)}")
    variants = tuple(parse_variant(v).value for v in variants)

    fitted = {}
    for v, names in cfg.get("fitted", {}).items():  # every list given, used by this fit or not
        if not isinstance(names, list) or not names:
            raise InputError(f"[fitted] {v}: expected a non-empty list of fitted quantities "
                             "(parameter names, sd_<name>, stop_uptake)")
        try:
            fps = tuple(fit_parameter(n) for n in names)
        except InputError as exc:
            raise InputError(f"[fitted] {v}: {exc}") from None
        if len({p.key for p in fps}) != len(fps):
            raise InputError(f"[fitted] {v}: duplicate names")
        fitted[v] = fps
    for v in variants:
        if v not in fitted:
            raise InputError(f"[fitted] {v}: expected a non-empty list of fitted quantities "
                             "(parameter names, sd_<name>, stop_uptake)")
    fitted = {v: fitted[v] for v in variants}

    design = TrialDesign.from_table(cfg.get("trial", {}), "[trial]")
    design.protocols(1.0)
    for v, fps in fitted.items():
        check_spread_factors(fps, design.base_set, f"[fitted] {v}")
        check_ordered_factors(fps, design.base_set, f"[fitted] {v}", hint="their priors are the table's bounds, "
                              "which overlap: fit only one of the two")

    obs = observed(data)
    scales = default_scales(data)
    weights = {k: 1.0 for k in STATISTICS}
    dist = cfg.get("distance", {})
    for key, into, lo_open in (("scales", scales, True), ("weights", weights, False)):
        table = dist.get(key, {})
        if not isinstance(table, dict):
            raise InputError(f"[distance] {key}: expected a table of statistic = number, got {table!r}; "
                             f"statistics: {list(STATISTICS)}")
        bad = set(table) - set(STATISTICS)
        if bad:
            raise InputError(f"[distance] {key}: unknown statistic(s) {sorted(bad)}; allowed: {list(STATISTICS)}")
        into.update({k: real(f"[distance] {key}.{k}", v, 0.0, lo_open=lo_open) for k, v in table.items()})
    if not any(weights[k] > 0 for k in STATISTICS if obs[k] != UNDEFINED):
        raise InputError("[distance] weights: at least one observed statistic needs a weight > 0")

    if "screen_trials" in dist:
        kw["screen_trials"] = _int("[distance] screen_trials", dist["screen_trials"], 0, 100_000)
    if quick and "screen_trials" in cfg.get("quick", {}):
        kw["screen_trials"] = _int("[quick] screen_trials", cfg["quick"]["screen_trials"], 0, 100_000)
    shared = shared_priors(cfg.get("prior", {}), fitted, design.base_set)

    ans = cfg.get("answers", {})
    stop_days = ans.get("stop_days", list(FitConfig.stop_days))
    if not isinstance(stop_days, list) or not stop_days:
        raise InputError(f"[answers] stop_days: expected a non-empty list of course lengths in days (> 0), "
                         f"got {stop_days!r}")
    stop_days = tuple(real("[answers] stop_days", d, 0.0, MAX_DAYS, lo_open=True) for d in stop_days)
    if len(set(stop_days)) != len(stop_days):
        raise InputError(f"[answers] stop_days: course lengths must be distinct, got {list(stop_days)}")
    tfr_window = real("[answers] tfr_window_days", ans.get("tfr_window_days", FitConfig.tfr_window_days), 0.0,
                      MAX_DAYS, lo_open=True)
    if max(stop_days) + tfr_window > MAX_DAYS:
        raise InputError(f"[answers] tfr_window_days: the longest course plus tfr_window_days must be <= "
                         f"{MAX_DAYS:g} days, got {max(stop_days) + tfr_window:g}")
    if min(stop_days) + tfr_window < design.visit_interval_days:
        raise InputError(f"[answers] stop_days: the shortest course plus tfr_window_days must cover one visit "
                         f"interval ([trial] visit_interval_days = {design.visit_interval_days:g}), "
                         f"got {min(stop_days) + tfr_window:g}")

    return FitConfig(name=name, seed=seed, variants=variants, fitted=fitted, design=design, observed=obs,
                     scales=scales, weights=weights, stop_days=stop_days, tfr_window_days=tfr_window,
                     shared_prior=shared, raw={"config": cfg, "quick": quick}, **kw)


def shared_priors(table: dict, fitted: dict, base_set: str) -> dict[str, tuple[float, float]]:
    """The ``[prior]`` table: which fitted quantities are shared biology, informed by the base set.

    The patient-level calibration (``gvlmodel calibrate``, the set ``patients``)
    estimated the biology every CML patient shares (imatinib sensitivity, exit
    from quiescence, their spreads) in non-transplanted patients; the immune
    parameters the non-transplanted patients share (``z_kill``, ``z_half``)
    were held at their literature values there while the STIM1 check held.  A
    quantity named in ``shared`` gets a normal prior centred on the base set's
    value (log10 for log rows; a spread ``sd_<name>`` on the set's spread),
    with SD ``transfer_sd_log10`` (medians) or ``transfer_sd_ln`` (spreads),
    truncated to the quantity's bounds: the uncertainty of carrying a
    first-line, chronic-phase estimate to relapse after a transplant.  The
    calibrated medians' own standard errors (about 0.05 log10 for 89 patients)
    are negligible beside it.  Everything else (``stop_uptake``, the resistant
    subclone, the donor effectors) is transplant-specific and keeps a uniform
    prior.  Returns ``{sampler key: (centre, sd)}``.
    """
    from ..model.parameters import PARAMETER_TABLE, parameter_set
    from ..clinical.trial import base_spreads

    if not isinstance(table, dict):
        raise InputError(f"[prior]: expected a table (shared, transfer_sd_log10, transfer_sd_ln), got {table!r}")
    names = table.get("shared", [])
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise InputError(f"[prior] shared: expected a list of fitted quantity names, got {names!r}")
    sd_med = real("[prior] transfer_sd_log10", table.get("transfer_sd_log10", 0.3), 0.0, 5.0, lo_open=True)
    sd_sd = real("[prior] transfer_sd_ln", table.get("transfer_sd_ln", 0.3), 0.0, 5.0, lo_open=True)
    by_name = {p.key if p.kind != "median" else p.target: p for fps in fitted.values() for p in fps}
    base, spreads = parameter_set(base_set), base_spreads(base_set)
    out = {}
    for n in names:
        fp = by_name.get(n)
        if fp is None:
            raise InputError(f"[prior] shared: {n!r} is not fitted by any variant; allowed: "
                             + ", ".join(sorted(by_name)))
        if fp.kind == "stop_uptake":
            raise InputError("[prior] shared: stop_uptake is part of the Hess protocol, not shared biology; "
                             "allowed: " + ", ".join(sorted(k for k in by_name if k != "stop_uptake")))
        if fp.kind == "sd":
            centre, sd = float(spreads.get(fp.target, 0.0)), sd_sd
        elif fp.log:
            centre, sd = math.log10(base[fp.target]), sd_med
        else:
            raise InputError(f"[prior] shared: {n!r} is a linear-scale parameter; shared priors are for log-scale "
                             "rows and sd_<name> spreads")
        lo, hi = fp.prior_bounds
        if not lo <= centre <= hi:
            raise InputError(f"[prior] shared: {n!r}: the base set's value {centre:g} lies outside the prior "
                             f"bounds [{lo:g}, {hi:g}] ({PARAMETER_TABLE[fp.target].name})")
        out[fp.key] = (centre, sd)
    return out


def load_config(path, *, quick: bool = False) -> FitConfig:
    return parse_config(read_toml(path, "fit config"), quick=quick, source=str(path))


# --------------------------------------------------------------------------
# distance and models for pyabc
# --------------------------------------------------------------------------
def distance(sim: dict, obs: dict, scales: dict, weights: dict) -> float:
    """Weighted Euclidean distance in units of each statistic's scale (see the module docstring)."""
    total = 0.0
    for k in STATISTICS:
        w = weights[k]
        if w == 0.0:
            continue
        if obs[k] == UNDEFINED:
            continue
        d = UNDEFINED_PENALTY if sim[k] == UNDEFINED else (sim[k] - obs[k]) / scales[k]
        total += w * d * d
    return math.sqrt(total)


class TrialModel:
    """A pyabc model: one virtual trial per call, its seed drawn from NumPy's (seeded) global generator."""

    def __init__(self, variant: str, fitted: tuple[FitParameter, ...], design: TrialDesign, threads=None):
        self.variant, self.fitted, self.design, self.threads = variant, fitted, design, threads
        self.__name__ = variant

    def __call__(self, par) -> dict:
        seed = int(np.random.randint(0, 2**31 - 1))
        values = {p.key: float(par[p.key]) for p in self.fitted}
        main, comp = run_trial(values, self.fitted, self.variant, self.design, seed, threads=self.threads)
        return statistics(main, comp, self.design)


def _uniform_rv_class():
    import pyabc

    class UniformRV(pyabc.RVBase):
        """``pyabc.RV("uniform", loc, scale)`` without SciPy's per-call overhead (the prior is evaluated for
        every proposal): the same draws from NumPy's global generator and the same densities, bit for bit
        (tests/test_fit.py)."""

        def __init__(self, loc: float, scale: float):
            self.loc, self.scale = float(loc), float(scale)

        def copy(self):
            return UniformRV(self.loc, self.scale)

        def rvs(self, *args, **kwargs):
            return np.float64(np.random.uniform(0.0, 1.0) * self.scale + self.loc)  # as scipy.stats.uniform.rvs

        def pdf(self, x, *args, **kwargs):
            u = (x - self.loc) / self.scale
            return 1.0 / self.scale if 0.0 <= u <= 1.0 else (math.nan if u != u else 0.0)

        def pmf(self, x, *args, **kwargs):
            return 0.0

        def cdf(self, x, *args, **kwargs):
            u = (x - self.loc) / self.scale
            return min(1.0, max(0.0, u)) if u == u else math.nan

        def __repr__(self):
            return f"<UniformRV loc={self.loc}, scale={self.scale}>"

    return UniformRV


def _truncnorm_rv_class():
    import pyabc

    class TruncNormalRV(pyabc.RVBase):
        """A normal (``mu``, ``sd``) truncated to [``lo``, ``hi``], drawn from NumPy's global generator by
        rejection (deterministic for a seeded generator; the acceptance is the prior mass inside the
        bounds, about 1 here)."""

        def __init__(self, mu: float, sd: float, lo: float, hi: float):
            self.mu, self.sd, self.lo, self.hi = float(mu), float(sd), float(lo), float(hi)
            cdf = lambda x: 0.5 * (1.0 + math.erf((x - self.mu) / (self.sd * math.sqrt(2.0))))  # noqa: E731
            self.mass = cdf(self.hi) - cdf(self.lo)

        def copy(self):
            return TruncNormalRV(self.mu, self.sd, self.lo, self.hi)

        def rvs(self, *args, **kwargs):
            while True:
                x = np.random.normal(self.mu, self.sd)
                if self.lo <= x <= self.hi:
                    return np.float64(x)

        def pdf(self, x, *args, **kwargs):
            if x != x:
                return math.nan
            if not self.lo <= x <= self.hi:
                return 0.0
            z = (x - self.mu) / self.sd
            return math.exp(-0.5 * z * z) / (self.sd * math.sqrt(2.0 * math.pi) * self.mass)

        def pmf(self, x, *args, **kwargs):
            return 0.0

        def cdf(self, x, *args, **kwargs):
            x = min(max(x, self.lo), self.hi)
            return (0.5 * (1.0 + math.erf((x - self.mu) / (self.sd * math.sqrt(2.0))))
                    - 0.5 * (1.0 + math.erf((self.lo - self.mu) / (self.sd * math.sqrt(2.0))))) / self.mass

        def __repr__(self):
            return f"<TruncNormalRV mu={self.mu}, sd={self.sd}, [{self.lo}, {self.hi}]>"

    return TruncNormalRV


def prior(fitted: tuple[FitParameter, ...], shared: dict | None = None):
    """The priors in the sampler's space (a pyabc Distribution): uniform over each quantity's bounds, or
    for the ``shared`` ones (``{key: (centre, sd)}``, :func:`shared_priors`) a normal truncated to them."""
    import pyabc

    uniform, truncnorm = _uniform_rv_class(), _truncnorm_rv_class()
    shared = shared or {}
    rvs = {}
    for p in fitted:
        lo, hi = p.prior_bounds
        rvs[p.key] = truncnorm(*shared[p.key], lo, hi) if p.key in shared else uniform(lo, hi - lo)
    return pyabc.Distribution(**rvs)


def _quiet_pyabc():
    for name in ("ABC", "Sampler", "Epsilon", "History", "Distance", "Acceptor", "Transitions", "Adaptation",
                 "ABC.Sampler", "ABC.History", "ABC.Epsilon", "ABC.Distance", "ABC.Transition"):
        logging.getLogger(name).setLevel(logging.WARNING)


# --------------------------------------------------------------------------
# batched sampling: many proposals, one compiled cohort run
# --------------------------------------------------------------------------
class TrialBatch:
    """Statistics of many proposals at once: ``(rows, engine_s)`` for ``[(model index, values, seed), ...]``.

    Picklable and self-contained (a Dask worker receives it once per ABC run);
    a row depends only on its own proposal and seed
    (:func:`gvlmodel.clinical.trial.simulate_trials`), so how proposals are grouped
    into batches and tasks changes nothing.
    """

    def __init__(self, variants, fitted: dict, design: TrialDesign, threads=None):
        from ..model.parameters import parameter_set

        self.variants, self.fitted, self.design, self.threads = list(variants), dict(fitted), design, threads
        self.base = parameter_set(design.base_set)  # read once, not per trial

    def __call__(self, proposals) -> tuple[list[dict], float]:
        trials = [TrialSpec(self.variants[m], self.fitted[self.variants[m]], values, seed)
                  for m, values, seed in proposals]
        return simulate_trials(trials, self.design, threads=self.threads, base=self.base)


def _call_batch(batch, proposals):
    return batch(proposals)


def _precomputed_model(name: str):
    """A pyabc model whose next ``sample`` returns the statistics the sampler computed for that proposal."""
    import pyabc

    class Precomputed(pyabc.Model):
        def __init__(self):
            super().__init__(name)
            self.pending = None

        def sample(self, pars):
            out, self.pending = self.pending, None
            if out is None:
                raise RuntimeError(f"model {name}: no simulated result for this proposal (use BatchSampler)")
            return out

    return Precomputed()


def _batch_sampler_class():
    import functools

    import pyabc
    from pyabc.inference_util.inference_util import (_simulate_one, _simulate_one_from_prior, evaluate_proposal,
                                                     generate_valid_proposal)

    class BatchSampler(pyabc.sampler.Sampler):
        """pyabc's ABC-SMC with the proposals of a generation simulated in batches.

        pyabc hands a sampler ``simulate_one`` (propose, simulate, accept).  This
        sampler runs its two halves with pyabc's own functions: it draws a batch
        of proposals (``generate_valid_proposal``, or the prior for the
        calibration sample), each followed by its trial seed from NumPy's global
        generator exactly as :class:`TrialModel` draws it, simulates the batch in
        one call of ``batch`` (locally, or split into tasks on a Dask client),
        then accepts or rejects the proposals in order (``evaluate_proposal``)
        until ``n`` are accepted.  Proposals and seeds come from the same
        stream in the same order as with pyabc's SingleCoreSampler, and the
        count of evaluations stops at the ``n``-th acceptance as there, so the
        populations are the same whatever the batch size, thread count or
        cluster; simulations of a batch past the ``n``-th acceptance are
        discarded (counted in ``n_discarded``).
        """

        def __init__(self, batch: TrialBatch, max_batch: int, client=None, batch_future=None, rate_guess=0.5):
            super().__init__()
            self.batch, self.max_batch, self.client, self.batch_future = batch, max_batch, client, batch_future
            self.rate_guess = rate_guess
            self.n_simulated = self.n_discarded = self.n_failed_trials = self.n_failed_patients = 0
            self.engine_s = self.simulate_s = 0.0

        def _simulate(self, proposals) -> list[dict]:
            t0 = time.perf_counter()
            args = [(m, {k: float(v) for k, v in theta.items()}, seed) for m, theta, seed in proposals]
            if self.client is None:
                rows, engine_s = self.batch(args)
            else:
                n_tasks = max(1, 2 * len(self.client.nthreads()))
                size = -(-len(args) // n_tasks)
                futures = [self.client.submit(_call_batch, self.batch_future, args[i:i + size], pure=False)
                           for i in range(0, len(args), size)]
                rows, engine_s = [], 0.0
                for fut in futures:  # in submission order: the rows stay in proposal order
                    r, e = fut.result()
                    rows += r
                    engine_s += e
            if len(rows) != len(proposals):  # never drop a proposal silently
                raise RuntimeError(f"batch of {len(proposals)} proposals returned {len(rows)} results")
            self.engine_s += engine_s
            self.simulate_s += time.perf_counter() - t0
            self.n_simulated += len(rows)
            failed = [r["n_solver_failures"] for r in rows if r["n_solver_failures"] > 0]
            self.n_failed_trials += len(failed)
            self.n_failed_patients += int(sum(failed))
            return rows

        def sample_until_n_accepted(self, n, simulate_one, t, *, max_eval=np.inf, all_accepted=False,
                                    ana_vars=None):
            known = (_simulate_one, _simulate_one_from_prior)
            if not isinstance(simulate_one, functools.partial) or simulate_one.func not in known:
                raise RuntimeError("BatchSampler needs pyabc's simulate_one (a partial of _simulate_one or "
                                   f"_simulate_one_from_prior, as in pyabc 0.13); got {simulate_one!r}")
            kw = simulate_one.keywords
            from_prior = simulate_one.func is _simulate_one_from_prior
            if not from_prior and not kw["evaluate"]:
                raise RuntimeError("BatchSampler does not do look-ahead sampling (evaluate=False)")
            models = kw["models"]
            sample = self._create_empty_sample()
            n_eval = n_acc = 0
            while n_acc < n:
                need = n - n_acc
                if from_prior or all_accepted:
                    size = need
                else:  # enough proposals for the remaining acceptances at the rate seen so far (+10 %)
                    rate = n_acc / n_eval if n_acc else self.rate_guess
                    size = math.ceil(1.1 * need / max(rate, 0.01))
                size = max(1, min(size, self.max_batch))
                proposals = []
                for _ in range(size):
                    if from_prior:
                        m = int(kw["model_prior"].rvs())
                        theta = kw["parameter_priors"][m].rvs()
                    else:
                        m, theta = generate_valid_proposal(
                            t=kw["t"], m=kw["m"], p=kw["p"], model_prior=kw["model_prior"],
                            parameter_priors=kw["parameter_priors"],
                            model_perturbation_kernel=kw["model_perturbation_kernel"], transitions=kw["transitions"])
                    proposals.append((m, theta, int(np.random.randint(0, 2**31 - 1))))  # as TrialModel draws it
                rows = self._simulate(proposals)
                for k, ((m, theta, _), row) in enumerate(zip(proposals, rows)):
                    models[m].pending = row
                    if from_prior:
                        result = models[m].summary_statistics(0, theta, kw["summary_statistics"])
                        particle = pyabc.population.Particle(
                            m=m, parameter=theta, weight=1.0, sum_stat=result.sum_stat, distance=np.inf,
                            accepted=True, proposal_id=0, preliminary=False)
                    else:
                        particle = evaluate_proposal(
                            m, theta, t=kw["t"], models=models, summary_statistics=kw["summary_statistics"],
                            distance_function=kw["distance_function"], eps=kw["eps"], acceptor=kw["acceptor"],
                            x_0=kw["x_0"], weight_function=kw["weight_function"], proposal_id=kw["proposal_id"])
                    sample.append(particle)
                    n_eval += 1
                    n_acc += bool(particle.accepted)
                    if n_acc == n:
                        self.n_discarded += len(proposals) - k - 1
                        break
            self.nr_evaluations_ = n_eval
            return sample

    return BatchSampler


def run_abc(db: Path, variants: list[str], cfg: FitConfig, population_size: int, generations: int, run_index: int,
            log=print, scheduler=None, stats: dict | None = None, progress: bool = False):
    """Run (or resume) ABC-SMC over ``variants`` into SQLite ``db``; one generation per seeded call
    (``progress``: a bar over the generations).

    ``cfg.batched``: proposals simulated in batches (:class:`BatchSampler`,
    locally or on the Dask ``scheduler``, a ``distributed.Client``); otherwise
    one trial at a time.  Both give the same populations.  ``stats`` (a dict)
    receives counts and times of the batched sampling.
    """
    import pyabc

    from ..core.progress import bar

    _quiet_pyabc()
    priors = [prior(cfg.fitted[v], cfg.shared_prior) for v in variants]
    scales, weights = cfg.scales, cfg.weights

    def dist(x, x0):
        return distance(x, x0, scales, weights)

    batch = batch_future = None
    if cfg.batched:
        batch = TrialBatch(variants, {v: cfg.fitted[v] for v in variants}, cfg.design, cfg.threads)
        models = [_precomputed_model(v) for v in variants]
        sampler_class = _batch_sampler_class()
        if scheduler is not None:
            # hash=False: a fresh key per run (see gvlmodel.analysis.sensitivity.evaluate)
            batch_future = scheduler.scatter(batch, broadcast=True, hash=False)
    else:
        models = [TrialModel(v, cfg.fitted[v], cfg.design, cfg.threads) for v in variants]
    stats = {} if stats is None else stats
    for key in ("simulated", "discarded", "failed_trials", "failed_patients"):
        stats.setdefault(key, 0)
    stats.setdefault("engine_s", 0.0)
    stats.setdefault("simulate_s", 0.0)

    url = f"sqlite:///{db}"
    rate = 0.5
    for t in bar(range(generations), enabled=progress, desc=f"ABC {'/'.join(variants)}", unit="generation"):
        if cfg.batched:
            sampler = sampler_class(batch, cfg.batch_size, scheduler, batch_future, rate_guess=rate)
        else:
            sampler = pyabc.sampler.SingleCoreSampler(check_max_eval=False)
        abc = pyabc.ABCSMC(models, priors, dist, population_size=population_size, sampler=sampler,
                           eps=pyabc.QuantileEpsilon(alpha=0.5))
        if db.exists():
            h = abc.load(url, 1)
        else:
            h = abc.new(url, dict(cfg.observed))
        if h.max_t < t:  # generation t still to run
            ss = np.random.SeedSequence(cfg.seed, spawn_key=(run_index, t))
            np.random.seed(ss.generate_state(4))
            t0 = time.perf_counter()
            h = abc.run(max_nr_populations=1)
            pop = h.get_all_populations().iloc[-1]
            extra = ""
            if cfg.batched:
                extra = f" ({sampler.n_simulated} simulated in batches)"
                for key, value in (("simulated", sampler.n_simulated), ("discarded", sampler.n_discarded),
                                   ("failed_trials", sampler.n_failed_trials),
                                   ("failed_patients", sampler.n_failed_patients),
                                   ("engine_s", sampler.engine_s), ("simulate_s", sampler.simulate_s)):
                    stats[key] += value
                if sampler.n_failed_trials:
                    log(f"  [{'/'.join(variants)}] generation {t + 1}: {sampler.n_failed_patients} patients' solves "
                        f"failed in {sampler.n_failed_trials} virtual trials (counted as not reaching CMR, "
                        "n_solver_failures in their statistics)")
            log(f"  [{'/'.join(variants)}] generation {t + 1}/{generations}: eps {pop['epsilon']:.3g}, "
                f"{int(pop['samples'])} simulations{extra}, {time.perf_counter() - t0:.1f} s")
        pop = h.get_all_populations().set_index("t").loc[t]
        rate = population_size / pop["samples"]
        if rate < cfg.min_acceptance_rate:  # checked the same way when resuming
            log(f"  [{'/'.join(variants)}] acceptance rate {rate:.3f} < {cfg.min_acceptance_rate:g}: "
                f"the run ends after {t + 1} generations")
            break
    if batch_future is not None:
        batch_future.release()
    return pyabc.History(url)


# --------------------------------------------------------------------------
# which statistics can carry weight: a prior-predictive screen
# --------------------------------------------------------------------------
def _prior_draws(fitted: tuple[FitParameter, ...], shared: dict, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` draws of the prior of :func:`prior` from ``rng`` (columns in ``fitted`` order)."""
    x = np.empty((n, len(fitted)))
    for j, p in enumerate(fitted):
        lo, hi = p.prior_bounds
        if p.key in shared:
            mu, sd = shared[p.key]
            col = rng.normal(mu, sd, size=4 * n + 64)
            col = col[(col >= lo) & (col <= hi)]
            while col.size < n:  # a prior with little mass inside its bounds
                more = rng.normal(mu, sd, size=4 * n)
                col = np.concatenate([col, more[(more >= lo) & (more <= hi)]])
            x[:, j] = col[:n]
        else:
            x[:, j] = rng.uniform(lo, hi, size=n)
    return x


def screen_statistics(cfg: FitConfig, trials: int | None = None, log=print) -> dict:
    """Which statistics carry weight, from ``trials`` virtual trials per variant drawn from the prior.

    A statistic keeps its configured weight unless the prior predictive of
    every variant together shows it is **constant** (the same value in every
    trial where it is defined: it cannot tell parameters apart) or
    **unreachable** (the observed value lies outside the range of all
    simulated values: e.g. a median imatinib duration below the stop rule's
    minimum; no parameter value can match it, so it would only pull the fit
    towards the nearest edge).  Those get weight 0, and the report says why.
    Deterministic for the fit's seed.
    """
    n = cfg.screen_trials if trials is None else trials
    weights = dict(cfg.weights)
    if n <= 0:
        return {"trials_per_variant": 0, "statistics": {}, "weights": weights}
    rng = np.random.default_rng(np.random.SeedSequence(cfg.seed, spawn_key=(7919,)))
    specs = []
    for v in cfg.variants:
        x = _prior_draws(cfg.fitted[v], cfg.shared_prior, n, rng)
        seeds = rng.integers(0, 2**31 - 1, size=n)
        specs += [TrialSpec(v, cfg.fitted[v], dict(zip([p.key for p in cfg.fitted[v]], map(float, row))), int(s))
                  for row, s in zip(x, seeds)]
    rows, _ = simulate_trials(specs, cfg.design, threads=cfg.threads)
    out = {}
    for k in STATISTICS:
        obs = cfg.observed[k]
        vals = np.array([r[k] for r in rows if r[k] != UNDEFINED], dtype=float)
        entry = {"observed": obs, "configured_weight": cfg.weights[k], "defined_share": vals.size / len(rows)}
        if vals.size:
            entry.update(min=float(vals.min()), max=float(vals.max()), q05=float(np.quantile(vals, 0.05)),
                         q95=float(np.quantile(vals, 0.95)), sd=float(vals.std()))
        if cfg.weights[k] == 0.0:
            status = "weight 0 in the config"
        elif obs == UNDEFINED:
            status = "not observed"
        elif vals.size == 0:
            status = "never defined in the prior predictive"
        elif vals.max() - vals.min() <= 1e-12 * max(1.0, abs(vals.max())):
            status = "constant"
        elif not vals.min() <= obs <= vals.max():
            status = "unreachable"
        else:
            status = "used"
        entry["status"] = status
        if status in ("constant", "unreachable", "never defined in the prior predictive"):
            weights[k] = 0.0
            log(f"  statistic {k}: {status} in {len(rows)} prior-predictive trials (observed {obs:g}, simulated "
                f"{entry.get('min', float('nan')):g} to {entry.get('max', float('nan')):g}): weight 0")
        entry["weight"] = weights[k]
        out[k] = entry
    if not any(w > 0 for k, w in weights.items() if cfg.observed[k] != UNDEFINED):
        reasons = ", ".join(f"{k}: {e['status']}" for k, e in out.items())
        raise InputError(f"[distance]: no observed statistic can carry weight after the prior-predictive screen "
                         f"({reasons})")
    return {"trials_per_variant": n, "statistics": out, "weights": weights}


# --------------------------------------------------------------------------
# posterior handling
# --------------------------------------------------------------------------
def posterior(history, m: int, fitted: tuple[FitParameter, ...]):
    """Final-generation particles of model ``m``: ``(array (n, k) in sampler space, weights)``."""
    df, w = history.get_distribution(m=m, t=history.max_t)
    x = df[[p.key for p in fitted]].to_numpy(dtype=float)
    return x, np.asarray(w, dtype=float) / np.sum(w)


def resample(x: np.ndarray, w: np.ndarray, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return x[rng.choice(len(w), size=n, replace=True, p=w)]


def quantile_band(vals) -> dict:
    """Median and 5-95 % range of the finite ``vals`` over posterior draws (``None`` where there are none)."""
    v = np.asarray(vals, dtype=float)
    v = v[np.isfinite(v)]
    if not v.size:
        return {"median": None, "q05": None, "q95": None, "n": 0}
    return {"median": float(np.median(v)), "q05": float(np.quantile(v, 0.05)),
            "q95": float(np.quantile(v, 0.95)), "n": int(v.size)}


def weighted_quantiles(x: np.ndarray, w: np.ndarray, qs) -> np.ndarray:
    order = np.argsort(x)
    cw = np.cumsum(w[order])
    cw /= cw[-1]
    return np.array([x[order][min(np.searchsorted(cw, q), len(x) - 1)] for q in qs])


def predictive(cfg: FitConfig, variant: str, draws: np.ndarray, seed: int, progress: bool = False) -> list[dict]:
    """One virtual trial per posterior draw (rows of ``draws``), seeds from ``SeedSequence(seed)``
    (``progress``: a bar over the batches, or the trials one at a time)."""
    from ..core.progress import bar

    fitted = cfg.fitted[variant]
    seeds = np.random.SeedSequence(seed).generate_state(len(draws))
    keys = [p.key for p in fitted]
    if cfg.batched:  # the same trials, simulated together (trial.simulate_trials equals run_trial)
        trials = [TrialSpec(variant, fitted, dict(zip(keys, map(float, x))), int(seeds[j])) for j, x in enumerate(draws)]
        rows = []
        for lo in bar(range(0, len(trials), cfg.batch_size), enabled=progress, desc=f"predictive checks {variant}",
                      unit="batch"):
            out, _ = simulate_trials(trials[lo:lo + cfg.batch_size], cfg.design, threads=cfg.threads,
                                     diagnostics_too=True)
            rows += [{"variant": variant, "draw": lo + j, **st, "diagnostics": dg} for j, (st, dg) in enumerate(out)]
        return rows
    rows = []
    for j, x in enumerate(bar(draws, enabled=progress, desc=f"predictive checks {variant}", unit="trial")):
        values = dict(zip([p.key for p in fitted], map(float, x)))
        main, comp = run_trial(values, fitted, variant, cfg.design, int(seeds[j]), threads=cfg.threads)
        st = statistics(main, comp, cfg.design)
        rows.append({"variant": variant, "draw": j, **st, "diagnostics": diagnostics(main, comp, cfg.design)})
    return rows


def predictive_table(rows: list[dict], obs: dict) -> dict:
    """Per statistic: observed, predictive median, 90 % interval, share defined, P(sim <= obs)."""
    out = {}
    for k in STATISTICS:
        v = np.array([r[k] for r in rows], dtype=float)
        d = v[v != UNDEFINED]
        out[k] = {"observed": obs[k], "n_draws": len(v), "defined": int(d.size),
                  "median": float(np.median(d)) if d.size else None,
                  "q05": float(np.quantile(d, 0.05)) if d.size else None,
                  "q95": float(np.quantile(d, 0.95)) if d.size else None,
                  "mean": float(d.mean()) if d.size else None,
                  "sd": float(d.std(ddof=1)) if d.size > 1 else None,
                  "p_le_observed": float(np.mean(d <= obs[k])) if d.size else None,
                  # every draw gave the same value: the statistic cannot tell parameter values apart
                  "constant": bool(d.size > 1 and np.all(d == d[0]))}
    return out


def pooled_diagnostics(rows: list[dict]) -> dict:
    """:func:`gvlmodel.clinical.trial.diagnostics` of a variant's virtual trials, pooled: counts and shares."""
    tot = {k: int(sum(r["diagnostics"][k] for r in rows)) for k in DIAGNOSTICS}

    def share(num, den):
        return tot[num] / tot[den] if tot[den] else None

    names = sorted({n for r in rows for n in r["diagnostics"]["at_bound"]})
    return {"counts": tot,
            "lost_clone_extinct_at_stop": share("n_lost_clone_extinct_at_stop", "n_lost"),
            "durable_short_follow_up": share("n_durable_short_follow_up", "n_durable"),
            "patients_at_bound": share("n_patients_at_bound", "n_patients"),
            "at_bound": {n: sum(r["diagnostics"]["at_bound"].get(n, 0) for r in rows) / tot["n_patients"]
                         for n in names},
            "nontx_cmr_by_stop": share("nontx_n_cmr_by_stop", "nontx_n_stopped"),
            # the data's median follow-up after stopping is 494 days: a check of the follow-up assumption
            "median_follow_up_after_stop_days": _median_defined(
                [r["diagnostics"].get("median_follow_up_after_stop_days", UNDEFINED) for r in rows])}


def _median_defined(values) -> float | None:
    v = [x for x in values if x != UNDEFINED]
    return float(np.median(v)) if v else None


# --------------------------------------------------------------------------
# mechanistic answers and identifiability
# --------------------------------------------------------------------------
def mechanistic_answers(cfg: FitConfig, variant: str, draws: np.ndarray, seed: int, log=print,
                        progress: bool = False) -> dict:
    """The mechanistic answers (the fit report's "answers"; docs/comparison.md) from posterior draws of ``variant``.

    * Hess protocol, a cohort of ``answer_cohort_size`` per draw: median IM
      days at stop of durable vs lost patients; share of durable remissions
      that are eradication (fewer than one LSC) versus immune control.
    * Fixed courses (stop after ``T`` days, no CMR condition): probability of
      staying PCR-negative for ``tfr_window_days`` after stopping, for
      transplanted (relapse mix) and non-transplanted (from diagnosis) patients.
    Intervals are over posterior draws (5-95 %).
    """
    from dataclasses import replace

    from ..clinical.cohort import CohortSpec, Protocol, simulate_cohort, simulate_replicates
    from ..core.progress import bar
    from ..clinical.trial import simulate_trial_cohorts

    fitted = cfg.fitted[variant]
    d = cfg.design
    seeds = np.random.SeedSequence(seed).generate_state(2 * len(draws))
    hess_rows = []
    keys = [p.key for p in fitted]
    if cfg.batched:  # every draw's cohort in one compiled run (the same cohorts as run_trial's)
        trials = [TrialSpec(variant, fitted, dict(zip(keys, map(float, x))), int(seeds[j]))
                  for j, x in enumerate(draws)]
        mains = [m for m, _ in simulate_trial_cohorts(trials, replace(d, size=cfg.answer_cohort_size,
                                                                      comparator_size=0), threads=cfg.threads)[0]]
    else:
        mains = [run_trial(dict(zip(keys, map(float, x))), fitted, variant, d, int(seeds[j]),
                           size=cfg.answer_cohort_size, comparator_size=0, threads=cfg.threads)[0]
                 for j, x in enumerate(draws)]
    for main in mains:
        c = main.columns
        g = outcome_groups(c, d)
        lost, durable = g["lost"], g["durable"]
        erad_by_stop = durable & c["eradicated"] & (c["days_to_eradication"] <= c["stop_day"] + d.follow_up_after_stop_days)
        hess_rows.append({
            "durable_fraction": float(durable.sum() / max((durable | lost).sum(), 1)),
            "median_im_days_durable": float(np.median(c["days_on_im_at_stop"][durable])) if durable.any() else np.nan,
            "median_im_days_lost": float(np.median(c["days_on_im_at_stop"][lost])) if lost.any() else np.nan,
            "eradicated_share_of_durable": float(erad_by_stop.sum() / durable.sum()) if durable.any() else np.nan,
        })
    log(f"  answers [{variant}]: Hess-protocol cohorts done ({len(draws)} draws)")

    band = quantile_band

    hess = {k: band([r[k] for r in hess_rows]) for k in hess_rows[0]}
    diff = [r["median_im_days_durable"] - r["median_im_days_lost"] for r in hess_rows]
    hess["durable_minus_lost_im_days"] = band(diff)

    curves = {}
    inputs = [model_inputs(dict(zip([p.key for p in fitted], map(float, x))), fitted, d.base_set,
                           population_bounds=d.population_bounds)[:2] for x in draws]
    for setting, transplant in (("transplanted", True), ("non_transplanted", False)):
        rows = []
        for T in bar(cfg.stop_days, enabled=progress, desc=f"answers {variant}: durable-CMR curve, {setting}",
                     unit="course"):
            proto = Protocol(escalated_dose_mg=d.escalated_dose_mg, stop={"after_days": T}, restart=False,
                             follow_up_days=T + cfg.tfr_window_days, visit_interval_days=d.visit_interval_days,
                             detection_limit=d.detection_limit, noise_sd_log=d.noise_sd_log)
            course_seeds = [int(seeds[len(draws) + j]) for j in range(len(inputs))]
            specs = [(CohortSpec(size=cfg.answer_cohort_size, seed=s, transplant=True, relapse_mix=d.relapse_mix)
                      if transplant else
                      CohortSpec(size=cfg.answer_cohort_size, seed=s, transplant=False, start="diagnosis"))
                     for s in course_seeds]
            if cfg.batched:  # all draws' cohorts of this course in one compiled run (the same cohorts)
                cols, _ = simulate_replicates(specs[0], proto, [p for p, _ in inputs], [q for _, q in inputs],
                                              course_seeds, variant=variant, rtol=d.rtol, atol=d.atol,
                                              threads=cfg.threads)
            else:
                cols = [simulate_cohort(spec, proto, params, variant=variant, population=population, rtol=d.rtol,
                                        atol=d.atol, threads=cfg.threads, progress=False).columns
                        for spec, (params, population) in zip(specs, inputs)]
            probs = []
            for c in cols:
                ok = (c["solver_status"] == 0) & c["stopped"]
                probs.append(float((ok & ~c["lost_cmr"]).sum() / max(ok.sum(), 1)))
            rows.append({"stop_after_days": T, **band(probs)})
        curves[setting] = rows
        log(f"  answers [{variant}]: durable-CMR curve, {setting}")
    return {"variant": variant, "n_draws": len(draws), "cohort_size": cfg.answer_cohort_size,
            "hess_protocol": hess, "tfr_by_im_days": curves, "tfr_window_days": cfg.tfr_window_days}


def identifiability(fitted: tuple[FitParameter, ...], x: np.ndarray, w: np.ndarray, shared: dict | None = None) -> dict:
    """Posterior 90 % width relative to the prior width, and posterior correlations, per parameter.

    ``pinned`` (ratio < 0.5), ``partly`` (0.5-0.8), ``not identified`` (> 0.8):
    a posterior equal to the prior has ratio 0.9 (the prior width of a
    ``shared`` quantity's truncated normal is its 90 % interval / 0.9, so that
    the ratio measures what the Hess data add to the calibration).
    """
    from scipy.stats import truncnorm

    shared = shared or {}
    rows = []
    for j, p in enumerate(fitted):
        lo, hi = p.prior_bounds
        q05, q50, q95 = weighted_quantiles(x[:, j], w, [0.05, 0.5, 0.95])
        if p.key in shared:
            mu, sd = shared[p.key]
            a, b = truncnorm.ppf([0.05, 0.95], (lo - mu) / sd, (hi - mu) / sd, loc=mu, scale=sd)
            width = (b - a) / 0.9
            prior_text = f"N({mu:.3g}, {sd:.2g}) on [{lo:.3g}, {hi:.3g}]"
        else:
            width = hi - lo
            prior_text = f"[{lo:.3g}, {hi:.3g}]"
        ratio = float((q95 - q05) / width)
        verdict = "pinned" if ratio < 0.5 else ("partly" if ratio < 0.8 else "not identified")
        rows.append({"key": p.key, "label": p.label, "target": p.target, "prior": [lo, hi], "prior_text": prior_text,
                     "median": float(q50), "q05": float(q05), "q95": float(q95),
                     "median_natural": p.natural(q50), "q05_natural": p.natural(q05), "q95_natural": p.natural(q95),
                     "width_ratio": ratio, "verdict": verdict, "source": p.row.source, "unit": p.row.unit})
    mean = np.average(x, axis=0, weights=w)
    xc = x - mean
    cov = (xc * w[:, None]).T @ xc
    sd = np.sqrt(np.diag(cov))
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = cov / np.outer(sd, sd)
    keys = [p.key for p in fitted]
    strong = [{"a": keys[i], "b": keys[j], "r": float(corr[i, j])} for i in range(len(keys))
              for j in range(i + 1, len(keys)) if np.isfinite(corr[i, j]) and abs(corr[i, j]) >= 0.5]
    return {"parameters": rows, "correlation": {"keys": keys, "matrix": np.nan_to_num(corr).tolist()},
            "strong_correlations": strong}


# --------------------------------------------------------------------------
# shipped parameter sets
# --------------------------------------------------------------------------
def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        return repr(float(v))
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(type(v))


def parameter_set_toml(cfg: FitConfig, variant: str, x: np.ndarray, w: np.ndarray, pred: dict, probability,
                       sample_seed: int, n_sample: int = 200) -> str:
    """A shipped parameter set: posterior medians on the table, population spreads, stop uptake,
    a posterior sample (equally weighted) and the posterior predictive summary it reproduces."""
    fitted = cfg.fitted[variant]
    med = {p.key: float(weighted_quantiles(x[:, j], w, [0.5])[0]) for j, p in enumerate(fitted)}
    params, population, uptake = model_inputs(med, fitted, cfg.design.base_set,
                                              population_bounds=cfg.design.population_bounds)
    sample = resample(x, w, n_sample, sample_seed)
    prob_text = _toml_value(float(probability)) if probability is not None else '"n/a"'
    lines = [f"# Generated by `gvlmodel fit` (config {cfg.name}, seed {cfg.seed}); do not edit by hand.",
             f"# Posterior medians of the fitted quantities of {variant}; other parameters: set "
             f"{cfg.design.base_set!r}.",
             f"variant = {_toml_value(variant)}",
             f"fit = {_toml_value(cfg.name)}",
             f"fit_config_digest = {_toml_value(cfg.digest)}",
             f"model_probability = {prob_text}"]
    if population.bounds != "clip":  # sets fitted with the default say nothing (and stay byte for byte)
        lines.append(f"population_bounds = {_toml_value(population.bounds)}")
    lines += ["", "[parameters]"]
    lines += [f"{k} = {_toml_value(v)}" for k, v in params.items()]
    lines += ["", "[population]  # natural-log SD of between-patient variation"]
    lines += [f"{k} = {_toml_value(v)}" for k, v in population.sd_log.items()]
    lines += ["", "[treatment]", f"stop_uptake = {_toml_value(uptake)}"]
    lines += ["", "[posterior]  # equally weighted posterior sample in the sampler's space (log10 for log rows)",
              f"keys = {_toml_value([p.key for p in fitted])}", f"seed = {sample_seed}", "sample = ["]
    lines += ["  " + _toml_value([float(v) for v in row]) + "," for row in sample]
    lines += ["]", "", "[predictive]  # posterior predictive summary (one virtual Hess trial per draw)",
              f"draws = {pred['frac_cmr']['n_draws']}"]
    for k in STATISTICS:
        e = pred[k]
        if e["mean"] is not None:
            lines.append(f"{k} = {{ mean = {_toml_value(e['mean'])}, sd = {_toml_value(e['sd'] or 0.0)}, "
                         f"defined = {e['defined']} }}")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------
# the whole fit, stage by stage (each stage's result is a file: the checkpoint)
# --------------------------------------------------------------------------
def _stage(out: Path, name: str, compute, key: str | None = None):
    """``compute()`` once, cached in ``out/stages/<name>.json``.

    The ABC stages (``key=None``) are resumed by name: their database and
    ``fit_state.json`` tie them to the config.  A derived stage passes the
    ``key`` of its inputs (:func:`_stage_key`) and is recomputed when the
    stored key differs, so a re-run after a code or posterior change never
    reports stale results.
    """
    path = out / "stages" / f"{name}.json"
    if path.is_file():
        try:
            cached = json.loads(path.read_text(encoding="utf-8"))
            if not (isinstance(cached, dict) and "result" in cached
                    and cached.get("check") == _result_check(cached["result"])):
                cached = None  # edited, or written by a version without the check
        except (OSError, ValueError, RecursionError):  # a damaged cache entry is recomputed (then rewritten atomically)
            cached = None
        if cached is not None and (key is None or cached.get("key") == key):
            return cached
    t0 = time.perf_counter()
    value = compute()
    read_back = json.loads(json.dumps(value, default=str))  # the result as a resumed run reads it
    value = {"result": value, "wall_s": time.perf_counter() - t0, "check": _result_check(read_back)}
    if key is not None:
        value["key"] = key
    atomic_write_json(path, value)
    return value


def _result_check(result) -> str:
    """Digest of a stage's result as read back from its file: a damaged or edited entry (e.g. a result of the
    wrong type, which the stages after it would fail on) no longer matches and is recomputed."""
    return hashlib.sha256(json.dumps(result, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _stage_key(cfg: "FitConfig", name: str, draws: np.ndarray, seed: int) -> str:
    """Digest of what a derived stage depends on: config, package source and shipped sets, draws, seed."""
    h = hashlib.sha256()
    for part in (cfg.digest, package_digest(), name, str(int(seed)), str(draws.shape)):
        h.update(part.encode() + b"\0")
    h.update(np.ascontiguousarray(draws, dtype=float).tobytes())
    return h.hexdigest()[:16]


def _model_comparison(history, variants: list[str]) -> dict:
    probs = history.get_model_probabilities()
    t = history.max_t
    final = probs.loc[t] if t in probs.index else probs.iloc[-1]
    p = {variants[m]: float(final.get(m, 0.0)) for m in range(len(variants))}
    # effective sample size of the final population (all models) -> Monte Carlo SE of each probability
    ws = []
    for m in range(len(variants)):
        if p[variants[m]] > 0:
            _, w = history.get_distribution(m=m, t=t)
            ws.append(np.asarray(w, dtype=float) / np.sum(w) * p[variants[m]])
    w_all = np.concatenate(ws)
    ess = float(1.0 / np.sum(w_all ** 2))
    n_particles = int(len(w_all))
    per_gen = {variants[m]: [float(x) for x in probs.get(m, probs.iloc[:, 0] * 0).fillna(0.0)]
               for m in range(len(variants))}
    floor = 1.0 / n_particles
    best = max(p, key=p.get)
    bf = {f"{best}:{v}": (p[best] / p[v] if p[v] > 0 else f"> {p[best] / floor:.0f} (no {v} particle left)")
          for v in variants if v != best}
    return {"probabilities": p, "se": {v: float(math.sqrt(max(p[v] * (1 - p[v]), floor * (1 - floor)) / ess))
                                       for v in variants},
            "ess": ess, "n_particles": n_particles, "generations": t + 1, "best": best, "bayes_factors": bf,
            "by_generation": per_gen,
            "epsilon_by_generation": [float(e) for e in history.get_all_populations()["epsilon"].iloc[1:]]}


def _write_tables(out: Path, cfg: FitConfig, pred_rows: list[dict], post: dict) -> None:
    """Figure-ready files: ``predictive.csv`` (one row per virtual trial) and ``posterior_<V>.csv``."""
    keys = ["variant", "draw", *STATISTICS, "n_solver_failures"]
    atomic_write_text(out / "predictive.csv", ",".join(keys) + "\n" + "".join(
        ",".join(str(r[k]) for k in keys) + "\n" for r in pred_rows))
    for v, (x, w) in post.items():
        ks = [p.key for p in cfg.fitted[v]]
        atomic_write_text(out / f"posterior_{v}.csv", ",".join(ks + ["weight"]) + "\n" + "".join(
            ",".join(repr(float(a)) for a in row) + f",{float(wt)!r}\n" for row, wt in zip(x, w)))


def _check_abc_database(path: Path) -> None:
    """Raise ``ValueError`` unless ``path`` is a readable SQLite database holding pyabc's runs (opened
    read-only)."""
    import sqlite3

    try:
        con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            found = con.execute("SELECT count(*) FROM sqlite_master WHERE name = 'abc_smc'").fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error as exc:
        raise ValueError(f"{path.name}: {exc}") from None
    if not found:
        raise ValueError(f"{path.name}: not a pyabc database (no abc_smc table)")


def _check_fit_state(state_path: Path, cfg: FitConfig, base_digest: str) -> bool:
    """Whether ``state_path`` (``fit_state.json``) exists and belongs to this config and base set; an
    unreadable one, or one of another fit, is an :class:`InputError` saying how to recover (nothing in
    the folder is changed)."""
    out = state_path.parent
    odd = entry_in_the_way(out / "stages", (".json",))  # each stage's result is a file there (_stage)
    if odd is not None:
        raise InputError(f"--out {out}: {odd} is in the way of the fit's stage results (files in {out}/stages/), so "
                         f"the fit cannot be resumed there; nothing was changed. Remove it to recompute that stage, "
                         f"or choose an empty folder")
    if not state_path.exists():
        dbs = sorted(p.name for p in out.glob("abc_*.db"))
        if dbs:  # a fit writes fit_state.json before its first database: these belong to no known config
            raise InputError(f"--out {out}: holds ABC databases ({', '.join(dbs)}) but no fit_state.json, which ties "
                             f"them to a config, so they cannot be resumed; nothing was changed. Remove them (and "
                             f"{out}/stages/) to start afresh, or choose an empty folder")
        return False
    try:
        state = json.loads(state_path.read_text(encoding="utf-8"))  # a folder in its place: IsADirectoryError
        if not isinstance(state, dict):
            raise ValueError(f"expected a JSON object, got {type(state).__name__}")
        for db in sorted(out.glob("abc_*.db")):  # the databases a resumed fit opens
            _check_abc_database(db)
    except (OSError, ValueError, RecursionError) as exc:
        raise InputError(f"--out {out}: {state_path} is unreadable or corrupt ({exc}); it ties the fit's ABC "
                         f"databases to their config, so nothing was changed. To start the fit afresh remove "
                         f"{state_path} and {out}/abc_*.db (and {out}/stages/), or choose an empty folder") from None
    if state.get("digest") != cfg.digest:
        raise InputError(f"--out {out}: holds a fit of a different config (or quick setting); "
                         "choose an empty folder")
    if state.get("base_set_digest") != base_digest:
        raise InputError(f"--out {out}: holds a fit made on other values of the base set "
                         f"{cfg.design.base_set!r} (recalibrated since, or from an older version); "
                         "choose an empty folder")
    return True


def run_fit(cfg: FitConfig, out: Path, *, ship: bool = False, log=print, scheduler=None,
            progress: bool = False) -> dict:
    """Run every stage (resuming what exists in ``out``) and write the report; returns the report dict
    (``progress``: bars over ABC generations, predictive checks and answers).

    ``scheduler``: ``None`` (this machine), a Dask scheduler address (connected
    before anything is written, closed at the end) or a ``distributed.Client``:
    the ABC runs' batches are simulated there, with the same result.
    """
    if scheduler is not None and not cfg.batched:
        raise InputError("--scheduler: runs batches of proposals on a cluster; the config sets [fit] batched = false")
    if not isinstance(scheduler, str):
        return _run_fit(cfg, out, ship, log, scheduler, progress)
    from ..analysis.sensitivity import connect

    output_folder(out)
    client = connect(scheduler)
    try:
        return _run_fit(cfg, out, ship, log, client, progress)
    finally:
        client.close()


def _sampling(stats: dict) -> dict:
    """How the batched sampling went (empty for the one-trial-at-a-time sampler)."""
    if not stats or not stats.get("simulated"):
        return {}
    return {"simulated": int(stats["simulated"]), "discarded_past_last_acceptance": int(stats["discarded"]),
            "trials_with_solver_failures": int(stats["failed_trials"]),
            "patients_with_solver_failures": int(stats["failed_patients"]),
            "engine_s": float(stats["engine_s"]), "simulate_s": float(stats["simulate_s"])}


def _run_fit(cfg: FitConfig, out: Path, ship: bool, log, scheduler, progress: bool = False) -> dict:
    out = output_folder(out)
    cfg.check_resources()  # a fit that cannot fit in memory is refused before the first write
    runs, secs = cfg.simulation_estimate()
    log(f"at least {runs:.3g} patient simulations ({limits.duration_text(secs)} at "
        f"{limits.PATIENTS_PER_S_PER_THREAD:g} patients/s per thread)")
    state_path = out / "fit_state.json"
    base_digest = base_set_digest(cfg.design.base_set)
    _check_fit_state(state_path, cfg, base_digest)  # a folder that cannot be resumed is refused before the lock
    lock_outputs(out)  # before fit_state.json: two fits into one folder would corrupt the ABC database
    if _check_fit_state(state_path, cfg, base_digest):  # again under the lock: another fit may have begun
        log(f"resuming the fit in {out}")
    else:
        atomic_write_json(state_path, {"digest": cfg.digest, "base_set_digest": base_digest, "config": cfg.raw})
    begin_outputs(out)

    screen = _stage(out, "screen", lambda: screen_statistics(cfg, log=log))["result"]
    cfg = replace(cfg, weights=dict(screen["weights"]))

    fits = {}
    for i, v in enumerate(cfg.variants):
        def compute(i=i, v=v):
            log(f"fitting {v} ({len(cfg.fitted[v])} quantities, population {cfg.population_size}, "
                f"{cfg.generations} generations)")
            stats = {}
            h = run_abc(out / f"abc_{v}.db", [v], cfg, cfg.population_size, cfg.generations, run_index=i, log=log,
                        scheduler=scheduler, stats=stats, progress=progress)
            pops = h.get_all_populations()
            return {"total_simulations": int(h.total_nr_simulations), "generations": int(h.max_t + 1),
                    "sampling_wall_s": float(pops["wall_time"].sum()),
                    "final_epsilon": float(h.get_all_populations()["epsilon"].iloc[-1]), **_sampling(stats)}
        fits[v] = _stage(out, f"fit_{v}", compute)
        log(f"fit {v}: {fits[v]['result']['total_simulations']} simulations, {fits[v]['wall_s']:.0f} s")

    comparison = None
    if len(cfg.variants) > 1:
        def compute_cmp():
            log(f"model comparison {', '.join(cfg.variants)} (population {cfg.comparison_population_size}, "
                f"{cfg.comparison_generations} generations)")
            stats = {}
            h = run_abc(out / "abc_comparison.db", list(cfg.variants), cfg, cfg.comparison_population_size,
                        cfg.comparison_generations, run_index=len(cfg.variants), log=log, scheduler=scheduler,
                        stats=stats, progress=progress)
            r = _model_comparison(h, list(cfg.variants))
            r["total_simulations"] = int(h.total_nr_simulations)
            r["sampling_wall_s"] = float(h.get_all_populations()["wall_time"].sum())
            r.update(_sampling(stats))
            return r
        comparison = _stage(out, "comparison", compute_cmp)
        best = comparison["result"]["best"]
    else:
        best = cfg.variants[0]

    import pyabc

    post = {v: posterior(pyabc.History(f"sqlite:///{out / f'abc_{v}.db'}"), 0, cfg.fitted[v])
            for v in cfg.variants}
    pred, diag, ident, answers = _posterior_checks(cfg, out, post, best, log, progress)

    # parameter sets
    sets = {}
    probs = comparison["result"]["probabilities"] if comparison else {best: 1.0}
    for i, v in enumerate(cfg.variants):
        x, w = post[v]
        text = parameter_set_toml(cfg, v, x, w, pred[v], probs.get(v), cfg.seed + 5000 + i)
        sets[f"{cfg.name}_{v}"] = text
    sets[cfg.name] = sets[f"{cfg.name}_{best}"].replace(
        "# Generated by", f"# The best-supported variant ({best}) of fit {cfg.name}.\n# Generated by", 1)
    for name, text in sets.items():
        atomic_write_text(out / "parameter_sets" / f"{name}.toml", text)
        if ship:
            from ..model.parameters import PARAMETER_SET_DIR

            atomic_write_text(PARAMETER_SET_DIR / f"{name}.toml", text)

    report = {"name": cfg.name, "seed": cfg.seed, "variants": list(cfg.variants), "best": best,
              "observed": cfg.observed,
              "distance": {"scales": cfg.scales, "weights": cfg.weights, "screen": screen},
              "prior": {"shared": {k: {"centre": c, "sd": sd} for k, (c, sd) in cfg.shared_prior.items()}},
              "design": {k: (dict(v) if isinstance(v, dict) else v) for k, v in cfg.design.__dict__.items()},
              "fits": fits, "comparison": comparison, "predictive": pred, "diagnostics": diag, "identifiability": ident,
              "answers": answers, "parameter_sets": sorted(sets), "shipped": ship,
              "settings": {"population_size": cfg.population_size, "generations": cfg.generations,
                           "comparison_population_size": cfg.comparison_population_size,
                           "comparison_generations": cfg.comparison_generations,
                           "predictive_draws": cfg.predictive_draws, "answer_draws": cfg.answer_draws,
                           "answer_cohort_size": cfg.answer_cohort_size, "quick": cfg.raw.get("quick", False),
                           "min_acceptance_rate": cfg.min_acceptance_rate}}
    atomic_write_json(out / "report.json", report)
    from .report import fit_report_markdown

    atomic_write_text(out / "report.md", fit_report_markdown(report))
    finish_outputs(out, provenance_of(cfg, seed=cfg.seed))  # last: the folder is complete
    return report


# --------------------------------------------------------------------------
# the same report from the shipped sets (no ABC run): what `gvlmodel reproduce` uses
# --------------------------------------------------------------------------
def shipped_sets(cfg: FitConfig) -> dict:
    """The shipped sets ``<name>_<variant>`` of this fit: raw TOML tables, checked against the config."""
    import tomllib

    from ..model.parameters import PARAMETER_SET_DIR

    sets = {}
    for v in cfg.variants:
        path = PARAMETER_SET_DIR / f"{cfg.name}_{v}.toml"
        if not path.is_file():
            raise InputError(f"shipped set {cfg.name}_{v}: not found in {PARAMETER_SET_DIR}; "
                             "run `gvlmodel fit CONFIG --out DIR --ship` (or `gvlmodel reproduce --refit`)")
        data = tomllib.loads(path.read_text())
        keys = [p.key for p in cfg.fitted[v]]
        if data.get("posterior", {}).get("keys") != keys:
            raise InputError(f"shipped set {cfg.name}_{v}: its posterior has quantities "
                             f"{data.get('posterior', {}).get('keys')} but the config fits {keys}; refit (--refit)")
        sets[v] = data
    return sets


def _posterior_checks(cfg: FitConfig, out: Path, post: dict, best: str, log=print, progress: bool = False):
    """From posteriors ``post[v] = (particles, weights)``: posterior-predictive trials and
    identifiability per variant, the mechanistic answers of ``best`` (each a cached stage in
    ``out``), and the figure tables.  Returns ``(predictive tables, diagnostics, identifiability,
    answers)``."""
    pred_rows, pred, diag, ident = [], {}, {}, {}
    for i, v in enumerate(cfg.variants):
        x, w = post[v]
        draws = resample(x, w, cfg.predictive_draws, cfg.seed + 1000 + i)
        name, seed = f"predictive_{v}", cfg.seed + 2000 + i
        rows = _stage(out, name, lambda v=v, draws=draws, seed=seed: predictive(cfg, v, draws, seed, progress),
                      key=_stage_key(cfg, name, draws, seed))["result"]
        pred_rows += rows
        pred[v] = predictive_table(rows, cfg.observed)
        diag[v] = pooled_diagnostics(rows)
        ident[v] = identifiability(cfg.fitted[v], x, w, cfg.shared_prior)
        log(f"  {v}: posterior predictive checks ({len(rows)} virtual trials)")
    x, w = post[best]
    draws = resample(x, w, cfg.answer_draws, cfg.seed + 3000)
    name = f"answers_{best}"
    answers = _stage(out, name, lambda: mechanistic_answers(cfg, best, draws, cfg.seed + 4000, log=log,
                                                            progress=progress),
                     key=_stage_key(cfg, name, draws, cfg.seed + 4000))
    _write_tables(out, cfg, pred_rows, post)
    return pred, diag, ident, answers


def run_from_shipped(cfg: FitConfig, out: Path, *, log=print, progress: bool = False) -> dict:
    """Predictive checks, mechanistic answers, identifiability and the report from the shipped
    sets' posterior samples (equally weighted), in the same files and schema as :func:`run_fit`.

    Model probabilities are those the fit stored in the sets (no SE: the ABC
    populations are not shipped).  A set fitted with a different config is
    reported in ``warnings``.
    """
    out = Path(out)
    sets = shipped_sets(cfg)
    warn = [f"set {cfg.name}_{v} was fitted with config digest {d['fit_config_digest']}, this config is "
            f"{cfg.digest}" for v, d in sets.items()
            if d.get("fit_config_digest") != parse_config(cfg.raw["config"], source="config").digest]
    begin_outputs(out)  # creates the folder (removed again if the run is refused)
    probs = {v: (float(d["model_probability"]) if isinstance(d.get("model_probability"), (int, float)) else None)
             for v, d in sets.items()}
    known = {v: p for v, p in probs.items() if p is not None}
    best = max(known, key=known.get) if known else cfg.variants[0]
    post = {}
    for v in cfg.variants:
        x = np.asarray(sets[v]["posterior"]["sample"], dtype=float)
        post[v] = (x, np.full(x.shape[0], 1.0 / x.shape[0]))
    pred, diag, ident, answers = _posterior_checks(cfg, out, post, best, log, progress)
    comparison = None
    if len(known) > 1:
        bf = {f"{best}:{v}": (known[best] / p if p > 0 else "inf") for v, p in known.items() if v != best}
        comparison = {"result": {"probabilities": probs, "se": {v: None for v in probs}, "best": best,
                                 "bayes_factors": bf, "source": "model_probability stored in the shipped sets"}}
    report = {"name": cfg.name, "seed": cfg.seed, "variants": list(cfg.variants), "best": best,
              "source": "shipped_sets", "observed": cfg.observed,
              "distance": {"scales": cfg.scales, "weights": cfg.weights},
              "prior": {"shared": {k: {"centre": c, "sd": sd} for k, (c, sd) in cfg.shared_prior.items()}},
              "design": {k: (dict(v) if isinstance(v, dict) else v) for k, v in cfg.design.__dict__.items()},
              "fits": {}, "comparison": comparison, "predictive": pred, "diagnostics": diag, "identifiability": ident,
              "answers": answers, "parameter_sets": [f"{cfg.name}_{v}" for v in cfg.variants], "shipped": False,
              "warnings": warn,
              "settings": {"predictive_draws": cfg.predictive_draws, "answer_draws": cfg.answer_draws,
                           "answer_cohort_size": cfg.answer_cohort_size, "quick": cfg.raw.get("quick", False),
                           "posterior_sample": {v: int(post[v][0].shape[0]) for v in post}}}
    atomic_write_json(out / "report.json", report)
    from .report import fit_report_markdown

    atomic_write_text(out / "report.md", fit_report_markdown(report))
    finish_outputs(out, provenance_of(cfg, seed=cfg.seed))  # last: the folder is complete
    return report
