#!/usr/bin/env python
"""End-to-end throughput of ``gvlmodel simulate``: patients per second with ``patients.csv`` written.

Scenario: ``benchmarks/simulate_hess2005_100k.toml`` (``experiments/hess2005.toml`` with 100,000
patients and no trajectories; ``--patients N`` runs a copy with another size), ``--threads 2``.

1. Warm-up: one small run of the same scenario compiles the kernels (or loads numba's cache).
2. ``--repeats`` times, alternating:

   * **process**: ``gvlmodel simulate SCENARIO --out DIR --threads T --no-progress`` in a fresh
     Python process (interpreter start-up, imports and cache loading included); wall time around
     the process, its CPU time and peak RSS (``wait4``), and the engine time it prints;
   * **in process**: :func:`gvlmodel.clinical.scenario.run_and_write` (what the command runs after
     validation) with timers around its parts: drawing patients and start states
     (``prepare_cohort``), the compiled engine (``run_inputs``), building the result columns, and
     the rest (summary, provenance, publishing, waiting for the writer).  ``patients.csv`` is
     formatted and written (``TableWriter.write``) in a second thread while the next part of the
     cohort runs, so its time is reported next to the shares, not as one of them.
   * **start-up parts**: a fresh interpreter that times the command's imports, the first cached kernel
     (numba initialises its registries then, importing ``scipy.linalg`` for its BLAS check) and
     ``scipy.special``; the interpreter's own start and exit (after ``gc.freeze``, as the command) are the
     rest of that process's wall time;
   * **start-up floor**: a fresh interpreter that only imports NumPy and numba, runs one cached kernel
     and imports ``scipy.special`` (what any numba-based command pays); from it and the measured
     start-up the report gives the in-process rate the command would need to reach the target.

3. ``--million``: one process run of 10**6 patients, for peak RSS (memory must not grow with the
   cohort: ``simulate`` streams parts of 32,768 patients).

The machine is often shared, so every timing is recorded with the load average (1 min) before
it, and CPU seconds are reported next to wall seconds: ``patients / CPU-s x threads`` is the
throughput the run would have had with its threads' cores to itself.  Medians over repeats.

Usage::

    python benchmarks/bench_simulate.py [--patients N] [--threads T] [--repeats R] [--million] [--quick] [--out DIR]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
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

SCENARIO = HERE / "simulate_hess2005_100k.toml"
TARGET = 20000.0  # patients/s end to end on 2 threads (issue 19, point 5)
# the command, run from this checkout whatever is installed
CLI = [sys.executable, "-c", f"import sys; sys.path.insert(0, {str(ROOT)!r}); "
       "from gvlmodel.workflow.cli import console_main; sys.exit(console_main())"]


def scenario_copy(n: int, folder: Path) -> Path:
    """The benchmark scenario with ``size = n`` (the committed file itself for 100,000)."""
    text = SCENARIO.read_text()
    if n == 100000:
        return SCENARIO
    path = folder / f"scenario_{n}.toml"
    path.write_text(re.sub(r"(?m)^size = \d+$", f"size = {n}", text))
    return path


def run_process(scenario: Path, out: Path, threads: int) -> dict:
    """``gvlmodel simulate`` in a fresh process: wall, CPU, peak RSS, the engine time it prints."""
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    proc = subprocess.Popen(CLI + ["simulate", str(scenario), "--out", str(out), "--threads", str(threads),
                                   "--no-progress"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, status, ru = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    stdout, stderr = proc.stdout.read(), proc.stderr.read()
    proc.stdout.close()
    proc.stderr.close()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"gvlmodel simulate exited {proc.returncode}:\n{stdout}\n{stderr}")
    m = re.search(r"^(\d+) patients in ([0-9.]+) s", stdout, re.M)
    return {"load_1min": load, "wall_s": wall, "cpu_s": ru.ru_utime + ru.ru_stime, "max_rss_mb": ru.ru_maxrss / 1024,
            "patients": int(m.group(1)), "engine_s": float(m.group(2))}


def run_in_process(scenario_path: Path, out: Path, threads: int) -> dict:
    """:func:`run_and_write` with timers around its parts (seconds per part)."""
    import gvlmodel.clinical.cohort as cohort
    import gvlmodel.clinical.scenario as scen

    parts = {"prepare": 0.0, "engine": 0.0, "engine_kernel": 0.0, "simulate_cohort": 0.0, "write": 0.0}

    def timed(name, f):
        def wrapper(*a, **k):
            t = time.perf_counter()
            try:
                return f(*a, **k)
            finally:
                parts[name] += time.perf_counter() - t
        return wrapper

    saved = (cohort.prepare_cohort, cohort.run_inputs, scen.simulate_cohort, scen.TableWriter.write)

    def run_inputs(*a, **k):
        res = saved[1](*a, **k)
        parts["engine_kernel"] += res[3]
        return res

    cohort.prepare_cohort = timed("prepare", saved[0])
    cohort.run_inputs = timed("engine", run_inputs)
    scen.simulate_cohort = timed("simulate_cohort", saved[2])
    scen.TableWriter.write = timed("write", saved[3])
    try:
        sc = scen.load_scenario(scenario_path)
        load = os.getloadavg()[0]
        c0 = time.process_time()
        t0 = time.perf_counter()
        scen.run_and_write(sc, out, threads=threads, progress=False)
        wall = time.perf_counter() - t0
        cpu = time.process_time() - c0
    finally:
        cohort.prepare_cohort, cohort.run_inputs, scen.simulate_cohort, scen.TableWriter.write = saved
    columns = parts["simulate_cohort"] - parts["prepare"] - parts["engine"]
    return {"load_1min": load, "wall_s": wall, "cpu_s": cpu, "patients": sc.cohort.size,
            "prepare_s": parts["prepare"], "engine_s": parts["engine"], "engine_kernel_s": parts["engine_kernel"],
            "columns_s": columns, "write_s": parts["write"],
            "rest_s": wall - parts["simulate_cohort"]}


_STARTUP_PROBE = """
import json, sys, time
t0 = time.perf_counter()
sys.path.insert(0, {root!r})
import gvlmodel.workflow.cli  # what the command imports
t1 = time.perf_counter()
from gvlmodel.model.model import im_effect
im_effect(400.0, 979.0, 500.0)  # first cached kernel: numba sets up its registries (and imports scipy.linalg)
t2 = time.perf_counter()
import scipy.special  # binomial intervals of the summary
t3 = time.perf_counter()
print(json.dumps({{"imports_s": t1 - t0, "first_kernel_s": t2 - t1, "scipy_special_s": t3 - t2}}))
import gc
gc.freeze()  # as the command does before it exits (gvlmodel.workflow.cli.console_main)
"""


_FLOOR_PROBE = """
import numpy
import numba


@numba.njit(cache=True)
def one(x):
    return x + 1.0


one(1.0)
import scipy.special  # noqa: E402,F401
import gc  # noqa: E402

gc.freeze()
"""


def startup_floor(tmp: Path) -> float:
    """Wall time of a fresh interpreter that imports NumPy and numba, runs one cached kernel (numba's
    registries, as in any numba program) and imports ``scipy.special``: the start-up every numba-based
    command pays on this machine, whatever it computes.  The probe is run once first to fill its cache."""
    probe = tmp / "floor_probe.py"
    if not probe.exists():
        probe.write_text(_FLOOR_PROBE)
        subprocess.run([sys.executable, str(probe)], check=True)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, str(probe)], check=True)
    return time.perf_counter() - t0


def startup_breakdown() -> dict:
    """Parts of the command's fixed start-up, in a fresh interpreter: the interpreter itself (the process
    wall minus the timed parts), the command's imports, the first cached kernel (numba initialises its
    registries) and ``scipy.special``."""
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", _STARTUP_PROBE.format(root=str(ROOT))], capture_output=True,
                         text=True, check=True).stdout
    wall = time.perf_counter() - t0
    parts = json.loads(out.strip().splitlines()[-1])
    parts["interpreter_s"] = wall - sum(parts.values())
    return parts


def median(rows, key):
    return float(np.median([r[key] for r in rows]))


def spread(rows, key):
    """Slowest and fastest repeat as patients / s (the shared machine's speed drifts between repeats)."""
    rates = [r["patients"] / r[key] for r in rows]
    return f"{min(rates):,.0f} – {max(rates):,.0f}"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--patients", type=int, default=100000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--million", action="store_true", help="also run 10**6 patients once (peak RSS)")
    ap.add_argument("--quick", action="store_true", help="10,000 patients, 2 repeats (smoke test)")
    ap.add_argument("--out", default=str(HERE / "results"))
    args = ap.parse_args(argv)
    if args.quick:
        args.patients, args.repeats = 10000, 2
    with tempfile.TemporaryDirectory(prefix="bench_simulate_") as tmp:
        tmp = Path(tmp)
        scenario = scenario_copy(args.patients, tmp)
        warm = run_process(scenario_copy(64, tmp), tmp / "warm", args.threads)  # compile / load the cache
        run_in_process(scenario_copy(64, tmp), tmp / "warm_in", args.threads)
        procs, inproc, starts, floors = [], [], [], []
        for r in range(args.repeats):  # alternate, so that a busy spell of a shared machine hits both
            procs.append(run_process(scenario, tmp / f"p{r}", args.threads))
            inproc.append(run_in_process(scenario, tmp / f"i{r}", args.threads))
            starts.append(startup_breakdown())
            floors.append(startup_floor(tmp))
            print(f"repeat {r + 1}/{args.repeats}: process {procs[-1]['wall_s']:.2f} s (load "
                  f"{procs[-1]['load_1min']:.2f}), in process {inproc[-1]['wall_s']:.2f} s (load "
                  f"{inproc[-1]['load_1min']:.2f})", file=sys.stderr)
        size = (tmp / "p0" / "patients.csv").stat().st_size
        million = None
        if args.million:
            million = run_process(scenario_copy(10 ** 6, tmp), tmp / "million", args.threads)
            million["patients_csv_bytes"] = (tmp / "million" / "patients.csv").stat().st_size
            million["patients_per_s"] = million["patients"] / million["wall_s"]

    n = args.patients
    t = args.threads
    pw, iw = median(procs, "wall_s"), median(inproc, "wall_s")
    summary = {
        "process_patients_per_s": n / pw,
        "process_patients_per_cpu_s_x_threads": n / median(procs, "cpu_s") * t,
        "in_process_patients_per_s": n / iw,
        "in_process_patients_per_cpu_s_x_threads": n / median(inproc, "cpu_s") * t,
        "engine_patients_per_s": n / median(inproc, "engine_kernel_s"),
        "startup_s": median(procs, "wall_s") - iw,
        "load_1min_median": float(np.median([r["load_1min"] for r in procs + inproc])),
        "startup_parts_s": {k: median(starts, k) for k in starts[0]},
        "startup_floor_s": float(np.median(floors)),
        "process_repeats_at_target": sum(n / r["wall_s"] >= TARGET for r in procs),
    }
    # the in-process rate at which the command, with this start-up, would reach the target
    budget = n / TARGET - summary["startup_s"]
    summary["in_process_needed_for_target_per_s"] = n / budget if budget > 0 else None  # None: start-up alone is over
    share = {k: float(np.median([r[k] / r["wall_s"] for r in inproc]))
             for k in ("prepare_s", "engine_s", "columns_s", "write_s", "rest_s")}  # write_s: the writer thread
    info = machine_info()
    lines = [f"### `gvlmodel simulate`, Hess protocol, {n:,} patients, {t} threads, patients.csv written", "",
             f"Scenario `{SCENARIO.relative_to(ROOT)}`" + (f" with size = {n}" if n != 100000 else "")
             + f"; median of {args.repeats} repeats; load average (1 min) before the runs: median "
             f"{summary['load_1min_median']:.2f} on {info['cpus_usable']} usable CPUs.", "",
             "| measure | wall (median) | patients / s | slowest – fastest repeat, patients / s "
             "| patients / CPU-s × threads |", "|---|---:|---:|---:|---:|",
             f"| process (start-up, imports, cache load, run, write) | {pw:.2f} s | "
             f"{summary['process_patients_per_s']:,.0f} | {spread(procs, 'wall_s')} "
             f"| {summary['process_patients_per_cpu_s_x_threads']:,.0f} |",
             f"| in process (`run_and_write`) | {iw:.2f} s | {summary['in_process_patients_per_s']:,.0f} | "
             f"{spread(inproc, 'wall_s')} | {summary['in_process_patients_per_cpu_s_x_threads']:,.0f} |",
             f"| compiled engine only | {median(inproc, 'engine_kernel_s'):.2f} s | "
             f"{summary['engine_patients_per_s']:,.0f} | {spread(inproc, 'engine_kernel_s')} | |", "",
             "Share of the in-process wall time (main thread): "
             + ", ".join(f"{label} {100 * share[k]:.1f} %" for label, k in
                         (("engine (run_inputs)", "engine_s"), ("draws and start states (prepare_cohort)", "prepare_s"),
                          ("result columns", "columns_s"),
                          ("summary, provenance, publishing, waiting for the writer", "rest_s"))) + "; "
             f"formatting and writing patients.csv, in a second thread overlapping the next part: "
             f"{median(inproc, 'write_s'):.2f} s ({100 * share['write_s']:.1f} % of the wall time).",
             f"Process start-up (wall of the command minus the in-process run): {summary['startup_s']:.2f} s, "
             "of which, in a fresh interpreter (medians): "
             + ", ".join(f"{label} {summary['startup_parts_s'][k]:.2f} s" for label, k in
                         (("interpreter", "interpreter_s"), ("the command's imports", "imports_s"),
                          ("first cached kernel (numba's registries, which import scipy.linalg)", "first_kernel_s"),
                          ("scipy.special", "scipy_special_s")))
             + "; the rest is reading the config, loading the run's kernels and writing the small files; "
             f"peak RSS {median(procs, 'max_rss_mb'):.0f} MB; patients.csv {size / 1e6:.1f} MB.", "",
             f"Start-up floor: a fresh interpreter that only imports NumPy and numba, runs one cached kernel and "
             f"imports scipy.special takes {summary['startup_floor_s']:.2f} s (median), so the command's start-up is "
             f"{summary['startup_s'] - summary['startup_floor_s']:.2f} s above what any numba command pays here. "
             + (f"With this start-up, {TARGET:,.0f} patients/s as a command needs the in-process run at "
                f"{summary['in_process_needed_for_target_per_s']:,.0f} patients/s."
                if summary["in_process_needed_for_target_per_s"] else
                f"At {n:,} patients the start-up alone exceeds the time {TARGET:,.0f} patients/s allows."), "",
             f"Target ≥ {TARGET:,.0f} patients/s end to end on 2 threads: in process "
             f"{'met' if summary['in_process_patients_per_s'] >= TARGET else 'NOT met'}, process "
             f"{'met' if summary['process_patients_per_s'] >= TARGET else 'NOT met'} (medians); process repeats at "
             f"or above it: {summary['process_repeats_at_target']} of {len(procs)}."]
    if million:
        lines += ["", f"10^6 patients (one process run): {million['wall_s']:.1f} s wall "
                  f"({million['patients_per_s']:,.0f} patients/s, load {million['load_1min']:.2f}), "
                  f"peak RSS {million['max_rss_mb']:.0f} MB (100,000: {median(procs, 'max_rss_mb'):.0f} MB), "
                  f"patients.csv {million['patients_csv_bytes'] / 1e6:.0f} MB."]
    lines += ["", machine_line(info, numbalsoda=False)]
    md = "\n".join(lines) + "\n"
    print(md)
    write_results(args.out, "bench_simulate", md, {"patients": n, "threads": t, "summary": summary, "share": share,
                                                   "process": procs, "in_process": inproc, "startup": starts,
                                                   "warm_up": warm,
                                                   "million": million, "machine": info})


if __name__ == "__main__":
    main()
