"""Virtual cohorts: patients drawn from a population, run through the protocol in parallel.

A cohort is specified by three objects, each validated on construction:

* :class:`CohortSpec` — size, seed, transplanted or not, starting point
  (post-SCT relapse by type, or untreated chronic phase at diagnosis) and the
  relapse-type mix;
* :class:`Protocol` — dose, escalation, stop rule, restart, follow-up, visits and
  the measurement model's settings;
* :class:`Population` — which parameters vary between patients and how much
  (log-normal around the parameter set's value, truncated to the table bounds);
  its medians and spreads are the hyper-parameters a fit estimates.

Randomness and reproducibility: patients are grouped in fixed blocks of
:data:`BLOCK` ids; block ``b`` draws from its own stream
``SeedSequence(seed, spawn_key=(b,))``.  Patient ``i``'s parameters, starting
burden and PCR noise therefore depend only on ``(seed, i)`` and the scenario,
not on the cohort size, the chunking or the number of threads.  The compiled
engines (:func:`gvlmodel.clinical.lanes.run_cohort_lanes`, used here, and the reference
:func:`gvlmodel.clinical.protocol.run_cohort`) draw no random numbers and each patient
writes only its own rows, so results are identical for any thread count.

Starting burden (standard clinical correspondences; configurable):
molecular relapse 0.01-1 %, cytogenetic 1-35 %, hematologic 35-90 % BCR-ABL;
untreated chronic phase at diagnosis 50-95 %.  Within its range a patient's
ratio is log-uniform.
"""
from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from ..core.errors import boolean as _boolean
from ..core.errors import fail as _fail
from ..core.errors import integer as _integer
from ..core.errors import real as _real
from ..core import limits
from ..core.limits import MAX_COHORT_SIZE  # noqa: F401  (its home is gvlmodel.core.limits)
from ..model.indices import N_PP, N_RF, N_RI, N_STATES, PP, RF, RI, Dose, State, StopRule
from ..model.model import im_effects
from ..model.parameters import (PARAMETER_TABLE, Variant, check_parameter_name, kernel_parameters_batch, parameter_set,
                                parse_variant, resolve_parameters)
from ..model.measurement import DEFAULT_DETECTION_LIMIT, DEFAULT_NOISE_SD, RESPONSE_LEVELS_PERCENT
from ..model.simulate import MAX_DAYS, MAX_DOSE_MG, STATUS_MESSAGES, fill_start_state

#: patients per random-number block (fixed: changing it changes every cohort)
BLOCK = 1024
RELAPSE_TYPES = ("molecular", "cytogenetic", "hematologic")
STARTS = ("relapse", "diagnosis")
DEFAULT_RELAPSE_RANGES = {"molecular": (0.01, 1.0), "cytogenetic": (1.0, 35.0), "hematologic": (35.0, 90.0)}
DEFAULT_DIAGNOSIS_RANGE = (50.0, 95.0)
#: Hess et al. 2005: 18 molecular, 19 cytogenetic, 7 other (treated as hematologic)
HESS2005_RELAPSE_MIX = {"molecular": 18, "cytogenetic": 19, "hematologic": 7}
#: default between-patient variation (natural-log SD) around the parameter set
DEFAULT_POPULATION_SD = {
    "z_expand_allo": 0.5,  # immune strength (donor)
    "z_expand_auto": 0.5,  # immune strength (autologous)
    "z_kill": 0.5,  # effector potency
    "im_kill_lsc": 0.3,  # imatinib sensitivity of cycling LSCs
    "q_out": 0.5,  # exit from quiescence
    "z_half": 0.5,  # where the immune window sits (sets the controlled level)
    "resistant_fraction": 2.0,  # resistant subclone: absent in most patients, large in a few
}
#: loss-of-response rules after a stop: Hess 2005 (a positive confirmed by the next sample) and
#: STIM1 (loss of MMR, or a one-log rise over the first positive at two successive samples)
LOSS_RULE_NAMES = {"confirmed_positive": 0, "stim1": 1}
STOP_RULE_NAMES = ("hess2005", "never", "{after_days = N}", "{min_days = T} (the Hess 2005 rule after T days)",
                   "{min_days = T, undetectable_days = U}")


# --------------------------------------------------------------------------
# specifications
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class CohortSpec:
    """Who is enrolled: ``size`` patients, ``seed``, setting and starting point."""

    size: int
    seed: int
    transplant: bool = True
    start: str = "relapse"
    relapse_mix: Mapping[str, float] = field(default_factory=lambda: dict(HESS2005_RELAPSE_MIX))
    relapse_ranges: Mapping[str, tuple[float, float]] = field(default_factory=lambda: dict(DEFAULT_RELAPSE_RANGES))
    diagnosis_range: tuple[float, float] = DEFAULT_DIAGNOSIS_RANGE

    def __post_init__(self):
        object.__setattr__(self, "size", limits.cohort_size("cohort.size", self.size))
        object.__setattr__(self, "seed", limits.seed("cohort.seed", self.seed))
        object.__setattr__(self, "transplant", _boolean("cohort.transplant", self.transplant))
        if not isinstance(self.start, str) or self.start not in STARTS:
            _fail("cohort.start", f"unknown start {self.start!r}; allowed: {', '.join(STARTS)}")
        object.__setattr__(self, "relapse_mix", relapse_mix("cohort.relapse_mix", self.relapse_mix))
        if not isinstance(self.relapse_ranges, Mapping):
            _fail("cohort.relapse_ranges", "expected a table of relapse type = [low, high] BCR-ABL percent, "
                  f"e.g. {{molecular = [0.01, 1.0]}}; got {self.relapse_ranges!r}")
        ranges = dict(DEFAULT_RELAPSE_RANGES)
        for k, v in dict(self.relapse_ranges).items():
            if k not in RELAPSE_TYPES:
                _fail("cohort.relapse_ranges", f"unknown relapse type {k!r}; allowed: {', '.join(RELAPSE_TYPES)}")
            ranges[k] = _ratio_range(f"cohort.relapse_ranges.{k}", v)
        object.__setattr__(self, "relapse_ranges", ranges)
        object.__setattr__(self, "diagnosis_range", _ratio_range("cohort.diagnosis_range", self.diagnosis_range))

    def relapse_types(self) -> np.ndarray:
        """Relapse type of every patient (``""`` at diagnosis): counts scaled to ``size``, largest remainder."""
        if self.start == "diagnosis":
            return np.full(self.size, "", dtype=object)
        names = [k for k in RELAPSE_TYPES if k in self.relapse_mix]
        w = np.array([self.relapse_mix[k] for k in names], dtype=float)
        exact = w / w.sum() * self.size
        counts = np.floor(exact).astype(int)
        for j in np.argsort(-(exact - counts), kind="stable")[: self.size - counts.sum()]:
            counts[j] += 1
        return np.repeat(np.array(names, dtype=object), counts)


#: largest weight of one relapse type (a count or a fraction; a larger one could overflow the weights' sum)
MAX_RELAPSE_WEIGHT = 1e12


def relapse_mix(field_name: str, v) -> dict[str, float]:
    """A relapse mix (table of relapse type = count or fraction, not all zero), validated; errors name
    ``field_name`` (``cohort.relapse_mix``, ``[trial] relapse_mix``, ...)."""
    if not isinstance(v, Mapping) or not v:
        _fail(field_name, "expected a table of relapse type = count or fraction, e.g. "
              f"{{molecular = 18, cytogenetic = 19, hematologic = 7}}; allowed types: {', '.join(RELAPSE_TYPES)}")
    mix = {}
    for k, x in v.items():
        if k not in RELAPSE_TYPES:
            _fail(field_name, f"unknown relapse type {k!r}; allowed: {', '.join(RELAPSE_TYPES)}")
        mix[k] = _real(f"{field_name}.{k}", x, lo=0.0, hi=MAX_RELAPSE_WEIGHT)  # (their sum stays finite)
    if sum(mix.values()) <= 0:
        _fail(field_name, "counts or fractions must not all be zero")
    return mix


def _ratio_range(field_name, v) -> tuple[float, float]:
    if not isinstance(v, (list, tuple)) or len(v) != 2:
        _fail(field_name, f"expected [low, high] BCR-ABL percent, got {v!r}")
    lo = _real(field_name + "[0]", v[0], lo=0.0, lo_open=True)
    hi = _real(field_name + "[1]", v[1], hi=99.999)
    if hi < lo:
        _fail(field_name, f"low {lo:g} exceeds high {hi:g}")
    return (lo, hi)


@dataclass(frozen=True)
class Protocol:
    """Treatment and monitoring (defaults: the Hess 2005 protocol with monthly visits for 5 years)."""

    dose_mg: float = 400.0
    escalate: bool = True
    escalated_dose_mg: float = 600.0
    escalation_day: float = 90.0
    mmr_level_percent: float = RESPONSE_LEVELS_PERCENT["MMR"]
    stop: object = "hess2005"
    restart: bool = False
    follow_up_days: float = 1825.0
    visit_interval_days: float = 30.0
    detection_limit: float = DEFAULT_DETECTION_LIMIT
    noise_sd_log: float = DEFAULT_NOISE_SD
    #: probability that a patient who meets the stop rule does stop (stopping was optional in
    #: Hess et al. 2005: 10 of 34 patients in CMR stopped); decided per patient at enrolment
    stop_uptake: float = 1.0
    #: what counts as losing the response after a stop (:data:`LOSS_RULE_NAMES`)
    loss_rule: str = "confirmed_positive"

    def __post_init__(self):
        object.__setattr__(self, "dose_mg", _real("treatment.dose_mg", self.dose_mg, lo=0.0, hi=MAX_DOSE_MG, lo_open=True))
        object.__setattr__(self, "escalate", _boolean("treatment.escalate", self.escalate))
        object.__setattr__(self, "escalated_dose_mg", _real("treatment.escalated_dose_mg", self.escalated_dose_mg,
                                                            lo=0.0, hi=MAX_DOSE_MG, lo_open=True))
        object.__setattr__(self, "escalation_day", _real("treatment.escalation_day", self.escalation_day, lo=0.0))
        object.__setattr__(self, "mmr_level_percent", _real("treatment.mmr_level_percent", self.mmr_level_percent,
                                                            lo=0.0, hi=100.0, lo_open=True))
        object.__setattr__(self, "restart", _boolean("treatment.restart", self.restart))
        object.__setattr__(self, "follow_up_days", _real("treatment.follow_up_days", self.follow_up_days,
                                                         lo=0.0, hi=MAX_DAYS, lo_open=True))
        object.__setattr__(self, "visit_interval_days", _real("treatment.visit_interval_days",
                                                              self.visit_interval_days, lo=1.0,
                                                              hi=self.follow_up_days))
        object.__setattr__(self, "detection_limit", _real("measurement.detection_limit", self.detection_limit,
                                                          lo=0.0, hi=1.0, lo_open=True))
        object.__setattr__(self, "noise_sd_log", _real("measurement.noise_sd_log", self.noise_sd_log, lo=0.0, hi=5.0))
        object.__setattr__(self, "stop_uptake", _real("treatment.stop_uptake", self.stop_uptake, lo=0.0, hi=1.0))
        if not isinstance(self.loss_rule, str) or self.loss_rule not in LOSS_RULE_NAMES:
            _fail("treatment.loss_rule", f"unknown rule {self.loss_rule!r}; allowed: " + ", ".join(LOSS_RULE_NAMES))
        self.stop_rule()  # validate

    @property
    def n_visits(self) -> int:
        """Visits after enrolment (enrolment is visit 0)."""
        return int(math.floor(self.follow_up_days / self.visit_interval_days + 1e-9))

    def stop_rule(self) -> tuple[StopRule, float, float]:
        """``(rule, min_days, window_days)`` from ``stop``."""
        s = self.stop
        allowed = "allowed: " + ", ".join(STOP_RULE_NAMES)
        if isinstance(s, str):
            if s == "hess2005":
                return StopRule.HESS2005, 180.0, 90.0
            if s == "never":
                return StopRule.NEVER, 0.0, 0.0
            _fail("treatment.stop", f"unknown stop rule {s!r}; {allowed}")
        if isinstance(s, Mapping):
            keys = set(map(str, s))  # (a key that is not a string is reported, not compared)
            if keys == {"after_days"}:
                return StopRule.AFTER_DAYS, _real("treatment.stop.after_days", s["after_days"], lo=0.0), 0.0
            if keys == {"min_days"}:  # the Hess 2005 rule with another minimum imatinib duration
                return StopRule.HESS2005, _real("treatment.stop.min_days", s["min_days"], lo=0.0), 90.0
            if keys == {"min_days", "undetectable_days"}:
                return (StopRule.STIM, _real("treatment.stop.min_days", s["min_days"], lo=0.0),
                        _real("treatment.stop.undetectable_days", s["undetectable_days"], lo=0.0))
            forms = ({"after_days"}, {"min_days"}, {"min_days", "undetectable_days"})
            near = max(forms, key=lambda f: len(f & keys))  # the form the table was probably meant to be
            extra, missing = sorted(keys - near), sorted(near - keys)
            what = "; ".join(x for x in (f"unexpected key(s) {extra}" if extra else "",
                                         f"missing key(s) {missing}" if missing else "") if x)
            _fail("treatment.stop", f"{what} in the table {{{', '.join(sorted(keys))}}}; {allowed}")
        _fail("treatment.stop", f"expected a rule name or table, got {s!r}; {allowed}")

    def kernel_vector(self, rtol: float, atol: float, extinction_threshold: float, max_steps: int) -> np.ndarray:
        """The compiled engine's protocol vector (:class:`~gvlmodel.model.indices.PP`)."""
        rule, min_days, window = self.stop_rule()
        pp = np.zeros(N_PP)
        pp[PP.VISIT] = self.visit_interval_days
        pp[PP.N_VISITS] = self.n_visits
        pp[PP.ESCALATE] = float(self.escalate)
        pp[PP.ESC_DAY] = self.escalation_day
        pp[PP.MMR_LEVEL] = self.mmr_level_percent
        pp[PP.STOP_RULE] = float(rule)
        pp[PP.STOP_MIN_DAYS] = min_days
        pp[PP.STOP_WINDOW_DAYS] = window
        pp[PP.RESTART] = float(self.restart)
        pp[PP.DETECTION_LIMIT] = self.detection_limit
        pp[PP.NOISE_SD] = self.noise_sd_log
        pp[PP.RTOL] = rtol
        pp[PP.ATOL] = atol
        pp[PP.EXTINCTION] = extinction_threshold
        pp[PP.MAX_STEPS] = float(max_steps)
        pp[PP.LOSS_RULE] = float(LOSS_RULE_NAMES[self.loss_rule])
        return pp


#: how between-patient draws are kept inside the table bounds (:class:`Population`)
POPULATION_BOUNDS = ("clip", "truncate")


def population_bounds(field_name: str, v) -> str:
    """``v`` as one of :data:`POPULATION_BOUNDS`; errors name ``field_name``."""
    if not isinstance(v, str) or v not in POPULATION_BOUNDS:
        _fail(field_name, f"unknown value {v!r}; allowed: {', '.join(POPULATION_BOUNDS)}")
    return v


@dataclass(frozen=True)
class Population:
    """Between-patient variation: ``sd_log[name]`` = natural-log SD around the parameter set's value.

    A patient's value is ``median * exp(sd * z)``, ``z ~ N(0, 1)``, kept in
    the parameter table's ``[lower, upper]`` by ``bounds``: ``"clip"`` (the
    default, as the shipped fits were made: a draw beyond a bound is put on it,
    so a wide spread piles patients on the bound) or ``"truncate"`` (the
    log-normal truncated to the bounds, drawn from the same random numbers by
    the inverse CDF: no pile-up).  ``medians`` optionally replaces the
    parameter set's value as the population median.  ``correlation`` optionally
    correlates the log-scale draws: ``{a: {b: r_ab}}`` (each pair once, either
    order, names among ``sd_log``); the standard normals are then
    ``z = L e`` with ``L L^T`` the correlation matrix (a Gaussian copula; with
    ``"truncate"`` each marginal is truncated as above).  Without it the draws
    are independent, exactly as before.
    """

    sd_log: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_POPULATION_SD))
    medians: Mapping[str, float] = field(default_factory=dict)
    bounds: str = "clip"
    correlation: Mapping[str, Mapping[str, float]] | None = None

    def __post_init__(self):
        population_bounds("population.bounds", self.bounds)
        for name in ("sd_log", "medians"):
            if not isinstance(getattr(self, name), Mapping):
                _fail(f"population.{name}", f"expected a table of parameter name = value, got {getattr(self, name)!r}")
        sd = {}
        for name, v in dict(self.sd_log).items():
            check_parameter_name(name)
            sd[name] = _real(f"population.{name}", v, lo=0.0, hi=5.0)
        object.__setattr__(self, "sd_log", dict(sorted(sd.items())))
        resolve_parameters(dict(self.medians))  # names, types and ranges
        object.__setattr__(self, "medians", {k: float(v) for k, v in self.medians.items()})
        if self.correlation is not None:
            object.__setattr__(self, "correlation", correlation_pairs(self.correlation, self.names))
        self.correlation_matrix()  # validates positive definiteness

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.sd_log)

    def correlation_matrix(self) -> np.ndarray | None:
        """The correlation matrix over :attr:`names` (``None`` without correlations)."""
        if not self.correlation:
            return None
        return correlation_matrix(self.correlation, self.names)


def correlation_pairs(corr, names) -> dict[str, dict[str, float]]:
    """``{a: {b: r}}`` validated: names among ``names``, ``a != b``, ``-1 < r < 1``, each pair once."""
    if not isinstance(corr, Mapping):
        _fail("population.correlation", f"expected a table {{a = {{b = r}}}}, got {corr!r}")
    out: dict[str, dict[str, float]] = {}
    seen = set()
    for a, row in corr.items():
        if not isinstance(row, Mapping):
            _fail(f"population.correlation.{a}", f"expected a table of name = correlation, got {row!r}")
        for b, r in row.items():
            for n in (a, b):
                if n not in names:
                    _fail(f"population.correlation.{a}.{b}", f"{n!r} does not vary between patients; "
                          f"allowed: {', '.join(names)}")
            if a == b:
                _fail(f"population.correlation.{a}.{b}", "a parameter's correlation with itself is 1 by definition")
            pair = frozenset((a, b))
            if pair in seen:
                _fail(f"population.correlation.{a}.{b}", "this pair is given twice")
            seen.add(pair)
            out.setdefault(a, {})[b] = _real(f"population.correlation.{a}.{b}", r, lo=-1.0, hi=1.0)
            if abs(out[a][b]) >= 1.0:
                _fail(f"population.correlation.{a}.{b}", f"must lie strictly between -1 and 1, got {r}")
    return out


def correlation_matrix(pairs, names) -> np.ndarray:
    """The matrix over ``names`` from validated ``pairs``; it must be positive definite."""
    idx = {n: i for i, n in enumerate(names)}
    R = np.eye(len(names))
    for a, row in pairs.items():
        for b, r in row.items():
            R[idx[a], idx[b]] = R[idx[b], idx[a]] = r
    try:
        np.linalg.cholesky(R)
    except np.linalg.LinAlgError:
        _fail("population.correlation", "the correlations do not form a positive definite matrix")
    return R


# --------------------------------------------------------------------------
# results
# --------------------------------------------------------------------------
@dataclass
class CohortResult:
    """Per-patient outcomes (``columns``), measured PCR series per visit, and what produced them."""

    columns: dict[str, np.ndarray]
    measured: np.ndarray  # (n, n_visits + 1) measured BCR-ABL %, 0 = undetectable, nan = not reached
    visit_days: np.ndarray
    patient_parameters: dict[str, np.ndarray]
    y0: np.ndarray
    cohort: CohortSpec
    protocol: Protocol
    variant: Variant
    base_parameters: dict[str, float]
    solver_options: dict
    wall_s: float
    threads: int

    @property
    def n(self) -> int:
        """Patients in this result (the whole cohort, or the part run: ``columns["patient_id"]``)."""
        return len(self.columns["patient_id"])

    @property
    def failed(self) -> np.ndarray:
        return self.columns["solver_status"] != 0

    def patient_params(self, i: int) -> dict[str, float]:
        """Complete table parameters of patient ``i``."""
        p = dict(self.base_parameters)
        p.update({k: float(v[i]) for k, v in self.patient_parameters.items()})
        return p

    def dose_schedule(self, i: int) -> list[tuple[float, float]]:
        """The dose schedule patient ``i`` actually received: ``[(day, mg/day), ...]``."""
        c, pr = self.columns, self.protocol
        sched = [(0.0, pr.dose_mg)]
        dose = pr.dose_mg
        if c["escalated"][i]:
            dose = pr.escalated_dose_mg
            sched.append((float(c["days_to_escalation"][i]), dose))
        if c["stopped"][i]:
            sched.append((float(c["stop_day"][i]), 0.0))
            if c["restarted"][i]:
                sched.append((float(c["restart_day"][i]), dose))
        return sched

    def summary(self) -> dict:
        from .summary import cohort_summary

        return cohort_summary(self)


# --------------------------------------------------------------------------
# the cohort run
# --------------------------------------------------------------------------
def _blocks(first: int, stop: int):
    """``(b, lo, hi)``: random-number block ``b`` and the part ``[lo, hi)`` of it (offsets within the
    block) that patients ``first .. stop - 1`` use."""
    for b in range(first // BLOCK, -(-stop // BLOCK)):
        yield b, max(first, b * BLOCK) - b * BLOCK, min(stop, (b + 1) * BLOCK) - b * BLOCK


def _draws(seed: int, n: int, n_par: int, n_samples: int, first: int = 0):
    """Random numbers of patients ``first .. first + n - 1``, block by block (see the module docstring):
    a patient's draws are the same whichever range they are drawn in."""
    z = np.empty((n, n_par))
    u_start = np.empty(n)
    eps = np.empty((n, n_samples))
    uu = np.empty((n, n_samples))
    at = 0
    for b, lo, hi in _blocks(first, first + n):
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(b,))))
        bz = rng.standard_normal((BLOCK, n_par))
        bu = rng.random(BLOCK)
        be = rng.standard_normal((BLOCK, n_samples))
        bv = rng.random((hi, n_samples))  # the block's last draws: its first hi rows are all that is used
        to = at + hi - lo
        z[at:to], u_start[at:to], eps[at:to], uu[at:to] = bz[lo:hi], bu[lo:hi], be[lo:hi], bv[lo:hi]
        at = to
    return z, u_start, eps, uu


def _truncated_normal(z, med, sd, lower, upper):
    """Map standard normals ``z`` to the normal truncated where ``med * exp(sd * z)`` lies in
    ``[lower, upper]`` (inverse CDF of the same uniform ``Phi(z)``; ``sd == 0`` leaves ``z``)."""
    from scipy.special import ndtr, ndtri

    med = np.broadcast_to(np.asarray(med, dtype=float), z.shape)
    out = z.copy()
    ok = sd > 0
    with np.errstate(divide="ignore"):
        a = (np.log(lower) - np.log(med[ok])) / sd[ok]  # -inf for a lower bound of 0
        b = (np.log(upper) - np.log(med[ok])) / sd[ok]
    pa, pb = ndtr(a), ndtr(b)
    out[ok] = ndtri(pa + ndtr(z[ok]) * (pb - pa))
    return out


def _uptake_draws(seed: int, n: int, first: int = 0) -> np.ndarray:
    """One uniform per patient (``first .. first + n - 1``) for the stop decision, from its own stream per
    block (``spawn_key=(b, 1)``), so adding it left every other draw unchanged."""
    u = np.empty(n)
    at = 0
    for b, lo, hi in _blocks(first, first + n):
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(b, 1))))
        u[at:at + hi - lo] = rng.random(BLOCK)[lo:hi]
        at += hi - lo
    return u


def _resolve_base(parameters) -> dict[str, float]:
    if parameters is None:
        return parameter_set("default")
    if isinstance(parameters, str):
        return parameter_set(parameters)
    return resolve_parameters(parameters)


@dataclass
class CohortInputs:
    """Everything the compiled engine receives for a cohort (one row per patient)."""

    kp: np.ndarray  # (n, N_KP) kernel parameters
    y0: np.ndarray  # (n, N_STATES) start states
    effects: np.ndarray  # (n, 3) imatinib effect of each Dose level
    eps: np.ndarray  # (n, n_visits + 1) standard normals for the qPCR noise
    uu: np.ndarray  # (n, n_visits + 1) uniforms for detection
    pp: np.ndarray  # (N_PP,) protocol vector
    varied: dict[str, np.ndarray]  # per-patient values of the population's parameters
    relapse_types: np.ndarray
    bcr_abl_start: np.ndarray  # percent
    would_stop: np.ndarray  # bool: the patient stops once the stop rule allows (Protocol.stop_uptake)


def check_spreads(medians: Mapping[str, float], sd_log: Mapping[str, float]) -> None:
    """A between-patient spread (log-normal, natural-log SD ``sd_log[name]`` > 0) needs a positive median: a
    parameter whose median is 0 (``z_dormant_kill``, ``immunosuppression`` in most sets) with a spread is an
    :class:`InputError` naming it (its draws were all 0, or NaN with truncated bounds: every solve failed)."""
    for name, sd in sd_log.items():
        if sd > 0 and name in medians and not medians[name] > 0:
            _fail(name, f"has a between-patient spread (natural-log SD {sd:g}) but its median is "
                  f"{medians[name]:g}; a log-normal spread needs a positive median: give the parameter a "
                  "positive value or remove its spread")


def prepare_cohort(cohort: CohortSpec, protocol: Protocol, base: Mapping[str, float], variant: Variant,
                   population: Population, rtol: float, atol: float, extinction_threshold: float,
                   max_steps: int, patients: range | None = None) -> CohortInputs:
    """Draw the patients (parameters, starting burden, PCR noise) and build the engine's arrays;
    ``patients``: only these ids of the cohort (consecutive), each drawn as in the whole cohort."""
    return prepare_replicates(cohort, protocol, [base], [population.sd_log], [protocol.stop_uptake], variant,
                              population.names, rtol, atol, extinction_threshold, max_steps, bounds=population.bounds,
                              correlation=population.correlation_matrix(), patients=patients)


def prepare_replicates(cohort: CohortSpec, protocol: Protocol, bases, sds, uptakes, variant: Variant,
                       names: tuple[str, ...], rtol: float, atol: float, extinction_threshold: float,
                       max_steps: int, bounds: str = "clip", correlation: np.ndarray | None = None,
                       seeds=None, threads: int = 1, patients: range | None = None) -> CohortInputs:
    """The same cohort (same patients' random numbers) under ``R`` parameterisations, stacked.

    Replicate ``r`` uses population medians ``bases[r]`` (complete, validated
    parameter sets), natural-log spreads ``sds[r]`` (over ``names``) and stop
    uptake ``uptakes[r]``; its patients are rows ``r*n .. (r+1)*n - 1`` and
    share every random number with the other replicates (common random numbers:
    a sensitivity study then compares parameterisations, not noise).  With one
    replicate this is exactly the cohort of :func:`simulate_cohort`.
    ``bounds``: how draws are kept in the table bounds (:class:`Population`);
    ``correlation``: the correlation matrix of the log-scale draws over ``names`` (or ``None``).
    ``seeds``: one cohort seed per replicate instead of ``cohort.seed`` for all: replicate ``r``
    is then exactly the cohort of :func:`simulate_cohort` with seed ``seeds[r]`` (independent
    patients per replicate; a batch of virtual trials is one such stack); their random numbers are drawn
    on ``threads`` threads (each replicate from its own generator: the same numbers for any count).
    ``patients``: the consecutive patient ids to prepare (default all; a part of a streamed run): a
    patient's random numbers depend on the seed and its id only.
    """
    population_bounds("population.bounds", bounds)
    patients = range(cohort.size) if patients is None else patients
    if patients.step != 1 or not 0 <= patients.start <= patients.stop <= cohort.size:
        _fail("patients", f"expected consecutive ids in [0, {cohort.size}), got {patients}")
    first_id = patients.start
    n1 = len(patients)
    n_rep = len(bases)
    n = n1 * n_rep
    n_samples = protocol.n_visits + 1
    chol = None if correlation is None else np.linalg.cholesky(np.asarray(correlation, dtype=float)).T
    if seeds is None:
        z1, u1, e1, v1 = _draws(cohort.seed, n1, len(names), n_samples, first_id)
        if chol is not None:
            z1 = z1 @ chol
        z = np.tile(z1, (n_rep, 1))
        eps, uu = (e1, v1) if n_rep == 1 else (np.tile(e1, (n_rep, 1)), np.tile(v1, (n_rep, 1)))
        u_start = np.tile(u1, n_rep)
        u_stop = np.tile(_uptake_draws(cohort.seed, n1, first_id), n_rep)
    else:
        if len(seeds) != n_rep:
            _fail("seeds", f"expected one seed per replicate ({n_rep}), got {len(seeds)}")
        seeds = [_integer("seeds", s, lo=0) for s in seeds]

        def draw(s):
            return _draws(s, n1, len(names), n_samples, first_id)

        if threads > 1 and len(seeds) > 1:  # NumPy's generators release the GIL while they fill arrays
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(min(threads, len(seeds))) as pool:
                parts = list(pool.map(draw, seeds))
        else:
            parts = [draw(s) for s in seeds]
        z = np.concatenate([p[0] if chol is None else p[0] @ chol for p in parts])
        u_start, eps, uu = (np.concatenate([p[k] for p in parts]) for k in (1, 2, 3))
        u_stop = np.concatenate([_uptake_draws(int(s), n1, first_id) for s in seeds])

    # parameters that differ between replicates become per-patient columns
    first = bases[0]
    per_rep = [k for k in first if any(b[k] != first[k] for b in bases[1:])]
    col = {k: np.repeat(np.array([b[k] for b in bases], dtype=float), n1) for k in per_rep}
    scalar = {k: v for k, v in first.items() if k not in col}
    # per-patient parameters: log-normal around the median, clipped or truncated to the table bounds
    varied = dict(col)
    for j, name in enumerate(names):
        row = PARAMETER_TABLE[name]
        med = col[name] if name in col else scalar[name]
        # a median a rounding away from a bound (10**log10(upper) can exceed upper by an ulp) is put on it;
        # one really outside would have every patient's draw clipped to the bound: an error
        tol = 1e-9 * (row.upper - row.lower)
        outside = (np.asarray(med) < row.lower - tol) | (np.asarray(med) > row.upper + tol)
        if np.any(outside):
            _fail(f"parameter {name!r}", f"varies between patients, so its median must lie in the table's bounds "
                  f"[{row.lower:g}, {row.upper:g}] {row.unit} (draws are clipped to them); "
                  f"got {np.asarray(med)[outside].ravel()[0]:g}")
        med = np.clip(med, row.lower, row.upper)
        sd = np.repeat(np.array([s[name] for s in sds], dtype=float), n1)
        if np.any((sd > 0) & ~(med > 0)):  # (scenarios check this when they are read)
            check_spreads({name: float(np.min(med))}, {name: float(sd.max())})
        zj = z[:, j] if bounds == "clip" else _truncated_normal(z[:, j], med, sd, row.lower, row.upper)
        varied[name] = np.clip(med * np.exp(sd * zj), row.lower, row.upper)
    kp = kernel_parameters_batch(scalar, varied, variant, cohort.transplant, n=n)
    p_all = dict(scalar)
    p_all.update(varied)

    # starting burden
    types1 = cohort.relapse_types()[patients.start:patients.stop]
    lo = np.empty(n1)
    hi = np.empty(n1)
    if cohort.start == "diagnosis":
        lo[:], hi[:] = cohort.diagnosis_range
    else:
        for t in RELAPSE_TYPES:
            sel = types1 == t
            lo[sel], hi[sel] = cohort.relapse_ranges[t]
    if seeds is None:
        ratio0 = np.tile(np.exp(np.log(lo) + u_start[:n1] * (np.log(hi) - np.log(lo))), n_rep)
    else:
        lo, hi = np.tile(lo, n_rep), np.tile(hi, n_rep)
        ratio0 = np.exp(np.log(lo) + u_start * (np.log(hi) - np.log(lo)))
    y0 = np.empty((n, N_STATES))
    fill_start_state(p_all, ratio0, kp, y0)

    # imatinib effect of each dose level, per patient
    effects = np.zeros((n, 3))
    css = np.ascontiguousarray(np.broadcast_to(np.asarray(p_all["im_css_400"], dtype=float), (n,)))
    ec50 = np.ascontiguousarray(np.broadcast_to(np.asarray(p_all["im_ec50"], dtype=float), (n,)))
    im_effects(protocol.dose_mg, css, ec50, effects[:, Dose.BASE])
    im_effects(protocol.escalated_dose_mg, css, ec50, effects[:, Dose.ESCALATED])

    pp = protocol.kernel_vector(rtol, atol, extinction_threshold, max_steps)
    would_stop = u_stop < np.repeat(np.asarray(uptakes, dtype=float), n1)
    return CohortInputs(kp=kp, y0=y0, effects=effects, eps=eps, uu=uu, pp=pp, varied=varied,
                        relapse_types=np.tile(types1, n_rep), bcr_abl_start=ratio0, would_stop=would_stop)


#: one compiled cohort run at a time per process (numba's parallel layer is not re-entrant from several threads,
#: and Dask may run several tasks in threads of one worker)
ENGINE_LOCK = threading.Lock()
#: per thread: ``before_engine``, a callable :func:`run_inputs` calls (once) when its patients are drawn and
#: the compiled engine is about to start (``gvlmodel simulate`` then starts writing the previous part, so
#: that the writer's Python shares the cores with the GIL-free engine, not with drawing the patients)
ENGINE_HOOKS = threading.local()


def concat_inputs(parts: list[CohortInputs]) -> CohortInputs:
    """Prepared cohorts run under one protocol vector, stacked into one (rows in the order given)."""
    pp = parts[0].pp
    if any(not np.array_equal(p.pp, pp) for p in parts[1:]):
        _fail("concat_inputs", "the cohorts' protocol vectors differ")
    if len(parts) == 1:
        return parts[0]
    cat = {k: np.concatenate([getattr(p, k) for p in parts]) for k in
           ("kp", "y0", "effects", "eps", "uu", "relapse_types", "bcr_abl_start", "would_stop")}
    names = set().union(*[p.varied for p in parts])
    n = [p.kp.shape[0] for p in parts]
    varied = {k: np.concatenate([p.varied[k] if k in p.varied else np.full(m, np.nan) for p, m in zip(parts, n)])
              for k in sorted(names)}
    return CohortInputs(pp=pp, varied=varied, **cat)


#: memory of one patient's result columns (CohortResult.columns), bytes
RESULT_BYTES_PER_PATIENT = 400.0
#: patients per lock-step engine (one ``prange`` task).  A block's lanes idle while its last patients
#: finish: 7.4 % of lane-steps at 64 patients, 1.8 % at 256 (Hess protocol, 8 lanes); 256 still gives 64
#: tasks per thread in a 32,768-patient part of ``gvlmodel simulate`` on 2 threads (``benchmarks/bench_simulate.py``)
LANE_BLOCK = 256
#: patients per compiled call of :func:`run_inputs` (the progress bar moves between calls); each call ends
#: with threads idle while the last blocks finish, so calls are long (~3 s on 2 threads)
RUN_CHUNK = 65536


def lane_block(n: int, threads: int) -> int:
    """Patients per lock-step block for ``n`` patients: ``LANE_BLOCK``, smaller for small cohorts.

    Aims at 4 blocks per thread (so that a 44-patient cohort still uses every
    thread: 6 blocks of 8), never fewer patients per block than lanes.
    """
    from ..model._lane_layout import W

    return max(W, min(LANE_BLOCK, -(-n // (4 * max(1, threads)))))


def check_threads(threads, field: str = "threads") -> int:
    """``threads`` as a numba thread count in ``[1, NUMBA_NUM_THREADS]`` (``None``: all of them)."""
    if threads is None:
        return limits.max_threads()
    return limits.threads(field, threads)


def run_inputs(inp: CohortInputs, threads: int, progress: bool | None = None, chunk: int = RUN_CHUNK):
    """Run prepared patients through the compiled engine: ``(measured, res_f, res_i, wall_s)``.

    Patients who would not stop run under the rule "never"; each group in
    chunks (a progress bar appears when ``progress`` or after 2 s unless
    ``progress is False``).  The engine is the lock-step one
    (:func:`gvlmodel.clinical.lanes.run_rows_lanes`, blocks of :func:`lane_block`
    patients per thread task), whose results equal the one-patient-at-a-time engine
    :func:`gvlmodel.clinical.protocol.run_cohort` bit for bit.  Results do not depend
    on ``threads`` or ``chunk``.
    """
    import numba

    from .lanes import run_rows_lanes

    kp, y0, effects, eps, uu, pp = inp.kp, inp.y0, inp.effects, inp.eps, inp.uu, inp.pp
    n = kp.shape[0]
    n_vis = int(pp[PP.N_VISITS])
    measured = np.empty((n, n_vis + 1))
    res_f = np.empty((n, N_RF))
    res_i = np.empty((n, N_RI), dtype=np.int64)
    if not run_rows_lanes.signatures:  # first use in this process: compile or load the cache outside the timer
        one = slice(0, 1)
        run_rows_lanes(kp[one], y0[one], effects[one], pp, eps[one], uu[one], measured[one].copy(),
                       res_f[one].copy(), res_i[one].copy(), np.zeros(1, dtype=np.int64), lane_block(1, threads))
    pp_never = pp.copy()
    pp_never[PP.STOP_RULE] = float(StopRule.NEVER)
    # each group runs on the cohort's arrays, its rows listed (no copies in and out)
    groups = [(pp, np.flatnonzero(inp.would_stop)), (pp_never, np.flatnonzero(~inp.would_stop))]
    hook = getattr(ENGINE_HOOKS, "before_engine", None)
    if hook is not None:
        ENGINE_HOOKS.before_engine = None
        hook()
    old_threads = numba.get_num_threads()
    numba.set_num_threads(threads)
    t0 = time.perf_counter()
    try:
        bar = None
        done = 0
        for pp_g, idx in groups:
            for lo_ in range(0, idx.size, chunk):
                rows = idx[lo_:lo_ + chunk]
                with numba.parallel_chunksize(1):  # blocks handed out one at a time: no thread waits on a slow one
                    run_rows_lanes(kp, y0, effects, pp_g, eps, uu, measured, res_f, res_i, rows,
                                   lane_block(rows.size, threads))
                done += rows.size
                if bar is None and progress is not False and done < n and (
                        progress or time.perf_counter() - t0 > 2.0):
                    from tqdm.auto import tqdm

                    bar = tqdm(total=n, initial=done, unit="patient", desc="cohort", leave=False)
                elif bar is not None:
                    bar.update(done - bar.n)
        if bar is not None:
            bar.update(n - bar.n)
            bar.close()
    finally:
        numba.set_num_threads(old_threads)
    return measured, res_f, res_i, time.perf_counter() - t0


def simulate_cohort(cohort: CohortSpec, protocol: Protocol | None = None, parameters=None, *, variant="H2",
                    population: Population | None = None, rtol: float = 1e-6, atol: float = 1e-6,
                    extinction_threshold: float = 1.0, max_steps: int = 200_000, threads: int | None = None,
                    progress: bool | None = None, chunk: int = RUN_CHUNK, patients: range | None = None) -> CohortResult:
    """Run a virtual cohort through the protocol (compiled, parallel over patients).

    ``patients``: run only these (consecutive) ids of the cohort, each exactly as in the whole cohort
    (its draws depend on the seed and its id only), so a large cohort can be run part by part.

    ``parameters``: a parameter-set name, a mapping of overrides of the default
    set, or ``None`` (default set).  ``threads``: numba threads (default: all).
    ``progress``: show a progress bar (``None``: only when the run takes more
    than 2 s).  Results do not depend on ``threads`` or ``chunk``.
    """
    if not isinstance(cohort, CohortSpec):
        _fail("cohort", "expected a CohortSpec")
    protocol = Protocol() if protocol is None else protocol
    population = Population() if population is None else population
    if not isinstance(protocol, Protocol):
        _fail("protocol", f"expected a Protocol (or None for the Hess 2005 protocol), got {type(protocol).__name__}")
    if not isinstance(population, Population):
        _fail("population", f"expected a Population (or None for the default spreads), got {type(population).__name__}")
    chunk = _integer("chunk", chunk, lo=1)
    variant = parse_variant(variant)
    base = _resolve_base(parameters)
    base.update(population.medians)
    base = resolve_parameters(base)
    rtol = limits.rtol("solver.rtol", rtol)
    atol = limits.atol("solver.atol", atol)
    extinction_threshold = limits.extinction_threshold("solver.extinction_threshold", extinction_threshold)
    max_steps = limits.max_steps("solver.max_steps", max_steps)
    threads = check_threads(threads)
    if patients is None:
        patients = range(cohort.size)
    if not isinstance(patients, range) or patients.step != 1 or not 0 <= patients.start <= patients.stop <= cohort.size:
        _fail("patients", f"expected a range of consecutive patient ids in [0, {cohort.size}], got {patients!r}")
    n = len(patients)
    # results are held in memory: refuse a cohort that cannot be before drawing it
    limits.check_memory({"cohort": n * (limits.engine_bytes_per_patient(protocol.n_visits)
                                                  + RESULT_BYTES_PER_PATIENT)},
                        {"cohort": "the cohort size (or the visits: follow_up_days / visit_interval_days); "
                                   "`gvlmodel simulate` streams large cohorts to disk"}, what="this cohort")

    inp = prepare_cohort(cohort, protocol, base, variant, population, rtol, atol, extinction_threshold, max_steps,
                         patients=patients)
    y0 = inp.y0
    measured, res_f, res_i, wall = run_inputs(inp, threads, progress, chunk)

    status = res_i[:, RI.STATUS]
    columns = {
        "patient_id": np.arange(patients.start, patients.stop),
        "transplant": np.full(n, cohort.transplant),
        "start": np.full(n, cohort.start, dtype=object),
        "relapse_type": inp.relapse_types,
        "bcr_abl_start_percent": inp.bcr_abl_start,
        **outcome_columns(res_f, res_i, inp.would_stop),
        "solver_message": status_messages(status),
        "n_steps": res_i[:, RI.N_STEPS],
        "n_rhs": res_i[:, RI.N_RHS],
    }
    visit_days = np.arange(protocol.n_visits + 1) * protocol.visit_interval_days
    return CohortResult(columns=columns, measured=measured, visit_days=visit_days,
                        patient_parameters=inp.varied, y0=y0, cohort=cohort,
                        protocol=protocol, variant=variant, base_parameters=base,
                        solver_options={"rtol": rtol, "atol": atol, "extinction_threshold": extinction_threshold,
                                        "max_steps": max_steps},
                        wall_s=wall, threads=threads)


def simulate_replicates(cohort: CohortSpec, protocol: Protocol, parameter_sets, populations, seeds, *,
                        variant="H2", rtol: float = 1e-6, atol: float = 1e-6, extinction_threshold: float = 1.0,
                        max_steps: int = 200_000, threads: int | None = None):
    """:func:`simulate_cohort` of ``cohort`` with seed ``seeds[r]``, parameters ``parameter_sets[r]`` and
    population ``populations[r]`` for every ``r``, as one compiled cohort run.

    Returns ``(columns, engine_s)``: per replicate the engine's outcome columns
    (:func:`outcome_columns`), equal to those of the separate
    :func:`simulate_cohort` runs; ``engine_s`` is the wall time in the engine.
    The populations must vary the same parameters, with the same bounds and correlations.
    """
    variant = parse_variant(variant)
    threads = check_threads(threads)
    if not (len(parameter_sets) == len(populations) == len(seeds)) or not seeds:
        _fail("simulate_replicates", "expected as many parameter sets, populations and seeds (at least one)")
    first = populations[0]
    for pop in populations:
        if not isinstance(pop, Population):
            _fail("populations", f"expected Population items, got {type(pop).__name__}")
        if pop.names != first.names or pop.bounds != first.bounds or pop.correlation != first.correlation:
            _fail("populations", "the replicates' populations must vary the same parameters with the same bounds "
                  "and correlations")
    bases = []
    for params, pop in zip(parameter_sets, populations):
        b = _resolve_base(params)
        b.update(pop.medians)
        bases.append(resolve_parameters(b))
    inp = prepare_replicates(cohort, protocol, bases, [p.sd_log for p in populations],
                             [protocol.stop_uptake] * len(bases), variant, first.names, rtol, atol,
                             extinction_threshold, max_steps, bounds=first.bounds,
                             correlation=first.correlation_matrix(), seeds=seeds, threads=threads)
    with ENGINE_LOCK:
        _, res_f, res_i, wall = run_inputs(inp, threads, progress=False)
    cols = outcome_columns(res_f, res_i, inp.would_stop)
    n = cohort.size
    return [{k: v[r * n:(r + 1) * n] for k, v in cols.items()} for r in range(len(bases))], wall


def status_messages(status: np.ndarray) -> np.ndarray:
    """The solver message of each status code (object array), built once per distinct code."""
    codes, inverse = np.unique(status, return_inverse=True)
    texts = np.array([STATUS_MESSAGES.get(int(s), f"status {int(s)}") for s in codes], dtype=object)
    return texts[inverse.reshape(-1)] if codes.size else np.empty(0, dtype=object)


def outcome_columns(res_f: np.ndarray, res_i: np.ndarray, would_stop: np.ndarray) -> dict[str, np.ndarray]:
    """The per-patient outcome columns of :attr:`CohortResult.columns` that come from the engine's results."""
    return {
        "reached_cmr": res_i[:, RI.REACHED_CMR].astype(bool),
        "days_to_cmr": res_f[:, RF.DAYS_TO_CMR],
        "escalated": res_i[:, RI.ESCALATED].astype(bool),
        "days_to_escalation": res_f[:, RF.T_ESCALATE],
        "would_stop": would_stop,
        "stopped": res_i[:, RI.STOPPED].astype(bool),
        "stop_day": res_f[:, RF.T_STOP],
        "days_on_im_at_stop": res_f[:, RF.DAYS_ON_IM_AT_STOP],
        "lost_cmr": res_i[:, RI.LOST_CMR].astype(bool),
        "days_stop_to_loss": res_f[:, RF.DAYS_STOP_TO_LOSS],
        "restarted": res_i[:, RI.RESTARTED].astype(bool),
        "restart_day": res_f[:, RF.T_RESTART],
        "eradicated": res_i[:, RI.ERADICATED].astype(bool),
        "days_to_eradication": res_f[:, RF.T_ERADICATED],
        "final_bcr_abl_percent": res_f[:, RF.FINAL_BCR_ABL],
        "final_lsc": res_f[:, RF.FINAL_LSC],
        "final_effectors": res_f[:, RF.FINAL_EFFECTORS],
        "last_day_reached": res_f[:, RF.T_REACHED],
        "solver_status": res_i[:, RI.STATUS],
    }


#: finest trajectory grid accepted (days); finer adds rows, not information (visits are weeks apart)
MIN_TIME_STEP_DAYS = 0.1


def patient_trajectory(result: CohortResult, i: int, time_step_days: float) -> dict[str, np.ndarray]:
    """Re-simulate patient ``i`` continuously under the dose schedule it received, on a time grid.

    The grid holds every ``time_step_days`` and every visit; ``measured_percent``
    is the PCR result at visits (``nan`` between visits).  Agreement of this
    continuous solve with the visit-by-visit engine is tested.
    """
    from ..model.simulate import simulate

    i = _integer("patient", i, lo=0, hi=result.n - 1)
    time_step_days = _real("time_step_days", time_step_days, lo=MIN_TIME_STEP_DAYS)
    pr = result.protocol
    grid = np.union1d(np.arange(0.0, pr.n_visits * pr.visit_interval_days + 1e-9, time_step_days),
                      result.visit_days)
    so = result.solver_options
    res = simulate(result.patient_params(i), y0=result.y0[i], t_out=grid, schedule=result.dose_schedule(i),
                   variant=result.variant, transplant=result.cohort.transplant, rtol=so["rtol"], atol=so["atol"],
                   extinction_threshold=so["extinction_threshold"], max_steps=so["max_steps"])
    measured = np.full(grid.size, np.nan)
    idx = np.searchsorted(grid, result.visit_days)
    measured[idx] = result.measured[i]
    sched = result.dose_schedule(i)
    starts = np.array([d for d, _ in sched])
    doses = np.array([m for _, m in sched])
    dose = doses[np.searchsorted(starts, grid, side="right") - 1]
    out = {"time_days": grid, "patient_id": np.full(grid.size, int(result.columns["patient_id"][i])),
           "bcr_abl_percent": res.bcr_abl,
           "measured_percent": measured, "dose_mg": dose}
    for s in (State.D, State.Q, State.Y0, State.Y1, State.Y2, State.Y3, State.R0, State.R1, State.Z):
        out[s.name] = res.y[:, s]
    out["solver_status"] = np.full(grid.size, res.status)
    return out
