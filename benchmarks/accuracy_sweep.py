#!/usr/bin/env python
"""Global error of ``simulate()`` over seeded draws of the parameter table, in tolerance units.

The accuracy envelope (README "Solver", docs/model.md "Solver"): for each draw (``tests/conftest.draw_parameters``,
uniform on each parameter's scale within its bounds), a variant H0/H1/H2 in
turn, donor or autologous effectors, a random start (0.01-10 % BCR-ABL) and one
of three dose courses, the solve at rtol = atol = tol (extinction event off) is
compared with ``tests/test_solver.reference_solution`` (SciPy Radau at 1e-10,
restarted at every dose change and output) at 25 outputs over 720 days.  The
error is ``max |y - y_ref| / (tol + tol |y_ref|)`` as in the tests.

Usage::

    python benchmarks/accuracy_sweep.py [--draws 24] [--seed 7]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for _p in (ROOT, ROOT / "tests"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

import numpy as np  # noqa: E402
from conftest import draw_parameters  # noqa: E402
from test_solver import COURSES, reference_solution  # noqa: E402

from gvlmodel import State, initial_state, simulate  # noqa: E402

TOLS = (1e-6, 1e-8)
COURSE_NAMES = ("on_im", "hess_escalation", "stop_restart")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--draws", type=int, default=24, help="parameter draws (default 24)")
    ap.add_argument("--seed", type=int, default=7, help="seed of the draws (default 7)")
    args = ap.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    t_out = np.linspace(0.0, 720.0, 25)
    rows = {tol: [] for tol in TOLS}
    for k in range(args.draws):
        params = draw_parameters(rng)
        variant = ("H0", "H1", "H2")[k % 3]
        transplant = bool(rng.integers(2))
        schedule = COURSES[COURSE_NAMES[rng.integers(len(COURSE_NAMES))]]
        y0 = initial_state(params, bcr_abl=float(10 ** rng.uniform(-2, 1)), variant=variant, transplant=transplant)
        ref = reference_solution(params, variant, transplant, y0, schedule, t_out)
        for tol in TOLS:
            res = simulate(params, y0=y0, t_out=t_out, schedule=schedule, variant=variant, transplant=transplant,
                           rtol=tol, atol=tol, extinction_threshold=0.0).raise_for_status()
            units = np.abs(res.y - ref) / (tol + tol * np.abs(ref))
            i, j = np.unravel_index(np.argmax(units), units.shape)
            rows[tol].append((float(units.max()), State(j).name, float(t_out[i])))
    print("| tol | draws | min | median | max | worst state, day |\n|---:|---:|---:|---:|---:|---|")
    for tol, r in rows.items():
        u = np.array([x[0] for x in r])
        worst = max(r)
        print(f"| {tol:g} | {u.size} | {u.min():.2g} | {np.median(u):.2g} | {u.max():.3g} | {worst[1]}, {worst[2]:g} |")


if __name__ == "__main__":
    main()
