"""Patient-level calibration data shipped in ``gvlmodel/data/``, with loaders.

Data sets (names for :func:`dataset`; provenance in ``gvlmodel/data/README.md``):

``michor2005``
    68 non-transplanted chronic-phase CML patients on imatinib 400 mg/day, first year of
    therapy, 435 BCR-ABL/BCR (%) samples.  Michor F et al., Nature 2005;435:1267-70,
    supplementary Fig. 5.  Values can exceed 100 % at the start (different control gene).
``hahnel2020``
    21 non-transplanted patients on TKI from diagnosis until cessation, 474 BCR-ABL (IS, %)
    samples, 137 of them undetectable (left-censored: the value is the sample's upper limit).
    Hähnel T et al., Cancer Res 2020;80:2394-406, Fig. S2 (series) and Table S1 (cessation
    months).  The time axis is months from diagnosis, converted to days with
    :data:`DAYS_PER_MONTH`.  Follow-up after cessation is deliberately not included.
``stim1_2010``
    STIM1 discontinuation trial, population summary.  Mahon FX et al., Lancet Oncol
    2010;11:1029-35; Etienne G et al., J Clin Oncol 2017;35:298-305.
``hess2005``
    Hess G et al., J Clin Oncol 2005;23:7583-93 (``hess2005.toml``; also read by
    :mod:`gvlmodel.clinical.calibration`).

The Michor and Hähnel series were digitized from the figures by the authors of the ``myelo``
R package (Radivoyevitch et al., github radivot/myelo, GPL-2; data objects ``michor``,
``hahnelFigS2``, ``glauchePars20``).  Digitization error is about ±0.1 log10 and ±0.5 month; in
six Hähnel patients the cessation month falls up to 0.032 month before the last on-TKI sample,
within that error (``stop_day`` is kept as digitized).

All files are read from the package's own ``data`` folder; nothing outside the package is read.
"""
from __future__ import annotations

import csv
import io
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.errors import InputError, parse_number, read_toml

DATA_DIR = Path(__file__).resolve().parents[1] / "data"

DAYS_PER_MONTH = 365.25 / 12  # 30.4375 days: a mean Julian month


# --------------------------------------------------------------------------------------------------
# the record


@dataclass(frozen=True, eq=False)
class PatientSeries:
    """One patient's BCR-ABL series.

    ``day`` counts days from the start of therapy; ``censored[i]`` is True when sample ``i`` was
    undetectable and ``bcr_abl_percent[i]`` is that sample's upper limit.  ``stop_day`` is the day
    therapy stopped (``nan`` when it did not stop within the series).  The arrays are read-only.
    """

    patient_id: str
    day: np.ndarray
    bcr_abl_percent: np.ndarray
    censored: np.ndarray
    stop_day: float = math.nan
    dataset: str = ""
    transplant: bool = False

    def __post_init__(self):
        from ..core.errors import real, real_array

        what = f"PatientSeries {self.patient_id!r}"
        day = real_array(f"{what}: day", self.day, "days (numbers)")
        value = real_array(f"{what}: bcr_abl_percent", self.bcr_abl_percent, "BCR-ABL ratios in % (numbers)")
        cens = np.asarray(self.censored)
        if cens.dtype.kind not in "biu" or (cens.size and not np.isin(cens, (0, 1)).all()):
            raise InputError(f"{what}: censored must be booleans (or 0/1), got {self.censored!r:.80}")
        cens = cens.astype(bool)
        if not (day.ndim == value.ndim == cens.ndim == 1) or not (day.size == value.size == cens.size):
            raise InputError(f"PatientSeries {self.patient_id!r}: day, bcr_abl_percent and censored must be "
                             f"1-d arrays of equal length, got shapes {day.shape}, {value.shape}, {cens.shape}")
        for name, a in (("day", day), ("bcr_abl_percent", value), ("censored", cens)):
            a.setflags(write=False)
            object.__setattr__(self, name, a)
        object.__setattr__(self, "patient_id", str(self.patient_id))
        object.__setattr__(self, "stop_day", math.nan if self.stop_day is None or (isinstance(self.stop_day, float)
                                                                                  and math.isnan(self.stop_day))
                           else real(f"{what}: stop_day", self.stop_day))
        object.__setattr__(self, "transplant", bool(self.transplant))

    def __len__(self) -> int:
        return int(self.day.size)


# --------------------------------------------------------------------------------------------------
# parsing


def _read_csv(path, columns: dict[str, str], optional: dict[str, str] | None = None,
              ordered: bool = True, text: str | None = None) -> dict[str, np.ndarray]:
    """A plain CSV file with the header ``columns`` (name -> kind) as arrays.

    Kinds: ``"id"`` (non-empty string), ``"float"`` (finite number), ``"positive"`` (finite, > 0),
    ``"nonnegative"`` (finite, >= 0), ``"flag"`` (0 or 1 -> bool), ``"bool"`` (true/false or 1/0,
    any case -> bool).  ``optional`` columns may be present or not (absent ones are absent from the
    result); ``ordered=False`` accepts the columns in any order.  Any problem raises
    :class:`InputError` naming the file, the row (its line number in the file, the header being
    line 1) and the column.  ``text``: the file's contents, already read (``path`` then only names it).
    """
    optional = dict(optional or {})
    path = Path(path)
    try:
        if text is not None:
            rows = list(csv.reader(io.StringIO(text, newline="")))
        else:
            with open(path, newline="", encoding="utf-8") as fh:
                rows = list(csv.reader(fh))
    except FileNotFoundError:
        raise InputError(f"data file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read ({exc})") from None
    if not rows:
        raise InputError(f"{path}: empty file; expected a header row {','.join(columns)}")
    header = [h.strip() for h in rows[0]]
    expected = list(columns) + [f"{c} (optional)" for c in optional]
    unknown = [h for h in header if h not in columns and h not in optional]
    if unknown:
        raise InputError(f"{path}: row 1 (header): unknown column(s) {unknown}; expected {expected}")
    missing = [c for c in columns if c not in header]
    if missing:
        raise InputError(f"{path}: row 1 (header): missing column(s) {missing}; expected {expected}")
    twice = sorted({h for h in header if header.count(h) > 1})
    if twice:
        raise InputError(f"{path}: row 1 (header): column(s) {twice} appear more than once")
    if ordered and header != list(columns):
        raise InputError(f"{path}: row 1 (header): columns {header}; expected exactly {list(columns)}")
    kinds = {**columns, **optional}
    present = {h: kinds[h] for h in header}

    out: dict[str, list] = {c: [] for c in header}
    for line, row in enumerate(rows[1:], start=2):
        if not row or all(not x.strip() for x in row):
            continue  # a blank line (e.g. a trailing one)
        if len(row) != len(header):
            raise InputError(f"{path}: row {line}: {len(row)} field(s), expected {len(header)} "
                             f"({','.join(header)})")
        for (name, kind), text in zip(present.items(), row):
            out[name].append(_field(path, line, name, kind, text.strip()))
    if not out[header[0]]:
        raise InputError(f"{path}: no data rows")
    return {name: (np.array(v, dtype=object) if present[name] == "id" else
                   np.array(v, dtype=bool if present[name] in ("flag", "bool") else float))
            for name, v in out.items()}


def _field(path, line, name, kind, text):
    where = f"{path}: row {line}, column {name!r}"
    if kind == "id":
        if not text:
            raise InputError(f"{where}: empty; expected a patient id")
        return text
    if kind == "flag":
        if text not in ("0", "1"):
            raise InputError(f"{where}: expected 0 or 1, got {text!r}")
        return text == "1"
    if kind == "bool":
        if text.lower() not in ("true", "false", "1", "0"):
            raise InputError(f"{where}: expected true or false (or 1 / 0), got {text!r}")
        return text.lower() in ("true", "1")
    v = parse_number(where, text)
    if kind == "positive" and v <= 0:
        raise InputError(f"{where}: must be > 0, got {text}")
    if kind == "nonnegative" and v < 0:
        raise InputError(f"{where}: must be >= 0, got {text}")
    return v


def _group(path, ids: np.ndarray, time: np.ndarray, time_column: str) -> dict[str, np.ndarray]:
    """Row indices per patient (in order of first appearance); times must be sorted within a patient."""
    groups: dict[str, list[int]] = {}
    for i, pid in enumerate(ids):
        rows = groups.setdefault(pid, [])
        if rows and time[i] < time[rows[-1]]:
            raise InputError(f"{path}: row {i + 2}, column {time_column!r}: patient {pid} is not sorted by "
                             f"time ({time[i]:g} after {time[rows[-1]]:g})")
        rows.append(i)
    return {pid: np.array(rows) for pid, rows in groups.items()}


def _parse_series(path, time_column: str, time_scale: float, censor_column: str | None, dataset: str,
                  stop_days: dict[str, float] | None = None) -> list[PatientSeries]:
    columns = {"patient_id": "id", time_column: "nonnegative", "bcr_abl_percent": "positive"}
    if censor_column is not None:
        columns[censor_column] = "flag"
    t = _read_csv(path, columns)
    groups = _group(path, t["patient_id"], t[time_column], time_column)
    if stop_days is not None and set(stop_days) != set(groups):
        raise InputError(f"{path}: patients {sorted(set(groups) ^ set(stop_days), key=_id_key)} appear in "
                         "only one of the series and the cessation file")
    out = []
    for pid, rows in groups.items():
        cens = t[censor_column][rows] if censor_column is not None else np.zeros(rows.size, dtype=bool)
        out.append(PatientSeries(patient_id=pid, day=t[time_column][rows] * time_scale,
                                 bcr_abl_percent=t["bcr_abl_percent"][rows], censored=cens,
                                 stop_day=stop_days[pid] if stop_days is not None else math.nan,
                                 dataset=dataset, transplant=False))
    return out


def _id_key(pid: str):
    return (0, int(pid), "") if pid.isdigit() else (1, 0, pid)


def _parse_cessation(path) -> dict[str, float]:
    """``patient_id, cessation_month`` -> {patient_id: stop day}; one row per patient."""
    t = _read_csv(path, {"patient_id": "id", "cessation_month": "positive"})
    out: dict[str, float] = {}
    for i, (pid, month) in enumerate(zip(t["patient_id"], t["cessation_month"])):
        if pid in out:
            raise InputError(f"{path}: row {i + 2}, column 'patient_id': patient {pid} appears twice")
        out[pid] = float(month) * DAYS_PER_MONTH
    return out


# --------------------------------------------------------------------------------------------------
# loaders


def load_michor2005() -> list[PatientSeries]:
    """Michor 2005 (68 patients, 435 samples): imatinib from day 0, nothing censored, no stop."""
    return _parse_series(DATA_DIR / "michor2005_imatinib.csv", "day", 1.0, None, "michor2005")


def load_hahnel2020() -> list[PatientSeries]:
    """Hähnel 2020 (21 patients, 474 samples) on TKI until cessation; day = month * DAYS_PER_MONTH.

    ``censored`` is the file's ``upper_limit`` column; ``stop_day`` comes from
    ``hahnel2020_cessation.csv`` (Table S1).
    """
    stops = _parse_cessation(DATA_DIR / "hahnel2020_cessation.csv")
    return _parse_series(DATA_DIR / "hahnel2020_on_tki.csv", "month_from_diagnosis", DAYS_PER_MONTH,
                         "upper_limit", "hahnel2020", stops)


_STIM1_REQUIRED = {
    "eligibility": ("min_imatinib_days", "min_undetectable_days", "transplanted"),
    "monitoring": ("visit_interval_days", "relapse_definition"),
    "outcome": ("patients", "median_months_to_relapse"),
}
_RELAPSE_FREE = re.compile(r"molecular_relapse_free_(\d+)_months")


def load_stim1() -> dict:
    """STIM1 summary: the TOML's tables plus ``derived`` values in days.

    ``derived`` holds ``relapse_free_months`` / ``relapse_free_days`` (sorted) with the matching
    ``relapse_free_fraction``, and ``median_days_to_relapse``.
    """
    path = DATA_DIR / "stim1_2010.toml"
    d = read_toml(path, "STIM1 data")
    for table, keys in _STIM1_REQUIRED.items():
        sub = d.get(table)
        if not isinstance(sub, dict):
            raise InputError(f"{path}: missing table [{table}]")
        for k in keys:
            if k not in sub:
                raise InputError(f"{path}: [{table}] {k}: required")
    points = []
    for k, v in d["outcome"].items():
        m = _RELAPSE_FREE.fullmatch(k)
        if m:
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1:
                raise InputError(f"{path}: [outcome] {k}: expected a fraction in [0, 1], got {v!r}")
            points.append((int(m.group(1)), float(v)))
    if not points:
        raise InputError(f"{path}: [outcome]: no molecular_relapse_free_<N>_months entries")
    points.sort()
    months = np.array([p[0] for p in points], dtype=float)
    d["derived"] = {
        "relapse_free_months": months,
        "relapse_free_days": months * DAYS_PER_MONTH,
        "relapse_free_fraction": np.array([p[1] for p in points]),
        "median_days_to_relapse": float(d["outcome"]["median_months_to_relapse"]) * DAYS_PER_MONTH,
        "days_per_month": DAYS_PER_MONTH,
    }
    return d


def load_hess2005() -> dict:
    """The Hess 2005 calibration numbers (``hess2005.toml``) as a dict."""
    return read_toml(DATA_DIR / "hess2005.toml", "Hess 2005 data")


DATASETS = {
    "michor2005": load_michor2005,
    "hahnel2020": load_hahnel2020,
    "stim1_2010": load_stim1,
    "hess2005": load_hess2005,
}


def dataset(name: str):
    """The data set ``name`` (a key of :data:`DATASETS`), loaded."""
    if not isinstance(name, str) or name not in DATASETS:
        raise InputError(f"dataset: unknown name {name!r}; allowed: {', '.join(sorted(DATASETS))}")
    return DATASETS[name]()


def series_to_arrays(series_list) -> dict[str, np.ndarray]:
    """Flat arrays over all samples of ``series_list``, for vectorised likelihoods.

    Per sample: ``patient`` (int index into ``series_list``), ``day``, ``value``
    (BCR-ABL %), ``censored``.  Per patient: ``patient_id``, ``stop_day``.
    """
    series_list = list(series_list)
    for i, s in enumerate(series_list):
        if not isinstance(s, PatientSeries):
            raise InputError(f"series_to_arrays: item {i} is a {type(s).__name__}, expected a PatientSeries")
    counts = np.array([len(s) for s in series_list], dtype=int)

    def cat(attr, dtype):
        parts = [getattr(s, attr) for s in series_list]
        return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype=dtype)

    return {
        "patient": np.repeat(np.arange(len(series_list)), counts),
        "day": cat("day", float),
        "value": cat("bcr_abl_percent", float),
        "censored": cat("censored", bool),
        "patient_id": np.array([s.patient_id for s in series_list], dtype=object),
        "stop_day": np.array([s.stop_day for s in series_list], dtype=float),
    }
