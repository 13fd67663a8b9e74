"""Global and local sensitivity of clinical outcomes: sample -> evaluate -> analyze (SALib).

A study is a config (``experiments/sensitivity_hess2005.toml``) and an output
folder; every step writes its result there, and every later run on the same
folder reuses what exists:

* **sample** (SALib): Sobol' (Saltelli's scheme, first and total order) and
  Morris (elementary effects) designs over the *factors*: fitted quantities
  (population medians, their spreads ``sd_<name>``, ``stop_uptake``; the same
  :class:`gvlmodel.clinical.trial.FitParameter` rows a fit uses), uniform in the
  sampler's space (log10 for log-scale rows) over either the parameter table's
  bounds (``ranges = "table"``) or the posterior's 5-95 % range of the fitted
  set (``ranges = "posterior"``).  -> ``samples/<method>.npy``, ``problem.json``.
* **evaluate**: each sample is a virtual cohort (``cohort.size`` patients, the
  Hess protocol) run by the compiled engine.  All samples share the patients'
  random numbers (common random numbers, :func:`gvlmodel.clinical.cohort.prepare_replicates`),
  so an output is a deterministic function of the factors and the indices
  measure parameters, not Monte Carlo noise.  Samples are evaluated in chunks;
  each finished chunk is a checkpoint file ``evaluations/<method>/chunk_NNNNN.npz``
  written atomically, so a killed run resumes where it stopped and gives
  identical results.  Chunks run in-process (numba threads) or, with
  ``scheduler``, on a Dask distributed cluster; a chunk's result depends only
  on its samples, so both give identical numbers.
* **analyze** (SALib): Sobol' S1/ST with bootstrap confidence intervals, Morris
  mu*/sigma with bootstrap intervals, the convergence of the Sobol' indices
  with the number of base samples (a warning where an interval is wider than
  ``warn_conf_width``), and time-resolved Sobol' indices of the cohort's mean
  log10 BCR-ABL at the visits.  Re-running with different analysis settings
  re-analyses the saved evaluations without running the model.
* **local**: normalised sensitivity coefficients ``S = d ln Y / d ln theta``
  at the fitted point by central differences with a step study
  (``theta * exp(+-h)`` for log-scale rows, ``theta * (1 +- h)`` otherwise;
  every ``h`` is reported, the selected one is ``local.step``).

Outputs (per cohort; definitions shared with the fit where they overlap):

``p_cmr``
    fraction of patients who reach CMR (three consecutive negative samples).
``t_cmr_days``
    restricted mean days to CMR: patients who never reach it count the whole
    follow-up (always defined).
``p_durable``
    fraction of stopped patients who keep CMR for ``follow_up_after_stop_days``
    after a Hess stop (undefined when nobody stops).
``t_loss_days``
    restricted mean days from stop to confirmed loss of CMR among stopped
    patients, censored at the end of follow-up.
``min_im_days``
    the shortest fixed imatinib course (days; stop after ``T`` days whatever the
    response, no restart) after which at least ``min_im.threshold`` of stopped
    patients stay PCR-negative for ``min_im.window_days``; linear interpolation
    between the grid ``min_im.stop_days``; if no course on the grid reaches it
    the value is the last grid point and the sample is counted as censored.
``log10_bcr_abl_<day>``
    (time-resolved) mean over patients of log10 measured BCR-ABL % at visit
    ``day``, undetectable samples at the detection limit.

Solver failures are counted per sample (``n_solver_failures``) and reported;
failed patients count as not reaching CMR (as in the fit).
"""
from __future__ import annotations

import hashlib
import json
import math
import shutil
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..core import limits
from ..clinical.cohort import ENGINE_LOCK, CohortSpec, Protocol, prepare_replicates, run_inputs
from ..core.errors import InputError, check_tables, fail, output_folder, read_toml
from ..core.errors import boolean as _bool
from ..core.errors import integer as _int
from ..core.errors import real as _num
from ..model.indices import RF, RI
from ..model.parameters import parameter_set_info, parse_variant
from ..core.provenance import (atomic_write_bytes, atomic_write_json, atomic_write_text, begin_outputs,
                               entry_in_the_way, finish_outputs, provenance_of)
from ..model.simulate import MAX_DAYS
from ..clinical.trial import (FitParameter, TrialDesign, check_ordered_factors, check_spread_factors, fit_parameter,
                              model_inputs)

#: finest Morris grid accepted (typical grids have 4-10 levels; a finer one only shrinks the elementary step)
MORRIS_MAX_LEVELS = 1000

OUTPUTS = ("p_cmr", "t_cmr_days", "p_durable", "t_loss_days", "min_im_days")
OUTPUT_LABELS = {
    "p_cmr": "probability of CMR",
    "t_cmr_days": "time to CMR (restricted mean, days)",
    "p_durable": "probability of durable CMR after a Hess stop",
    "t_loss_days": "time from stop to loss of CMR (restricted mean, days)",
    "min_im_days": "minimal IM duration for durable control (days)",
}
METHODS = ("sobol", "morris")
CONFIG_TABLES = {
    "study": {"name", "seed", "methods", "outputs", "time_resolved", "chunk_samples", "threads"},
    "parameters": {"set", "variant", "factors", "ranges", "bounds"},
    "cohort": {"size", "seed", "relapse_mix"},
    "treatment": {"follow_up_days", "visit_interval_days", "follow_up_after_stop_days", "restart",
                  "escalated_dose_mg", "stop_uptake", "detection_limit", "noise_sd_log"},
    "min_im": {"stop_days", "window_days", "threshold", "transplant"},
    "sobol": {"n", "bootstrap", "conf_level", "convergence", "warn_conf_width"},
    "morris": {"trajectories", "levels", "bootstrap", "conf_level"},
    "local": {"enabled", "steps", "step", "cohort_size"},
    "quick": {"sobol_n", "morris_trajectories", "cohort_size", "local_cohort_size", "chunk_samples"},
}


# --------------------------------------------------------------------------
# configuration
# --------------------------------------------------------------------------
def _names(name, v, allowed):
    if not isinstance(v, list) or not v or not all(isinstance(x, str) for x in v):
        raise InputError(f"{name}: expected a non-empty list; allowed values: {', '.join(allowed)}")
    bad = [x for x in v if x not in allowed]
    if bad:
        raise InputError(f"{name}: unknown value(s) {bad}; allowed: {', '.join(allowed)}")
    if len(set(v)) != len(v):
        raise InputError(f"{name}: duplicate values")
    return tuple(v)


def _pow2(name, v) -> int:
    n = _int(name, v, 2)
    if n & (n - 1):
        fail(name, f"expected a power of 2 >= 2 (Sobol' sequences are balanced there), got {n}")
    return n


def _positive_int(name, v) -> int:
    return _int(name, v, 1)


#: bytes per (base sample x resample) of SALib's Sobol' bootstrap (an index array and the resampled
#: A, B, AB columns with their temporaries) and per (trajectory x resample) of Morris'
SOBOL_BOOTSTRAP_BYTES = 48.0
MORRIS_BOOTSTRAP_BYTES = 24.0


def _sized(quick: bool, qt: dict, qkey: str, name: str, full, check):
    """Validate the full-size value ``full`` (field ``name``) and, where given, ``[quick] qkey`` (even
    without ``quick``: a bad value is an error whichever size runs); return the one in use."""
    v = check(name, full)
    if qkey in qt:
        qv = check(f"[quick] {qkey}", qt[qkey])
        if quick:
            v = qv
    return v


#: the TrialDesign fields a study config sets, and the table each lives in
DESIGN_TABLES = {"size": "cohort", "relapse_mix": "cohort", "follow_up_days": "treatment",
                 "visit_interval_days": "treatment", "follow_up_after_stop_days": "treatment",
                 "restart": "treatment", "escalated_dose_mg": "treatment", "detection_limit": "treatment",
                 "noise_sd_log": "treatment"}


@dataclass(frozen=True)
class StudyConfig:
    """A validated sensitivity study (see ``experiments/sensitivity_hess2005.toml``)."""

    name: str
    seed: int
    methods: tuple[str, ...]
    outputs: tuple[str, ...]
    time_resolved: bool
    set_name: str
    variant: str
    factors: tuple[FitParameter, ...]
    bounds: tuple[tuple[float, float], ...]  # sampler space
    ranges: str
    design: TrialDesign
    cohort_seed: int
    stop_uptake: float
    min_im_stop_days: tuple[float, ...]
    min_im_window_days: float
    min_im_threshold: float
    min_im_transplant: bool
    sobol_n: int
    sobol_bootstrap: int
    conf_level: float
    convergence: tuple[int, ...]
    warn_conf_width: float
    morris_trajectories: int
    morris_levels: int
    morris_bootstrap: int
    morris_conf_level: float
    local: bool
    local_steps: tuple[float, ...]
    local_step: float
    local_cohort_size: int
    chunk_samples: int
    threads: int | None
    raw: dict = field(repr=False, default_factory=dict)

    @property
    def problem(self) -> dict:
        """The SALib problem spec (sampler space: log10 for log-scale rows)."""
        return {"num_vars": len(self.factors), "names": [f.key for f in self.factors],
                "bounds": [list(b) for b in self.bounds],
                "labels": [f.label for f in self.factors], "targets": [f.target for f in self.factors],
                "units": [f.row.unit for f in self.factors], "sources": [f.row.source for f in self.factors],
                "ranges": self.ranges}

    def _key(self, table_key: str, quick_key: str) -> str:
        """The config key a size in use comes from (``[quick] quick_key`` when the quick table set it)."""
        if self.raw.get("quick") and quick_key in self.raw.get("config", {}).get("quick", {}):
            return f"[quick] {quick_key}"
        return table_key

    def _rows(self) -> dict[str, int]:
        d = len(self.factors)
        rows = {}
        if "sobol" in self.methods:
            rows["sobol"] = self.sobol_n * (d + 2)
        if "morris" in self.methods:
            rows["morris"] = self.morris_trajectories * (d + 1)
        return rows

    def memory_estimate(self) -> dict[str, float]:
        """Rough peak memory (bytes): the sample and output matrices, one chunk of cohorts in the engine,
        the bootstrap of the analysis."""
        hess, _ = self.design.protocols(self.stop_uptake)
        n_out = len(self.outputs) + 2 + (hess.n_visits // 3 + 1 if self.time_resolved else 0)
        d = len(self.factors)
        rows = self._rows()
        samples = 3.0 * max(rows.values(), default=0) * (d + n_out) * 8.0  # X, Y and their saved copies
        visits = max([hess.n_visits] + [int((t + self.min_im_window_days) / self.design.visit_interval_days)
                                         for t in self.min_im_stop_days])
        patients = self.chunk_samples * max(self.design.size, self.local_cohort_size if self.local else 0)
        engine = 2.0 * patients * limits.engine_bytes_per_patient(visits)
        boot = max(SOBOL_BOOTSTRAP_BYTES * self.sobol_n * self.sobol_bootstrap if "sobol" in self.methods else 0.0,
                   MORRIS_BOOTSTRAP_BYTES * self.morris_trajectories * self.morris_bootstrap
                   if "morris" in self.methods else 0.0)
        return {"samples": samples, "engine": engine, "bootstrap": boot}

    def simulation_estimate(self) -> tuple[int, float]:
        """``(patient-runs, seconds)`` of the evaluations and their rough engine time."""
        per = self.design.size * ((1 if any(o != "min_im_days" for o in self.outputs) or self.time_resolved else 0)
                                  + (len(self.min_im_stop_days) if "min_im_days" in self.outputs else 0))
        runs = sum(self._rows().values()) * per
        if self.local:
            runs += (1 + 2 * len(self.factors) * len(self.local_steps)) * self.local_cohort_size
        return runs, limits.patients_time(runs, self.threads)

    def check_resources(self, available: float | None = None) -> None:
        """Refuse a study whose :meth:`memory_estimate` exceeds what this machine has (exit 2, before any
        write), naming the key to reduce.  The ``[quick]`` sizes are checked too, whichever run this is (as
        their values are validated)."""
        if not self.raw.get("quick") and self.raw.get("config", {}).get("quick"):
            parse_config(self.raw["config"], quick=True).check_resources(available)
        rows = self._rows()
        big = max(rows, key=rows.get) if rows else "sobol"
        sample_key = (self._key("[sobol] n", "sobol_n") if big == "sobol"
                      else self._key("[morris] trajectories", "morris_trajectories"))
        sobol_boot = "sobol" in self.methods and (
            "morris" not in self.methods
            or SOBOL_BOOTSTRAP_BYTES * self.sobol_n * self.sobol_bootstrap
            >= MORRIS_BOOTSTRAP_BYTES * self.morris_trajectories * self.morris_bootstrap)
        limits.check_memory(self.memory_estimate(),
                            {"samples": sample_key,
                             "engine": f"{self._key('[study] chunk_samples', 'chunk_samples')} or "
                                       + (self._key("[local] cohort_size", "local_cohort_size")
                                          if self.local and self.local_cohort_size > self.design.size
                                          else self._key("[cohort] size", "cohort_size")),  # the larger cohort
                             "bootstrap": f"[sobol] bootstrap or {self._key('[sobol] n', 'sobol_n')}" if sobol_boot
                             else "[morris] bootstrap or "
                                  f"{self._key('[morris] trajectories', 'morris_trajectories')}"},
                            available, what="this study")

    def model_digest(self) -> str:
        """Hash of everything that changes model evaluations (not the analysis settings): the config, the
        sampled problem (its bounds come from the parameter set's posterior), the parameter set itself
        and the package's source (the equations and the solver), so that saved samples and evaluations
        are resumed only by the very study that made them."""
        from ..core._jit import source_digest

        keep = {k: v for k, v in self.raw["config"].items() if k not in ("sobol", "morris", "local", "quick")}
        keep["sobol_n"], keep["morris"] = self.sobol_n, [self.morris_trajectories, self.morris_levels]
        keep["local"] = [self.local, list(self.local_steps), self.local_cohort_size]
        keep["quick_cohort"] = [self.design.size]
        keep["problem"] = self.problem
        keep["parameter_set"] = parameter_set_info(self.set_name)
        keep["package"] = source_digest()
        return hashlib.sha256(json.dumps(keep, sort_keys=True, default=str).encode()).hexdigest()[:16]


def posterior_bounds(set_name: str, factors, q=(0.05, 0.95)) -> list[tuple[float, float]]:
    """Each factor's posterior ``q`` range (sampler space) from a fitted set's posterior sample."""
    info = parameter_set_info(set_name)
    post = info["posterior"]
    if not post:
        raise InputError(f"[parameters] ranges = \"posterior\": set {set_name!r} has no posterior sample; "
                         "use a fitted set (see `gvlmodel parameters --sets`) or ranges = \"table\"")
    keys = list(post["keys"])
    sample = np.asarray(post["sample"], dtype=float)
    out = []
    for f in factors:
        if f.key not in keys:
            raise InputError(f"[parameters] factors: {f.key!r} was not fitted in set {set_name!r} so it has no "
                             f"posterior range; fitted: {', '.join(keys)} (or give [parameters.bounds] {f.key})")
        lo, hi = np.quantile(sample[:, keys.index(f.key)], q)
        if hi <= lo:
            lo, hi = lo - 1e-6, hi + 1e-6
        out.append((float(lo), float(hi)))
    return out


def parse_config(cfg: dict, *, quick: bool = False, source: str = "config") -> StudyConfig:
    """Validate a sensitivity config; ``quick`` applies its ``[quick]`` table."""
    check_tables(cfg, CONFIG_TABLES, source)
    st = cfg.get("study", {})
    seed, name = limits.run_identity(st, "study", "sensitivity")
    methods = _names("[study] methods", st.get("methods", list(METHODS)), METHODS)
    outputs = _names("[study] outputs", st.get("outputs", list(OUTPUTS)), OUTPUTS)
    time_resolved = _bool("[study] time_resolved", st.get("time_resolved", True))
    qt = cfg.get("quick", {})

    pa = cfg.get("parameters", {})
    from ..model.parameters import available_parameter_sets
    from ..clinical.scenario import default_scenario_set

    set_name = pa.get("set", default_scenario_set())
    if set_name not in available_parameter_sets():
        raise InputError(f"[parameters] set: unknown set {set_name!r}; allowed: {', '.join(available_parameter_sets())}")
    info = parameter_set_info(set_name)
    try:
        variant = parse_variant(pa.get("variant", info["variant"] or "H2")).value
    except (InputError, TypeError) as exc:
        raise InputError(f"[parameters] {exc}" if str(exc).startswith("variant:") else
                         f"[parameters] variant: {exc}") from None
    if "factors" not in pa:
        raise InputError("[parameters] factors: required, a list of parameter names, sd_<name> or stop_uptake")
    if not isinstance(pa["factors"], list) or not pa["factors"]:
        raise InputError("[parameters] factors: expected a non-empty list of parameter names, sd_<name> or stop_uptake")
    try:
        factors = tuple(fit_parameter(f) for f in pa["factors"])
    except InputError as exc:
        raise InputError(f"[parameters] factors: {exc}") from None
    if len({f.key for f in factors}) != len(factors):
        raise InputError("[parameters] factors: duplicate names")
    check_spread_factors(factors, set_name, "[parameters] factors")
    ranges = pa.get("ranges", "posterior")
    if ranges not in ("posterior", "table"):
        raise InputError(f"[parameters] ranges: unknown {ranges!r}; allowed: posterior, table")
    explicit = pa.get("bounds", {})
    if not isinstance(explicit, dict):
        raise InputError("[parameters] bounds: expected a table of factor key = [low, high] (sampler space)")
    keys = [f.key for f in factors]
    bad = set(explicit) - set(keys)
    if bad:
        raise InputError(f"[parameters] bounds: unknown factor(s) {sorted(bad)}; allowed: {', '.join(keys)}")
    need_post = [f for f in factors if f.key not in explicit]
    base_bounds = {}
    if ranges == "posterior" and need_post:
        base_bounds = dict(zip([f.key for f in need_post], posterior_bounds(set_name, need_post)))
    bounds = []
    for f in factors:
        plo, phi = f.prior_bounds
        if f.key in explicit:
            b = explicit[f.key]
            if not isinstance(b, list) or len(b) != 2:
                raise InputError(f"[parameters] bounds.{f.key}: expected [low, high] in the sampler's space")
            lo = _num(f"[parameters] bounds.{f.key}[0]", b[0], plo, phi)
            hi = _num(f"[parameters] bounds.{f.key}[1]", b[1], plo, phi)
            if hi <= lo:
                raise InputError(f"[parameters] bounds.{f.key}: low {lo} must be below high {hi}")
            bounds.append((lo, hi))
        elif ranges == "posterior":
            bounds.append(base_bounds[f.key])
        else:
            bounds.append((plo, phi))
    check_ordered_factors(factors, set_name, "[parameters] factors", bounds,
                          "narrow them with [parameters] bounds (sampler space: log10 for log-scale rows), "
                          "or vary only one of the two")

    co = cfg.get("cohort", {})
    tr = cfg.get("treatment", {})
    tables = {"cohort": co, "treatment": tr}
    design_kw = {k: tables[t][k] for k, t in DESIGN_TABLES.items() if k in tables[t]}
    design_kw.update(size=_sized(quick, qt, "cohort_size", "[cohort] size", co.get("size", 200), limits.cohort_size),
                     comparator_size=0, base_set=set_name)
    design = TrialDesign.from_values(
        design_kw, lambda key: f"[{DESIGN_TABLES.get(key.split('.')[0], 'treatment')}] {key}")
    stop_uptake = _num("[treatment] stop_uptake", tr.get("stop_uptake", 1.0), 0.0, 1.0)
    try:  # the protocols and the cohort take the checked values; this guards against checks they add
        design.protocols(stop_uptake)
        CohortSpec(size=design.size, seed=0, relapse_mix=design.relapse_mix)
    except (InputError, TypeError) as exc:
        raise InputError(f"[cohort]/[treatment]: {exc}") from None

    mi = cfg.get("min_im", {})
    stop_days = mi.get("stop_days", [180, 365, 730, 1095, 1460])
    if not isinstance(stop_days, list) or len(stop_days) < 2:
        raise InputError("[min_im] stop_days: expected a list of at least two increasing course lengths (days)")
    stop_days = tuple(_num("[min_im] stop_days", d, 0.0, MAX_DAYS, lo_open=True) for d in stop_days)
    if any(b <= a for a, b in zip(stop_days, stop_days[1:])):
        raise InputError("[min_im] stop_days: must be strictly increasing")

    so = cfg.get("sobol", {})
    sobol_n = _sized(quick, qt, "sobol_n", "[sobol] n", so.get("n", 256), _pow2)
    conv = so.get("convergence", [max(2, sobol_n // 8), max(2, sobol_n // 4), max(2, sobol_n // 2), sobol_n])
    if not isinstance(conv, list) or not conv:
        raise InputError("[sobol] convergence: expected a list of base-sample sizes (powers of 2, <= n)")
    conv = tuple(sorted({min(_int("[sobol] convergence", c, 2), sobol_n) for c in conv} | {sobol_n}))
    if any(c & (c - 1) for c in conv):
        raise InputError(f"[sobol] convergence: sizes must be powers of 2, got {list(conv)}")
    mo = cfg.get("morris", {})
    lo_ = cfg.get("local", {})
    steps = lo_.get("steps", [0.01, 0.03, 0.1, 0.3])
    if not isinstance(steps, list) or not steps:
        raise InputError("[local] steps: expected a list of relative steps, e.g. [0.01, 0.03, 0.1, 0.3]")
    steps = tuple(sorted(_num("[local] steps", s, 0.0, 1.0, lo_open=True) for s in steps))
    step = _num("[local] step", lo_.get("step", 0.1), 0.0, 1.0, lo_open=True)
    if step not in steps:
        raise InputError(f"[local] step: must be one of steps {list(steps)}, got {step}")
    threads = st.get("threads")
    sobol_conf = _num("[sobol] conf_level", so.get("conf_level", 0.95), 0.5, 0.999)
    study = StudyConfig(
        name=name, seed=seed, methods=methods, outputs=outputs, time_resolved=time_resolved, set_name=set_name,
        variant=variant, factors=factors, bounds=tuple(bounds), ranges=ranges, design=design,
        cohort_seed=limits.seed("[cohort] seed", co.get("seed", seed)), stop_uptake=stop_uptake,
        min_im_stop_days=stop_days, min_im_window_days=_num("[min_im] window_days", mi.get("window_days", 730), 0.0,
                                                            MAX_DAYS, lo_open=True),
        min_im_threshold=_num("[min_im] threshold", mi.get("threshold", 0.5), 0.0, 1.0, lo_open=True),
        min_im_transplant=_bool("[min_im] transplant", mi.get("transplant", True)),
        sobol_n=sobol_n, sobol_bootstrap=_int("[sobol] bootstrap", so.get("bootstrap", 1000), 10),
        conf_level=sobol_conf,
        convergence=conv, warn_conf_width=_num("[sobol] warn_conf_width", so.get("warn_conf_width", 0.1), 0.0,
                                               lo_open=True),
        morris_trajectories=_sized(quick, qt, "morris_trajectories", "[morris] trajectories",
                                   mo.get("trajectories", 20), lambda name, v: _int(name, v, 2)),
        morris_levels=_int("[morris] levels", mo.get("levels", 4), 2, MORRIS_MAX_LEVELS),
        morris_bootstrap=_int("[morris] bootstrap", mo.get("bootstrap", 1000), 10),
        # the level of Morris' bootstrap intervals on mu*; default: the Sobol' level
        morris_conf_level=_num("[morris] conf_level", mo.get("conf_level", sobol_conf), 0.5, 0.999),
        local=_bool("[local] enabled", lo_.get("enabled", True)), local_steps=steps, local_step=step,
        local_cohort_size=_sized(quick, qt, "local_cohort_size", "[local] cohort_size", lo_.get("cohort_size", 2000),
                                 limits.cohort_size),
        chunk_samples=_sized(quick, qt, "chunk_samples", "[study] chunk_samples", st.get("chunk_samples", 32),
                             _positive_int),
        threads=None if threads is None else limits.threads("[study] threads", threads),
        raw={"config": cfg, "quick": quick})
    shortest = study.min_im_stop_days[0] + study.min_im_window_days  # follow-up of the shortest min_im course
    if "min_im_days" in outputs and design.visit_interval_days > shortest:
        raise InputError(f"[treatment] visit_interval_days: must be <= {shortest:g}, the follow-up of the shortest "
                         f"course of output min_im_days ([min_im] stop_days[0] + window_days), got "
                         f"{design.visit_interval_days:g}")
    return study


def load_config(path, *, quick: bool = False) -> StudyConfig:
    return parse_config(read_toml(path, "sensitivity config"), quick=quick, source=str(path))


# --------------------------------------------------------------------------
# evaluators: picklable callables X (samples x factors) -> Y (samples x outputs)
# --------------------------------------------------------------------------
#: one compiled parallel region at a time per process (shared with the fit's batches)
_ENGINE_LOCK = ENGINE_LOCK


class IshigamiEvaluator:
    """The Ishigami function (a = 7, b = 0.1): the standard check of a Sobol' pipeline."""

    output_names = ("y",)

    def __call__(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=float)
        y = np.sin(X[:, 0]) + 7.0 * np.sin(X[:, 1]) ** 2 + 0.1 * X[:, 2] ** 4 * np.sin(X[:, 0])
        return y[:, None]


def _restricted_mean(event: np.ndarray, t: np.ndarray, horizon) -> np.ndarray:
    return np.where(event, np.minimum(t, horizon), horizon)


class CohortEvaluator:
    """Clinical outputs of a virtual cohort per sample (see the module docstring for definitions)."""

    def __init__(self, cfg: StudyConfig, cohort_size: int | None = None, with_time: bool = True):
        self.factors = cfg.factors
        self.set_name = cfg.set_name
        self.variant = cfg.variant
        self.design = cfg.design
        self.size = cfg.design.size if cohort_size is None else cohort_size
        self.seed = cfg.cohort_seed
        self.stop_uptake = cfg.stop_uptake
        self.outputs = cfg.outputs
        self.min_im = (cfg.min_im_stop_days, cfg.min_im_window_days, cfg.min_im_threshold, cfg.min_im_transplant)
        self.threads = cfg.threads
        self.info = parameter_set_info(cfg.set_name)  # read once, not per chunk or sample
        hess, _ = self.design.protocols(self.stop_uptake)
        self.visit_days = np.arange(hess.n_visits + 1) * hess.visit_interval_days
        self.with_time = with_time and cfg.time_resolved
        self.time_idx = np.arange(0, self.visit_days.size, 3) if self.with_time else np.arange(0)
        self.output_names = tuple(self.outputs) + ("n_solver_failures", "n_censored_min_im") + tuple(
            f"log10_bcr_abl_{int(round(self.visit_days[k])):04d}" for k in self.time_idx)

    # --- model inputs per sample
    def _replicates(self, X):
        info = self.info
        bases, sds, ups = [], [], []
        for x in np.atleast_2d(X):
            values = dict(zip([f.key for f in self.factors], map(float, x)))
            params, population, uptake = model_inputs(values, self.factors, info["parameters"],
                                                      population_sd=info["population"],
                                                      stop_uptake=self.stop_uptake)
            bases.append(params)
            sds.append(dict(population.sd_log))
            ups.append(uptake)
        names = tuple(sorted(set().union(*[s for s in sds])))
        sds = [{k: s.get(k, 0.0) for k in names} for s in sds]
        return bases, sds, ups, names

    def _run(self, spec: CohortSpec, protocol: Protocol, reps):
        import numba

        bases, sds, ups, names = reps
        d = self.design
        inp = prepare_replicates(spec, protocol, bases, sds, ups, parse_variant(self.variant), names, d.rtol, d.atol,
                                 1.0, 200_000, bounds=self.info["population_bounds"])
        threads = numba.config.NUMBA_NUM_THREADS if self.threads is None else self.threads
        with _ENGINE_LOCK:
            measured, res_f, res_i, _ = run_inputs(inp, threads, progress=False)
        s, n = len(bases), spec.size
        return measured.reshape(s, n, -1), res_f.reshape(s, n, -1), res_i.reshape(s, n, -1)

    def __call__(self, X: np.ndarray) -> np.ndarray:
        X = np.atleast_2d(np.asarray(X, dtype=float))
        reps = self._replicates(X)
        d = self.design
        hess, _ = d.protocols(self.stop_uptake)
        spec = CohortSpec(size=self.size, seed=self.seed, transplant=True, relapse_mix=d.relapse_mix)
        Y = np.full((X.shape[0], len(self.output_names)), np.nan)
        col = {k: j for j, k in enumerate(self.output_names)}
        need_hess = any(o != "min_im_days" for o in self.outputs) or self.with_time
        if need_hess:
            measured, rf, ri = self._run(spec, hess, reps)
            ok = ri[..., RI.STATUS] == 0
            cmr = (ri[..., RI.REACHED_CMR] == 1) & ok
            stopped = (ri[..., RI.STOPPED] == 1) & ok
            t_loss = rf[..., RF.DAYS_STOP_TO_LOSS]
            lost = stopped & (ri[..., RI.LOST_CMR] == 1) & (t_loss <= d.follow_up_after_stop_days)
            n_stop = stopped.sum(axis=1)
            Y[:, col["n_solver_failures"]] = (~ok).sum(axis=1)
            if "p_cmr" in col:
                Y[:, col["p_cmr"]] = cmr.mean(axis=1)
            if "t_cmr_days" in col:
                Y[:, col["t_cmr_days"]] = _restricted_mean(cmr, rf[..., RF.DAYS_TO_CMR], d.follow_up_days).mean(axis=1)
            with np.errstate(invalid="ignore", divide="ignore"):
                if "p_durable" in col:
                    Y[:, col["p_durable"]] = np.where(n_stop > 0, (stopped & ~lost).sum(axis=1) / n_stop, np.nan)
                if "t_loss_days" in col:
                    horizon = d.follow_up_days - rf[..., RF.T_STOP]
                    lost_any = stopped & (ri[..., RI.LOST_CMR] == 1)
                    tl = np.where(stopped, _restricted_mean(lost_any, t_loss, horizon), 0.0)
                    Y[:, col["t_loss_days"]] = np.where(n_stop > 0, tl.sum(axis=1) / n_stop, np.nan)
            if self.with_time:
                floor = 100.0 * d.detection_limit
                m = measured[:, :, self.time_idx]
                m = np.where(np.isfinite(m) & (m > floor), m, floor)
                for j, k in enumerate(self.time_idx):
                    Y[:, col[self.output_names[len(self.outputs) + 2 + j]]] = np.log10(m[:, :, j]).mean(axis=1)
        else:
            Y[:, col["n_solver_failures"]] = 0.0
        Y[:, col["n_censored_min_im"]] = 0.0
        if "min_im_days" in col:
            Y[:, col["min_im_days"]], censored, fails = self._min_im(reps)
            Y[:, col["n_censored_min_im"]] = censored
            Y[:, col["n_solver_failures"]] += fails
        return Y

    def _min_im(self, reps):
        stop_days, window, threshold, transplant = self.min_im
        d = self.design
        spec = (CohortSpec(size=self.size, seed=self.seed, transplant=True, relapse_mix=d.relapse_mix) if transplant
                else CohortSpec(size=self.size, seed=self.seed, transplant=False, start="diagnosis"))
        frac = np.empty((len(reps[0]), len(stop_days)))
        fails = np.zeros(len(reps[0]))
        for j, T in enumerate(stop_days):
            proto = Protocol(escalated_dose_mg=d.escalated_dose_mg, stop={"after_days": T}, restart=False,
                             follow_up_days=T + window, visit_interval_days=d.visit_interval_days,
                             detection_limit=d.detection_limit, noise_sd_log=d.noise_sd_log)
            _, rf, ri = self._run(spec, proto, (reps[0], reps[1], [1.0] * len(reps[0]), reps[3]))
            ok = (ri[..., RI.STATUS] == 0) & (ri[..., RI.STOPPED] == 1)
            fails += (ri[..., RI.STATUS] != 0).sum(axis=1)
            frac[:, j] = (ok & (ri[..., RI.LOST_CMR] == 0)).sum(axis=1) / np.maximum(ok.sum(axis=1), 1)
        out = np.full(frac.shape[0], stop_days[-1])
        censored = np.ones(frac.shape[0])
        T = np.asarray(stop_days)
        for i, f in enumerate(frac):
            hit = np.flatnonzero(f >= threshold)
            if hit.size:
                k = hit[0]
                censored[i] = 0.0
                if k == 0:
                    out[i] = T[0]
                else:  # linear interpolation of the durable fraction between grid points
                    f0, f1 = f[k - 1], f[k]
                    out[i] = T[k - 1] + (threshold - f0) / (f1 - f0) * (T[k] - T[k - 1])
        return out, censored, fails


# --------------------------------------------------------------------------
# evaluate: chunked, checkpointed, local or Dask
# --------------------------------------------------------------------------
def _chunk_path(folder: Path, i: int) -> Path:
    return folder / f"chunk_{i:05d}.npz"


def _load_chunk(path: Path, X: np.ndarray, n_out: int | None = None):
    """A checkpointed chunk's outputs, or ``None`` (evaluated again) if unreadable, made from other samples or
    not a float array of a row per sample (and ``n_out`` outputs, if given)."""
    try:
        with np.load(path) as z:
            x, y = z["X"], z["Y"]
            if (x.dtype.kind == "f" and x.shape == X.shape and np.array_equal(x, X) and y.dtype.kind == "f"
                    and y.ndim == 2 and y.shape[0] == X.shape[0] and (n_out is None or y.shape[1] == n_out)):
                return y
    except (OSError, ValueError, KeyError, EOFError, TypeError):
        pass
    return None


def evaluate(X: np.ndarray, evaluator, folder: Path | None = None, *, chunk_samples: int = 32, scheduler=None,
             progress: bool = True, desc: str = "evaluate", log=print) -> np.ndarray:
    """``evaluator`` on every row of ``X``, chunk by chunk; returns ``Y`` (rows of ``X`` x outputs).

    With ``folder`` every finished chunk is saved there (atomically) and reused
    on the next call, so an interrupted evaluation resumes.  ``scheduler``: a
    Dask scheduler address (``"tcp://host:8786"``) or a ``distributed.Client``;
    ``None`` runs in this process.  The result does not depend on either.
    """
    X = np.asarray(X, dtype=float)
    n = X.shape[0]
    starts = list(range(0, n, chunk_samples))
    parts: dict[int, np.ndarray] = {}
    if folder is not None:
        names = getattr(evaluator, "output_names", None)
        for i, s in enumerate(starts):
            p = _chunk_path(Path(folder), i)
            if p.is_file():
                y = _load_chunk(p, X[s:s + chunk_samples], None if names is None else len(names))
                if y is not None:
                    parts[i] = y
    todo = [i for i in range(len(starts)) if i not in parts]
    if parts:
        log(f"{desc}: {len(parts)} of {len(starts)} chunks already done; running {len(todo)}")
    bar = None
    if progress and todo:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(starts), initial=len(parts), unit="chunk", desc=desc, leave=False)

    def done(i, y):
        y = np.asarray(y, dtype=float)
        parts[i] = y
        if folder is not None:
            _save_npz(_chunk_path(Path(folder), i), X=X[starts[i]:starts[i] + chunk_samples], Y=y)
        if bar is not None:
            bar.update(1)

    try:
        if scheduler is None:
            for i in todo:
                done(i, evaluator(X[starts[i]:starts[i] + chunk_samples]))
        elif todo:
            from distributed import Client, as_completed

            client = scheduler if isinstance(scheduler, Client) else Client(scheduler)
            try:
                # hash=False: a fresh key per call; the default (a hash of the evaluator) is shared with an
                # earlier call's scatter, whose release could reach the scheduler after this scatter and
                # cancel these tasks ("lost dependencies", seen in CI)
                ev = client.scatter(evaluator, broadcast=True, hash=False)
                futures = {client.submit(_call, ev, X[starts[i]:starts[i] + chunk_samples], pure=False): i
                           for i in todo}
                for fut in as_completed(futures):
                    done(futures[fut], fut.result())
            finally:
                if client is not scheduler:
                    client.close()
    finally:
        if bar is not None:
            bar.close()
    return np.concatenate([parts[i] for i in range(len(starts))], axis=0)


def _call(evaluator, X):
    return evaluator(X)


# --------------------------------------------------------------------------
# sample and analyze (SALib)
# --------------------------------------------------------------------------
def sample(method: str, problem: dict, *, n: int, seed: int, levels: int = 4) -> np.ndarray:
    """A SALib design: ``"sobol"`` (Saltelli, first + total order, ``n`` base samples) or ``"morris"``
    (``n`` trajectories on a ``levels`` grid)."""
    sp = {k: problem[k] for k in ("num_vars", "names", "bounds")}
    if method == "sobol":
        from SALib.sample import sobol

        return sobol.sample(sp, n, calc_second_order=False, scramble=True, seed=seed)
    if method == "morris":
        from SALib.sample import morris

        return morris.sample(sp, n, num_levels=levels, seed=seed)
    raise InputError(f"method: unknown {method!r}; allowed: {', '.join(METHODS)}")


def _clean(v):
    return [None if not np.isfinite(x) else float(x) for x in np.asarray(v, dtype=float)]


def analyze_sobol(problem: dict, Y: np.ndarray, *, bootstrap: int, conf_level: float, seed: int) -> dict:
    """S1, ST and their bootstrap confidence half-widths; undefined outputs are reported, not analysed."""
    from SALib.analyze import sobol

    sp = {k: problem[k] for k in ("num_vars", "names", "bounds")}
    Y = np.asarray(Y, dtype=float)
    bad = int((~np.isfinite(Y)).sum())
    if bad:
        return {"status": "undefined", "message": f"undefined in {bad} of {Y.size} samples; not analysed"}
    if np.ptp(Y) == 0:
        z = [0.0] * problem["num_vars"]
        return {"status": "constant", "message": "output constant over the design; all indices 0",
                "S1": z, "S1_conf": z, "ST": z, "ST_conf": z}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = sobol.analyze(sp, Y, calc_second_order=False, num_resamples=bootstrap, conf_level=conf_level,
                          seed=seed)
    return {"status": "ok", "S1": _clean(r["S1"]), "S1_conf": _clean(r["S1_conf"]), "ST": _clean(r["ST"]),
            "ST_conf": _clean(r["ST_conf"])}


def analyze_morris(problem: dict, X: np.ndarray, Y: np.ndarray, *, levels: int, bootstrap: int, conf_level: float,
                   seed: int) -> dict:
    from SALib.analyze import morris

    sp = {k: problem[k] for k in ("num_vars", "names", "bounds")}
    Y = np.asarray(Y, dtype=float)
    bad = int((~np.isfinite(Y)).sum())
    if bad:
        return {"status": "undefined", "message": f"undefined in {bad} of {Y.size} samples; not analysed"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = morris.analyze(sp, X, Y, num_resamples=bootstrap, conf_level=conf_level, num_levels=levels, seed=seed)
    return {"status": "ok", "mu": _clean(r["mu"]), "mu_star": _clean(r["mu_star"]), "sigma": _clean(r["sigma"]),
            "mu_star_conf": _clean(r["mu_star_conf"])}


def ranking(names, indices: dict, key: str = "ST") -> list[str]:
    """Factor keys by decreasing index (Sobol' ST or Morris mu_star)."""
    if indices.get("status") != "ok":
        return []
    v = np.nan_to_num(np.asarray(indices[key], dtype=float), nan=-1.0)
    return [names[j] for j in np.argsort(-v, kind="stable")]


# --------------------------------------------------------------------------
# local sensitivity
# --------------------------------------------------------------------------
def _local_step(f, x: float, h: float, sgn: int) -> float:
    """The nominal step of factor ``f`` from ``x``: theta*exp(+-h) (log rows; +-h/ln 10 in log10 space)
    or theta*(1 +- h)."""
    return x + sgn * h / math.log(10.0) if f.log else x * (1.0 + sgn * h)


def local_design(cfg: StudyConfig, point: np.ndarray) -> tuple[np.ndarray, list[tuple[int, float, int]]]:
    """Rows: the point, then each factor stepped down and up (:func:`_local_step`), every step kept
    inside the factor's prior bounds (a point near a bound gets a shorter step on that side, and
    :func:`local_coefficients` divides by the step actually taken)."""
    rows = [point.copy()]
    meta = [(-1, 0.0, 0)]
    for j, f in enumerate(cfg.factors):
        lo, hi = f.prior_bounds
        for h in cfg.local_steps:
            for sgn in (-1, 1):
                x = point.copy()
                x[j] = min(max(_local_step(f, point[j], h, sgn), lo), hi)
                rows.append(x)
                meta.append((j, h, sgn))
    return np.array(rows), meta


def local_coefficients(cfg: StudyConfig, point: np.ndarray, Y: np.ndarray, output_names) -> dict:
    """Normalised coefficients ``d ln Y / d ln theta`` per output, factor and step."""
    y0 = Y[0]
    rows, meta = local_design(cfg, point)
    out = {}
    for k, name in enumerate(output_names):
        if name not in cfg.outputs:
            continue
        per = {}
        for j, f in enumerate(cfg.factors):
            steps = {}
            for h in cfg.local_steps:
                ip = meta.index((j, h, 1))
                im = meta.index((j, h, -1))
                if not (np.isfinite(Y[ip, k]) and np.isfinite(Y[im, k]) and np.isfinite(y0[k])) or y0[k] == 0:
                    steps[h] = None
                    continue
                xp, xm = rows[ip, j], rows[im, j]
                if xp == _local_step(f, point[j], h, 1) and xm == _local_step(f, point[j], h, -1):
                    dlog = 2.0 * h if f.log else math.log((1 + h) / (1 - h))  # ln theta+ - ln theta-
                else:  # a step shortened at a prior bound: the log-distance actually stepped
                    dlog = (xp - xm) * math.log(10.0) if f.log else (math.log(xp / xm) if xm > 0 else 0.0)
                if dlog <= 0.0:
                    steps[h] = None
                    continue
                steps[h] = float((Y[ip, k] - Y[im, k]) / dlog / y0[k])
            per[f.key] = {"by_step": {f"{h:g}": v for h, v in steps.items()}, "selected": steps[cfg.local_step]}
        out[name] = {"value_at_point": None if not np.isfinite(y0[k]) else float(y0[k]), "coefficients": per}
    return out


# --------------------------------------------------------------------------
# the study
# --------------------------------------------------------------------------
def fitted_point(cfg: StudyConfig) -> np.ndarray:
    """The set's values of the factors in the sampler space (posterior medians for a fitted set)."""
    info = parameter_set_info(cfg.set_name)
    x = []
    for f in cfg.factors:
        if f.kind == "median":
            v = info["parameters"][f.target]
        elif f.kind == "sd":
            v = (info["population"] or {}).get(f.target, 0.0)
        else:
            v = info["stop_uptake"] if info["stop_uptake"] is not None else 1.0
        x.append(math.log10(v) if f.log else v)
    return np.array(x, dtype=float)


def _stage_json(path: Path, compute):
    if path.is_file():
        return json.loads(path.read_text())
    v = compute()
    atomic_write_json(path, v)
    return v


def connect(scheduler, timeout_s: float = 10.0):
    """A ``distributed.Client`` for a scheduler address; a bad address or an unreachable scheduler is an
    :class:`InputError` naming ``--scheduler`` (checked before a study writes anything)."""
    import importlib.util

    if not isinstance(scheduler, str) or not scheduler.strip():
        fail("--scheduler", f"expected a Dask scheduler address such as tcp://HOST:8786, got {scheduler!r}")
    if importlib.util.find_spec("distributed") is None:
        fail("--scheduler", 'needs Dask distributed; pip install "gvlmodel[distributed]"')
    from distributed import Client

    try:
        return Client(scheduler, timeout=timeout_s)
    except (OSError, ValueError, TypeError) as exc:  # distributed raises these for bad or unreachable addresses
        fail("--scheduler", f"cannot connect to {scheduler!r} within {timeout_s:g} s "
             f"({type(exc).__name__}: {exc}); expected a running scheduler at tcp://HOST:PORT")


def run_study(cfg: StudyConfig, out: Path, *, scheduler=None, progress: bool = True, log=print) -> dict:
    """Sample, evaluate, analyze (resuming whatever ``out`` already holds); returns the summary dict.

    ``scheduler``: ``None`` (this machine), a Dask scheduler address (connected
    before anything is written, closed at the end) or a ``distributed.Client``.
    """
    if not isinstance(scheduler, str):
        return _run_study(cfg, out, scheduler, progress, log)
    output_folder(out)
    cfg.check_resources()
    CohortEvaluator(cfg)  # a config error is reported before waiting for a cluster
    client = connect(scheduler)
    try:
        return _run_study(cfg, out, client, progress, log)
    finally:
        client.close()


STUDY_STATE = "study_state.json"


def saved_study_matches(out: Path, digest: str) -> bool | None:
    """Whether the study saved in ``out`` was made with ``digest`` (:meth:`StudyConfig.model_digest`);
    ``None`` if ``out`` holds no saved study (an unreadable state counts as another study's)."""
    state = Path(out) / STUDY_STATE
    if not state.exists():
        return None  # (anything else in its place, e.g. a folder, is unreadable: another study's)
    try:
        old = json.loads(state.read_text())
    except (OSError, ValueError, RecursionError):  # (RecursionError: nested too deeply to read)
        return False
    return isinstance(old, dict) and old.get("model_digest") == digest


def discard_saved_study(out: Path) -> None:
    """Remove a study's saved samples, evaluations and state from ``out`` (the next run starts afresh)."""
    out = Path(out)
    for sub in ("samples", "evaluations"):
        shutil.rmtree(out / sub, ignore_errors=True)
    (out / STUDY_STATE).unlink(missing_ok=True)


def _check_saved_layout(out: Path, methods) -> None:
    """A folder where the study saves a file (``samples/*.npy``, ``evaluations/**.npz``), or a file in place of
    a folder it saves into (``samples/``, ``evaluations/``, ``evaluations/<method>`` of each of ``methods``), is
    an :class:`InputError` before anything in ``out`` is changed (it was found only when a result could not be
    saved over it, after the evaluations)."""
    in_the_way = [entry_in_the_way(out / sub, (".npy", ".npz")) for sub in ("samples", "evaluations")]
    for m in methods:  # a file, or a link to nothing, where the method's chunks go
        folder = out / "evaluations" / m
        in_the_way.append(folder if (folder.exists() or folder.is_symlink()) and not folder.is_dir() else None)
    odd = next((p for p in in_the_way if p is not None), None)
    if odd is not None:
        raise InputError(f"--out {out}: {odd} is in the way of the saved study's files, so it cannot be resumed "
                         f"there; nothing was changed. To start the study afresh remove {out}/samples, "
                         f"{out}/evaluations and {out}/{STUDY_STATE}, or choose an empty folder")


def _saved_samples(out: Path, cfg: StudyConfig) -> dict:
    """The samples a resumed study saved (``samples/<method>.npy``), checked before anything in ``out`` is
    changed: an unreadable or malformed file is an :class:`InputError` saying how to start afresh."""
    saved = {}
    for method in cfg.methods:
        spath = out / "samples" / f"{method}.npy"
        if not spath.exists():
            continue
        try:
            X = np.load(spath, allow_pickle=False)
            if X.ndim != 2 or X.shape[1] != cfg.problem["num_vars"] or X.shape[0] == 0 or not np.all(np.isfinite(X)):
                raise ValueError(f"expected a finite array of samples x {cfg.problem['num_vars']} parameters, got "
                                 f"shape {X.shape}")
        except (OSError, ValueError, EOFError, TypeError) as exc:  # (TypeError: not numbers)
            raise InputError(f"--out {out}: the saved study's {spath} is unreadable or corrupt ({exc}); nothing was "
                             f"changed. To start the study afresh remove {out}/samples, {out}/evaluations and "
                             f"{out}/{STUDY_STATE}, or choose an empty folder") from None
        saved[method] = X
    return saved


def _run_study(cfg: StudyConfig, out: Path, scheduler, progress: bool, log) -> dict:
    out = Path(out)
    state = out / STUDY_STATE
    digest = cfg.model_digest()
    output_folder(out)
    # everything that can refuse the study happens before the first write to ``out``
    cfg.check_resources()
    runs, secs = cfg.simulation_estimate()
    log(f"{runs:.3g} patient simulations ({limits.duration_text(secs)} at {limits.PATIENTS_PER_S_PER_THREAD:g} "
        "patients/s per thread)")
    evaluator = CohortEvaluator(cfg)
    matches = saved_study_matches(out, digest)
    if matches is not None:
        if not matches:
            raise InputError(f"--out {out}: holds evaluations of a different study (config, parameter set, "
                             f"sample sizes or the package's code differ) or an unreadable {STUDY_STATE}; nothing was "
                             f"changed. To start afresh remove {out}/samples, {out}/evaluations and {out}/{STUDY_STATE}, "
                             "or choose an empty folder")
        log(f"resuming the study in {out}")
    _check_saved_layout(out, cfg.methods)
    saved = _saved_samples(out, cfg) if matches else {}
    begin_outputs(out)  # creates the folder (removed again if the run is refused)
    atomic_write_json(state, {"model_digest": digest, "config": cfg.raw})
    problem = cfg.problem
    atomic_write_json(out / "problem.json", problem)
    names = evaluator.output_names
    timings = {}
    results = {"name": cfg.name, "set": cfg.set_name, "variant": cfg.variant, "problem": problem,
               "outputs": list(cfg.outputs), "output_labels": {k: OUTPUT_LABELS[k] for k in cfg.outputs},
               "cohort_size": cfg.design.size, "stop_uptake": cfg.stop_uptake, "warnings": []}
    seeds = np.random.SeedSequence(cfg.seed).generate_state(4)

    for method in cfg.methods:
        spath = out / "samples" / f"{method}.npy"
        if method in saved:
            X = saved[method]
        else:
            n = cfg.sobol_n if method == "sobol" else cfg.morris_trajectories
            X = sample(method, problem, n=n, seed=int(seeds[0 if method == "sobol" else 1]), levels=cfg.morris_levels)
            spath.parent.mkdir(parents=True, exist_ok=True)
            _save_npy(spath, X)
        t0 = time.perf_counter()
        Y = evaluate(X, evaluator, out / "evaluations" / method, chunk_samples=cfg.chunk_samples,
                     scheduler=scheduler, progress=progress, desc=f"{method} ({X.shape[0]} cohorts)", log=log)
        timings[method] = {"samples": int(X.shape[0]), "patients": int(X.shape[0] * cfg.design.size),
                           "wall_s_this_run": time.perf_counter() - t0}
        _save_npz(out / "evaluations" / f"{method}.npz", X=X, Y=Y, output_names=np.array(names))
        _report_failures(results, method, Y, names)
        if method == "sobol":
            results["sobol"] = _analyze_sobol_all(cfg, problem, Y, names, int(seeds[2]), results["warnings"])
        else:
            results["morris"] = {o: analyze_morris(problem, X, Y[:, names.index(o)], levels=cfg.morris_levels,
                                                   bootstrap=cfg.morris_bootstrap,
                                                   conf_level=cfg.morris_conf_level,
                                                   seed=int(seeds[3])) for o in cfg.outputs}
            results["morris_ranking"] = {o: ranking(problem["names"], results["morris"][o], "mu_star")
                                         for o in cfg.outputs}
        log(f"{method}: {X.shape[0]} cohorts x {cfg.design.size} patients evaluated "
            f"({timings[method]['wall_s_this_run']:.1f} s this run)")

    if cfg.local:
        point = fitted_point(cfg)
        Xl, _ = local_design(cfg, point)
        ev_local = CohortEvaluator(cfg, cohort_size=cfg.local_cohort_size, with_time=False)
        t0 = time.perf_counter()
        Yl = evaluate(Xl, ev_local, out / "evaluations" / "local", chunk_samples=max(1, cfg.chunk_samples // 4),
                      scheduler=scheduler, progress=progress, desc=f"local ({Xl.shape[0]} cohorts)", log=log)
        timings["local"] = {"samples": int(Xl.shape[0]), "patients": int(Xl.shape[0] * cfg.local_cohort_size),
                            "wall_s_this_run": time.perf_counter() - t0}
        _save_npz(out / "evaluations" / "local.npz", X=Xl, Y=Yl, output_names=np.array(ev_local.output_names))
        results["local"] = {"point": point.tolist(), "cohort_size": cfg.local_cohort_size,
                            "steps": list(cfg.local_steps), "step": cfg.local_step,
                            "method": "central differences in ln(theta) with common random numbers; step study over "
                                      "the listed relative steps",
                            "outputs": local_coefficients(cfg, point, Yl, ev_local.output_names)}
        _report_failures(results, "local", Yl, ev_local.output_names)
    results["timings"] = timings
    atomic_write_json(out / "indices.json", results)
    atomic_write_text(out / "summary.md", summary_markdown(results))
    finish_outputs(out, provenance_of(cfg, seed=cfg.seed))  # last: the folder is complete
    for w in results["warnings"]:
        log(f"warning: {w}")
    return results


def _report_failures(results, method, Y, names):
    f = Y[:, names.index("n_solver_failures")]
    results.setdefault("solver_failures", {})[method] = {"patients": int(f.sum()), "samples_with_failures":
                                                         int((f > 0).sum())}
    if f.sum():
        results["warnings"].append(f"{method}: {int(f.sum())} patient solves failed in {int((f > 0).sum())} samples "
                                   "(counted as not reaching CMR)")
    if "n_censored_min_im" in names and "min_im_days" in results["outputs"]:
        c = Y[:, names.index("n_censored_min_im")]
        results.setdefault("min_im_censored", {})[method] = int(c.sum())
        if c.sum():
            results["warnings"].append(f"{method}: min_im_days censored at the last course length in {int(c.sum())} "
                                       f"of {c.size} samples (no course on the grid gave durable control)")


def _analyze_sobol_all(cfg, problem, Y, names, seed, warn_list) -> dict:
    D = problem["num_vars"]
    res = {"indices": {}, "convergence": {}, "time_resolved": {}, "ranking": {}}
    for o in cfg.outputs:
        y = Y[:, names.index(o)]
        r = analyze_sobol(problem, y, bootstrap=cfg.sobol_bootstrap, conf_level=cfg.conf_level, seed=seed)
        res["indices"][o] = r
        res["ranking"][o] = ranking(problem["names"], r, "ST")
        conv = []
        for n in cfg.convergence:
            rn = analyze_sobol(problem, y[: n * (D + 2)], bootstrap=cfg.sobol_bootstrap, conf_level=cfg.conf_level,
                               seed=seed)
            conv.append({"n": n, **rn})
        res["convergence"][o] = conv
        if r["status"] == "ok":
            wide = [problem["names"][j] for j in range(D)
                    if (r["ST_conf"][j] or 0) > cfg.warn_conf_width or (r["S1_conf"][j] or 0) > cfg.warn_conf_width]
            if wide:
                warn_list.append(f"sobol {o}: confidence half-width above {cfg.warn_conf_width} for "
                                 f"{', '.join(wide)} at n = {cfg.sobol_n}; increase [sobol] n")
        else:
            warn_list.append(f"sobol {o}: {r['message']}")
    tcols = [k for k in names if k.startswith("log10_bcr_abl_")]
    if tcols:
        days = [int(k.rsplit("_", 1)[1]) for k in tcols]
        rows = [analyze_sobol(problem, Y[:, names.index(k)], bootstrap=cfg.sobol_bootstrap,
                              conf_level=cfg.conf_level, seed=seed) for k in tcols]
        res["time_resolved"] = {"days": days, "output": "mean log10 measured BCR-ABL % (undetectable at the limit)",
                                "by_day": rows}
    return res


def _save_npy(path: Path, X) -> None:
    import io

    buf = io.BytesIO()
    np.save(buf, X)
    atomic_write_bytes(path, buf.getvalue())


def _save_npz(path: Path, **arrays) -> None:
    import io

    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


def summary_markdown(r: dict) -> str:
    """Rankings and indices as Markdown (``summary.md``)."""
    names = r["problem"]["names"]
    L = [f"# Sensitivity study `{r['name']}`", "",
         f"Set `{r['set']}` (variant {r['variant']}), cohorts of {r['cohort_size']} patients per sample, "
         f"factor ranges: {r['problem']['ranges']}; stop uptake {r['stop_uptake']:g}.", ""]
    if "sobol" in r:
        L += ["## Sobol' indices (total order ST, first order S1; ± bootstrap half-width)", ""]
        for o in r["outputs"]:
            ind = r["sobol"]["indices"][o]
            L.append(f"### {r['output_labels'][o]} (`{o}`)")
            if ind["status"] != "ok":
                L += ["", f"{ind['message']}", ""]
                continue
            L += ["", "| factor | ST | S1 |", "|---|---|---|"]
            for k in r["sobol"]["ranking"][o]:
                j = names.index(k)
                L.append(f"| {k} | {ind['ST'][j]:.3f} ± {ind['ST_conf'][j]:.3f} | "
                         f"{ind['S1'][j]:.3f} ± {ind['S1_conf'][j]:.3f} |")
            L.append("")
    if "morris" in r:
        L += ["## Morris screening (mu*, sigma)", ""]
        for o in r["outputs"]:
            m = r["morris"][o]
            if m["status"] != "ok":
                L.append(f"- `{o}`: {m['message']}")
                continue
            top = r["morris_ranking"][o][:3]
            L.append(f"- `{o}`: top " + ", ".join(
                f"{k} (mu* {m['mu_star'][names.index(k)]:.3g}, sigma {m['sigma'][names.index(k)]:.3g})" for k in top))
        L.append("")
    if "local" in r:
        lo = r["local"]
        L += [f"## Local normalised sensitivity at the fitted point (d ln Y / d ln theta, step {lo['step']:g}, "
              f"cohort {lo['cohort_size']})", "", "| output | " + " | ".join(names) + " |",
              "|---|" + "---|" * len(names)]
        for o, v in lo["outputs"].items():
            cells = []
            for k in names:
                s = v["coefficients"][k]["selected"]
                cells.append("n/a" if s is None else f"{s:.3g}")
            L.append(f"| {o} | " + " | ".join(cells) + " |")
        L.append("")
    if r["warnings"]:
        L += ["## Warnings", ""] + [f"- {w}" for w in r["warnings"]] + [""]
    return "\n".join(L)
