#!/usr/bin/env python
"""Measure the model's stiffness and the step counts of candidate integrators.

Reproduces the "Stiffness, measured" paragraph of README.md (the reasons the
solver is an explicit DOP853 pair): on the solver benchmark's course (one
patient, H2, transplanted, 0.1 % BCR-ABL, 400 -> 600 mg/day at day 90, stop at
day 365, 5 years; ``bench_solvers.scenario``):

* the Jacobian's eigenvalues (``gvlmodel.model.symbolic.jacobian_numeric``) every
  day of the course: most negative real part, slowest decay, largest growth
  rate and the stiffness ratio;
* steps (and right-hand-side and Jacobian evaluations) at rtol = atol = 1e-6
  of the compiled DOP853 kernel, SciPy's ``DOP853``, ``RK45``, ``Radau``,
  ``BDF`` and ``LSODA`` (the implicit ones with the exact sympy Jacobian), and
  a 4th-order Rosenbrock method (Shampine's Kaps-Rentrop parameters, as in
  Numerical Recipes' ``stiff``; a Python prototype with one Jacobian and one LU
  factorisation per step).  Every solver restarts at the dose changes only and
  produces no intermediate outputs, so the counts compare step-size selection
  alone;
* the log-transformed state ``u = log y`` integrated by SciPy's L-stable
  ``Radau`` and ``BDF`` (exact Jacobian in log coordinates), with the tolerance
  as an absolute one on ``u`` (a relative tolerance on every state), at the
  chosen tolerance and at 1e-4; their error is measured at the 61 monthly
  outputs (dense output) against the solver benchmark's Radau reference, in the
  same units as there.  This tests the alternative the foundation issue names:
  a log state removes the exponential decay and growth that polynomial methods
  must resolve, but not the eigenvalues (the stiffness), so it pays only with
  an implicit method.  States that start at zero and stay there (the resistant
  subclone, absent at the default ``resistant_fraction``) are held at zero.

Usage::

    python benchmarks/stiffness.py [--rtol 1e-6] [--out DIR]

Prints Markdown; writes ``stiffness.md`` and ``stiffness.json`` to ``--out``
(default ``benchmarks/results/``, git-ignored).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for _p in (ROOT, HERE):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

import numpy as np  # noqa: E402
from scipy.integrate import solve_ivp  # noqa: E402
from scipy.linalg import lu_factor, lu_solve  # noqa: E402

import gvlmodel as g  # noqa: E402
from bench_solvers import (REF_TOL, SCHEDULE, T_END, T_OUT, TRANSPLANT, VARIANT, errors,  # noqa: E402
                           machine_info, machine_line, make_numba_rhs, reference_solution, scenario,
                           write_results)
from gvlmodel.model import solver, symbolic  # noqa: E402
from gvlmodel.model.indices import N_STATES  # noqa: E402


def effect_at(t, edges, effects):
    return effects[min(np.searchsorted(edges, t, side="right") - 1, effects.size - 1)]


def eigen_scan(p, y0, kp, edges, effects):
    """Eigenvalues of the Jacobian on every day of the course (accurate states from a tight solve)."""
    days = np.arange(0.0, T_END + 1.0)
    res = g.simulate(p, y0=y0, t_out=days, schedule=SCHEDULE, variant=VARIANT, transplant=TRANSPLANT,
                     rtol=1e-10, atol=1e-10, extinction_threshold=0.0)
    res.raise_for_status()
    re = np.array([np.linalg.eigvals(symbolic.jacobian_numeric(y, kp, effect_at(t, edges, effects))).real
                   for t, y in zip(days, res.y)])
    neg = np.where(re < 0, -re, np.nan)
    ratio = np.nanmax(neg, axis=1) / np.nanmin(neg, axis=1)
    i_fast = int(np.argmin(re.min(axis=1)))
    i_grow = int(np.argmax(re.max(axis=1)))
    return {"days": int(days.size), "most_negative_per_day": float(re.min()), "most_negative_day": float(days[i_fast]),
            "slowest_decay_per_day": float(-np.nanmax(-neg)), "largest_growth_per_day": float(re.max()),
            "largest_growth_day": float(days[i_grow]), "stiffness_ratio_median": float(np.median(ratio)),
            "stiffness_ratio_max": float(np.max(ratio))}


def jac_of(kp, e):
    return lambda t, y: symbolic.jacobian_numeric(y, kp, e)


def scipy_counts(method, y0, kp, edges, effects, rtol, atol):
    y = y0.copy()
    steps = nfev = njev = 0
    for a, b, e in zip(edges[:-1], edges[1:], effects):
        kw = {"jac": jac_of(kp, e)} if method in ("Radau", "BDF", "LSODA") else {}
        sol = solve_ivp(make_numba_rhs(kp, e), (a, b), y, method=method, rtol=rtol, atol=atol, **kw)
        if sol.status != 0:
            raise RuntimeError(f"{method}: {sol.message}")
        steps += sol.t.size - 1
        nfev += sol.nfev
        njev += sol.njev
        y = sol.y[:, -1].copy()
    return {"steps": int(steps), "nfev": int(nfev), "njev": int(njev)}


def kernel_counts(y0, kp, edges, effects, rtol, atol):
    y_out = np.empty((edges.size, N_STATES))
    stats = np.zeros(solver.N_STATS, dtype=np.int64)
    status = solver.integrate(y0, kp, edges, effects, edges, rtol, atol, 1_000_000, 0.0, y_out, stats, np.empty(1))
    if status != solver.SUCCESS:
        raise RuntimeError(f"gvlmodel kernel: status {status}")
    return {"steps": int(stats[solver.ST_STEPS]), "rejected": int(stats[solver.ST_REJECTED]),
            "nfev": int(stats[solver.ST_RHS]), "njev": 0}


LOG_RTOL = 1e-9  # on u = log y (|u| <= ~26): negligible beside atol, and keeps Radau's Newton tolerance sane


def log_state_counts(method, y0, kp, edges, effects, tol, y_ref):
    """``method`` on ``u = log y`` of the positive states: steps, evaluations, error at ``T_OUT``.

    ``du/dt = f(y) / y`` and ``d(du_i/dt)/du_j = J_ij y_j / y_i - delta_ij f_i / y_i``.  States that
    start at zero and stay there (on this course the resistant subclone ``R0``, ``R1``, which has no
    cell at the default ``resistant_fraction``; checked) are held at zero and left out of ``u``.
    """
    idx = np.flatnonzero(y0 > 0)
    zero = np.flatnonzero(y0 <= 0)
    for e in effects:
        if np.any(make_numba_rhs(kp, e)(0.0, y0)[zero] != 0.0):
            raise RuntimeError("log-state run: a state starting at zero would not stay at zero")
    u = np.log(y0[idx])
    steps = nfev = njev = 0
    y_out = np.full((T_OUT.size, N_STATES), np.nan)
    y_out[:, zero] = 0.0
    sub = np.ix_(idx, idx)
    for a, b, e in zip(edges[:-1], edges[1:], effects):
        f_lin = make_numba_rhs(kp, e)

        def full(u):
            y = np.zeros(N_STATES)
            y[idx] = np.exp(u)
            return y

        def f(t, u, f_lin=f_lin):
            y = full(u)
            return f_lin(t, y)[idx] / y[idx]

        def jac(t, u, e=e, f_lin=f_lin):
            y = full(u)
            yp = y[idx]
            return (symbolic.jacobian_numeric(y, kp, e)[sub] * yp[None, :] / yp[:, None]
                    - np.diag(f_lin(t, y)[idx] / yp))

        sol = solve_ivp(f, (a, b), u, method=method, rtol=LOG_RTOL, atol=tol, jac=jac, dense_output=True)
        if sol.status != 0:
            raise RuntimeError(f"log-state {method}: {sol.message}")
        steps += sol.t.size - 1
        nfev += sol.nfev
        njev += sol.njev
        inside = np.flatnonzero((T_OUT >= a) & (T_OUT <= b))
        y_out[np.ix_(inside, idx)] = np.exp(sol.sol(T_OUT[inside])).T
        u = sol.y[:, -1].copy()
    return {"steps": int(steps), "nfev": int(nfev), "njev": int(njev),
            "err_tol_units": errors(y_out, y_ref)["err_tol_units"]}


# Shampine's parameters for the Kaps-Rentrop form (Numerical Recipes, 2nd ed., routine stiff)
ROS4 = dict(gam=0.5, a21=2.0, a31=48.0 / 25.0, a32=6.0 / 25.0, c21=-8.0, c31=372.0 / 25.0, c32=12.0 / 5.0,
            c41=-112.0 / 125.0, c42=-54.0 / 125.0, c43=-2.0 / 5.0, b1=19.0 / 9.0, b2=0.5, b3=25.0 / 108.0,
            b4=125.0 / 108.0, e1=17.0 / 54.0, e2=7.0 / 36.0, e3=0.0, e4=125.0 / 108.0)


def rosenbrock_counts(y0, kp, edges, effects, rtol, atol, max_steps=200_000):
    """4th-order Rosenbrock (embedded 3rd order) with SciPy's error norm and an I-controller."""
    c = ROS4
    y = y0.copy()
    steps = rejected = nfev = njev = 0
    h = 0.1
    for a, b, e in zip(edges[:-1], edges[1:], effects):
        f = make_numba_rhs(kp, e)
        t = a
        while t < b:
            if steps + rejected > max_steps:
                raise RuntimeError("Rosenbrock prototype: too many steps")
            h = min(h, b - t)
            f0 = f(t, y)
            jac = symbolic.jacobian_numeric(y, kp, e)
            nfev += 1
            njev += 1
            while True:
                lu = lu_factor(np.eye(N_STATES) / (c["gam"] * h) - jac)
                g1 = lu_solve(lu, f0)
                f2 = f(t, y + c["a21"] * g1)
                g2 = lu_solve(lu, f2 + c["c21"] * g1 / h)
                f3 = f(t, y + c["a31"] * g1 + c["a32"] * g2)
                g3 = lu_solve(lu, f3 + (c["c31"] * g1 + c["c32"] * g2) / h)
                g4 = lu_solve(lu, f3 + (c["c41"] * g1 + c["c42"] * g2 + c["c43"] * g3) / h)
                nfev += 2
                y_new = y + c["b1"] * g1 + c["b2"] * g2 + c["b3"] * g3 + c["b4"] * g4
                err_vec = c["e1"] * g1 + c["e2"] * g2 + c["e3"] * g3 + c["e4"] * g4
                scale = atol + rtol * np.maximum(np.abs(y), np.abs(y_new))
                err = float(np.sqrt(np.mean((err_vec / scale) ** 2)))
                if err <= 1.0 and np.all(np.isfinite(y_new)):
                    break
                rejected += 1
                h *= max(0.2, 0.9 * err ** -0.25) if np.isfinite(err) else 0.25
            t = b if h >= b - t else t + h
            y = np.maximum(y_new, 0.0)
            steps += 1
            h *= min(5.0, 0.9 * err ** -0.25) if err > 0 else 5.0
    return {"steps": steps, "rejected": rejected, "nfev": nfev, "njev": njev}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rtol", type=float, default=1e-6, help="rtol = atol of every solver (default 1e-6)")
    ap.add_argument("--out", default=str(HERE / "results"), help="output folder (default benchmarks/results/)")
    args = ap.parse_args(argv)
    tol = args.rtol

    p, kp, y0, edges, effects = scenario()
    scan = eigen_scan(p, y0, kp, edges, effects)
    counts = {"gvlmodel DOP853 (compiled)": kernel_counts(y0, kp, edges, effects, tol, tol)}
    for method in ("DOP853", "RK45", "Radau", "BDF", "LSODA"):
        counts[f"SciPy {method}"] = scipy_counts(method, y0, kp, edges, effects, tol, tol)
    counts["Rosenbrock 4(3), Shampine (prototype)"] = rosenbrock_counts(y0, kp, edges, effects, tol, tol)
    y_ref, _ = reference_solution(kp, y0, edges, effects, "Radau", REF_TOL)
    log_rows = {}
    for method in ("Radau", "BDF"):
        for t in sorted({tol, 1e-4}, reverse=True):
            log_rows[f"log-state SciPy {method}, atol {t:g} on log y"] = log_state_counts(
                method, y0, kp, edges, effects, t, y_ref)

    info = machine_info()
    md = [f"### Stiffness of the solver-benchmark course (H2, transplanted, 5 years; rtol = atol = {tol:g})", "",
          f"Jacobian eigenvalues on each of {scan['days']} days: most negative real part "
          f"{scan['most_negative_per_day']:.3g} /day (day {scan['most_negative_day']:.0f}); slowest decay "
          f"{scan['slowest_decay_per_day']:.3g} /day; largest growth rate {scan['largest_growth_per_day']:+.3g} /day "
          f"(day {scan['largest_growth_day']:.0f}); stiffness ratio (fastest / slowest decay) median "
          f"{scan['stiffness_ratio_median']:.3g}, max {scan['stiffness_ratio_max']:.3g}.", "",
          "| solver | steps | rejected | RHS evals | Jacobians |", "|---|---:|---:|---:|---:|"]
    for name, c in counts.items():
        rej = c.get("rejected")
        md.append(f"| {name} | {c['steps']:,} | {'n/a' if rej is None else f'{rej:,}'} | {c['nfev']:,} | {c['njev']:,} |")
    md += ["", "Restarts at dose changes only; no intermediate outputs.", "",
           "Log-transformed state (`u = log y`, exact Jacobian; error at the 61 monthly outputs from the dense "
           "output, against the solver benchmark's Radau reference, in units of rtol = atol = 1e-6 as there):", "",
           "| solver | steps | RHS evals | Jacobians | max error (1e-6 units) |", "|---|---:|---:|---:|---:|"]
    for name, c in log_rows.items():
        md.append(f"| {name} | {c['steps']:,} | {c['nfev']:,} | {c['njev']:,} | {c['err_tol_units']:.3g} |")
    md += ["", machine_line(info, numbalsoda=False)]
    text = "\n".join(md) + "\n"
    print(text)
    write_results(args.out, "stiffness", text, {"tol": tol, "eigen_scan": scan, "counts": counts,
                                                "log_state": log_rows, "machine": info})


if __name__ == "__main__":
    main()
