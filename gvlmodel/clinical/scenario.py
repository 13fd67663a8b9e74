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
    [output]        trajectories = "none" | "all" | N (the first N patients) | [ids], time_step_days = 7 (>= 0.1),
                    format = "csv" | "parquet" (needs pyarrow: ``pip install "gvlmodel[parquet]"``)

``gvlmodel simulate`` runs the cohort in parts of :data:`STREAM_CHUNK` patients and appends each
part to its tables, so memory stays bounded whatever the cohort size; every patient's draws depend
on the seed and its id only, so the files are byte for byte those of one whole run.

Everything is validated before anything runs or is written: an unknown key,
wrong type or out-of-range value raises :class:`~gvlmodel.core.errors.InputError`
naming the key and what is allowed (the CLI exits with status 2).
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .cohort import (DEFAULT_POPULATION_SD, ENGINE_HOOKS, MIN_TIME_STEP_DAYS, RESULT_BYTES_PER_PATIENT, CohortResult,
                     CohortSpec, Population, Protocol, _real, check_spreads, patient_trajectory, simulate_cohort)
from ..core import limits
from ..core.csvtext import csv_body, numeric_cells, text_cells
from ..core.errors import InputError, check_tables, read_toml
from ..core.limits import available_memory  # noqa: F401  (its home is gvlmodel.core.limits)
from ..core.limits import engine_bytes_per_patient
from ..model.parameters import (PARAMETER_NAMES, available_parameter_sets, check_ordered_ranges, parameter_ranges,
                                parameter_set_info, parse_variant, resolve_parameters)
from ..core.provenance import (AtomicFile, atomic_write_json, begin_outputs, finish_outputs, lock_outputs, provenance,
                               prune_outputs, resolved_config, unpublish)

TABLES = {
    "cohort": {"size", "seed", "transplant", "start", "relapse_mix", "relapse_ranges", "diagnosis_range"},
    "treatment": {"dose_mg", "escalate", "escalated_dose_mg", "escalation_day", "mmr_level_percent", "stop",
                  "restart", "follow_up_days", "visit_interval_days", "stop_uptake", "loss_rule"},
    "parameters": {"set", "variant"} | set(PARAMETER_NAMES),
    "population": set(PARAMETER_NAMES),
    "measurement": {"detection_limit", "noise_sd_log"},
    "solver": {"rtol", "atol", "extinction_threshold", "max_steps"},
    "output": {"trajectories", "time_step_days", "format"},
}
REQUIRED = {"cohort": {"size", "seed"}}

PATIENT_COLUMNS = ("patient_id", "transplant", "start", "relapse_type", "bcr_abl_start_percent", "reached_cmr",
                   "days_to_cmr", "escalated", "days_to_escalation", "would_stop", "stopped", "stop_day", "days_on_im_at_stop",
                   "lost_cmr", "days_stop_to_loss", "restarted", "restart_day", "eradicated", "days_to_eradication",
                   "final_bcr_abl_percent", "final_lsc", "final_effectors", "last_day_reached", "solver_status",
                   "solver_message", "n_steps")


#: memory of one table cell while its text is built (a Python str in a column list, then the joined text)
TEXT_CELL_BYTES = 70.0
#: columns of trajectories.csv (cohort.patient_trajectory)
TRAJECTORY_COLUMNS = 14
#: bytes of one table cell on disk (CSV text with its separator; Parquet is smaller)
DISK_CELL_BYTES = 12.0
#: table formats of ``[output] format``
OUTPUT_FORMATS = ("csv", "parquet")
#: patients run and written at a time by :func:`run_and_write` (a multiple of the draws' block)
STREAM_CHUNK = 32 * 1024
#: memory for one batch of trajectories while it is formatted (bytes)
TRAJECTORY_BATCH_BYTES = 2.0 ** 28
#: the result columns the summary needs, kept for every patient of a streamed run
SUMMARY_COLUMNS = ("solver_status", "solver_message", "reached_cmr", "escalated", "stopped", "lost_cmr", "eradicated",
                   "final_bcr_abl_percent", "final_lsc", "days_to_cmr", "days_on_im_at_stop", "days_stop_to_loss",
                   "last_day_reached", "stop_day", "relapse_type", "n_steps")
SUMMARY_BYTES_PER_PATIENT = 100.0


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
    output_format: str = "csv"

    def run(self, threads: int | None = None, progress: bool | None = None, patients: range | None = None) -> CohortResult:
        """The cohort's results (``patients``: only these consecutive ids, each as in the whole run)."""
        return simulate_cohort(self.cohort, self.protocol, self.parameters, variant=self.variant,
                               population=self.population, threads=threads, progress=progress, patients=patients,
                               **self.solver)

    def trajectory_grid(self) -> int:
        """Rows of one patient's trajectory."""
        return int(self.protocol.n_visits * self.protocol.visit_interval_days / self.time_step_days) + \
            self.protocol.n_visits + 1

    def trajectory_batch(self) -> int:
        """Trajectories formatted at a time (their text within :data:`TRAJECTORY_BATCH_BYTES`)."""
        per = self.trajectory_grid() * TRAJECTORY_COLUMNS * (8.0 + TEXT_CELL_BYTES)
        return max(1, int(TRAJECTORY_BATCH_BYTES // per))

    def memory_estimate(self, chunk: int | None = STREAM_CHUNK) -> dict[str, float]:
        """Rough peak memory of a run (bytes) in parts of ``chunk`` patients (``None``: all at once, as
        :meth:`run` with :func:`write_results`): the engine's per-visit arrays, the text of the tables as
        built before they are written, and the columns the summary keeps for every patient."""
        n = self.cohort.size
        m = n if chunk is None else min(n, chunk)
        engine = m * (engine_bytes_per_patient(self.protocol.n_visits) + RESULT_BYTES_PER_PATIENT)
        patients = m * (len(PATIENT_COLUMNS) + len(self.population.names)) * TEXT_CELL_BYTES
        n_traj = self.trajectory_ids().size
        batch = n_traj if chunk is None else min(n_traj, self.trajectory_batch())
        traj = batch * self.trajectory_grid() * TRAJECTORY_COLUMNS * (8.0 + TEXT_CELL_BYTES)
        summary = 0.0 if chunk is None else n * SUMMARY_BYTES_PER_PATIENT
        return {"engine": engine, "patients_table": patients, "trajectories": traj, "summary": summary,
                "total": engine + patients + traj + summary}

    def disk_estimate(self) -> dict[str, float]:
        """Rough size of the tables on disk (bytes)."""
        n = self.cohort.size
        patients = n * (len(PATIENT_COLUMNS) + len(self.population.names)) * DISK_CELL_BYTES
        traj = self.trajectory_ids().size * self.trajectory_grid() * TRAJECTORY_COLUMNS * DISK_CELL_BYTES
        return {"patients": patients, "trajectories": traj}

    def check_resources(self, available: float | None = None, out=None, chunk: int | None = STREAM_CHUNK) -> None:
        """Refuse (``InputError``, before anything runs or is written) a run whose :meth:`memory_estimate`
        exceeds 80 % of the memory available now (:func:`gvlmodel.core.limits.check_memory`) or, given the
        output folder ``out``, whose tables would not fit on its file system."""
        est = self.memory_estimate(chunk)
        limits.check_memory({"engine": est["engine"], "patients.csv": est["patients_table"],
                             "trajectories.csv": est["trajectories"], "summary": est["summary"]},
                            {"engine": "[cohort] size or [treatment] follow_up_days / visit_interval_days",
                             "patients.csv": "[cohort] size", "summary": "[cohort] size",
                             "trajectories.csv": "[output] trajectories (fewer patients) or a larger time_step_days"},
                            available, what="this run")
        if out is not None:
            disk = self.disk_estimate()
            limits.check_disk(disk, {"patients": "[cohort] size",
                                     "trajectories": "[output] trajectories (fewer patients) or a larger "
                                                     "time_step_days"}, out, what="this run")

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
        check_spreads({**params, **population.medians}, population.sd_log)
    except InputError as exc:
        raise InputError(f"[population] {exc}") from None
    check_ordered_ranges(parameter_ranges({**params, **population.medians},
                                          spread=[k for k, sd in population.sd_log.items() if sd > 0]),
                         "[population]", "a between-patient spread draws over the parameter's table bounds: remove "
                         "it, or set the other parameter ([parameters]) outside those bounds")
    solver = {}
    for key, check in (("rtol", limits.rtol), ("atol", limits.atol)):
        if key in so:
            solver[key] = check(f"solver.{key}", so[key])
    if "extinction_threshold" in so:
        solver["extinction_threshold"] = limits.extinction_threshold("solver.extinction_threshold",
                                                                     so["extinction_threshold"])
    if "max_steps" in so:
        solver["max_steps"] = limits.max_steps("solver.max_steps", so["max_steps"])
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
    fmt = output_format("output.format", ou.get("format", "csv"))
    return Scenario(cohort=cohort, protocol=protocol, parameters=params, parameter_set_name=set_name, variant=variant,
                    population=population, solver=solver, trajectories=traj, time_step_days=step, config=cfg,
                    output_format=fmt)


def output_format(field_name: str, v) -> str:
    """``v`` as one of :data:`OUTPUT_FORMATS`; Parquet needs pyarrow (the ``parquet`` extra)."""
    if not isinstance(v, str) or v not in OUTPUT_FORMATS:
        raise InputError(f"{field_name}: unknown format {v!r}; allowed: {', '.join(OUTPUT_FORMATS)}")
    if v == "parquet":
        import importlib.util

        if importlib.util.find_spec("pyarrow") is None:
            raise InputError(f'{field_name} = "parquet" needs pyarrow, which is not installed: '
                             'pip install "gvlmodel[parquet]" (or use format = "csv")')
    return v


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
    floats ``%.10g`` with non-finite values empty (both by the compiled kernels of
    :mod:`gvlmodel.core.csvtext`), anything else by :func:`_fmt` (mixed lists; ``None`` is empty, text
    quoted when it holds a comma, quote or line break)."""
    a = np.asarray(values)
    if a.ndim == 1 and a.dtype == bool:
        return np.where(a, "true", "false").tolist()
    if _numeric(a):
        cells, lens = numeric_cells(a)
        return [bytes(c[:m]).decode("ascii") for c, m in zip(cells, lens.tolist())]
    if a.dtype == object and a.ndim == 1:  # labels (relapse type, solver message): each distinct text formatted once
        cache: dict = {}

        def cell(v):
            if type(v) is str:
                t = cache.get(v)
                if t is None:
                    t = cache[v] = _fmt(v)
                return t
            return _fmt(v)

        return list(map(cell, a.tolist()))
    return [_fmt(v) for v in values]


def _numeric(a: np.ndarray) -> bool:
    """Whether column ``a`` goes to the compiled formatters: 1-D floats, or integers that fit int64."""
    return a.ndim == 1 and (a.dtype.kind in "fi" or (a.dtype.kind == "u" and (a.size == 0 or a.max() < 2 ** 63)))


def table_csv(columns: dict[str, np.ndarray], header: bool = True) -> str:
    """Columns (equal lengths) as CSV text: a header row (unless ``header=False``: a part appended to a
    table) and one row per entry, each cell as :func:`_fmt` writes it (see :func:`format_column`)."""
    return table_csv_bytes(columns, header).decode("utf-8")


def table_csv_bytes(columns: dict[str, np.ndarray], header: bool = True) -> bytes:
    """:func:`table_csv` as UTF-8 bytes.  Float and integer columns are formatted and the rows joined by
    compiled kernels (:mod:`gvlmodel.core.csvtext`: the same text as ``%.10g`` and ``%d``, ~10x faster
    than Python's formatting); booleans and text go through :func:`format_column`, each distinct text once."""
    names = list(columns)
    cells, lengths = [], set()
    for k in names:
        v = columns[k]
        a = np.asarray(v)
        if _numeric(a):
            table, lens = numeric_cells(a)
            cells.append((table, lens, None))
        elif a.ndim == 1 and a.dtype == bool:
            cells.append((_BOOL_TABLE, _BOOL_LENS, a.astype(np.int64)))
        else:
            cells.append(text_cells(format_column(v)))
        lengths.add(len(cells[-1][2]) if cells[-1][2] is not None else len(cells[-1][1]))
    if len(lengths) > 1:
        raise ValueError(f"table_csv: columns of unequal length {sorted(lengths)}")
    n = lengths.pop() if lengths else 0
    return ((",".join(names) + "\n").encode("utf-8") if header else b"") + csv_body(cells, n)


_BOOL_TABLE = np.frombuffer(b"false" b"true\0", dtype=np.uint8).reshape(2, 5)
_BOOL_LENS = np.array([5, 4], dtype=np.int64)


def table_arrow(columns: dict[str, np.ndarray]):
    """Columns as a pyarrow table: booleans, integers and floats keep their types (a non-finite float is
    null, as it is empty in CSV), anything else is text (``None`` null)."""
    import pyarrow as pa

    arrays = {}
    for k, v in columns.items():
        a = np.asarray(v)
        if a.dtype.kind in "biu":
            arrays[k] = pa.array(a)
        elif a.dtype.kind == "f":
            arrays[k] = pa.array(a, mask=~np.isfinite(a), type=pa.float64())
        else:
            arrays[k] = pa.array([None if x is None else str(x) for x in v], type=pa.string())
    return pa.table(arrays)


class TableWriter:
    """A table (``out/stem.csv`` or ``.parquet``) appended part by part and published atomically on
    :meth:`commit` (a temporary file until then; :meth:`discard` removes it)."""

    def __init__(self, out: Path, stem: str, fmt: str):
        self.name = f"{stem}.{fmt}"
        self.fmt = fmt
        self.file = AtomicFile(Path(out) / self.name)
        self.header = True
        self.parquet = None

    def write(self, columns: dict[str, np.ndarray]) -> None:
        if self.fmt == "csv":
            self.file.fh.write(table_csv_bytes(columns, header=self.header))
        else:
            import pyarrow.parquet as pq

            table = table_arrow(columns)
            if self.parquet is None:
                self.parquet = pq.ParquetWriter(self.file.fh, table.schema)
            self.parquet.write_table(table.cast(self.parquet.schema))
        self.header = False

    def commit(self) -> None:
        if self.parquet is not None:
            self.parquet.close()
        self.file.commit()

    def discard(self) -> None:
        if self.parquet is not None:
            try:
                self.parquet.close()
            except Exception:  # noqa: BLE001 (the file is removed anyway)
                pass
        self.file.discard()


#: every file :func:`write_results` can write
RESULT_FILES = ("patients.csv", "trajectories.csv", "patients.parquet", "trajectories.parquet", "summary.json",
                "provenance.json")


def patient_table(result: CohortResult) -> dict[str, np.ndarray]:
    """The columns of ``patients.csv``: :data:`PATIENT_COLUMNS` and each varied parameter (``param_<name>``)."""
    cols = {k: result.columns[k] for k in PATIENT_COLUMNS}
    for name, v in result.patient_parameters.items():
        cols[f"param_{name}"] = v
    return cols


class _Streamed:
    """What :func:`gvlmodel.clinical.summary.cohort_summary` reads of a result, gathered over the parts of a run."""

    def __init__(self, columns, cohort, wall_s, threads):
        self.columns, self.cohort, self.wall_s, self.threads = columns, cohort, wall_s, threads

    @property
    def n(self) -> int:
        return len(self.columns["solver_status"])

    def summary(self) -> dict:
        from .summary import cohort_summary

        return cohort_summary(self)


class _Kept:
    """The :data:`SUMMARY_COLUMNS` of every part of a run, filled into arrays allocated once for the cohort
    (no list of parts concatenated at the end, which held every column twice: ~95 instead of ~190 bytes
    per patient at the peak)."""

    def __init__(self, capacity: int):
        self.capacity = max(0, int(capacity))
        self.arrays: dict[str, np.ndarray] = {}
        self.n = 0

    def append(self, columns) -> None:
        m = len(columns[SUMMARY_COLUMNS[0]])
        for c in SUMMARY_COLUMNS:
            v = np.asarray(columns[c])
            a = self.arrays.get(c)
            if a is None or a.dtype != np.result_type(a, v) or self.n + m > a.shape[0]:
                grown = np.empty(max(self.capacity, 2 * (self.n + m)) if a is not None else max(self.capacity, m),
                                 dtype=v.dtype if a is None else np.result_type(a, v))
                if a is not None:
                    grown[:self.n] = a[:self.n]
                self.arrays[c] = a = grown
            a[self.n:self.n + m] = v
        self.n += m

    def columns(self) -> dict[str, np.ndarray]:
        if not self.arrays:
            return {c: np.empty(0) for c in SUMMARY_COLUMNS}
        return {c: a[:self.n] for c, a in self.arrays.items()}


def _write(scenario: Scenario, out: Path, parts, progress=None) -> tuple[list[str], dict, _Streamed]:
    """Run-and-write core: ``parts`` yields :class:`CohortResult` s of consecutive patients; each is
    appended to the tables (temporary files), then everything is published (atomically, provenance last)."""
    out = Path(out)
    ids = scenario.trajectory_ids()
    fmt = scenario.output_format
    lock_outputs(out)
    writers = {"patients": TableWriter(out, "patients", fmt)}
    if ids.size:
        writers["trajectories"] = TableWriter(out, "trajectories", fmt)
    keep = _Kept(scenario.cohort.size)
    wall, threads, solver_options = 0.0, None, None
    batch = scenario.trajectory_batch()
    # the patients table of part k is formatted and written in a second thread while part k + 1 runs in the
    # compiled engine (which releases the GIL): started when that engine starts (after the draws, which need
    # the GIL), and waited for before part k + 1 is written
    pool = ThreadPoolExecutor(1, thread_name_prefix="gvlmodel-writer")
    queued = []  # the patients table not yet handed to the writer
    pending = []  # the writer's job

    def start_writing():
        if queued:
            pending.append(pool.submit(writers["patients"].write, queued.pop()))

    def finish_writing():
        start_writing()  # (a part that ran no engine leaves its predecessor queued)
        while pending:
            pending.pop().result()

    try:
        for r in parts:
            finish_writing()
            queued.append(patient_table(r))
            ENGINE_HOOKS.before_engine = start_writing
            pid = r.columns["patient_id"]
            rows = np.flatnonzero(np.isin(pid, ids)) if ids.size else np.array([], dtype=int)
            for lo in range(0, rows.size, batch):
                traj = [patient_trajectory(r, int(i), scenario.time_step_days) for i in rows[lo:lo + batch]]
                writers["trajectories"].write({k: np.concatenate([t[k] for t in traj]) for k in traj[0]})
            keep.append(r.columns)
            wall += r.wall_s
            threads, solver_options = r.threads, r.solver_options
            if progress is not None:
                progress(r.n)
        ENGINE_HOOKS.before_engine = None
        finish_writing()
        view = _Streamed(keep.columns(), scenario.cohort, wall, threads)
        summary = view.summary()
    except BaseException:
        ENGINE_HOOKS.before_engine = None
        pool.shutdown(wait=True)  # no write may still be running when the temporary files go
        for w in writers.values():
            w.discard()
        raise
    finally:
        pool.shutdown(wait=True)
    summary["scenario"] = {"variant": scenario.variant, "parameter_set": scenario.parameter_set_name,
                           "transplant": scenario.cohort.transplant, "start": scenario.cohort.start,
                           "stop_rule": str(scenario.protocol.stop), "stop_uptake": scenario.protocol.stop_uptake,
                           "population_sd_log": scenario.population.sd_log}
    begin_outputs(out)
    names = [w.name for w in writers.values()]
    prune_outputs(out, RESULT_FILES, names + ["summary.json", "provenance.json"])
    try:  # publish: a failure (a full disk) removes what this run published in a folder it created
        for w in writers.values():
            w.commit()
        atomic_write_json(out / "summary.json", summary)
        prov = provenance(scenario.config, seed=scenario.cohort.seed)
        prov["resolved"] = {"parameters": scenario.parameters, "variant": scenario.variant,
                            "cohort": resolved_config(scenario.cohort),
                            "population": resolved_config(scenario.population),
                            "protocol": resolved_config(scenario.protocol),
                            "solver": solver_options, "threads": threads, "output_format": fmt}
        finish_outputs(out, prov)
    except BaseException:
        for w in writers.values():
            w.discard()
        unpublish(out, names + ["summary.json", "provenance.json"])
        raise
    return names + ["summary.json", "provenance.json"], summary, view


def write_results(scenario: Scenario, result: CohortResult, out: Path) -> list[str]:
    """Write the tables (``[output] format``), summary.json and provenance.json of a whole run (each atomically).

    A table left in ``out`` by an earlier run that this run does not write (``trajectories.csv`` when
    this run asks for none, the other format's files) is removed.
    """
    return _write(scenario, out, [result])[0]


def run_and_write(scenario: Scenario, out: Path, threads: int | None = None, progress: bool | None = None,
                  chunk: int = STREAM_CHUNK) -> tuple[list[str], dict, _Streamed]:
    """Run the scenario in parts of ``chunk`` patients, appending each to the tables as it is done, then
    publish them, ``summary.json`` and ``provenance.json``; returns ``(files, summary, run)``.

    Memory is bounded by the part, not the cohort (only the summary's columns are kept for every
    patient); the files equal those of :meth:`Scenario.run` + :func:`write_results` byte for byte.
    """
    from .cohort import check_threads
    from ..core.errors import integer

    chunk = integer("chunk", chunk, lo=1)
    n = scenario.cohort.size
    threads = check_threads(threads)
    bar = None
    if progress is not False and n > chunk:
        from tqdm.auto import tqdm

        bar = tqdm(total=n, unit="patient", desc="cohort", leave=False, disable=None if progress is None else False)

    def parts():
        for lo in range(0, n, chunk):
            yield scenario.run(threads=threads, progress=progress if n <= chunk else False,
                               patients=range(lo, min(n, lo + chunk)))

    try:
        return _write(scenario, out, parts(), progress=None if bar is None else bar.update)
    finally:
        if bar is not None:
            bar.close()
