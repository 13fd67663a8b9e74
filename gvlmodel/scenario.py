"""Scenario files: ``gvlmodel simulate SCENARIO.toml --out DIR``.

A scenario is a TOML file with these tables (every key optional unless marked)::

    [cohort]        size (required), seed (required), transplant = true,
                    start = "relapse" | "diagnosis", relapse_mix = {molecular = 18, ...},
                    relapse_ranges = {molecular = [0.01, 1.0], ...}, diagnosis_range = [50, 95]
    [treatment]     dose_mg = 400, escalate = true, escalated_dose_mg = 600, escalation_day = 90,
                    mmr_level_percent = 0.1,
                    stop = "hess2005" | "never" | {after_days = N} | {min_days = T, undetectable_days = U},
                    restart = false, follow_up_days = 1825, visit_interval_days = 30,
                    stop_uptake = 1.0 (probability that an eligible patient stops),
                    loss_rule = "confirmed_positive" (Hess 2005) | "stim1" (Mahon 2010)
    [parameters]    set = "hess2005" (the best-supported fit; "default" = the table's values) or
                    another set (`gvlmodel parameters --sets`), variant = "H2",
                    and overrides by parameter name (name = value).  A fitted set also brings
                    its variant, population spreads and stop_uptake unless the config sets them.
    [population]    parameter name = natural-log SD of its between-patient variation
                    (replaces the default population and the set's correlations; {} = identical
                    patients)
    [measurement]   detection_limit = 1e-5, noise_sd_log = 0.45
    [solver]        rtol = 1e-6, atol = 1e-6, extinction_threshold = 1.0, max_steps = 200000
    [output]        trajectories = "none" | "all" | N (the first N patients) | [ids], time_step_days = 7 (>= 0.1)

Everything is validated before anything runs or is written: an unknown key,
wrong type or out-of-range value raises :class:`~gvlmodel.errors.InputError`
naming the key and what is allowed (the CLI exits with status 2).
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .cohort import (DEFAULT_POPULATION_SD, CohortResult, CohortSpec, Population, Protocol, _real, patient_trajectory,
                     simulate_cohort)
from . import limits
from .errors import InputError, check_tables, read_toml
from .limits import available_memory  # noqa: F401  (its home is gvlmodel.limits)
from .parameters import PARAMETER_NAMES, available_parameter_sets, parameter_set_info, parse_variant, resolve_parameters
from .provenance import (atomic_write_json, atomic_write_text, begin_outputs, finish_outputs, provenance, prune_outputs,
                         resolved_config)

TABLES = {
    "cohort": {"size", "seed", "transplant", "start", "relapse_mix", "relapse_ranges", "diagnosis_range"},
    "treatment": {"dose_mg", "escalate", "escalated_dose_mg", "escalation_day", "mmr_level_percent", "stop",
                  "restart", "follow_up_days", "visit_interval_days", "stop_uptake", "loss_rule"},
    "parameters": {"set", "variant"} | set(PARAMETER_NAMES),
    "population": set(PARAMETER_NAMES),
    "measurement": {"detection_limit", "noise_sd_log"},
    "solver": {"rtol", "atol", "extinction_threshold", "max_steps"},
    "output": {"trajectories", "time_step_days"},
}
REQUIRED = {"cohort": {"size", "seed"}}
#: finest trajectory grid accepted (days); finer adds rows, not information (visits are weeks apart)
MIN_TIME_STEP_DAYS = 0.1

PATIENT_COLUMNS = ("patient_id", "transplant", "start", "relapse_type", "bcr_abl_start_percent", "reached_cmr",
                   "days_to_cmr", "escalated", "days_to_escalation", "would_stop", "stopped", "stop_day", "days_on_im_at_stop",
                   "lost_cmr", "days_stop_to_loss", "restarted", "restart_day", "eradicated", "days_to_eradication",
                   "final_bcr_abl_percent", "final_lsc", "final_effectors", "last_day_reached", "solver_status",
                   "solver_message", "n_steps")


#: memory of one table cell while its text is built (a Python str in a column list, then the joined text)
TEXT_CELL_BYTES = 70.0
#: columns of trajectories.csv (cohort.patient_trajectory)
TRAJECTORY_COLUMNS = 14


@dataclass(frozen=True)
class Scenario:
    cohort: CohortSpec
    protocol: Protocol
    parameters: dict
    parameter_set_name: str
    variant: str
    population: Population
    solver: dict
    trajectories: object
    time_step_days: float
    config: dict

    def run(self, threads: int | None = None, progress: bool | None = None) -> CohortResult:
        return simulate_cohort(self.cohort, self.protocol, self.parameters, variant=self.variant,
                               population=self.population, threads=threads, progress=progress, **self.solver)

    def memory_estimate(self) -> dict[str, float]:
        """Rough peak memory of the run, bytes: the engine's per-visit arrays and the text tables
        (``patients.csv``, ``trajectories.csv``) as built in memory before their atomic write."""
        n = self.cohort.size
        visits = self.protocol.n_visits + 1
        engine = n * (visits * 3 + 256) * 8.0  # measured, PCR noise and detection draws; states, parameters
        patients = n * (len(PATIENT_COLUMNS) + len(self.population.names)) * TEXT_CELL_BYTES
        grid = self.protocol.n_visits * self.protocol.visit_interval_days / self.time_step_days + visits
        traj = self.trajectory_ids().size * grid * TRAJECTORY_COLUMNS * (8.0 + TEXT_CELL_BYTES)
        return {"engine": engine, "patients_table": patients, "trajectories": traj,
                "total": engine + patients + traj}

    def check_resources(self, available: float | None = None) -> None:
        """Refuse (``InputError``, before anything runs or is written) a run whose
        :meth:`memory_estimate` exceeds 80 % of the memory available now (:func:`gvlmodel.limits.check_memory`)."""
        est = self.memory_estimate()
        limits.check_memory({"engine": est["engine"], "patients.csv": est["patients_table"],
                             "trajectories.csv": est["trajectories"]},
                            {"engine": "[cohort] size or [treatment] follow_up_days / visit_interval_days",
                             "patients.csv": "[cohort] size",
                             "trajectories.csv": "[output] trajectories (fewer patients) or a larger time_step_days"},
                            available, what="this run")

    def trajectory_ids(self) -> np.ndarray:
        n = self.cohort.size
        t = self.trajectories
        if t == "none":
            return np.array([], dtype=int)
        if t == "all":
            return np.arange(n)
        if isinstance(t, int):
            return np.arange(min(t, n))
        return np.array(sorted(set(t)), dtype=int)


def default_scenario_set() -> str:
    """The set a scenario uses when it names none: the best-supported fit (``hess2005``) when shipped."""
    return "hess2005" if "hess2005" in available_parameter_sets() else "default"


def load_scenario(path) -> Scenario:
    """Read and validate a scenario file."""
    return parse_scenario(read_toml(path, "scenario"))


def parse_scenario(cfg: dict) -> Scenario:
    """Validate a scenario given as a dict (the parsed TOML)."""
    def allowed_text(table, allowed):
        if table in ("parameters", "population"):
            return ("set, variant, or " if table == "parameters" else "") + \
                "parameter names (see `gvlmodel parameters`)"
        return ", ".join(sorted(allowed))

    check_tables(cfg, TABLES, "scenario", allowed_text)
    for table, required in REQUIRED.items():
        missing = required - set(cfg.get(table, {}))
        if missing:
            raise InputError(f"[{table}]: missing required key(s) {sorted(missing)}")
    c, tr = cfg.get("cohort", {}), cfg.get("treatment", {})
    pa, po = dict(cfg.get("parameters", {})), cfg.get("population")
    me, so, ou = cfg.get("measurement", {}), cfg.get("solver", {}), cfg.get("output", {})

    cohort = CohortSpec(**c)
    set_name = pa.pop("set", default_scenario_set())
    if not isinstance(set_name, str) or set_name not in available_parameter_sets():
        raise InputError(f"[parameters] set: unknown parameter set {set_name!r}; allowed: "
                         + ", ".join(available_parameter_sets()))
    info = parameter_set_info(set_name)
    # a fitted set brings its variant, population spreads and stop uptake; the config can override each
    if "stop_uptake" not in tr and info["stop_uptake"] is not None:
        tr = {**tr, "stop_uptake": info["stop_uptake"]}
    corr = None
    if po is None and info["population"] is not None:
        po = info["population"]
        corr = info.get("correlation")  # the set's correlations come with the set's spreads only
    protocol = Protocol(**tr, **me)
    try:
        variant = parse_variant(pa.pop("variant", info["variant"] or "H2")).value
        # overrides must lie in the table's bounds: patients' draws are clipped to them
        params = resolve_parameters({**info["parameters"], **pa}, check_bounds=True)
    except InputError as exc:
        raise InputError(f"[parameters] {exc}") from None
    try:
        population = Population(sd_log=DEFAULT_POPULATION_SD if po is None else po,
                                bounds=info["population_bounds"], correlation=corr)
    except InputError as exc:
        raise InputError(f"[population] {exc}") from None
    solver = {}
    for key, check in (("rtol", limits.rtol), ("atol", limits.atol)):
        if key in so:
            solver[key] = check(f"solver.{key}", so[key])
    if "extinction_threshold" in so:
        solver["extinction_threshold"] = _real("solver.extinction_threshold", so["extinction_threshold"], lo=0.0,
                                               hi=1e6)
    if "max_steps" in so:
        v = so["max_steps"]
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise InputError(f"solver.max_steps: expected a positive integer, got {v!r}")
        solver["max_steps"] = v
    traj = ou.get("trajectories", "none")
    allowed_traj = '"none", "all", a number N (the first N patients) or a list of patient ids'
    if isinstance(traj, str):
        if traj not in ("none", "all"):
            raise InputError(f"output.trajectories: unknown value {traj!r}; allowed: {allowed_traj}")
    elif isinstance(traj, bool) or not isinstance(traj, (int, list)):
        raise InputError(f"output.trajectories: expected {allowed_traj}, got {traj!r}")
    elif isinstance(traj, int) and not 0 <= traj <= cohort.size:
        raise InputError(f"output.trajectories: the first N patients needs N in [0, {cohort.size}] (the cohort "
                         f"size; \"all\" for every patient), got {traj}")
    elif isinstance(traj, list):
        for v in traj:
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < cohort.size:
                raise InputError(f"output.trajectories: patient ids must be integers in [0, {cohort.size - 1}], "
                                 f"got {v!r}")
    step = _real("output.time_step_days", ou.get("time_step_days", 7.0), lo=MIN_TIME_STEP_DAYS,
                 hi=protocol.follow_up_days)
    return Scenario(cohort=cohort, protocol=protocol, parameters=params, parameter_set_name=set_name, variant=variant,
                    population=population, solver=solver, trajectories=traj, time_step_days=step, config=cfg)


# --------------------------------------------------------------------------
# writing results
# --------------------------------------------------------------------------
def _fmt(v) -> str:
    if v is None:
        return ""
    if isinstance(v, (bool, np.bool_)):
        return "true" if v else "false"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        return "" if not np.isfinite(v) else f"{float(v):.10g}"
    text = str(v)
    if any(c in text for c in ',"\n\r'):  # a message with a comma stays one CSV field (RFC 4180 quoting)
        return '"' + text.replace('"', '""') + '"'
    return text


def format_column(values) -> list[str]:
    """One table column as text, vectorised by type: booleans ``true``/``false``, integers as such,
    floats ``%.10g`` with non-finite values empty, anything else by :func:`_fmt` (mixed lists; ``None`` is
    empty, text quoted when it holds a comma, quote or line break)."""
    a = np.asarray(values)
    if a.dtype == bool:
        return np.where(a, "true", "false").tolist()
    if a.dtype.kind in "iu":
        return list(map(str, a.tolist()))
    if a.dtype.kind == "f":
        ok = np.isfinite(a)
        if ok.all():
            return [f"{x:.10g}" for x in a.tolist()]
        return [f"{x:.10g}" if good else "" for x, good in zip(a.tolist(), ok.tolist())]
    return [_fmt(v) for v in values]


def table_csv(columns: dict[str, np.ndarray]) -> str:
    """Columns (equal lengths) as CSV text: a header row and one row per entry (see :func:`format_column`)."""
    names = list(columns)
    cols = [format_column(columns[k]) for k in names]
    lengths = {len(c) for c in cols}
    if len(lengths) > 1:
        raise ValueError(f"table_csv: columns of unequal length {sorted(lengths)}")
    body = "\n".join(map(",".join, zip(*cols)))
    return ",".join(names) + "\n" + (body + "\n" if cols and cols[0] else "")


#: every file :func:`write_results` can write
RESULT_FILES = ("patients.csv", "trajectories.csv", "summary.json", "provenance.json")


def write_results(scenario: Scenario, result: CohortResult, out: Path) -> list[str]:
    """Write patients.csv, trajectories.csv, summary.json and provenance.json (each atomically).

    A ``trajectories.csv`` left in ``out`` by an earlier run is removed when this
    run asks for no trajectories.
    """
    out = Path(out)
    ids = scenario.trajectory_ids()
    # everything is computed before the first write, so a failure leaves the folder as it was
    cols = {k: result.columns[k] for k in PATIENT_COLUMNS}
    for name, v in result.patient_parameters.items():
        cols[f"param_{name}"] = v
    patients_csv = table_csv(cols)
    traj_csv = None
    if ids.size:
        parts = [patient_trajectory(result, int(i), scenario.time_step_days) for i in ids]
        traj_csv = table_csv({k: np.concatenate([p[k] for p in parts]) for k in parts[0]})
    begin_outputs(out)
    prune_outputs(out, RESULT_FILES, [f for f in RESULT_FILES if ids.size or f != "trajectories.csv"])
    files = []
    atomic_write_text(out / "patients.csv", patients_csv)
    files.append("patients.csv")
    if traj_csv is not None:
        atomic_write_text(out / "trajectories.csv", traj_csv)
        files.append("trajectories.csv")
    summary = result.summary()
    summary["scenario"] = {"variant": scenario.variant, "parameter_set": scenario.parameter_set_name,
                           "transplant": scenario.cohort.transplant, "start": scenario.cohort.start,
                           "stop_rule": str(scenario.protocol.stop), "stop_uptake": scenario.protocol.stop_uptake,
                           "population_sd_log": scenario.population.sd_log}
    atomic_write_json(out / "summary.json", summary)
    files.append("summary.json")
    prov = provenance(scenario.config, seed=scenario.cohort.seed)
    prov["resolved"] = {"parameters": scenario.parameters, "variant": scenario.variant,
                        "cohort": resolved_config(scenario.cohort), "population": resolved_config(scenario.population),
                        "protocol": resolved_config(scenario.protocol),
                        "solver": result.solver_options, "threads": result.threads}
    finish_outputs(out, prov)
    files.append("provenance.json")
    return files
