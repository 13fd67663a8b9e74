"""Run sizes, limits and resources (issue 19): sizes that validate but cannot run are refused with exit 2
before anything is written, every entry point applies the same limits, and the errors found late
(read-only output, deep TOML nesting, a corrupt fit state, a closed pipe) exit cleanly."""
from __future__ import annotations

import copy
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import tomlw
from gvlmodel.core import limits
from gvlmodel.workflow.cli import main
from gvlmodel.core.errors import InputError, read_toml

ROOT = Path(__file__).resolve().parents[1]
FIT = ROOT / "experiments" / "fit_hess2005.toml"
SENS = ROOT / "experiments" / "sensitivity_hess2005.toml"
SCENARIO = ROOT / "experiments" / "hess2005.toml"


def _config(path: Path, tmp_path: Path, **changes) -> Path:
    """The committed config ``path`` with ``changes`` (table -> {key: value}) applied, as a TOML file."""
    cfg = copy.deepcopy(read_toml(path))
    for table, keys in changes.items():
        cfg.setdefault(table, {}).update(keys)
    out = tmp_path / f"changed_{path.name}"
    out.write_text(tomlw.dumps(cfg))
    return out


def _refused(capsys, argv, out: Path, *needles):
    """``gvlmodel argv`` exits 2 naming every needle, and leaves ``out`` absent."""
    assert main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err
    for n in needles:
        assert n in err, (n, err)
    assert not out.exists(), sorted(p.name for p in out.iterdir())
    return err


# --------------------------------------------------------------------------
# 1. sizes that validate but cannot run
# --------------------------------------------------------------------------
@pytest.mark.parametrize("changes, key", [
    ({"sobol": {"n": 2 ** 40}}, "[sobol] n"),
    ({"sobol": {"bootstrap": 10 ** 12}}, "[sobol] bootstrap"),
    ({"morris": {"trajectories": 10 ** 12}}, "[morris] trajectories"),
    ({"study": {"chunk_samples": 10 ** 9}}, "[study] chunk_samples"),
])
def test_sensitivity_too_big_for_memory_exits_2_naming_the_key(tmp_path, capsys, changes, key):
    out = tmp_path / "out"
    err = _refused(capsys, ["sensitivity", _config(SENS, tmp_path, **changes), "--out", out, "--no-progress"], out,
                   "GiB of memory", key)
    assert "% of the" in err


def test_sensitivity_quick_size_too_big_names_the_quick_key(tmp_path, capsys):
    out = tmp_path / "out"
    _refused(capsys, ["sensitivity", _config(SENS, tmp_path, quick={"sobol_n": 2 ** 40}), "--out", out, "--quick"],
             out, "[quick] sobol_n")


@pytest.mark.parametrize("changes, key", [
    ({"fit": {"population_size": 10 ** 12}}, "[fit] population_size"),
    ({"fit": {"comparison_population_size": 10 ** 12}}, "[fit] comparison_population_size"),
    ({"fit": {"generations": 10 ** 12}}, "[fit] generations"),
    ({"fit": {"answer_cohort_size": 10 ** 9}}, "[fit] answer_cohort_size"),
    ({"fit": {"predictive_draws": 10 ** 13}}, "[fit] predictive_draws"),
    ({"trial": {"size": 10 ** 8}}, "[trial] size"),
    ({"trial": {"comparator_size": 10 ** 8}}, "[trial] comparator_size"),
])
def test_fit_too_big_exits_2_naming_the_key_and_writes_nothing(tmp_path, capsys, changes, key):
    """On main these passed validation; ``[trial] size`` then failed inside the first ABC generation, after
    fit_state.json was written."""
    out = tmp_path / "out"
    _refused(capsys, ["fit", _config(FIT, tmp_path, **changes), "--out", out], out, key)


def test_fit_quick_size_too_big_names_the_quick_key(tmp_path, capsys):
    out = tmp_path / "out"
    _refused(capsys, ["fit", _config(FIT, tmp_path, quick={"population_size": 10 ** 12}), "--out", out, "--quick"],
             out, "[quick] population_size", "GiB of memory")


def test_example_refuses_what_memory_cannot_hold_and_a_tolerance_below_the_floor(tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    cfg = tmp_path / "ex.toml"
    cfg.write_text("days = 36500\ninterval_days = 0.04\n")
    monkeypatch.setattr(limits, "available_memory", lambda: 2.0 ** 28)  # a 256 MiB machine
    _refused(capsys, ["example", cfg, "--out", out], out, "GiB of memory", "'days'")
    monkeypatch.undo()
    cfg.write_text("rtol = 1e-20\n")
    _refused(capsys, ["example", cfg, "--out", out], out, "'rtol'", "1e-13")


def test_scenario_and_cohort_api_refuse_what_memory_cannot_hold(monkeypatch):
    from gvlmodel.clinical.cohort import CohortSpec, simulate_cohort

    monkeypatch.setattr(limits, "available_memory", lambda: 2.0 ** 20)
    with pytest.raises(InputError, match="GiB of memory.*cohort size"):
        simulate_cohort(CohortSpec(size=100_000, seed=1))


# --------------------------------------------------------------------------
# one place per limit: the entry points agree
# --------------------------------------------------------------------------
def _accepts(call) -> bool:
    try:
        call()
    except InputError:
        return False
    return True


@pytest.mark.parametrize("rtol", [1e-15, limits.RTOL_MIN, 1e-6, limits.RTOL_MAX, 0.05])
def test_every_path_applies_the_same_rtol_limits(tmp_path, rtol):
    from gvlmodel.workflow.cli import _example_config
    from gvlmodel.clinical.cohort import CohortSpec, simulate_cohort
    from gvlmodel.clinical.scenario import parse_scenario
    from gvlmodel.model.simulate import simulate
    from gvlmodel.clinical.trial import TrialDesign

    ex = tmp_path / "ex.toml"
    ex.write_text(f"rtol = {rtol!r}\n")
    paths = {
        "simulate()": lambda: simulate(t_out=[0.0, 1.0], rtol=rtol),
        "example": lambda: _example_config(str(ex)),
        "scenario": lambda: parse_scenario({"cohort": {"size": 1, "seed": 1}, "solver": {"rtol": rtol}}),
        "simulate_cohort": lambda: simulate_cohort(CohortSpec(size=1, seed=1), rtol=rtol, threads=1),
        "TrialDesign": lambda: TrialDesign(rtol=rtol),
    }
    verdicts = {k: _accepts(f) for k, f in paths.items()}
    expected = limits.RTOL_MIN <= rtol <= limits.RTOL_MAX
    assert verdicts == {k: expected for k in paths}


@pytest.mark.parametrize("rtol", [1e-15, limits.RTOL_MIN, 1e-6])
def test_commands_with_a_lower_rtol_ceiling_share_the_floor(rtol):
    """calibrate and dynamics need accuracy (ceiling 1e-3), but their floor is everyone's."""
    from gvlmodel.inference.calibrate import parse_config as parse_calibrate
    from gvlmodel.analysis.dynamics import parse_dynamics_config

    cal = read_toml(ROOT / "experiments" / "calibrate_patients.toml")
    cal["calibrate"]["rtol"] = rtol
    dyn = read_toml(ROOT / "experiments" / "dynamics.toml")
    dyn["solver"]["rtol"] = rtol
    paths = {"calibrate": lambda: parse_calibrate(cal), "dynamics": lambda: parse_dynamics_config(dyn),
             "limits": lambda: limits.rtol("rtol", rtol)}
    verdicts = {k: _accepts(f) for k, f in paths.items()}
    assert verdicts == {k: rtol >= limits.RTOL_MIN for k in paths}


@pytest.mark.parametrize("threads", [0, 1, "max", "max+1"])
def test_every_path_applies_the_same_thread_limits(threads):
    from gvlmodel.clinical.cohort import check_threads
    from gvlmodel.inference.fit import parse_config as parse_fit
    from gvlmodel.analysis.sensitivity import parse_config as parse_study

    n = {"max": limits.max_threads(), "max+1": limits.max_threads() + 1}.get(threads, threads)
    fit, study = read_toml(FIT), read_toml(SENS)
    fit["fit"]["threads"] = n
    study["study"]["threads"] = n
    paths = {"--threads": lambda: check_threads(n, "--threads"), "[fit] threads": lambda: parse_fit(fit),
             "[study] threads": lambda: parse_study(study)}
    verdicts = {k: _accepts(f) for k, f in paths.items()}
    assert verdicts == {k: 1 <= n <= limits.max_threads() for k in paths}


@pytest.mark.parametrize("size", [limits.MAX_COHORT_SIZE, limits.MAX_COHORT_SIZE + 1])
def test_every_path_applies_the_same_cohort_size_limit(size):
    """Full and quick sizes, scenario, API, fit and sensitivity: one cap (the memory check is separate)."""
    from gvlmodel.clinical.cohort import CohortSpec
    from gvlmodel.inference.fit import parse_config as parse_fit
    from gvlmodel.clinical.scenario import parse_scenario
    from gvlmodel.analysis.sensitivity import parse_config as parse_study
    from gvlmodel.clinical.trial import TrialDesign

    def fit(table, key, quick=False):
        cfg = read_toml(FIT)
        cfg[table][key] = size
        return lambda: parse_fit(cfg, quick=quick)

    def study(table, key, quick=False):
        cfg = read_toml(SENS)
        cfg.setdefault(table, {})[key] = size
        return lambda: parse_study(cfg, quick=quick)

    paths = {"CohortSpec": lambda: CohortSpec(size=size, seed=1),
             "scenario": lambda: parse_scenario({"cohort": {"size": size, "seed": 1}}),
             "TrialDesign": lambda: TrialDesign(size=size), "[trial] size": fit("trial", "size"),
             "[fit] answer_cohort_size": fit("fit", "answer_cohort_size"),
             "[quick] answer_cohort_size": fit("quick", "answer_cohort_size", quick=True),
             "[cohort] size": study("cohort", "size"), "[quick] cohort_size": study("quick", "cohort_size", True),
             "[local] cohort_size": study("local", "cohort_size")}
    verdicts = {k: _accepts(f) for k, f in paths.items()}
    assert verdicts == {k: size <= limits.MAX_COHORT_SIZE for k in paths}


# --------------------------------------------------------------------------
# 2. errors found late
# --------------------------------------------------------------------------
def _read_only_out(tmp_path: Path) -> Path:
    """An output folder that cannot be written (sysfs when root ignores permissions)."""
    if os.geteuid() == 0:
        return Path("/sys/gvlmodel_test_out")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    return ro / "out"


def test_a_read_only_out_exits_2_before_the_run(tmp_path, capsys):
    out = _read_only_out(tmp_path)
    for argv in (["example"], ["simulate", SCENARIO]):
        assert main([*map(str, argv), "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert "--out" in err and "not writable" in err and "Traceback" not in err
        assert not out.exists()


def test_export_sbml_into_a_read_only_folder_exits_2(tmp_path, capsys):
    pytest.importorskip("libsbml")
    out = _read_only_out(tmp_path) / "model.xml"
    assert main(["export-sbml", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--out" in err and "not writable" in err and "Traceback" not in err


@pytest.mark.parametrize("command", ["simulate", "fit", "sensitivity", "example", "dynamics", "calibrate"])
def test_deeply_nested_toml_exits_2_with_a_message(tmp_path, capsys, command):
    cfg = tmp_path / "deep.toml"
    cfg.write_text("a = " + "[" * 5000 + "]" * 5000 + "\n")
    out = tmp_path / "out"
    _refused(capsys, [command, cfg, "--out", out], out, "nested too deeply")


@pytest.mark.parametrize("text", ["{\"digest\": ", "[1, 2]", "\xff\xfe"])
def test_a_corrupt_fit_state_exits_2_naming_the_file_and_changes_nothing(tmp_path, capsys, text):
    out = tmp_path / "out"
    out.mkdir()
    state = out / "fit_state.json"
    state.write_bytes(text.encode("latin-1"))
    assert main(["fit", str(FIT), "--out", str(out), "--quick"]) == 2
    err = capsys.readouterr().err
    assert "fit_state.json" in err and "corrupt" in err and "remove" in err
    assert state.read_bytes() == text.encode("latin-1")
    assert sorted(p.name for p in out.iterdir()) == ["fit_state.json"]


def test_a_refused_run_leaves_no_lock_or_empty_folder(tmp_path, capsys, monkeypatch):
    """A run refused after it took the output folder (here by the cohort's own memory check) leaves nothing."""
    from gvlmodel.clinical import scenario

    monkeypatch.setattr(scenario.Scenario, "check_resources", lambda self, *a, **kw: None)
    monkeypatch.setattr(limits, "available_memory", lambda: 2.0 ** 20)
    cfg = tmp_path / "s.toml"
    cfg.write_text("[cohort]\nsize = 100000\nseed = 1\n")
    out = tmp_path / "out"
    _refused(capsys, ["simulate", cfg, "--out", out, "--no-progress"], out, "GiB of memory")


def test_output_into_a_closed_pipe_exits_cleanly():
    """`gvlmodel parameters | head -1`: no BrokenPipeError traceback, exit 0."""
    p = subprocess.Popen([sys.executable, "-m", "gvlmodel.workflow.cli", "parameters"], cwd=ROOT, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    p.stdout.close()  # the reader is gone before the table is printed
    err = p.stderr.read().decode()
    assert p.wait(timeout=120) == 0, err
    assert "Traceback" not in err and "BrokenPipe" not in err, err


def test_a_log_line_into_a_closed_pipe_does_not_stop_the_run(tmp_path, monkeypatch):
    """In process: standard output whose reader has gone (writes raise BrokenPipeError) ends the printing,
    not the command, and does not change its exit status."""
    cfg = tmp_path / "ex.toml"
    cfg.write_text("days = 60\n")
    monkeypatch.setattr(sys, "stdout", _BrokenStream())
    assert main(["example", str(cfg), "--out", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "provenance.json").is_file()
    np.testing.assert_equal(len((tmp_path / "out" / "trajectory.csv").read_text().splitlines()), 4)


class _BrokenStream(io.StringIO):
    """A standard stream whose writes fail with ``error``: its reader has gone (``| head``), or it cannot
    take more (``> /dev/full``)."""

    def __init__(self, error=None):
        super().__init__()
        self.error = error if error is not None else BrokenPipeError(32, "Broken pipe")

    def write(self, text):
        raise self.error

    def flush(self):
        raise self.error


@pytest.mark.parametrize("error", [BrokenPipeError(32, "Broken pipe"), OSError(28, "No space left on device")],
                         ids=["closed_pipe", "full_stream"])
def test_a_closed_or_unwritable_stream_keeps_the_exit_status(tmp_path, monkeypatch, error):
    """`gvlmodel simulate ... | head -1` or `> /dev/full`: a run whose solves failed still exits 1 (it
    exited 0 with a closed pipe, 2 with a full stream), and a refused run exits 2 with stderr gone too (it
    exited 1): the messages are lost, not the status."""
    scenario = tmp_path / "fail.toml"
    scenario.write_text("[cohort]\nsize = 3\nseed = 1\n[treatment]\nfollow_up_days = 360\n[solver]\nmax_steps = 3\n")
    monkeypatch.setattr(sys, "stdout", _BrokenStream(error))
    assert main(["simulate", str(scenario), "--out", str(tmp_path / "out"), "--no-progress"]) == 1
    assert (tmp_path / "out" / "provenance.json").is_file()  # the failures are reported in the folder
    monkeypatch.setattr(sys, "stderr", _BrokenStream(error))
    assert main(["simulate", str(tmp_path / "missing.toml"), "--out", str(tmp_path / "out2"), "--no-progress"]) == 2
    assert not (tmp_path / "out2").exists()


# --------------------------------------------------------------------------
# saved state that cannot be resumed, files that cannot be written, example schedules
# --------------------------------------------------------------------------
@pytest.mark.parametrize("case", ["state_is_a_folder", "corrupt_database", "empty_database", "database_without_state",
                                  "stage_is_a_folder"])
def test_a_fit_folder_that_cannot_be_resumed_exits_2_and_changes_nothing(tmp_path, capsys, case):
    """A folder in place of fit_state.json, or an ABC database that is not SQLite, is refused before the
    lock with the recovery advice (both gave a traceback, exit 1 and a stale lock); so is a folder in place
    of a stage's result file."""
    out = tmp_path / "out"
    out.mkdir()
    if case == "state_is_a_folder":
        (out / "fit_state.json").mkdir()
        needle = "fit_state.json"
    elif case in ("corrupt_database", "empty_database"):
        (out / "fit_state.json").write_text('{"digest": "x"}')
        (out / "abc_H1.db").write_bytes(bytes(range(256)) * 4 if case == "corrupt_database" else b"")
        needle = "abc_H1.db"
    elif case == "database_without_state":
        (out / "abc_H1.db").write_bytes(b"")
        needle = "no fit_state.json"
    else:  # it was found only when the stage's result was written, after the stage ran (exit 2, bare message)
        (out / "stages" / "screen.json").mkdir(parents=True)
        needle = "screen.json"
    before = sorted(p.name for p in out.iterdir())
    assert main(["fit", str(FIT), "--out", str(out), "--quick", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert needle in err and ("corrupt" in err or "cannot be resumed" in err) and "emove" in err, err
    assert sorted(p.name for p in out.iterdir()) == before


@pytest.mark.parametrize("case", ["truncated_sample", "chunk_is_a_folder", "method_folder_is_a_file"])
def test_a_corrupt_saved_sensitivity_sample_exits_2_and_changes_nothing(tmp_path, capsys, case):
    """A truncated samples/sobol.npy of a study being resumed is refused before anything in the folder is
    changed (it gave a traceback, exit 1, a stale lock and a removed provenance.json); so is a folder in
    place of a saved chunk of evaluations, or a file in place of a method's folder of chunks (each found only
    when a chunk, evaluated again, could not be saved: exit 2 with the bare system message)."""
    from gvlmodel.analysis.sensitivity import STUDY_STATE, load_config

    out = tmp_path / "out"
    (out / "samples").mkdir(parents=True)
    cfg = load_config(SENS, quick=True)
    (out / STUDY_STATE).write_text(json.dumps({"model_digest": cfg.model_digest()}))
    if case == "truncated_sample":
        (out / "samples" / "sobol.npy").write_bytes(b"\x93NUMPY" + b"\x00" * 94)
        needle, word = "sobol.npy", "corrupt"
    elif case == "chunk_is_a_folder":
        (out / "evaluations" / "sobol" / "chunk_00000.npz").mkdir(parents=True)
        needle, word = "chunk_00000.npz", "cannot be resumed"
    else:
        (out / "evaluations").mkdir()
        (out / "evaluations" / "sobol").write_text("not a folder")
        needle, word = "evaluations/sobol", "cannot be resumed"
    (out / "provenance.json").write_text("{}")
    before = sorted(str(p.relative_to(out)) for p in out.rglob("*"))
    assert main(["sensitivity", str(SENS), "--quick", "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert needle in err and word in err and "remove" in err, err
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == before


def test_a_file_that_cannot_be_written_exits_2_and_leaves_nothing(tmp_path, capsys, monkeypatch):
    """A full disk (or any OSError of a write) is exit 2 with the system's message, the lock released and
    the folder the run created removed (it was a traceback, exit 1 and a folder holding the stale lock)."""
    from gvlmodel.core import provenance

    def full(path, data):
        raise OSError(28, "No space left on device", str(path))

    monkeypatch.setattr(provenance, "atomic_write_bytes", full)
    cfg = tmp_path / "ex.toml"
    cfg.write_text("days = 60\n")
    out = tmp_path / "out"
    _refused(capsys, ["example", cfg, "--out", out], out, "No space left on device")


@pytest.mark.parametrize("value", ["5", "-1", "0.5", "true", "nan", '"daily"', "[1, 2]", "[[0, 400], [0, 600]]",
                                   "[[0, -400]]", "[]"])
def test_an_example_schedule_must_be_day_dose_pairs(tmp_path, capsys, value):
    cfg = tmp_path / "ex.toml"
    cfg.write_text(f"schedule = {value}\n")
    out = tmp_path / "out"
    _refused(capsys, ["example", cfg, "--out", out], out, "config key 'schedule'")


@pytest.mark.parametrize("command", ["simulate", "example"])
def test_a_write_failing_after_some_files_were_published_leaves_no_folder(tmp_path, capsys, monkeypatch, command):
    """The disk fills between files: what the run had published in the folder it created goes too (the
    tables or trajectory stayed, without provenance.json)."""
    from gvlmodel.core import provenance

    real = provenance.atomic_write_bytes

    def full_at_summary(path, data):
        if Path(path).name == "summary.json":
            raise OSError(28, "No space left on device", str(path))
        return real(path, data)

    monkeypatch.setattr(provenance, "atomic_write_bytes", full_at_summary)
    cfg = tmp_path / "c.toml"
    cfg.write_text("[cohort]\nsize = 3\nseed = 1\n[treatment]\nfollow_up_days = 60\n" if command == "simulate"
                   else "days = 60\n")
    out = tmp_path / "out"
    _refused(capsys, [command, cfg, "--out", out, *(["--no-progress"] if command == "simulate" else [])], out,
             "No space left on device")
    # into a folder that existed before, the published files stay, without provenance.json (incomplete)
    out.mkdir()
    assert main([command, str(cfg), "--out", str(out)]) == 2
    assert not (out / "provenance.json").exists() and not list(out.glob(".*"))


def test_a_study_state_that_is_a_folder_is_refused_before_anything_changes(tmp_path, capsys):
    out = tmp_path / "out"
    (out / "study_state.json").mkdir(parents=True)
    (out / "provenance.json").write_text("{}")
    assert main(["sensitivity", str(SENS), "--quick", "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "study_state.json" in err and "remove" in err, err
    assert sorted(p.name for p in out.iterdir()) == ["provenance.json", "study_state.json"]


def test_parameter_sets_are_listed(capsys):
    """`gvlmodel parameters --sets` (a set without a stop uptake, `patients`, raised a TypeError)."""
    from gvlmodel.model.parameters import available_parameter_sets

    assert main(["parameters", "--sets"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == list(available_parameter_sets())
