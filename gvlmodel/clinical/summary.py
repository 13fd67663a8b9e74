"""Cohort summaries: rates with exact binomial intervals, medians, solver failures.

Rates are computed over the patients whose solve succeeded; failures are
counted and listed by patient id with the solver's message (never dropped
silently, never turned into ``nan`` rates).  Intervals are Clopper-Pearson
(exact) 95 % intervals, appropriate for the small counts of the Hess trial.
"""
from __future__ import annotations

import numpy as np


def rate(k: int, n: int) -> dict:
    """``k`` of ``n`` with its exact (Clopper-Pearson) 95 % interval."""
    k, n = int(k), int(n)
    if n == 0:
        return {"k": 0, "n": 0, "rate": None, "ci95": None}
    # Clopper-Pearson limits as beta quantiles (what scipy.stats.binomtest finds by root search, to
    # ~1e-13); scipy.stats itself would add ~0.5 s to every command's start-up
    from scipy.special import betaincinv

    low = 0.0 if k == 0 else float(betaincinv(k, n - k + 1, 0.025))
    high = 1.0 if k == n else float(betaincinv(k + 1, n - k, 0.975))
    return {"k": k, "n": n, "rate": k / n, "ci95": [low, high]}


def first_crossing(x, y, level: float) -> float | None:
    """First ``x`` at which the piecewise-linear curve ``(x, y)`` reaches ``level`` from below (linear
    interpolation between the points around it); ``x[0]`` if it starts at or above ``level``; ``None``
    if it never reaches it (points with a non-finite ``y`` are skipped)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    order = np.argsort(x, kind="stable")
    x, y = x[order], y[order]
    for i in range(x.size):
        if y[i] >= level:
            if i == 0:
                return float(x[0])
            return float(x[i - 1] + (level - y[i - 1]) * (x[i] - x[i - 1]) / (y[i] - y[i - 1]))
    return None


def median(values) -> dict:
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return {"n": 0, "median": None, "iqr": None}
    q = np.percentile(v, [25, 50, 75])
    return {"n": int(v.size), "median": float(q[1]), "iqr": [float(q[0]), float(q[2])]}


#: residual control at the end of follow-up: BCR-ABL at most this (%) with LSCs left (issue targets:
#: at least CONTROL_MIN_LSC of them)
CONTROL_MAX_BCR_ABL_PERCENT = 0.01
CONTROL_MIN_LSC = 100.0


def cohort_summary(result) -> dict:
    c = result.columns
    ok = c["solver_status"] == 0
    n_ok = int(ok.sum())
    cmr = c["reached_cmr"] & ok
    stopped = c["stopped"] & ok
    lost = c["lost_cmr"] & stopped
    durable = stopped & ~c["lost_cmr"]
    erad = c["eradicated"] & ok
    # residual immune control at the end of follow-up: leukemic stem cells left at a low ratio
    low = ok & (np.asarray(c["final_bcr_abl_percent"], dtype=float) <= CONTROL_MAX_BCR_ABL_PERCENT)
    lsc = np.asarray(c["final_lsc"], dtype=float)
    out = {
        "n_patients": int(result.n),
        "n_solver_failures": int((~ok).sum()),
        "solver_failures": [{"patient_id": int(i), "status": int(c["solver_status"][i]),
                             "message": str(c["solver_message"][i]), "last_day_reached": float(c["last_day_reached"][i])}
                            for i in np.flatnonzero(~ok)],
        "denominators": "rates over patients whose solve succeeded; post-stop rates over stopped patients",
        "rates": {
            "reached_cmr": rate(cmr.sum(), n_ok),
            "escalated": rate((c["escalated"] & ok).sum(), n_ok),
            "stopped": rate(stopped.sum(), n_ok),
            "durable_cmr_after_stop": rate(durable.sum(), stopped.sum()),
            "lost_cmr_after_stop": rate(lost.sum(), stopped.sum()),
            "eradicated": rate(erad.sum(), n_ok),
            "eradicated_among_durable": rate((durable & c["eradicated"]).sum(), durable.sum()),
            "controlled_at_end": rate((low & (lsc >= 1.0)).sum(), n_ok),
            "controlled_at_end_100_lsc": rate((low & (lsc >= CONTROL_MIN_LSC)).sum(), n_ok),
        },
        "medians_days": {
            "days_to_cmr": median(c["days_to_cmr"][cmr]),
            "days_on_im_at_stop_durable": median(c["days_on_im_at_stop"][durable]),
            "days_on_im_at_stop_lost": median(c["days_on_im_at_stop"][lost]),
            "days_stop_to_loss": median(c["days_stop_to_loss"][lost]),
            "follow_up_after_stop_durable": median(c["last_day_reached"][durable] - c["stop_day"][durable]),
        },
    }
    if result.cohort.start == "relapse":
        out["by_relapse_type"] = {}
        for t in np.unique(c["relapse_type"]):
            sel = (c["relapse_type"] == t) & ok
            st = stopped & sel
            out["by_relapse_type"][str(t)] = {
                "n": int(sel.sum()),
                "reached_cmr": rate((cmr & sel).sum(), sel.sum()),
                "durable_cmr_after_stop": rate((durable & sel).sum(), st.sum()),
            }
    out["run"] = {"wall_s": result.wall_s, "threads": result.threads,
                  "patients_per_s": result.n / result.wall_s if result.wall_s > 0 else None,
                  "mean_steps_per_patient": float(np.mean(c["n_steps"]))}
    return out
