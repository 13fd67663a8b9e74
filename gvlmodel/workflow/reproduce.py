"""``gvlmodel reproduce``: every experiment in ``experiments/``, every figure, and the numbers file.

Steps, in order (each prints its progress and time):

1. every experiment config in ``experiments/`` by kind (:func:`experiment_kind`):
   the patient-level calibration, the fit (from the shipped fitted sets, or a full ABC refit with
   ``--refit``), the hypothesis comparison (held-out score and decisiveness from the shipped sets;
   with ``--refit`` also its robustness refits), stop predictions for the Hähnel 2020 patients,
   the scenarios (``gvlmodel simulate``), the example patient, the sensitivity
   studies and the dynamics analyses; results go to ``RESULTS/<config stem>/``;
2. every figure script ``figures/fig*.py`` (``draw(results, out)``), PDF + PNG
   into ``figures/output/``;
3. the numbers quoted in a manuscript: ``RESULTS/numbers.json`` and the LaTeX
   macros ``RESULTS/numbers.tex`` (:mod:`gvlmodel.analysis.numbers`).

A step is skipped when its inputs are unchanged: its digest (kind, config file,
quick/refit switches, package version, the package's source files and shipped
sets, and for figures and numbers the digests of every experiment) is stored in
``<output>/.reproduce.json`` after the step succeeds and compared next time.
``--quick`` uses each config's ``[quick]`` sizes (``RESULTS`` defaults to
``results/quick`` then, so quick and full results never mix).
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import time
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import InputError, read_toml
from ..core.experiments import experiment_kind
from ..core.provenance import atomic_write_json, package_digest, provenance

KIND_ORDER = {"calibrate": -1, "fit": 0, "compare": 0.5, "simulate": 1, "example": 2, "predict-stop": 2.5, "sensitivity": 3,
              "dynamics": 4}


@dataclass
class Step:
    name: str
    kind: str
    config: Path | None
    out: Path

    @property
    def label(self) -> str:
        return f"{self.kind} {self.name}"


def plan(root: Path, results: Path, figures_out: Path) -> tuple[list[Step], list[Path]]:
    """The experiment steps (ordered by kind, then name) and the figure scripts."""
    exp = root / "experiments"
    if not exp.is_dir():
        raise InputError(f"--root {root}: no experiments/ folder here; run from the repository root or pass --root")
    steps = []
    for path in sorted(exp.glob("*.toml")):
        kind = experiment_kind(read_toml(path, "experiment"), str(path))
        steps.append(Step(path.stem, kind, path, results / path.stem))
    steps.sort(key=lambda s: (KIND_ORDER[s.kind], s.name))
    figs = sorted((root / "figures").glob("fig*.py"))
    return steps, figs


def _digest(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _provenance_digest(out: Path) -> str | None:
    """Digest of ``out/provenance.json`` (``None`` without one): which run's outputs the folder holds."""
    try:
        return hashlib.sha256((out / "provenance.json").read_bytes()).hexdigest()[:16]
    except OSError:
        return None


def _done(out: Path, digest: str) -> bool:
    """Whether step folder ``out`` holds the outputs this step wrote with inputs ``digest``: its stamp matches
    and its provenance is still the one the step wrote (another command writing into the folder since, or a
    run interrupted there, replaced or removed it)."""
    f = out / ".reproduce.json"
    try:
        stamp = json.loads(f.read_text())
    except (OSError, ValueError, RecursionError):  # an unreadable stamp: the step runs again
        return False
    written = _provenance_digest(out)
    return isinstance(stamp, dict) and stamp.get("digest") == digest and written is not None \
        and stamp.get("provenance") == written


def run_step(step: Step, *, quick: bool, refit: bool, threads: int | None, log, progress: bool = False) -> None:
    """Run one experiment into ``step.out`` (``progress``: the step's own progress bars)."""
    if step.kind == "calibrate":
        from ..inference.calibrate import load_config as load_calibration, run_calibrate

        # the patient-level calibration is cheap (about a minute): always run; --refit also re-ships its set
        run_calibrate(load_calibration(step.config, quick=quick), step.out, ship=refit and not quick,
                      stim_size=200 if quick else 2000, log=log, progress=progress)
    elif step.kind == "predict-stop":
        from ..inference.predict import run_predict_experiment

        run_predict_experiment(step.config, step.out, quick=quick, log=log, progress=progress)
    elif step.kind == "fit":
        from ..inference.fit import load_config, run_fit, run_from_shipped

        cfg = load_config(step.config, quick=quick)
        if refit:
            run_fit(cfg, step.out, ship=not quick, log=log, progress=progress)
        else:
            state = step.out / "fit_state.json"
            if state.is_file():
                raise InputError(f"{step.out}: holds an ABC fit; `gvlmodel reproduce` without --refit writes the "
                                 "report from the shipped sets there. Move the fit elsewhere or use --refit")
            run_from_shipped(cfg, step.out, log=log, progress=progress)
    elif step.kind == "compare":
        from ..inference.compare import load_config, run_compare

        # the robustness refits take about half an hour: only with --refit (and not in quick mode)
        run_compare(load_config(step.config, quick=quick), step.out, robustness=refit and not quick, log=log,
                    progress=progress)
    elif step.kind == "simulate":
        from ..clinical.scenario import load_scenario, run_and_write

        scenario = load_scenario(step.config)
        scenario.check_resources(out=step.out)
        run_and_write(scenario, step.out, threads=threads, progress=None if progress else False)
    elif step.kind == "example":
        from .cli import run_example

        _, res = run_example(str(step.config), step.out)
        if not res.success:  # the step is not stamped done, so a re-run tries again
            from ..core.errors import SolverError

            raise SolverError(f"example {step.config}: the solve failed (status {res.status}): {res.message}; "
                              f"see {step.out}/summary.json")
    elif step.kind == "sensitivity":
        from ..analysis.sensitivity import discard_saved_study, load_config, run_study, saved_study_matches

        from ..core.provenance import lock_outputs

        cfg = load_config(step.config, quick=quick)
        lock_outputs(step.out)  # before anything there is discarded: another run may be writing to it
        if saved_study_matches(step.out, cfg.model_digest()) is False:
            # this step's own folder, made by another config, parameter set or package version (a refit, an
            # update): start afresh instead of resuming evaluations of other inputs, which the study refuses
            log(f"{step.out}: the saved study was made with other inputs; starting it afresh")
            discard_saved_study(step.out)
        run_study(cfg, step.out, progress=progress, log=log)
    elif step.kind == "dynamics":
        from ..analysis.dynamics import run_dynamics

        run_dynamics(step.config, step.out, log=log, quick=quick or None, progress=progress)
    else:  # pragma: no cover - plan() only makes the kinds above
        raise InputError(f"unknown experiment kind {step.kind!r}")


def run_figure(script: Path, results: Path, out: Path) -> list[Path]:
    spec = importlib.util.spec_from_file_location(f"gvlmodel_figure_{script.stem}", script)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    if not hasattr(mod, "draw"):
        raise InputError(f"{script}: a figure script must define draw(results, out)")
    return mod.draw(Path(results), Path(out))


def reproduce(root: Path = Path("."), results: Path | None = None, figures_out: Path | None = None, *,
              quick: bool = False, refit: bool = False, force: bool = False, threads: int | None = None,
              log=print, progress: bool = False) -> dict:
    """Run every step whose inputs changed; returns ``{step: {"status", "wall_s"}}``.  ``progress``: each
    step shows its progress bars (the command line: on a terminal unless ``--no-progress``)."""
    from ..clinical.cohort import check_threads

    if threads is not None:
        check_threads(threads)  # before the first step writes anything
    root = Path(root)
    results = Path(results) if results is not None else root / ("results/quick" if quick else "results")
    figures_out = Path(figures_out) if figures_out is not None else root / "figures" / (
        "output/quick" if quick else "output")
    steps, figs = plan(root, results, figures_out)
    from ..core.provenance import lock_outputs, release_outputs

    lock_outputs(results, "--results")  # one reproduce per results folder (each step also locks its own)
    lock_outputs(figures_out, "--figures")  # and per figure folder
    pkg = package_digest()
    report, digests = {}, {}
    n_total = len(steps) + len(figs) + 1
    t_all = time.perf_counter()
    for k, step in enumerate(steps, 1):
        digest = _digest(step.kind, step.config.read_text(), quick, refit, pkg)
        digests[step.name] = digest
        head = f"[{k}/{n_total}] {step.label}"
        if not force and _done(step.out, digest):
            log(f"{head}: unchanged, skipped")
            report[step.name] = {"status": "skipped", "wall_s": 0.0}
            continue
        log(f"{head} -> {step.out}")
        t0 = time.perf_counter()
        run_step(step, quick=quick, refit=refit, threads=threads, log=lambda m: log(f"    {m}"), progress=progress)
        w = time.perf_counter() - t0
        atomic_write_json(step.out / ".reproduce.json", {"digest": digest, "wall_s": w, "step": step.label,
                                                          "provenance": _provenance_digest(step.out)})
        report[step.name] = {"status": "ran", "wall_s": w}
        log(f"{head}: done in {w:.1f} s")
    for j, script in enumerate(figs, len(steps) + 1):
        digest = _digest("figure", script.read_text(), digests, pkg)
        stamp = figures_out / f".{script.stem}.reproduce.json"
        head = f"[{j}/{n_total}] figure {script.stem}"
        try:
            old = json.loads(stamp.read_text())
            same = isinstance(old, dict) and old.get("digest") == digest
        except (OSError, ValueError, RecursionError):
            same = False
        if not force and same:
            log(f"{head}: unchanged, skipped")
            report[script.stem] = {"status": "skipped", "wall_s": 0.0}
            continue
        t0 = time.perf_counter()
        files = run_figure(script, results, figures_out)
        w = time.perf_counter() - t0
        atomic_write_json(stamp, {"digest": digest, "files": [str(f) for f in files],
                                  "provenance": provenance({"figure_script": str(script), "results": str(results)},
                                                           seed=None)})
        report[script.stem] = {"status": "ran", "wall_s": w}
        log(f"{head}: {', '.join(Path(f).name for f in files)} in {w:.1f} s")
    from ..analysis.numbers import write_numbers

    t0 = time.perf_counter()
    files = write_numbers(results)
    log(f"[{n_total}/{n_total}] numbers: {', '.join(str(f) for f in files)} in {time.perf_counter() - t0:.1f} s")
    report["numbers"] = {"status": "ran", "wall_s": time.perf_counter() - t0}
    total = time.perf_counter() - t_all
    # the folder's record: which steps ran, from which commit and version (each step's folder has its own)
    atomic_write_json(results / "reproduce_run.json", {
        "steps": report, "total_wall_s": total, "quick": quick, "refit": refit,
        "provenance": provenance({"command": "reproduce", "quick": quick, "refit": refit, "force": force,
                                  "step_digests": digests}, seed=None)})
    release_outputs(figures_out)
    release_outputs(results)
    log(f"reproduce: {total:.0f} s in all; results in {results}, figures in {figures_out}")
    return report
