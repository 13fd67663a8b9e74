#!/usr/bin/env python
"""ABC-SMC fit wall time: batched proposals against one trial at a time, in the same run.

Fit: ``experiments/fit_hess2005.toml`` (the committed config), its ABC runs:
one per variant (H0, H1, H2) and the joint model-comparison run, at the
config's ``[quick]`` sizes (``--full``: the committed ``[fit]`` sizes).  Each
ABC run is made twice into fresh databases, once per sampler:

* **one at a time**: pyabc's ``SingleCoreSampler``, one virtual trial
  (44 + 20 patients) per proposal through ``gvlmodel.clinical.trial.run_trial``
  (``[fit] batched = false``);
* **batched**: ``gvlmodel.inference.fit``'s ``BatchSampler``, proposals drawn in
  batches and every batch simulated as one compiled cohort run per protocol
  (``gvlmodel.clinical.trial.simulate_trials``; the default).

The two runs alternate which goes first, and their populations are checked
identical (they must be: same proposals, seeds and acceptances).  Reported
per sampler: wall time of the ABC runs, time inside the compiled cohort engine
(``gvlmodel.clinical.cohort.run_inputs``' engine wall time), its share of the wall
time, time simulating trials (engine plus per-trial preparation and
statistics), and the rest (pyabc: proposals, prior and transition densities,
weights, SQLite).  numba threads: all cores unless ``[fit] threads`` is set.

Usage::

    python benchmarks/bench_fit.py [--full] [--variants H2 ...] [--no-comparison] [--out benchmarks/results]
"""
from __future__ import annotations

import argparse
import dataclasses
import shutil
import sys
import tempfile
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

import gvlmodel.clinical.cohort as cohort  # noqa: E402
from gvlmodel.inference import fit  # noqa: E402


class Timers:
    """Engine time (``cohort.run_inputs``) and trial-simulation time, accumulated while installed."""

    def __init__(self):
        self.engine_s = self.trial_s = 0.0
        self.trials = 0

    def install(self):
        run_inputs, trial_model, trial_batch = cohort.run_inputs, fit.TrialModel.__call__, fit.TrialBatch.__call__

        def timed_run_inputs(*a, **k):
            r = run_inputs(*a, **k)
            self.engine_s += r[3]
            return r

        def timed(method):
            def call(obj, arg):
                t0 = time.perf_counter()
                try:
                    return method(obj, arg)
                finally:
                    self.trial_s += time.perf_counter() - t0
                    self.trials += len(arg) if isinstance(arg, list) else 1
            return call

        cohort.run_inputs = timed_run_inputs
        fit.TrialModel.__call__ = timed(trial_model)
        fit.TrialBatch.__call__ = timed(trial_batch)
        return lambda: (setattr(cohort, "run_inputs", run_inputs), setattr(fit.TrialModel, "__call__", trial_model),
                        setattr(fit.TrialBatch, "__call__", trial_batch))


def populations(h, n_models):
    out = {"pops": h.get_all_populations()[["t", "epsilon", "samples"]].to_dict("list")}
    for t in range(h.max_t + 1):
        for m in range(n_models):
            df, w = h.get_distribution(m=m, t=t)
            out[(t, m)] = (df.to_dict("list"), list(w))
    return out


def run_one(cfg, batched, variants, pop, gens, run_index, folder):
    c = dataclasses.replace(cfg, batched=batched)
    timers = Timers()
    uninstall = timers.install()
    stats = {}
    t0 = time.perf_counter()
    try:
        h = fit.run_abc(folder / f"{'batched' if batched else 'single'}_{run_index}.db", variants, c, pop, gens,
                        run_index, log=lambda m: None, stats=stats)
    finally:
        uninstall()
    wall = time.perf_counter() - t0
    return {"wall_s": wall, "engine_s": timers.engine_s, "trial_s": timers.trial_s,
            "counted_simulations": int(h.total_nr_simulations),
            "simulated": int(stats.get("simulated") or timers.trials)}, populations(h, len(variants))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default=str(ROOT / "experiments" / "fit_hess2005.toml"))
    ap.add_argument("--full", action="store_true", help="the config's [fit] sizes instead of [quick]")
    ap.add_argument("--variants", nargs="*", default=None, help="variant fits to run (default: the config's)")
    ap.add_argument("--no-comparison", action="store_true", help="skip the joint model-comparison run")
    ap.add_argument("--out", default=str(HERE / "results"))
    args = ap.parse_args(argv)

    cfg = fit.load_config(args.config, quick=not args.full)
    variants = list(cfg.variants if args.variants is None else args.variants)
    runs = [([v], cfg.population_size, cfg.generations, cfg.variants.index(v)) for v in variants]
    if not args.no_comparison and len(cfg.variants) > 1:
        runs.append((list(cfg.variants), cfg.comparison_population_size, cfg.comparison_generations,
                     len(cfg.variants)))

    # warm-up: load the compiled engine (and compile it on a cold cache) outside the timers
    from gvlmodel.clinical.trial import TrialSpec, run_trial, simulate_trials

    v0 = cfg.variants[0]
    values = {p.key: float(np.mean(p.prior_bounds)) for p in cfg.fitted[v0]}
    run_trial(values, cfg.fitted[v0], v0, cfg.design, 1, threads=cfg.threads)
    simulate_trials([TrialSpec(v0, cfg.fitted[v0], values, 1)], cfg.design, threads=cfg.threads)

    totals = {name: {"wall_s": 0.0, "engine_s": 0.0, "trial_s": 0.0, "counted_simulations": 0, "simulated": 0}
              for name in ("one at a time", "batched")}
    per_run, identical = [], True
    tmp = Path(tempfile.mkdtemp(prefix="bench_fit_"))
    try:
        for k, (vs, pop, gens, run_index) in enumerate(runs):
            order = [False, True] if k % 2 == 0 else [True, False]
            got = {}
            for batched in order:
                name = "batched" if batched else "one at a time"
                r, pops = run_one(cfg, batched, vs, pop, gens, run_index, tmp)
                got[name] = pops
                for key in totals[name]:
                    totals[name][key] += r[key]
                per_run.append({"run": "/".join(vs), "population": pop, "generations": gens, "sampler": name, **r})
                print(f"{'/'.join(vs):>9} {name:>13}: {r['wall_s']:6.1f} s, engine {r['engine_s']:5.1f} s, "
                      f"{r['counted_simulations']} counted / {r['simulated']} simulated", file=sys.stderr)
            same = got["batched"] == got["one at a time"]
            identical &= same
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    info = machine_info()
    size = "[fit]" if args.full else "[quick]"
    lines = [f"### ABC-SMC runs of `{Path(args.config).name}` ({size} sizes: "
             + ", ".join(f"{r[0][0] if len(r[0]) == 1 else 'comparison'} {r[1]} x {r[2]}" for r in runs) + ")", "",
             "| sampler | wall | in the compiled engine | engine share | simulating trials (engine + preparation) "
             "| pyabc and the rest | simulations counted / run | trials / s of wall |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, t in totals.items():
        lines.append(f"| {name} | {t['wall_s']:.1f} s | {t['engine_s']:.1f} s | {100 * t['engine_s'] / t['wall_s']:.0f} % "
                     f"| {t['trial_s']:.1f} s ({100 * t['trial_s'] / t['wall_s']:.0f} %) "
                     f"| {t['wall_s'] - t['trial_s']:.1f} s ({100 * (1 - t['trial_s'] / t['wall_s']):.0f} %) "
                     f"| {t['counted_simulations']} / {t['simulated']} | {t['simulated'] / t['wall_s']:.0f} |")
    speed = totals["one at a time"]["wall_s"] / totals["batched"]["wall_s"]
    lines += ["", f"Batched / one at a time: {speed:.2f}x faster; populations identical: {identical}.", "",
              "Simulations run beyond those counted are the batched sampler's trials after a generation's last "
              "acceptance (discarded).", "", machine_line(info, numbalsoda=False)]
    md = "\n".join(lines) + "\n"
    print(md)
    write_results(args.out, "bench_fit", md, {"totals": totals, "runs": per_run, "identical": identical,
                                              "speedup": speed, "sizes": size, "machine": info})
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
