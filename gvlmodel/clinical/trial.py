"""Virtual trials of the Hess 2005 design: what a fit simulates once per proposed parameter vector.

One virtual trial = the enrolled cohort of the real size (44 transplanted
patients with the real relapse-type mix) run through the Hess protocol, plus a
small non-transplanted comparator that stops a short imatinib course (Hess et al. 2005).
Its statistics are the calibration numbers of ``gvlmodel/data/hess2005.toml``
computed the same way from simulated patients, so the sampling noise of a
44-patient trial is part of the model (a fit never compares percentages of
infinite cohorts with counts of 44).

:class:`FitParameter` maps the quantities a fit estimates onto the model:
population medians of table parameters (log10 scale for log rows), their
between-patient spreads (``sd_<name>``, natural-log SD) and the protocol's
``stop_uptake``.  Priors are uniform over each row's bounds in its scale.
"""
from __future__ import annotations

import math
from dataclasses import MISSING, dataclass, field, fields
from typing import Callable, Mapping

import numpy as np

from .calibration import load_calibration
from .cohort import (DEFAULT_POPULATION_SD, HESS2005_RELAPSE_MIX, CohortSpec, Population, Protocol, population_bounds,
                     relapse_mix, simulate_cohort)
from ..core import limits
from ..core.errors import InputError, boolean, fail, integer, real
from ..model.parameters import PARAMETER_TABLE, Parameter, available_parameter_sets, parameter_set
from ..model.simulate import MAX_DAYS, MAX_DOSE_MG

#: statistics of one virtual trial (fractions keep the denominators of the data; -1 = undefined)
STATISTICS = ("frac_cmr", "frac_stopped", "frac_durable", "median_im_days_durable", "median_im_days_lost",
              "nontx_frac_relapse")
UNDEFINED = -1.0
#: the comparator's stop: all at the end of the course, or by the Hess rule (CMR) within it
COMPARATOR_STOPS = ("after_days", "cmr")

#: quantities a fit can estimate that are not rows of the model's parameter table
STOP_UPTAKE = Parameter(
    "stop_uptake", 1.0, "1", 0.02, 1.0, "linear",
    "fitted; Hess et al., J Clin Oncol 2005 (stopping was optional: 10 of 34 patients in CMR stopped)",
    "probability that a patient who meets the stop rule stops imatinib", "protocol")
SD_UPPER = 2.5


def sd_row(name: str) -> Parameter:
    """The prior row of ``sd_<name>``: natural-log SD of ``name`` between patients, uniform on [0, 2.5]."""
    return Parameter(f"sd_{name}", DEFAULT_POPULATION_SD.get(name, 0.0), "ln units", 0.0, SD_UPPER, "linear",
                     "assumed, weakly informative (2.5 = a 90 % range of about 3,800-fold, room for resistant patients)",
                     f"between-patient natural-log SD of {name}", "population")


@dataclass(frozen=True)
class FitParameter:
    """One estimated quantity: ``key`` (sampler name), what it sets, its prior row and scale."""

    key: str
    kind: str  # "median" | "sd" | "stop_uptake"
    target: str  # table parameter name (median, sd) or "stop_uptake"
    row: Parameter

    @property
    def log(self) -> bool:
        return self.row.scale == "log"

    @property
    def prior_bounds(self) -> tuple[float, float]:
        """Uniform prior bounds in the sampler's space (log10 for log rows)."""
        if self.log:
            return math.log10(self.row.lower), math.log10(self.row.upper)
        return self.row.lower, self.row.upper

    def natural(self, x: float) -> float:
        return 10.0 ** x if self.log else float(x)

    @property
    def label(self) -> str:
        return f"log10 {self.target}" if self.log else self.key


def check_spread_factors(factors, base_set: str, field: str) -> None:
    """An ``sd_<name>`` quantity (a between-patient spread, log-normal) needs a positive median of ``name``:
    the base set's, or one varied with it on a positive range; else an :class:`InputError` naming ``field``
    (its cohorts were refused when drawn, after the run had started)."""
    from ..model.parameters import parameter_set_info, resolve_parameters

    medians = resolve_parameters(parameter_set_info(base_set)["parameters"])
    positive = {f.target for f in factors if f.kind == "median" and f.row.lower > 0}
    for f in factors:
        if f.kind == "sd" and f.target not in positive and not medians[f.target] > 0:
            raise InputError(f"{field}: {f.key}: a between-patient spread needs a positive median, and {f.target} "
                             f"is {medians[f.target]:g} in the set {base_set!r}; vary a positive median of it too, "
                             "or leave out its spread")


def check_ordered_factors(factors, base_set: str, field: str, bounds=None, hint: str = "") -> None:
    """Varied quantities must not let a sample or a patient break the table's order constraints (``r_x > d0``,
    :data:`gvlmodel.model.parameters.ORDERED_PARAMETERS`): a varied median ranges over ``bounds`` (sampler
    space, one pair per factor; default its prior bounds), a spread (an ``sd_<name>`` factor, or one the base
    set's population has) over the table's bounds, everything else is the base set's value.  Else an
    :class:`InputError` naming ``field`` (the run stopped when the first such sample was drawn)."""
    from ..model.parameters import check_ordered_ranges, parameter_ranges, parameter_set_info, resolve_parameters

    info = parameter_set_info(base_set)
    bounds = [f.prior_bounds for f in factors] if bounds is None else bounds
    varied = {f.target: (f.natural(lo), f.natural(hi)) for f, (lo, hi) in zip(factors, bounds) if f.kind == "median"}
    spread = {f.target for f in factors if f.kind == "sd"}
    spread |= {name for name, sd in (info["population"] or {}).items() if sd > 0}
    check_ordered_ranges(parameter_ranges(resolve_parameters(info["parameters"]), varied, spread), field, hint)


def fit_parameter(spec: str) -> FitParameter:
    """``"q_out"`` (population median), ``"sd_q_out"`` (its spread) or ``"stop_uptake"``."""
    if not isinstance(spec, str):
        raise InputError(f"fitted parameter: expected a name, got {spec!r}")
    if spec == "stop_uptake":
        return FitParameter("stop_uptake", "stop_uptake", "stop_uptake", STOP_UPTAKE)
    if spec.startswith("sd_") and spec[3:] in PARAMETER_TABLE:
        return FitParameter(spec, "sd", spec[3:], sd_row(spec[3:]))
    if spec in PARAMETER_TABLE:
        row = PARAMETER_TABLE[spec]
        key = f"log10_{spec}" if row.scale == "log" else spec
        return FitParameter(key, "median", spec, row)
    raise InputError(f"fitted parameter {spec!r}: unknown; allowed: a parameter name (see `gvlmodel parameters`), "
                     "sd_<parameter name>, or stop_uptake")


@dataclass(frozen=True)
class TrialDesign:
    """How a virtual trial is run (defaults: Hess et al. 2005, ``gvlmodel/data/hess2005.toml``; assumptions
    marked in the config)."""

    size: int = 44
    relapse_mix: Mapping[str, float] = field(default_factory=lambda: dict(HESS2005_RELAPSE_MIX))
    follow_up_days: float = 1095.0
    visit_interval_days: float = 30.0
    follow_up_after_stop_days: float = 494.0
    restart: bool = True
    escalated_dose_mg: float = 600.0
    detection_limit: float = 1e-5
    noise_sd_log: float = 0.45
    comparator_size: int = 20
    comparator_course_days: float = 365.0
    comparator_window_days: float = 90.0
    base_set: str = "default"
    rtol: float = 1e-6
    atol: float = 1e-6
    # design choices the review of 2026-11-25 questioned; the defaults are those of the shipped fits
    population_bounds: str = "clip"  # "clip" | "truncate" (cohort.Population.bounds)
    censor_short_follow_up: bool = False  # durable needs follow_up_after_stop_days off IM, else censored
    comparator_stop: str = "after_days"  # "after_days" (all stop at the course's end) | "cmr" (Hess stop rule)
    # the Hess data model's other assumptions (gvlmodel/data/hess2005.toml [assumptions])
    follow_up_min_days: float = 0.0  # 0: every patient followed follow_up_days; > 0: staggered, see follow_up_by_patient
    stop_min_days: float = 180.0  # the stop rule's minimum imatinib duration (Hess 2005: 6 months)

    def __post_init__(self):
        check_design(self.__dict__, lambda key: f"TrialDesign.{key}")

    @classmethod
    def from_table(cls, table, where: str = "[trial]") -> "TrialDesign":
        """A design from a config table; errors name ``f"{where} {key}"`` and the allowed values."""
        if not isinstance(table, Mapping):
            fail(where, f"expected a table of design settings, got {table!r}")
        names = [f.name for f in fields(cls)]
        bad = set(table) - set(names)
        if bad:
            fail(where, f"unknown key(s) {sorted(bad)}; allowed: {', '.join(names)}")
        return cls.from_values(table, lambda key: f"{where} {key}")

    @classmethod
    def from_values(cls, values: Mapping, name: Callable[[str], str]) -> "TrialDesign":
        """A design from ``values`` (the fields given; defaults for the rest), checked with errors named
        ``name(key)`` before it is built (a config spreading the fields over several tables names each)."""
        merged = {f.name: (f.default if f.default is not MISSING else f.default_factory()) for f in fields(cls)}
        merged.update(values)
        check_design(merged, name)
        return cls(**values)

    def protocols(self, stop_uptake: float) -> tuple[Protocol, Protocol]:
        """The Hess protocol and the comparator's short fixed course."""
        stop = "hess2005" if self.stop_min_days == 180.0 else {"min_days": self.stop_min_days}
        hess = Protocol(escalated_dose_mg=self.escalated_dose_mg, stop=stop, restart=self.restart,
                        follow_up_days=self.follow_up_days, visit_interval_days=self.visit_interval_days,
                        detection_limit=self.detection_limit, noise_sd_log=self.noise_sd_log,
                        stop_uptake=stop_uptake)
        comp_stop = {"after_days": self.comparator_course_days} if self.comparator_stop == "after_days" else "hess2005"
        comp = Protocol(escalate=False, stop=comp_stop, restart=False,
                        follow_up_days=self.comparator_course_days + self.comparator_window_days
                        + 2 * self.visit_interval_days,
                        visit_interval_days=self.visit_interval_days, detection_limit=self.detection_limit,
                        noise_sd_log=self.noise_sd_log)
        return hess, comp


def check_design(v: Mapping, name: Callable[[str], str]) -> None:
    """Validate every field of a :class:`TrialDesign` (all keys present in ``v``); ``name(key)`` is the
    field name an error reports (``TrialDesign.size`` for the API, ``[trial] size`` for a config)."""
    limits.cohort_size(name("size"), v["size"])
    relapse_mix(name("relapse_mix"), v["relapse_mix"])
    follow_up = real(name("follow_up_days"), v["follow_up_days"], 0.0, MAX_DAYS, lo_open=True)
    visit = real(name("visit_interval_days"), v["visit_interval_days"], 1.0, follow_up)
    real(name("follow_up_after_stop_days"), v["follow_up_after_stop_days"], 0.0, follow_up, lo_open=True)
    boolean(name("restart"), v["restart"])
    real(name("follow_up_min_days"), v["follow_up_min_days"], 0.0, follow_up)
    real(name("stop_min_days"), v["stop_min_days"], 0.0, follow_up)
    real(name("escalated_dose_mg"), v["escalated_dose_mg"], 0.0, MAX_DOSE_MG, lo_open=True)
    real(name("detection_limit"), v["detection_limit"], 0.0, 1.0, lo_open=True)
    real(name("noise_sd_log"), v["noise_sd_log"], 0.0, 5.0)
    limits.cohort_size(name("comparator_size"), v["comparator_size"], lo=0)
    course = real(name("comparator_course_days"), v["comparator_course_days"], 0.0, MAX_DAYS, lo_open=True)
    window = real(name("comparator_window_days"), v["comparator_window_days"], 0.0, MAX_DAYS, lo_open=True)
    if course + window + 2 * visit > MAX_DAYS:
        fail(name("comparator_window_days"), f"comparator_course_days + comparator_window_days + 2 visit intervals "
             f"must be <= {MAX_DAYS:g} days, got {course + window + 2 * visit:g}")
    base = v["base_set"]
    allowed = available_parameter_sets()
    if not isinstance(base, str) or base not in allowed:
        fail(name("base_set"), f"unknown parameter set {base!r}; allowed: {', '.join(allowed)}")
    limits.rtol(name("rtol"), v["rtol"])
    limits.atol(name("atol"), v["atol"])
    population_bounds(name("population_bounds"), v["population_bounds"])
    boolean(name("censor_short_follow_up"), v["censor_short_follow_up"])
    if v["comparator_stop"] not in COMPARATOR_STOPS:
        fail(name("comparator_stop"), f"unknown value {v['comparator_stop']!r}; allowed: " + ", ".join(COMPARATOR_STOPS))


def base_spreads(base_set: str) -> dict[str, float]:
    """Between-patient natural-log SDs of a virtual trial on ``base_set``: :data:`DEFAULT_POPULATION_SD`
    with the set's own ``[population]`` (a calibrated set's estimated spreads) over them.  Read from the
    set's file each time (a recalibration shipped in the same process is seen), like the set's values."""
    from ..model.parameters import parameter_set_info

    sd = dict(DEFAULT_POPULATION_SD)
    sd.update(parameter_set_info(base_set)["population"] or {})
    return sd


def model_inputs(values: Mapping[str, float], fitted: tuple[FitParameter, ...],
                 base_set: str | Mapping[str, float] = "default", *,
                 population_sd: Mapping[str, float] | None = None, stop_uptake: float = 1.0,
                 population_bounds: str = "clip"):
    """``(parameters, population, stop_uptake)`` from sampler-space ``values`` of the ``fitted`` quantities.

    Quantities not in ``fitted`` keep the values of ``base_set`` (a set name, or
    an already resolved set), the spreads ``population_sd`` (default: the
    set's, :func:`base_spreads`; :data:`DEFAULT_POPULATION_SD` for a resolved
    set) and ``stop_uptake``.
    """
    params = parameter_set(base_set) if isinstance(base_set, str) else dict(base_set)
    if population_sd is None:
        population_sd = base_spreads(base_set) if isinstance(base_set, str) else DEFAULT_POPULATION_SD
    sd = dict(population_sd)
    uptake = real("stop_uptake", stop_uptake, 0.0, 1.0)
    if not isinstance(values, Mapping):
        fail("values", f"expected a mapping of fitted quantity = value, got {type(values).__name__}")
    for fp in fitted:
        if fp.key not in values:
            fail("values", f"missing fitted quantity {fp.key!r}; expected: {', '.join(p.key for p in fitted)}")
        x = real(f"values[{fp.key!r}]", values[fp.key])
        try:
            v = fp.natural(x)
        except OverflowError:
            fail(f"values[{fp.key!r}]", f"log10 value {x:g} is out of range")
        if fp.kind == "stop_uptake":
            v = real(f"values[{fp.key!r}] (stop_uptake, a probability)", v, 0.0, 1.0)
        elif fp.kind == "sd":
            v = real(f"values[{fp.key!r}] (natural-log SD)", v, 0.0, 5.0)
        else:
            v = real(f"values[{fp.key!r}] ({fp.target})", v, 0.0)
        if fp.kind == "median":
            params[fp.target] = v
        elif fp.kind == "sd":
            sd[fp.target] = v
        else:
            uptake = v
    return params, Population(sd_log=sd, bounds=population_bounds), uptake


def run_trial(values: Mapping[str, float], fitted: tuple[FitParameter, ...], variant: str, design: TrialDesign,
              seed: int, *, size: int | None = None, comparator_size: int | None = None, threads: int | None = None):
    """Simulate one virtual trial; returns ``(hess CohortResult, comparator CohortResult or None)``."""
    if not isinstance(design, TrialDesign):
        fail("run_trial design", f"expected a TrialDesign, got {type(design).__name__}")
    seed = limits.seed("run_trial seed", seed)
    if size is not None:
        size = limits.cohort_size("run_trial size", size)
    if comparator_size is not None:
        comparator_size = limits.cohort_size("run_trial comparator_size", comparator_size, lo=0)
    params, population, uptake = model_inputs(values, fitted, design.base_set,
                                              population_bounds=design.population_bounds)
    hess, comp = design.protocols(uptake)
    ss = np.random.SeedSequence(seed)
    s_main, s_comp = (int(s.generate_state(1)[0]) for s in ss.spawn(2))
    n = design.size if size is None else size
    main = simulate_cohort(CohortSpec(size=n, seed=s_main, transplant=True, relapse_mix=design.relapse_mix),
                           hess, params, variant=variant, population=population, rtol=design.rtol, atol=design.atol,
                           max_steps=MAX_STEPS, threads=threads, progress=False)
    n_c = design.comparator_size if comparator_size is None else comparator_size
    other = None
    if n_c > 0:
        other = simulate_cohort(CohortSpec(size=n_c, seed=s_comp, transplant=False, start="diagnosis"), comp,
                                params, variant=variant, population=population, rtol=design.rtol, atol=design.atol,
                                max_steps=MAX_STEPS, threads=threads, progress=False)
    return main, other


#: the solver's step limit per patient in a virtual trial (:func:`simulate_cohort`'s default)
MAX_STEPS = 200_000


@dataclass(frozen=True)
class TrialSpec:
    """One virtual trial of a batch: ``variant``, its ``fitted`` quantities, their sampler-space ``values``
    and the trial ``seed`` (the arguments of :func:`run_trial`)."""

    variant: str
    fitted: tuple[FitParameter, ...]
    values: Mapping[str, float]
    seed: int


class _View:
    """One trial's rows of a batch, with the attributes :func:`statistics` and :func:`diagnostics` read."""

    def __init__(self, columns, n, patient_parameters):
        self.columns, self.n, self.patient_parameters = columns, n, patient_parameters


def simulate_trials(trials, design: TrialDesign, *, threads: int | None = None, diagnostics_too: bool = False,
                    base=None):
    """Many virtual trials at once: ``(rows, engine_s)``, one row per :class:`TrialSpec` in order.

    Each row is :func:`statistics` of the trial (and, with ``diagnostics_too``,
    ``(statistics, diagnostics)``), equal to what :func:`run_trial` gives for the
    same values and seed (:func:`simulate_trial_cohorts`).  Solver failures are
    counted in each row's ``n_solver_failures``.
    """
    cohorts, engine_s = simulate_trial_cohorts(trials, design, threads=threads, base=base)
    rows = []
    for main, other in cohorts:
        st = statistics(main, other, design)
        rows.append((st, diagnostics(main, other, design)) if diagnostics_too else st)
    return rows, engine_s


def simulate_trial_cohorts(trials, design: TrialDesign, *, threads: int | None = None, base=None):
    """The cohorts of many virtual trials at once: ``(cohorts, engine_s)``.

    ``cohorts[j]`` is ``(enrolled, comparator or None)`` for ``trials[j]``, each
    with the ``columns`` (the engine's outcome columns of
    :func:`gvlmodel.clinical.cohort.outcome_columns`), ``n`` and ``patient_parameters`` of
    the :func:`run_trial` cohorts of the same values and seed, equal to them: the
    trials' patients (each trial its own random numbers, drawn from its seed
    exactly as there) are prepared together, vectorised over patients
    (:func:`gvlmodel.clinical.cohort.prepare_replicates` with one seed per trial), and
    every enrolled cohort of the batch is one compiled cohort run, every
    comparator cohort another (:func:`gvlmodel.clinical.cohort.run_inputs`), whatever the
    variants.  ``base``: the resolved base set (read from ``design.base_set``
    when ``None``).  ``engine_s`` is the wall time inside the compiled engine.
    """
    from .cohort import ENGINE_LOCK, check_threads, concat_inputs, outcome_columns, prepare_replicates, run_inputs
    from ..model.parameters import parse_variant, resolve_parameters

    if not isinstance(design, TrialDesign):
        fail("simulate_trials design", f"expected a TrialDesign, got {type(design).__name__}")
    trials = list(trials)
    if not trials:
        return [], 0.0
    threads = check_threads(threads)
    base = parameter_set(design.base_set) if base is None else base
    spreads = base_spreads(design.base_set)
    hess, comp = design.protocols(1.0)  # stop uptake acts through each patient's stop decision
    n, n_c = design.size, design.comparator_size
    groups: dict[str, list[int]] = {}
    for j, tr in enumerate(trials):
        if not isinstance(tr, TrialSpec):
            fail("simulate_trials trials", f"expected TrialSpec items, got {type(tr).__name__}")
        groups.setdefault(parse_variant(tr.variant).value, []).append(j)
    order = [j for js in groups.values() for j in js]  # rows of the stacked cohorts, group by group
    mains, comps, names_of = [], [], {}
    for v, js in groups.items():
        bases, sds, ups, s_main, s_comp = [], [], [], [], []
        for j in js:
            tr = trials[j]
            params, population, uptake = model_inputs(tr.values, tr.fitted, base, population_sd=spreads,
                                                      population_bounds=design.population_bounds)
            bases.append(resolve_parameters(params))
            sds.append(population.sd_log)
            ups.append(uptake)
            ss = np.random.SeedSequence(integer("simulate_trials seed", tr.seed, 0))
            a, b = (int(x.generate_state(1)[0]) for x in ss.spawn(2))
            s_main.append(a)
            s_comp.append(b)
        names = tuple(sds[0])
        if any(tuple(sd) != names for sd in sds):
            fail("simulate_trials trials", f"trials of variant {v} vary different parameters between patients")
        names_of[v] = names
        args = (parse_variant(v), names, design.rtol, design.atol, 1.0, MAX_STEPS)
        mains.append(prepare_replicates(CohortSpec(size=n, seed=0, transplant=True, relapse_mix=design.relapse_mix),
                                        hess, bases, sds, ups, *args, bounds=design.population_bounds, seeds=s_main,
                                        threads=threads))
        if n_c > 0:
            comps.append(prepare_replicates(CohortSpec(size=n_c, seed=0, transplant=False, start="diagnosis"), comp,
                                            bases, sds, [comp.stop_uptake] * len(js), *args,
                                            bounds=design.population_bounds, seeds=s_comp, threads=threads))
    engine_s = 0.0
    results = []
    for parts in (mains, comps):
        if not parts:
            results.append(None)
            continue
        inp = concat_inputs(parts)
        with ENGINE_LOCK:
            _, res_f, res_i, wall = run_inputs(inp, threads, progress=False)
        engine_s += wall
        results.append((outcome_columns(res_f, res_i, inp.would_stop), inp.varied))
    cohorts = [None] * len(trials)
    for r, j in enumerate(order):
        v = parse_variant(trials[j].variant).value

        def view(res, size):
            cols, varied = res
            sl = slice(r * size, (r + 1) * size)
            return _View({k: c[sl] for k, c in cols.items()}, size,
                         {k: varied[k][sl] for k in names_of[v]})

        cohorts[j] = (view(results[0], n), view(results[1], n_c) if results[1] is not None else None)
    return cohorts, engine_s


#: seed of the fixed permutation that spreads staggered follow-up over a trial's patients
FOLLOW_UP_SEED = 2005


def follow_up_by_patient(design: TrialDesign, n: int) -> np.ndarray:
    """Each enrolled patient's follow-up from enrolment (days).

    ``follow_up_min_days = 0``: everybody is followed ``follow_up_days``.
    Otherwise enrolment is staggered and the trial ends on one date, so
    follow-up is spread evenly between ``follow_up_min_days`` and
    ``follow_up_days`` (uniform accrual): patient ``i`` gets the quantile
    ``(k_i + 1/2) / n`` of that range, ``k`` a fixed permutation (seed
    :data:`FOLLOW_UP_SEED`) so that follow-up is unrelated to the relapse type
    or any drawn parameter, and the same in every virtual trial (common random
    numbers for the fit).
    """
    if design.follow_up_min_days <= 0.0:
        return np.full(n, float(design.follow_up_days))
    k = np.random.default_rng(FOLLOW_UP_SEED).permutation(n)
    u = (k + 0.5) / n
    return design.follow_up_min_days + (design.follow_up_days - design.follow_up_min_days) * u


def outcome_groups(c: Mapping[str, np.ndarray], design: TrialDesign) -> dict[str, np.ndarray]:
    """Masks over a cohort's ``columns``: ``ok`` (solved), ``cmr`` (reached CMR, confirmed within
    follow-up), ``stopped``, ``lost``, ``short_follow_up`` (followed for less than
    ``follow_up_after_stop_days`` after the stop), ``censored`` and ``durable``; and ``follow_up``
    (days, :func:`follow_up_by_patient`).

    Fixed follow-up (``follow_up_min_days = 0``): a loss counts if it happens
    within ``follow_up_after_stop_days`` of the stop.  Staggered follow-up: what
    each patient shows by the end of their own follow-up (CMR confirmed, stop,
    loss), whatever ``follow_up_after_stop_days``.

    With ``design.censor_short_follow_up`` a stopped patient without a loss who
    was followed for less than ``follow_up_after_stop_days`` after the stop is
    censored (neither durable nor lost); otherwise nobody is censored and every
    stopped patient without a loss is durable.
    """
    ok = c["solver_status"] == 0
    n = len(ok)
    follow = follow_up_by_patient(design, n)
    if design.follow_up_min_days <= 0.0:
        cmr = c["reached_cmr"] & ok
        stopped = c["stopped"] & ok
        lost = c["lost_cmr"] & stopped & (c["days_stop_to_loss"] <= design.follow_up_after_stop_days)
        seen = c["last_day_reached"]
    else:
        with np.errstate(invalid="ignore"):
            # days_to_cmr is the first of the three negatives; CMR is confirmed two visits later
            cmr = c["reached_cmr"] & ok & (c["days_to_cmr"] + 2 * design.visit_interval_days <= follow)
            stopped = c["stopped"] & ok & (c["stop_day"] <= follow)
            lost = c["lost_cmr"] & stopped & (c["stop_day"] + c["days_stop_to_loss"] <= follow)
        seen = np.minimum(c["last_day_reached"], follow)
    short = (seen - c["stop_day"]) < design.follow_up_after_stop_days
    censored = stopped & ~lost & short if design.censor_short_follow_up else np.zeros_like(stopped)
    return {"ok": ok, "cmr": cmr, "stopped": stopped, "lost": lost, "short_follow_up": short, "censored": censored,
            "durable": stopped & ~lost & ~censored, "follow_up": seen}


def comparator_stopped(cc: Mapping[str, np.ndarray], design: TrialDesign) -> np.ndarray:
    """Comparator patients whose stop counts: solved and stopped (``comparator_stop = "cmr"``: by the
    Hess rule within ``comparator_course_days``, so that the relapse window is observed)."""
    st = cc["stopped"] & (cc["solver_status"] == 0)
    if design.comparator_stop == "cmr":
        st = st & (cc["stop_day"] <= design.comparator_course_days)
    return st


def statistics(main, comparator, design: TrialDesign) -> dict[str, float]:
    """The calibration statistics of one virtual trial (``UNDEFINED`` where a group is empty).

    Solver failures count as patients not reaching CMR and are returned in
    ``n_solver_failures`` (never dropped silently).  ``frac_durable`` is over
    the stopped patients who are not censored (:func:`outcome_groups`).
    """
    c = main.columns
    g = outcome_groups(c, design)
    ok, stopped, lost, durable = g["ok"], g["stopped"], g["lost"], g["durable"]
    n, n_stop = main.n, int(stopped.sum())
    n_judged = int((durable | lost).sum())

    def med(sel):
        return float(np.median(c["days_on_im_at_stop"][sel])) if sel.any() else UNDEFINED

    out = {
        "frac_cmr": float(g["cmr"].sum()) / n,
        "frac_stopped": n_stop / n,
        "frac_durable": float(durable.sum()) / n_judged if n_judged else UNDEFINED,
        "median_im_days_durable": med(durable),
        "median_im_days_lost": med(lost),
        "nontx_frac_relapse": UNDEFINED,
        "n_solver_failures": float((~ok).sum()),
    }
    if comparator is not None:
        cc = comparator.columns
        okc = cc["solver_status"] == 0
        st = comparator_stopped(cc, design)
        rel = st & cc["lost_cmr"] & (cc["days_stop_to_loss"] <= design.comparator_window_days)
        out["nontx_frac_relapse"] = float(rel.sum()) / st.sum() if st.any() else UNDEFINED
        out["n_solver_failures"] += float((~okc).sum())
    return out


#: counts behind the statistics that the statistics themselves do not show (:func:`diagnostics`)
DIAGNOSTICS = ("n_stopped", "n_lost", "n_lost_clone_extinct_at_stop", "n_durable", "n_durable_short_follow_up",
               "n_patients", "n_patients_at_bound", "nontx_n_stopped", "nontx_n_cmr_by_stop")


def diagnostics(main, comparator, design: TrialDesign) -> dict:
    """Counts that qualify the statistics of one virtual trial (the fit report pools them over draws).

    * ``n_lost_clone_extinct_at_stop``: patients counted as losing CMR whose
      leukemic stem-cell clone was already extinct at the stop; their positive
      samples come from long-lived progenitors washing out after imatinib is
      withdrawn (a confirmed positive, as the data define a loss, but not a
      stem-cell relapse);
    * ``n_durable_short_follow_up``: patients counted durable with less than
      ``follow_up_after_stop_days`` of follow-up after the stop (censored by
      the end of the trial, so durable by default);
    * ``n_patients_at_bound`` / ``at_bound``: patients with a between-patient
      parameter clipped to its table bound (per parameter in ``at_bound``);
    * ``nontx_n_cmr_by_stop``: comparator patients who had reached CMR by
      their stop (the comparator statistic says nothing when this is 0).
    """
    c = main.columns
    g = outcome_groups(c, design)
    stopped, lost, short = g["stopped"], g["lost"], g["short_follow_up"]
    durable = stopped & ~lost  # censored or not: the diagnostic counts the short follow-ups among them
    extinct_at_stop = c["eradicated"] & (c["days_to_eradication"] <= c["stop_day"])
    at_bound = {}
    any_bound = np.zeros(main.n, dtype=bool)
    for name, v in main.patient_parameters.items():
        row = PARAMETER_TABLE[name]
        hit = (v <= row.lower) | (v >= row.upper)
        at_bound[name] = int(hit.sum())
        any_bound |= hit
    out = {"n_stopped": int(stopped.sum()), "n_lost": int(lost.sum()),
           "n_lost_clone_extinct_at_stop": int((lost & extinct_at_stop).sum()),
           "n_durable": int(durable.sum()), "n_durable_short_follow_up": int((durable & short).sum()),
           "n_patients": int(main.n), "n_patients_at_bound": int(any_bound.sum()), "at_bound": at_bound,
           "median_follow_up_after_stop_days": (float(np.median((g["follow_up"] - c["stop_day"])[stopped]))
                                                if stopped.any() else UNDEFINED),
           "nontx_n_stopped": 0, "nontx_n_cmr_by_stop": 0}
    if comparator is not None:
        cc = comparator.columns
        st = comparator_stopped(cc, design)
        out["nontx_n_stopped"] = int(st.sum())
        # days_to_cmr is the first of the three negatives; CMR is confirmed two visits later
        confirmed = cc["days_to_cmr"] + 2 * design.visit_interval_days
        out["nontx_n_cmr_by_stop"] = int((st & cc["reached_cmr"] & (confirmed <= cc["stop_day"])).sum())
    return out


def observed(data: dict | None = None) -> dict[str, float]:
    """The Hess data in the form of :func:`statistics`."""
    d = load_calibration() if data is None else data
    it = d["items"]
    return {
        "frac_cmr": it["reached_cmr"]["k"] / it["reached_cmr"]["n"],
        "frac_stopped": it["stopped"]["k"] / it["stopped"]["n"],
        "frac_durable": it["durable_cmr_after_stop"]["k"] / it["durable_cmr_after_stop"]["n"],
        "median_im_days_durable": float(it["im_days_at_stop_durable"]["median_days"]),
        "median_im_days_lost": float(it["im_days_at_stop_lost"]["median_days"]),
        "nontx_frac_relapse": float(it["nontransplanted_relapse_days"]["fraction"]),
    }
