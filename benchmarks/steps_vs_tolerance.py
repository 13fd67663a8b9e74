#!/usr/bin/env python
"""DOP853 steps per patient against the tolerance, on the end-to-end benchmark's Hess cohort.

Explains the engine's cost in ``bench_simulate.py`` (issue 19, point 5): if the step count were set by accuracy,
a 1,000-fold looser tolerance would cut it several-fold (DOP853 is of order 8: steps ~ tol^(-1/8) per unit of
smooth solution); if it is set by stability (|h lambda| below DOP853's stability boundary for the model's
fastest decay rates, mature-cell turnover ``d3`` = 1/day and imatinib kill of cycling LSCs), it barely moves.

For each tolerance (rtol = atol), the first ``--patients`` patients of
``benchmarks/simulate_hess2005_100k.toml`` are drawn (:func:`gvlmodel.clinical.cohort.prepare_cohort`) and run
through the compiled engine (:func:`gvlmodel.clinical.cohort.run_inputs`); reported: the mean accepted steps and
right-hand-side evaluations per patient and the engine's wall time (after a warm-up run).

Usage::

    python benchmarks/steps_vs_tolerance.py [--patients 5000] [--threads 2] [--out DIR]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for p in (ROOT, HERE):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

import numpy as np  # noqa: E402

from bench_solvers import machine_info, machine_line, write_results  # noqa: E402

SCENARIO = HERE / "simulate_hess2005_100k.toml"
TOLERANCES = (1e-3, 1e-4, 1e-5, 1e-6, 1e-8)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patients", type=int, default=5000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(HERE / "results"))
    args = ap.parse_args(argv)

    import gvlmodel.clinical.cohort as cohort
    import gvlmodel.clinical.scenario as scen
    from gvlmodel.model.indices import RI
    from gvlmodel.model.parameters import parse_variant, resolve_parameters

    sc = scen.load_scenario(SCENARIO)
    base = cohort._resolve_base(sc.parameters)
    base.update(sc.population.medians)
    base = resolve_parameters(base)
    so = sc.solver

    def run(tol):
        inp = cohort.prepare_cohort(sc.cohort, sc.protocol, base, parse_variant(sc.variant), sc.population, tol,
                                    tol, so.get("extinction_threshold", 1.0), so.get("max_steps", 200000),
                                    patients=range(args.patients))
        _, _, ri, wall = cohort.run_inputs(inp, args.threads, progress=False)
        ok = ri[:, RI.STATUS] == 0
        return {"tolerance": tol, "steps_mean": float(ri[ok, RI.N_STEPS].mean()),
                "rhs_mean": float(ri[ok, RI.N_RHS].mean()), "failed": int((~ok).sum()), "engine_s": wall}

    run(TOLERANCES[0])  # warm-up: loads (or compiles) the kernels
    rows = [run(t) for t in TOLERANCES]
    ref = next(r for r in rows if r["tolerance"] == 1e-6)
    lines = [f"### DOP853 steps per patient against the tolerance ({args.patients:,} Hess patients, "
             f"{args.threads} threads)", "",
             "| rtol = atol | steps / patient | RHS evaluations / patient | steps vs 1e-6 | engine wall | failed |",
             "|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['tolerance']:.0e} | {r['steps_mean']:.1f} | {r['rhs_mean']:.0f} | "
                     f"{r['steps_mean'] / ref['steps_mean'] - 1:+.1%} | {r['engine_s']:.3f} s | {r['failed']} |")
    info = machine_info()
    lines += ["", machine_line(info, numbalsoda=False), ""]
    md = "\n".join(lines)
    print(md)
    payload = {"scenario": str(SCENARIO.relative_to(ROOT)), "patients": args.patients, "threads": args.threads,
               "rows": rows, "machine": info}
    write_results(args.out, "steps_vs_tolerance", md, payload)
    return payload


if __name__ == "__main__":
    main()
