"""Inputs an adversarial audit of the commands (issue 19, third audit) found mishandled: each is refused with
exit 2 naming the key or option before anything is written, or handled without harm (points 1-3, 6)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import tomlw
from gvlmodel.core import limits
from gvlmodel.core.errors import InputError, read_toml
from gvlmodel.core.provenance import LOCK_NAME, abandon_outputs, lock_outputs
from gvlmodel.workflow.cli import main

ROOT = Path(__file__).resolve().parents[1]
SENS = ROOT / "experiments" / "sensitivity_hess2005.toml"
FIT = ROOT / "experiments" / "fit_hess2005.toml"
CALIBRATE = ROOT / "experiments" / "calibrate_patients.toml"


def _changed(path: Path, tmp_path: Path, **changes) -> Path:
    cfg = read_toml(path)
    for table, keys in changes.items():
        cfg.setdefault(table, {}).update(keys)
    out = tmp_path / f"changed_{path.name}"
    out.write_text(tomlw.dumps(cfg))
    return out


def _fit_config_fitting_also(tmp_path: Path, quantity: str) -> tuple[Path, str]:
    """The committed fit config with ``quantity`` added to its first variant's fitted list: ``(path, variant)``."""
    cfg = read_toml(FIT)
    v = next(iter(cfg["fitted"]))
    cfg["fitted"][v] = cfg["fitted"][v] + [quantity]
    path = tmp_path / "fit.toml"
    path.write_text(tomlw.dumps(cfg))
    return path, v


def _exits_2(capsys, argv, *needles) -> str:
    assert main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err
    for n in needles:
        assert n in err, (n, err)
    return err


# --------------------------------------------------------------------------
# files that are not what they seem: links, devices, FIFOs
# --------------------------------------------------------------------------
def test_a_lock_file_that_is_a_link_is_refused_and_its_target_left_alone(tmp_path, capsys):
    """The lock was opened through the link and truncated: the file it pointed to lost its contents."""
    precious = tmp_path / "precious.txt"
    precious.write_text("precious\n")
    out = tmp_path / "out"
    out.mkdir()
    (out / LOCK_NAME).symlink_to(precious)
    _exits_2(capsys, ["example", "--out", out], LOCK_NAME, "not a gvlmodel lock file", "remove it")
    assert precious.read_text() == "precious\n"
    assert (out / LOCK_NAME).is_symlink() and sorted(p.name for p in out.iterdir()) == [LOCK_NAME]


def test_a_lock_file_that_is_a_folder_is_refused_naming_it(tmp_path):
    out = tmp_path / "out"
    (out / LOCK_NAME).mkdir(parents=True)
    with pytest.raises(InputError, match="not a gvlmodel lock file"):
        lock_outputs(out)


@pytest.mark.parametrize("kind", ["fifo", "link"])
def test_export_sbml_refuses_an_out_that_is_not_a_regular_file(tmp_path, capsys, kind):
    """A FIFO, a device (``/dev/full``) or a link was replaced by a regular file, exit 0."""
    target = tmp_path / "target.xml"
    target.write_text("keep\n")
    out = tmp_path / "model.xml"
    if kind == "fifo":
        os.mkfifo(out)
    else:
        out.symlink_to(target)
    _exits_2(capsys, ["export-sbml", "--out", out], "--out", "not a regular file")
    assert (out.is_symlink() if kind == "link" else not out.is_file() and out.exists())
    assert target.read_text() == "keep\n"


def test_an_out_that_is_a_link_to_nothing_is_refused_naming_the_option(tmp_path, capsys):
    out = tmp_path / "dangling"
    out.symlink_to(tmp_path / "nowhere")
    _exits_2(capsys, ["example", "--out", out], "--out", "link to nothing")
    assert not (tmp_path / "nowhere").exists()


def test_a_refused_run_removes_the_parent_folders_it_created(tmp_path):
    """Only the last folder of ``--out a/b/c`` was removed; ``a/b`` stayed behind."""
    lock_outputs(tmp_path / "a" / "b" / "c")
    abandon_outputs()
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_finished_run_keeps_the_parent_folders_it_created(tmp_path):
    from gvlmodel.core.provenance import finish_outputs

    out = tmp_path / "a" / "b"
    lock_outputs(out)
    finish_outputs(out, {"ok": True})
    abandon_outputs()  # (a later refusal in the same process)
    assert (out / "provenance.json").is_file()


def test_a_config_that_never_ends_is_refused(capsys, tmp_path):
    """``/dev/zero`` as a config was read until memory ran out."""
    _exits_2(capsys, ["simulate", "/dev/zero", "--out", tmp_path / "out"], "/dev/zero", "MiB")
    assert not (tmp_path / "out").exists()


def test_a_standard_stream_closed_at_start_keeps_the_exit_status(tmp_path):
    """``gvlmodel parameters >&-`` exited 120 (Python gives ``sys.stdout = None``); a refusal with stderr
    closed exited 120 instead of 2."""
    cmd = [sys.executable, "-c", "import sys; from gvlmodel.workflow.cli import console_main; sys.exit(console_main())"]

    def closed(fd):
        return lambda: os.close(fd)

    assert subprocess.run(cmd + ["parameters"], preexec_fn=closed(1), stderr=subprocess.PIPE).returncode == 0
    r = subprocess.run(cmd + ["simulate", str(tmp_path / "missing.toml"), "--out", str(tmp_path / "o")],
                       preexec_fn=closed(2), stdout=subprocess.PIPE)
    assert r.returncode == 2 and not (tmp_path / "o").exists()


# --------------------------------------------------------------------------
# numbers beyond float range, weights whose sum overflows
# --------------------------------------------------------------------------
def test_an_integer_beyond_float_range_is_a_number_error_naming_the_key(tmp_path, capsys):
    """``days = 10**400`` raised OverflowError (exit 1) in every command and in the API."""
    cfg = tmp_path / "big.toml"
    cfg.write_text(f"days = {10 ** 400}\n")
    _exits_2(capsys, ["example", cfg, "--out", tmp_path / "out"], "'days'", "finite number", "401 digits")
    assert not (tmp_path / "out").exists()
    from gvlmodel import simulate

    with pytest.raises(InputError, match="t_out"):
        simulate(t_out=[0.0, 10 ** 400])
    with pytest.raises(InputError, match="schedule"):
        simulate(t_out=[0.0, 10.0], schedule=[(0, 10 ** 400)])


def test_a_huge_step_budget_is_refused_before_the_lock(tmp_path, capsys):
    """``[solver] max_steps = 10**400`` failed after the lock was taken (exit 1, lock and folders left)."""
    cfg = tmp_path / "s.toml"
    cfg.write_text(f"[cohort]\nsize = 8\nseed = 1\n[solver]\nmax_steps = {10 ** 400}\n")
    _exits_2(capsys, ["simulate", cfg, "--out", tmp_path / "o" / "deep"], "solver.max_steps", str(limits.MAX_STEPS))
    assert not (tmp_path / "o").exists()
    from gvlmodel import simulate

    with pytest.raises(InputError, match="max_steps"):
        simulate(t_out=[0.0, 10.0], max_steps=10 ** 400)


def test_relapse_weights_whose_sum_overflows_are_refused(tmp_path, capsys):
    """``relapse_mix = {molecular = 1e308, cytogenetic = 1e308}`` passed validation and crashed after the lock."""
    cfg = tmp_path / "mix.toml"
    cfg.write_text("[cohort]\nsize = 10\nseed = 1\nrelapse_mix = { molecular = 1e308, cytogenetic = 1e308 }\n")
    _exits_2(capsys, ["simulate", cfg, "--out", tmp_path / "o" / "deep"], "cohort.relapse_mix.molecular")
    assert not (tmp_path / "o").exists()


def test_tolerances_and_thresholds_have_the_same_limits_in_the_api(tmp_path):
    from gvlmodel import simulate

    with pytest.raises(InputError, match="atol"):
        simulate(t_out=[0.0, 10.0], atol=5e-324)  # every step was rejected (a zero state's weight overflows)
    with pytest.raises(InputError, match="extinction_threshold"):
        simulate(t_out=[0.0, 10.0], extinction_threshold=1e300)


# --------------------------------------------------------------------------
# config values that passed validation and failed after files were written
# --------------------------------------------------------------------------
def test_the_api_refuses_output_times_it_cannot_hold(monkeypatch):
    """36.5 million output times (3.8 GB of results) were accepted without a memory check (``example`` has one)."""
    from gvlmodel import simulate

    monkeypatch.setattr(limits, "available_memory", lambda: 2.0 ** 29)
    with pytest.raises(InputError, match="number of t_out times"):
        simulate(t_out=np.arange(5_000_000, dtype=float))  # ~0.8 GiB of results


def test_a_sensitivity_visit_interval_too_long_for_min_im_is_refused_before_any_write(tmp_path, capsys):
    """It was refused only when the min_im courses were evaluated, after the study's state and samples were
    written (and the corrected config was then refused as 'a different study')."""
    cfg = _changed(SENS, tmp_path, treatment={"visit_interval_days": 1095})
    out = tmp_path / "out"
    _exits_2(capsys, ["sensitivity", cfg, "--quick", "--out", out, "--no-progress"],
             "[treatment] visit_interval_days", "min_im")
    assert not out.exists()


def test_the_sensitivity_memory_refusal_names_the_local_cohort_when_it_is_the_larger(tmp_path, capsys):
    cfg = _changed(SENS, tmp_path, local={"cohort_size": 10_000_000})
    err = _exits_2(capsys, ["sensitivity", cfg, "--out", tmp_path / "out", "--no-progress"], "GiB of memory")
    assert "[local] cohort_size" in err and "[cohort] size" not in err, err


def test_a_phase_plane_range_that_overflows_the_states_is_refused_naming_the_key(tmp_path, capsys):
    """It was refused mid-run as 'y0: states must be finite', and a finished folder lost its provenance."""
    cfg = tmp_path / "d.toml"
    cfg.write_text('[run]\nsections = ["phase_plane"]\nsettings = ["transplanted"]\n[phase_plane]\n'
                   "horizon_days = 100\nlsc_range = [1, 1e300]\n")
    _exits_2(capsys, ["dynamics", cfg, "--quick", "--out", tmp_path / "o" / "sub"], "[phase_plane] lsc_range")
    assert not (tmp_path / "o").exists()
    cfg.write_text('[run]\nsections = ["phase_plane"]\nsettings = ["transplanted"]\n[phase_plane]\n'
                   "horizon_days = 100\ntrajectory_starts = [[1e300, 1e300]]\n")
    _exits_2(capsys, ["dynamics", cfg, "--quick", "--out", tmp_path / "o"], "[phase_plane] trajectory_starts")


def test_a_fit_name_too_long_for_a_file_name_is_refused_naming_the_key(tmp_path, capsys):
    """The whole fit ran, then failed writing ``parameter_sets/.<name>...`` (File name too long)."""
    out = tmp_path / "out"
    _exits_2(capsys, ["fit", _changed(FIT, tmp_path, fit={"name": "a" * 300}), "--quick", "--out", out,
                      "--no-progress"], "[fit] name", "at most 64 characters")
    assert not out.exists()


def test_a_stim_size_that_cannot_run_is_refused_before_the_calibration(tmp_path, capsys):
    """It was refused after the calibration ran, as 'cohort.size', and the folder's provenance was removed."""
    out = tmp_path / "out"
    _exits_2(capsys, ["calibrate", CALIBRATE, "--quick", "--stim-size", 100_000_000, "--out", out, "--no-progress"],
             "--stim-size")
    assert not out.exists()


# --------------------------------------------------------------------------
# saved state that is damaged but readable
# --------------------------------------------------------------------------
def test_a_deeply_nested_study_state_is_another_studys_not_a_traceback(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "study_state.json").write_text("[" * 200_000)
    _exits_2(capsys, ["sensitivity", SENS, "--quick", "--out", out, "--no-progress"], "different study")
    assert sorted(p.name for p in out.iterdir()) == ["study_state.json"]


def test_a_saved_chunk_of_the_wrong_shape_or_type_is_evaluated_again(tmp_path):
    """A chunk whose ``Y`` lost a column (or holds text) was returned as it was: exit 1 after provenance.json
    had been removed."""
    from gvlmodel.analysis.sensitivity import _load_chunk, _save_npz

    X = np.arange(6.0).reshape(3, 2)
    good, short, text = tmp_path / "good.npz", tmp_path / "short.npz", tmp_path / "text.npz"
    _save_npz(good, X=X, Y=np.ones((3, 4)))
    _save_npz(short, X=X, Y=np.ones((3, 1)))
    _save_npz(text, X=X, Y=np.array([["a"] * 4] * 3))
    assert _load_chunk(good, X, 4) is not None
    assert _load_chunk(short, X, 4) is None
    assert _load_chunk(text, X, 4) is None


def test_a_saved_sample_of_text_is_refused_as_corrupt(tmp_path, capsys):
    from gvlmodel.analysis.sensitivity import STUDY_STATE, load_config

    out = tmp_path / "out"
    (out / "samples").mkdir(parents=True)
    cfg = load_config(SENS, quick=True)
    (out / STUDY_STATE).write_text(json.dumps({"model_digest": cfg.model_digest()}))
    np.save(out / "samples" / "sobol.npy", np.array([["x"] * cfg.problem["num_vars"]] * 4))
    _exits_2(capsys, ["sensitivity", SENS, "--quick", "--out", out, "--no-progress"], "sobol.npy", "corrupt")


@pytest.mark.parametrize("content", ['{"result": 5}', "[" * 200_000, '{"result": {"a": 1}, "check": "0"}'])
def test_an_edited_or_damaged_fit_stage_is_recomputed(tmp_path, content):
    """``{"result": 5}`` in place of a stage's result (or nesting too deep to read) gave a TypeError or
    RecursionError after provenance.json had been removed."""
    from gvlmodel.inference.fit import _stage

    calls = []

    def compute():
        calls.append(1)
        return {"a": [1.0, 2.5]}

    first = _stage(tmp_path, "screen", compute)
    assert _stage(tmp_path, "screen", compute)["result"] == first["result"] and len(calls) == 1  # resumed
    (tmp_path / "stages" / "screen.json").write_text(content)
    assert _stage(tmp_path, "screen", compute)["result"] == {"a": [1.0, 2.5]} and len(calls) == 2


@pytest.mark.parametrize("content", ["[1, 2]", "[" * 200_000])
def test_a_damaged_reproduce_stamp_reruns_the_step(tmp_path, content):
    """A stamp that is JSON but not an object (or nested too deeply) was an AttributeError/RecursionError."""
    from gvlmodel.workflow.reproduce import _done

    (tmp_path / ".reproduce.json").write_text(content)
    assert _done(tmp_path, "abc") is False


# --------------------------------------------------------------------------
# second audit: the API, calibrate, predict-stop, reproduce
# --------------------------------------------------------------------------
COMPARE = ROOT / "experiments" / "compare_hess2005.toml"
HISTORY = ("patient_id,day,bcr_abl_percent,below_detection,stop_day,transplant\n"
           "{pid},0,10,0,400,false\n{pid},100,1,0,400,false\n{pid},200,0.1,0,400,false\n{pid},400,0.01,0,400,false\n")


def test_a_calibrate_name_that_is_not_an_identifier_is_refused(tmp_path, capsys):
    """``--ship`` wrote ``parameter_sets/<name>.toml`` from the unchecked name: ``../../x`` escaped the folder and a
    quote made the shipped set invalid TOML (``gvlmodel parameters --sets`` then failed)."""
    out = tmp_path / "out"
    _exits_2(capsys, ["calibrate", _changed(CALIBRATE, tmp_path, calibrate={"name": '../../evil"set'}), "--quick",
                      "--stim-size", 0, "--ship", "--out", out, "--no-progress"], "[calibrate] name", "identifier")
    assert not out.exists()


def test_sizes_of_stim_trials_are_checked_when_the_config_is_read(tmp_path, capsys):
    """``[calibrate] stim1_size`` and compare's ``[holdout] stim_size`` of 10^7 failed after the fits had run."""
    from gvlmodel.inference import calibrate, compare

    with pytest.raises(InputError, match=r"\[calibrate\] stim1_size"):
        calibrate.load_config(_changed(CALIBRATE, tmp_path, calibrate={"stim1_size": 10_000_000}))
    with pytest.raises(InputError, match=r"\[holdout\] stim_size"):
        compare.load_config(_changed(COMPARE, tmp_path, holdout={"stim_size": 10_000_000}, compare={"fit": str(FIT)}))


def test_an_unexpected_error_leaves_no_lock_and_no_folder(tmp_path, monkeypatch):
    """Only InputError, SolverError and OSError released the lock and removed the folder a run created."""
    from gvlmodel.clinical import scenario

    def broken(self, columns):
        raise RuntimeError("a bug")

    monkeypatch.setattr(scenario.TableWriter, "write", broken)
    cfg = tmp_path / "s.toml"
    cfg.write_text("[cohort]\nsize = 4\nseed = 1\n[treatment]\nfollow_up_days = 60\n")
    with pytest.raises(RuntimeError, match="a bug"):
        main(["simulate", str(cfg), "--out", str(tmp_path / "o" / "deep"), "--no-progress"])
    assert not (tmp_path / "o").exists()


def test_a_spread_on_a_parameter_whose_median_is_zero_is_refused(tmp_path, capsys):
    """Every patient's draw was NaN (truncated bounds) and every solve failed: exit 1, NaN summaries."""
    cfg = tmp_path / "s.toml"
    cfg.write_text('[cohort]\nsize = 8\nseed = 1\n[parameters]\nset = "patients"\n[population]\nz_dormant_kill = 0.5\n')
    _exits_2(capsys, ["simulate", cfg, "--out", tmp_path / "o"], "[population]", "z_dormant_kill", "positive median")
    assert not (tmp_path / "o").exists()
    from gvlmodel.clinical.cohort import CohortSpec, Population, simulate_cohort

    with pytest.raises(InputError, match="z_dormant_kill"):
        simulate_cohort(CohortSpec(size=4, seed=1), population=Population(sd_log={"z_dormant_kill": 0.5}))


@pytest.mark.parametrize("params, needle", [({"d1": 0.0}, "'d1': must be positive"),
                                            ({"dormancy_out": 0}, "'dormancy_out': must be positive"),
                                            ({"d0": 10 ** 400}, "'d0': must be finite"),
                                            ({"resistant_fraction": 1.0}, "'resistant_fraction': must be below 1")])
def test_parameter_values_that_break_the_model_are_refused_by_the_api(params, needle):
    """They gave ZeroDivisionError, OverflowError or NaN start states (the CLI's table bounds refused them)."""
    from gvlmodel import initial_state, simulate

    with pytest.raises(InputError, match=needle):
        simulate(params, t_out=[0.0, 10.0])
    with pytest.raises(InputError, match=needle):
        initial_state(params)


def test_api_objects_refuse_odd_arguments_with_input_errors():
    """Each was a bare TypeError or ValueError."""
    from gvlmodel.clinical.cohort import CohortSpec, Population, Protocol
    from gvlmodel.clinical.datasets import PatientSeries
    from gvlmodel.model.parameters import salib_problem

    with pytest.raises(InputError, match="treatment.stop"):
        Protocol(stop={1: 10}).stop_rule()
    with pytest.raises(InputError, match="bounds"):
        Population(bounds=np.array(["clip", "x"]))
    with pytest.raises(InputError, match="cohort.start"):
        CohortSpec(size=8, seed=1, start=np.array([["relapse", "diagnosis"]]))
    for bad in (5, [["d0"]]):
        with pytest.raises(InputError, match="names|parameter"):
            salib_problem(bad)
    with pytest.raises(InputError, match="bcr_abl_percent"):
        PatientSeries("p", [0, 1], ["a", "b"], [0, 0])


def test_a_schedule_starting_after_a_single_output_time_is_refused_as_for_two():
    from gvlmodel import simulate

    for t_out in ([5.0], [5.0, 6.0]):
        with pytest.raises(InputError, match="first start day 10"):
            simulate(t_out=t_out, schedule=[(10.0, 400.0)])
    one = simulate(t_out=[100.0], schedule=[(0.0, 400.0), (90.0, 600.0)])
    assert one.dose_mg[0] == 600.0  # the dose at that time (it was the schedule's first)


def test_a_trajectory_grid_finer_than_the_scenarios_is_refused():
    from gvlmodel.clinical.cohort import MIN_TIME_STEP_DAYS, CohortSpec, Protocol, patient_trajectory, simulate_cohort

    res = simulate_cohort(CohortSpec(size=2, seed=1), Protocol(follow_up_days=60.0), progress=False)
    with pytest.raises(InputError, match="time_step_days"):
        patient_trajectory(res, 0, MIN_TIME_STEP_DAYS / 10)


def test_run_calibrate_refuses_what_is_not_a_config(tmp_path):
    from gvlmodel.inference.calibrate import run_calibrate

    with pytest.raises(InputError, match="CalibrationConfig"):
        run_calibrate({}, tmp_path / "o")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("case", ["long_id", "clash"])
def test_predict_stop_histories_that_cannot_be_written_are_refused_before_the_fits(tmp_path, capsys, case):
    """A 300-character id failed on the figure's file name after every fit; ids ``P 1`` and ``P_1`` wrote the
    same figure."""
    if case == "long_id":
        text, needle = HISTORY.format(pid="a" * 300), "at most 64"
    else:
        text, needle = HISTORY.format(pid="P 1") + HISTORY.format(pid="P_1").split("\n", 1)[1], "P_1.png"
    hist = tmp_path / "h.csv"
    hist.write_text(text)
    out = tmp_path / "out"
    _exits_2(capsys, ["predict-stop", hist, "--out", out, "--draws", 20, "--no-progress"], needle)
    assert not out.exists()


def test_predict_stop_keeps_a_piped_history_and_removes_an_earlier_runs_figures(tmp_path):
    """The provenance re-read the history at the end (empty for ``<(...)``); figures of patients of an
    earlier run stayed beside the new provenance."""
    import threading

    from gvlmodel.inference.predict import run_predict_stop

    out = tmp_path / "out"
    (out / "figures").mkdir(parents=True)
    (out / "figures" / "old.png").write_bytes(b"x")
    (out / "figures" / "notes.txt").write_text("mine")
    fifo = tmp_path / "history.fifo"
    os.mkfifo(fifo)
    text = HISTORY.format(pid="p1")
    writer = threading.Thread(target=lambda: fifo.write_text(text))
    writer.start()
    preds = run_predict_stop(fifo, out, draws=20, seed=1, log=lambda m: None)
    writer.join()
    assert len(preds) == 1
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["config"]["history_csv"] == text
    assert sorted(p.name for p in (out / "figures").iterdir()) == ["notes.txt", "p1.pdf", "p1.png"]


def test_reproduce_reruns_a_step_whose_folder_another_run_replaced(tmp_path):
    """``gvlmodel simulate ... --out results/<step>`` between two reproduce runs: the step was skipped and the
    numbers quoted the other run."""
    from gvlmodel.core.provenance import atomic_write_json
    from gvlmodel.workflow.reproduce import _done, _provenance_digest

    (tmp_path / "provenance.json").write_text('{"run": 1}')
    atomic_write_json(tmp_path / ".reproduce.json", {"digest": "abc", "provenance": _provenance_digest(tmp_path)})
    assert _done(tmp_path, "abc")
    (tmp_path / "provenance.json").write_text('{"run": 2}')
    assert not _done(tmp_path, "abc")
    (tmp_path / "provenance.json").unlink()
    assert not _done(tmp_path, "abc")


def test_the_memory_check_sees_the_address_space_limit(monkeypatch):
    """Under ``ulimit -v`` a run the check had passed failed with MemoryError."""
    import resource

    with open("/proc/self/status") as fh:
        size = next(float(line.split()[1]) * 1024.0 for line in fh if line.startswith("VmSize:"))
    soft = int(size + 2 ** 30)  # a gibibyte beyond what this process has mapped now
    monkeypatch.setattr(resource, "getrlimit", lambda which: (soft, resource.RLIM_INFINITY))
    left = limits._address_space_left()
    assert left is not None and 0.5 * 2 ** 30 < left <= 2 ** 30
    assert limits.available_memory() <= left
    monkeypatch.setattr(resource, "getrlimit", lambda which: (int(size / 2), resource.RLIM_INFINITY))
    assert limits.available_memory() == 1.0  # nothing left: refused, not "unknown" (0)


def test_a_spread_factor_on_a_parameter_whose_median_is_zero_is_refused_when_the_config_is_read(tmp_path, capsys):
    """A sensitivity factor or fitted quantity ``sd_z_dormant_kill`` (median 0 in the shipped sets) was refused
    only when a cohort was drawn, after the run had written its state."""
    from gvlmodel.inference.fit import load_config as load_fit

    cfg = read_toml(SENS)
    cfg["parameters"]["factors"] = cfg["parameters"]["factors"] + ["sd_z_dormant_kill"]
    path = tmp_path / "sens.toml"
    path.write_text(tomlw.dumps(cfg))
    out = tmp_path / "out"
    _exits_2(capsys, ["sensitivity", path, "--quick", "--out", out, "--no-progress"], "[parameters] factors",
             "sd_z_dormant_kill", "positive median")
    assert not out.exists()
    path, v = _fit_config_fitting_also(tmp_path, "sd_z_dormant_kill")
    with pytest.raises(InputError, match=rf"\[fitted\] {v}: sd_z_dormant_kill"):
        load_fit(path)


def test_ranges_that_let_r_x_fall_to_d0_are_refused_when_the_config_is_read(tmp_path, capsys):
    """The table's bounds of d0 [0.001, 0.01] and r_x [0.0035, 0.02] overlap, and the model needs r_x > d0.
    A sensitivity study over d0's table range passed validation, wrote its problem, state and samples, then
    stopped at the first sample with d0 >= r_x (exit 2 naming no config key); a fit, a calibration or a
    scenario spread on d0 stopped the same way mid-run.  Each is now refused when its config is read."""
    from gvlmodel.analysis.sensitivity import load_config as load_sens
    from gvlmodel.inference.calibrate import load_config as load_calibrate
    from gvlmodel.inference.fit import load_config as load_fit
    from gvlmodel.model.parameters import PARAMETER_TABLE

    cfg = read_toml(SENS)
    cfg["parameters"].update(factors=["d0", "z_kill"], ranges="table")
    path = tmp_path / "sens.toml"
    path.write_text(tomlw.dumps(cfg))
    out = tmp_path / "out"
    _exits_2(capsys, ["sensitivity", path, "--quick", "--out", out, "--no-progress"], "[parameters] factors",
             "r_x must exceed d0", "[0.001, 0.01]", "[parameters] bounds")
    assert not out.exists()
    # the same factor on a range below r_x's value (0.005 in the set) is a valid study
    cfg["parameters"]["bounds"] = {"log10_d0": [-3.0, float(np.log10(0.004))]}
    path.write_text(tomlw.dumps(cfg))
    assert load_sens(path).bounds[0] == (-3.0, float(np.log10(0.004)))
    for factors in (["d0", "r_x"], ["sd_d0"]):  # both varied; a spread of d0 (its draws reach the upper 0.01)
        cfg["parameters"].update(factors=factors, bounds={})
        path.write_text(tomlw.dumps(cfg))
        with pytest.raises(InputError, match=r"\[parameters\] factors: r_x must exceed d0"):
            load_sens(path)

    path, v = _fit_config_fitting_also(tmp_path, "d0")
    with pytest.raises(InputError, match=rf"\[fitted\] {v}: r_x must exceed d0.*fit only one"):
        load_fit(path)

    cfg = read_toml(CALIBRATE)
    cfg["fitted"]["d0"] = 0.5
    path = tmp_path / "calibrate.toml"
    path.write_text(tomlw.dumps(cfg))
    with pytest.raises(InputError, match=r"\[fitted\]: r_x must exceed d0.*fit only one"):
        load_calibrate(path)

    scen = tmp_path / "s.toml"
    scen.write_text("[cohort]\nsize = 8\nseed = 1\n[parameters]\nset = \"hess2005\"\n[population]\nd0 = 0.2\n")
    _exits_2(capsys, ["simulate", scen, "--out", tmp_path / "o"], "[population]", "r_x must exceed d0")
    assert not (tmp_path / "o").exists()
    # with r_x above d0's upper bound the spread is valid
    upper = PARAMETER_TABLE["d0"].upper
    scen.write_text("[cohort]\nsize = 8\nseed = 1\n[treatment]\nfollow_up_days = 60\n[parameters]\nset = \"hess2005\"\n"
                    f"r_x = {2 * upper}\n[population]\nd0 = 0.2\n")
    assert main(["simulate", str(scen), "--out", str(tmp_path / "o2"), "--no-progress"]) == 0
