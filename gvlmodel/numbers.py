"""Every number a manuscript quotes, generated from the saved results (never typed by hand).

:func:`collect_numbers` reads ``RESULTS/`` (whatever experiments exist there)
and returns a nested dict; :func:`write_numbers` writes it as
``RESULTS/numbers.json`` and as LaTeX macros ``RESULTS/numbers.tex``
(``\\newcommand{\\gvlFitProbHTwo}{0.43}``: the macro name is the key path in
CamelCase with digits spelled out, prefixed ``gvl``).  Sections:

``fit``          observed calibration numbers, model probabilities and Bayes
                 factors, the best variant, posterior predictive medians and
                 intervals, the diagnostics behind them, and the mechanistic
                 answers (``fit_hess2005``);
``scenarios``    rates and medians of each simulated cohort (``summary.json``);
``sensitivity``  top-ranked factors per output (Sobol' ST, Morris mu*) with
                 their indices, and the local coefficients at the fitted point;
``dynamics``     whatever scalar summary the dynamics run wrote
                 (``dynamics/summary.json``);
``calibration``  per-data-set residual SDs, the noise SD, the Michor slopes and the
                 STIM1-like check of the patient-level calibration (``calibrate_patients``);
``predict_stop`` cohort summary of a stop-prediction run (``predict_stop_hahnel2020``).
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from .provenance import atomic_write_json, atomic_write_text

_DIGITS = {"0": "Zero", "1": "One", "2": "Two", "3": "Three", "4": "Four", "5": "Five", "6": "Six", "7": "Seven",
           "8": "Eight", "9": "Nine"}


def _load(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _band(b: dict | None) -> dict | None:
    if not b or b.get("median") is None:
        return None
    return {"median": b["median"], "q05": b["q05"], "q95": b["q95"]}


def fit_numbers(report: dict) -> dict:
    out = {"best": report["best"], "source": report.get("source", "abc"), "observed": report["observed"]}
    c = (report.get("comparison") or {}).get("result")
    if c:
        out["prob"] = {v: p for v, p in c["probabilities"].items() if p is not None}
        out["bayes_factor"] = {k.replace(":", "vs"): v for k, v in c["bayes_factors"].items()
                               if not isinstance(v, str)}
    out["predictive"] = {v: {k: {"median": e["median"], "q05": e["q05"], "q95": e["q95"],
                                 "p_le_observed": e["p_le_observed"]}
                             for k, e in pred.items() if e.get("median") is not None}
                         for v, pred in report["predictive"].items()}
    a = report["answers"]["result"]
    hp = a["hess_protocol"]
    out["answers"] = {"variant": a["variant"],
                      **{k: _band(hp[k]) for k in ("durable_fraction", "median_im_days_durable", "median_im_days_lost",
                                                   "eradicated_share_of_durable", "durable_minus_lost_im_days")
                         if _band(hp.get(k))},
                      "tfr": {setting: {f"d{int(r['stop_after_days'])}": _band(r) for r in rows}
                              for setting, rows in a["tfr_by_im_days"].items()}}
    if report.get("diagnostics"):
        out["diagnostics"] = {v: {k: d[k] for k in ("lost_clone_extinct_at_stop", "durable_short_follow_up",
                                                    "patients_at_bound", "nontx_cmr_by_stop") if d[k] is not None}
                              for v, d in report["diagnostics"].items()}
    out["identifiability"] = {v: {p["key"]: {"width_ratio": p["width_ratio"], "verdict": p["verdict"]}
                                  for p in ide["parameters"]} for v, ide in report["identifiability"].items()}
    return out


def scenario_numbers(summary: dict) -> dict:
    rates = {k: {"rate": v["rate"], "k": v["k"], "n": v["n"]} for k, v in summary.get("rates", {}).items()
             if v.get("rate") is not None}
    med = {k: v["median"] for k, v in summary.get("medians_days", {}).items() if v.get("median") is not None}
    return {"rates": rates, "medians_days": med, "patients": summary.get("n_patients")}


def sensitivity_numbers(ind: dict) -> dict:
    names = ind["problem"]["names"]
    out = {}
    for o in ind["outputs"]:
        entry = {}
        s = ind.get("sobol", {})
        if s and s["indices"][o]["status"] == "ok":
            r = s["indices"][o]
            entry["sobol_top"] = [{"factor": k, "ST": r["ST"][names.index(k)], "ST_conf": r["ST_conf"][names.index(k)],
                                   "S1": r["S1"][names.index(k)]} for k in s["ranking"][o][:3]]
        m = ind.get("morris", {})
        if m and m[o]["status"] == "ok":
            entry["morris_top"] = [{"factor": k, "mu_star": m[o]["mu_star"][names.index(k)]}
                                   for k in ind["morris_ranking"][o][:3]]
        loc = ind.get("local", {}).get("outputs", {}).get(o)
        if loc:
            entry["local"] = {k: v["selected"] for k, v in loc["coefficients"].items() if v["selected"] is not None}
        out[o] = entry
    return out


def calibration_numbers(report: dict) -> dict:
    out = {"noise_sd_log10": report["noise_sd_log10"],
           "residual_sd_log10": {ds: {k: v[k] for k in ("residual_sd_log10_median", "residual_sd_log10_max",
                                                       "share_residual_sd_le_0_5", "failed")}
                                 for ds, v in report["per_dataset"].items()},
           "michor_slopes": {k: v for k, v in report["michor_slopes"].items() if k != "source"}}
    st = report.get("stim1")
    if st:
        out["stim1"] = {"simulated": st["simulated"], "observed": st["observed"], "stopped": st["stopped_in_window"],
                        "median_months_to_relapse": st["median_months_to_relapse"],
                        "lasting_tfr_share_eradicated": st["lasting_tfr_share_eradicated"],
                        "lasting_tfr_share_with_100_lsc": st["lasting_tfr_share_with_100_lsc"]}
    return out


def collect_numbers(results: Path) -> dict:
    """Numbers from every result folder in ``results`` that holds a known kind of result."""
    results = Path(results)
    nums: dict = {"fit": {}, "scenarios": {}, "sensitivity": {}, "dynamics": {}, "calibration": {},
                  "predict_stop": {}}
    if not results.is_dir():
        return nums
    for d in sorted(p for p in results.iterdir() if p.is_dir()):
        if (d / "predictions.csv").is_file() and (d / "summary.json").is_file():
            r = _load(d / "summary.json")
            if r and r.get("kind") == "predict-stop":
                nums["predict_stop"][d.name] = {k: v for k, v in r.items() if k not in ("kind", "failed")}
                nums["predict_stop"][d.name]["failed"] = len(r.get("failed", {}))
        elif (d / "report.json").is_file():
            r = _load(d / "report.json")
            if r and "predictive" in r:
                nums["fit"][d.name] = fit_numbers(r)
            elif r and "per_dataset" in r:
                nums["calibration"][d.name] = calibration_numbers(r)
        elif (d / "indices.json").is_file():
            r = _load(d / "indices.json")
            if r:
                nums["sensitivity"][d.name] = sensitivity_numbers(r)
        elif (d / "patients.csv").is_file() and (d / "summary.json").is_file():
            r = _load(d / "summary.json")
            if r:
                nums["scenarios"][d.name] = scenario_numbers(r)
        elif (d / "summary.json").is_file() and (d / "steady_states.json").is_file():
            r = _load(d / "summary.json")
            if r:
                nums["dynamics"][d.name] = r
    return nums


def macro_name(path) -> str:
    """``("fit", "fit_hess2005", "prob", "H2")`` -> ``gvlFitFitHessTwoZeroZeroFiveProbHTwo``."""
    out = "gvl"
    for part in path:
        for word in re.split(r"[^0-9A-Za-z]+", str(part)):
            if not word:
                continue
            word = "".join(_DIGITS.get(ch, ch) for ch in word)
            out += word[0].upper() + word[1:]
    return out


def _fmt(v) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:d}"
    if isinstance(v, float):
        if v != 0 and (abs(v) >= 1e5 or abs(v) < 1e-3):
            m, e = f"{v:.2e}".split("e")
            return f"\\ensuremath{{{m}\\times 10^{{{int(e)}}}}}"
        return f"{v:.3g}" if abs(v) < 100 else f"{v:.0f}"
    return str(v).replace("_", "\\_")


def flatten(d, path=()):
    """``(key path, value)`` for every scalar leaf (lists by index)."""
    if isinstance(d, dict):
        for k, v in d.items():
            yield from flatten(v, path + (k,))
    elif isinstance(d, list):
        for i, v in enumerate(d):
            yield from flatten(v, path + (str(i + 1),))
    elif d is not None:
        yield path, d


def latex_macros(nums: dict, header: tuple[str, ...] = ()) -> str:
    """LaTeX macros for every number; ``header`` lines are added to the comment block."""
    lines = ["% Generated by `gvlmodel reproduce` from the saved results; do not edit by hand.",
             *(f"% {h}" for h in header),
             "% Each macro's name is its key path in numbers.json (CamelCase, digits spelled out)."]
    seen = {}
    for path, v in flatten(nums):
        name = macro_name(path)
        if name in seen:
            raise ValueError(f"two numbers map to the macro {name}: {seen[name]} and {path}")
        seen[name] = path
        lines.append(f"\\newcommand{{\\{name}}}{{{_fmt(v)}}}  % {'.'.join(path)}")
    return "\n".join(lines) + "\n"


def write_numbers(results: Path) -> list[Path]:
    results = Path(results)
    nums = collect_numbers(results)
    atomic_write_json(results / "numbers.json", nums)
    from . import __version__
    from .provenance import git_commit

    atomic_write_text(results / "numbers.tex", latex_macros(nums, (
        f"gvlmodel {__version__}, git commit {git_commit()}; each result folder's provenance.json has the rest.",)))
    return [results / "numbers.json", results / "numbers.tex"]
