"""Command-line interface: ``gvlmodel reproduce``, ``example``, ``simulate``, ``calibrate``, ``predict-stop``, ``fit``, ``sensitivity``,
``dynamics``, ``parameters``, ``export-sbml``.

Bad input exits with status 2 and one message naming the field; nothing is
written to the output folder in that case.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

if "numpy" not in sys.modules:  # the command's own process (``import gvlmodel`` imports no NumPy): one BLAS thread
    # The commands' parallel work is the compiled engine's threads; their linear algebra is tiny.  OpenBLAS starts
    # a thread per core when NumPy (and again when SciPy) loads it, and those threads busy-wait after loading and
    # after every threaded call, taking ~0.3 CPU-s from the engine (``benchmarks/README.md``).  One thread also
    # computes every BLAS result alike on any machine.  Read only when OpenBLAS loads; a value set by the user wins.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np

from ..core.version import __version__
from ..core.errors import InputError, SolverError, output_folder, read_toml, real
from ..core.progress import wanted
from ..core.provenance import (abandon_outputs, atomic_write_json, atomic_write_text, begin_outputs, finish_outputs,
                               lock_outputs, provenance, unpublish)

#: most rows of the example's trajectory
MAX_EXAMPLE_ROWS = 1e6
EXAMPLE_KEYS = {"variant", "transplant", "bcr_abl", "schedule", "days", "interval_days", "parameters", "rtol"}


def _example_config(path: str | None) -> dict:
    cfg = {
        "variant": "H2",
        "transplant": True,
        "bcr_abl": 0.1,
        "schedule": [[0, 400], [90, 600], [365, 0]],
        "days": 1825,
        "interval_days": 30,
        "parameters": {},
        "rtol": 1e-6,
    }
    if path is not None:
        user = read_toml(path, "config")
        unknown = set(user) - EXAMPLE_KEYS
        if unknown:
            raise InputError(f"config: unknown key(s) {sorted(unknown)}; allowed: {sorted(EXAMPLE_KEYS)}")
        cfg.update(user)
    from ..model.simulate import MAX_DAYS

    cfg["days"] = real("config key 'days'", cfg["days"], lo=0.0, hi=MAX_DAYS, lo_open=True)
    cfg["interval_days"] = real("config key 'interval_days'", cfg["interval_days"], lo=0.01, hi=cfg["days"])
    if cfg["days"] / cfg["interval_days"] > MAX_EXAMPLE_ROWS:
        raise InputError(f"config key 'interval_days': at most {MAX_EXAMPLE_ROWS:.0e} output rows, got days / "
                         f"interval_days = {cfg['days'] / cfg['interval_days']:.3g}")
    from ..core import limits
    from ..model.indices import N_STATES
    from ..clinical.scenario import TEXT_CELL_BYTES

    cfg["rtol"] = limits.rtol("config key 'rtol'", cfg["rtol"])
    rows = cfg["days"] / cfg["interval_days"] + 2
    # the solution (states and derived columns) and the table's text, built in memory before its write
    limits.check_memory({"trajectory": rows * (N_STATES + 8) * (8.0 + TEXT_CELL_BYTES)},
                        {"trajectory": "config key 'days' or a larger 'interval_days'"}, what="this example")
    from ..model.simulate import DoseSchedule

    try:  # a list of [day, dose_mg] pairs, checked here (before anything is written)
        DoseSchedule.from_steps(cfg["schedule"])
    except InputError as exc:
        raise InputError(f"config key 'schedule': {exc} (e.g. schedule = [[0, 400], [90, 600], [365, 0]])") from None
    if not isinstance(cfg["parameters"], dict):
        raise InputError("config key 'parameters': expected a table of parameter name = value")
    from ..model.parameters import resolve_parameters

    try:  # overrides must lie in the table's bounds
        resolve_parameters(cfg["parameters"], check_bounds=True)
    except InputError as exc:
        raise InputError(f"config key 'parameters': {exc}") from None
    return cfg


def run_example(config: str | None, out: Path):
    """Simulate the documented example patient and write its trajectory; returns ``(out, result)``.

    A failed solve is written too (its status and message in ``summary.json``,
    the rows it reached in ``trajectory.csv``); the command then exits 1.
    """
    from ..model.simulate import initial_state, simulate

    cfg = _example_config(config)
    t = np.arange(0.0, float(cfg["days"]) + 1e-9, float(cfg["interval_days"]))
    if t[-1] < cfg["days"] - 1e-9:  # the course ends at `days` even off the visit grid (1825 = 60 x 30 + 25)
        t = np.append(t, cfg["days"])
    y0 = initial_state(cfg["parameters"], bcr_abl=cfg["bcr_abl"], variant=cfg["variant"], transplant=cfg["transplant"])
    res = simulate(cfg["parameters"], y0=y0, t_out=t, schedule=cfg["schedule"],
                   variant=cfg["variant"], transplant=cfg["transplant"], rtol=cfg["rtol"])
    from ..clinical.scenario import table_csv

    text = table_csv(res.as_dict())  # rows a failed solve did not reach are left empty, not nan
    final = float(res.bcr_abl[-1])
    summary = {"status": res.status, "message": res.message, "n_steps": res.n_steps, "n_rhs": res.n_rhs,
               "extinct": res.extinct, "t_extinct_days": res.t_extinct if res.extinct else None,
               "final_bcr_abl_percent": final if np.isfinite(final) else None,
               "days_reached": float(res.t[np.all(np.isfinite(res.y), axis=1)][-1])}
    begin_outputs(out)  # creates the folder (removed again if the run is refused)
    try:  # a failure (a full disk) removes what this run published in a folder it created
        atomic_write_text(out / "trajectory.csv", text)
        atomic_write_json(out / "summary.json", summary)
        finish_outputs(out, provenance(cfg, seed=None))
    except BaseException:
        unpublish(out, ["trajectory.csv", "summary.json", "provenance.json"])
        raise
    return out, res


def run_simulate(scenario_path: str, out: Path, threads: int | None, progress: bool | None = None) -> int:
    """``gvlmodel simulate``: validate everything first, then run, then write (atomically).

    Returns the exit status: 1 if any patient's solve failed (the results are
    written all the same, each failure in its row of ``patients.csv`` and in
    ``summary.json``; the rates then cover the solved patients only), else 0.
    """
    from ..clinical.scenario import load_scenario, run_and_write

    scenario = load_scenario(scenario_path)
    scenario.check_resources(out=out)  # a run that cannot fit in memory or on disk is refused before it starts
    lock_outputs(out)  # validated: hold the folder for the whole run, not only while writing
    files, s, result = run_and_write(scenario, out, threads=threads, progress=progress)
    r = s["rates"]

    def show(key):
        v = r[key]
        return "n/a" if v["rate"] is None else f"{v['k']}/{v['n']} ({100 * v['rate']:.0f}%)"

    print(f"{result.n} patients in {result.wall_s:.2f} s ({s['run']['patients_per_s']:.0f}/s, "
          f"{result.threads} threads); solver failures: {s['n_solver_failures']}")
    print(f"CMR {show('reached_cmr')}; stopped {show('stopped')}; durable CMR after stop "
          f"{show('durable_cmr_after_stop')}; eradicated {show('eradicated')}")
    print(f"wrote {', '.join(str(Path(out) / f) for f in files)}")
    n_failed = int(s["n_solver_failures"])
    if n_failed:
        print(f"gvlmodel: {n_failed} of {result.n} patients' solves failed (solver_status and solver_message in "
              f"{Path(out) / files[0]}); the rates above cover the {result.n - n_failed} solved patients "
              f"only", file=sys.stderr)
        return 1
    return 0


def run_sensitivity_cli(args) -> None:
    """``gvlmodel sensitivity``: validate, then sample -> evaluate -> analyze (resumable)."""
    from ..analysis.sensitivity import load_config, run_study

    cfg = load_config(args.config, quick=args.quick)
    t0 = time.perf_counter()
    r = run_study(cfg, args.out, scheduler=args.scheduler, progress=wanted(args.no_progress), log=_say)
    for o, order in r.get("sobol", {}).get("ranking", {}).items():
        if order:
            print(f"{o}: top factors (Sobol' ST) {', '.join(order[:3])}")
    print(f"sensitivity: {time.perf_counter() - t0:.0f} s; wrote {args.out}/indices.json, summary.md")


def _path(text: str) -> Path:
    """A path argument; an empty one is refused (``Path("")`` would silently mean the current folder)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("empty; expected a path")
    return Path(text)


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser (the docs' CLI reference is generated from it)."""

    parser = argparse.ArgumentParser(
        prog="gvlmodel", description="CML stem cells, imatinib and graft-versus-leukemia effectors: simulate, "
        "fit to Hess et al. 2005, analyse; `gvlmodel reproduce` runs every experiment and figure. Bad input "
        "exits 2 naming the field, a failed solve exits 1.")
    parser.add_argument("--version", action="version", version=f"gvlmodel {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    ex = sub.add_parser("example", help="simulate the documented example patient (molecular relapse after SCT)")
    ex.add_argument("config", nargs="?", help="optional TOML overriding the example (keys: " + ", ".join(sorted(EXAMPLE_KEYS)) + ")")
    ex.add_argument("--out", required=True, type=_path, help="output folder")
    ex.add_argument("--no-progress", action="store_true", help="never show a progress bar")
    pa = sub.add_parser("parameters", help="print the parameter table (Markdown)")
    pa.add_argument("--sets", action="store_true", help="list the named parameter sets instead (fitted ones too)")
    from ..analysis.sbml import add_arguments as _sbml_arguments

    _sbml_arguments(sub.add_parser("export-sbml", help="write the model as SBML L3V2 (needs gvlmodel[sbml])"))
    si = sub.add_parser("simulate", help="run a virtual cohort through a treatment protocol (scenario TOML)")
    si.add_argument("scenario", help="scenario file (see experiments/*.toml and gvlmodel/clinical/scenario.py)")
    si.add_argument("--out", required=True, type=_path, help="output folder")
    si.add_argument("--threads", type=int, default=None, help="numba threads (default: all cores)")
    si.add_argument("--no-progress", action="store_true", help="never show a progress bar")
    fi = sub.add_parser("fit", help="fit H0/H1/H2 to the Hess 2005 data (ABC-SMC), compare them, write a report")
    fi.add_argument("config", help="fit config (see experiments/fit_hess2005.toml)")
    fi.add_argument("--out", required=True, type=_path, help="output folder; re-running on it resumes the fit")
    fi.add_argument("--quick", action="store_true", help="use the config's [quick] settings (tests, first look)")
    fi.add_argument("--ship", action="store_true",
                    help="also install the fitted parameter sets into gvlmodel/parameter_sets/")
    fi.add_argument("--no-progress", action="store_true", help="never show a progress bar")
    fi.add_argument("--scheduler", default=None,
                    help="Dask scheduler address (tcp://HOST:8786) to simulate the ABC batches on a cluster, with "
                    "the same result as locally (gvlmodel[distributed])")
    co = sub.add_parser("compare", help="how far the H0/H1/H2 comparison holds: refits under the Hess data model's "
                        "alternatives, scores on held-out STIM1 data, the trial size or T-cell measurement that "
                        "would decide")
    co.add_argument("config", help="compare config (see experiments/compare_hess2005.toml)")
    co.add_argument("--out", required=True, type=_path, help="output folder; re-running on it resumes")
    co.add_argument("--quick", action="store_true", help="use the config's [quick] settings (tests, first look)")
    co.add_argument("--no-refits", action="store_true",
                    help="skip part 1 (the refits); parts 2 and 3 use the shipped sets")
    co.add_argument("--no-progress", action="store_true", help="never show a progress bar")
    ca = sub.add_parser("calibrate", help="fit the individual BCR-ABL series (Michor 2005, Hähnel 2020) with a "
                        "population prior (mixed effects); write per-patient fits, the population estimate, a report")
    ca.add_argument("config", help="calibration config (see experiments/calibrate_patients.toml)")
    ca.add_argument("--out", required=True, type=_path, help="output folder")
    ca.add_argument("--quick", action="store_true", help="use the config's [quick] settings (tests, first look)")
    ca.add_argument("--ship", action="store_true",
                    help="also install the population estimate as a parameter set into gvlmodel/parameter_sets/")
    ca.add_argument("--stim-size", type=int, default=2000,
                    help="patients of the STIM1-like check trial (0 skips it; default 2000)")
    ca.add_argument("--no-progress", action="store_true", help="never show a progress bar")
    ps = sub.add_parser("predict-stop", help="fit each patient's BCR-ABL history under the population prior and "
                        "predict loss of MMR after stopping imatinib (probability with a credible interval)")
    ps.add_argument("history", help="CSV: patient_id, day, bcr_abl_percent, below_detection, stop_day, transplant "
                    "[, dose_mg] (see gvlmodel/inference/predict.py)")
    ps.add_argument("--out", required=True, type=_path, help="output folder")
    ps.add_argument("--horizon-days", type=float, default=365.0,
                    help="window after stop_day in which a loss of MMR counts (default 365)")
    ps.add_argument("--draws", type=int, default=2000,
                    help="posterior draws per patient, from an emcee ensemble sampler (default 2000)")
    ps.add_argument("--seed", type=int, default=1, help="seed of the posterior draws (default 1)")
    ps.add_argument("--set", dest="set_name", default=None,
                    help="calibrated parameter set for the prior (default: 'patients' for non-transplanted, "
                    "'hess2005' for transplanted patients)")
    ps.add_argument("--threshold-percent", type=float, default=0.1,
                    help="BCR-ABL level (%% IS) whose crossing counts as recurrence (default 0.1, loss of MMR)")
    ps.add_argument("--no-progress", action="store_true", help="never show a progress bar")
    se = sub.add_parser("sensitivity", help="global (Sobol', Morris) and local sensitivity of clinical outcomes")
    se.add_argument("config", help="study config (see experiments/sensitivity_hess2005.toml)")
    se.add_argument("--out", required=True, type=_path, help="output folder; re-running on it resumes / re-analyses")
    se.add_argument("--quick", action="store_true", help="use the config's [quick] sizes (tests, first look)")
    se.add_argument("--scheduler", default=None,
                    help="Dask scheduler address (tcp://HOST:8786) to evaluate on a cluster (gvlmodel[distributed])")
    se.add_argument("--no-progress", action="store_true", help="never show a progress bar")
    dy = sub.add_parser("dynamics", help="steady states, immune window, phase plane, minimal IM duration")
    dy.add_argument("config", help="dynamics config (see experiments/dynamics.toml)")
    dy.add_argument("--out", required=True, type=_path, help="output folder")
    dy.add_argument("--quick", action="store_true", help="small grids (tests, first look)")
    dy.add_argument("--no-progress", action="store_true", help="never show a progress bar")
    rp = sub.add_parser("reproduce", help="the main job: every experiment from the shipped fits, every figure, "
                        "and the numbers file (skips steps whose inputs are unchanged)")
    rp.add_argument("--quick", action="store_true", help="small version of every step (into results/quick)")
    rp.add_argument("--refit", action="store_true",
                    help="refit by ABC instead of using the shipped sets, and run the comparison's robustness refits "
                    "(about an hour); overwrites the shipped sets patients and hess2005* with the refits")
    rp.add_argument("--force", action="store_true", help="re-run every step even if its inputs are unchanged")
    rp.add_argument("--root", type=_path, default=Path("."), help="repository root (holds experiments/, figures/)")
    rp.add_argument("--results", type=_path, default=None, help="results folder (default results/ or results/quick/)")
    rp.add_argument("--figures", type=_path, default=None,
                    help="figure output folder (default figures/output/ or figures/output/quick/)")
    rp.add_argument("--threads", type=int, default=None, help="numba threads for the scenarios (default: all)")
    rp.add_argument("--no-progress", action="store_true", help="never show a progress bar")
    return parser


#: commands that run the model (their kernels are compiled up front, with a bar, on a terminal)
MODEL_COMMANDS = {"example", "simulate", "fit", "compare", "calibrate", "predict-stop", "sensitivity", "dynamics", "reproduce"}


class _ReaderMayLeave:
    """A standard stream whose reader may have gone (``gvlmodel ... | head``): once a write or flush
    finds the pipe closed (or the stream cannot be written at all, ``> /dev/full``), the stream's file
    descriptor is pointed at /dev/null and further output is dropped, so the messages' fate neither raises
    nor changes the command's exit status (the run's results are in its output folder)."""

    def __init__(self, stream):
        import os

        self._gone = stream is None  # started with the descriptor closed (``>&-``): Python gives None
        self._stream = open(os.devnull, "w") if stream is None else stream

    def _reader_gone(self) -> None:
        self._gone = True
        import os

        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(devnull, self._stream.fileno())  # the interpreter's final flush must not raise either
            finally:
                os.close(devnull)
        except (AttributeError, OSError, ValueError):  # not a real file (captured in a test)
            pass

    def write(self, text):
        if not self._gone:
            try:
                return self._stream.write(text)
            except OSError:  # BrokenPipeError, or a stream that cannot take more (> /dev/full)
                self._reader_gone()
        return len(text)

    def flush(self):
        if not self._gone:
            try:
                self._stream.flush()
            except OSError:
                self._reader_gone()

    def __getattr__(self, name):
        return getattr(self._stream, name)


def main(argv=None) -> int:
    """The ``gvlmodel`` command line; returns the exit status (0 done, 1 a solve failed, 2 refused: bad
    input, an output folder in use, or a file that cannot be read or written)."""
    out, err = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _ReaderMayLeave(out), _ReaderMayLeave(err)
    try:
        return _main(argv)
    finally:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        sys.stdout, sys.stderr = out, err


def _main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    progress = wanted(getattr(args, "no_progress", False))  # bars on a terminal, unless --no-progress
    try:
        if getattr(args, "threads", None) is not None:
            from ..clinical.cohort import check_threads

            check_threads(args.threads, "--threads")
        if args.command != "export-sbml":  # its --out names a file
            for name in ("out", "results", "figures"):
                if getattr(args, name, None) is not None:
                    output_folder(getattr(args, name), f"--{name}")
        if args.command in MODEL_COMMANDS and progress:
            from .warmup import compile_kernels, kernels_to_compile

            if kernels_to_compile():  # first run of this version: compile every kernel now, with a bar
                compile_kernels(progress=True)
        if args.command == "example":
            out, res = run_example(args.config, args.out)
            print(f"wrote {out}/trajectory.csv, summary.json, provenance.json")
            if not res.success:
                print(f"gvlmodel: the solve failed (status {res.status}): {res.message}; "
                      f"see {out}/summary.json", file=sys.stderr)
                return 1
        elif args.command == "simulate":
            status = run_simulate(args.scenario, args.out, args.threads,
                                  progress=None if progress else False)
            if status:
                return status
        elif args.command == "fit":
            from ..inference.fit import load_config, run_fit

            cfg = load_config(args.config, quick=args.quick)
            t0 = time.perf_counter()
            rep = run_fit(cfg, args.out, ship=args.ship, log=_say, scheduler=args.scheduler, progress=progress)
            c = rep["comparison"]["result"] if rep["comparison"] else None
            if c:
                print("model probabilities: " + ", ".join(f"{v} {p:.3f} ± {c['se'][v]:.3f}"
                                                          for v, p in c["probabilities"].items()))
            print(f"best supported: {rep['best']}; {time.perf_counter() - t0:.0f} s; "
                  f"wrote {args.out}/report.md, report.json, predictive.csv, parameter_sets/")
        elif args.command == "compare":
            from ..inference.compare import load_config as load_compare_config, run_compare

            cfg = load_compare_config(args.config, quick=args.quick)
            t0 = time.perf_counter()
            rep = run_compare(cfg, args.out, robustness=not args.no_refits, log=_say, progress=progress)
            h = rep["holdout"]
            print("held-out STIM1 log scores: " + ", ".join(f"{v} {e['log_score']:.1f}"
                                                              for v, e in h["variants"].items()))
            tables = ("robustness.csv, " if rep["robustness_run"] else "") + "holdout.json, decisive.csv"
            print(f"compare: {time.perf_counter() - t0:.0f} s; wrote {args.out}/report.md, report.json, {tables}")
        elif args.command == "calibrate":
            from ..inference.calibrate import check_stim_size, load_config as load_calibration_config, run_calibrate

            cfg = load_calibration_config(args.config, quick=args.quick)
            args.stim_size = check_stim_size("--stim-size", args.stim_size)
            t0 = time.perf_counter()
            s = run_calibrate(cfg, args.out, ship=args.ship, stim_size=args.stim_size,
                              log=_say, progress=progress)
            for ds, v in s["per_dataset"].items():
                print(f"{ds}: {v['patients']} patients, residual SD log10 median {v['residual_sd_log10_median']:.3f}, "
                      f"max {v['residual_sd_log10_max']:.3f}, failed {v['failed']}, "
                      f"not converged (max_nfev reached) {v['not_converged']}")
            print(f"calibrate: {time.perf_counter() - t0:.0f} s; wrote {args.out}/patients.csv, population.json, "
                  "report.md")
        elif args.command == "predict-stop":
            from ..inference.predict import run_predict_stop

            t0 = time.perf_counter()
            preds = run_predict_stop(args.history, args.out, horizon_days=args.horizon_days, draws=args.draws,
                                     seed=args.seed, set_name=args.set_name, threshold_percent=args.threshold_percent,
                                     log=_say, progress=progress)
            bad = [p["patient_id"] for p in preds if not p["status"].startswith("success")]
            print(f"predict-stop: {len(preds)} patient(s), {time.perf_counter() - t0:.0f} s; wrote "
                  f"{args.out}/predictions.csv, fits.csv, bands.csv, figures/")
            if bad:
                print(f"gvlmodel: fit or prediction failed for {', '.join(bad)}; see {args.out}/predictions.csv",
                      file=sys.stderr)
                return 1
        elif args.command == "reproduce":
            from .reproduce import reproduce

            reproduce(args.root, args.results, args.figures, quick=args.quick, refit=args.refit, force=args.force,
                      threads=args.threads, log=_say, progress=progress)
        elif args.command == "sensitivity":
            run_sensitivity_cli(args)
        elif args.command == "dynamics":
            from ..analysis.dynamics import run_dynamics

            t0 = time.perf_counter()
            run_dynamics(args.config, args.out, log=_say, quick=args.quick or None, progress=progress)
            print(f"dynamics: {time.perf_counter() - t0:.0f} s; wrote {args.out}")
        elif args.command == "parameters":
            from ..model.parameters import available_parameter_sets, parameter_set_info, table_markdown

            if args.sets:
                for name in available_parameter_sets():
                    info = parameter_set_info(name)
                    if name == "default":
                        what = "table values (literature and assumptions)"
                    else:
                        what = f"fitted, variant {info['variant'] or 'any'}"
                        if info["stop_uptake"] is not None:
                            what += f", stop_uptake {info['stop_uptake']:.3g}"
                    print(f"{name}: {what}")
            else:
                print(table_markdown())
        elif args.command == "export-sbml":
            from ..analysis.sbml import run_export

            run_export(args)
    except InputError as exc:
        abandon_outputs()  # a refused run leaves no lock file and no empty folder behind
        print(f"gvlmodel: error: {exc}", file=sys.stderr)
        return 2
    except SolverError as exc:
        abandon_outputs()
        print(f"gvlmodel: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # a file that cannot be read or written (disk full, a folder where a file belongs, ...)
        abandon_outputs()
        print(f"gvlmodel: error: {exc}", file=sys.stderr)
        return 2
    except BaseException:  # anything else (a bug: traceback, exit 1; Ctrl-C) leaves no lock or empty folder either
        abandon_outputs()
        raise
    return 0


def _say(message: str) -> None:
    """Progress line on standard output (a closed pipe, ``| head``, silences it: :class:`_ReaderMayLeave`)."""
    print(message, flush=True)


def console_main() -> int:
    """The ``gvlmodel`` command: :func:`main`, then the process ends without the interpreter's final
    garbage collection.

    By then every output is written and published and every file closed.  The collection at exit walks
    numba's and SciPy's many objects (~0.1 s, measured: ``benchmarks/bench_simulate.py``'s start-up
    parts); :func:`gc.freeze` moves them to the permanent generation, which it skips.  Only the command
    does this: :func:`main` called from Python (tests, notebooks) leaves the collector alone.
    """
    import gc

    for fd in (0, 1, 2):  # a descriptor closed at start (``>&-``) would be reused by the next file opened,
        try:             # and output meant for the terminal would land in a result file: point it at /dev/null
            os.fstat(fd)
        except OSError:
            os.open(os.devnull, os.O_RDWR)  # takes the lowest free descriptor: this one
    status = main()
    gc.freeze()
    return status


if __name__ == "__main__":
    sys.exit(console_main())
