"""The calibration data (BRIEF §2) as data, and the same statistics computed from a simulated trial.

``gvlmodel/data/hess2005.toml`` holds every number with its citation and group
size.  :func:`trial_statistics` computes the matching statistics from a
:class:`~gvlmodel.cohort.CohortResult`, so observed and simulated trials are
compared item by item (counts with their denominators, not percentages).
"""
from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np

DATA_DIR = Path(__file__).with_name("data")


def load_calibration(name: str = "hess2005") -> dict:
    """The calibration data set ``name`` (a TOML file in ``gvlmodel/data/``)."""
    path = DATA_DIR / f"{name}.toml"
    if not path.is_file():
        from .errors import InputError

        raise InputError(f"calibration data: unknown set {name!r}; allowed: "
                         + ", ".join(sorted(p.stem for p in DATA_DIR.glob("*.toml"))))
    with open(path, "rb") as fh:
        return tomllib.load(fh)


def observed_statistics(data: dict | None = None) -> dict[str, float]:
    """The Hess trial's statistics in the form :func:`trial_statistics` returns."""
    d = load_calibration() if data is None else data
    it = d["items"]
    return {
        "n_enrolled": float(d["cohort"]["enrolled"]),
        "n_cmr": float(it["reached_cmr"]["k"]),
        "n_stopped": float(it["stopped"]["k"]),
        "n_durable": float(it["durable_cmr_after_stop"]["k"]),
        "median_im_days_durable": float(it["im_days_at_stop_durable"]["median_days"]),
        "median_im_days_lost": float(it["im_days_at_stop_lost"]["median_days"]),
    }


def trial_statistics(result, follow_up_after_stop_days: float | None = None) -> dict[str, float]:
    """Statistics of one simulated trial (a :class:`~gvlmodel.cohort.CohortResult`).

    Patients whose solve failed count as not reaching CMR and are reported in
    ``n_solver_failures`` (never dropped).  ``follow_up_after_stop_days``
    censors losses of CMR later than that after the stop (the trial's follow-up
    is finite; Hess: median 494 days).
    """
    c = result.columns
    ok = c["solver_status"] == 0
    stopped = c["stopped"] & ok
    lost = c["lost_cmr"] & stopped
    if follow_up_after_stop_days is not None:
        lost = lost & (c["days_stop_to_loss"] <= follow_up_after_stop_days)
    durable = stopped & ~lost

    def med(v):
        v = v[np.isfinite(v)]
        return float(np.median(v)) if v.size else float("nan")

    return {
        "n_enrolled": float(result.n),
        "n_cmr": float((c["reached_cmr"] & ok).sum()),
        "n_stopped": float(stopped.sum()),
        "n_durable": float(durable.sum()),
        "median_im_days_durable": med(c["days_on_im_at_stop"][durable]),
        "median_im_days_lost": med(c["days_on_im_at_stop"][lost]),
        "n_solver_failures": float((~ok).sum()),
    }
