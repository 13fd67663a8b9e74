#!/usr/bin/env python
"""Sobol' study wall time: the Hess protocol, N = 1024 base samples over the fitted parameters.

Study: ``experiments/sensitivity_hess2005.toml`` with every quantity fitted for
H2 in the shipped set ``hess2005`` as a factor (8, ``stop_uptake`` included),
posterior 5-95 % ranges, Saltelli design with first and total order
(N (D + 2) = 10,240 cohorts), each sample a virtual cohort of 200 patients run
through the Hess protocol (3 years of monthly visits), the Hess-protocol
outputs (p_cmr, t_cmr_days, p_durable, t_loss_days and the time-resolved
BCR-ABL means); ``min_im_days`` (fixed courses, not the Hess protocol) is left
out here.  Measured in one run:

* in-process (numba threads = all cores): sample + evaluate + analyze, after a
  warm-up that loads the compiled engine;
* Dask ``LocalCluster`` with 1 and 2 worker processes (1 thread and 1 numba
  thread each) on the first ``--cluster-n`` base samples; their outputs are
  checked identical to the in-process ones.

Usage::

    python benchmarks/bench_sensitivity.py [--n 1024] [--cluster-n 256] [--out benchmarks/results]
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402

from bench_solvers import machine_info, machine_line, write_results  # noqa: E402
from gvlmodel.analysis import sensitivity as sens  # noqa: E402
from gvlmodel.core.errors import read_toml  # noqa: E402

OUTPUTS = ["p_cmr", "t_cmr_days", "p_durable", "t_loss_days"]
# experiments/fit_hess2005.toml [fitted] H2 (the study's factors plus stop_uptake)
FACTORS = ["stop_uptake", "im_kill_lsc", "sd_im_kill_lsc", "q_out", "resistant_fraction", "z_expand_allo",
           "z_kill", "z_half"]


def study(n: int) -> sens.StudyConfig:
    cfg = read_toml(ROOT / "experiments" / "sensitivity_hess2005.toml")
    cfg["study"].update({"methods": ["sobol"], "outputs": OUTPUTS, "chunk_samples": 64})
    cfg["parameters"]["factors"] = FACTORS
    cfg["cohort"]["size"] = 200
    cfg["sobol"].update({"n": n, "convergence": [n // 4, n // 2, n]})
    cfg["local"]["enabled"] = False
    return sens.parse_config(cfg, source="benchmark")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1024, help="Sobol' base samples (power of 2)")
    ap.add_argument("--cluster-n", type=int, default=256,
                    help="base samples for the LocalCluster scaling runs (0: skip them)")
    ap.add_argument("--out", default=str(HERE / "results"))
    args = ap.parse_args()
    if args.n < 2 or args.n & (args.n - 1):
        ap.error(f"--n: Sobol' base samples must be a power of 2 >= 2, got {args.n}")
    if not 0 <= args.cluster_n <= args.n:
        ap.error(f"--cluster-n: must lie in [0, --n = {args.n}], got {args.cluster_n}")
    cfg = study(args.n)
    ev = sens.CohortEvaluator(cfg)
    problem = cfg.problem
    ev(sens.sample("sobol", problem, n=2, seed=0)[:2])  # warm-up: load the compiled engine

    t0 = time.perf_counter()
    X = sens.sample("sobol", problem, n=args.n, seed=1)
    t_sample = time.perf_counter() - t0
    t0 = time.perf_counter()
    Y = sens.evaluate(X, ev, None, chunk_samples=cfg.chunk_samples, progress=False)
    t_eval = time.perf_counter() - t0
    t0 = time.perf_counter()
    names = ev.output_names
    res = {o: sens.analyze_sobol(problem, Y[:, names.index(o)], bootstrap=1000, conf_level=0.95, seed=3)
           for o in OUTPUTS}
    t_analyze = time.perf_counter() - t0
    total = t_sample + t_eval + t_analyze
    n_cohorts = X.shape[0]
    patients = n_cohorts * cfg.design.size

    cluster_rows = []
    try:
        if args.cluster_n == 0:
            raise ImportError("cluster runs skipped (--cluster-n 0)")
        import distributed

        ev1 = sens.CohortEvaluator(dataclasses.replace(cfg, threads=1))
        Xc = X[: args.cluster_n * (len(FACTORS) + 2)]
        for workers in (1, 2):
            with distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                          dashboard_address=None) as lc, distributed.Client(lc) as client:
                client.run(lambda: sens.CohortEvaluator(dataclasses.replace(cfg, threads=1))(Xc[:2]))  # warm workers
                t0 = time.perf_counter()
                Yc = sens.evaluate(Xc, ev1, None, chunk_samples=cfg.chunk_samples, scheduler=client, progress=False)
                w = time.perf_counter() - t0
            cluster_rows.append({"workers": workers, "cohorts": int(Xc.shape[0]), "wall_s": w,
                                 "cohorts_per_s": Xc.shape[0] / w,
                                 "identical_to_local": bool(np.array_equal(Yc, Y[: Xc.shape[0]]))})
    except ImportError:
        pass

    info = machine_info()
    rank = {o: [problem["names"][j] for j in np.argsort(-np.nan_to_num(np.asarray(r["ST"], float), nan=-1))[:3]]
            for o, r in res.items() if r["status"] == "ok"}
    lines = [f"### Sobol' study of the Hess protocol: N = {args.n}, {len(FACTORS)} fitted factors, "
             f"{n_cohorts:,} cohorts x {cfg.design.size} patients", "",
             "| step | wall |", "|---|---:|",
             f"| sample (SALib Saltelli) | {t_sample:.2f} s |",
             f"| evaluate ({patients:,} patients, in-process, numba threads = {info['cpu_count']}) | {t_eval:.1f} s |",
             f"| analyze (SALib, 1000 bootstrap resamples, {len(OUTPUTS)} outputs) | {t_analyze:.1f} s |",
             f"| **total** | **{total:.1f} s** ({patients / t_eval:,.0f} patients/s) |", "",
             f"Target < 5 min on 2 cores: {'met' if total < 300 else 'NOT met'}.", ""]
    if cluster_rows:
        lines += [f"Dask LocalCluster (processes, 1 thread each), first {args.cluster_n} base samples:", "",
                  "| workers | cohorts | wall | cohorts / s | identical to in-process |", "|---:|---:|---:|---:|---|"]
        for r in cluster_rows:
            lines.append(f"| {r['workers']} | {r['cohorts']:,} | {r['wall_s']:.1f} s | {r['cohorts_per_s']:.1f} | "
                         f"{r['identical_to_local']} |")
        if len(cluster_rows) == 2:
            lines += ["", f"1 → 2 workers: {cluster_rows[1]['cohorts_per_s'] / cluster_rows[0]['cohorts_per_s']:.2f}× "
                          "(linear = 2)."]
        lines.append("")
    lines += ["Top factors (ST): " + "; ".join(f"{o}: {', '.join(v)}" for o, v in rank.items()), "",
              machine_line(info, numbalsoda=False)]
    md = "\n".join(lines) + "\n"
    print(md)
    write_results(args.out, "bench_sensitivity", md,
                  {"n": args.n, "factors": FACTORS, "outputs": OUTPUTS, "cohorts": n_cohorts, "patients": patients,
                   "sample_s": t_sample, "evaluate_s": t_eval, "analyze_s": t_analyze, "total_s": total,
                   "cluster": cluster_rows, "ranking": rank, "machine": info})


if __name__ == "__main__":
    main()
