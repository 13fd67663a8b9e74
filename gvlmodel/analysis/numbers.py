"""Every number a manuscript quotes, generated from the saved results (never typed by hand).

:func:`collect` reads ``RESULTS/`` (whatever experiments exist there) and returns a list of
:class:`Number`: each with a name (``fit_hess2005.prob.H2``: the experiment folder, then the
quantity), a LaTeX macro, its value, unit, description, the file it was read from and, where the
result has one, an interval (credible, predictive, binomial, Monte Carlo, bootstrap or
interquartile; its kind is stated). :func:`write_numbers` writes them as ``RESULTS/numbers.json``,
LaTeX macros ``RESULTS/numbers.tex`` and a table ``RESULTS/numbers.md``.

Macro names (see :data:`SCHEME`): ``\\gvl`` + the experiment's short tag (:data:`EXPERIMENT_TAGS`;
another folder's name in CamelCase) + the quantity's words in CamelCase, abbreviated by
:data:`ABBREVIATIONS`, with numbers spelled out in words (LaTeX command names hold letters only):
``\\gvlFitProbHTwo``, ``\\gvlHessRateReachedCMR``, ``\\gvlFitTFRTxNinetyDays``. A number with an
interval also has ``...Lo`` and ``...Hi`` macros for its bounds.

Sources read, by kind of folder: a fit (``report.json`` with ``predictive``: observed calibration
numbers, model probabilities and Bayes factors, posterior predictive medians, the diagnostics and
the mechanistic answers), a calibration (``report.json`` with ``per_dataset``), a scenario
(``summary.json`` beside ``patients.csv``: rates and medians), a sensitivity study
(``indices.json``: top-ranked factors per output and the local coefficients), a dynamics run
(``summary.json`` beside ``steady_states.json``) and a stop prediction (``summary.json`` of kind
``predict-stop``).
"""
from __future__ import annotations

import json
import math
import re

import numpy as np
from dataclasses import asdict, dataclass
from pathlib import Path

from ..core.version import __version__
from ..core.provenance import atomic_write_json, atomic_write_text

#: short tags of the shipped experiments in macro names; any other folder uses its name in CamelCase
EXPERIMENT_TAGS = {"fit_hess2005": "Fit", "calibrate_patients": "Cal", "predict_stop_hahnel2020": "Stop",
                   "sensitivity_hess2005": "Sens", "dynamics": "Dyn", "hess2005": "Hess",
                   "nontransplanted_short": "NonTxShort", "continuous_diagnosis": "ContDx",
                   "residual_control_transplanted": "ResCtrlTx", "compare_hess2005": "Cmp"}

#: words of a key path written differently in macro names (others are capitalised)
ABBREVIATIONS = {"cmr": "CMR", "mmr": "MMR", "im": "IM", "tfr": "TFR", "lsc": "LSC", "bcr": "BCR", "abl": "ABL",
                 "tx": "Tx", "transplanted": "Tx", "nontx": "NonTx", "nontransplanted": "NonTx",
                 "median": "Med", "frac": "Frac", "sd": "SD", "st": "ST", "stim": "STIM", "pcr": "PCR",
                 "obs": "Obs", "observed": "Obs", "percent": "Pct", "log10": "Log", "le": "Le",
                 "bf": "BF", "vs": "Vs", "mu": "Mu", "rho": "Rho", "ic": "IC",
                 "michor2005": "Michor", "hahnel2020": "Hahnel", "hess2005": "Hess", "stim1": "STIM"}

_ONES = ("Zero One Two Three Four Five Six Seven Eight Nine Ten Eleven Twelve Thirteen Fourteen Fifteen Sixteen "
         "Seventeen Eighteen Nineteen").split()
_TENS = ("", "", "Twenty", "Thirty", "Forty", "Fifty", "Sixty", "Seventy", "Eighty", "Ninety")
_ORDINALS = ("First", "Second", "Third", "Fourth", "Fifth", "Sixth", "Seventh", "Eighth", "Ninth", "Tenth")

#: intervals, by kind (the ``interval_kind`` of a :class:`Number`)
CREDIBLE = "90 % credible interval (5th-95th percentile over posterior draws)"
PREDICTIVE = "90 % posterior predictive interval (5th-95th percentile over virtual trials)"
BINOMIAL = "95 % exact binomial (Clopper-Pearson) interval"
IQR = "interquartile range over patients"
MONTE_CARLO = "estimate ± 1.96 Monte Carlo SE (effective sample size of the final ABC population)"
BOOTSTRAP = "95 % bootstrap confidence interval (SALib)"

SCHEME = """\
Macro names are `\\gvl` + the experiment's short tag + the quantity's words in CamelCase:

- experiment tags: {tags}; any other result folder uses its own name in CamelCase;
- words of the quantity are capitalised, these abbreviated: {abbr};
- numbers are spelled out in words (LaTeX command names hold letters only): `H2` is `HTwo`,
  90 days is `NinetyDays`, ranks are `First`, `Second`, `Third`;
- a number with an interval also has the macros `...Lo` and `...Hi` for the interval's bounds.
""".format(tags=", ".join(f"`{k}` → `{v}`" for k, v in EXPERIMENT_TAGS.items()),
           abbr=", ".join(f"`{k}` → `{v}`" for k, v in ABBREVIATIONS.items()))


@dataclass(frozen=True)
class Number:
    """One quoted number: ``value`` (a number, a yes/no or a label) with its meaning and provenance."""

    name: str
    macro: str
    value: object
    unit: str
    description: str
    source: str
    low: float | None = None
    high: float | None = None
    interval_kind: str | None = None

    @property
    def has_interval(self) -> bool:
        return self.low is not None and self.high is not None


def number_words(n: int) -> str:
    """``730`` -> ``SevenHundredThirty`` (non-negative integers)."""
    n = int(n)
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + (_ONES[n % 10] if n % 10 else "")
    if n < 1000:
        return _ONES[n // 100] + "Hundred" + (number_words(n % 100) if n % 100 else "")
    if n < 1_000_000:
        return number_words(n // 1000) + "Thousand" + (number_words(n % 1000) if n % 1000 else "")
    return "".join(_ONES[int(d)] for d in str(n))


def camel(*parts) -> str:
    """Words of ``parts`` in CamelCase with :data:`ABBREVIATIONS`, numbers in words:
    ``("median_im_days", "H2")`` -> ``MedIMDaysHTwo``."""
    out = ""
    for part in parts:
        text = str(part).replace("log10", "log10 ")
        for word in re.split(r"[^0-9A-Za-z]+", text):
            if not word:
                continue
            if word.lower() in ABBREVIATIONS:
                out += ABBREVIATIONS[word.lower()]
                continue
            for piece in re.findall(r"[A-Za-z]+|[0-9]+", word):
                if piece.isdigit():
                    out += number_words(int(piece))
                else:
                    out += ABBREVIATIONS.get(piece.lower(), piece[0].upper() + piece[1:])
    return out


def experiment_tag(folder: str) -> str:
    return EXPERIMENT_TAGS.get(folder) or camel(folder)


def _load(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


class _Collector:
    """Adds :class:`Number` rows for one result folder (``tag`` in macros, ``folder`` in names)."""

    def __init__(self, folder: str, source: str):
        self.folder, self.tag, self.source, self.rows = folder, experiment_tag(folder), source, []

    def add(self, key, macro_words, value, unit, description, low=None, high=None, kind=None, source=None):
        if value is None or (isinstance(value, float) and not math.isfinite(value)):
            return
        if not (_finite(low) and _finite(high)):
            low = high = kind = None
        key = key if isinstance(key, str) else ".".join(str(k) for k in key)
        words = macro_words if isinstance(macro_words, (tuple, list)) else (macro_words,)
        self.rows.append(Number(f"{self.folder}.{key}", "gvl" + self.tag + camel(*words), value, unit, description,
                                source or self.source, low, high, kind))

    def band(self, key, words, b, unit, description, kind=CREDIBLE):
        if b and b.get("median") is not None:
            self.add(key, words, b["median"], unit, description, b.get("q05"), b.get("q95"), kind)


# --------------------------------------------------------------------------
# sections, one per kind of result folder
# --------------------------------------------------------------------------
#: Hess 2005 calibration statistics: (unit, description)
FIT_STATISTICS = {
    "frac_cmr": ("fraction", "share of the 44 patients who reached CMR"),
    "frac_stopped": ("fraction", "share of the 44 patients who stopped imatinib"),
    "frac_durable": ("fraction", "share of stopped patients whose CMR lasted (durable CMR after the stop)"),
    "median_im_days_durable": ("days", "median days on imatinib before the stop, patients with durable CMR"),
    "median_im_days_lost": ("days", "median days on imatinib before the stop, patients who lost CMR"),
    "nontx_frac_relapse": ("fraction", "non-transplanted comparator: share relapsing within the comparator window "
                                       "after the stop"),
}
_FIT_DIAGNOSTICS = {
    "lost_clone_extinct_at_stop": "share of patients who lost CMR whose LSC clone was already extinct at the stop "
                                  "(progenitor washout, not a stem-cell relapse)",
    "durable_short_follow_up": "share of durable patients with less follow-up after the stop than the trial's "
                               "(censored by the trial's end)",
    "patients_at_bound": "share of virtual patients with a between-patient parameter clipped to its table bound",
    "nontx_cmr_by_stop": "non-transplanted comparator: share who had reached CMR by the stop",
}
_HESS_ANSWERS = {
    "durable_fraction": ("DurableFrac", "fraction", "Hess protocol: share of stopped patients with durable CMR"),
    "median_im_days_durable": ("MedIMDaysDurable", "days",
                               "Hess protocol: median days on imatinib before the stop, durable CMR"),
    "median_im_days_lost": ("MedIMDaysLost", "days", "Hess protocol: median days on imatinib before the stop, lost CMR"),
    "eradicated_share_of_durable": ("EradicatedShareDurable", "fraction",
                                    "Hess protocol: share of durable remissions that are eradication (fewer than one "
                                    "LSC) rather than sustained immune control"),
    "durable_minus_lost_im_days": ("DurableMinusLostIMDays", "days",
                                   "Hess protocol: median days on imatinib before the stop, durable minus lost"),
}
_SETTINGS = {"transplanted": "after SCT", "non_transplanted": "non-transplanted"}


def _fit(c: _Collector, r: dict) -> None:
    c.add("best", "Best", r["best"], "hypothesis", "hypothesis with the highest posterior model probability")
    c.add("source", "Source", r.get("source", "abc"), "label",
          "where the posterior comes from: an ABC fit (abc) or the shipped parameter sets (shipped_sets)")
    for k, v in r.get("observed", {}).items():
        unit, what = FIT_STATISTICS.get(k, ("1", k.replace("_", " ")))
        c.add(("observed", k), ("Obs", k), v, unit, f"observed (Hess et al. 2005): {what}")
    comp = (r.get("comparison") or {}).get("result") or {}
    se = comp.get("se") or {}
    for v, p in (comp.get("probabilities") or {}).items():
        s = se.get(v)
        lo, hi = (max(0.0, p - 1.96 * s), min(1.0, p + 1.96 * s)) if _finite(s) and _finite(p) else (None, None)
        c.add(("prob", v), ("Prob", v), p, "probability", f"posterior model probability of {v}", lo, hi, MONTE_CARLO)
    for k, v in (comp.get("bayes_factors") or {}).items():
        a, b = k.split(":")
        c.add(("bayes_factor", f"{a}vs{b}"), ("BF", a, "vs", b), v, "ratio",
              f"Bayes factor of {a} over {b} (ratio of posterior model probabilities, equal priors)"
              + ("; a lower bound: no particle of the other hypothesis was left" if isinstance(v, str) else ""))
    for v, pred in r.get("predictive", {}).items():
        for k, e in pred.items():
            if e.get("median") is None:
                continue
            unit, what = FIT_STATISTICS.get(k, ("1", k.replace("_", " ")))
            c.band(("predictive", v, k), ("Pred", k, v), e, unit,
                   f"{v} posterior predictive median: {what}", PREDICTIVE)
            c.add(("predictive", v, k, "p_le_observed"), ("PLeObs", k, v), e.get("p_le_observed"), "probability",
                  f"{v}: share of virtual trials at or below the observed value ({what}); near 0 or 1 the "
                  "hypothesis does not reproduce it")
    for v, d in (r.get("diagnostics") or {}).items():
        for k, what in _FIT_DIAGNOSTICS.items():
            c.add(("diagnostics", v, k), ("Diag", k, v), d.get(k), "fraction",
                  f"{v}, pooled over its predictive trials: {what}")
    a = (r.get("answers") or {}).get("result")
    if a:
        c.add(("answers", "variant"), ("Ans", "Variant"), a.get("variant"), "hypothesis",
              "hypothesis whose posterior draws give the mechanistic answers")
        for k, (words, unit, what) in _HESS_ANSWERS.items():
            c.band(("answers", k), ("Ans", words), (a.get("hess_protocol") or {}).get(k), unit,
                   f"{a.get('variant')}: {what}")
        window = a.get("tfr_window_days")
        for setting, rows in (a.get("tfr_by_im_days") or {}).items():
            _safe_stop(c, a.get("variant"), setting, rows, window)
            for row in rows:
                d = int(round(row["stop_after_days"]))
                c.band(("answers", "tfr", setting, f"d{d}"), ("TFR", setting, d, "days"), row, "probability",
                       f"{a.get('variant')}, {_SETTINGS.get(setting, setting)}: probability of staying PCR-negative "
                       f"for {window:g} days after stopping a fixed imatinib course of {d} days")
    for v, ide in (r.get("identifiability") or {}).items():
        for p in ide.get("parameters", []):
            # log10_<name> is sampled on log10 scale: quoted in natural units under <name>
            target = p.get("target", p["key"]) if p["key"].startswith("log10_") else p["key"]
            c.add(("posterior", v, target), ("Post", target, v), p.get("median_natural"), p.get("unit") or "1",
                  f"{v}: posterior median of {target}",
                  p.get("q05_natural"), p.get("q95_natural"), CREDIBLE)
            c.add(("identifiability", v, p["key"]), ("WidthRatio", p["key"], v), p.get("width_ratio"), "ratio",
                  f"{v}: posterior 90 % width over prior width of {p['key']} (verdict: {p.get('verdict')}; "
                  "< 0.5 pinned, >= 0.8 not identified)")


#: P(staying PCR-negative after a fixed course) at which a stop is called safe (figure 5's level)
SAFE_STOP_LEVEL = 0.5
SAFE_STOP_BAND = ("course lengths at which the 95th and the 5th percentile curves (pointwise over posterior "
                  "draws) reach the level")


def _safe_stop(c: _Collector, variant, setting: str, rows: list, window) -> None:
    from ..clinical.summary import first_crossing

    days = [r["stop_after_days"] for r in rows]
    curve = {k: [np.nan if r.get(k) is None else r[k] for r in rows] for k in ("median", "q05", "q95")}
    t = first_crossing(days, curve["median"], SAFE_STOP_LEVEL)
    value = round(t, 1) if t is not None else f"> {max(days):g}"
    early, late = first_crossing(days, curve["q95"], SAFE_STOP_LEVEL), first_crossing(days, curve["q05"], SAFE_STOP_LEVEL)
    c.add(("answers", "safe_stop_days", setting), ("SafeStop", setting, "days"), value, "days",
          f"{variant}, {_SETTINGS.get(setting, setting)}: shortest fixed imatinib course after which the posterior "
          f"median probability of staying PCR-negative for {window:g} days reaches {100 * SAFE_STOP_LEVEL:.0f} % "
          "(linear interpolation between the simulated courses; '> N' if not reached)",
          early, late, SAFE_STOP_BAND)


_SCENARIO_RATES = {
    "reached_cmr": "share of patients who reached CMR",
    "escalated": "share of patients whose dose was escalated",
    "stopped": "share of patients who stopped imatinib",
    "durable_cmr_after_stop": "share of stopped patients whose CMR lasted",
    "lost_cmr_after_stop": "share of stopped patients who lost CMR",
    "eradicated": "share of patients whose leukemic clone went extinct (fewer than one LSC)",
    "eradicated_among_durable": "share of durable patients whose clone went extinct",
    "controlled_at_end": "share of patients under residual control at the end (BCR-ABL <= 0.01 %, LSCs left)",
    "controlled_at_end_100_lsc": "share of patients under residual control at the end with at least 100 LSCs left",
}
_SCENARIO_MEDIANS = {
    "days_to_cmr": "median days to CMR (patients who reached it)",
    "days_on_im_at_stop_durable": "median days on imatinib at the stop, durable CMR",
    "days_on_im_at_stop_lost": "median days on imatinib at the stop, lost CMR",
    "days_stop_to_loss": "median days from the stop to the loss of CMR",
    "follow_up_after_stop_durable": "median follow-up after the stop, durable CMR",
}


def _scenario(c: _Collector, s: dict) -> None:
    c.add("patients", "Patients", s.get("n_patients"), "patients", "virtual patients in the cohort")
    for k, v in s.get("rates", {}).items():
        if v.get("rate") is None:
            continue
        ci = v.get("ci95") or (None, None)
        c.add(("rates", k), ("Rate", k), v["rate"], "fraction",
              f"{_SCENARIO_RATES.get(k, k.replace('_', ' '))} ({v['k']} of {v['n']})", ci[0], ci[1], BINOMIAL)
        c.add(("counts", k), ("Count", k), v["k"], "patients", f"numerator of the rate: {_SCENARIO_RATES.get(k, k)}")
    for k, v in s.get("medians_days", {}).items():
        if v.get("median") is None:
            continue
        q = v.get("iqr") or (None, None)
        c.add(("medians_days", k), ("Med", k), v["median"], "days",
              f"{_SCENARIO_MEDIANS.get(k, k.replace('_', ' '))} ({v.get('n')} patients)", q[0], q[1], IQR)


_OUTPUT_UNITS = {"p_": "probability", "t_": "days", "min_im_days": "days"}


def _output_unit(o: str) -> str:
    return next((u for prefix, u in _OUTPUT_UNITS.items() if o.startswith(prefix)), "output units")


def _sensitivity(c: _Collector, ind: dict) -> None:
    names = ind["problem"]["names"]
    labels = ind.get("output_labels") or {}
    for o in ind["outputs"]:
        what = labels.get(o, o.replace("_", " "))
        s = (ind.get("sobol") or {})
        r = (s.get("indices") or {}).get(o)
        if r and r.get("status") == "ok":
            for rank, k in enumerate(s["ranking"][o][:3]):
                i = names.index(k)
                words = (o, "Sobol", _ORDINALS[rank])
                c.add(("sobol", o, rank + 1, "factor"), words, k, "factor",
                      f"{_ORDINALS[rank].lower()} factor by Sobol' total index for {what}")
                st, conf = r["ST"][i], r["ST_conf"][i]
                c.add(("sobol", o, rank + 1, "ST"), (*words, "ST"), st, "1",
                      f"Sobol' total index S_T of {k} for {what}", st - conf, st + conf, BOOTSTRAP)
                s1, conf1 = r["S1"][i], r["S1_conf"][i] if "S1_conf" in r else None
                c.add(("sobol", o, rank + 1, "S1"), (*words, "S1"), s1, "1",
                      f"Sobol' first-order index S_1 of {k} for {what}",
                      s1 - conf1 if _finite(conf1) else None, s1 + conf1 if _finite(conf1) else None, BOOTSTRAP)
        m = (ind.get("morris") or {}).get(o)
        if m and m.get("status") == "ok":
            for rank, k in enumerate(ind["morris_ranking"][o][:3]):
                i = names.index(k)
                words = (o, "Morris", _ORDINALS[rank])
                c.add(("morris", o, rank + 1, "factor"), words, k, "factor",
                      f"{_ORDINALS[rank].lower()} factor by Morris mu* for {what}")
                mu, conf = m["mu_star"][i], (m.get("mu_star_conf") or [None] * len(names))[i]
                c.add(("morris", o, rank + 1, "mu_star"), (*words, "MuStar"), mu, _output_unit(o),
                      f"Morris mu* (mean absolute elementary effect over the factor's range) of {k} for {what}",
                      mu - conf if _finite(conf) else None, mu + conf if _finite(conf) else None, BOOTSTRAP)
        loc = ((ind.get("local") or {}).get("outputs") or {}).get(o)
        if loc:
            for k, v in loc["coefficients"].items():
                c.add(("local", o, k), (o, "Local", k), v.get("selected"), "1",
                      f"local normalised sensitivity d ln Y / d ln theta of {what} to {k} at the fitted point")


_DYN_FIELDS = {"lsc": ("LSC", "cells", "leukemic stem cells (Q + Y0 + R0)"),
               "bcr_abl_percent": ("BCRABL", "%", "BCR-ABL"),
               "effectors": ("Effectors", "cells", "effector cells Z"),
               "stable": ("Stable", "yes/no", "stable")}
_DYN_THRESHOLDS = {
    "rho_window": ("1/day", "effector expansion rate above which the immune window exists (d_z / (1 - s))"),
    "k_free": ("1/day", "immune kill rate that stops a small leukemic clone growing (off IM)"),
    "z_kill_free_stable": ("1/(cell*day)", "z_kill above which the leukemia-free state is stable at baseline "
                                           "effectors (off IM)"),
    "effectors_free_stable": ("cells", "effectors needed to stop a small clone growing (off IM)"),
    "baseline_effectors": ("cells", "effectors without leukemia (influx / death)"),
    "baseline_kill_rate": ("1/day", "immune kill rate at baseline effectors"),
    "max_lsc_off_im": ("cells", "largest leukemic stem-cell pool off IM (carrying capacity net of death)"),
}


#: the sections a dynamics run's summary.json may hold (which ones depends on the run's [run] sections)
DYNAMICS_SECTIONS = {"steady_states", "thresholds", "controlled_intervals", "basin_counts", "min_im"}


def _dynamics(c: _Collector, s: dict, folder: Path | None = None) -> None:
    from ..model.parameters import PARAMETER_TABLE

    for setting, doses in (s.get("steady_states") or {}).items():
        where = _SETTINGS.get(setting, setting)
        for dose, branches in doses.items():
            d = int(float(dose))
            dw = ("OffIM",) if d == 0 else ("IM", d)
            dt = "off IM" if d == 0 else f"IM {d} mg/day"
            for branch, q in branches.items():
                for f, (w, unit, what) in _DYN_FIELDS.items():
                    text = (f"{branch.replace('_', ' ')} equilibrium, {where}, {dt}: "
                            + ("is it stable?" if f == "stable" else what))
                    c.add(("steady_states", setting, dose, branch, f), (setting, branch, w, *dw), q.get(f), unit, text)
    for setting, th in (s.get("thresholds") or {}).items():
        for k, v in th.items():
            unit, what = _DYN_THRESHOLDS.get(k, ("1", k.replace("_", " ")))
            c.add(("thresholds", setting, k), (setting, k), v, unit, f"{_SETTINGS.get(setting, setting)}: {what}")
    for setting, sweeps in (s.get("controlled_intervals") or {}).items():
        for p, intervals in sweeps.items():
            row = PARAMETER_TABLE.get(p)
            unit = row.unit if row is not None else "1"
            for j, iv in enumerate(intervals or []):
                tail = () if len(intervals) == 1 else (_ORDINALS[j] if j < len(_ORDINALS) else j + 1,)
                for end, val in zip(("from", "to"), iv):
                    c.add(("controlled_intervals", setting, p, j + 1, end), (setting, "Ctrl", p, *tail, end), val, unit,
                          f"{_SETTINGS.get(setting, setting)}: the controlled equilibrium exists for {p} "
                          f"{'from' if end == 'from' else 'up to'} this value (bifurcation sweep"
                          + (f", interval {j + 1}" if tail else "") + ")")
    for setting, counts in (s.get("basin_counts") or {}).items():
        for outcome, n in counts.items():
            c.add(("basin_counts", setting, outcome), (setting, "Basin", outcome), n, "start states",
                  f"{_SETTINGS.get(setting, setting)}: phase-plane start states (LSCs, effectors) that end {outcome} "
                  "off IM")
    rows = s.get("min_im") or []
    swept = {}  # (setting, profile) -> the parameter swept (min_im_duration.csv names it)
    try:
        import csv

        with open(Path(folder) / "min_im_duration.csv", newline="", encoding="utf-8") as f:
            swept = {(r["setting"], r["profile"]): r["parameter"] for r in csv.DictReader(f)}
    except (OSError, KeyError, TypeError):
        pass
    seen: dict = {}
    for setting, profile, value, t in rows:
        j = seen[(setting, profile)] = seen.get((setting, profile), 0) + 1
        p = swept.get((setting, profile), "the swept effector parameter")
        unit = PARAMETER_TABLE[p].unit if p in PARAMETER_TABLE else ""
        c.add(("min_im", setting, profile, j), (setting, "MinIM", profile, _ORDINALS[j - 1] if j <= 10 else j), t,
              "days", f"{_SETTINGS.get(setting, setting)}, profile {profile}: shortest imatinib course (400 mg/day "
                      f"from the start state) after which control lasts, at {p} = {value:.3g} {unit}".rstrip())


def _calibration(c: _Collector, r: dict) -> None:
    c.add("noise_sd_log10", "NoiseSD", r.get("noise_sd_log10"), "log10",
          "measurement-noise SD of log10 BCR-ABL, re-estimated by the calibration")
    for ds, v in (r.get("per_dataset") or {}).items():
        c.add(("residual_sd_log10", ds, "median"), (ds, "ResidSDMed"), v.get("residual_sd_log10_median"), "log10",
              f"{ds}: median over patients of the residual SD of log10 BCR-ABL")
        c.add(("residual_sd_log10", ds, "max"), (ds, "ResidSDMax"), v.get("residual_sd_log10_max"), "log10",
              f"{ds}: largest per-patient residual SD of log10 BCR-ABL")
        c.add(("residual_sd_log10", ds, "share_le_0_5"), (ds, "ResidSDShareGood"), v.get("share_residual_sd_le_0_5"),
              "fraction", f"{ds}: share of patients fitted with a residual SD of at most 0.5 log10")
        c.add(("failed", ds), (ds, "Failed"), v.get("failed"), "patients", f"{ds}: patients whose fit failed")
        c.add(("not_converged", ds), (ds, "NotConverged"), v.get("not_converged"), "patients",
              f"{ds}: patients whose optimiser stopped at max_nfev (estimate path-dependent)")
    m = r.get("michor_slopes") or {}
    for k, what in (("first_slope_per_day", "first slope (days 30-120)"),
                    ("second_slope_per_day", "second slope (days 180-365)"),
                    ("observed_first", "first slope reported by Michor et al. 2005"),
                    ("observed_second", "second slope reported by Michor et al. 2005")):
        c.add(("michor_slopes", k), ("MichorSlope", k), m.get(k), "1/day",
              f"natural-log slope of the population-median course on 400 mg/day: {what}")
    pr = r.get("stim1_profile")
    if pr:
        from ..model.parameters import PARAMETER_TABLE

        par = pr["parameter"]
        unit = PARAMETER_TABLE[par].unit
        for k, words, what in (("series_median", "SeriesOnly", "from the on-treatment series alone"),
                               ("estimate", "Estimate", "set by the STIM1 relapse counts (likelihood profile)")):
            c.add(("stim1_profile", k), ("STIM", "Profile", words), pr.get(k), unit,
                  f"population median of {par} {what}")
        for j, k in enumerate(("low", "high")):
            c.add(("stim1_profile", f"ci95_{k}"), ("STIM", "Profile", "CI", k.capitalize()), (pr.get("ci95") or
                  [None, None])[j], unit, f"population median of {par}: {k} end of the 95 % profile-likelihood interval")
    st = r.get("stim1")
    if st:
        c.add(("stim1", "stopped"), ("STIM", "Stopped"), st.get("stopped_in_window"), "patients",
              "STIM1-like check: virtual patients who stopped within the window")
        for k, v in (st.get("simulated") or {}).items():
            months = re.search(r"(\d+)_months", k)
            mw = int(months.group(1)) if months else k
            c.add(("stim1", "simulated", k), ("STIM", "Sim", "RelapseFree", mw, "Months"), v, "fraction",
                  f"STIM1-like check: simulated share free of molecular relapse at {mw} months")
            c.add(("stim1", "observed", k), ("STIM", "Obs", "RelapseFree", mw, "Months"),
                  (st.get("observed") or {}).get(k), "fraction",
                  f"STIM1 (Mahon et al. 2010; Etienne et al. 2017): observed share free of molecular relapse at "
                  f"{mw} months")
        c.add(("stim1", "median_months_to_relapse"), ("STIM", "MedMonthsToRelapse"),
              st.get("median_months_to_relapse"), "months", "STIM1-like check: median months from stop to relapse")
        c.add(("stim1", "lasting_tfr_share_eradicated"), ("STIM", "LastingShareEradicated"),
              st.get("lasting_tfr_share_eradicated"), "fraction",
              "STIM1-like check: share of lasting remissions that are eradication")
        c.add(("stim1", "lasting_tfr_share_with_100_lsc"), ("STIM", "LastingShareHundredLSC"),
              st.get("lasting_tfr_share_with_100_lsc"), "fraction",
              "STIM1-like check: share of lasting remissions with at least 100 LSCs left")


def _compare(c: _Collector, r: dict) -> None:
    """``gvlmodel compare``: robustness rows, held-out STIM1 scores, decisiveness."""
    for row in r.get("robustness") or []:
        alt = row["alternative"]
        words = ("Robust",) + tuple(alt.split("_"))
        for v in ("H0", "H1", "H2"):
            p, se = row.get(f"p_{v}"), row.get(f"se_{v}")
            lo = hi = None
            if _finite(p) and _finite(se):
                lo, hi = max(0.0, p - 1.96 * se), min(1.0, p + 1.96 * se)
            c.add(("robustness", alt, f"prob_{v}"), words + ("Prob", v), p, "probability",
                  f"ABC model probability of {v} when the Hess data model is '{row['description']}'", lo, hi,
                  MONTE_CARLO)
        c.add(("robustness", alt, "bf_best_vs_next"), words + ("BF",), row.get("bf_best_vs_next"), "ratio",
              f"Bayes factor of the best variant ({row.get('best')}) over the runner-up, data model "
              f"'{row['description']}'")
    h = r.get("holdout") or {}
    for v, e in (h.get("variants") or {}).items():
        c.add(("holdout", v, "log_score"), ("Holdout", v, "LogScore"), e.get("log_score"), "log probability",
              f"held-out STIM1: log posterior predictive probability of the observed relapse-time counts under "
              f"{v}'s Hess posterior")
        c.band(("holdout", v, "relapse_free_60_months"), ("Holdout", v, "Free", "sixty", "months"),
               e.get("relapse_free_60_months"), "fraction",
               f"held-out STIM1: relapse-free share 60 months after the stop predicted by {v}")
    for v, b in (h.get("log10_bayes_factor_best_vs") or {}).items():
        c.add(("holdout", "log10_bf", h.get("best"), v), ("Holdout", "Log", "BF", v), b, "log10 ratio",
              f"held-out STIM1: log10 predictive Bayes factor of {h.get('best')} over {v}")
    d = r.get("decisive") or {}
    sizes = sorted({x["patients"] for x in d.get("rows", [])})
    for x in d.get("rows", []):
        if x["true"] != "H2" or x["p_decisive"] is None or x["patients"] not in (sizes[0], sizes[-1]):
            continue
        meas = "Effector" if x["measurement"].startswith("effector") else "Durable"
        c.add(("decisive", x["true"], x["alternative"], meas.lower(), x["patients"]),
              ("Decisive", x["true"], "Vs", x["alternative"], meas, x["patients"]), x["p_decisive"], "probability",
              f"probability that a study of {x['patients']} patients ({x['measurement']}) gives a Bayes factor of at "
              f"least {r['settings']['bayes_factor']:g} for {x['true']} over {x['alternative']} when {x['true']} is true")


def _predict_stop(c: _Collector, s: dict) -> None:
    horizon = s.get("horizon_days")
    c.add("patients", "Patients", s.get("patients"), "patients", "patients whose history was given")
    c.add("predicted", "Predicted", s.get("predicted"), "patients", "patients with a prediction")
    c.add("failed", "Failed", len(s.get("failed") or {}), "patients", "patients whose fit failed (listed in summary.json)")
    c.add("horizon_days", "HorizonDays", horizon, "days", "horizon after the stop over which recurrence is predicted")
    for k, unit, what in (("expected_share_recurring", "fraction", "expected share of patients losing MMR"),
                          ("median_p_recurrence", "probability", "median over patients of P(losing MMR)"),
                          ("share_p_above_half", "fraction", "share of patients with P(losing MMR) above 0.5"),
                          ("share_in_mmr_at_stop", "fraction", "share of patients in MMR at the stop")):
        c.add(k, k, s.get(k), unit, f"{what}" + (f" within {horizon:g} days of the stop" if _finite(horizon) and
                                               k != "share_in_mmr_at_stop" else ""))


def collect(results: Path) -> list[Number]:
    """Numbers from every complete result folder in ``results`` (one with ``provenance.json``, which every
    command writes last: a run still going, killed or refused is left out) that holds a known kind of result.

    Two folders whose names give the same macro prefix (``my_run``, ``myRun``) are an :class:`InputError`
    naming both, before anything is written."""
    from ..core.errors import InputError

    results = Path(results)
    out: list[Number] = []
    if not results.is_dir():
        return out
    folders = sorted(p for p in results.iterdir() if p.is_dir() and (p / "provenance.json").is_file())
    tags: dict[str, str] = {}
    for d in folders:
        other = tags.setdefault(experiment_tag(d.name), d.name)
        if other != d.name:
            raise InputError(f"{results}: the result folders {other!r} and {d.name!r} would share the LaTeX macros "
                             f"\\gvl{experiment_tag(d.name)}...; rename one of them")
    for d in folders:
        name = d.name
        if (d / "predictions.csv").is_file() and (d / "summary.json").is_file():
            r = _load(d / "summary.json")
            if r and r.get("kind") == "predict-stop":
                c = _Collector(name, f"{name}/summary.json")
                _predict_stop(c, r)
                out += c.rows
        elif (d / "report.json").is_file():
            r = _load(d / "report.json")
            c = _Collector(name, f"{name}/report.json")
            if r and "predictive" in r:
                _fit(c, r)
            elif r and "per_dataset" in r:
                _calibration(c, r)
            elif r and "holdout" in r:
                _compare(c, r)
            out += c.rows
        elif (d / "indices.json").is_file():
            r = _load(d / "indices.json")
            if r:
                c = _Collector(name, f"{name}/indices.json")
                _sensitivity(c, r)
                out += c.rows
        elif (d / "patients.csv").is_file() and (d / "summary.json").is_file():
            r = _load(d / "summary.json")
            if r:
                c = _Collector(name, f"{name}/summary.json")
                _scenario(c, r)
                out += c.rows
        elif (d / "summary.json").is_file():
            r = _load(d / "summary.json")
            if isinstance(r, dict) and set(r) & DYNAMICS_SECTIONS:
                c = _Collector(name, f"{name}/summary.json")
                _dynamics(c, r, d)
                out += c.rows
    check(out)
    return out


def macros(n: Number) -> list[str]:
    """The macro names of ``n``: its value, then the interval's bounds if it has one."""
    return [n.macro] + ([n.macro + "Lo", n.macro + "Hi"] if n.has_interval else [])


def check(numbers: list[Number]) -> None:
    """Every macro a valid LaTeX command name (letters only) and unique; every number described."""
    seen: dict = {}
    for n in numbers:
        if not n.description or not n.unit:
            raise ValueError(f"number {n.name} has no description or unit")
        for m in macros(n):
            if not re.fullmatch(r"[A-Za-z]+", m):
                raise ValueError(f"number {n.name}: macro name {m!r} is not letters only")
            if m in seen:
                raise ValueError(f"two numbers map to the macro \\{m}: {seen[m]} and {n.name}")
            seen[m] = n.name


# --------------------------------------------------------------------------
# output
# --------------------------------------------------------------------------
def _fmt(v, latex: bool = True) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:d}"
    if isinstance(v, float):
        if v != 0 and (abs(v) >= 1e5 or abs(v) < 1e-3):
            m, e = f"{v:.2e}".split("e")
            return f"\\ensuremath{{{m}\\times 10^{{{int(e)}}}}}" if latex else f"{m}e{int(e)}"
        return f"{v:.3g}" if abs(v) < 100 else f"{v:.0f}"
    return str(v).replace("_", "\\_") if latex else str(v)


def latex_macros(numbers: list[Number], header: tuple[str, ...] = ()) -> str:
    """``\\newcommand`` for every number (and its interval's bounds), each with a comment saying what it is."""
    check(numbers)
    lines = ["% Generated by `gvlmodel reproduce` from the saved results; do not edit by hand.",
             *(f"% {h}" for h in header),
             "% Macro names: \\gvl + experiment tag + quantity (numbers.md lists every macro and the scheme).",
             "% Intervals: ...Lo and ...Hi macros; their kind is in the comment."]
    for n in numbers:
        lines.append(f"% {n.name}: {n.description} [{n.unit}] ({n.source})")
        lines.append(f"\\newcommand{{\\{n.macro}}}{{{_fmt(n.value)}}}")
        if n.has_interval:
            lines.append(f"\\newcommand{{\\{n.macro}Lo}}{{{_fmt(n.low)}}}  % {n.interval_kind}")
            lines.append(f"\\newcommand{{\\{n.macro}Hi}}{{{_fmt(n.high)}}}")
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def markdown_table(numbers: list[Number], header: tuple[str, ...] = ()) -> str:
    """The numbers as a Markdown page: the naming scheme, then one table row per number."""
    check(numbers)
    kinds = sorted({n.interval_kind for n in numbers if n.has_interval})
    out = ["# Manuscript numbers", "",
           "Generated by `gvlmodel reproduce` from the saved results (`results/numbers.md`; the same numbers "
           "are in `numbers.json` and, as LaTeX macros, in `numbers.tex`). Do not edit by hand.", "",
           *(f"{h}" for h in header), "", SCHEME, "Intervals, by kind: " + ("; ".join(kinds) if kinds else "none") + ".",
           "", "| name | macro | value | unit | interval | description | source |", "|---|---|---|---|---|---|---|"]
    for n in numbers:
        iv = f"{_fmt(n.low, False)} – {_fmt(n.high, False)} ({n.interval_kind.split(' (')[0]})" if n.has_interval else ""
        out.append(f"| `{n.name}` | `\\{n.macro}` | {_cell(_fmt(n.value, False))} | {_cell(n.unit)} | {_cell(iv)} | "
                   f"{_cell(n.description)} | `{n.source}` |")
    return "\n".join(out) + "\n"


def as_json(numbers: list[Number]) -> dict:
    return {"numbers": {n.name: {k: v for k, v in asdict(n).items() if k != "name"} for n in numbers}}


def write_numbers(results: Path) -> list[Path]:
    """``numbers.json``, ``numbers.tex`` and ``numbers.md`` in ``results`` from its result folders."""
    results = Path(results)
    nums = collect(results)
    from ..core.provenance import git_commit

    head = (f"gvlmodel {__version__}, git commit {git_commit()}; each result folder's provenance.json has the rest.",)
    doc = as_json(nums)
    doc["generated_by"] = head[0]
    atomic_write_json(results / "numbers.json", doc)
    atomic_write_text(results / "numbers.tex", latex_macros(nums, head))
    atomic_write_text(results / "numbers.md", markdown_table(nums, head))
    return [results / "numbers.json", results / "numbers.tex", results / "numbers.md"]
